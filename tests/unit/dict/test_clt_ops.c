/* The CLT compute core (backend/dict/clt_ops.h): the fast forward and backward (each layer a
 * transcoder of the SAE core, the layers' predictions summed) against the naive reference,
 * for relu and jumprelu, sparse and dense; the reference's backward against finite
 * differences of its own loss; inference in one call. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "dict/clt_ops.h"
#include "rng.h"

typedef struct ccase {
    const char *name;
    int jump;
    lp_sae_sparsity sparsity;
    float pre_act, bandwidth;
    float shift; /* moves z down: fewer active features (sparse lists) */
    int dense;   /* the mode layer 0 must take */
} ccase;

static const ccase CASES[] = {
    {"relu tanh sparse", 0, LP_SPARSITY_TANH, 0, 2.0f, 1.2f, 0},
    {"relu tanh dense", 0, LP_SPARSITY_TANH, 0, 2.0f, 0.0f, 1},
    {"relu l1", 0, LP_SPARSITY_STEP, 0, 2.0f, 1.2f, 0},
    {"jumprelu tanh sparse", 1, LP_SPARSITY_TANH, 0, 0.3f, 1.2f, 0},
    {"jumprelu tanh dense", 1, LP_SPARSITY_TANH, 0, 2.0f, 0.0f, 1},
    {"jumprelu step", 1, LP_SPARSITY_STEP, 0, 0.2f, 1.2f, 0},
    {"jumprelu pre-act", 1, LP_SPARSITY_TANH, 0.05f, 0.3f, 0.3f, 1},
};
#define NCASES (int)(sizeof CASES / sizeof CASES[0])

static void fill(float *a, size_t n, lp_rng *g, float scale)
{
    for (size_t i = 0; i < n; i++)
        a[i] = scale * (float)lp_rng_normal(g);
}

static lp_clt *make(const ccase *t, int L, int d, int T, uint64_t seed)
{
    lp_clt *c = lp_clt_new(L, d, T, t->jump);
    cr_assert_not_null(c, "%s", lp_last_error());
    cr_assert_eq(lp_clt_init_random(c, seed, 0.5f, 0.2f), 0, "%s", lp_last_error());
    lp_rng g;
    lp_rng_seed(&g, seed + 1);
    for (int l = 0; l < L; l++) {
        for (int i = 0; i < T; i++) { /* unequal decoder norms */
            float m = 0.5f + lp_rng_uniform(&g) * 1.5f;
            for (int q = 0; q < (L - l) * d; q++)
                c->W_dec[l]->data[(size_t)i * (L - l) * d + q] *= m;
        }
        fill(c->W_enc[l]->data, (size_t)d * T, &g, 0.4f);
        fill(c->b_enc[l]->data, T, &g, 0.1f);
        for (int i = 0; i < T; i++)
            c->b_enc[l]->data[i] -= t->shift * sqrtf(d / 5.0f);
        fill(c->b_dec[l]->data, d, &g, 0.1f);
        if (c->threshold)
            for (int i = 0; i < T; i++)
                c->threshold[l]->data[i] = 0.05f + 0.3f * (float)lp_rng_uniform(&g);
    }
    return c;
}

static lp_sae_loss_opts opts(const ccase *t)
{
    lp_sae_config sc = {.arch = t->jump ? LP_SAE_JUMPRELU : LP_SAE_STANDARD, .d_in = 4, .d_out = 4, .d_sae = 4};
    lp_sae_loss_opts o = lp_sae_loss_defaults(&sc);
    o.l1 = 0.3f, o.sparsity = t->sparsity, o.bandwidth = t->bandwidth, o.pre_act = t->pre_act;
    return o;
}

static double maxabs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

static void close_arrays(const char *what, const char *name, const float *a, const float *b, size_t n, double rtol)
{
    double scale = fmax(maxabs(b, n), 1e-3);
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(a[i] - b[i]) <= rtol * scale, "%s: %s[%zu] fast %g, reference %g", name, what, i, a[i], b[i]);
}

