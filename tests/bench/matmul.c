/* bench_matmul: GFLOP/s of loupe's matmul (the CPU op table, and the CUDA one when a GPU is
 * present) against the raw library call it wraps (cblas_sgemm, cublasSgemm), same shapes,
 * same run, on the OpenBLAS core a loupe kernel runs (bench_blas_start). One JSON object per line:
 *   {"bench": "matmul 1024x768x2304", "device": "cpu", "blas_core": "SkylakeX", "gflops": .., "sgemm_gflops": .., "ratio": ..}
 * Shapes are M x K x N: 1024 rows against GPT-2 small's weights, and squares. Each number is
 * the median of several timed repeats after a warm-up; the two calls alternate so that noise
 * from other processes hits both alike. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"
#include "core/blas_core.h"
#include "core/error.h"
#include "device.h"
#include "ops/ops.h"
#include "rng.h"
#ifdef LOUPE_BENCH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct {
    int M, K, N;
} shape;

#define MAXREP 15

static void bench_cpu(shape s, float *a, float *b, float *c)
{
    const lp_ops *ops = lp_cpu_ops();
    double flops = 2.0 * s.M * s.K * s.N;
    int reps = flops > 2e10 ? 3 : flops > 4e9 ? 5 : 9;
    double tl[MAXREP], tr[MAXREP];
    /* warm-up both */
    ops->matmul_forward(c, a, b, NULL, 1, s.M, s.K, s.N, 0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.M, s.N, s.K, 1.0f, a, s.K, b, s.N, 0.0f, c, s.N);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (ops->matmul_forward(c, a, b, NULL, 1, s.M, s.K, s.N, 0) < 0)
            fprintf(stderr, "matmul failed: %s\n", lp_last_error());
        double t1 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.M, s.N, s.K, 1.0f, a, s.K, b, s.N, 0.0f, c, s.N);
        double t2 = now();
        tl[r] = t1 - t0;
        tr[r] = t2 - t1;
    }
    double gl = flops / median(tl, reps) * 1e-9, gr = flops / median(tr, reps) * 1e-9;
    printf("{\"bench\": \"matmul %dx%dx%d\", \"device\": \"cpu\", \"threads\": %d, \"blas_core\": \"%s\", "
           "\"gflops\": %.2f, \"sgemm_gflops\": %.2f, \"ratio\": %.3f}\n",
           s.M, s.K, s.N, lp_get_threads(), lp_blas_core(), gl, gr, gl / gr);
    fflush(stdout);
}

#ifdef LOUPE_BENCH_CUDA
static void bench_cuda(shape s, const float *ha, const float *hb)
{
    const lp_backend *be = lp_backend_get(LP_DEVICE_CUDA);
    size_t na = (size_t)s.M * s.K, nb = (size_t)s.K * s.N, nc = (size_t)s.M * s.N;
    float *a = be->alloc(na * 4, "bench"), *b = be->alloc(nb * 4, "bench"), *c = be->alloc(nc * 4, "bench");
    cublasHandle_t h;
    if (!a || !b || !c || cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cuda bench setup failed: %s\n", lp_last_error());
        return;
    }
    be->to_device(a, ha, na * 4);
    be->to_device(b, hb, nb * 4);
    double flops = 2.0 * s.M * s.K * s.N, tl[MAXREP], tr[MAXREP];
    float one = 1.0f, zero = 0.0f;
    int reps = 15, inner = 10;
    /* row-major C = A B is column-major C^T = B^T A^T */
    for (int r = -1; r < reps; r++) {
        be->synchronize();
        double t0 = now();
        for (int i = 0; i < inner; i++)
            be->ops->matmul_forward(c, a, b, NULL, 1, s.M, s.K, s.N, 0);
        be->synchronize();
        double t1 = now();
        for (int i = 0; i < inner; i++)
            cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, s.N, s.M, s.K, &one, b, s.N, a, s.K, &zero, c, s.N);
        cudaDeviceSynchronize();
        double t2 = now();
        if (r >= 0) {
            tl[r] = (t1 - t0) / inner;
            tr[r] = (t2 - t1) / inner;
        }
    }
    double gl = flops / median(tl, reps) * 1e-9, gr = flops / median(tr, reps) * 1e-9;
    printf("{\"bench\": \"matmul %dx%dx%d\", \"device\": \"cuda\", \"gflops\": %.1f, \"sgemm_gflops\": %.1f, "
           "\"ratio\": %.3f}\n",
           s.M, s.K, s.N, gl, gr, gl / gr);
    fflush(stdout);
    cublasDestroy(h);
    be->free(a);
    be->free(b);
    be->free(c);
}
#endif

int main(int argc, char **argv)
{
    bench_blas_start(argv);
    shape shapes[] = {{1024, 768, 2304}, {1024, 768, 3072}, {1024, 3072, 768},
                      {1024, 768, 50257}, {1024, 1024, 1024}, {2048, 2048, 2048}};
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    lp_set_threads(argc > 1 ? atoi(argv[1]) : 0);
    lp_rng g;
    lp_rng_seed(&g, 1);
    for (int i = 0; i < ns; i++) {
        shape s = shapes[i];
        size_t na = (size_t)s.M * s.K, nb = (size_t)s.K * s.N, nc = (size_t)s.M * s.N;
        float *a = malloc(na * 4), *b = malloc(nb * 4), *c = malloc(nc * 4);
        if (!a || !b || !c) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        for (size_t j = 0; j < na; j++)
            a[j] = lp_rng_uniform(&g) - 0.5f;
        for (size_t j = 0; j < nb; j++)
            b[j] = lp_rng_uniform(&g) - 0.5f;
        bench_cpu(s, a, b, c);
#ifdef LOUPE_BENCH_CUDA
        if (lp_device_available(LP_DEVICE_CUDA))
            bench_cuda(s, a, b);
#endif
        free(a);
        free(b);
        free(c);
    }
    return 0;
}
