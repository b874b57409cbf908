// Layer kernels: bias add, LayerNorm, RMSNorm (one block per row), activations
// (elementwise), softmax with a causal mask (one block per row).
#include <limits.h>
#include <math.h>

#include "common.cuh"

__global__ void k_bias_add(float *out, const float *inp, const float *bias, size_t n, int C)
{
    FOR_N(i, n) out[i] = inp[i] + bias[i % C];
}

__global__ void k_bias_back(float *dinp, float *dbias, const float *dout, int N, int C)
{
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) {
        float s = 0;
        for (int n = 0; n < N; n++) {
            float g = dout[(size_t)n * C + c];
            s += g;
            if (dinp)
                dinp[(size_t)n * C + c] = g;
        }
        if (dbias)
            dbias[c] += s;
    }
}

static int bias_add_forward(float *out, const float *inp, const float *bias, int N, int C)
{
    k_bias_add<<<blocks_for((size_t)N * C), 256>>>(out, inp, bias, (size_t)N * C, C);
    return LAUNCHED("bias add");
}

static int bias_add_backward(float *dinp, float *dbias, const float *dout, int N, int C)
{
    k_bias_back<<<blocks_for((size_t)C), 256>>>(dinp, dbias, dout, N, C);
    return LAUNCHED("bias add backward");
}

__global__ void k_layernorm(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                            int C, float eps)
{
    int n = blockIdx.x;
    const float *x = inp + (size_t)n * C;
    float s = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        s += x[c];
    float m = block_reduce(s, 0) / C, v = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        v += (x[c] - m) * (x[c] - m);
    float r = rsqrtf(block_reduce(v, 0) / C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        out[(size_t)n * C + c] = (x[c] - m) * r * w[c] + (b ? b[c] : 0.0f);
    if (threadIdx.x == 0) {
        if (mean)
            mean[n] = m;
        if (rstd)
            rstd[n] = r;
    }
}

__global__ void k_layernorm_back(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                 const float *w, const float *mean, const float *rstd, int C)
{
    int n = blockIdx.x;
    const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
    float m = mean[n], r = rstd[n], a = 0, b = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float dn = g[c] * w[c];
        a += dn;
        b += dn * (x[c] - m) * r;
    }
    a = block_reduce(a, 0) / C;
    b = block_reduce(b, 0) / C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float xh = (x[c] - m) * r;
        if (db)
            atomicAdd(&db[c], g[c]);
        if (dw)
            atomicAdd(&dw[c], xh * g[c]);
        if (dinp)
            dinp[(size_t)n * C + c] = r * (g[c] * w[c] - a - xh * b);
    }
}

static int layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                             const float *bias, int N, int C, float eps)
{
    if (N)
        k_layernorm<<<N, 256>>>(out, mean, rstd, inp, weight, bias, C, eps);
    return LAUNCHED("layernorm");
}

static int layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                              const float *weight, const float *mean, const float *rstd, int N, int C)
{
    if (N)
        k_layernorm_back<<<N, 256>>>(dinp, dweight, dbias, dout, inp, weight, mean, rstd, C);
    return LAUNCHED("layernorm backward");
}

__global__ void k_rmsnorm(float *out, float *rstd, const float *inp, const float *w, int C, float eps)
{
    int n = blockIdx.x;
    const float *x = inp + (size_t)n * C;
    float s = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        s += x[c] * x[c];
    float r = rsqrtf(block_reduce(s, 0) / C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        out[(size_t)n * C + c] = x[c] * r * w[c];
    if (threadIdx.x == 0 && rstd)
        rstd[n] = r;
}

__global__ void k_rmsnorm_back(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                               const float *rstd, int C)
{
    int n = blockIdx.x;
    const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
    float r = rstd[n], d = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        d += g[c] * w[c] * x[c];
    float k = block_reduce(d, 0) * r * r * r / C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        if (dw)
            atomicAdd(&dw[c], g[c] * x[c] * r);
        if (dinp)
            dinp[(size_t)n * C + c] = r * g[c] * w[c] - x[c] * k;
    }
}

static int rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps)
{
    if (N)
        k_rmsnorm<<<N, 256>>>(out, rstd, inp, weight, C, eps);
    return LAUNCHED("rmsnorm");
}

