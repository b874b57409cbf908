// The CUDA backend: discovery (no driver or no GPU is zero devices, never an abort), memory,
// transfers, cuBLAS products, and the op table assembled from the other .cu files.
#include <stdio.h>

#include "common.cuh"
#include "cuda_backend.h"

static cublasHandle_t blas;
static int *flag_dev;

cublasHandle_t lp_cuda_blas(void) { return blas; }
int *lp_cuda_flag(void)
{
    int zero = 0;
    cudaMemcpy(flag_dev, &zero, sizeof zero, cudaMemcpyHostToDevice);
    return flag_dev;
}
int lp_cuda_read_flag(int *value)
{
    return cuda_check(cudaMemcpy(value, flag_dev, sizeof *value, cudaMemcpyDeviceToHost), "reading the error flag");
}

static void *cu_alloc(size_t nbytes, const char *what)
{
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, nbytes ? nbytes : 4);
    if (e != cudaSuccess) {
        char b[32];
        cudaGetLastError(); // clear the sticky-free error state
        size_t free_b = 0, total = 0;
        cudaMemGetInfo(&free_b, &total);
        char f[32];
        lp_set_error_code(LP_ERR_NOMEM, "cannot allocate %s for %s on the GPU (%s free)",
                          lp_format_bytes(nbytes, b, sizeof b), what, lp_format_bytes(free_b, f, sizeof f));
        return NULL;
    }
    return p;
}
static void cu_free(void *p)
{
    if (p)
        cudaFree(p);
}
static int cu_to_device(void *dst, const void *src, size_t n)
{
    return cuda_check(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice), "copy to the GPU");
}
static int cu_to_host(void *dst, const void *src, size_t n)
{
    return cuda_check(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost), "copy from the GPU");
}
static int cu_copy(void *dst, const void *src, size_t n)
{
    return cuda_check(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToDevice), "copy on the GPU");
}
static int cu_sync(void) { return cuda_check(cudaDeviceSynchronize(), "synchronize"); }

// ---- products ----

static int blas_check(cublasStatus_t s, const char *what)
{
    return s == CUBLAS_STATUS_SUCCESS
               ? 0
               : lp_set_error_code(s == CUBLAS_STATUS_ALLOC_FAILED ? LP_ERR_NOMEM : LP_ERR_DEVICE,
                                   "cublas: %s failed (status %d)", what, (int)s);
}

// Row-major Z (m,n) = alpha op(X) (m,k) @ op(Y) (k,n) + beta Z, `batch` times with element
// strides sx, sy, sz; as column-major Z^T = op(Y)^T op(X)^T.
static int gemm_rm(bool tx, bool ty, int m, int n, int k, float alpha, const float *X, int ldx, long long sx,
                   const float *Y, int ldy, long long sy, float beta, float *Z, int ldz, long long sz, int batch)
{
    if (m == 0 || n == 0 || batch == 0)
        return 0;
    return blas_check(cublasSgemmStridedBatched(blas, ty ? CUBLAS_OP_T : CUBLAS_OP_N, tx ? CUBLAS_OP_T : CUBLAS_OP_N, n,
                                                m, k, &alpha, Y, ldy > 0 ? ldy : 1, sy, X, ldx > 0 ? ldx : 1, sx,
                                                &beta, Z, ldz > 0 ? ldz : 1, sz, batch),
                      "sgemm");
}

__global__ void k_rows_bias(float *out, const float *bias, size_t rows, int N, int accum)
{
    FOR_N(i, rows * N) out[i] = (accum ? out[i] : 0.0f) + bias[i % N];
}

__global__ void k_col_sum(float *dbias, const float *dout, size_t rows, int N)
{
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < N; j += gridDim.x * blockDim.x) {
        float s = 0;
        for (size_t r = 0; r < rows; r++)
            s += dout[r * N + j];
        dbias[j] += s;
    }
}

extern "C" int lp_cuda_gemm_rm(bool tx, bool ty, int m, int n, int k, float alpha, const float *X, int ldx,
                               long long sx, const float *Y, int ldy, long long sy, float beta, float *Z, int ldz,
                               long long sz, int batch)
{
    return gemm_rm(tx, ty, m, n, k, alpha, X, ldx, sx, Y, ldy, sy, beta, Z, ldz, sz, batch);
}

