/* backend/model/patch.c: the activation patching sweep against a brute-force loop that patches
 * one region per run with an ordinary patch hook (so batching and skipping are checked), for
 * position and head sweeps on random GPT-2 and Llama models; the normalised ends (exactly 1
 * and 0); the metric callback; errors and interrupts, which leave nothing behind. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "model/patch.h"
#include "random_model.h"

/* ---- allocations: this test links with --wrap for malloc, calloc, realloc, posix_memalign
 * and free, so every allocation the backend's code makes goes through these. While `tracking`,
 * the pointers allocated are recorded until freed: what is left is what leaked. ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
void __real_free(void *p);

enum { SLOTS = 1 << 16 };
static void *live[SLOTS]; /* open addressing; NULL empty, TOMB removed */
static long n_live;
static int tracking;
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
#define TOMB ((void *)1)

static size_t slot_of(const void *p) { return ((uintptr_t)p >> 4) * 2654435761u % SLOTS; }

static void track(void *p)
{
    if (!p || !tracking)
        return;
    pthread_mutex_lock(&live_lock);
    size_t i = slot_of(p);
    while (live[i] && live[i] != TOMB)
        i = (i + 1) % SLOTS;
    live[i] = p;
    n_live++;
    pthread_mutex_unlock(&live_lock);
}

static void untrack(void *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&live_lock);
    for (size_t i = slot_of(p); live[i]; i = (i + 1) % SLOTS)
        if (live[i] == p) {
            live[i] = TOMB;
            n_live--;
            break;
        }
    pthread_mutex_unlock(&live_lock);
}

void *__wrap_malloc(size_t n) { void *p = __real_malloc(n); track(p); return p; }
void *__wrap_calloc(size_t n, size_t size) { void *p = __real_calloc(n, size); track(p); return p; }
void __wrap_free(void *p) { untrack(p); __real_free(p); }
void *__wrap_realloc(void *p, size_t n)
{
    void *q = __real_realloc(p, n);
    if (q || !n) {
        untrack(p);
        track(q);
    }
    return q;
}
int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
    int rc = __real_posix_memalign(p, align, n);
    if (rc == 0)
        track(*p);
    return rc;
}

static void track_start(void)
{
    memset(live, 0, sizeof live);
    n_live = 0;
    tracking = 1;
}

static long track_stop(void) /* allocations made since track_start and not freed */
{
    tracking = 0;
    return n_live;
}

/* ---- the sweep ---- */

enum { T = 7, V = 37, L = 2 };
/* the prompts differ at position 2 only */
static const int32_t CLEAN[T] = {3, 1, 4, 1, 5, 9, 2}, CORRUPT[T] = {3, 1, 30, 1, 5, 9, 2};
static const int32_t TOK = 5, BASE = 8;

/* logits[0, T-1, TOK] - logits[0, T-1, BASE] of a run of tokens with one hook (or none). */
static double metric_of_run(const lp_model *m, const int32_t *toks, const lp_hook *h)
{
    lp_run r = {0};
    lp_run_opts o = {h, h ? 1 : 0, 0, NULL, NULL};
    cr_assert_eq(lp_model_run(m, toks, 1, T, &o, &r), 0, "%s", lp_last_error());
    const float *z = r.logits->data + (size_t)(T - 1) * V;
    double v = (double)z[TOK] - z[BASE];
    lp_run_clear(&r);
    return v;
}

