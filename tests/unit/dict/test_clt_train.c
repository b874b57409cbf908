/* CLT training (sae_train.h's lp_clt_trainer_new through sae_run.h): planted structure is
 * recovered (each layer's input a sparse sum of known directions, each layer's output a sum
 * over earlier layers of the same features through other known directions), an interrupted
 * and resumed run equals an uninterrupted one bit for bit, a NaN stops it with the weights kept. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "dict/clt_ops.h"
#include "dict/sae_run.h"
#include "rng.h"

enum { L = 3, D = 16, K = 12, T = 32, B = 128 };

/* Features s_l (K per layer, each on with probability 0.15, value 1..2); x_l = s_l E_l +
 * noise; y_l' = sum_{l <= l'} s_l P_{l,l'}: the CLT's own form. */
typedef struct src {
    lp_rng g;
    float E[L][K][D], P[L][L][K][D];
    int drawn, poison;
} src;

static void src_init(src *s, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    lp_rng_seed(&s->g, seed);
    for (int l = 0; l < L; l++)
        for (int k = 0; k < K; k++) {
            for (int d = 0; d < D; d++)
                s->E[l][k][d] = (float)lp_rng_normal(&s->g) / sqrtf(D);
            for (int l2 = l; l2 < L; l2++)
                for (int d = 0; d < D; d++)
                    s->P[l][l2][k][d] = (float)lp_rng_normal(&s->g) / sqrtf(D);
        }
}

static int draw(void *ud, float *x, float *y, int N)
{
    src *s = ud;
    s->drawn++;
    memset(y, 0, (size_t)L * N * D * sizeof(float));
    for (int n = 0; n < N; n++)
        for (int l = 0; l < L; l++) {
            float *xr = x + ((size_t)l * N + n) * D;
            for (int d = 0; d < D; d++)
                xr[d] = 0.01f * (float)lp_rng_normal(&s->g);
            for (int k = 0; k < K; k++) {
                if (lp_rng_uniform(&s->g) >= 0.15)
                    continue;
                float v = 1.0f + (float)lp_rng_uniform(&s->g);
                for (int d = 0; d < D; d++)
                    xr[d] += v * s->E[l][k][d];
                for (int l2 = l; l2 < L; l2++)
                    for (int d = 0; d < D; d++)
                        y[((size_t)l2 * N + n) * D + d] += v * s->P[l][l2][k][d];
            }
        }
    if (s->poison && s->drawn == s->poison)
        x[3] = NAN;
    return 0;
}

static lp_clt *clt(int jump)
{
    lp_clt *c = lp_clt_new(L, D, T, jump);
    cr_assert_not_null(c, "%s", lp_last_error());
    cr_assert_eq(lp_clt_init_random(c, 3, 0.1f, jump ? 0.1f : 0), 0);
    return c;
}

static lp_sae_trainer *trainer(lp_clt *c, long steps)
{
    lp_sae_config sc = {.arch = c->threshold ? LP_SAE_JUMPRELU : LP_SAE_STANDARD, .d_in = D, .d_sae = T, .d_out = D};
    lp_sae_train_opts o = lp_sae_train_defaults(&sc);
    o.batch = B, o.steps = steps, o.lr = 3e-3f, o.warmup = 10, o.l1_warmup = steps / 20, o.dead_window = 50;
    o.loss.sparsity = LP_SPARSITY_TANH, o.loss.l1 = 2e-2f, o.loss.bandwidth = 0.1f;
    lp_sae_trainer *t = lp_clt_trainer_new(c, &o);
    cr_assert_not_null(t, "%s", lp_last_error());
    return t;
}

static lp_sae_run *run(lp_sae_trainer *t, src *s)
{
    lp_sae_run_opts ro = {.source = draw, .source_ud = s, .batch = B, .d_in = D, .d_out = D, .layers = L};
    lp_sae_run *r = lp_sae_run_new(&t, 1, &ro);
    cr_assert_not_null(r, "%s", lp_last_error());
    return r;
}

