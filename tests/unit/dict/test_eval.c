/* Reconstruction metrics (backend/dict/eval.h): pooled explained variance and the other
 * means against a brute-force two-pass computation over every token at once, fed in uneven
 * batches; dead features and densities counted. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "dict/eval.h"
#include "rng.h"

enum { N = 301, D = 7, F = 11 };

Test(eval, pooled_metrics_equal_a_brute_force_computation)
{
    static float x[N * D], xh[N * D], f[N * F];
    lp_rng g;
    lp_rng_seed(&g, 5);
    for (int t = 0; t < N; t++) {
        for (int j = 0; j < D; j++) {
            x[t * D + j] = (float)(3.0 + j + 2.0 * lp_rng_normal(&g)); /* a mean far from zero */
            xh[t * D + j] = x[t * D + j] + (float)(0.7 * lp_rng_normal(&g));
        }
        for (int i = 0; i < F; i++)
            f[t * F + i] = i == F - 1 ? 0.0f : lp_rng_uniform(&g) < 0.3f ? (float)lp_rng_normal(&g) : 0.0f;
    }
    lp_sae_eval *e = lp_sae_eval_new(D, F);
    cr_assert(e);
    for (int t0 = 0; t0 < N;) { /* batches of 1, 2, 3, ... tokens */
        int b = t0 / 10 + 1;
        if (t0 + b > N)
            b = N - t0;
        cr_assert_eq(lp_sae_eval_add(e, x + t0 * D, xh + t0 * D, f + t0 * F, b), 0);
        t0 += b;
    }
    lp_sae_metrics r;
    cr_assert_eq(lp_sae_eval_metrics(e, &r), 0);

    double mean[D] = {0}, sse = 0, sst = 0, l0 = 0, cos = 0, l2r = 0, hh = 0, xhd = 0;
    for (int t = 0; t < N; t++)
        for (int j = 0; j < D; j++)
            mean[j] += x[t * D + j] / (double)N;
    for (int t = 0; t < N; t++) {
        double a2 = 0, b2 = 0, ab = 0;
        for (int j = 0; j < D; j++) {
            double a = x[t * D + j], b = xh[t * D + j];
            sse += (a - b) * (a - b), sst += (a - mean[j]) * (a - mean[j]);
            a2 += a * a, b2 += b * b, ab += a * b;
        }
        cos += ab / sqrt(a2 * b2) / N, l2r += sqrt(b2 / a2) / N, hh += b2, xhd += ab;
        for (int i = 0; i < F; i++)
            l0 += (f[t * F + i] != 0) / (double)N;
    }
    double ev = 1 - sse / sst, ev_about_zero = 0;
    cr_assert_float_eq(r.explained_variance, ev, 1e-9, "pooled EV %.12f, brute force %.12f", r.explained_variance, ev);
    /* the variant about zero (SAELens #659) is far from it on data with a mean: the test can tell */
    double x2 = 0;
    for (int i = 0; i < N * D; i++)
        x2 += (double)x[i] * x[i];
    ev_about_zero = 1 - sse / x2;
    cr_assert_gt(fabs(ev_about_zero - ev), 0.05);
    cr_assert_float_eq(r.mse, sse / N, 1e-9);
    cr_assert_float_eq(r.l0, l0, 1e-12);
    cr_assert_float_eq(r.cossim, cos, 1e-9);
    cr_assert_float_eq(r.l2_ratio, l2r, 1e-9);
    cr_assert_float_eq(r.relative_reconstruction_bias, hh / xhd, 1e-9);
    cr_assert_eq(r.dead, 1, "feature %d never fires", F - 1);
    double dens[F];
    cr_assert_eq(lp_sae_eval_density(e, dens), 0);
    cr_assert_eq(dens[F - 1], 0.0);
    cr_assert(dens[0] > 0.2 && dens[0] < 0.4, "density %g", dens[0]);
    lp_sae_eval_free(e);
}

Test(eval, no_tokens_is_an_error)
{
    lp_sae_eval *e = lp_sae_eval_new(3, 4);
    lp_sae_metrics r;
    cr_assert_eq(lp_sae_eval_metrics(e, &r), -1);
    lp_sae_eval_free(e);
    cr_assert_null(lp_sae_eval_new(0, 4));
}
