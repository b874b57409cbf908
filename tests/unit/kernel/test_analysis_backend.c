/* backend/model/analysis.c: composition scores (fast factored form against the naive
 * d_model x d_model reference; hand-built heads whose W_OV is exactly what a later head's
 * W_K reads, or exactly what it ignores) and direct logit attribution (the parts add up to the
 * run's logit), on random GPT-2 (fused Conv1D qkv) and Llama (grouped-query) models. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/analysis.h"
#include "model/model.h"
#include "rng.h"

static lp_model_config cfg(int llama, int L, int D, int H, int K)
{
    lp_model_config c = {0};
    c.arch = llama ? LP_ARCH_LLAMA : LP_ARCH_GPT2;
    c.n_layers = L, c.d_model = D, c.n_heads = H, c.n_kv_heads = llama ? K : H, c.d_head = D / H;
    c.d_mlp = 2 * D, c.d_vocab = 29, c.n_ctx = 16, c.eps = 1e-5f, c.act = 0;
    c.rope_theta = 10000.0, c.rope = LP_ROPE_DEFAULT, c.bos = c.eos = -1;
    return c;
}

static void jitter(lp_tensor *t, lp_rng *g, float scale, float offset)
{
    if (!t)
        return;
    for (int64_t i = 0; i < lp_tensor_numel(t); i++)
        t->data[i] = offset + scale * (float)lp_rng_normal(g);
}

/* Weights large enough that every part of the model matters, and non-trivial norm weights and
 * biases (lp_model_random makes unit norms and zero biases). */
static lp_model *model(int llama, int L, int D, int H, int K, uint64_t seed)
{
    lp_model_config c = cfg(llama, L, D, H, K);
    lp_model *m = lp_model_random(&c, seed);
    cr_assert_not_null(m, "%s", lp_last_error());
    lp_rng g;
    lp_rng_seed(&g, seed + 1);
    jitter(m->wte, &g, 1.0f, 0);
    jitter(m->wpe, &g, 0.3f, 0);
    if (m->unembed.w->data != m->wte->data) /* untied */
        jitter(m->unembed.w, &g, 1.0f, 0);
    jitter(m->lnf_w, &g, 0.2f, 1);
    jitter(m->lnf_b, &g, 0.2f, 0);
    float ws = 1.0f / sqrtf((float)D);
    for (int l = 0; l < L; l++) {
        lp_block *b = &m->blocks[l];
        jitter(b->ln1_w, &g, 0.3f, 1), jitter(b->ln1_b, &g, 0.2f, 0);
        jitter(b->ln2_w, &g, 0.3f, 1), jitter(b->ln2_b, &g, 0.2f, 0);
        lp_linear *ls[] = {&b->qkv, &b->q, &b->k, &b->v, &b->o, &b->fc, &b->proj, &b->gate, &b->up, &b->down};
        for (size_t i = 0; i < sizeof ls / sizeof *ls; i++) {
            jitter(ls[i]->w, &g, 2 * ws, 0);
            jitter(ls[i]->b, &g, 0.1f, 0);
        }
    }
    return m;
}

static void compare(const lp_model *m, lp_compose_kind kind, int fold, int l1, int l2)
{
    size_t LH = (size_t)m->cfg.n_layers * m->cfg.n_heads, n = l1 >= 0 ? (size_t)m->cfg.n_heads : LH;
    float *a = malloc(n * n * sizeof *a), *b = malloc(n * n * sizeof *b);
    cr_assert_eq(lp_composition_scores(m, kind, fold, l1, l2, a), 0, "%s", lp_last_error());
    cr_assert_eq(lp_composition_scores_ref(m, kind, fold, l1, l2, b), 0, "%s", lp_last_error());
    double worst = 0;
    for (size_t i = 0; i < n * n; i++) {
        cr_assert(isfinite(a[i]) && a[i] >= 0 && a[i] <= 1.0001f, "score %zu = %g", i, (double)a[i]);
        worst = fmax(worst, fabs((double)a[i] - b[i]));
    }
    cr_assert(worst < 2e-5, "kind %d fold %d pair %d,%d: fast and reference differ by %g", kind, fold, l1, l2, worst);
    if (l1 < 0) /* TransformerLens' mask: the later head's layer must come after */
        for (size_t i = 0; i < LH; i++)
            for (size_t j = 0; j < LH; j++)
                if (j / m->cfg.n_heads <= i / m->cfg.n_heads)
                    cr_assert_eq(a[i * LH + j], 0.0f);
    free(a);
    free(b);
}

Test(analysis, composition_matches_the_reference)
{
    for (int llama = 0; llama < 2; llama++) {
        lp_model *m = model(llama, 3, 24, 4, 2, 11 + llama);
        for (int kind = 0; kind < 3; kind++)
            for (int fold = 0; fold < 2; fold++) {
                compare(m, (lp_compose_kind)kind, fold, -1, -1);
                compare(m, (lp_compose_kind)kind, fold, 0, 2);
            }
        lp_model_free(m);
    }
}

