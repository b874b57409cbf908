/* bench_train: training steps of a GPT-2-small-shaped model with random weights (12 layers,
 * d_model 768, 12 heads, vocab 50257), batch 4 x 64 tokens, on the CPU: one
 * lp_trainer_forward_backward and one lp_trainer_step (AdamW lr 3e-4, betas 0.9 / 0.95,
 * weight decay 0.1 on matrices, clipping at 1.0) per step. In the same run, PyTorch's time
 * for the same step (transformers' GPT2LMHeadModel, cross-entropy, backward,
 * clip_grad_norm_, torch.optim.AdamW; tests/bench/train_torch.py, started with posix_spawn)
 * where PyTorch is available, its best of torch.set_num_threads(threads) and (1). One JSON line:
 *   {"bench": "train gpt2-small 4x64", "tokens_per_s", "torch_tokens_per_s", "vs_torch", "torch_threads",
 *    "gflops" (3x the forward FLOPs per second), "step_seconds", "forward_backward_seconds",
 *    "optimizer_seconds", "threads"}
 * A second line does the same for the induction-head model of examples/06 (2 layers, attention
 * only, d_model 64, 2 heads, vocab 32; 64 x 24 tokens), where thread start-up and BLAS
 * threading dominate rather than the products ("train attn-only-2l-d64 64x24").
 * Where a GPU is present, two more lines train GPT-2 small on it (the trainer's device path):
 * the same 4 x 64 batch, with "vs_cpu" the ratio to the CPU line above measured in this run,
 * and 8 x 1024 (llm.c's shape), "device": "cuda". Without a GPU they are left out with a
 * line on stderr saying why.
 * Times are medians of several steps after a warm-up step. LOUPE_BENCH_REPS overrides the
 * repeat count; LOUPE_BENCH_BATCH / LOUPE_BENCH_SEQ the shape. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "core/error.h"
#include "device.h"
#include "model/model.h"
#include "train/train.h"

/* tiny = 0: GPT-2 small, B x T from the environment (4 x 64); tiny = 1: the induction-head
 * model of examples/06 (2 layers, attention only, d_model 64, 2 heads, vocab 32), 64 x 24. */
