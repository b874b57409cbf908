/* Reference softmax, attention and rotary embeddings: loops over every index in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops_impl.h"

static int softmax_forward(float *out, const float *inp, int R, int T, int C, int causal)
{
    for (size_t row = 0; row < (size_t)R * T; row++) {
        int t = (int)(row % T), valid = causal ? t + 1 + (C - T) : C;
        valid = valid < 0 ? 0 : valid > C ? C : valid;
        double m = -INFINITY, s = 0;
        for (int j = 0; j < valid; j++)
            m = fmax(m, inp[row * C + j]);
        for (int j = 0; j < valid; j++)
            s += exp(inp[row * C + j] - m);
        for (int j = 0; j < C; j++)
            out[row * C + j] = j < valid ? (float)(exp(inp[row * C + j] - m) / s) : 0.0f;
    }
    return 0;
}

static int softmax_backward(float *dinp, const float *dout, const float *out, int R, int T, int C)
{
    for (size_t row = 0; row < (size_t)R * T; row++)
        for (int i = 0; i < C; i++) {
            double s = 0; /* Jacobian: y_i (delta_ij - y_j) */
            for (int j = 0; j < C; j++)
                s += (double)dout[row * C + j] * out[row * C + j] * ((i == j) - (double)out[row * C + i]);
            dinp[row * C + i] = (float)s;
        }
    return 0;
}

#define Q(b, t, h, d) q[(((size_t)(b) * T + (t)) * NH + (h)) * HS + (d)]
#define KV(x, b, t, h, d) x[(((size_t)(b) * T + (t)) * NKV + (h)) * HS + (d)]

static int attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                             int NH, int NKV, int HS)
{
    if (NKV <= 0 || NH % NKV)
        return lp_set_error("attention: %d query heads not a multiple of %d key/value heads", NH, NKV);
    int group = NH / NKV;
    double *row = lp_malloc((size_t)(T ? T : 1) * sizeof *row, "attention scratch");
    if (!row)
        return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate attention scratch");
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                double m = -INFINITY, s = 0;
                for (int j = 0; j <= t; j++) {
                    double d = 0;
                    for (int e = 0; e < HS; e++)
                        d += (double)Q(b, t, h, e) * KV(k, b, j, h / group, e);
                    row[j] = d / sqrt((double)HS);
                    m = fmax(m, row[j]);
                }
                for (int j = 0; j <= t; j++)
                    s += (row[j] = exp(row[j] - m));
                float *a = att + (((size_t)b * NH + h) * T + t) * T;
                for (int j = 0; j < T; j++)
                    a[j] = j <= t ? (float)(row[j] / s) : 0.0f;
                for (int e = 0; e < HS; e++) {
                    double o = 0;
                    for (int j = 0; j <= t; j++)
                        o += row[j] / s * KV(v, b, j, h / group, e);
                    out[(((size_t)b * T + t) * NH + h) * HS + e] = (float)o;
                }
            }
    free(row);
    return 0;
}

static int attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, const float *att, int B, int T, int NH, int NKV, int HS)
{
    if (NKV <= 0 || NH % NKV)
        return lp_set_error("attention: %d query heads not a multiple of %d key/value heads", NH, NKV);
    int group = NH / NKV;
    double scale = 1.0 / sqrt((double)HS);
    memset(dk, 0, (size_t)B * T * NKV * HS * sizeof(float));
    memset(dv, 0, (size_t)B * T * NKV * HS * sizeof(float));
    memset(dq, 0, (size_t)B * T * NH * HS * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const float *a = att + (((size_t)b * NH + h) * T + t) * T;
                const float *g = dout + (((size_t)b * T + t) * NH + h) * HS;
                double datt_dot = 0;
                for (int j = 0; j <= t; j++) {
                    double da = 0;
                    for (int e = 0; e < HS; e++) {
                        da += (double)g[e] * KV(v, b, j, h / group, e);
                        KV(dv, b, j, h / group, e) += (float)(a[j] * g[e]);
                    }
                    datt_dot += a[j] * da;
                }
                for (int j = 0; j <= t; j++) {
                    double da = 0;
                    for (int e = 0; e < HS; e++)
                        da += (double)g[e] * KV(v, b, j, h / group, e);
                    double dpre = a[j] * (da - datt_dot) * scale;
                    for (int e = 0; e < HS; e++) {
                        dq[(((size_t)b * T + t) * NH + h) * HS + e] += (float)(dpre * KV(k, b, j, h / group, e));
                        KV(dk, b, j, h / group, e) += (float)(dpre * Q(b, t, h, e));
                    }
                }
            }
    return 0;
}

