/* QK attribution (backend/attrib/qk.c) on a tiny random GPT-2 with random per-layer
 * transcoders (some with a skip): the pair contributions add up to the head's pre-softmax
 * score that the forward pass gives (attn.hook_attn_scores), the marginals add up to it
 * too, and a pair of terms that reach the head's input directly (features of the layer
 * before it at the query and key positions; token embeddings for layer 0) contributes the
 * bilinear form of their vectors through the frozen norm, W_Q and W_K. Plus bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/qk.h"
#include "core/error.h"
#include "../model/random_model.h"

enum { L_ = 3, D_ = 16, H_ = 4, V_ = 29, F_ = 40, T_ = 7 };

static lp_transcoder_set *transcoders(int L, int D, uint64_t seed)
{
    lp_transcoder_set *t = calloc(1, sizeof *t);
    t->n_layers = L;
    t->layers = calloc((size_t)L, sizeof *t->layers);
    strcpy(t->feature_input_hook, "mlp.hook_in");
    strcpy(t->feature_output_hook, "mlp.hook_out");
    lp_rng g;
    lp_rng_seed(&g, seed);
    for (int l = 0; l < L; l++) {
        lp_sae_config c = {.arch = LP_SAE_JUMPRELU, .d_in = D, .d_sae = F_, .d_out = D, .transcoder = 1,
                           .skip = l % 2 == 1, .layer = l};
        snprintf(c.hook_in, sizeof c.hook_in, "blocks.%d.mlp.hook_in", l);
        snprintf(c.hook_out, sizeof c.hook_out, "blocks.%d.mlp.hook_out", l);
        lp_sae *s = lp_sae_new(&c);
        cr_assert_not_null(s, "%s", lp_last_error());
        rm_jitter(s->W_enc, &g, 0.4f, 0);
        rm_jitter(s->b_enc, &g, 0.3f, 0);
        rm_jitter(s->W_dec, &g, 0.3f, 0);
        rm_jitter(s->b_dec, &g, 0.1f, 0);
        rm_jitter(s->threshold, &g, 0.0f, 0.2f);
        rm_jitter(s->W_skip, &g, 0.1f, 0);
        t->layers[l] = s;
    }
    return t;
}

static void free_set(lp_transcoder_set *t)
{
    for (int l = 0; l < t->n_layers; l++)
        lp_sae_free(t->layers[l]);
    free(t->layers);
    free(t);
}

static const int32_t toks[T_] = {3, 17, 5, 22, 9, 1, 12};

Test(qk, pairs_add_up_to_the_score)
{
    lp_model *m = rm_model(0, L_, D_, H_, H_, V_, 71);
    lp_transcoder_set *tcs = transcoders(L_, D_, 72);
    int cases[][4] = {{0, 0, 3, 1}, {1, 2, 6, 0}, {2, 1, 6, 4}, {2, 3, 5, 5}, {1, 0, 4, 2}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        lp_qk *q = lp_qk_compute(m, tcs, toks, T_, cases[c][0], cases[c][1], cases[c][2], cases[c][3]);
        cr_assert_not_null(q, "%s", lp_last_error());
        double sum = 0, qm = 0, km = 0;
        for (int i = 0; i < q->n_terms; i++) {
            qm += q->q_marg[i], km += q->k_marg[i];
            for (int j = 0; j < q->n_terms; j++)
                sum += lp_qk_pair(q, i, j);
        }
        double tol = 1e-4 * fabs(q->score) + 1e-6;
        cr_assert(fabs(q->score) > 1e-3, "case %zu: a trivial score %g", c, q->score);
        cr_expect(fabs(sum - q->score) <= tol, "case %zu: pairs sum %.8g, score %.8g", c, sum, q->score);
        cr_expect(fabs(q->total - q->score) <= tol, "case %zu: total %.8g, score %.8g", c, q->total, q->score);
        cr_expect(fabs(qm - q->score) <= tol && fabs(km - q->score) <= tol, "case %zu: marginals %g %g, score %g", c,
                  qm, km, q->score);
        /* the top pairs: descending by |value|, each the pair's contribution */
        lp_qk_pair_t *tp;
        int n = lp_qk_top_pairs(q, 10, &tp);
        cr_assert(n > 0 && n <= 10);
        for (int i = 0; i < n; i++) {
            cr_expect(fabs(tp[i].value - lp_qk_pair(q, tp[i].q, tp[i].k)) < 1e-12);
            if (i)
                cr_expect(fabs(tp[i].value) <= fabs(tp[i - 1].value));
        }
        free(tp);
        lp_qk_free(q);
    }
    free_set(tcs);
    lp_model_free(m);
}

/* Q (or K) of a vector v added to the residual stream at pos right before the head's layer */
static void head_vec(const lp_model *m, const lp_run *run, int layer, int col0, int pos, const float *v, double *out)
{
    int D = m->cfg.d_model, S = m->cfg.d_head;
    char name[96];
    snprintf(name, sizeof name, "blocks.%d.ln1.hook_scale", layer);
    lp_tensor *sc = lp_run_get(run, name);
    cr_assert_not_null(sc);
    const lp_block *b = &m->blocks[layer];
    double mean = 0;
    for (int d = 0; d < D; d++)
        mean += v[d];
    mean /= D;
    for (int e = 0; e < S; e++) {
        double s = 0;
        for (int d = 0; d < D; d++) {
            double x = (v[d] - mean) / sc->data[pos] * b->ln1_w->data[d];
            const lp_linear *w = &b->qkv;
            float wij = w->trans ? w->w->data[(size_t)(col0 + e) * w->in + d] : w->w->data[(size_t)d * w->out + col0 + e];
            s += x * wij;
        }
        out[e] = s;
    }
}