static void fast_vs_ref(int L, int d, int T, int N, uint64_t seed)
{
    for (int ci = 0; ci < NCASES; ci++) {
        const ccase *t = &CASES[ci];
        lp_clt *c = make(t, L, d, T, seed + ci);
        lp_sae_loss_opts o = opts(t);
        lp_rng g;
        lp_rng_seed(&g, seed * 7 + ci);
        float *x = malloc((size_t)L * N * d * sizeof(float)), *y = malloc((size_t)L * N * d * sizeof(float));
        fill(x, (size_t)L * N * d, &g, 1.0f), fill(y, (size_t)L * N * d, &g, 1.0f);
        lp_clt_work *w = lp_clt_work_new(c, N);
        cr_assert_not_null(w, "%s", lp_last_error());
        lp_clt_grads *g1 = lp_clt_grads_new(c), *g2 = lp_clt_grads_new(c);
        float *f2 = malloc((size_t)L * N * T * sizeof(float)), *yh2 = malloc((size_t)L * N * d * sizeof(float));
        lp_clt_losses L1, L2;
        cr_assert_eq(lp_clt_forward(&L1, w, c, x, y, N, &o), 0, "%s: %s", t->name, lp_last_error());
        cr_assert_eq(lp_clt_forward_ref(&L2, f2, yh2, c, x, y, N, &o), 0, "%s", lp_last_error());
        int dense;
        lp_clt_work_layer(w, 0, NULL, NULL, NULL, &dense);
        if (N * T >= 1000) /* tiny batches hold too few pairs for the lists */
            cr_assert_eq(dense, t->dense, "%s ran in the %s mode", t->name, dense ? "dense" : "sparse");
        for (int l = 0; l < L; l++)
            close_arrays("f", t->name, lp_clt_work_f(w, l), f2 + (size_t)l * N * T, (size_t)N * T, 1e-5);
        close_arrays("y_hat", t->name, lp_clt_work_y_hat(w), yh2, (size_t)L * N * d, 1e-5);
        cr_assert(L2.l0 > 0 && L2.l0 < T, "%s: l0 %g (a case that tests nothing)", t->name, L2.l0);
        double lf[] = {L1.mse, L1.sparsity, L1.pre_act, L1.total, L1.l0, L1.sse, L1.sst};
        double lr[] = {L2.mse, L2.sparsity, L2.pre_act, L2.total, L2.l0, L2.sse, L2.sst};
        for (int q = 0; q < 7; q++)
            cr_assert(fabs(lf[q] - lr[q]) <= 1e-5 * fmax(1.0, fabs(lr[q])), "%s: loss part %d fast %.9g ref %.9g",
                      t->name, q, lf[q], lr[q]);
        if (t->pre_act > 0)
            cr_assert(L2.pre_act > 0, "%s: no pre-activation loss", t->name);
        cr_assert_eq(lp_clt_backward(g1, w, c, x, y, N, &o), 0, "%s: %s", t->name, lp_last_error());
        cr_assert_eq(lp_clt_backward_ref(g2, c, x, y, N, &o), 0, "%s", lp_last_error());
        for (int l = 0; l < L; l++) {
            size_t nd = (size_t)T * (L - l) * d;
            close_arrays("dW_enc", t->name, g1->W_enc[l], g2->W_enc[l], (size_t)d * T, 2e-4);
            close_arrays("db_enc", t->name, g1->b_enc[l], g2->b_enc[l], T, 2e-4);
            close_arrays("dW_dec", t->name, g1->W_dec[l], g2->W_dec[l], nd, 2e-4);
            close_arrays("db_dec", t->name, g1->b_dec[l], g2->b_dec[l], d, 2e-4);
            cr_assert(maxabs(g2->W_dec[l], nd) > 0 && maxabs(g2->W_enc[l], (size_t)d * T) > 0,
                      "%s: zero gradients at layer %d", t->name, l);
            cr_assert_eq(g1->threshold != NULL, t->jump);
            if (t->jump) {
                close_arrays("dthreshold", t->name, g1->threshold[l], g2->threshold[l], T, 2e-4);
                cr_assert(maxabs(g2->threshold[l], T) > 0, "%s: zero threshold gradients at layer %d", t->name, l);
            }
        }
        lp_clt_grads_free(g1), lp_clt_grads_free(g2), lp_clt_work_free(w), lp_clt_free(c);
        free(x), free(y), free(f2), free(yh2);
    }
}

Test(clt_ops, fast_path_equals_the_reference_tiny) { fast_vs_ref(3, 5, 12, 7, 11); }
Test(clt_ops, fast_path_equals_the_reference_larger) { fast_vs_ref(4, 16, 96, 64, 23); }

/* The reference's total loss; whether the active set equals mask (NULL flipped: store it). */
static double total_ref(const lp_clt *c, const float *x, const float *y, int N, const lp_sae_loss_opts *o,
                        uint8_t *mask, int *flipped)
{
    size_t nf = (size_t)c->n_layers * N * c->d_tc;
    float *f = malloc(nf * sizeof(float));
    lp_clt_losses Lo;
    cr_assert_eq(lp_clt_forward_ref(&Lo, f, NULL, c, x, y, N, o), 0);
    for (size_t p = 0; p < nf; p++)
        if (flipped)
            *flipped |= mask[p] != (f[p] != 0);
        else
            mask[p] = f[p] != 0;
    free(f);
    return Lo.total;
}

