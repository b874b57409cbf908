/* The feature harvest (backend/dict/harvest.h) on a tiny random model against a brute force
 * that keeps every activation: densities, maxima, top examples with their contexts, interval
 * bounds, counts and samples (exactly the bottom-k keys of each interval, whatever order the
 * max grew in), a planted feature, the file round trip, labels, and bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "dict/harvest.h"
#include "dict/sae_ops.h"
#include "device.h"
#include "dict_fixtures.h"
#include "../model/random_model.h"

enum { L_ = 2, D_ = 16, V_ = 37, CTX = 12, SEP = 0, F_ = 12, B_ = 3 };
#define HOOK "blocks.1.hook_resid_pre"

static lp_model *model(void)
{
    lp_model *m = rm_model(0, L_, D_, 4, 4, V_, 21);
    m->cfg.bos = m->cfg.eos = SEP;
    return m;
}

static int32_t *corpus(size_t n, uint64_t seed)
{
    int32_t *t = malloc(n * sizeof *t);
    lp_rng g;
    lp_rng_seed(&g, seed);
    for (size_t i = 0; i < n; i++)
        t[i] = lp_rng_below(&g, 40) == 0 ? SEP : 1 + (int32_t)lp_rng_below(&g, V_ - 1);
    return t;
}

static lp_sae *sae(void)
{
    lp_sae_config c = {.arch = LP_SAE_STANDARD, .d_in = D_, .d_sae = F_, .d_out = D_, .apply_b_dec_to_input = 1,
                       .layer = 1};
    snprintf(c.hook_in, sizeof c.hook_in, HOOK);
    snprintf(c.hook_out, sizeof c.hook_out, HOOK);
    lp_sae *s = lp_sae_new(&c);
    cr_assert_not_null(s);
    randomise(s, 5);
    for (int i = 0; i < F_; i++) /* sparse, but not too sparse: some features fire a lot, some rarely */
        s->b_enc->data[i] = -0.8f * (float)(i % 4);
    return s;
}

/* Every activation of a brute-force pass: the same windows, run B_ at a time like the harvest. */
typedef struct {
    int64_t nwin, n_tokens;
    int32_t *ids;  /* nwin x CTX */
    float *f;      /* nwin x CTX x F_ */
    uint8_t *special;
} brute;

static brute brute_force(const lp_model *m, const lp_sae *s, const int32_t *tok, size_t n)
{
    brute b = {0};
    int per = CTX - 1;
    b.nwin = (int64_t)(n / (size_t)per);
    b.ids = malloc((size_t)b.nwin * CTX * sizeof *b.ids);
    b.f = malloc((size_t)b.nwin * CTX * F_ * sizeof *b.f);
    b.special = malloc((size_t)b.nwin * CTX);
    for (int64_t w = 0; w < b.nwin; w++) {
        b.ids[w * CTX] = SEP;
        memcpy(b.ids + w * CTX + 1, tok + w * per, (size_t)per * sizeof *tok);
    }
    for (int64_t w0 = 0; w0 < b.nwin; w0 += B_) {
        int R = (int)(b.nwin - w0 < B_ ? b.nwin - w0 : B_);
        lp_run run;
        lp_run_opts o = {.cache_all = 1};
        cr_assert_eq(lp_model_run(m, b.ids + w0 * CTX, R, CTX, &o, &run), 0, "%s", lp_last_error());
        const lp_tensor *x = lp_run_get(&run, HOOK);
        cr_assert_not_null(x);
        cr_assert_eq(lp_sae_encode(NULL, b.f + w0 * CTX * F_, s, x->data, R * CTX, 0), 0);
        lp_run_clear(&run);
    }
    for (int64_t t = 0; t < b.nwin * CTX; t++) {
        b.special[t] = b.ids[t] == SEP;
        b.n_tokens += !b.special[t];
    }
    return b;
}

static void brute_free(brute *b)
{
    free(b->ids), free(b->f), free(b->special);
}

static float bf(const brute *b, int64_t w, int p, int i)
{
    return b->f[(w * CTX + p) * F_ + i];
}

static lp_harvest_opts hopts(const int32_t *tok, size_t n)
{
    return (lp_harvest_opts){.tokens = tok, .ntokens = n, .ctx = CTX, .batch = B_, .prepend_bos = 1, .seed = 9};
}

