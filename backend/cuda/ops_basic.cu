// Elementwise, layout, reduction, selection, embedding, loss and optimizer kernels. Simple
// one-thread-per-output kernels where the work is memory-bound; block reductions per row
// for the loss.
#include <math.h>

#include "common.cuh"

struct dims {
    int nd;
    int64_t shape[LP_BIN_MAX_DIMS], sa[LP_BIN_MAX_DIMS], sb[LP_BIN_MAX_DIMS];
};

__device__ static inline void offsets(const dims &d, size_t e, int64_t *oa, int64_t *ob)
{
    int64_t a = 0, b = 0;
    for (int i = d.nd - 1; i >= 0; i--) {
        int64_t k = (int64_t)(e % (size_t)d.shape[i]);
        e /= (size_t)d.shape[i];
        a += k * d.sa[i];
        b += k * d.sb[i];
    }
    *oa = a;
    *ob = b;
}

__global__ void k_fill(float *o, float v, size_t n) { FOR_N(i, n) o[i] = v; }

__global__ void k_strided(float *out, const float *in, dims d, size_t n)
{
    FOR_N(i, n)
    {
        int64_t oa, ob;
        offsets(d, i, &oa, &ob);
        out[i] = in[oa];
    }
}

__global__ void k_binary(float *out, const float *a, const float *b, int op, dims d, size_t n)
{
    FOR_N(i, n)
    {
        int64_t oa, ob;
        offsets(d, i, &oa, &ob);
        float x = a[oa], y = b[ob];
        out[i] = op == LP_BIN_ADD ? x + y : op == LP_BIN_SUB ? x - y : op == LP_BIN_MUL ? x * y : x / y;
    }
}

__global__ void k_affine(float *o, const float *a, float al, float be, size_t n) { FOR_N(i, n) o[i] = a[i] * al + be; }

static size_t count(int nd, const int64_t *shape)
{
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= (size_t)shape[i];
    return n;
}

static int fill(float *out, float v, size_t n)
{
    k_fill<<<blocks_for(n), 256>>>(out, v, n);
    return LAUNCHED("fill");
}

static int strided_copy(float *out, const float *inp, int nd, const int64_t *shape, const int64_t *strides)
{
    dims d = {};
    d.nd = nd;
    for (int i = 0; i < nd; i++)
        d.shape[i] = shape[i], d.sa[i] = strides[i];
    size_t n = count(nd, shape);
    if (n)
        k_strided<<<blocks_for(n), 256>>>(out, inp, d, n);
    return LAUNCHED("strided copy");
}

static int binary_forward(float *out, const float *a, const float *b, int op, int nd, const int64_t *shape,
                          const int64_t *sa, const int64_t *sb)
{
    dims d = {};
    d.nd = nd;
    for (int i = 0; i < nd; i++)
        d.shape[i] = shape[i], d.sa[i] = sa[i], d.sb[i] = sb[i];
    size_t n = count(nd, shape);
    if (n)
        k_binary<<<blocks_for(n), 256>>>(out, a, b, op, d, n);
    return LAUNCHED("binary op");
}

static int affine_forward(float *out, const float *a, float alpha, float beta, size_t n)
{
    k_affine<<<blocks_for(n), 256>>>(out, a, alpha, beta, n);
    return LAUNCHED("affine");
}

__global__ void k_reduce(float *out, const float *inp, int64_t outer, int64_t n, int64_t inner, int op)
{
    FOR_N(i, (size_t)(outer * inner))
    {
        int64_t o = (int64_t)i / inner, j = (int64_t)i % inner;
        const float *x = inp + o * n * inner + j;
        double s = (op == LP_REDUCE_MAX || op == LP_REDUCE_MIN) ? x[0] : 0.0;
        for (int64_t k = 0; k < n; k++) {
            double v = x[k * inner];
            if (op == LP_REDUCE_MAX)
                s = v > s ? v : s;
            else if (op == LP_REDUCE_MIN)
                s = v < s ? v : s;
            else
                s += op == LP_REDUCE_NORM ? v * v : v;
        }
        out[i] = (float)(op == LP_REDUCE_MEAN ? s / (double)n : op == LP_REDUCE_NORM ? sqrt(s) : s);
    }
}

static int reduce_forward(float *out, const float *inp, int64_t outer, int64_t n, int64_t inner, int op)
{
    k_reduce<<<blocks_for((size_t)(outer * inner)), 256>>>(out, inp, outer, n, inner, op);
    return LAUNCHED("reduce");
}