/* The sweep of one kind, as batch size `batch`, against one patched run per region. */
static void check_kind(const lp_model *m, const char *key, int positions, int batch)
{
    lp_patch_opts o = {.kind = lp_patch_kind_find(key), .positions = positions, .normalize = 1, .token = TOK,
                       .baseline = BASE, .pos = -1, .batch = batch};
    cr_assert_not_null(o.kind, "%s", lp_last_error());
    lp_patch_result res;
    cr_assert_eq(lp_patch_sweep(m, CLEAN, CORRUPT, T, &o, &res), 0, "%s: %s", key, lp_last_error());
    /* the oracle: a cached clean run, and a patch hook on one region */
    lp_run cr = {0};
    lp_run_opts all = {.cache_all = 1};
    cr_assert_eq(lp_model_run(m, CLEAN, 1, T, &all, &cr), 0);
    double clean = metric_of_run(m, CLEAN, NULL), corrupt = metric_of_run(m, CORRUPT, NULL);
    cr_assert(fabs(res.clean - clean) < 1e-9 && fabs(res.corrupt - corrupt) < 1e-9, "%s: ends", key);
    cr_assert(fabs(clean - corrupt) > 1e-3, "the prompts must matter: %g vs %g", clean, corrupt);
    char name[96];
    snprintf(name, sizeof name, o.kind->fmt, 0);
    const lp_tensor *a0 = lp_run_get(&cr, name);
    int per_head = o.kind->headdim >= 0, NH = per_head ? (int)a0->shape[o.kind->headdim] : 0;
    int pos_on = positions < 0 ? !per_head : positions;
    int nreg = per_head ? (pos_on ? NH * T : NH) : (pos_on ? T : 1);
    cr_assert_eq(res.n_regions, nreg, "%s: %d regions, expected %d", key, res.n_regions, nreg);
    cr_assert_eq(res.n_heads, NH);
    cr_assert_eq((long)res.rows * res.cols, (long)L * nreg);
    cr_assert_eq(res.cols, per_head && pos_on ? T : nreg);
    long skipped = 0;
    for (int l = 0; l < L; l++) {
        snprintf(name, sizeof name, o.kind->fmt, l);
        for (int i = 0; i < nreg; i++) {
            int head = per_head ? (pos_on ? i / T : i) : -1, pos = pos_on ? i % T : -1;
            lp_hook h = {.name = name, .kind = LP_HOOK_PATCH, .value = lp_run_get(&cr, name), .head = head,
                         .pos = pos};
            double want = metric_of_run(m, CORRUPT, &h);
            size_t at = (size_t)l * nreg + i;
            double got = res.raw[at], norm = (want - corrupt) / (clean - corrupt);
            cr_assert(fabs(got - want) < 1e-4 * (1 + fabs(want)), "%s batch %d layer %d region %d: %g, one run %g",
                      key, batch, l, i, got, want);
            cr_assert(fabs(res.values[at] - norm) < 1e-4 * (1 + fabs(norm)), "%s: normalised %g vs %g", key,
                      (double)res.values[at], norm);
            /* before the first token that differs, the causal model's activations agree: the
             * region is skipped and gets the corrupt metric exactly */
            if (pos >= 0 && pos < 2) {
                cr_assert_eq(res.raw[at], (float)corrupt, "%s: region %d before the difference", key, i);
                cr_assert_eq(res.values[at], 0.0f);
                skipped++;
            }
        }
    }
    cr_assert(res.runs >= 1 && res.runs <= (long)L * nreg - skipped, "%s: %ld runs, %ld skipped of %d", key, res.runs,
              skipped, L * nreg);
    lp_run_clear(&cr);
    lp_patch_result_free(&res);
    cr_assert_null(res.values);
}

Test(patch, sweeps_match_one_region_per_run)
{
    for (int llama = 0; llama < 2; llama++) {
        lp_model *m = rm_model(llama, L, 16, 4, 2, V, 31 + llama);
        for (int batch = 0; batch <= 3; batch += 3) { /* the default (everything in one pass) and 3 */
            check_kind(m, "resid_pre", -1, batch);
            check_kind(m, "resid_pre", 0, batch);
            check_kind(m, "hook_attn_out", -1, batch);
            check_kind(m, "mlp_out", -1, batch);
            check_kind(m, "resid_post", -1, batch);
            check_kind(m, "z", -1, batch);
            check_kind(m, "z", 1, batch);
            check_kind(m, "k", -1, batch);
            check_kind(m, "v", 1, batch);
            check_kind(m, "pattern", -1, batch);
            check_kind(m, "pattern", 1, batch);
        }
        lp_model_free(m);
    }
}

/* Patching every position of layer 0's resid_pre is the clean run itself: exactly 1. Patching
 * a position before the difference is the corrupt run: exactly 0. The last layer's resid_post
 * at the metric's position decides the metric: 1. */