static int desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x > y ? -1 : x < y;
}

/* The example's context is the window's tokens and the brute-force activations. */
static void check_example(const brute *b, const lp_harvest_example *e, int i)
{
    cr_assert(e->window >= 0 && e->window < b->nwin && e->pos >= 0 && e->pos < CTX);
    cr_assert_eq(e->value, bf(b, e->window, e->pos, i), "feature %d: the value is the activation there", i);
    cr_assert(!b->special[e->window * CTX + e->pos], "a special position is never an example");
    for (int k = 0; k < LP_HARVEST_W; k++) {
        int q = e->pos - LP_HARVEST_CTX + k;
        if (q < 0 || q >= CTX) {
            cr_assert_eq(e->tok[k], -1);
            continue;
        }
        cr_assert_eq(e->tok[k], b->ids[e->window * CTX + q], "context token %d", k);
        cr_assert_eq(e->act[k], bf(b, e->window, q, i), "context activation %d", k);
    }
}

/* The harvest of s (an SAE on HOOK, or a transcoder reading HOOK) against the brute force. */
static void check_against_brute_force(lp_sae *s)
{
    lp_model *m = model();
    size_t n = 900;
    int32_t *tok = corpus(n, 4);
    lp_harvest_opts o = hopts(tok, n);
    lp_harvest *h = lp_harvest_run(m, s, &o);
    cr_assert_not_null(h, "%s", lp_last_error());
    brute b = brute_force(m, s, tok, n);
    cr_assert_eq(h->n_tokens, b.n_tokens);
    cr_assert_eq(h->windows, b.nwin);
    float *vals = malloc((size_t)b.nwin * CTX * sizeof *vals);
    int live = 0, sampled_intervals = 0;
    for (int i = 0; i < F_; i++) {
        int nv = 0;
        float mx = 0;
        for (int64_t t = 0; t < b.nwin * CTX; t++) {
            float v = b.f[t * F_ + i];
            if (!b.special[t] && v > 0)
                vals[nv++] = v, mx = v > mx ? v : mx;
        }
        cr_assert_eq(h->count[i], (double)nv, "feature %d: count", i);
        cr_assert_eq(h->max[i], mx, "feature %d: max", i);
        double hsum = 0;
        for (int k = 0; k < LP_HARVEST_HIST; k++)
            hsum += h->hist[i * LP_HARVEST_HIST + k];
        cr_assert_eq(hsum, (double)nv, "feature %d: the histogram counts every activation", i);
        qsort(vals, (size_t)nv, sizeof *vals, desc);
        int want = nv < LP_HARVEST_TOP ? nv : LP_HARVEST_TOP;
        cr_assert_eq(h->n_top[i], want, "feature %d: top examples", i);
        const lp_harvest_example *top = lp_harvest_top(h, i);
        for (int k = 0; k < want; k++) {
            cr_assert_eq(top[k].value, vals[k], "feature %d: top example %d", i, k);
            check_example(&b, &top[k], i);
        }
        if (!nv)
            continue;
        live++;
        /* intervals: contiguous, equal width, covering (0, a] with max <= a < 1.5 max */
        const lp_harvest_interval *iv = h->iv + i * LP_HARVEST_INTERVALS;
        cr_assert_eq(iv[0].lo, 0.0f);
        cr_assert(iv[9].hi >= mx && iv[9].hi < 1.5f * mx, "feature %d: a = %g for max %g", i, iv[9].hi, mx);
        double csum = 0;
        for (int k = 0; k < LP_HARVEST_INTERVALS; k++) {
            if (k)
                cr_assert_eq(iv[k].lo, iv[k - 1].hi);
            cr_assert_float_eq(iv[k].hi - iv[k].lo, iv[9].hi / 10, 1e-6 * iv[9].hi);
            /* brute force: the activations in (lo, hi], and the S smallest keys among them */
            int cnt = 0;
            uint64_t best[LP_HARVEST_SAMPLES];
            int nb = 0;
            for (int64_t t = 0; t < b.nwin * CTX; t++) {
                float v = b.f[t * F_ + i];
                if (b.special[t] || !(v > iv[k].lo && v <= iv[k].hi))
                    continue;
                cnt++;
                uint64_t key = lp_harvest_key(o.seed, t, i);
                int at = nb < LP_HARVEST_SAMPLES ? nb++ : LP_HARVEST_SAMPLES;
                while (at > 0 && best[at - 1] > key) {
                    if (at < LP_HARVEST_SAMPLES)
                        best[at] = best[at - 1];
                    at--;
                }
                if (at < LP_HARVEST_SAMPLES)
                    best[at] = key;
            }
            cr_assert_eq(iv[k].count, (double)cnt, "feature %d interval %d: count", i, k);
            csum += cnt;
            cr_assert_eq(iv[k].n, nb, "feature %d interval %d: samples", i, k);
            sampled_intervals += nb > 0;
            const lp_harvest_example *sm = lp_harvest_samples(h, i, k);
            for (int c = 0; c < iv[k].n; c++) {
                cr_assert(sm[c].value > iv[k].lo && sm[c].value <= iv[k].hi, "a sample inside its interval");
                check_example(&b, &sm[c], i);
                cr_assert_eq(lp_harvest_key(o.seed, (int64_t)sm[c].window * CTX + sm[c].pos, i), best[c],
                             "feature %d interval %d: sample %d is the bottom-k one", i, k, c);
            }
        }
        cr_assert_eq(csum, (double)nv);
        for (int k = 0; k < LP_HARVEST_CORR; k++) {
            int j = h->corr[i * LP_HARVEST_CORR + k];
            float sc = h->corr_score[i * LP_HARVEST_CORR + k];
            cr_assert(j == -1 || (j >= 0 && j < F_ && j != i && sc > 0 && sc <= 1));
        }
    }
    cr_assert(live >= F_ / 2 && sampled_intervals > 3 * live, "the test exercises the intervals");
    free(vals);
    brute_free(&b);
    lp_harvest_free(h);
    free(tok);
    lp_model_free(m);
}

