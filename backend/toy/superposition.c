/* Toy models of superposition: the layer, its backward, AdamW and the training loop.
 * Sizes are tiny (n, m in the tens), so plain loops beat BLAS calls here. */
#include "toy/superposition.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"

#define LP_TOY_MAX_DIM 100000
#define LP_TOY_MAX_BATCH (1 << 20)
#define LP_TOY_NORM_EPS 1e-6f

lp_toy_config lp_toy_defaults(int n, int m)
{
    lp_toy_config c;
    memset(&c, 0, sizeof c);
    c.n = n;
    c.m = m;
    c.instances = 1;
    c.batch = 1024;
    c.lr = 1e-3f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.report_every = 10;
    return c;
}

static int check_config(const lp_toy_config *c)
{
    if (c->n < 1 || c->n > LP_TOY_MAX_DIM || c->m < 1 || c->m > LP_TOY_MAX_DIM)
        return lp_set_error("toy model: n = %d features and m = %d dimensions must be in 1..%d",
                            c->n, c->m, LP_TOY_MAX_DIM);
    if (c->instances < 1 || c->instances > LP_TOY_MAX_DIM)
        return lp_set_error("toy model: %d instances (1..%d)", c->instances, LP_TOY_MAX_DIM);
    if (c->batch < 1 || c->batch > LP_TOY_MAX_BATCH)
        return lp_set_error("toy model: batch %d (1..%d)", c->batch, LP_TOY_MAX_BATCH);
    if (!(c->lr > 0) || !isfinite(c->lr))
        return lp_set_error("toy model: learning rate %g must be positive and finite", c->lr);
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1) || !(c->eps > 0) ||
        !(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return lp_set_error("toy model: AdamW needs betas in [0, 1), eps > 0, weight decay >= 0");
    if (c->report_every < 1)
        return lp_set_error("toy model: report_every %d must be >= 1", c->report_every);
    if (!c->sparsity)
        return lp_set_error("toy model: no sparsity given");
    for (int k = 0; k < c->instances; k++)
        if (!(c->sparsity[k] >= 0 && c->sparsity[k] <= 1))
            return lp_set_error("toy model: sparsity %g (instance %d) must be in [0, 1]",
                                c->sparsity[k], k + 1);
    for (int i = 0; c->importance && i < c->n; i++)
        if (!(c->importance[i] >= 0) || !isfinite(c->importance[i]))
            return lp_set_error("toy model: importance %g (feature %d) must be finite and >= 0",
                                c->importance[i], i + 1);
    return 0;
}

/* count floats, with the size checked against overflow. */
static float *alloc_floats(size_t count, const char *what)
{
    if (count > SIZE_MAX / sizeof(float))
        return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate %zu floats for %s", count, what), NULL;
    return lp_calloc(count, sizeof(float), what);
}

lp_toy_model *lp_toy_new(const lp_toy_config *c)
{
    if (!c)
        return lp_set_error("toy model: no configuration"), NULL;
    if (check_config(c) < 0)
        return NULL;
    lp_toy_model *t = lp_calloc(1, sizeof *t, "a toy model");
    if (!t)
        return NULL;
    size_t I = (size_t)c->instances, n = (size_t)c->n, m = (size_t)c->m, B = (size_t)c->batch;
    t->n = c->n;
    t->m = c->m;
    t->instances = c->instances;
    t->batch = c->batch;
    t->report_every = c->report_every;
    t->lr = c->lr;
    t->beta1 = c->beta1;
    t->beta2 = c->beta2;
    t->eps = c->eps;
    t->weight_decay = c->weight_decay;
    t->nparams = I * (m * n + n); /* each factor <= 1e5: no overflow in 64 bits */
    t->params = alloc_floats(t->nparams, "toy model parameters");
    t->grads = alloc_floats(t->nparams, "toy model gradients");
    t->moments = alloc_floats(2 * t->nparams, "toy model AdamW moments");
    t->acts = alloc_floats(B * (3 * n + 2 * m), "toy model activations");
    t->meta = alloc_floats(3 * I + n, "toy model settings");
    if (!t->params || !t->grads || !t->moments || !t->acts || !t->meta) {
        lp_toy_free(t);
        return NULL;
    }
    t->W = t->params;
    t->b = t->params + I * m * n;
    t->dW = t->grads;
    t->db = t->grads + I * m * n;
    t->mom_m = t->moments;
    t->mom_v = t->moments + t->nparams;
    t->x = t->acts;
    t->h = t->x + B * n;
    t->out = t->h + B * m;
    t->dpre = t->out + B * n;
    t->dh = t->dpre + B * n;
    t->sparsity = t->meta;
    t->importance = t->sparsity + I;
    t->loss = t->importance + n;
    t->loss_sum = t->loss + I;
    memcpy(t->sparsity, c->sparsity, I * sizeof(float));
    for (size_t i = 0; i < n; i++)
        t->importance[i] = c->importance ? c->importance[i] : 1.0f;
    lp_rng_seed(&t->rng, c->seed);
    float std = sqrtf(2.0f / (float)(m + n));
    for (size_t k = 0; k < I * m * n; k++)
        t->W[k] = (float)lp_rng_normal(&t->rng) * std;
    return t;
}