__global__ void k_argmax(int32_t *idx, const float *inp, int64_t outer, int64_t n, int64_t inner)
{
    FOR_N(i, (size_t)(outer * inner))
    {
        int64_t o = (int64_t)i / inner, j = (int64_t)i % inner, best = 0;
        const float *x = inp + o * n * inner + j;
        for (int64_t k = 1; k < n; k++)
            if (x[k * inner] > x[best * inner])
                best = k;
        idx[i] = (int32_t)best;
    }
}

static int argmax_forward(int32_t *idx, const float *inp, int64_t outer, int64_t n, int64_t inner)
{
    k_argmax<<<blocks_for((size_t)(outer * inner)), 256>>>(idx, inp, outer, n, inner);
    return LAUNCHED("argmax");
}

// One thread per row: insertion into the sorted output row, O(C k). Fine for the k of
// next-token tables and SAE activations; a block-wide selection would be faster for big k.
__global__ void k_topk(float *vals, int32_t *idx, const float *inp, int64_t R, int64_t C, int64_t k)
{
    FOR_N(r, (size_t)R)
    {
        const float *x = inp + r * C;
        float *v = vals + r * k;
        int32_t *ix = idx + r * k;
        int64_t have = 0;
        for (int64_t i = 0; i < C; i++) {
            float xi = x[i];
            if (have == k && !(xi > v[k - 1]))
                continue; // equal values keep the lower index already there
            int64_t p = have < k ? have++ : k - 1;
            while (p > 0 && xi > v[p - 1]) {
                v[p] = v[p - 1];
                ix[p] = ix[p - 1];
                p--;
            }
            v[p] = xi;
            ix[p] = (int32_t)i;
        }
    }
}

static int topk_forward(float *vals, int32_t *idx, const float *inp, int64_t R, int64_t C, int64_t k)
{
    if (k < 0 || k > C)
        return lp_set_error("topk: k = %lld with rows of %lld", (long long)k, (long long)C);
    if (k == 0 || R == 0)
        return 0;
    k_topk<<<blocks_for((size_t)R, 64), 64>>>(vals, idx, inp, R, C, k);
    return LAUNCHED("topk");
}

__global__ void k_cosine(float *out, const float *a, const float *b, int64_t R, int64_t C, float eps)
{
    FOR_N(r, (size_t)R)
    {
        float d = 0, nx = 0, ny = 0;
        for (int64_t i = 0; i < C; i++) {
            float x = a[r * C + i], y = b[r * C + i];
            d += x * y, nx += x * x, ny += y * y;
        }
        float den = sqrtf(nx) * sqrtf(ny);
        out[r] = d / (den > eps ? den : eps);
    }
}

static int cosine_forward(float *out, const float *a, const float *b, int64_t R, int64_t C, float eps)
{
    k_cosine<<<blocks_for((size_t)R), 256>>>(out, a, b, R, C, eps);
    return LAUNCHED("cosine");
}

// ---- embedding ----

__global__ void k_embed(float *out, const int32_t *ids, const float *table, int N, int C, int V, int *bad)
{
    FOR_N(i, (size_t)N * C)
    {
        int n = (int)(i / C), id = ids[n];
        if (id < 0 || id >= V) {
            atomicCAS(bad, 0, n + 1);
            out[i] = 0;
        } else {
            out[i] = table[(size_t)id * C + i % C];
        }
    }
}

__global__ void k_embed_back(float *dtable, const float *dout, const int32_t *ids, int N, int C, int V, int *bad)
{
    FOR_N(i, (size_t)N * C)
    {
        int n = (int)(i / C), id = ids[n];
        if (id < 0 || id >= V)
            atomicCAS(bad, 0, n + 1);
        else
            atomicAdd(&dtable[(size_t)id * C + i % C], dout[i]);
    }
}

static int id_error(const int32_t *ids, int V, const char *what)
{
    int bad = 0;
    if (lp_cuda_read_flag(&bad) < 0)
        return -1;
    if (!bad)
        return 0;
    int32_t id = 0;
    cudaMemcpy(&id, ids + bad - 1, sizeof id, cudaMemcpyDeviceToHost);
    return lp_set_error("%s: id %d at position %d out of range [0, %d)", what, id, bad - 1, V);
}

static int embed_forward(float *out, const int32_t *ids, const float *table, int N, int C, int V)
{
    int *flag = lp_cuda_flag();
    k_embed<<<blocks_for((size_t)N * C), 256>>>(out, ids, table, N, C, V, flag);
    return LAUNCHED("embedding") < 0 ? -1 : id_error(ids, V, "embedding");
}