Test(harvest, equals_a_brute_force_over_every_activation)
{
    lp_sae *s = sae();
    check_against_brute_force(s);
    lp_sae_free(s);
}

/* A transcoder is harvested on what it reads (hook_in), not on what it predicts. */
Test(harvest, a_transcoder_reads_its_hook_in)
{
    lp_sae *s = sae();
    s->cfg.transcoder = 1, s->cfg.apply_b_dec_to_input = 0;
    snprintf(s->cfg.hook_out, sizeof s->cfg.hook_out, "blocks.1.hook_resid_post");
    check_against_brute_force(s);
    lp_sae_free(s);
}

/* One feature reading token 7's embedding direction at the first block: fires on 7 only. */
Test(harvest, a_planted_feature_fires_on_its_token)
{
    enum { D = 64, TOKEN = 7 };
    lp_model *m = rm_model(0, 1, D, 4, 4, V_, 3);
    m->cfg.bos = m->cfg.eos = SEP;
    lp_sae_config c = {.arch = LP_SAE_STANDARD, .d_in = D, .d_sae = 2, .d_out = D, .layer = 0};
    snprintf(c.hook_in, sizeof c.hook_in, "blocks.0.hook_resid_pre");
    snprintf(c.hook_out, sizeof c.hook_out, "blocks.0.hook_resid_pre");
    lp_sae *s = lp_sae_new(&c);
    const float *e = m->wte->data + (size_t)TOKEN * D;
    /* the threshold halfway between the planted token's scores and every other token's */
    double lo = INFINITY, hi = -INFINITY;
    for (int v = 0; v < V_; v++)
        for (int p = 0; p < CTX; p++) {
            double z = 0;
            for (int k = 0; k < D; k++)
                z += (double)(m->wte->data[(size_t)v * D + k] + m->wpe->data[(size_t)p * D + k]) * e[k];
            if (v == TOKEN)
                lo = z < lo ? z : lo;
            else
                hi = z > hi ? z : hi;
        }
    cr_assert(lo > hi, "the random embedding separates the token (%g vs %g)", lo, hi);
    for (int k = 0; k < D; k++)
        s->W_enc->data[k * 2] = e[k];
    s->b_enc->data[0] = (float)(-(lo + hi) / 2);
    s->b_enc->data[1] = -1e9f; /* a dead feature */
    size_t n = 600;
    int32_t *tok = corpus(n, 8);
    lp_harvest_opts o = hopts(tok, n);
    lp_harvest *h = lp_harvest_run(m, s, &o);
    cr_assert_not_null(h, "%s", lp_last_error());
    double expect = 0;
    for (size_t i = 0; i < (n / (CTX - 1)) * (CTX - 1); i++)
        expect += tok[i] == TOKEN;
    cr_assert(expect > 5);
    cr_assert_eq(h->count[0], expect, "fires exactly on every occurrence of the token");
    for (int k = 0; k < h->n_top[0]; k++)
        cr_assert_eq(lp_harvest_top(h, 0)[k].tok[LP_HARVEST_CTX], TOKEN);
    cr_assert_eq(h->count[1], 0);
    char label[64];
    lp_harvest_label(label, sizeof label, h, 0, NULL, NULL, NULL);
    cr_assert_str_eq(label, "\"#7\"");
    lp_harvest_label(label, sizeof label, h, 1, NULL, NULL, NULL);
    cr_assert_str_eq(label, "dead");
    lp_harvest_free(h);
    lp_sae_free(s);
    free(tok);
    lp_model_free(m);
}

