/* Bias add, LayerNorm and RMSNorm on the CPU, one pass per row for statistics. */
#include <math.h>
#include <string.h>

#include "core/interrupt.h"
#include "ops_impl.h"

// out, inp are (N,C); bias is (C)
static int bias_add_forward(float *out, const float *inp, const float *bias, int N, int C)
{
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] = inp[(size_t)n * C + c] + bias[c];
    return 0;
}

static int bias_add_backward(float *dinp, float *dbias, const float *dout, int N, int C)
{
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            float g = dout[(size_t)n * C + c];
            if (dbias)
                dbias[c] += g;
            if (dinp)
                dinp[(size_t)n * C + c] = g;
        }
    return 0;
}

// out, inp are (N,C); weight, bias (C); mean, rstd (N)
static int layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                             const float *bias, int N, int C, float eps)
{
    long chunk = lp_chunk_rows(8.0 * C);
    for (int n = 0; n < N; n++) {
        if (n % chunk == 0 && lp_interrupt_check() < 0)
            return -1;
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++)
            m += x[c];
        m /= C;
        for (int c = 0; c < C; c++)
            v += (x[c] - m) * (x[c] - m);
        v /= C;
        float fm = (float)m, s = (float)(1.0 / sqrt(v + eps));
        for (int c = 0; c < C; c++)
            y[c] = (x[c] - fm) * s * weight[c] + (bias ? bias[c] : 0.0f);
        if (mean)
            mean[n] = fm;
        if (rstd)
            rstd[n] = s;
    }
    return 0;
}

static int layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                              const float *weight, const float *mean, const float *rstd, int N, int C)
{
    long chunk = lp_chunk_rows(10.0 * C);
    for (int n = 0; n < N; n++) {
        if (n % chunk == 0 && lp_interrupt_check() < 0)
            return -1;
        const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
        float m = mean[n], s = rstd[n], a = 0, b = 0;
        for (int c = 0; c < C; c++) {
            float xh = (x[c] - m) * s, dn = g[c] * weight[c];
            a += dn;
            b += dn * xh;
        }
        a /= C;
        b /= C;
        for (int c = 0; c < C; c++) {
            float xh = (x[c] - m) * s;
            if (dbias)
                dbias[c] += g[c];
            if (dweight)
                dweight[c] += xh * g[c];
            if (dinp)
                dinp[(size_t)n * C + c] = s * (g[c] * weight[c] - a - xh * b);
        }
    }
    return 0;
}

// out, inp are (N,C); weight (C); rstd (N)
static int rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double ss = 0;
        for (int c = 0; c < C; c++)
            ss += (double)x[c] * x[c];
        float s = (float)(1.0 / sqrt(ss / C + eps));
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] = x[c] * s * weight[c];
        if (rstd)
            rstd[n] = s;
    }
    return 0;
}

static int rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                            const float *rstd, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
        float s = rstd[n], d = 0;
        for (int c = 0; c < C; c++)
            d += g[c] * weight[c] * x[c];
        float k = d * s * s * s / C;
        for (int c = 0; c < C; c++) {
            if (dweight)
                dweight[c] += g[c] * x[c] * s;
            if (dinp)
                dinp[(size_t)n * C + c] = s * g[c] * weight[c] - x[c] * k;
        }
    }
    return 0;
}

/* rstd a constant: the norms are linear in inp (attribution's frozen normalisation) */
static int layernorm_backward_frozen(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                     const float *weight, const float *mean, const float *rstd, int N, int C)
{
    long chunk = lp_chunk_rows(8.0 * C);
    for (int n = 0; n < N; n++) {
        if (n % chunk == 0 && lp_interrupt_check() < 0)
            return -1;
        const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
        float m = mean[n], s = rstd[n], a = 0;
        for (int c = 0; c < C; c++)
            a += g[c] * weight[c];
        a /= C;
        for (int c = 0; c < C; c++) {
            if (dbias)
                dbias[c] += g[c];
            if (dweight)
                dweight[c] += (x[c] - m) * s * g[c];
            if (dinp)
                dinp[(size_t)n * C + c] = s * (g[c] * weight[c] - a);
        }
    }
    return 0;
}

static int rmsnorm_backward_frozen(float *dinp, float *dweight, const float *dout, const float *inp,
                                   const float *weight, const float *rstd, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
        float s = rstd[n];
        for (int c = 0; c < C; c++) {
            if (dweight)
                dweight[c] += g[c] * x[c] * s;
            if (dinp)
                dinp[(size_t)n * C + c] = s * g[c] * weight[c];
        }
    }
    return 0;
}

void lp_cpu_fill_norm(lp_ops *t)
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