static int embed_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C, int V)
{
    int *flag = lp_cuda_flag();
    k_embed_back<<<blocks_for((size_t)N * C), 256>>>(dtable, dout, ids, N, C, V, flag);
    return LAUNCHED("embedding backward") < 0 ? -1 : id_error(ids, V, "embedding");
}

// ---- cross-entropy: one block per row ----

__global__ void k_ce(float *losses, float *probs, const float *logits, const int32_t *targets, int V, int *bad)
{
    int n = blockIdx.x, tg = targets[n];
    const float *x = logits + (size_t)n * V;
    float *p = probs + (size_t)n * V, m = -INFINITY, s = 0;
    for (int j = threadIdx.x; j < V; j += blockDim.x)
        m = fmaxf(m, x[j]);
    m = block_reduce(m, 1);
    for (int j = threadIdx.x; j < V; j += blockDim.x)
        s += expf(x[j] - m);
    s = block_reduce(s, 0);
    // the loss reads x[tg] before any thread writes p (which may alias x)
    if (threadIdx.x == 0) {
        if (tg < -1 || tg >= V)
            atomicCAS(bad, 0, n + 1);
        losses[n] = (tg < 0 || tg >= V) ? 0.0f : logf(s) + m - x[tg];
    }
    __syncthreads();
    for (int j = threadIdx.x; j < V; j += blockDim.x)
        p[j] = expf(x[j] - m) / s;
}

__global__ void k_ce_back(float *dlogits, const float *dlosses, const float *probs, const int32_t *targets, int N,
                          int V)
{
    FOR_N(i, (size_t)N * V)
    {
        int n = (int)(i / V), j = (int)(i % V), tg = targets[n];
        float g = (tg < 0 || tg >= V) ? 0.0f : dlosses[n];
        dlogits[i] = (probs[i] - (j == tg ? 1.0f : 0.0f)) * g;
    }
}

static int ce_error(const int32_t *targets, int V)
{
    int bad = 0;
    if (lp_cuda_read_flag(&bad) < 0)
        return -1;
    if (!bad)
        return 0;
    int32_t t = 0;
    cudaMemcpy(&t, targets + bad - 1, sizeof t, cudaMemcpyDeviceToHost);
    return lp_set_error("cross-entropy: target %d at position %d out of range [0, %d)", t, bad - 1, V);
}

static int crossentropy_forward(float *losses, float *probs, const float *logits, const int32_t *targets, int N,
                                int V)
{
    if (N == 0)
        return 0;
    int *flag = lp_cuda_flag();
    k_ce<<<N, 256>>>(losses, probs, logits, targets, V, flag);
    return LAUNCHED("cross-entropy") < 0 ? -1 : ce_error(targets, V);
}

static int crossentropy_backward(float *dlogits, const float *dlosses, const float *probs, const int32_t *targets,
                                 int N, int V)
{
    k_ce_back<<<blocks_for((size_t)N * V), 256>>>(dlogits, dlosses, probs, targets, N, V);
    return LAUNCHED("cross-entropy backward");
}

// ---- AdamW ----

__global__ void k_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                        float eps, float wd, float c1, float c2)
{
    FOR_N(i, n)
    {
        float gi = g[i];
        float mi = m[i] = b1 * m[i] + (1.0f - b1) * gi;
        float vi = v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        p[i] -= lr * ((mi / c1) / (sqrtf(vi / c2) + eps) + wd * p[i]);
    }
}

static int adamw_step(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1,
                      float beta2, float eps, float weight_decay, int t)
{
    if (t < 1)
        return lp_set_error("adamw: step %d (steps count from 1)", t);
    float c1 = 1.0f - powf(beta1, (float)t), c2 = 1.0f - powf(beta2, (float)t);
    k_adamw<<<blocks_for(n), 256>>>(params, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, c1, c2);
    return LAUNCHED("adamw");
}

void lp_cuda_fill_basic(lp_ops *t)
{
    t->fill = fill;
    t->strided_copy = strided_copy;
    t->binary_forward = binary_forward;
    t->affine_forward = affine_forward;
    t->reduce_forward = reduce_forward;
    t->argmax_forward = argmax_forward;
    t->topk_forward = topk_forward;
    t->cosine_forward = cosine_forward;
    t->embed_forward = embed_forward;
    t->embed_backward = embed_backward;
    t->crossentropy_forward = crossentropy_forward;
    t->crossentropy_backward = crossentropy_backward;
    t->adamw_step = adamw_step;
}