static void same_harvest(const lp_harvest *a, const lp_harvest *b)
{
    cr_assert_eq(a->d_sae, b->d_sae);
    cr_assert_eq(a->n_tokens, b->n_tokens);
    cr_assert_eq(a->ctx, b->ctx);
    cr_assert_eq(a->windows, b->windows);
    cr_assert_str_eq(a->hook, b->hook);
    size_t d = (size_t)a->d_sae;
    for (size_t i = 0; i < d; i++) {
        cr_assert_eq(a->count[i], b->count[i]);
        cr_assert_eq(a->max[i], b->max[i]);
        cr_assert_eq(a->n_top[i], b->n_top[i]);
    }
    cr_assert_eq(memcmp(a->hist, b->hist, d * LP_HARVEST_HIST * sizeof *a->hist), 0);
    cr_assert_eq(memcmp(a->ex, b->ex, d * LP_HARVEST_EXAMPLES * sizeof *a->ex), 0);
    for (size_t i = 0; i < d * LP_HARVEST_INTERVALS; i++) {
        cr_assert_eq(a->iv[i].lo, b->iv[i].lo);
        cr_assert_eq(a->iv[i].hi, b->iv[i].hi);
        cr_assert_eq(a->iv[i].count, b->iv[i].count);
        cr_assert_eq(a->iv[i].n, b->iv[i].n);
    }
    cr_assert_eq(memcmp(a->corr, b->corr, d * LP_HARVEST_CORR * sizeof *a->corr), 0);
    cr_assert_eq(memcmp(a->corr_score, b->corr_score, d * LP_HARVEST_CORR * sizeof *a->corr_score), 0);
}

Test(harvest, saves_and_loads_back_exactly)
{
    lp_model *m = model();
    lp_sae *s = sae();
    int32_t *tok = corpus(400, 6);
    lp_harvest_opts o = hopts(tok, 400);
    lp_harvest *h = lp_harvest_run(m, s, &o);
    cr_assert_not_null(h, "%s", lp_last_error());
    char *dir = tmpdir();
    cr_assert_eq(lp_harvest_exists(dir), 0);
    cr_assert_eq(lp_harvest_save(h, dir), 0, "%s", lp_last_error());
    cr_assert_eq(lp_harvest_exists(dir), 1);
    lp_harvest *g = lp_harvest_load(dir, F_);
    cr_assert_not_null(g, "%s", lp_last_error());
    same_harvest(h, g);
    /* another dictionary's width is refused, naming the tensor */
    cr_assert_null(lp_harvest_load(dir, F_ + 1));
    cr_assert(strstr(lp_last_error(), "count"), "%s", lp_last_error());
    lp_harvest_free(g);
    lp_harvest_free(h);
    rmtree(dir);
    dir = tmpdir();
    cr_assert_null(lp_harvest_load(dir, F_), "no file");
    rmtree(dir);
    lp_sae_free(s);
    free(tok);
    lp_model_free(m);
}

