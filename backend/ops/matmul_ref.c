/* Reference matrix products: triple loops in double precision. */
#include <string.h>

#include "ops_impl.h"

#define A(i, k) (ta ? a[(size_t)(k) * M + (i)] : a[(size_t)(i) * K + (k)])
#define B(k, j) (tb ? b[(size_t)(j) * K + (k)] : b[(size_t)(k) * N + (j)])

// out is (batch,M,N), a (batch,M,K) [or (batch,K,M)], b (batch,K,N) [or (batch,N,K)], bias (N)
static int matmul_forward(float *out, const float *a0, const float *b0, const float *bias, int batch, int M,
                          int K, int N, int flags)
{
    int ta = !!(flags & LP_TRANS_A), tb = !!(flags & LP_TRANS_B);
    size_t sb = (flags & LP_SHARE_B) ? 0 : (size_t)K * N;
    for (int bt = 0; bt < batch; bt++) {
        const float *a = a0 + (size_t)bt * M * K, *b = b0 + bt * sb;
        float *o = out + (size_t)bt * M * N;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double s = bias ? bias[j] : 0.0;
                for (int k = 0; k < K; k++)
                    s += (double)A(i, k) * B(k, j);
                o[(size_t)i * N + j] = (float)((flags & LP_ACCUM) ? o[(size_t)i * N + j] + s : s);
            }
    }
    return 0;
}

static int matmul_backward(float *da0, float *db0, float *dbias, const float *dout, const float *a0,
                           const float *b0, int batch, int M, int K, int N, int flags)
{
    int ta = !!(flags & LP_TRANS_A), tb = !!(flags & LP_TRANS_B);
    size_t sb = (flags & LP_SHARE_B) ? 0 : (size_t)K * N;
    for (int bt = 0; bt < batch; bt++) {
        const float *a = a0 + (size_t)bt * M * K, *b = b0 + bt * sb, *g = dout + (size_t)bt * M * N;
        for (int i = 0; i < M && da0; i++)
            for (int k = 0; k < K; k++) {
                double s = 0;
                for (int j = 0; j < N; j++)
                    s += (double)g[(size_t)i * N + j] * B(k, j);
                float *d = da0 + (size_t)bt * M * K;
                if (ta)
                    d[(size_t)k * M + i] = (float)s;
                else
                    d[(size_t)i * K + k] = (float)s;
            }
        for (int k = 0; k < K && db0; k++)
            for (int j = 0; j < N; j++) {
                double s = 0;
                for (int i = 0; i < M; i++)
                    s += (double)A(i, k) * g[(size_t)i * N + j];
                float *d = db0 + bt * sb;
                if (tb)
                    d[(size_t)j * K + k] += (float)s;
                else
                    d[(size_t)k * N + j] += (float)s;
            }
        for (int j = 0; j < N && dbias; j++) {
            double s = 0;
            for (int i = 0; i < M; i++)
                s += g[(size_t)i * N + j];
            dbias[j] += (float)s;
        }
    }
    return 0;
}

void lp_ref_fill_matmul(lp_ops *t)
{
    t->matmul_forward = matmul_forward;
    t->matmul_backward = matmul_backward;
}