Test(patch, normalised_ends)
{
    lp_model *m = rm_model(0, L, 16, 4, 4, V, 7);
    lp_patch_opts o = {.kind = lp_patch_kind_find("resid_pre"), .positions = 0, .normalize = 1, .token = TOK,
                       .baseline = BASE, .pos = -1};
    lp_patch_result res;
    cr_assert_eq(lp_patch_sweep(m, CLEAN, CORRUPT, T, &o, &res), 0, "%s", lp_last_error());
    cr_assert_eq(res.rows, L);
    cr_assert_eq(res.cols, 1);
    cr_assert_eq(res.values[0], 1.0f, "layer 0, all positions: %g", (double)res.values[0]);
    cr_assert_eq(res.raw[0], (float)res.clean);
    lp_patch_result_free(&res);
    o.positions = 1;
    cr_assert_eq(lp_patch_sweep(m, CLEAN, CORRUPT, T, &o, &res), 0, "%s", lp_last_error());
    cr_assert(fabsf(res.values[2] - 1) < 1e-5, "layer 0: position 2 is the only difference: %g", (double)res.values[2]);
    for (int p = 0; p < T; p++)
        if (p != 2)
            cr_assert_eq(res.values[p], 0.0f, "layer 0 position %d: the same token", p);
    lp_patch_result_free(&res);
    o.kind = lp_patch_kind_find("resid_post");
    cr_assert_eq(lp_patch_sweep(m, CLEAN, CORRUPT, T, &o, &res), 0, "%s", lp_last_error());
    cr_assert(fabsf(res.values[(L - 1) * T + T - 1] - 1) < 1e-5, "last layer, last position: %g",
              (double)res.values[(L - 1) * T + T - 1]);
    for (int l = 0; l < L; l++)
        for (int p = 0; p < 2; p++)
            cr_assert_eq(res.values[l * T + p], 0.0f, "layer %d position %d", l, p);
    lp_patch_result_free(&res);
    /* not normalised: the metric itself */
    o.normalize = 0;
    cr_assert_eq(lp_patch_sweep(m, CLEAN, CORRUPT, T, &o, &res), 0);
    for (int i = 0; i < L * T; i++)
        cr_assert_eq(res.values[i], res.raw[i]);
    cr_assert_eq(res.values[0], (float)res.corrupt);
    lp_patch_result_free(&res);
    /* equal prompts: every region is skipped, the normalised values are NaN */
    o.normalize = 1;
    cr_assert_eq(lp_patch_sweep(m, CLEAN, CLEAN, T, &o, &res), 0);
    cr_assert_eq(res.runs, 0);
    cr_assert(isnan(res.values[3]) && res.raw[3] == (float)res.clean);
    lp_patch_result_free(&res);
    lp_model_free(m);
}

/* ---- the metric and progress callbacks ---- */

typedef struct {
    int calls, fail_at, interrupt_at;
    lp_tensor *kept; /* an alias of the first logits seen (the clean run's) */
    long last_done, last_total;
    int last_state, n_progress, bad; /* bad: a callback saw something wrong (checked after: a
                                        Criterion assertion allocates, which the leak check sees) */
} probe;

static int probe_metric(void *ud, const lp_tensor *logits, double *value)
{
    probe *p = ud;
    p->calls++;
    if (logits->ndim != 3 || logits->shape[0] != 1 || logits->shape[1] != T || logits->shape[2] != V)
        p->bad = 1;
    if (!p->kept)
        p->kept = lp_tensor_alias(logits);
    if (p->calls == p->fail_at)
        return lp_set_error("boom at call %d", p->calls);
    if (p->calls == p->interrupt_at)
        lp_interrupt_request();
    int64_t a[3] = {0, T - 1, TOK}, b[3] = {0, T - 1, BASE};
    float x = 0, y = 0;
    if (lp_tensor_get(logits, a, &x) < 0 || lp_tensor_get(logits, b, &y) < 0)
        p->bad = 1;
    *value = (double)x - y;
    return 0;
}

static void probe_progress(void *ud, long done, long total, int state)
{
    probe *p = ud;
    if (done < p->last_done || done > total)
        p->bad = 1;
    p->last_done = done, p->last_total = total, p->last_state = state;
    p->n_progress++;
}

/* A metric callback gives what the built-in one gives; it is called for the clean and corrupt
 * runs and once per patched run, never for a skipped region; progress ends at total, done. */
Test(patch, metric_callback_and_progress)
{
    lp_model *m = rm_model(1, L, 16, 4, 2, V, 9);
    lp_patch_opts o = {.kind = lp_patch_kind_find("z"), .positions = 1, .normalize = 1, .token = TOK,
                       .baseline = BASE, .pos = -1, .batch = 4};
    lp_patch_result a, b;
    cr_assert_eq(lp_patch_sweep(m, CLEAN, CORRUPT, T, &o, &a), 0, "%s", lp_last_error());
    probe p = {0};
    o.metric = probe_metric, o.metric_ud = &p, o.progress = probe_progress, o.progress_ud = &p;
    o.token = -1; /* unused with a callback */
    cr_assert_eq(lp_patch_sweep(m, CLEAN, CORRUPT, T, &o, &b), 0, "%s", lp_last_error());
    cr_assert_eq(p.calls, 2 + b.runs, "%d metric calls for %ld runs", p.calls, b.runs);
    cr_assert(b.runs < (long)L * 4 * T, "regions before the difference are skipped");
    for (int i = 0; i < b.rows * b.cols; i++)
        cr_assert_eq(a.raw[i], b.raw[i], "entry %d: %g vs %g", i, (double)a.raw[i], (double)b.raw[i]);
    cr_assert_eq(p.last_state, 1);
    cr_assert(!p.bad);
    cr_assert_eq(p.last_done, p.last_total);
    cr_assert_eq(p.last_total, (long)L * 4 * T);
    cr_assert(p.n_progress >= 1 + (int)((b.runs + 3) / 4), "one report per forward pass: %d", p.n_progress);
    lp_tensor_free(p.kept);
    lp_patch_result_free(&a);
    lp_patch_result_free(&b);
    lp_model_free(m);
}