Test(harvest, bad_input_and_interrupts)
{
    lp_model *m = model();
    lp_sae *s = sae();
    int32_t *tok = corpus(400, 6);
    lp_harvest_opts o = hopts(tok, 5);
    cr_assert_null(lp_harvest_run(m, s, &o), "a corpus shorter than a window");
    cr_assert(strstr(lp_last_error(), "fewer than one window"), "%s", lp_last_error());
    o = hopts(NULL, 0);
    cr_assert_null(lp_harvest_run(m, s, &o), "no corpus");
    o = hopts(tok, 400);
    o.ctx = 99;
    cr_assert_null(lp_harvest_run(m, s, &o));
    cr_assert(strstr(lp_last_error(), "ctx"), "%s", lp_last_error());
    o = hopts(tok, 400);
    tok[3] = V_ + 5;
    cr_assert_null(lp_harvest_run(m, s, &o), "a token the model lacks");
    tok[3] = 1;
    snprintf(s->cfg.hook_in, sizeof s->cfg.hook_in, "blocks.9.hook_resid_pre");
    cr_assert_null(lp_harvest_run(m, s, &o));
    cr_assert(strstr(lp_last_error(), "blocks.9"), "%s", lp_last_error());
    snprintf(s->cfg.hook_in, sizeof s->cfg.hook_in, HOOK);
    int32_t seps[40] = {0};
    o = hopts(seps, 40);
    cr_assert_null(lp_harvest_run(m, s, &o), "only separators");
    cr_assert(strstr(lp_last_error(), "special"), "%s", lp_last_error());
    o = hopts(tok, 400);
    lp_interrupt_request();
    cr_assert_null(lp_harvest_run(m, s, &o));
    lp_interrupt_clear();
    cr_assert(strstr(lp_last_error(), "interrupt"), "%s", lp_last_error());
    lp_harvest *h = lp_harvest_run(m, s, &o);
    cr_assert_not_null(h, "works again after an interrupt: %s", lp_last_error());
    lp_harvest_free(h);
    lp_sae_free(s);
    free(tok);
    lp_model_free(m);
}

static const char *text_of(void *ud, int32_t id)
{
    (void)ud;
    static const char *const t[] = {"<|endoftext|>", " Oslo", " lives", " in", "<script>alert(1)</script>"};
    return id >= 0 && id < 5 ? t[id] : NULL;
}

Test(harvest, labels_follow_the_rule)
{
    lp_harvest *h = lp_harvest_alloc(3);
    cr_assert_not_null(h);
    /* feature 0 fires on " Oslo" in 3 of 4; feature 1 after " in" on various tokens */
    int32_t centre0[4] = {1, 1, 1, 2}, centre1[4] = {1, 2, 4, 3}, prev1[4] = {3, 3, 3, 2};
    for (int f = 0; f < 2; f++) {
        h->count[f] = 4, h->n_top[f] = 4;
        lp_harvest_example *ex = h->ex + (size_t)f * LP_HARVEST_EXAMPLES;
        for (int k = 0; k < 4; k++) {
            ex[k].value = 4.0f - (float)k;
            for (int j = 0; j < LP_HARVEST_W; j++)
                ex[k].tok[j] = 0;
            ex[k].tok[LP_HARVEST_CTX] = f ? centre1[k] : centre0[k];
            ex[k].tok[LP_HARVEST_CTX - 1] = f ? prev1[k] : 0;
        }
    }
    char b[128];
    lp_harvest_label(b, sizeof b, h, 0, " Norway", text_of, NULL);
    cr_assert_str_eq(b, "\" Oslo\" -> \" Norway\"");
    lp_harvest_label(b, sizeof b, h, 1, NULL, text_of, NULL);
    cr_assert_str_eq(b, "after \" in\"");
    lp_harvest_label(b, sizeof b, h, 2, NULL, text_of, NULL);
    cr_assert_str_eq(b, "dead");
    lp_harvest_label(b, sizeof b, NULL, 0, "x", text_of, NULL);
    cr_assert_str_eq(b, "-> \"x\"");
    /* a long hostile token is cut, and the buffer is never overrun */
    h->n_top[1] = 2, h->ex[LP_HARVEST_EXAMPLES].tok[LP_HARVEST_CTX] = 4, h->ex[LP_HARVEST_EXAMPLES + 1].tok[LP_HARVEST_CTX] = 4;
    lp_harvest_label(b, sizeof b, h, 1, NULL, text_of, NULL);
    cr_assert_str_eq(b, "\"<script>alert(1)</script…\"");
    char small[8];
    lp_harvest_label(small, sizeof small, h, 1, "promoted", text_of, NULL);
    cr_assert_eq(strlen(small), 7);
    lp_harvest_free(h);
}

