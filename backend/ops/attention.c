/* Softmax with a causal mask (rows by softmax_row.h, the softmax every CPU attention uses),
 * causal multi-head attention with grouped-query heads (scores and the weighted sum as sgemm
 * per head, reading q/k/v in place through leading dimensions), and rotary embeddings, on
 * the CPU. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "core/parallel.h"
#include "ops_impl.h"
#include "softmax_row.h"

static int valid_cols(int t, int T, int C, int causal)
{
    if (!causal)
        return C;
    int v = t + 1 + (C - T);
    return v < 0 ? 0 : v > C ? C : v;
}

// inp, out are (R,T,C)
static int softmax_forward(float *out, const float *inp, int R, int T, int C, int causal)
{
    for (int r = 0; r < R; r++) {
        if (lp_interrupt_check() < 0)
            return -1;
        for (int t = 0; t < T; t++) {
            size_t o = ((size_t)r * T + t) * C;
            lp_softmax_row(out + o, inp + o, valid_cols(t, T, C, causal), C, 1.0f);
        }
    }
    return 0;
}

static int softmax_backward(float *dinp, const float *dout, const float *out, int R, int T, int C)
{
    for (size_t row = 0; row < (size_t)R * T; row++) {
        const float *y = out + row * C, *g = dout + row * C;
        float d = 0;
        for (int j = 0; j < C; j++)
            d += y[j] * g[j];
        for (int j = 0; j < C; j++)
            dinp[row * C + j] = y[j] * (g[j] - d);
    }
    return 0;
}

// q is (B,T,NH,HS), k, v are (B,T,NKV,HS), out is (B,T,NH,HS), att is (B,NH,T,T)
static int attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                             int NH, int NKV, int HS)
{
    if (NKV <= 0 || NH % NKV)
        return lp_set_error("attention: %d query heads not a multiple of %d key/value heads", NH, NKV);
    float scale = 1.0f / sqrtf((float)HS);
    int group = NH / NKV, ldq = NH * HS, ldk = NKV * HS;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            if (lp_interrupt_check() < 0)
                return -1;
            const float *qh = q + (size_t)b * T * ldq + (size_t)h * HS;
            const float *kh = k + (size_t)b * T * ldk + (size_t)(h / group) * HS;
            const float *vh = v + (size_t)b * T * ldk + (size_t)(h / group) * HS;
            float *a = att + ((size_t)b * NH + h) * T * T;
            float *o = out + (size_t)b * T * ldq + (size_t)h * HS;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, scale, qh, ldq, kh, ldk, 0.0f, a, T);
            for (int t = 0; t < T; t++)
                lp_softmax_row(a + (size_t)t * T, a + (size_t)t * T, t + 1, T, 1.0f);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, a, T, vh, ldk, 0.0f, o, ldq);
        }
    return 0;
}

static int attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, const float *att, int B, int T, int NH, int NKV, int HS)
{
    if (NKV <= 0 || NH % NKV)
        return lp_set_error("attention: %d query heads not a multiple of %d key/value heads", NH, NKV);
    float scale = 1.0f / sqrtf((float)HS);
    int group = NH / NKV, ldq = NH * HS, ldk = NKV * HS;
    float *datt = lp_malloc((size_t)T * T * sizeof(float) + 1, "attention backward scratch");
    if (!datt)
        return -1;
    size_t kvn = (size_t)B * T * ldk;
    memset(dk, 0, kvn * sizeof(float));
    memset(dv, 0, kvn * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            if (lp_interrupt_check() < 0) {
                free(datt);
                return -1;
            }
            size_t qo = (size_t)b * T * ldq + (size_t)h * HS, ko = (size_t)b * T * ldk + (size_t)(h / group) * HS;
            const float *a = att + ((size_t)b * NH + h) * T * T;
            /* datt = dout @ v^T; dv += att^T @ dout */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, 1.0f, dout + qo, ldq, v + ko, ldk, 0.0f,
                        datt, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, a, T, dout + qo, ldq, 1.0f, dv + ko,
                        ldk);
            for (int t = 0; t < T; t++) { /* through the softmax, in place */
                const float *y = a + (size_t)t * T;
                float *g = datt + (size_t)t * T, d = 0;
                for (int j = 0; j <= t; j++)
                    d += y[j] * g[j];
                for (int j = 0; j < T; j++)
                    g[j] = j <= t ? y[j] * (g[j] - d) : 0.0f;
            }
            /* dq = scale * dpre @ k; dk += scale * dpre^T @ q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, scale, datt, T, k + ko, ldk, 0.0f,
                        dq + qo, ldq);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, scale, datt, T, q + qo, ldq, 1.0f, dk + ko,
                        ldk);
        }
    free(datt);
    return 0;
}

/* The pattern a constant: dv = att^T @ dout summed over each kv head's query heads. */
static int attention_backward_frozen(float *dv, const float *dout, const float *att, int B, int T, int NH, int NKV,
                                     int HS)
{
    if (NKV <= 0 || NH % NKV)
        return lp_set_error("attention: %d query heads not a multiple of %d key/value heads", NH, NKV);
    int group = NH / NKV, ldq = NH * HS, ldk = NKV * HS;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            if (lp_interrupt_check() < 0)
                return -1;
            size_t qo = (size_t)b * T * ldq + (size_t)h * HS, ko = (size_t)b * T * ldk + (size_t)(h / group) * HS;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, att + ((size_t)b * NH + h) * T * T,
                        T, dout + qo, ldq, h % group ? 1.0f : 0.0f, dv + ko, ldk);
        }
    return 0;
}