static int bench(int tiny, lp_device dev, int B, int T, double *tps_out, double cpu_tps)
{
    int reps = bench_env_int("LOUPE_BENCH_REPS", tiny ? 25 : 5);
    if (reps > 31)
        reps = 31;
    int threads = lp_get_threads(), gpu = dev == LP_DEVICE_CUDA;
    setenv("LOUPE_BENCH_TRAIN_SHAPE", tiny ? "tiny" : "small", 1); /* read by train_torch.py */
    /* PyTorch first, in its own process, before our BLAS threads are busy. Debian's torch
     * runs its OpenMP pool beside OpenBLAS's threads, and with both at the core count they
     * contend (measured: torch.set_num_threads(1) is faster on 2 cores), so its best of
     * `threads` and 1 is the reference. */
    double torch_tps = -1;
    int torch_threads = threads;
    if (!gpu && !getenv("LOUPE_BENCH_NO_TORCH")) {
        torch_tps = bench_torch_tokens_per_s("train_torch.py", B, T, reps, threads);
        double one = threads > 1 ? bench_torch_tokens_per_s("train_torch.py", B, T, reps, 1) : -1;
        if (one > torch_tps)
            torch_tps = one, torch_threads = 1;
    }
    lp_model_config c = {.arch = LP_ARCH_GPT2, .n_layers = 12, .d_model = 768, .n_heads = 12, .n_kv_heads = 12,
                         .d_head = 64, .d_mlp = 3072, .d_vocab = 50257, .n_ctx = 1024, .eps = 1e-5f,
                         .act = 0 /* tanh GELU */, .tied = 1, .bos = -1, .eos = -1};
    if (tiny)
        c = (lp_model_config){.arch = LP_ARCH_GPT2, .n_layers = 2, .d_model = 64, .n_heads = 2, .n_kv_heads = 2,
                              .d_head = 32, .d_mlp = 0, .d_vocab = 32, .n_ctx = 24, .eps = 1e-5f, .act = 0,
                              .tied = 1, .attn_only = 1, .bos = -1, .eos = -1};
    lp_model *m = lp_model_random(&c, 7);
    lp_train_opts o;
    lp_train_opts_default(&o); /* lr 3e-4, betas 0.9 / 0.95, eps 1e-8, decay 0.1, clip 1.0 */
    lp_trainer *t = m ? lp_trainer_new_on(m, &o, B, T, dev) : NULL;
    if (!t) {
        fprintf(stderr, "bench_train: %s\n", lp_last_error());
        return 1;
    }
    int32_t *x = malloc(sizeof(int32_t) * (size_t)B * T), *y = malloc(sizeof(int32_t) * (size_t)B * T);
    for (int i = 0; i < B * T; i++) {
        x[i] = (int32_t)((i * 2654435761u) % (unsigned)c.d_vocab);
        y[i] = (int32_t)((i * 40503u + 17) % (unsigned)c.d_vocab);
    }
    double ts[32], tf[32], to[32];
    for (int i = -1; i < reps; i++) { /* one warm-up step */
        float loss, norm;
        double t0 = bench_now();
        if (lp_trainer_forward_backward(t, x, y, &loss) < 0) {
            fprintf(stderr, "bench_train: %s\n", lp_last_error());
            return 1;
        }
        double t1 = bench_now();
        if (lp_trainer_step(t, &norm, NULL) < 0) {
            fprintf(stderr, "bench_train: %s\n", lp_last_error());
            return 1;
        }
        double t2 = bench_now();
        if (i >= 0)
            ts[i] = t2 - t0, tf[i] = t1 - t0, to[i] = t2 - t1;
    }
    double step = bench_median(ts, reps), fb = bench_median(tf, reps), opt = bench_median(to, reps);
    double tps = B * T / step, gf = 3.0 * lp_model_flops(m, B, T) / step / 1e9;
    if (tps_out)
        *tps_out = tps;
    printf("{\"bench\": \"train %s %dx%d%s\", \"device\": \"%s\", \"threads\": %d, \"tokens_per_s\": %.1f, ",
           tiny ? "attn-only-2l-d64" : "gpt2-small", B, T, gpu ? " cuda" : "", gpu ? "cuda" : "cpu", threads, tps);
    if (gpu && cpu_tps > 0)
        printf("\"vs_cpu\": %.2f, ", tps / cpu_tps);
    else if (gpu)
        printf("\"vs_cpu\": null, ");
    else if (torch_tps > 0)
        printf("\"torch_tokens_per_s\": %.1f, \"vs_torch\": %.3f, \"torch_threads\": %d, ", torch_tps,
               tps / torch_tps, torch_threads);
    else
        printf("\"torch_tokens_per_s\": null, \"vs_torch\": null, ");
    printf("\"gflops\": %.2f, \"step_seconds\": %.3f, \"forward_backward_seconds\": %.3f, \"optimizer_seconds\": %.3f}\n",
           gf, step, fb, opt);
    free(x), free(y);
    lp_trainer_free(t);
    lp_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    bench_blas_start(argv);
    double cpu_tps = 0;
    int B = bench_env_int("LOUPE_BENCH_BATCH", 4), T = bench_env_int("LOUPE_BENCH_SEQ", 64);
    if (bench(0, LP_DEVICE_CPU, B, T, &cpu_tps, 0) || bench(1, LP_DEVICE_CPU, 64, 24, NULL, 0))
        return 1;
    if (!lp_device_available(LP_DEVICE_CUDA)) {
        fprintf(stderr, "bench_train: no GPU lines (%s)\n", lp_cuda_unavailable_reason());
        return 0;
    }
    return bench(0, LP_DEVICE_CUDA, B, T, NULL, cpu_tps) || bench(0, LP_DEVICE_CUDA, 8, 1024, NULL, 0);
}