static void learns(int jump)
{
    lp_clt *c = clt(jump);
    src s;
    src_init(&s, 42);
    lp_sae_trainer *t = trainer(c, 600);
    lp_sae_run *r = run(t, &s);
    cr_assert_eq(lp_sae_run_go(r, 600, NULL, NULL), 0, "%s", lp_last_error());
    lp_sae_history h = lp_sae_run_history(r, 0);
    cr_assert_eq(h.n, 600);
    double first = h.mse[0], last = 0, ev = 0;
    for (size_t i = h.n - 20; i < h.n; i++)
        last += h.mse[i] / 20, ev += h.explained_variance[i] / 20;
    cr_log_info("%s: mse %g -> %g, explained variance %g, l0 %g", jump ? "jumprelu" : "relu", first, last, ev,
                h.l0[h.n - 1]);
    cr_assert(last < 0.2 * first, "mse %g -> %g", first, last);
    cr_assert(ev > 0.9, "explained variance %g", ev);
    for (int l = 0; l < L; l++) {
        double e, l0;
        lp_clt_trainer_layer_stats(t, l, &e, &l0);
        cr_assert(e > 0.8 && l0 > 0 && l0 < T, "layer %d: explained variance %g, l0 %g", l, e, l0);
    }
    /* features are sparse: far fewer active than the width */
    cr_assert(h.l0[h.n - 1] < T / 2, "l0 %g", h.l0[h.n - 1]);
    lp_sae_run_free(r);
    lp_clt_free(c);
}

Test(clt_train, relu_recovers_planted_structure) { learns(0); }
Test(clt_train, jumprelu_recovers_planted_structure) { learns(1); }

static int same_clt(const lp_clt *a, const lp_clt *b)
{
    for (int l = 0; l < L; l++) {
        const lp_tensor *A[] = {a->W_enc[l], a->b_enc[l], a->W_dec[l], a->b_dec[l], a->threshold ? a->threshold[l] : NULL};
        const lp_tensor *Bt[] = {b->W_enc[l], b->b_enc[l], b->W_dec[l], b->b_dec[l], b->threshold ? b->threshold[l] : NULL};
        for (int q = 0; q < 5; q++)
            if (A[q] && memcmp(A[q]->data, Bt[q]->data, (size_t)lp_tensor_numel(A[q]) * sizeof(float)))
                return 0;
    }
    return 1;
}

Test(clt_train, resumed_run_equals_an_uninterrupted_one)
{
    lp_clt *a = clt(1), *b = clt(1);
    src sa, sb;
    src_init(&sa, 9), src_init(&sb, 9);
    lp_sae_run *ra = run(trainer(a, 40), &sa), *rb = run(trainer(b, 40), &sb);
    cr_assert_eq(lp_sae_run_go(ra, 40, NULL, NULL), 0, "%s", lp_last_error());
    cr_assert_eq(lp_sae_run_go(rb, 13, NULL, NULL), 0);
    cr_assert(!same_clt(a, b), "13 steps equal 40 (the test tests nothing)");
    cr_assert_eq(lp_sae_run_go(rb, 40, NULL, NULL), 0);
    cr_assert(same_clt(a, b), "a resumed CLT run differs from an uninterrupted one");
    lp_sae_history ha = lp_sae_run_history(ra, 0), hb = lp_sae_run_history(rb, 0);
    cr_assert_eq(ha.n, hb.n);
    cr_assert_eq(memcmp(ha.loss, hb.loss, ha.n * sizeof(double)), 0);
    lp_sae_run_free(ra), lp_sae_run_free(rb), lp_clt_free(a), lp_clt_free(b);
}

Test(clt_train, a_nan_stops_with_the_weights_of_the_last_good_step)
{
    lp_clt *a = clt(0), *keep = clt(0);
    src s, s2;
    src_init(&s, 5), src_init(&s2, 5);
    s.poison = 6;
    lp_sae_run *r = run(trainer(a, 20), &s), *r2 = run(trainer(keep, 20), &s2);
    cr_assert_eq(lp_sae_run_go(r2, 5, NULL, NULL), 0);
    cr_assert_eq(lp_sae_run_go(r, 20, NULL, NULL), -1);
    cr_assert(strstr(lp_last_error(), "step 6"), "%s", lp_last_error());
    cr_assert_eq(lp_sae_run_steps(r), 5);
    cr_assert(same_clt(a, keep), "the weights changed in the failed step");
    lp_sae_run_free(r), lp_sae_run_free(r2), lp_clt_free(a), lp_clt_free(keep);
}

Test(clt_train, a_run_checks_its_trainers)
{
    lp_clt *a = clt(0);
    src s;
    src_init(&s, 1);
    lp_sae_trainer *t = trainer(a, 10);
    lp_sae_run_opts ro = {.source = draw, .source_ud = &s, .batch = B, .d_in = D, .d_out = D, .layers = 0};
    cr_assert_null(lp_sae_run_new(&t, 1, &ro)); /* frees t */
    cr_assert(strstr(lp_last_error(), "layers"), "%s", lp_last_error());
    lp_clt_free(a);
}
