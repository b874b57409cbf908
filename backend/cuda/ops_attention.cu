// Causal grouped-query attention on cuBLAS (the query heads that share a key/value head are
// one strided batch, reading q/k/v in place through leading dimensions) with the softmax
// kernel of ops_nn.cu, and rotary embeddings.
#include <math.h>

#include "common.cuh"

extern "C" int lp_cuda_gemm_rm(bool tx, bool ty, int m, int n, int k, float alpha, const float *X, int ldx,
                               long long sx, const float *Y, int ldy, long long sy, float beta, float *Z, int ldz,
                               long long sz, int batch);
extern "C" int lp_cuda_softmax(float *out, const float *inp, int R, int T, int C, int causal);
extern "C" int lp_cuda_softmax_back(float *dinp, const float *dout, const float *out, int R, int T, int C);

#define gemm lp_cuda_gemm_rm

// q is (B,T,NH,HS), k, v are (B,T,NKV,HS), out is (B,T,NH,HS), att is (B,NH,T,T)
static int attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                             int NH, int NKV, int HS)
{
    if (NKV <= 0 || NH % NKV)
        return lp_set_error("attention: %d query heads not a multiple of %d key/value heads", NH, NKV);
    int group = NH / NKV, ldq = NH * HS, ldk = NKV * HS;
    float scale = 1.0f / sqrtf((float)HS);
    long long TT = (long long)T * T;
    for (int b = 0; b < B; b++)
        for (int kv = 0; kv < NKV; kv++) {
            size_t qo = (size_t)b * T * ldq + (size_t)kv * group * HS, ko = (size_t)b * T * ldk + (size_t)kv * HS;
            float *a = att + ((size_t)b * NH + (size_t)kv * group) * TT;
            if (gemm(false, true, T, T, HS, scale, q + qo, ldq, HS, k + ko, ldk, 0, 0.0f, a, T, TT, group) < 0)
                return -1;
        }
    if (lp_cuda_softmax(att, att, B * NH, T, T, 1) < 0)
        return -1;
    for (int b = 0; b < B; b++)
        for (int kv = 0; kv < NKV; kv++) {
            size_t qo = (size_t)b * T * ldq + (size_t)kv * group * HS, ko = (size_t)b * T * ldk + (size_t)kv * HS;
            const float *a = att + ((size_t)b * NH + (size_t)kv * group) * TT;
            if (gemm(false, false, T, HS, T, 1.0f, a, T, TT, v + ko, ldk, 0, 0.0f, out + qo, ldq, HS, group) < 0)
                return -1;
        }
    return 0;
}

static int attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, const float *att, int B, int T, int NH, int NKV, int HS)
{
    if (NKV <= 0 || NH % NKV)
        return lp_set_error("attention: %d query heads not a multiple of %d key/value heads", NH, NKV);
    int group = NH / NKV, ldq = NH * HS, ldk = NKV * HS;
    float scale = 1.0f / sqrtf((float)HS);
    long long TT = (long long)T * T;
    size_t nkv = (size_t)B * T * ldk;
    float *datt = NULL;
    if (cudaMalloc((void **)&datt, (size_t)B * NH * TT * sizeof(float) + 4) != cudaSuccess) {
        cudaGetLastError();
        char b[32];
        return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate %s for attention backward scratch on the GPU",
                            lp_format_bytes((size_t)B * NH * TT * sizeof(float), b, sizeof b));
    }
    int rc = -1;
    if (cuda_check(cudaMemset(dk, 0, nkv * sizeof(float)), "memset") < 0 ||
        cuda_check(cudaMemset(dv, 0, nkv * sizeof(float)), "memset") < 0)
        goto done;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            size_t qo = (size_t)b * T * ldq + (size_t)h * HS, ko = (size_t)b * T * ldk + (size_t)(h / group) * HS;
            const float *a = att + ((size_t)b * NH + h) * TT;
            float *d = datt + ((size_t)b * NH + h) * TT;
            if (gemm(false, true, T, T, HS, 1.0f, dout + qo, ldq, 0, v + ko, ldk, 0, 0.0f, d, T, 0, 1) < 0 ||
                gemm(true, false, T, HS, T, 1.0f, a, T, 0, dout + qo, ldq, 0, 1.0f, dv + ko, ldk, 0, 1) < 0)
                goto done;
        }
    if (lp_cuda_softmax_back(datt, datt, att, B * NH, T, T) < 0)
        goto done;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            size_t qo = (size_t)b * T * ldq + (size_t)h * HS, ko = (size_t)b * T * ldk + (size_t)(h / group) * HS;
            const float *d = datt + ((size_t)b * NH + h) * TT;
            if (gemm(false, false, T, HS, T, scale, d, T, 0, k + ko, ldk, 0, 0.0f, dq + qo, ldq, 0, 1) < 0 ||
                gemm(true, false, T, HS, T, scale, d, T, 0, q + qo, ldq, 0, 1.0f, dk + ko, ldk, 0, 1) < 0)
                goto done;
        }
    rc = 0;