static int rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                            const float *rstd, int N, int C)
{
    if (N)
        k_rmsnorm_back<<<N, 256>>>(dinp, dweight, dout, inp, weight, rstd, C);
    return LAUNCHED("rmsnorm backward");
}

// rstd a constant (attribution's frozen normalisation): the norms are linear in inp
__global__ void k_layernorm_back_frozen(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                        const float *w, const float *mean, const float *rstd, int C)
{
    int n = blockIdx.x;
    const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
    float m = mean[n], r = rstd[n], a = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        a += g[c] * w[c];
    a = block_reduce(a, 0) / C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        if (db)
            atomicAdd(&db[c], g[c]);
        if (dw)
            atomicAdd(&dw[c], (x[c] - m) * r * g[c]);
        if (dinp)
            dinp[(size_t)n * C + c] = r * (g[c] * w[c] - a);
    }
}

__global__ void k_rmsnorm_back_frozen(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                                      const float *rstd, size_t n, int C)
{
    FOR_N(i, n)
    {
        int c = (int)(i % C);
        float r = rstd[i / C];
        if (dw)
            atomicAdd(&dw[c], dout[i] * inp[i] * r);
        if (dinp)
            dinp[i] = r * dout[i] * w[c];
    }
}

static int layernorm_backward_frozen(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                     const float *weight, const float *mean, const float *rstd, int N, int C)
{
    if (N)
        k_layernorm_back_frozen<<<N, 256>>>(dinp, dweight, dbias, dout, inp, weight, mean, rstd, C);
    return LAUNCHED("layernorm backward (frozen)");
}

static int rmsnorm_backward_frozen(float *dinp, float *dweight, const float *dout, const float *inp,
                                   const float *weight, const float *rstd, int N, int C)
{
    size_t n = (size_t)N * C;
    if (n)
        k_rmsnorm_back_frozen<<<blocks_for(n), 256>>>(dinp, dweight, dout, inp, weight, rstd, n, C);
    return LAUNCHED("rmsnorm backward (frozen)");
}

// ---- activations ----

#define GELU_K 0.7978845608028654f
__device__ static inline float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void k_gelu(float *o, const float *x, size_t n, int form)
{
    FOR_N(i, n)
    {
        float v = x[i];
        o[i] = form == LP_GELU_ERF ? 0.5f * v * (1.0f + erff(v * 0.7071067811865476f))
                                   : 0.5f * v * (1.0f + tanhf(GELU_K * (v + 0.044715f * v * v * v)));
    }
}

__global__ void k_gelu_back(float *d, const float *g, const float *x, size_t n, int form)
{
    FOR_N(i, n)
    {
        float v = x[i], r;
        if (form == LP_GELU_ERF) {
            r = 0.5f * (1.0f + erff(v * 0.7071067811865476f)) + v * expf(-0.5f * v * v) * 0.3989422804014327f;
        } else {
            float t = tanhf(GELU_K * (v + 0.044715f * v * v * v));
            r = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
        }
        d[i] = r * g[i];
    }
}