void lp_toy_free(lp_toy_model *t)
{
    if (!t)
        return;
    free(t->params);
    free(t->grads);
    free(t->moments);
    free(t->acts);
    free(t->meta);
    free(t);
}

const float *lp_toy_weights(const lp_toy_model *t, int instance)
{
    return t->W + (size_t)instance * t->m * t->n;
}

const float *lp_toy_bias(const lp_toy_model *t, int instance)
{
    return t->b + (size_t)instance * t->n;
}

/* ---- the layer ---- */

void lp_toy_sample(float *x, lp_rng *g, float S, int B, int n)
{
    for (size_t k = 0; k < (size_t)B * n; k++)
        x[k] = lp_rng_uniform(g) < S ? 0.0f : lp_rng_uniform(g);
}

float lp_toy_forward(float *h, float *out, const float *x, const float *W, const float *b,
                     const float *imp, int B, int m, int n)
{
    double loss = 0;
    for (int r = 0; r < B; r++) {
        const float *xr = x + (size_t)r * n;
        float *hr = h + (size_t)r * m, *orow = out + (size_t)r * n;
        for (int k = 0; k < m; k++) { /* h = W x */
            const float *wk = W + (size_t)k * n;
            float s = 0;
            for (int i = 0; i < n; i++)
                s += wk[i] * xr[i];
            hr[k] = s;
        }
        for (int i = 0; i < n; i++) /* out = ReLU(W^T h + b) */
            orow[i] = b[i];
        for (int k = 0; k < m; k++) {
            const float *wk = W + (size_t)k * n;
            for (int i = 0; i < n; i++)
                orow[i] += wk[i] * hr[k];
        }
        for (int i = 0; i < n; i++) {
            orow[i] = orow[i] > 0 ? orow[i] : 0;
            double d = (double)xr[i] - orow[i];
            loss += imp[i] * d * d;
        }
    }
    return (float)(loss / B);
}

void lp_toy_backward(float *dW, float *db, float *dpre, float *dh, const float *x,
                     const float *h, const float *out, const float *W, const float *imp, int B,
                     int m, int n)
{
    float scale = 2.0f / (float)B;
    for (int r = 0; r < B; r++) {
        const float *xr = x + (size_t)r * n, *hr = h + (size_t)r * m, *orow = out + (size_t)r * n;
        float *dp = dpre + (size_t)r * n, *dhr = dh + (size_t)r * m;
        for (int i = 0; i < n; i++) /* through the loss and the ReLU (out > 0 iff pre > 0) */
            dp[i] = orow[i] > 0 ? scale * imp[i] * (orow[i] - xr[i]) : 0.0f;
        for (int i = 0; i < n; i++)
            db[i] += dp[i];
        for (int k = 0; k < m; k++) { /* pre = W^T h: dW += h dpre^T, dh = W dpre */
            float *dwk = dW + (size_t)k * n;
            const float *wk = W + (size_t)k * n;
            float s = 0;
            for (int i = 0; i < n; i++) {
                dwk[i] += hr[k] * dp[i];
                s += wk[i] * dp[i];
            }
            dhr[k] = s;
        }
        for (int k = 0; k < m; k++) { /* h = W x: dW += dh x^T */
            float *dwk = dW + (size_t)k * n;
            for (int i = 0; i < n; i++)
                dwk[i] += dhr[k] * xr[i];
        }
    }
}

/* ---- training ---- */