done:
    cudaFree(datt);
    return rc;
}

// The pattern a constant: dv = att^T @ dout, the query heads of a kv head added in turn.
static int attention_backward_frozen(float *dv, const float *dout, const float *att, int B, int T, int NH, int NKV,
                                     int HS)
{
    if (NKV <= 0 || NH % NKV)
        return lp_set_error("attention: %d query heads not a multiple of %d key/value heads", NH, NKV);
    int group = NH / NKV, ldq = NH * HS, ldk = NKV * HS;
    long long TT = (long long)T * T;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            size_t qo = (size_t)b * T * ldq + (size_t)h * HS, ko = (size_t)b * T * ldk + (size_t)(h / group) * HS;
            const float *a = att + ((size_t)b * NH + h) * TT;
            if (gemm(true, false, T, HS, T, 1.0f, a, T, 0, dout + qo, ldq, 0, h % group ? 1.0f : 0.0f, dv + ko, ldk,
                     0, 1) < 0)
                return -1;
        }
    return 0;
}

__global__ void k_rope(float *x, int B, int T, int NH, int HS, int rot, float theta, int pos0, float sign)
{
    int half = rot / 2;
    FOR_N(e, (size_t)B * T * NH * half)
    {
        int i = (int)(e % half);
        size_t head = e / half; // (b, t, h) flattened
        int t = (int)((head / NH) % T);
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)rot);
        float ang = (float)(pos0 + t) * inv_freq, c = cosf(ang), s = sign * sinf(ang);
        float *p = x + head * HS;
        float x1 = p[i], x2 = p[i + half];
        p[i] = x1 * c - x2 * s;
        p[i + half] = x2 * c + x1 * s;
    }
}

static int rope_apply(float *out, const float *inp, int B, int T, int NH, int HS, int rot, float theta, int pos0,
                      float sign)
{
    if (rot % 2 || rot > HS || rot < 0)
        return lp_set_error("rope: rotary dims %d must be even and at most the head size %d", rot, HS);
    size_t n = (size_t)B * T * NH * HS;
    if (out != inp && cuda_check(cudaMemcpy(out, inp, n * sizeof(float), cudaMemcpyDeviceToDevice), "copy") < 0)
        return -1;
    if (rot && n)
        k_rope<<<blocks_for((size_t)B * T * NH * (rot / 2)), 256>>>(out, B, T, NH, HS, rot, theta, pos0, sign);
    return LAUNCHED("rope");
}

static int rope_forward(float *out, const float *inp, int B, int T, int NH, int HS, int rot, float theta, int pos0)
{
    return rope_apply(out, inp, B, T, NH, HS, rot, theta, pos0, 1.0f);
}

static int rope_backward(float *dinp, const float *dout, int B, int T, int NH, int HS, int rot, float theta, int pos0)
{
    return rope_apply(dinp, dout, B, T, NH, HS, rot, theta, pos0, -1.0f);
}

__global__ void k_rope_table(float *x, const float *cs, const float *sn, size_t N, int T, int NH, int HS,
                             float sign)
{
    int half = HS / 2;
    FOR_N(e, N * NH * half)
    {
        int i = (int)(e % half);
        size_t head = e / half; // (n, h) flattened
        int t = (int)((head / NH) % T);
        float c = cs[(size_t)t * half + i], s = sign * sn[(size_t)t * half + i];
        float *p = x + head * HS;
        float x1 = p[i], x2 = p[i + half];
        p[i] = x1 * c - x2 * s;
        p[i + half] = x2 * c + x1 * s;
    }
}

static int rope_table(float *x, const float *cos, const float *sin, int N, int T, int NH, int HS, float sign)
{
    if (HS % 2 || T < 1)
        return lp_set_error("rope: head size %d must be even and positions %d at least 1", HS, T);
    size_t n = (size_t)N * NH * (HS / 2);
    if (n)
        k_rope_table<<<blocks_for(n), 256>>>(x, cos, sin, (size_t)N, T, NH, HS, sign);
    return LAUNCHED("rope");
}

void lp_cuda_fill_attention(lp_ops *t)
{
    t->rope_table = rope_table;
    t->attention_forward = attention_forward;
    t->attention_backward = attention_backward;
    t->attention_backward_frozen = attention_backward_frozen;
    t->rope_forward = rope_forward;
    t->rope_backward = rope_backward;
}
