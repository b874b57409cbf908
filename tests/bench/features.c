/* bench_features: the feature harvest (backend/dict/harvest.h) of a 16x-wide topk SAE (k 32,
 * width 16 d_model) at blocks.2.hook_resid_post of the default model, against the model's own
 * forward pass over the same windows in the same run (target: harvest <= 1.5x forward; the
 * fastest of LOUPE_BENCH_REPS (3) alternating runs each, wall and process CPU time), the peak
 * memory after a harvest of N tokens and after one of 4N (target: not growing), and
 * the time to render one dashboard (lp_feature_logits + lp_display_dashboard; target < 50 ms).
 * The corpus is random token ids (throughput does not depend on the text for a topk SAE);
 * LOUPE_BENCH_FEATURES_TOKENS sets N (65536; 1048576 for the 1M-token figure).
 * JSON lines:
 *   {"bench": "features harvest", "tokens", "harvest_s", "forward_s", "ratio", "harvest_cpu_s",
 *    "forward_cpu_s", "cpu_ratio", "tokens_per_s", "forward_tokens_per_s", "width", "threads", "reps"}
 *   {"bench": "features memory", "tokens", "maxrss_mb", "tokens_more", "maxrss_mb_more" (less the
 *    larger corpus's own bytes), "harvest_mb" (lp_harvest_bytes: what a harvest allocates,
 *    whatever the tokens; the resident set grows towards it as more of its pages are touched)}
 *   {"bench": "features dashboard", "ms_median", "ms_max", "html_kb_max"} */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "core/error.h"
#include "dashboard.h"
#include "device.h"
#include "dict/harvest.h"
#include "model/model.h"
#include "rng.h"

static double maxrss_mb(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss / 1024.0;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_features: %s: %s\n", what, lp_last_error());
    exit(1);
}