/* Writes one head's matrices back into the model: W_Q, W_K, W_V (D x S), W_O (S x D). */
static void set_head(lp_model *m, int l, int h, const float *wq, const float *wk, const float *wv, const float *wo)
{
    const lp_model_config *c = &m->cfg;
    lp_block *b = &m->blocks[l];
    int D = c->d_model, S = c->d_head, H = c->n_heads, llama = c->arch == LP_ARCH_LLAMA;
    int kv = llama ? h / (H / c->n_kv_heads) : h;
    for (int d = 0; d < D; d++)
        for (int j = 0; j < S; j++) {
            size_t at = (size_t)d * S + j;
            if (llama) { /* (out, in) */
                if (wq) b->q.w->data[(size_t)(h * S + j) * D + d] = wq[at];
                if (wk) b->k.w->data[(size_t)(kv * S + j) * D + d] = wk[at];
                if (wv) b->v.w->data[(size_t)(kv * S + j) * D + d] = wv[at];
                if (wo) b->o.w->data[(size_t)d * H * S + h * S + j] = wo[(size_t)j * D + d];
            } else { /* Conv1D (in, out); c_attn columns q | k | v */
                if (wq) b->qkv.w->data[(size_t)d * 3 * D + h * S + j] = wq[at];
                if (wk) b->qkv.w->data[(size_t)d * 3 * D + D + kv * S + j] = wk[at];
                if (wv) b->qkv.w->data[(size_t)d * 3 * D + 2 * D + kv * S + j] = wv[at];
                if (wo) b->o.w->data[(size_t)(h * S + j) * D + d] = wo[(size_t)j * D + d];
            }
        }
}

/* Layer 0 head 1 copies direction e0 into e1 (W_OV = e0 e1^T); layer 1 head 2 keys only on e1
 * (W_K = e1 f0^T) and queries on e3: K-composition of the pair is exactly 1 (rank one, aligned).
 * Layer 0 head 3 writes only into dims 8..11, which no key of layer 1 head 2 reads: 0. Layer 1
 * head 4 keys only on dims 12..15: 0 from either. Under grouped-query attention head 1 of layer
 * 1 shares head 2's kv head, so its K-composition with L0H1 is 1 too, whatever its W_Q. */
Test(analysis, composition_of_hand_built_heads)
{
    for (int llama = 0; llama < 2; llama++) {
        lp_model *m = model(llama, 2, 16, 4, 2, 5);
        int D = 16, S = 4;
        float wq[64], wk[64], wv[64], wo[64];
        lp_rng g;
        lp_rng_seed(&g, 9);
        /* L0H1 (index 0): e0 -> e1 */
        memset(wv, 0, sizeof wv), memset(wo, 0, sizeof wo);
        wv[0 * S + 0] = 1, wo[0 * D + 1] = 1;
        set_head(m, 0, 0, NULL, NULL, wv, wo);
        /* L0H3 (index 2): random reads, writes into 8..11 only */
        memset(wo, 0, sizeof wo);
        for (int j = 0; j < S; j++)
            for (int d = 8; d < 12; d++)
                wo[j * D + d] = (float)lp_rng_normal(&g);
        set_head(m, 0, 2, NULL, NULL, NULL, wo);
        /* L1H2 (index 1): keys on e1, queries on e3 */
        memset(wq, 0, sizeof wq), memset(wk, 0, sizeof wk);
        wk[1 * S + 0] = 1, wq[3 * S + 0] = 1;
        set_head(m, 1, 1, wq, wk, NULL, NULL);
        /* L1H4 (index 3): keys on 12..15 only */
        memset(wk, 0, sizeof wk);
        for (int d = 12; d < 16; d++)
            for (int j = 0; j < S; j++)
                wk[d * S + j] = (float)lp_rng_normal(&g);
        set_head(m, 1, 3, NULL, wk, NULL, NULL);
        float s[16], r[16];
        cr_assert_eq(lp_composition_scores(m, LP_COMPOSE_K, 0, 0, 1, s), 0, "%s", lp_last_error());
        cr_assert_eq(lp_composition_scores_ref(m, LP_COMPOSE_K, 0, 0, 1, r), 0, "%s", lp_last_error());
        cr_assert(fabsf(s[0 * 4 + 1] - 1) < 1e-5, "aligned: %g", (double)s[1]);
        cr_assert(fabsf(s[2 * 4 + 1]) < 1e-6, "orthogonal: %g", (double)s[2 * 4 + 1]);
        cr_assert(fabsf(s[0 * 4 + 3]) < 1e-6 && fabsf(s[2 * 4 + 3]) < 1e-6, "orthogonal keys");
        if (llama) /* query head 0 shares kv head 0 with query head 1 */
            cr_assert(fabsf(s[0 * 4 + 0] - 1) < 1e-5, "GQA: %g", (double)s[0]);
        else
            cr_assert(s[0] < 0.99f, "GPT-2: head 1 of layer 1 has its own W_K (%g)", (double)s[0]);
        for (int i = 0; i < 16; i++)
            cr_assert(fabsf(s[i] - r[i]) < 1e-5, "entry %d: %g vs %g", i, (double)s[i], (double)r[i]);
        /* Q-composition of the pair: W_OV W_Q W_K^T = e0 e1^T e3 e1^T = 0 */
        cr_assert_eq(lp_composition_scores(m, LP_COMPOSE_Q, 0, 0, 1, s), 0);
        cr_assert(fabsf(s[1]) < 1e-6, "Q: %g", (double)s[1]);
        lp_model_free(m);
    }
}