__global__ void k_silu(float *o, const float *x, size_t n) { FOR_N(i, n) o[i] = x[i] * sigm(x[i]); }
__global__ void k_silu_back(float *d, const float *g, const float *x, size_t n)
{
    FOR_N(i, n)
    {
        float s = sigm(x[i]);
        d[i] = g[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}
__global__ void k_relu(float *o, const float *x, size_t n) { FOR_N(i, n) o[i] = x[i] > 0.0f ? x[i] : 0.0f; }
__global__ void k_relu_back(float *d, const float *g, const float *x, size_t n)
{
    FOR_N(i, n) d[i] = x[i] > 0.0f ? g[i] : 0.0f;
}
__global__ void k_swiglu(float *o, const float *a, const float *u, size_t n) { FOR_N(i, n) o[i] = a[i] * sigm(a[i]) * u[i]; }
__global__ void k_swiglu_back(float *dg, float *du, const float *g, const float *a, const float *u, size_t n)
{
    FOR_N(i, n)
    {
        // everything read before anything is written: dg or du may alias g (ops.h)
        float gi = g[i], ai = a[i], ui = u[i], s = sigm(ai);
        if (dg)
            dg[i] = gi * ui * s * (1.0f + ai * (1.0f - s));
        if (du)
            du[i] = gi * ai * s;
    }
}
__global__ void k_jump(float *o, const float *x, const float *th, size_t n, int C)
{
    FOR_N(i, n) o[i] = x[i] > th[i % C] ? x[i] : 0.0f;
}
__global__ void k_jump_back(float *d, float *dth, const float *g, const float *x, const float *th, size_t n, int C,
                            float bw)
{
    FOR_N(i, n)
    {
        float t = th[i % C], xi = x[i], gi = g[i]; // d may alias g
        if (d)
            d[i] = xi > t ? gi : 0.0f;
        if (dth && fabsf(xi - t) < 0.5f * bw)
            atomicAdd(&dth[i % C], -t / bw * gi);
    }
}
__global__ void k_mask_back(float *d, const float *g, const float *out, size_t n)
{
    FOR_N(i, n) d[i] = out[i] > 0.0f ? g[i] : 0.0f;
}

static int gelu_forward(float *o, const float *x, size_t n, int form)
{
    k_gelu<<<blocks_for(n), 256>>>(o, x, n, form);
    return LAUNCHED("gelu");
}
static int gelu_backward(float *d, const float *g, const float *x, size_t n, int form)
{
    k_gelu_back<<<blocks_for(n), 256>>>(d, g, x, n, form);
    return LAUNCHED("gelu backward");
}
static int silu_forward(float *o, const float *x, size_t n)
{
    k_silu<<<blocks_for(n), 256>>>(o, x, n);
    return LAUNCHED("silu");
}
static int silu_backward(float *d, const float *g, const float *x, size_t n)
{
    k_silu_back<<<blocks_for(n), 256>>>(d, g, x, n);
    return LAUNCHED("silu backward");
}
static int relu_forward(float *o, const float *x, size_t n)
{
    k_relu<<<blocks_for(n), 256>>>(o, x, n);
    return LAUNCHED("relu");
}
static int relu_backward(float *d, const float *g, const float *x, size_t n)
{
    k_relu_back<<<blocks_for(n), 256>>>(d, g, x, n);
    return LAUNCHED("relu backward");
}
static int swiglu_forward(float *o, const float *a, const float *u, size_t n)
{
    k_swiglu<<<blocks_for(n), 256>>>(o, a, u, n);
    return LAUNCHED("swiglu");
}
static int swiglu_backward(float *dg, float *du, const float *g, const float *a, const float *u, size_t n)
{
    k_swiglu_back<<<blocks_for(n), 256>>>(dg, du, g, a, u, n);
    return LAUNCHED("swiglu backward");
}
static int jumprelu_forward(float *o, const float *x, const float *th, int N, int C)
{
    k_jump<<<blocks_for((size_t)N * C), 256>>>(o, x, th, (size_t)N * C, C);
    return LAUNCHED("jumprelu");
}
static int jumprelu_backward(float *d, float *dth, const float *g, const float *x, const float *th, int N, int C,
                             float bw)
{
    k_jump_back<<<blocks_for((size_t)N * C), 256>>>(d, dth, g, x, th, (size_t)N * C, C, bw);
    return LAUNCHED("jumprelu backward");
}
// ---- top-k activation: one block per row ----
// Keeps the k largest entries of each row (ties: the lower index first, as the reference
// orders them) and zeroes the rest and the negatives. Round r finds the largest entry that
// comes strictly after round r-1's pick in that order, so no marks are needed; the k-th
// pick is the row's threshold. O(k C / threads) per row: fine for SAE widths and small k.

__device__ inline bool topk_before(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

__global__ void k_topk_act(float *out, const float *inp, int C, int k)
{
    __shared__ float sv[256];
    __shared__ int si[256];
    const float *x = inp + (size_t)blockIdx.x * C;
    float *o = out + (size_t)blockIdx.x * C;
    int t = threadIdx.x;
    float pv = INFINITY; // the previous pick; (+inf, -1) = none yet
    int pi = -1;
    for (int r = 0; r < k; r++) {
        float bv = -INFINITY;
        int bi = INT_MAX;
        for (int c = t; c < C; c += blockDim.x) {
            float v = x[c];
            bool after = v < pv || (v == pv && c > pi);
            if (after && topk_before(v, c, bv, bi)) {
                bv = v;
                bi = c;
            }
        }
        sv[t] = bv;
        si[t] = bi;
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if (t < s && topk_before(sv[t + s], si[t + s], sv[t], si[t])) {
                sv[t] = sv[t + s];
                si[t] = si[t + s];
            }
            __syncthreads();
        }
        bool none = si[0] == INT_MAX; // fewer than k comparable entries (NaNs)
        if (!none) {
            pv = sv[0];
            pi = si[0];
        }
        __syncthreads();
        if (none)
            break;
    }
    for (int c = t; c < C; c += blockDim.x) {
        float v = x[c];
        bool kept = k > 0 && (v > pv || (v == pv && c <= pi));
        o[c] = kept && v > 0 ? v : 0.0f;
    }
}

static int topk_act_forward(float *o, const float *x, int N, int C, int k)
{
    if (k < 0 || k > C)
        return lp_set_error("topk activation: k = %d with rows of %d", k, C);
    if (N == 0 || C == 0)
        return 0;
    k_topk_act<<<N, 256>>>(o, x, C, k);
    return LAUNCHED("topk activation");
}

static int topk_act_backward(float *d, const float *g, const float *out, int N, int C)
{
    k_mask_back<<<blocks_for((size_t)N * C), 256>>>(d, g, out, (size_t)N * C);
    return LAUNCHED("topk activation backward");
}

// ---- softmax: one block per row ----

__global__ void k_softmax(float *out, const float *inp, int T, int C, int causal)
{
    size_t row = blockIdx.x;
    int t = (int)(row % T), valid = causal ? t + 1 + (C - T) : C;
    valid = valid < 0 ? 0 : valid > C ? C : valid;
    const float *x = inp + row * C;
    float *y = out + row * C, m = -INFINITY, s = 0;
    for (int j = threadIdx.x; j < valid; j += blockDim.x)
        m = fmaxf(m, x[j]);
    m = block_reduce(m, 1);
    for (int j = threadIdx.x; j < valid; j += blockDim.x)
        s += expf(x[j] - m);
    s = block_reduce(s, 0);
    for (int j = threadIdx.x; j < C; j += blockDim.x)
        y[j] = j < valid ? expf(x[j] - m) / s : 0.0f;
}

__global__ void k_softmax_back(float *dinp, const float *dout, const float *out, int C)
{
    size_t row = blockIdx.x;
    const float *y = out + row * C, *g = dout + row * C;
    float d = 0;
    for (int j = threadIdx.x; j < C; j += blockDim.x)
        d += y[j] * g[j];
    d = block_reduce(d, 0);
    for (int j = threadIdx.x; j < C; j += blockDim.x)
        dinp[row * C + j] = y[j] * (g[j] - d);
}

extern "C" int lp_cuda_softmax(float *out, const float *inp, int R, int T, int C, int causal)
{
    if (R > 0 && T > 0)
        k_softmax<<<(unsigned)((size_t)R * T), 256>>>(out, inp, T, C, causal);
    return LAUNCHED("softmax");
}

extern "C" int lp_cuda_softmax_back(float *dinp, const float *dout, const float *out, int R, int T, int C)
{
    if (R > 0 && T > 0)
        k_softmax_back<<<(unsigned)((size_t)R * T), 256>>>(dinp, dout, out, C);
    return LAUNCHED("softmax backward");
}

void lp_cuda_fill_nn(lp_ops *t)
{
    t->bias_add_forward = bias_add_forward;
    t->bias_add_backward = bias_add_backward;
    t->layernorm_forward = layernorm_forward;
    t->layernorm_backward = layernorm_backward;
    t->rmsnorm_forward = rmsnorm_forward;
    t->rmsnorm_backward = rmsnorm_backward;
    t->layernorm_backward_frozen = layernorm_backward_frozen;
    t->rmsnorm_backward_frozen = rmsnorm_backward_frozen;
    t->gelu_forward = gelu_forward;
    t->gelu_backward = gelu_backward;
    t->silu_forward = silu_forward;
    t->silu_backward = silu_backward;
    t->relu_forward = relu_forward;
    t->relu_backward = relu_backward;
    t->swiglu_forward = swiglu_forward;
    t->swiglu_backward = swiglu_backward;
    t->jumprelu_forward = jumprelu_forward;
    t->jumprelu_backward = jumprelu_backward;
    t->topk_act_forward = topk_act_forward;
    t->topk_act_backward = topk_act_backward;
    t->softmax_forward = lp_cuda_softmax;
    t->softmax_backward = lp_cuda_softmax_back;
}
