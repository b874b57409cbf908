/* Activations on the CPU: GELU (tanh and erf forms), SiLU, ReLU, SwiGLU, and the sparse
 * autoencoder activations TopK (quickselect per row) and JumpReLU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "ops_impl.h"

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

static int gelu_forward(float *out, const float *inp, size_t n, int form)
{
    if (form == LP_GELU_ERF)
        for (size_t i = 0; i < n; i++)
            out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * INV_SQRT2));
    else
        for (size_t i = 0; i < n; i++) {
            float x = inp[i];
            out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
        }
    return 0;
}

static int gelu_backward(float *dinp, const float *dout, const float *inp, size_t n, int form)
{
    for (size_t i = 0; i < n; i++) {
        float x = inp[i], d;
        if (form == LP_GELU_ERF) {
            d = 0.5f * (1.0f + erff(x * INV_SQRT2)) + x * expf(-0.5f * x * x) * INV_SQRT_2PI;
        } else {
            float t = tanhf(GELU_K * (x + 0.044715f * x * x * x));
            d = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        }
        dinp[i] = d * dout[i];
    }
    return 0;
}

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

static int silu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = inp[i] * sigmoidf(inp[i]);
    return 0;
}

static int silu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float s = sigmoidf(inp[i]);
        dinp[i] = dout[i] * s * (1.0f + inp[i] * (1.0f - s));
    }
    return 0;
}

static int relu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
    return 0;
}

static int relu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dinp[i] = inp[i] > 0.0f ? dout[i] : 0.0f;
    return 0;
}

static int swiglu_forward(float *out, const float *gate, const float *up, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = gate[i] * sigmoidf(gate[i]) * up[i];
    return 0;
}

static int swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                           size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], s = sigmoidf(g), u = up[i], d = dout[i];
        float dg = d * u * s * (1.0f + g * (1.0f - s)), du = d * g * s;
        if (dgate)
            dgate[i] = dg;
        if (dup)
            dup[i] = du;
    }
    return 0;
}

/* The k-th largest of x[0..n) (1-based k), by quickselect on scratch (destroyed). */
static float kth_largest(float *a, int n, int k)
{
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float p = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] > p)
                i++;
            while (a[j] < p)
                j--;
            if (i <= j) {
                float t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            return a[want];
    }
    return a[want];
}

// out, inp are (N,C)
static int topk_act_forward(float *out, const float *inp, int N, int C, int k)
{
    if (k < 0 || k > C)
        return lp_set_error("topk activation: k = %d with rows of %d", k, C);
    float *scratch = lp_malloc((size_t)(C ? C : 1) * sizeof(float), "topk activation scratch");
    if (!scratch)
        return -1;
    long chunk = lp_chunk_rows(8.0 * C);
    for (int n = 0; n < N; n++) {
        if (n % chunk == 0 && lp_interrupt_check() < 0) {
            free(scratch);
            return -1;
        }
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        if (k == 0) {
            memset(y, 0, (size_t)C * sizeof(float));
            continue;
        }
        memcpy(scratch, x, (size_t)C * sizeof(float));
        float kth = kth_largest(scratch, C, k);
        int greater = 0;
        for (int c = 0; c < C; c++)
            greater += x[c] > kth;
        int ties = k - greater; /* equal values kept, lowest index first */
        for (int c = 0; c < C; c++) {
            int keep = x[c] > kth || (x[c] == kth && ties-- > 0);
            y[c] = keep && x[c] > 0.0f ? x[c] : 0.0f;
        }
    }
    free(scratch);
    return 0;
}

static int topk_act_backward(float *dinp, const float *dout, const float *out, int N, int C)
{
    for (size_t i = 0; i < (size_t)N * C; i++)
        dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
    return 0;
}

// out, inp are (N,C); threshold (C)
static int jumprelu_forward(float *out, const float *inp, const float *threshold, int N, int C)
{
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            float x = inp[(size_t)n * C + c];
            out[(size_t)n * C + c] = x > threshold[c] ? x : 0.0f;
        }
    return 0;
}

static int jumprelu_backward(float *dinp, float *dthreshold, const float *dout, const float *inp,
                             const float *threshold, int N, int C, float bandwidth)
{
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)n * C + c;
            float x = inp[i], th = threshold[c], d = dout[i]; /* dinp may alias dout */
            if (dinp)
                dinp[i] = x > th ? d : 0.0f;
            if (dthreshold && fabsf(x - th) < 0.5f * bandwidth)
                dthreshold[c] += -th / bandwidth * d;
        }
    return 0;
}

void lp_cpu_fill_activation(lp_ops *t)
{
    t->gelu_forward = gelu_forward;
    t->gelu_backward = gelu_backward;
    t->silu_forward = silu_forward;
    t->silu_backward = silu_backward;
    t->relu_forward = relu_forward;
    t->relu_backward = relu_backward;
    t->swiglu_forward = swiglu_forward;
    t->swiglu_backward = swiglu_backward;
    t->topk_act_forward = topk_act_forward;
    t->topk_act_backward = topk_act_backward;
    t->jumprelu_forward = jumprelu_forward;
    t->jumprelu_backward = jumprelu_backward;
}