static int matmul_forward(float *out, const float *a, const float *b, const float *bias, int batch, int M, int K,
                          int N, int flags)
{
    bool ta = flags & LP_TRANS_A, tb = flags & LP_TRANS_B, share = flags & LP_SHARE_B;
    float beta = (flags & LP_ACCUM) ? 1.0f : 0.0f;
    if (share && !ta) {
        M *= batch;
        batch = 1;
    }
    if (bias) {
        size_t rows = (size_t)batch * M;
        k_rows_bias<<<blocks_for(rows * N), 256>>>(out, bias, rows, N, beta != 0.0f);
        if (LAUNCHED("bias") < 0)
            return -1;
        beta = 1.0f;
    }
    if (K == 0 && beta == 0.0f)
        return cuda_check(cudaMemset(out, 0, (size_t)batch * M * N * sizeof(float)), "memset");
    return gemm_rm(ta, tb, M, N, K, 1.0f, a, ta ? M : K, (long long)M * K, b, tb ? K : N,
                   share ? 0 : (long long)K * N, beta, out, N, (long long)M * N, batch);
}

static int matmul_backward(float *da, float *db, float *dbias, const float *dout, const float *a, const float *b,
                           int batch, int M, int K, int N, int flags)
{
    bool ta = flags & LP_TRANS_A, tb = flags & LP_TRANS_B, share = flags & LP_SHARE_B;
    if (share && !ta) {
        M *= batch;
        batch = 1;
    }
    long long sa = (long long)M * K, sb = share ? 0 : (long long)K * N, so = (long long)M * N;
    if (dbias) {
        k_col_sum<<<blocks_for((size_t)N), 256>>>(dbias, dout, (size_t)batch * M, N);
        if (LAUNCHED("dbias") < 0)
            return -1;
    }
    if (da && M && K) {
        if (N == 0) {
            if (cuda_check(cudaMemset(da, 0, (size_t)batch * sa * sizeof(float)), "memset") < 0)
                return -1;
        } else if (!ta) {
            if (gemm_rm(false, !tb, M, K, N, 1.0f, dout, N, so, b, tb ? K : N, sb, 0.0f, da, K, sa, batch) < 0)
                return -1;
        } else if (gemm_rm(tb, true, K, M, N, 1.0f, b, tb ? K : N, sb, dout, N, so, 0.0f, da, M, sa, batch) < 0) {
            return -1;
        }
    }
    if (db && K && N && M) {
        // a shared db is written by every batch entry: one call per entry, in order
        int calls = share ? batch : 1, per = share ? 1 : batch;
        for (int i = 0; i < calls; i++) {
            const float *ai = a + (share ? i * sa : 0), *gi = dout + (share ? i * so : 0);
            int rc = !tb ? gemm_rm(!ta, false, K, N, M, 1.0f, ai, ta ? M : K, sa, gi, N, so, 1.0f, db, N, sb, per)
                         : gemm_rm(true, ta, N, K, M, 1.0f, gi, N, so, ai, ta ? M : K, sa, 1.0f, db, K, sb, per);
            if (rc < 0)
                return -1;
        }
    }
    return 0;
}

static lp_ops table;
static lp_backend backend;

extern "C" const lp_backend *lp_cuda_backend_init(char *reason, size_t cap)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        const char *why = e == cudaErrorInsufficientDriver ? "no NVIDIA driver, or one older than this CUDA runtime"
                          : e == cudaErrorNoDevice || e == cudaSuccess ? "no NVIDIA GPU found"
                                                                       : cudaGetErrorString(e);
        snprintf(reason, cap, "no CUDA device (%s)", why);
        return NULL;
    }
    if ((e = cudaSetDevice(0)) != cudaSuccess || (e = cudaMalloc((void **)&flag_dev, sizeof(int))) != cudaSuccess) {
        snprintf(reason, cap, "no CUDA device (%s)", cudaGetErrorString(e));
        return NULL;
    }
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) {
        snprintf(reason, cap, "no CUDA device (cuBLAS did not start)");
        return NULL;
    }
    // full f32 products (no TF32), so that results match the CPU within f32 rounding
    cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH);
    table.matmul_forward = matmul_forward;
    table.matmul_backward = matmul_backward;
    lp_cuda_fill_basic(&table);
    lp_cuda_fill_nn(&table);
    lp_cuda_fill_attention(&table);
    backend.name = "cuda";
    backend.device = LP_DEVICE_CUDA;
    backend.alloc = cu_alloc;
    backend.free = cu_free;
    backend.to_device = cu_to_device;
    backend.to_host = cu_to_host;
    backend.copy = cu_copy;
    backend.synchronize = cu_sync;
    backend.ops = &table;
    return &backend;
}