/* Direct effects: the logits of a decoder row are W_U (final norm's weight folded) times it;
 * a decoder row equal to the vector MLP neuron 3 writes aligns with neuron 3 first. */
Test(harvest, direct_logits_and_neuron_alignment)
{
    lp_model *m = model();
    lp_sae *s = sae();
    const lp_linear *w = &m->blocks[1].proj;
    cr_assert(w->out == D_ && w->in > 3);
    for (int d = 0; d < D_; d++)
        s->W_dec->data[2 * D_ + d] = w->trans ? w->w->data[(size_t)d * w->in + 3] : w->w->data[(size_t)3 * D_ + d];
    int ids[4];
    float dots[4];
    cr_assert_eq(lp_feature_neurons(m, s, 2, 1, 4, ids, dots), 4);
    cr_assert_eq(ids[0], 3, "neuron %d first", ids[0]);
    for (int k = 1; k < 4; k++)
        cr_assert(fabsf(dots[k]) <= fabsf(dots[k - 1]));
    cr_assert_eq(lp_feature_neurons(m, s, 2, 7, 4, ids, dots), 0, "no layer 7");
    float lg[V_];
    cr_assert_eq(lp_feature_logits(m, s, 2, lg), 0, "%s", lp_last_error());
    for (int v = 0; v < V_; v++) {
        double want = 0;
        for (int d = 0; d < D_; d++)
            want += (double)s->W_dec->data[2 * D_ + d] * m->lnf_w->data[d] * m->unembed.w->data[(size_t)v * D_ + d];
        cr_assert_float_eq(lg[v], want, 1e-4 * (1 + fabs(want)));
    }
    cr_assert_eq(lp_feature_logits(m, s, F_, lg), -1, "out of range");
    lp_sae_free(s);
    lp_model_free(m);
}

void openblas_set_num_threads(int n); /* OpenBLAS's own: the products on one thread in both runs */

/* The bookkeeping runs on several threads (features split between them): the same harvest,
 * to the bit, on 1 and on 3 threads of lp_par_for (OpenBLAS held at one thread, so that the
 * model's and the encoder's products are the same in both runs), with a wide dictionary so
 * that the split happens. */
Test(harvest, the_same_on_any_number_of_threads)
{
    lp_model *m = model();
    lp_sae_config c = {.arch = LP_SAE_TOPK, .d_in = D_, .d_sae = 1000, .d_out = D_, .k = 24, .layer = 1};
    snprintf(c.hook_in, sizeof c.hook_in, HOOK);
    snprintf(c.hook_out, sizeof c.hook_out, HOOK);
    lp_sae *s = lp_sae_new(&c);
    cr_assert_not_null(s);
    randomise(s, 11);
    int32_t *tok = corpus(700, 12);
    lp_harvest_opts o = hopts(tok, 700);
    int before = lp_get_threads();
    lp_set_threads(1);
    openblas_set_num_threads(1);
    lp_harvest *h1 = lp_harvest_run(m, s, &o);
    lp_set_threads(3);
    openblas_set_num_threads(1);
    lp_harvest *h3 = lp_harvest_run(m, s, &o);
    lp_set_threads(before);
    cr_assert(h1 && h3, "%s", lp_last_error());
    same_harvest(h1, h3);
    int corr = 0;
    for (int i = 0; i < c.d_sae * LP_HARVEST_CORR; i++)
        corr += h1->corr[i] >= 0;
    cr_assert(corr > c.d_sae, "co-occurrence is exercised");
    lp_harvest_free(h1);
    lp_harvest_free(h3);
    lp_sae_free(s);
    free(tok);
    lp_model_free(m);
}
