/* bench_forward: the forward pass of a GPT-2-small-shaped model with random weights (12
 * layers, d_model 768, 12 heads, vocab 50257), batch 8 x 128 tokens, on the CPU. In the same
 * run: raw cblas_sgemm GFLOP/s at the model's main product shape (the limit the forward
 * pass is compared with), the same forward with the full activation cache, and PyTorch's
 * time for the same model (transformers' GPT2LMHeadModel, tests/bench/forward_torch.py,
 * started with posix_spawn) where PyTorch is available. One JSON line:
 *   {"bench": "forward gpt2-small 8x128", "tokens_per_s", "gflops", "sgemm_gflops",
 *    "fraction_of_sgemm", "torch_tokens_per_s", "vs_torch", "cache_tokens_per_s",
 *    "cache_overhead", "threads"}
 * Times are medians of several repeats after a warm-up. LOUPE_BENCH_REPS overrides the
 * repeat count; LOUPE_BENCH_BATCH / LOUPE_BENCH_SEQ the shape. */
#include <cblas.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "device.h"
#include "model/model.h"

extern char **environ;

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

static int env_int(const char *name, int def)
{
    const char *s = getenv(name);
    return s && atoi(s) > 0 ? atoi(s) : def;
}

/* PyTorch's tokens/s from forward_torch.py, or -1 when it is unavailable. */
static double torch_tokens_per_s(int B, int T, int reps, int threads)
{
    const char *root = getenv("LOUPE_ROOT");
    char py[512], script[512], out[] = "/tmp/loupe-bench-torch-XXXXXX";
    snprintf(py, sizeof py, "%s/.venv/bin/python", root ? root : ".");
    snprintf(script, sizeof script, "%s/tests/bench/forward_torch.py", root ? root : ".");
    if (access(py, X_OK) != 0 || access(script, R_OK) != 0)
        return -1;
    int fd = mkstemp(out);
    if (fd < 0)
        return -1;
    char b[16], t[16], r[16], th[16];
    snprintf(b, sizeof b, "%d", B), snprintf(t, sizeof t, "%d", T), snprintf(r, sizeof r, "%d", reps);
    snprintf(th, sizeof th, "%d", threads);
    char *argv[] = {py, script, b, t, r, th, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, 1);
    pid_t pid;
    double v = -1;
    if (posix_spawn(&pid, py, &fa, NULL, argv, environ) == 0) {
        int st;
        waitpid(pid, &st, 0);
        FILE *f = fopen(out, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            const char *p = strstr(line, "\"torch_tokens_per_s\":");
            if (p)
                v = atof(p + strlen("\"torch_tokens_per_s\":"));
        }
        if (f)
            fclose(f);
    }
    posix_spawn_file_actions_destroy(&fa);
    close(fd);
    unlink(out);
    return v;
}

static double sgemm_gflops(int M, int K, int N, int reps)
{
    float *a = malloc(sizeof(float) * (size_t)M * K), *b = malloc(sizeof(float) * (size_t)K * N),
          *c = malloc(sizeof(float) * (size_t)M * N);
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < (size_t)K * N; i++)
        b[i] = (float)(i % 5) * 0.01f;
    double t[32];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
        t[r] = now() - t0;
    }
    free(a), free(b), free(c);
    return 2.0 * M * K * N / median(t, reps) / 1e9;
}

int main(void)
{
    int B = env_int("LOUPE_BENCH_BATCH", 8), T = env_int("LOUPE_BENCH_SEQ", 128), reps = env_int("LOUPE_BENCH_REPS", 5);
    if (reps > 31)
        reps = 31;
    int threads = lp_get_threads();
    /* PyTorch first, in its own process, before our BLAS threads are busy */
    double torch_tps = torch_tokens_per_s(B, T, reps, threads);
    lp_model_config c = {.arch = LP_ARCH_GPT2, .n_layers = 12, .d_model = 768, .n_heads = 12, .n_kv_heads = 12,
                         .d_head = 64, .d_mlp = 3072, .d_vocab = 50257, .n_ctx = 1024, .eps = 1e-5f,
                         .act = 0 /* tanh GELU */, .tied = 1, .bos = -1, .eos = -1};
    lp_model *m = lp_model_random(&c, 7);
    if (!m) {
        fprintf(stderr, "bench_forward: %s\n", lp_last_error());
        return 1;
    }
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * T);
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)((i * 2654435761u) % (unsigned)c.d_vocab);
    double tn[32], tc[32];
    lp_run r;
    lp_run_opts all = {.cache_all = 1};
    if (lp_model_run(m, tok, B, T, NULL, &r) < 0) { /* warm-up */
        fprintf(stderr, "bench_forward: %s\n", lp_last_error());
        return 1;
    }
    lp_run_clear(&r);
    for (int i = 0; i < reps; i++) { /* alternate so that noise hits both alike */
        double t0 = now();
        lp_model_run(m, tok, B, T, NULL, &r);
        tn[i] = now() - t0;
        lp_run_clear(&r);
        t0 = now();
        lp_model_run(m, tok, B, T, &all, &r);
        tc[i] = now() - t0;
        lp_run_clear(&r);
    }
    double t_plain = median(tn, reps), t_cache = median(tc, reps);
    double flops = lp_model_flops(m, B, T);
    double sg = sgemm_gflops(B * T, 768, 3072, reps);
    double gf = flops / t_plain / 1e9, tps = B * T / t_plain;
    printf("{\"bench\": \"forward gpt2-small %dx%d\", \"device\": \"cpu\", \"threads\": %d, \"tokens_per_s\": %.1f, "
           "\"gflops\": %.2f, \"sgemm_gflops\": %.2f, \"fraction_of_sgemm\": %.3f, ",
           B, T, threads, tps, gf, sg, gf / sg);
    if (torch_tps > 0)
        printf("\"torch_tokens_per_s\": %.1f, \"vs_torch\": %.3f, ", torch_tps, tps / torch_tps);
    else
        printf("\"torch_tokens_per_s\": null, \"vs_torch\": null, ");
    printf("\"cache_tokens_per_s\": %.1f, \"cache_overhead\": %.3f, \"seconds\": %.3f}\n", B * T / t_cache,
           t_cache / t_plain - 1, t_plain);
    free(tok);
    lp_model_free(m);
    return 0;
}
