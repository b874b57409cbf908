/* Matrix products on the CPU: OpenBLAS sgemm, one call per batch entry (or one call for the
 * whole batch when the weight is shared), split into blocks of tens of GFLOP so that an
 * interrupt is noticed within a fraction of a second. */
#include <cblas.h>
#include <string.h>

#include "core/interrupt.h"
#include "ops_impl.h"

#define CHUNK_FLOPS 3e10

static int ld(int n) { return n > 0 ? n : 1; }

/* out (M,N) [+]= op(a) @ op(b), a/b as stored. Products above CHUNK_FLOPS are split along
 * the longer of M and N, in blocks wide enough for sgemm to stay at full speed. */
static int gemm_rows(float *out, const float *a, const float *b, int M, int K, int N, int ta, int tb, float beta)
{
    if (M == 0 || N == 0)
        return 0;
    if (K == 0) {
        if (beta == 0.0f)
            memset(out, 0, (size_t)M * N * sizeof(float));
        return 0;
    }
    double flops = 2.0 * M * K * N;
    int by_cols = N >= M, len = by_cols ? N : M, step = len;
    if (flops > CHUNK_FLOPS) {
        double per = flops / len; /* flops per row (or column) */
        step = (int)(CHUNK_FLOPS / per);
        step = step < 1024 ? 1024 : (step + 63) / 64 * 64;
    }
    for (int i0 = 0; i0 < len; i0 += step) {
        if (lp_interrupt_check() < 0)
            return -1;
        int n = len - i0 < step ? len - i0 : step;
        const float *ap = a, *bp = b;
        float *op = out;
        int m = M, nn = N;
        if (by_cols) { /* columns i0.. of op(b) and out */
            bp = tb ? b + (size_t)i0 * K : b + i0;
            op = out + i0;
            nn = n;
        } else { /* rows i0.. of op(a) and out */
            ap = ta ? a + i0 : a + (size_t)i0 * K;
            op = out + (size_t)i0 * N;
            m = n;
        }
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, nn, K, 1.0f,
                    ap, ld(ta ? M : K), bp, ld(tb ? K : N), beta, op, ld(N));
    }
    return 0;
}

// out is (batch,M,N), a (batch,M,K) [or (batch,K,M)], b (batch,K,N) [or (batch,N,K)], bias (N)
static int matmul_forward(float *out, const float *a, const float *b, const float *bias, int batch, int M, int K,
                          int N, int flags)
{
    int ta = !!(flags & LP_TRANS_A), tb = !!(flags & LP_TRANS_B), share = !!(flags & LP_SHARE_B);
    float beta = (flags & LP_ACCUM) ? 1.0f : 0.0f;
    if (share && !ta) { /* one product over every row of the batch */
        M *= batch;
        batch = 1;
    }
    size_t sa = (size_t)M * K, sb = share ? 0 : (size_t)K * N, so = (size_t)M * N;
    if (bias) {
        for (size_t r = 0; r < (size_t)batch * M; r++) {
            float *o = out + r * N;
            if (beta != 0.0f)
                for (int j = 0; j < N; j++)
                    o[j] += bias[j];
            else
                memcpy(o, bias, (size_t)N * sizeof(float));
        }
        beta = 1.0f;
    }
    for (int i = 0; i < batch; i++)
        if (gemm_rows(out + i * so, a + i * sa, b + i * sb, M, K, N, ta, tb, beta) < 0)
            return -1;
    return 0;
}

// dout is (batch,M,N); da like a (overwritten), db like b and dbias (N) accumulate
static int matmul_backward(float *da, float *db, float *dbias, const float *dout, const float *a, const float *b,
                           int batch, int M, int K, int N, int flags)
{
    int ta = !!(flags & LP_TRANS_A), tb = !!(flags & LP_TRANS_B), share = !!(flags & LP_SHARE_B);
    if (share && !ta) {
        M *= batch;
        batch = 1;
    }
    size_t sa = (size_t)M * K, sb = share ? 0 : (size_t)K * N, so = (size_t)M * N;
    if (dbias)
        for (size_t r = 0; r < (size_t)batch * M; r++)
            for (int j = 0; j < N; j++)
                dbias[j] += dout[r * N + j];
    for (int i = 0; i < batch; i++) {
        if (lp_interrupt_check() < 0)
            return -1;
        const float *g = dout + i * so, *ai = a + i * sa, *bi = b + i * sb;
        if (da && M && K) {
            float *d = da + i * sa;
            if (N == 0)
                memset(d, 0, sa * sizeof(float));
            else if (!ta) /* (M,K) = dout (M,N) @ op(b)^T (N,K) */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasNoTrans : CblasTrans, M, K, N, 1.0f, g, ld(N),
                            bi, ld(tb ? K : N), 0.0f, d, ld(K));
            else /* (K,M) = op(b) (K,N) @ dout^T (N,M) */
                cblas_sgemm(CblasRowMajor, tb ? CblasTrans : CblasNoTrans, CblasTrans, K, M, N, 1.0f, bi,
                            ld(tb ? K : N), g, ld(N), 0.0f, d, ld(M));
        }
        if (db && K && N && M) {
            float *d = db + i * sb;
            if (!tb) /* (K,N) += op(a)^T (K,M) @ dout (M,N) */
                cblas_sgemm(CblasRowMajor, ta ? CblasNoTrans : CblasTrans, CblasNoTrans, K, N, M, 1.0f, ai,
                            ld(ta ? M : K), g, ld(N), 1.0f, d, ld(N));
            else /* (N,K) += dout^T (N,M) @ op(a) (M,K) */
                cblas_sgemm(CblasRowMajor, CblasTrans, ta ? CblasTrans : CblasNoTrans, N, K, M, 1.0f, g, ld(N), ai,
                            ld(ta ? M : K), 1.0f, d, ld(K));
        }
    }
    return 0;
}

void lp_cpu_fill_matmul(lp_ops *t)
{
    t->matmul_forward = matmul_forward;
    t->matmul_backward = matmul_backward;
}
