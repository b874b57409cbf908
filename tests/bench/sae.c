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
 *    threads' CPU time per step: what a step costs on a machine shared with others), the
 *    references' "saelens_step_cpu_seconds", "torch_step_cpu_seconds" and the ratios of CPU
 *    time "vs_saelens_cpu", "vs_torch_cpu" (steadier than wall time on a loaded machine),
 *    "l0", "steps", "threads"}
 * and the harvesting and end-to-end lines (bench_harvest, bench_e2e below).
 * Times are medians of LOUPE_BENCH_REPS (5) steps after a warm-up step, LOUPE_BENCH_REPS_LARGE
 * (2) at the larger shape; LOUPE_BENCH_NO_TORCH=1 skips both references. The steps start from
 * DICTIONARY.md's initialisation, so a standard SAE has about half its features active (the
 * dense products), a topk one k per token (the sparse lists). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "core/error.h"
#include "dict/activations.h"
#include "dict/sae_train.h"
#include "model/model.h"
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
    const char *tf[] = {"torch_tokens_per_s", "cpu_seconds"}, *sf[] = {"saelens_acts_per_s", "cpu_seconds"};
    double tv[2] = {-1, -1}, sv[2] = {-1, -1};
    if (peers) {
        bench_script_values("sae_torch.py", tf, tv, 2, batch, d_in, reps, threads);
        bench_script_values("sae_saelens.py", sf, sv, 2, batch, d_in, reps, threads);
    }
    double torch = tv[0], saelens = sv[0];

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
    cpu /= reps;
    printf("\"step_seconds\": %.4f, \"step_cpu_seconds\": %.4f, ", sec, cpu);
    if (sv[1] > 0 && tv[1] > 0) /* the CPU time per step: what the load of others does not change much */
        printf("\"saelens_step_cpu_seconds\": %.4f, \"torch_step_cpu_seconds\": %.4f, \"vs_saelens_cpu\": %.2f, "
               "\"vs_torch_cpu\": %.2f, ", sv[1], tv[1], sv[1] / cpu, tv[1] / cpu);
    printf("\"l0\": %.1f, \"steps\": %d, \"threads\": %d}\n", st.loss.l0, reps, threads);
    fflush(stdout);
    lp_sae_trainer_free(t);
    lp_sae_free(s);
    free(x);
}

/* The windows of the end-to-end line: ids in 1..vocab-1 from the LCG x <- (1103515245 x +
 * 12345) mod 2^31 started at 1, what sae_e2e_saelens.py makes (bench_tokens). */
static int32_t *bench_tokens(size_t n, int vocab)
{
    int32_t *t = malloc(n * sizeof *t);
    uint64_t x = 1;
    for (size_t i = 0; t && i < n; i++) {
        x = (1103515245u * x + 12345u) % (1u << 31);
        t[i] = 1 + (int32_t)((x >> 8) % (uint64_t)(vocab - 1));
    }
    return t;
}

/* End to end: the activation stream of one hook point of the default model (harvesting,
 * the mixing buffer) and a topk SAE trained on it, tokens trained on per second over the
 * whole run (stream made, buffer filled, every step), against SAELens' runner on the same
 * windows (tests/bench/sae_e2e_saelens.py). */
static void bench_e2e(const char *hook, int width, int k, int batch, int steps, int threads)
{
    const char *only = getenv("LOUPE_BENCH_SAE_ONLY");
    if (only && strcmp(only, "e2e") != 0)
        return;
    const char *root = getenv("LOUPE_ROOT");
    char folder[512];
    snprintf(folder, sizeof folder, "%s/examples/models/default", root ? root : ".");
    lp_model *m = lp_model_load(folder);
    if (!m) {
        fprintf(stderr, "bench_sae: %s\n", lp_last_error());
        exit(1);
    }
    const int ctx = 128, buffer = 4, windows = 1024;
    size_t ntok = (size_t)windows * ctx;
    int32_t *tok = bench_tokens(ntok, m->cfg.d_vocab);
    char spec[700];
    snprintf(spec, sizeof spec, "%s:%s:%d:%d:%d:%d:%d", folder, hook, width, k, ctx, windows, buffer);
    setenv("LOUPE_BENCH_E2E", spec, 1);
    setenv("LOUPE_BENCH_VENV", ".venv-peer", 1);
    double saelens = getenv("LOUPE_BENCH_NO_TORCH")
                         ? -1
                         : bench_script_value("sae_e2e_saelens.py", "saelens_tokens_per_s", batch, steps, 0, threads);
    double t0 = bench_now();
    const char *hooks[] = {hook};
    lp_act_opts ao = {.hooks = hooks, .nhooks = 1, .tokens = tok, .ntokens = ntok, .ctx = ctx, .batch = batch,
                      .buffer = buffer, .seed = 1, .prepend_bos = 1};
    lp_act_stream *st = tok ? lp_act_stream_new(m, &ao) : NULL;
    lp_sae_config c = {.arch = LP_SAE_TOPK, .d_in = (int)(st ? lp_act_stream_dim(st, 0) : 1), .k = k,
                       .apply_b_dec_to_input = 1, .layer = -1};
    c.d_sae = width, c.d_out = c.d_in;
    lp_sae *s = st ? lp_sae_new(&c) : NULL;
    lp_sae_train_opts o = lp_sae_train_defaults(&c);
    o.batch = batch;
    lp_sae_trainer *t = s && lp_sae_init_random(s, 1, 0.1f, 0) == 0 ? lp_sae_trainer_new(s, &o) : NULL;
    float *x = malloc((size_t)batch * c.d_in * sizeof(float));
    if (!t || !x) {
        fprintf(stderr, "bench_sae: %s\n", x ? lp_last_error() : "no memory");
        exit(1);
    }
    lp_sae_step_stats ss;
    for (int i = 0; i < steps; i++)
        if (lp_act_stream_next(st, &x) < 0 || lp_sae_trainer_step(t, x, NULL, batch, &ss) < 0) {
            fprintf(stderr, "bench_sae: %s\n", lp_last_error());
            exit(1);
        }
    double sec = bench_now() - t0, tps = (double)batch * steps / sec;
    printf("{\"bench\": \"sae e2e %s topk w%d k%d b%d\", \"loupe_tokens_per_s\": %.0f, ", hook, width, k, batch, tps);
    if (saelens > 0)
        printf("\"saelens_tokens_per_s\": %.0f, \"vs_saelens\": %.2f, ", saelens, tps / saelens);
    else
        printf("\"saelens_tokens_per_s\": null, \"vs_saelens\": null, ");
    printf("\"seconds\": %.2f, \"steps\": %d, \"explained_variance\": %.3f, \"threads\": %d}\n", sec, steps,
           ss.explained_variance, threads);
    fflush(stdout);
    lp_sae_trainer_free(t);
    lp_sae_free(s);
    lp_act_stream_free(st);
    lp_model_free(m);
    free(tok), free(x);
}

