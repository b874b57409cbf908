/* bench_forward: the forward pass of a GPT-2-small-shaped model with random weights (12
 * layers, d_model 768, 12 heads, vocab 50257), batch 8 x 128 tokens, on the CPU. In the same
 * run: raw cblas_sgemm GFLOP/s at the model's main product shape (the limit the forward
 * pass is compared with; timed between the forward passes so that noise hits both alike),
 * the same forward with the full activation cache, and PyTorch's
 * time for the same model (transformers' GPT2LMHeadModel, tests/bench/forward_torch.py,
 * started with posix_spawn) where PyTorch is available. A first JSON line:
 *   {"bench": "forward gpt2-small 8x128", "tokens_per_s", "gflops", "sgemm_gflops",
 *    "fraction_of_sgemm", "torch_tokens_per_s", "vs_torch", "cache_tokens_per_s",
 *    "cache_overhead", "threads"}
 * Times are medians of several repeats after a warm-up. LOUPE_BENCH_REPS overrides the
 * repeat count; LOUPE_BENCH_BATCH / LOUPE_BENCH_SEQ the shape.
 *
 * A second line: greedy generation with the same model, one sequence, a prompt of
 * LOUPE_BENCH_PROMPT tokens (64) and LOUPE_BENCH_GEN new ones (64), with the key/value cache
 * (lp_model_run_cached: the prompt once, then one token per step) and without (the whole
 * sequence every step, as m:generate did before the cache):
 *   {"bench": "generate gpt2-small 64+64", "tokens_per_s", "nocache_tokens_per_s",
 *    "speedup", "same_tokens"} */
#include <cblas.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "core/error.h"
#include "device.h"
#include "model/model.h"

/* The sgemm reference: the model's main product shape, timed between the forward passes
 * (so that a noisy machine slows both alike). */
typedef struct {
    float *a, *b, *c;
    int M, K, N;
} gemm_ref;

static void gemm_ref_init(gemm_ref *g, int M, int K, int N)
{
    *g = (gemm_ref){malloc(sizeof(float) * (size_t)M * K), malloc(sizeof(float) * (size_t)K * N),
                    malloc(sizeof(float) * (size_t)M * N), M, K, N};
    for (size_t i = 0; i < (size_t)M * K; i++)
        g->a[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < (size_t)K * N; i++)
        g->b[i] = (float)(i % 5) * 0.01f;
}

/* The median time of one product over `calls` of them. */
static double gemm_ref_time(gemm_ref *g, int calls)
{
    double t[32];
    if (calls > 32)
        calls = 32;
    for (int r = 0; r < calls; r++) {
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->M, g->N, g->K, 1.0f, g->a, g->K, g->b, g->N, 0.0f,
                    g->c, g->N);
        t[r] = bench_now() - t0;
    }
    return bench_median(t, calls);
}

/* Greedy generation of N tokens after prompt (P tokens) into out (P + N); the time taken. */
static double generate(const lp_model *m, const int32_t *prompt, int P, int N, int use_cache, int32_t *out)
{
    int V = m->cfg.d_vocab, n = P, fed = 0;
    memcpy(out, prompt, (size_t)P * sizeof *out);
    lp_kv_cache *kv = use_cache ? lp_kv_cache_new(m, 1, P + N) : NULL;
    double t0 = bench_now();
    for (int s = 0; s < N; s++) {
        lp_run r;
        int rc = kv ? lp_model_run_cached(m, kv, out + fed, 1, n - fed, NULL, &r) : lp_model_run(m, out, 1, n, NULL, &r);
        if (rc < 0) {
            fprintf(stderr, "bench_forward: generate: %s\n", lp_last_error());
            exit(1);
        }
        const float *last = r.logits->data + (r.logits->shape[1] - 1) * V;
        int best = 0;
        for (int v = 1; v < V; v++)
            best = last[v] > last[best] ? v : best;
        lp_run_clear(&r);
        fed = n;
        out[n++] = best;
    }
    double t = bench_now() - t0;
    lp_kv_cache_free(kv);
    return t;
}

int main(int argc, char **argv)
{
    (void)argc;
    bench_blas_start(argv);
    int B = bench_env_int("LOUPE_BENCH_BATCH", 8), T = bench_env_int("LOUPE_BENCH_SEQ", 128), reps = bench_env_int("LOUPE_BENCH_REPS", 5);
    if (reps > 31)
        reps = 31;
    int threads = lp_get_threads();
    /* PyTorch first, in its own process, before our BLAS threads are busy */
    double torch_tps = bench_torch_tokens_per_s("forward_torch.py", B, T, reps, threads);
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
    double tn[32], tc[32], tg[32];
    gemm_ref g;
    gemm_ref_init(&g, B * T, 768, 3072);
    gemm_ref_time(&g, 2); /* warm-up */
    lp_run r;
    lp_run_opts all = {.cache_all = 1};
    if (lp_model_run(m, tok, B, T, NULL, &r) < 0) { /* warm-up */
        fprintf(stderr, "bench_forward: %s\n", lp_last_error());
        return 1;
    }
    lp_run_clear(&r);
    for (int i = 0; i < reps; i++) { /* alternate so that noise hits all alike */
        double t0 = bench_now();
        lp_model_run(m, tok, B, T, NULL, &r);
        tn[i] = bench_now() - t0;
        lp_run_clear(&r);
        t0 = bench_now();
        lp_model_run(m, tok, B, T, &all, &r);
        tc[i] = bench_now() - t0;
        lp_run_clear(&r);
        tg[i] = gemm_ref_time(&g, 9);
    }
    free(g.a), free(g.b), free(g.c);
    double t_plain = bench_median(tn, reps), t_cache = bench_median(tc, reps);
    double flops = lp_model_flops(m, B, T);
    double sg = 2.0 * g.M * g.K * g.N / bench_median(tg, reps) / 1e9;
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
    /* generation: one run of each, after a short warm-up of the cached path */
    int P = bench_env_int("LOUPE_BENCH_PROMPT", 64), N = bench_env_int("LOUPE_BENCH_GEN", 64);
    if (P + N > c.n_ctx)
        P = c.n_ctx / 2, N = c.n_ctx - P;
    int32_t *ga = malloc(sizeof(int32_t) * (size_t)(P + N)), *gb = malloc(sizeof(int32_t) * (size_t)(P + N));
    generate(m, tok, P, 4 < N ? 4 : N, 1, ga);
    double t_kv = generate(m, tok, P, N, 1, ga), t_full = generate(m, tok, P, N, 0, gb);
    printf("{\"bench\": \"generate gpt2-small %d+%d\", \"device\": \"cpu\", \"threads\": %d, \"tokens_per_s\": %.2f, "
           "\"nocache_tokens_per_s\": %.2f, \"speedup\": %.2f, \"same_tokens\": %s}\n",
           P, N, threads, N / t_kv, N / t_full, t_full / t_kv, memcmp(ga, gb, sizeof(int32_t) * (size_t)(P + N)) ? "false" : "true");
    free(ga), free(gb);
    free(tok);
    lp_model_free(m);
    return 0;
}
