/* Reference normalisations: the textbook formulas in double precision. */
#include <math.h>

#include "ops_impl.h"

static int bias_add_forward(float *out, const float *inp, const float *bias, int N, int C)
{
    for (size_t i = 0; i < (size_t)N * C; i++)
        out[i] = (float)((double)inp[i] + bias[i % C]);
    return 0;
}

static int bias_add_backward(float *dinp, float *dbias, const float *dout, int N, int C)
{
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int n = 0; n < N; n++) {
            s += dout[(size_t)n * C + c];
            if (dinp)
                dinp[(size_t)n * C + c] = dout[(size_t)n * C + c];
        }
        if (dbias)
            dbias[c] += (float)s;
    }
    return 0;
}

static int layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                             const float *bias, int N, int C, float eps)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++)
            m += x[c];
        m /= C;
        for (int c = 0; c < C; c++)
            v += (x[c] - m) * (x[c] - m);
        double s = 1.0 / sqrt(v / C + eps);
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] = (float)((x[c] - m) * s * weight[c] + (bias ? bias[c] : 0.0));
        if (mean)
            mean[n] = (float)m;
        if (rstd)
            rstd[n] = (float)s;
    }
    return 0;
}

static int layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                              const float *weight, const float *mean, const float *rstd, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
        double a = 0, b = 0, s = rstd[n];
        for (int c = 0; c < C; c++) {
            double xh = (x[c] - (double)mean[n]) * s;
            a += (double)g[c] * weight[c];
            b += (double)g[c] * weight[c] * xh;
        }
        for (int c = 0; c < C; c++) {
            double xh = (x[c] - (double)mean[n]) * s;
            if (dbias)
                dbias[c] += g[c];
            if (dweight)
                dweight[c] += (float)(xh * g[c]);
            if (dinp)
                dinp[(size_t)n * C + c] = (float)(s * ((double)g[c] * weight[c] - a / C - xh * b / C));
        }
    }
    return 0;
}

static int rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps)
{
    for (int n = 0; n < N; n++) {
        double ss = 0;
        for (int c = 0; c < C; c++)
            ss += (double)inp[(size_t)n * C + c] * inp[(size_t)n * C + c];
        double s = 1.0 / sqrt(ss / C + eps);
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] = (float)(inp[(size_t)n * C + c] * s * weight[c]);
        if (rstd)
            rstd[n] = (float)s;
    }
    return 0;
}

static int rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                            const float *rstd, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
        double s = rstd[n], d = 0;
        for (int c = 0; c < C; c++)
            d += (double)g[c] * weight[c] * x[c];
        for (int c = 0; c < C; c++) {
            if (dweight)
                dweight[c] += (float)((double)g[c] * x[c] * s);
            if (dinp)
                dinp[(size_t)n * C + c] = (float)(s * g[c] * weight[c] - x[c] * d * s * s * s / C);
        }
    }
    return 0;
}

/* rstd a constant: the norms are linear in inp */
static int layernorm_backward_frozen(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                     const float *weight, const float *mean, const float *rstd, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
        double a = 0, s = rstd[n];
        for (int c = 0; c < C; c++)
            a += (double)g[c] * weight[c];
        for (int c = 0; c < C; c++) {
            double xh = (x[c] - (double)mean[n]) * s;
            if (dbias)
                dbias[c] += g[c];
            if (dweight)
                dweight[c] += (float)(xh * g[c]);
            if (dinp)
                dinp[(size_t)n * C + c] = (float)(s * ((double)g[c] * weight[c] - a / C));
        }
    }
    return 0;
}

static int rmsnorm_backward_frozen(float *dinp, float *dweight, const float *dout, const float *inp,
                                   const float *weight, const float *rstd, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
        double s = rstd[n];
        for (int c = 0; c < C; c++) {
            if (dweight)
                dweight[c] += (float)((double)g[c] * x[c] * s);
            if (dinp)
                dinp[(size_t)n * C + c] = (float)(s * g[c] * weight[c]);
        }
    }
    return 0;
}

void lp_ref_fill_norm(lp_ops *t)
{
    t->layernorm_backward_frozen = layernorm_backward_frozen;
    t->rmsnorm_backward_frozen = rmsnorm_backward_frozen;
    t->bias_add_forward = bias_add_forward;
    t->bias_add_backward = bias_add_backward;
    t->layernorm_forward = layernorm_forward;
    t->layernorm_backward = layernorm_backward;
    t->rmsnorm_forward = rmsnorm_forward;
    t->rmsnorm_backward = rmsnorm_backward;
}