/* the pattern a constant: dv only, each entry summed in double over its heads and queries */
static int attention_backward_frozen(float *dv, const float *dout, const float *att, int B, int T, int NH, int NKV,
                                     int HS)
{
    if (NKV <= 0 || NH % NKV)
        return lp_set_error("attention: %d query heads not a multiple of %d key/value heads", NH, NKV);
    int group = NH / NKV;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < T; j++)
            for (int g = 0; g < NKV; g++)
                for (int e = 0; e < HS; e++) {
                    double s = 0;
                    for (int h = g * group; h < (g + 1) * group; h++)
                        for (int t = j; t < T; t++)
                            s += (double)att[(((size_t)b * NH + h) * T + t) * T + j] *
                                 dout[(((size_t)b * T + t) * NH + h) * HS + e];
                    KV(dv, b, j, g, e) = (float)s;
                }
    return 0;
}

static int rope(float *out, const float *inp, int B, int T, int NH, int HS, int rot, float theta, int pos0, double sg)
{
    if (rot % 2 || rot > HS || rot < 0)
        return lp_set_error("rope: rotary dims %d must be even and at most the head size %d", rot, HS);
    int half = rot / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++) {
                const float *x = inp + (((size_t)b * T + t) * NH + h) * HS;
                float *y = out + (((size_t)b * T + t) * NH + h) * HS;
                double tmp[2 * 512];
                for (int d = 0; d < HS && d < 1024; d++)
                    tmp[d] = x[d];
                for (int d = 0; d < HS; d++) {
                    double val = tmp[d];
                    if (d < rot) {
                        int i = d % half;
                        double ang = (pos0 + t) * pow(theta, -2.0 * i / rot), c = cos(ang), s = sg * sin(ang);
                        val = d < half ? tmp[i] * c - tmp[i + half] * s : tmp[i + half] * c + tmp[i] * s;
                    }
                    y[d] = (float)val;
                }
            }
    return 0;
}

static int rope_forward(float *out, const float *inp, int B, int T, int NH, int HS, int rot, float theta, int pos0)
{
    return HS > 1024 ? lp_set_error("rope reference: head size > 1024") : rope(out, inp, B, T, NH, HS, rot, theta, pos0, 1);
}

static int rope_backward(float *dinp, const float *dout, int B, int T, int NH, int HS, int rot, float theta, int pos0)
{
    return HS > 1024 ? lp_set_error("rope reference: head size > 1024") : rope(dinp, dout, B, T, NH, HS, rot, theta, pos0, -1);
}

static int rope_table(float *x, const float *cos, const float *sin, int N, int T, int NH, int HS, float sign)
{
    if (HS % 2 || T < 1)
        return lp_set_error("rope: head size %d must be even and positions %d at least 1", HS, T);
    int half = HS / 2;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < half; i++) {
                float *p = x + ((size_t)n * NH + h) * HS;
                double c = cos[(size_t)(n % T) * half + i], s = (double)sign * sin[(size_t)(n % T) * half + i];
                double x1 = p[i], x2 = p[i + half];
                p[i] = (float)(x1 * c - x2 * s);
                p[i + half] = (float)(x2 * c + x1 * s);
            }
    return 0;
}

void lp_ref_fill_attention(lp_ops *t)
{
    t->rope_table = rope_table;
    t->softmax_forward = softmax_forward;
    t->softmax_backward = softmax_backward;
    t->attention_forward = attention_forward;
    t->attention_backward = attention_backward;
    t->attention_backward_frozen = attention_backward_frozen;
    t->rope_forward = rope_forward;
    t->rope_backward = rope_backward;
}