int main(int argc, char **argv)
{
    (void)argc;
    bench_blas_start(argv);
    lp_model *m = lp_model_load("examples/models/default");
    if (!m)
        die("the default model");
    int D = m->cfg.d_model, V = m->cfg.d_vocab, T = 64, B = 8;
    int64_t N = bench_env_int("LOUPE_BENCH_FEATURES_TOKENS", 65536);
    lp_sae_config c = {.arch = LP_SAE_TOPK, .d_in = D, .d_sae = 16 * D, .d_out = D, .k = 32,
                       .apply_b_dec_to_input = 1, .layer = 2};
    snprintf(c.hook_in, sizeof c.hook_in, "blocks.2.hook_resid_post");
    snprintf(c.hook_out, sizeof c.hook_out, "blocks.2.hook_resid_post");
    lp_sae *s = lp_sae_new(&c);
    if (!s || lp_sae_init_random(s, 1, 0.1f, 0) < 0)
        die("the SAE");
    int32_t *tok = malloc((size_t)N * sizeof *tok);
    if (!tok)
        die("the corpus");
    lp_rng g;
    lp_rng_seed(&g, 5);
    for (int64_t i = 0; i < N; i++)
        tok[i] = 1 + (int32_t)lp_rng_below(&g, (uint64_t)V - 1);
    /* the windows the harvest runs: a BOS and T - 1 tokens each, B per run */
    int per = T - 1;
    int64_t nwin = N / per;
    int32_t *ids = malloc((size_t)B * T * sizeof *ids);
    /* forward and harvest alternately, reps times; the fastest of each (a shared machine's
     * load only ever slows a run down), in wall and process CPU seconds */
    int reps = bench_env_int("LOUPE_BENCH_REPS", 3);
    double fwd = 1e30, hv = 1e30, fwd_cpu = 1e30, hv_cpu = 1e30, t0, c0;
    lp_harvest *h = NULL;
    for (int rep = 0; rep < reps; rep++) {
        t0 = bench_now(), c0 = cpu_now();
        for (int64_t w0 = 0; w0 < nwin; w0 += B) {
            int R = (int)(nwin - w0 < B ? nwin - w0 : B);
            for (int r = 0; r < R; r++) {
                ids[r * T] = m->cfg.bos;
                memcpy(ids + r * T + 1, tok + (w0 + r) * per, (size_t)per * sizeof *ids);
            }
            lp_run run;
            if (lp_model_run(m, ids, R, T, NULL, &run) < 0)
                die("the forward pass");
            lp_run_clear(&run);
        }
        fwd = fmin(fwd, bench_now() - t0), fwd_cpu = fmin(fwd_cpu, cpu_now() - c0);
        lp_harvest_free(h);
        lp_harvest_opts o = {.tokens = tok, .ntokens = (size_t)N, .ctx = T, .batch = B, .prepend_bos = 1};
        t0 = bench_now(), c0 = cpu_now();
        if (!(h = lp_harvest_run(m, s, &o)))
            die("the harvest");
        hv = fmin(hv, bench_now() - t0), hv_cpu = fmin(hv_cpu, cpu_now() - c0);
    }
    double rss = maxrss_mb();
    /* memory: 4N tokens more (the corpus repeated) must not raise the peak */
    int32_t *big = malloc((size_t)N * 4 * sizeof *big);
    if (!big)
        die("the corpus");
    for (int k = 0; k < 4; k++)
        memcpy(big + (size_t)k * N, tok, (size_t)N * sizeof *big);
    lp_harvest_opts ob = {.tokens = big, .ntokens = (size_t)N * 4, .ctx = T, .batch = B, .prepend_bos = 1};
    lp_harvest *hb = lp_harvest_run(m, s, &ob);
    if (!hb)
        die("the harvest");
    lp_harvest_free(hb);
    free(big);
    double rss_big = maxrss_mb() - (double)N * 4 * sizeof *big / (1 << 20); /* less the corpus itself */
    int64_t ntok = nwin * T;
    printf("{\"bench\": \"features harvest\", \"tokens\": %lld, \"harvest_s\": %.3f, \"forward_s\": %.3f, "
           "\"ratio\": %.3f, \"harvest_cpu_s\": %.3f, \"forward_cpu_s\": %.3f, \"cpu_ratio\": %.3f, "
           "\"tokens_per_s\": %.0f, \"forward_tokens_per_s\": %.0f, \"width\": %d, \"threads\": %d, \"reps\": %d}\n",
           (long long)ntok, hv, fwd, hv / fwd, hv_cpu, fwd_cpu, hv_cpu / fwd_cpu, ntok / hv, ntok / fwd, c.d_sae,
           lp_get_threads(), reps);
    printf("{\"bench\": \"features memory\", \"tokens\": %lld, \"maxrss_mb\": %.1f, \"tokens_more\": %lld, "
           "\"maxrss_mb_more\": %.1f, \"harvest_mb\": %.1f}\n", (long long)ntok, rss, (long long)(4 * ntok), rss_big,
           lp_harvest_bytes(c.d_sae, (int64_t)B * T, D) / 1048576.0);
    fflush(stdout);
    /* dashboards of 20 live features */
    float *lg = malloc((size_t)V * sizeof *lg);
    double ms[20], worst = 0;
    size_t kb = 0;
    int n = 0;
    for (int i = 0; i < c.d_sae && n < 20; i++) {
        if (h->count[i] <= 0)
            continue;
        t0 = bench_now();
        if (lp_feature_logits(m, s, i, lg) < 0)
            die("the logits");
        lp_dashboard d = {.feature = i, .d_sae = c.d_sae, .label = "bench", .what = "bench", .h = h, .logits = lg,
                          .n_vocab = V, .dec = s->W_dec->data + (size_t)i * D, .d_out = D};
        json_t *b = lp_display_dashboard(&d);
        ms[n] = 1000 * (bench_now() - t0);
        if (!b)
            die("the dashboard");
        size_t len = strlen(json_string_value(json_object_get(b, "text/html")));
        kb = len / 1024 > kb ? len / 1024 : kb;
        worst = ms[n] > worst ? ms[n] : worst;
        json_decref(b);
        n++;
    }
    printf("{\"bench\": \"features dashboard\", \"dashboards\": %d, \"ms_median\": %.2f, \"ms_max\": %.2f, "
           "\"html_kb_max\": %zu}\n", n, n ? bench_median(ms, n) : 0.0, worst, kb);
    free(lg), free(ids), free(tok);
    lp_harvest_free(h);
    lp_sae_free(s);
    lp_model_free(m);
    return 0;
}