/* Rotates pairs (x[i], x[i+rot/2]) by +angle (sign 1) or -angle (sign -1). */
static int rope_apply(float *out, const float *inp, int B, int T, int NH, int HS, int rot, float theta, int pos0,
                      float sign)
{
    if (rot % 2 || rot > HS || rot < 0)
        return lp_set_error("rope: rotary dims %d must be even and at most the head size %d", rot, HS);
    int half = rot / 2;
    if (out != inp)
        memcpy(out, inp, (size_t)B * T * NH * HS * sizeof(float));
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)rot);
            float ang = (float)(pos0 + t) * inv_freq, c = cosf(ang), s = sign * sinf(ang);
            for (int b = 0; b < B; b++)
                for (int h = 0; h < NH; h++) {
                    float *x = out + (((size_t)b * T + t) * NH + h) * HS;
                    float x1 = x[i], x2 = x[i + half];
                    x[i] = x1 * c - x2 * s;
                    x[i + half] = x2 * c + x1 * s;
                }
        }
    return 0;
}

// inp, out are (B,T,NH,HS)
static int rope_forward(float *out, const float *inp, int B, int T, int NH, int HS, int rot, float theta, int pos0)
{
    return rope_apply(out, inp, B, T, NH, HS, rot, theta, pos0, 1.0f);
}

static int rope_backward(float *dinp, const float *dout, int B, int T, int NH, int HS, int rot, float theta,
                         int pos0)
{
    return rope_apply(dinp, dout, B, T, NH, HS, rot, theta, pos0, -1.0f);
}

struct rope_table_ctx {
    float *x;
    const float *cs, *sn;
    int T, NH, HS;
    float sign;
};

static void rope_table_range(void *p, size_t lo, size_t hi)
{
    struct rope_table_ctx *c = p;
    int half = c->HS / 2;
    for (size_t n = lo; n < hi; n++) {
        int t = (int)(n % (size_t)c->T);
        const float *restrict cs = c->cs + (size_t)t * half, *restrict sn = c->sn + (size_t)t * half;
        for (int h = 0; h < c->NH; h++) {
            float *restrict x = c->x + (n * (size_t)c->NH + (size_t)h) * c->HS;
            for (int i = 0; i < half; i++) {
                float x1 = x[i], x2 = x[i + half], s = c->sign * sn[i];
                x[i] = x1 * cs[i] + (-x2) * s;
                x[i + half] = x2 * cs[i] + x1 * s;
            }
        }
    }
}

// x (N,NH,HS) in place; cos, sin (T,HS/2); rows over threads
static int rope_table(float *x, const float *cos, const float *sin, int N, int T, int NH, int HS, float sign)
{
    if (HS % 2 || T < 1)
        return lp_set_error("rope: head size %d must be even and positions %d at least 1", HS, T);
    struct rope_table_ctx c = {x, cos, sin, T, NH, HS, sign};
    lp_par_for((size_t)N, 16, rope_table_range, &c);
    return 0;
}

void lp_cpu_fill_attention(lp_ops *t)
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