/* Independent random heads compose at about 1 / sqrt(d_model) (the expected ||AB|| / (||A|| ||B||)
 * for isotropic A, B); far from 1. */
Test(analysis, composition_of_random_heads_is_small)
{
    lp_model *m = model(0, 2, 128, 8, 8, 3);
    float s[64];
    cr_assert_eq(lp_composition_scores(m, LP_COMPOSE_V, 0, 0, 1, s), 0, "%s", lp_last_error());
    double mean = 0;
    for (int i = 0; i < 64; i++)
        mean += s[i] / 64.0;
    cr_assert(mean > 0.3 / sqrt(128.0) && mean < 3 / sqrt(128.0), "mean random score %g", mean);
    lp_model_free(m);
}

Test(analysis, composition_errors)
{
    lp_model *m = model(0, 2, 16, 4, 4, 1);
    float s[16];
    cr_assert_eq(lp_composition_scores(m, LP_COMPOSE_K, 0, 1, 1, s), -1);
    cr_assert(strstr(lp_last_error(), "l1 < l2"), "%s", lp_last_error());
    cr_assert_eq(lp_composition_scores(m, LP_COMPOSE_K, 0, 0, 5, s), -1);
    cr_assert_eq(lp_head_weights(m, 0, 4, 0, NULL, NULL, NULL, NULL), -1);
    lp_model_free(m);
}

/* The parts of the residual stream, read through the frozen final norm, add up to the logit
 * (and to a logit difference); a layer's heads plus its b_O make its attention part. */
Test(analysis, dla_parts_add_up_to_the_logit)
{
    for (int llama = 0; llama < 2; llama++) {
        lp_model *m = model(llama, 3, 32, 4, 2, 21 + llama);
        lp_rng g;
        lp_rng_seed(&g, 4);
        if (!llama) { /* an unembedding bias, to check the constant */
            int64_t V = m->cfg.d_vocab;
            m->unembed.b = lp_tensor_empty(1, &V, LP_DEVICE_CPU);
            jitter(m->unembed.b, &g, 0.5f, 0);
        }
        int32_t toks[14] = {1, 5, 9, 2, 7, 7, 3, 28, 0, 4, 11, 6, 19, 2};
        lp_run_opts o = {.cache_all = 1};
        lp_run r = {0};
        cr_assert_eq(lp_model_run(m, toks, 2, 7, &o, &r), 0, "%s", lp_last_error());
        int32_t pairs[3][2] = {{3, -1}, {17, 8}, {0, 28}};
        double biggest = 0;
        for (int pos = 0; pos < 7; pos += 3)
            for (int k = 0; k < 3; k++) {
                lp_dla d;
                cr_assert_eq(lp_dla_compute(m, &r, 1, pos, pairs[k][0], pairs[k][1], &d), 0, "%s", lp_last_error());
                cr_assert(fabs(d.total - d.actual) < 1e-3, "llama %d pos %d: parts %g, logit %g", llama, pos,
                          d.total, d.actual);
                biggest = fmax(biggest, fabs(d.actual));
                for (int l = 0; l < 3; l++) {
                    double s = d.attn_bias[l];
                    for (int h = 0; h < 4; h++)
                        s += d.heads[l * 4 + h];
                    cr_assert(fabs(s - d.attn[l]) < 1e-4, "heads + b_O = attn: %g vs %g", s, d.attn[l]);
                }
                if (!llama)
                    cr_assert(d.pos_embed != 0 && d.bias != 0);
                lp_dla_free(&d);
            }
        cr_assert(biggest > 0.5, "logits that are not trivially small: %g", biggest);
        lp_dla d;
        cr_assert_eq(lp_dla_compute(m, &r, 0, 9, 1, -1, &d), -1);
        cr_assert_eq(lp_dla_compute(m, &r, 0, 0, 99, -1, &d), -1);
        lp_run_clear(&r);
        lp_run_opts none = {0};
        cr_assert_eq(lp_model_run(m, toks, 1, 7, &none, &r), 0);
        cr_assert_eq(lp_dla_compute(m, &r, 0, 0, 1, -1, &d), -1);
        cr_assert(strstr(lp_last_error(), "did not cache"), "%s", lp_last_error());
        lp_run_clear(&r);
        lp_model_free(m);
    }
}