Test(clt_ops, reference_backward_equals_finite_differences)
{
    const int L = 3, d = 4, T = 6, N = 5;
    for (int ci = 0; ci < NCASES; ci++) {
        const ccase *t = &CASES[ci];
        lp_clt *c = make(t, L, d, T, 100 + ci);
        lp_sae_loss_opts o = opts(t);
        lp_rng g;
        lp_rng_seed(&g, 200 + ci);
        float x[L * N * d], y[L * N * d];
        fill(x, sizeof x / sizeof *x, &g, 1.0f), fill(y, sizeof y / sizeof *y, &g, 1.0f);
        lp_clt_grads *gr = lp_clt_grads_new(c);
        cr_assert_eq(lp_clt_backward_ref(gr, c, x, y, N, &o), 0);
        uint8_t mask[L * N * T];
        total_ref(c, x, y, N, &o, mask, NULL);
        int bad = 0, checked = 0, skipped = 0;
        /* the threshold's gradient is the rectangle kernel's estimate, not a derivative */
        for (int l = 0; l < L; l++) {
            lp_tensor *P[] = {c->W_enc[l], c->b_enc[l], c->W_dec[l], c->b_dec[l]};
            float *D[] = {gr->W_enc[l], gr->b_enc[l], gr->W_dec[l], gr->b_dec[l]};
            for (int q = 0; q < 4; q++)
                for (int64_t e = 0; e < lp_tensor_numel(P[q]); e++) {
                    float *p = P[q]->data + e, p0 = *p;
                    int flip = 0;
                    *p = p0 + 1e-3f;
                    double hp = *p - p0, lp = total_ref(c, x, y, N, &o, mask, &flip);
                    *p = p0 - 1e-3f;
                    double hm = p0 - *p, lm = total_ref(c, x, y, N, &o, mask, &flip);
                    *p = p0;
                    if (flip) {
                        skipped++;
                        continue;
                    }
                    double fd = (lp - lm) / (hp + hm), an = D[q][e];
                    checked++;
                    if (fabs(fd - an) > 2e-3 * fmax(1.0, fabs(fd)))
                        bad++, cr_log_warn("%s: layer %d tensor %d entry %ld: finite differences %g, backward %g",
                                           t->name, l, q, (long)e, fd, an);
                }
        }
        cr_assert(bad == 0, "%s: %d of %d gradients differ from finite differences", t->name, bad, checked);
        cr_assert(skipped <= checked / 10, "%s: %d of %d entries flipped a feature", t->name, skipped, checked);
        lp_clt_grads_free(gr), lp_clt_free(c);
    }
}

Test(clt_ops, inference_in_one_call_equals_the_reference)
{
    const int L = 3, d = 8, T = 20, N = 9;
    lp_clt *c = make(&CASES[3], L, d, T, 5);
    lp_rng g;
    lp_rng_seed(&g, 6);
    float x[L * N * d], f1[L * N * T], f2[L * N * T], y1[L * N * d], y2[L * N * d];
    fill(x, sizeof x / sizeof *x, &g, 1.0f);
    cr_assert_eq(lp_clt_run(f1, y1, c, x, N), 0, "%s", lp_last_error());
    cr_assert_eq(lp_clt_forward_ref(NULL, f2, y2, c, x, NULL, N, NULL), 0);
    close_arrays("f", "run", f1, f2, sizeof f1 / sizeof *f1, 1e-5);
    close_arrays("y_hat", "run", y1, y2, sizeof y1 / sizeof *y1, 1e-5);
    /* the last layer's output depends on every layer's features: zeroing layer 0's encoder changes it */
    memset(c->W_enc[0]->data, 0, (size_t)d * T * sizeof(float));
    memset(c->b_enc[0]->data, 0, (size_t)T * sizeof(float));
    cr_assert_eq(lp_clt_run(NULL, y2, c, x, N), 0);
    double diff = 0;
    for (int p = 0; p < N * d; p++)
        diff = fmax(diff, fabs(y1[(size_t)(L - 1) * N * d + p] - y2[(size_t)(L - 1) * N * d + p]));
    cr_assert(diff > 1e-3, "layer 0's features do not reach the last layer");
    lp_clt_free(c);
}