static int find(const lp_qk *q, const char *id)
{
    for (int i = 0; i < q->n_terms; i++)
        if (!strcmp(q->terms[i].id, id))
            return i;
    return -1;
}

Test(qk, a_pair_is_the_bilinear_form_of_its_vectors)
{
    lp_model *m = rm_model(0, L_, D_, H_, H_, V_, 81);
    lp_transcoder_set *tcs = transcoders(L_, D_, 82);
    int D = D_, S = D_ / H_;
    lp_run run = {0};
    lp_run_opts ro = {.cache_all = 1};
    cr_assert(lp_model_run(m, toks, 1, T_, &ro, &run) == 0, "%s", lp_last_error());
    int checked = 0;
    for (int layer = 0; layer < L_; layer++)
        for (int head = 0; head < H_; head += 3) {
            int qp = 6, kp = 3;
            lp_qk *q = lp_qk_compute(m, tcs, toks, T_, layer, head, qp, kp);
            cr_assert_not_null(q, "%s", lp_last_error());
            for (int i = 0; i < q->n_terms; i++)
                for (int j = 0; j < q->n_terms; j++) {
                    const lp_qk_term *a = &q->terms[i], *b = &q->terms[j];
                    float va[D_], vb[D_];
                    if (layer == 0 && a->kind == LP_QK_EMBEDDING && b->kind == LP_QK_EMBEDDING && a->pos == qp &&
                        b->pos == kp) {
                        memcpy(va, m->wte->data + (size_t)toks[qp] * D, sizeof va);
                        memcpy(vb, m->wte->data + (size_t)toks[kp] * D, sizeof vb);
                    } else if (layer > 0 && a->kind == LP_QK_FEATURE && b->kind == LP_QK_FEATURE &&
                               a->layer == layer - 1 && b->layer == layer - 1 && a->pos == qp && b->pos == kp) {
                        const lp_sae *s = tcs->layers[layer - 1];
                        for (int d = 0; d < D; d++)
                            va[d] = a->act * s->W_dec->data[(size_t)a->feature * D + d],
                            vb[d] = b->act * s->W_dec->data[(size_t)b->feature * D + d];
                    } else {
                        continue;
                    }
                    double Q[D_], K[D_], want = 0;
                    head_vec(m, &run, layer, head * S, qp, va, Q);
                    head_vec(m, &run, layer, D + head * S, kp, vb, K);
                    for (int e = 0; e < S; e++)
                        want += Q[e] * K[e];
                    want /= sqrt((double)S);
                    double got = lp_qk_pair(q, i, j);
                    cr_expect(fabs(got - want) <= 1e-4 * fabs(want) + 1e-6, "layer %d head %d %s x %s: %.8g, want %.8g",
                              layer, head, a->id, b->id, got, want);
                    checked++;
                }
            lp_qk_free(q);
        }
    cr_assert(checked >= 4, "only %d pairs checked", checked);
    char id[64];
    snprintf(id, sizeof id, "E_%d_%d", toks[2], 2); /* graph.h node ids */
    lp_qk *q = lp_qk_compute(m, tcs, toks, T_, 1, 0, 4, 2);
    cr_assert_not_null(q);
    cr_expect(find(q, id) >= 0, "no term %s", id);
    cr_expect(find(q, "bias") >= 0 && find(q, "pos_embed") >= 0 && find(q, "bos_mlp") >= 0);
    lp_qk_free(q);
    lp_run_clear(&run);
    free_set(tcs);
    lp_model_free(m);
}

Test(qk, bad_input_is_an_error)
{
    lp_model *m = rm_model(0, L_, D_, H_, H_, V_, 91);
    lp_transcoder_set *tcs = transcoders(L_, D_, 92);
    cr_expect_null(lp_qk_compute(m, tcs, toks, T_, 3, 0, 2, 1));
    cr_expect(strstr(lp_last_error(), "layer 3") != NULL, "%s", lp_last_error());
    cr_expect_null(lp_qk_compute(m, tcs, toks, T_, 0, 4, 2, 1));
    cr_expect_null(lp_qk_compute(m, tcs, toks, T_, 0, 0, 2, 3)); /* key after query */
    cr_expect_null(lp_qk_compute(m, tcs, toks, T_, 0, 0, T_, 0));
    cr_expect_null(lp_qk_compute(m, NULL, toks, T_, 0, 0, 2, 1));
    lp_model *ll = rm_model(1, L_, D_, H_, 2, V_, 93);
    cr_expect_null(lp_qk_compute(ll, tcs, toks, T_, 0, 0, 2, 1));
    cr_expect(strstr(lp_last_error(), "GPT-2") != NULL, "%s", lp_last_error());
    lp_model_free(ll);
    free_set(tcs);
    lp_model_free(m);
}