/* An interrupt (or a failing metric) mid-sweep: -1 with the error, *out untouched, the runs
 * freed (the clean run's logits are held by nothing but the probe's alias), no heap growth. */
Test(patch, interrupt_and_failure_leave_nothing)
{
    lp_model *m = rm_model(0, L, 16, 4, 4, V, 3);
    lp_patch_opts o = {.kind = lp_patch_kind_find("resid_pre"), .positions = 1, .normalize = 1, .pos = -1,
                       .batch = 2, .metric = probe_metric, .progress = probe_progress};
    for (int round = 0; round < 4; round++) { /* round 0 warms up (BLAS, scratch) */
        probe p = {.interrupt_at = 3}, q = {.fail_at = 4}; /* 3: the last row of a pass (layer 0
                                                                runs position 2 only) */
        lp_patch_result res = {.rows = -7};
        char err1[128], err2[128];
        track_start();
        o.metric_ud = o.progress_ud = &p;
        int rc1 = lp_patch_sweep(m, CLEAN, CORRUPT, T, &o, &res);
        snprintf(err1, sizeof err1, "%s", lp_last_error());
        int flag = lp_interrupted();
        lp_interrupt_clear();
        o.metric_ud = o.progress_ud = &q; /* a metric that fails */
        int rc2 = lp_patch_sweep(m, CLEAN, CORRUPT, T, &o, &res);
        snprintf(err2, sizeof err2, "%s", lp_last_error());
        int refs1 = lp_tensor_storage_refs(p.kept), refs2 = lp_tensor_storage_refs(q.kept);
        lp_tensor_free(p.kept);
        lp_tensor_free(q.kept);
        long leaked = track_stop();
        cr_assert_eq(rc1, -1);
        cr_assert_str_eq(err1, "interrupted");
        cr_assert(flag);
        cr_assert_eq(p.calls, 3, "stopped before the next forward pass: %d calls", p.calls);
        cr_assert_eq(p.last_state, -1, "progress ends stopped");
        cr_assert_eq(refs1, 1, "the clean run was freed");
        cr_assert_eq(rc2, -1);
        cr_assert_str_eq(err2, "boom at call 4");
        cr_assert_eq(q.calls, 4);
        cr_assert_eq(q.last_state, -1);
        cr_assert_eq(refs2, 1);
        cr_assert(!p.bad && !q.bad);
        cr_assert_eq(res.rows, -7, "the result is left alone");
        cr_assert_null(res.values);
        if (round > 0)
            cr_assert_eq(leaked, 0, "%ld allocations of two failed sweeps were not freed", leaked);
    }
    lp_model_free(m);
}

Test(patch, errors)
{
    lp_model *m = rm_model(0, L, 16, 4, 4, V, 3);
    cr_assert_null(lp_patch_kind_find("nope"));
    cr_assert(strstr(lp_last_error(), "hook must be one of") && strstr(lp_last_error(), "'nope'"), "%s",
              lp_last_error());
    cr_assert_not_null(lp_patch_kind_find("hook_resid_mid"));
    lp_patch_result res = {.rows = -7};
    lp_patch_opts o = {.normalize = 1, .token = V, .pos = -1};
    cr_assert_eq(lp_patch_sweep(m, CLEAN, CORRUPT, T, &o, &res), -1);
    cr_assert(strstr(lp_last_error(), "not an id"), "%s", lp_last_error());
    o.token = 1, o.pos = T;
    cr_assert_eq(lp_patch_sweep(m, CLEAN, CORRUPT, T, &o, &res), -1);
    cr_assert(strstr(lp_last_error(), "metric pos"), "%s", lp_last_error());
    o.pos = -1;
    int32_t bad[T] = {3, 1, 4, 1, 5, 9, 99};
    cr_assert_eq(lp_patch_sweep(m, CLEAN, bad, T, &o, &res), -1);
    cr_assert_eq(res.rows, -7);
    o.kind = lp_patch_kind_find("resid_mid"), o.positions = 0;
    cr_assert_eq(lp_patch_sweep(m, CLEAN, CORRUPT, T, &o, &res), 0, "%s", lp_last_error());
    cr_assert_eq(res.kind, o.kind);
    lp_patch_result_free(&res);
    lp_patch_result_free(NULL);
    lp_model_free(m);
}