static void adamw(lp_toy_model *t)
{
    long s = t->step + 1;
    double c1 = 1.0 - pow(t->beta1, (double)s), c2 = 1.0 - pow(t->beta2, (double)s);
    float b1 = t->beta1, b2 = t->beta2;
    for (size_t k = 0; k < t->nparams; k++) {
        float g = t->grads[k];
        float mk = b1 * t->mom_m[k] + (1 - b1) * g, vk = b2 * t->mom_v[k] + (1 - b2) * g * g;
        t->mom_m[k] = mk;
        t->mom_v[k] = vk;
        float p = t->params[k];
        t->params[k] = p - t->lr * ((float)(mk / c1) / (sqrtf((float)(vk / c2)) + t->eps) +
                                    t->weight_decay * p);
    }
}

int lp_toy_train(lp_toy_model *t, long steps, lp_toy_progress_fn cb, void *ud)
{
    if (!t)
        return lp_set_error("toy model: no model");
    if (steps < 0)
        return lp_set_error("toy model: %ld steps", steps);
    int I = t->instances, n = t->n, m = t->m, B = t->batch;
    long since = 0, target = t->step + steps;
    memset(t->loss_sum, 0, (size_t)I * sizeof(float));
    for (long s = 0; s < steps; s++) {
        if (lp_interrupt_check() < 0)
            return -1;
        memset(t->grads, 0, t->nparams * sizeof(float));
        for (int k = 0; k < I; k++) {
            const float *W = lp_toy_weights(t, k), *b = lp_toy_bias(t, k);
            lp_toy_sample(t->x, &t->rng, t->sparsity[k], B, n);
            float loss = lp_toy_forward(t->h, t->out, t->x, W, b, t->importance, B, m, n);
            if (!isfinite(loss))
                return lp_set_error("toy model: the loss of instance %d is %g at step %ld; "
                                    "lower the learning rate (%g)", k + 1, loss, t->step + 1, t->lr);
            t->loss[k] = loss;
            t->loss_sum[k] += loss;
            lp_toy_backward(t->dW + (size_t)k * m * n, t->db + (size_t)k * n, t->dpre, t->dh,
                            t->x, t->h, t->out, W, t->importance, B, m, n);
        }
        adamw(t);
        t->step++;
        since++;
        if (cb && (since == t->report_every || s == steps - 1)) {
            for (int k = 0; k < I; k++)
                t->loss_sum[k] /= (float)since;
            if (cb(ud, t->step, target, t->loss_sum, I) != 0)
                return -1;
            since = 0;
            memset(t->loss_sum, 0, (size_t)I * sizeof(float));
        }
    }
    return 0;
}

/* ---- metrics ---- */

void lp_toy_wtw(float *out, const float *W, int m, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < m; k++)
                s += (double)W[(size_t)k * n + i] * W[(size_t)k * n + j];
            out[(size_t)i * n + j] = (float)s;
        }
}

static double col_dot(const float *W, int m, int n, int i, int j)
{
    double s = 0;
    for (int k = 0; k < m; k++)
        s += (double)W[(size_t)k * n + i] * W[(size_t)k * n + j];
    return s;
}

void lp_toy_feature_norms(float *out, const float *W, int m, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = (float)sqrt(col_dot(W, m, n, i, i));
}

/* sum over j (j != i unless with_self) of (W_i_hat . W_j)^2, and ||W_i||^2 in *sq. */
static double overlap(const float *W, int m, int n, int i, int with_self, double *sq)
{
    *sq = col_dot(W, m, n, i, i);
    if (sqrt(*sq) < LP_TOY_NORM_EPS)
        return 0;
    double s = 0;
    for (int j = 0; j < n; j++) {
        if (j == i && !with_self)
            continue;
        double d = col_dot(W, m, n, i, j);
        s += d * d / *sq;
    }
    return s;
}

void lp_toy_superposition(float *out, const float *W, int m, int n)
{
    double sq;
    for (int i = 0; i < n; i++)
        out[i] = (float)overlap(W, m, n, i, 0, &sq);
}

void lp_toy_dimensionality(float *out, const float *W, int m, int n)
{
    double sq;
    for (int i = 0; i < n; i++) {
        double den = overlap(W, m, n, i, 1, &sq);
        out[i] = den > 0 ? (float)(sq / den) : 0.0f;
    }
}

float lp_toy_dims_per_feature(const float *W, int m, int n)
{
    double f = 0;
    for (size_t k = 0; k < (size_t)m * n; k++)
        f += (double)W[k] * W[k];
    return f > 0 ? (float)(m / f) : INFINITY;
}
