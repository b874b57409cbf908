/* bench_sae: SAE training steps on pre-harvested (random, unit-variance) activations, the
 * step alone (lp_sae_trainer_step: forward, losses, backward, clipping, Adam, dead counters),
 * for topk (k 32) and standard at d_in 192 / width 3072 / batch 4096 and d_in 768 / width
 * 12288 / batch 4096 (LOUPE_BENCH_SAE_SMALL=1 leaves the larger out: minutes on two cores).
 * In the same run, with the same thread count, in .venv-peer: SAELens' own trainer
 * (SAETrainer.step on a TopKTrainingSAE or StandardTrainingSAE, tests/bench/sae_saelens.py)
 * and a minimal PyTorch implementation of the same step (tests/bench/sae_torch.py).
 * One JSON line per shape:
 *   {"bench": "sae topk d192 w3072 b4096", "loupe_acts_per_s", "saelens_acts_per_s",
 *    "vs_saelens", "torch_acts_per_s", "vs_torch", "step_seconds", "step_cpu_seconds" (all
 *    threads' CPU time per step: what a step costs on a machine shared with others), "l0",
 *    "steps", "threads"}
 * Times are medians of LOUPE_BENCH_REPS (5) steps after a warm-up step, LOUPE_BENCH_REPS_LARGE
 * (2) at the larger shape; LOUPE_BENCH_NO_TORCH=1 skips both references. The steps start from
 * DICTIONARY.md's initialisation, so a standard SAE has about half its features active (the
 * dense products), a topk one k per token (the sparse lists). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "core/error.h"
#include "dict/sae_train.h"
#include "rng.h"
#include "device.h"

/* CPU seconds of the whole process (every thread): on a shared machine, what a step costs
 * whoever else is running. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void bench(lp_sae_arch arch, int d_in, int width, int batch, int k, int reps)
{
    const char *only = getenv("LOUPE_BENCH_SAE_ONLY"); /* "topk" or "standard" */
    if (only && strcmp(only, lp_sae_arch_name(arch)) != 0)
        return;
    char spec[64];
    if (arch == LP_SAE_TOPK)
        snprintf(spec, sizeof spec, "topk:%d:%d", width, k);
    else
        snprintf(spec, sizeof spec, "standard:%d", width);
    setenv("LOUPE_BENCH_SAE", spec, 1);
    setenv("LOUPE_BENCH_VENV", ".venv-peer", 1);
    int threads = lp_get_threads();
    int peers = !getenv("LOUPE_BENCH_NO_TORCH");
    double torch = peers ? bench_torch_tokens_per_s("sae_torch.py", batch, d_in, reps, threads) : -1;
    double saelens = peers ? bench_script_value("sae_saelens.py", "saelens_acts_per_s", batch, d_in, reps, threads) : -1;

    lp_sae_config c = {.arch = arch, .d_in = d_in, .d_sae = width, .d_out = d_in, .k = k, .apply_b_dec_to_input = 1,
                       .layer = -1};
    lp_sae *s = lp_sae_new(&c);
    if (!s || lp_sae_init_random(s, 1, 0.1f, 0) < 0) {
        fprintf(stderr, "bench_sae: %s\n", lp_last_error());
        exit(1);
    }
    lp_sae_train_opts o = lp_sae_train_defaults(&c);
    o.batch = batch;
    lp_sae_trainer *t = lp_sae_trainer_new(s, &o);
    float *x = malloc((size_t)4 * batch * d_in * sizeof(float));
    if (!t || !x) {
        fprintf(stderr, "bench_sae: %s\n", t ? "no memory for activations" : lp_last_error());
        exit(1);
    }
    lp_rng g;
    lp_rng_seed(&g, 2);
    for (size_t i = 0; i < (size_t)4 * batch * d_in; i++)
        x[i] = (float)lp_rng_normal(&g);
    lp_sae_step_stats st;
    double times[64], cpu = 0;
    for (int r = 0; r <= reps; r++) {
        double t0 = bench_now(), c0 = cpu_now();
        if (lp_sae_trainer_step(t, x + (size_t)(r % 4) * batch * d_in, NULL, batch, &st) < 0) {
            fprintf(stderr, "bench_sae: %s\n", lp_last_error());
            exit(1);
        }
        if (r > 0)
            times[r - 1] = bench_now() - t0, cpu += cpu_now() - c0;
    }
    double sec = bench_median(times, reps), acts = batch / sec;
    printf("{\"bench\": \"sae %s d%d w%d b%d\", \"loupe_acts_per_s\": %.0f, ", lp_sae_arch_name(arch), d_in, width,
           batch, acts);
    if (saelens > 0)
        printf("\"saelens_acts_per_s\": %.0f, \"vs_saelens\": %.2f, ", saelens, acts / saelens);
    else
        printf("\"saelens_acts_per_s\": null, \"vs_saelens\": null, ");
    if (torch > 0)
        printf("\"torch_acts_per_s\": %.0f, \"vs_torch\": %.2f, ", torch, acts / torch);
    else
        printf("\"torch_acts_per_s\": null, \"vs_torch\": null, ");
    printf("\"step_seconds\": %.4f, \"step_cpu_seconds\": %.4f, \"l0\": %.1f, \"steps\": %d, \"threads\": %d}\n", sec,
           cpu / reps, st.loss.l0, reps, threads);
    fflush(stdout);
    lp_sae_trainer_free(t);
    lp_sae_free(s);
    free(x);
}

int main(int argc, char **argv)
{
    (void)argc;
    bench_blas_start(argv);
    int reps = bench_env_int("LOUPE_BENCH_REPS", 5);
    if (reps > 64)
        reps = 64;
    bench(LP_SAE_TOPK, 192, 3072, 4096, 32, reps);
    bench(LP_SAE_STANDARD, 192, 3072, 4096, 0, reps);
    if (!getenv("LOUPE_BENCH_SAE_SMALL")) { /* 16x the work per step: fewer steps */
        int big = bench_env_int("LOUPE_BENCH_REPS_LARGE", 2);
        bench(LP_SAE_TOPK, 768, 12288, 4096, 32, big > 64 ? 64 : big);
        bench(LP_SAE_STANDARD, 768, 12288, 4096, 0, big > 64 ? 64 : big);
    }
    return 0;
}
