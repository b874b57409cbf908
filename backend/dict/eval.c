/* Reconstruction metrics accumulated in f64 (eval.h). */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "dict/eval.h"

struct lp_sae_eval {
    int d, d_sae;
    double n, l0, l1, sse, cos, l2r, xhat2, dot, x2;
    double *sum_x;   /* (d) */
    uint64_t *fired; /* (d_sae): tokens where the feature was non-zero */
};

lp_sae_eval *lp_sae_eval_new(int d, int d_sae)
{
    if (d <= 0 || d_sae <= 0) {
        lp_set_error("evaluate: sizes must be positive (d %d, d_sae %d)", d, d_sae);
        return NULL;
    }
    lp_sae_eval *e = calloc(1, sizeof *e);
    if (e) {
        e->d = d, e->d_sae = d_sae;
        e->sum_x = calloc((size_t)d, sizeof *e->sum_x);
        e->fired = calloc((size_t)d_sae, sizeof *e->fired);
    }
    if (!e || !e->sum_x || !e->fired) {
        lp_sae_eval_free(e);
        lp_set_error_code(LP_ERR_NOMEM, "evaluate: cannot allocate the sums for %d features", d_sae);
        return NULL;
    }
    return e;
}

void lp_sae_eval_free(lp_sae_eval *e)
{
    if (!e)
        return;
    free(e->sum_x);
    free(e->fired);
    free(e);
}

int lp_sae_eval_add(lp_sae_eval *e, const float *x, const float *x_hat, const float *f, int N)
{
    if (N < 0)
        return lp_set_error("evaluate: negative token count %d", N);
    for (int t = 0; t < N; t++) {
        const float *xr = x + (size_t)t * e->d, *hr = x_hat + (size_t)t * e->d, *fr = f + (size_t)t * e->d_sae;
        double xx = 0, hh = 0, xh = 0, se = 0;
        for (int j = 0; j < e->d; j++) {
            double a = xr[j], b = hr[j];
            xx += a * a, hh += b * b, xh += a * b, se += (a - b) * (a - b);
            e->sum_x[j] += a;
        }
        double l0 = 0, l1 = 0;
        for (int i = 0; i < e->d_sae; i++)
            if (fr[i] != 0.0f) {
                l0 += 1, l1 += fabs((double)fr[i]);
                e->fired[i]++;
            }
        e->n += 1, e->l0 += l0, e->l1 += l1, e->sse += se, e->x2 += xx, e->xhat2 += hh, e->dot += xh;
        if (xx > 0 && hh > 0)
            e->cos += xh / sqrt(xx * hh);
        if (xx > 0)
            e->l2r += sqrt(hh / xx);
    }
    return 0;
}

int lp_sae_eval_metrics(const lp_sae_eval *e, lp_sae_metrics *out)
{
    if (e->n <= 0)
        return lp_set_error("evaluate: no tokens were evaluated");
    double n = e->n, mean2 = 0;
    for (int j = 0; j < e->d; j++)
        mean2 += e->sum_x[j] * e->sum_x[j];
    double sst = e->x2 - mean2 / n;
    int dead = 0;
    for (int i = 0; i < e->d_sae; i++)
        dead += e->fired[i] == 0;
    *out = (lp_sae_metrics){.n_tokens = n,
                            .l0 = e->l0 / n,
                            .l1 = e->l1 / n,
                            .mse = e->sse / n,
                            .cossim = e->cos / n,
                            .l2_ratio = e->l2r / n,
                            .relative_reconstruction_bias = e->dot != 0 ? e->xhat2 / e->dot : NAN,
                            .explained_variance = sst > 0 ? 1.0 - e->sse / sst : NAN,
                            .dead = dead};
    return 0;
}

int lp_sae_eval_density(const lp_sae_eval *e, double *density)
{
    if (e->n <= 0)
        return lp_set_error("evaluate: no tokens were evaluated");
    for (int i = 0; i < e->d_sae; i++)
        density[i] = (double)e->fired[i] / e->n;
    return 0;
}
