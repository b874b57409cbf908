/* Reference activations in double precision; TopK by counting, O(C^2) per row. */
#include <math.h>

#include "core/error.h"
#include "ops_impl.h"

static double gelu(double x, int form)
{
    if (form == LP_GELU_ERF)
        return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

static int gelu_forward(float *out, const float *inp, size_t n, int form)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)gelu(inp[i], form);
    return 0;
}

static int gelu_backward(float *dinp, const float *dout, const float *inp, size_t n, int form)
{
    for (size_t i = 0; i < n; i++) {
        double x = inp[i], d;
        if (form == LP_GELU_ERF) {
            d = 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
        } else {
            double k = sqrt(2.0 / M_PI), t = tanh(k * (x + 0.044715 * x * x * x));
            d = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x);
        }
        dinp[i] = (float)(d * dout[i]);
    }
    return 0;
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static int silu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(inp[i] * sigmoid(inp[i]));
    return 0;
}

static int silu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double s = sigmoid(inp[i]);
        dinp[i] = (float)(dout[i] * (s + inp[i] * s * (1.0 - s)));
    }
    return 0;
}

static int relu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = inp[i] > 0 ? inp[i] : 0;
    return 0;
}

static int relu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dinp[i] = inp[i] > 0 ? dout[i] : 0;
    return 0;
}

static int swiglu_forward(float *out, const float *gate, const float *up, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(gate[i] * sigmoid(gate[i]) * up[i]);
    return 0;
}

static int swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                           size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double g = gate[i], s = sigmoid(g), d = dout[i], u = up[i]; /* dgate, dup may alias dout */
        if (dgate)
            dgate[i] = (float)(d * u * (s + g * s * (1.0 - s)));
        if (dup)
            dup[i] = (float)(d * g * s);
    }
    return 0;
}

static int topk_act_forward(float *out, const float *inp, int N, int C, int k)
{
    if (k < 0 || k > C)
        return lp_set_error("topk activation: k = %d with rows of %d", k, C);
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        for (int c = 0; c < C; c++) {
            int ahead = 0;
            for (int j = 0; j < C; j++)
                ahead += x[j] > x[c] || (x[j] == x[c] && j < c);
            out[(size_t)n * C + c] = ahead < k && x[c] > 0 ? x[c] : 0;
        }
    }
    return 0;
}

static int topk_act_backward(float *dinp, const float *dout, const float *out, int N, int C)
{
    for (size_t i = 0; i < (size_t)N * C; i++)
        dinp[i] = out[i] > 0 ? dout[i] : 0;
    return 0;
}

static int jumprelu_forward(float *out, const float *inp, const float *threshold, int N, int C)
{
    for (size_t i = 0; i < (size_t)N * C; i++)
        out[i] = inp[i] > threshold[i % C] ? inp[i] : 0;
    return 0;
}

static int jumprelu_backward(float *dinp, float *dthreshold, const float *dout, const float *inp,
                             const float *threshold, int N, int C, float bandwidth)
{
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int n = 0; n < N; n++) {
            size_t i = (size_t)n * C + c;
            double u = (inp[i] - (double)threshold[c]) / bandwidth, d = dout[i]; /* dinp may alias dout */
            if (dinp)
                dinp[i] = inp[i] > threshold[c] ? (float)d : 0;
            if (u > -0.5 && u < 0.5)
                s += -(double)threshold[c] / bandwidth * d;
        }
        if (dthreshold)
            dthreshold[c] += (float)s;
    }
    return 0;
}

void lp_ref_fill_activation(lp_ops *t)
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