/* Harvesting alone: the activation stream of blocks.0.hook_resid_post of the default model
 * (its runs stop after block 0) against whole-model runs of as many windows (what a
 * harvest cost before the stream stopped early), tokens per second, in the same run. */
static void bench_harvest(int batch, int nbatches)
{
    const char *only = getenv("LOUPE_BENCH_SAE_ONLY");
    if (only && strcmp(only, "harvest") != 0)
        return;
    const char *root = getenv("LOUPE_ROOT");
    char folder[512];
    snprintf(folder, sizeof folder, "%s/examples/models/default", root ? root : ".");
    lp_model *m = lp_model_load(folder);
    const int ctx = 128, windows = 1024;
    size_t ntok = (size_t)windows * ctx;
    int32_t *tok = m ? bench_tokens(ntok, m->cfg.d_vocab) : NULL;
    const char *hooks[] = {"blocks.0.hook_resid_post"};
    lp_act_opts ao = {.hooks = hooks, .nhooks = 1, .tokens = tok, .ntokens = ntok, .ctx = ctx, .batch = batch,
                      .buffer = 4, .seed = 1, .prepend_bos = 1};
    lp_act_stream *st = tok ? lp_act_stream_new(m, &ao) : NULL;
    float *x = st ? malloc((size_t)batch * lp_act_stream_dim(st, 0) * sizeof(float)) : NULL;
    if (!x || lp_act_stream_next(st, &x) < 0) {
        fprintf(stderr, "bench_sae: %s\n", x ? lp_last_error() : m ? "no memory" : lp_last_error());
        exit(1);
    }
    double t0 = bench_now();
    for (int i = 0; i < nbatches; i++)
        if (lp_act_stream_next(st, &x) < 0) {
            fprintf(stderr, "bench_sae: %s\n", lp_last_error());
            exit(1);
        }
    double harvest = (double)batch * nbatches / (bench_now() - t0);
    /* whole-model runs of 32 windows (the stream's runs), as many tokens */
    int R = 32, runs = (batch * nbatches + R * ctx - 1) / (R * ctx);
    int32_t *ids = malloc((size_t)R * ctx * sizeof *ids);
    if (!ids) {
        fprintf(stderr, "bench_sae: no memory\n");
        exit(1);
    }
    t0 = bench_now();
    for (int r = 0; r < runs; r++) {
        for (int i = 0; i < R * ctx; i++)
            ids[i] = i % ctx == 0 ? m->cfg.bos : tok[((size_t)r * R * ctx + i) % ntok];
        lp_run run;
        lp_run_opts o = {.filter = NULL};
        if (lp_model_run(m, ids, R, ctx, &o, &run) < 0) {
            fprintf(stderr, "bench_sae: %s\n", lp_last_error());
            exit(1);
        }
        lp_run_clear(&run);
    }
    double whole = (double)runs * R * ctx / (bench_now() - t0);
    printf("{\"bench\": \"sae harvest blocks.0.hook_resid_post b%d\", \"loupe_tokens_per_s\": %.0f, "
           "\"whole_model_tokens_per_s\": %.0f, \"vs_whole_model\": %.2f, \"batches\": %d}\n",
           batch, harvest, whole, harvest / whole, nbatches);
    fflush(stdout);
    lp_act_stream_free(st);
    lp_model_free(m);
    free(tok), free(x), free(ids);
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
    bench_harvest(4096, bench_env_int("LOUPE_BENCH_HARVEST_BATCHES", 16));
    bench_e2e("blocks.0.hook_resid_post", 3072, 32, 4096, bench_env_int("LOUPE_BENCH_E2E_STEPS", 8),
              lp_get_threads());
    if (!getenv("LOUPE_BENCH_SAE_SMALL")) { /* 16x the work per step: fewer steps */
        int big = bench_env_int("LOUPE_BENCH_REPS_LARGE", 2);
        bench(LP_SAE_TOPK, 768, 12288, 4096, 32, big > 64 ? 64 : big);
        bench(LP_SAE_STANDARD, 768, 12288, 4096, 0, big > 64 ? 64 : big);
    }
    return 0;
}
