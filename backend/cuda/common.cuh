// Shared by backend/cuda/*.cu: error checking, launch sizes, the per-file table fillers.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "core/error.h"
#include "device.h"
}
#include "ops/ops.h"

// 0, or -1 with "cuda: <what>: <error>" set (LP_ERR_NOMEM when the GPU's memory ran out,
// else LP_ERR_DEVICE).
static inline int cuda_check(cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return 0;
    return lp_set_error_code(e == cudaErrorMemoryAllocation ? LP_ERR_NOMEM : LP_ERR_DEVICE, "cuda: %s: %s", what,
                             cudaGetErrorString(e));
}
#define LAUNCHED(what) cuda_check(cudaGetLastError(), what)

static inline unsigned blocks_for(size_t n, unsigned threads = 256)
{
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 2147483647u ? 2147483647u : (b ? b : 1));
}

// grid-stride loop over n items
#define FOR_N(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

cublasHandle_t lp_cuda_blas(void);
// Error flag kernels raise (a token out of range): cleared, then read after the kernel.
int *lp_cuda_flag(void);
int lp_cuda_read_flag(int *value);

void lp_cuda_fill_basic(lp_ops *t);
void lp_cuda_fill_nn(lp_ops *t);
void lp_cuda_fill_attention(lp_ops *t);

// Sum (is_max 0) or max (1) of v over the block; every thread gets the result.
__device__ static inline float block_reduce(float v, int is_max)
{
    __shared__ float sh[32];
    for (int o = 16; o > 0; o /= 2) {
        float w = __shfl_xor_sync(0xffffffff, v, o);
        v = is_max ? fmaxf(v, w) : v + w;
    }
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
    __syncthreads();
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    v = threadIdx.x < nw ? sh[threadIdx.x] : (is_max ? -INFINITY : 0.0f);
    if (warp == 0)
        for (int o = 16; o > 0; o /= 2) {
            float w = __shfl_xor_sync(0xffffffff, v, o);
            v = is_max ? fmaxf(v, w) : v + w;
        }
    if (threadIdx.x == 0)
        sh[0] = v;
    __syncthreads();
    return sh[0];
}

