/* An SAE training run: batches, every trainer of a sweep stepped on each, the history, the
 * progress callback, interrupts and resume (see sae_run.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "dict/sae_run.h"

/* One trainer's history, cap entries reserved for each list. */
typedef struct hist {
    size_t n, cap;
    long *step;
    int64_t *tokens;
    double *loss, *mse, *sparsity, *l0, *ev;
    int *dead;
} hist;

struct lp_sae_run {
    lp_sae_run_opts o;
    int n;
    lp_sae_trainer **t;
    hist *h;
    lp_sae_step_stats *stats;
    float *x, *y; /* one batch */
    int64_t tokens;
    double seconds;
    char stopped[512]; /* why a trainer's step failed (a NaN): the run does not go on */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void free_trainers(lp_sae_trainer **t, int n)
{
    for (int i = 0; i < n; i++)
        lp_sae_trainer_free(t[i]);
}

static int check(lp_sae_trainer **t, int n, const lp_sae_run_opts *o)
{
    if (n < 1 || !t)
        return lp_set_error("SAE training: no SAE to train");
    for (int i = 0; i < n; i++)
        if (!t[i])
            return lp_set_error("SAE training: SAE %d of %d has no trainer", i + 1, n);
    if ((o->stream == NULL) == (o->source == NULL))
        return lp_set_error("SAE training: give either an activation stream or a source of batches");
    if (o->batch < 1 || o->d_in < 1 || o->d_out < 0)
        return lp_set_error("SAE training: batch (%d) and d_in (%d) must be at least 1", o->batch, o->d_in);
    if (o->layers < 0 || (o->layers > 0 && o->d_out < 1))
        return lp_set_error("SAE training: a CLT's run needs layers >= 1 and d_out");
    for (int i = 0; i < n; i++)
        if (lp_sae_trainer_layers(t[i]) != o->layers)
            return lp_set_error("SAE training: trainer %d is for %d layers, the run for %d", i + 1,
                                lp_sae_trainer_layers(t[i]), o->layers);
    long s0 = lp_sae_trainer_steps(t[0]);
    for (int i = 1; i < n; i++)
        if (lp_sae_trainer_steps(t[i]) != s0)
            return lp_set_error("SAE training: SAE %d has made %ld steps and SAE 1 %ld; a sweep trains them in step",
                                i + 1, lp_sae_trainer_steps(t[i]), s0);
    if (o->stream) {
        lp_act_stream *s = o->stream;
        size_t want = o->layers ? 2 * (size_t)o->layers : o->d_out ? 2 : 1;
        if (lp_act_stream_nhooks(s) != want)
            return lp_set_error("SAE training: the activation stream has %zu hook points, the %s needs %zu",
                                lp_act_stream_nhooks(s), o->layers ? "CLT" : o->d_out ? "transcoder" : "SAE", want);
        if (lp_act_stream_batch(s) != o->batch)
            return lp_set_error("SAE training: the activation stream serves batches of %lld, not %d",
                                (long long)lp_act_stream_batch(s), o->batch);
        for (size_t h = 0; h < want; h++) {
            int d = o->layers ? (h < (size_t)o->layers ? o->d_in : o->d_out) : h ? o->d_out : o->d_in;
            if (lp_act_stream_dim(s, h) != d)
                return lp_set_error("SAE training: %s has %lld dimensions, the dictionary %s %d",
                                    lp_act_stream_hook(s, h), (long long)lp_act_stream_dim(s, h),
                                    h ? "predicts" : "reads", d);
        }
    }
    return 0;
}

lp_sae_run *lp_sae_run_new(lp_sae_trainer **trainers, int n, const lp_sae_run_opts *o)
{
    if (check(trainers, n, o) < 0) {
        if (trainers && n > 0)
            free_trainers(trainers, n);
        return NULL;
    }
    size_t rows = (size_t)o->batch * (size_t)(o->d_in + o->d_out) * (size_t)(o->layers ? o->layers : 1);
    lp_sae_run *r = lp_calloc(1, sizeof *r, "an SAE training run");
    lp_sae_trainer **t = lp_calloc((size_t)n, sizeof *t, "an SAE training run");
    hist *h = lp_calloc((size_t)n, sizeof *h, "an SAE training history");
    lp_sae_step_stats *st = lp_calloc((size_t)n, sizeof *st, "an SAE training run");
    float *x = rows > (size_t)1 << 40 ? (lp_set_error_code(LP_ERR_NOMEM, "cannot allocate a batch of %d x %d floats",
                                                           o->batch, o->d_in + o->d_out),
                                         NULL)
                                      : lp_malloc(rows * sizeof *x, "a batch of activations");
    if (!r || !t || !h || !st || !x) {
        free(r), free(t), free(h), free(st), free(x);
        free_trainers(trainers, n);
        return NULL;
    }
    memcpy(t, trainers, (size_t)n * sizeof *t);
    r->o = *o, r->n = n, r->t = t, r->h = h, r->stats = st, r->x = x;
    r->y = o->d_out ? x + (size_t)o->batch * o->d_in * (o->layers ? o->layers : 1) : NULL;
    return r;
}

static void hist_free(hist *h)
{
    free(h->step), free(h->tokens), free(h->loss), free(h->mse), free(h->sparsity), free(h->l0), free(h->ev);
    free(h->dead);
}

void lp_sae_run_free(lp_sae_run *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n; i++)
        hist_free(&r->h[i]);
    free_trainers(r->t, r->n);
    free(r->t), free(r->h), free(r->stats), free(r->x);
    free(r);
}

/* Grows *p (of elem-byte entries) to cap entries; the old array stays on failure. */
static int grow(void *p, size_t cap, size_t elem)
{
    void *q = lp_realloc(*(void **)p, cap * elem, "an SAE training history");
    if (!q)
        return -1;
    *(void **)p = q;
    return 0;
}

/* Room for every step up to total, so that a finished step is never lost for want of memory
 * to record it. */
static int hist_reserve(hist *h, size_t want)
{
    if (want <= h->cap)
        return 0;
    if (grow(&h->step, want, sizeof *h->step) < 0 || grow(&h->tokens, want, sizeof *h->tokens) < 0 ||
        grow(&h->loss, want, sizeof *h->loss) < 0 || grow(&h->mse, want, sizeof *h->mse) < 0 ||
        grow(&h->sparsity, want, sizeof *h->sparsity) < 0 || grow(&h->l0, want, sizeof *h->l0) < 0 ||
        grow(&h->ev, want, sizeof *h->ev) < 0 || grow(&h->dead, want, sizeof *h->dead) < 0)
        return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate the history of %zu SAE training steps", want);
    h->cap = want;
    return 0;
}

static void hist_add(hist *h, const lp_sae_step_stats *st, int64_t tokens)
{
    size_t i = h->n++;
    h->step[i] = st->step, h->tokens[i] = tokens, h->loss[i] = st->loss.total, h->mse[i] = st->loss.mse;
    h->sparsity[i] = st->loss.sparsity, h->l0[i] = st->loss.l0, h->ev[i] = st->explained_variance;
    h->dead[i] = st->dead;
}

static int draw(lp_sae_run *r)
{
    if (lp_interrupt_check() < 0)
        return -1;
    if (r->o.stream && r->o.layers) { /* a CLT: every layer's input, then every layer's output */
        const int L = r->o.layers;
        float **rows = lp_malloc(2 * (size_t)L * sizeof *rows, "a CLT's batch");
        if (!rows)
            return -1;
        for (int l = 0; l < L; l++) {
            rows[l] = r->x + (size_t)l * r->o.batch * r->o.d_in;
            rows[L + l] = r->y + (size_t)l * r->o.batch * r->o.d_out;
        }
        int rc = lp_act_stream_next(r->o.stream, rows);
        free(rows);
        return rc;
    }
    if (r->o.stream) {
        float *rows[2] = {r->x, r->y};
        return lp_act_stream_next(r->o.stream, rows);
    }
    return r->o.source(r->o.source_ud, r->x, r->y, r->o.batch);
}

/* One step of every trainer on one batch. */
static int run_step(lp_sae_run *r)
{
    if (draw(r) < 0)
        return -1;
    for (int i = 0; i < r->n; i++)
        if (lp_sae_trainer_step(r->t[i], r->x, r->y, r->o.batch, &r->stats[i]) < 0) {
            if (r->n > 1) {
                char msg[512];
                snprintf(msg, sizeof msg, "%s", lp_last_error());
                lp_set_error("SAE %d of %d: %s", i + 1, r->n, msg);
            }
            snprintf(r->stopped, sizeof r->stopped, "%s", lp_last_error());
            /* the trainers before i made this step: record it for them */
            r->tokens += r->o.batch;
            for (int j = 0; j < i; j++)
                hist_add(&r->h[j], &r->stats[j], r->tokens);
            return -1;
        }
    r->tokens += r->o.batch;
    for (int i = 0; i < r->n; i++)
        hist_add(&r->h[i], &r->stats[i], r->tokens);
    return 0;
}

int lp_sae_run_go(lp_sae_run *r, long total, lp_sae_progress_fn cb, void *ud)
{
    if (r->stopped[0])
        return lp_set_error("SAE training cannot go on after it stopped: %s", r->stopped);
    long done = lp_sae_trainer_steps(r->t[0]);
    if (total < done)
        return lp_set_error("SAE training: cannot run to step %ld, %ld steps are already done", total, done);
    for (int i = 0; i < r->n; i++)
        if (hist_reserve(&r->h[i], r->h[i].n + (size_t)(total - done) + 1) < 0)
            return -1;
    double t0 = now_s();
    int rc = 0;
    while (rc == 0 && lp_sae_trainer_steps(r->t[0]) < total) {
        rc = run_step(r);
        double now = now_s();
        r->seconds += now - t0;
        t0 = now;
        if (rc == 0 && cb) {
            lp_sae_progress p = {.step = lp_sae_trainer_steps(r->t[0]), .total = total, .tokens = r->tokens,
                                 .n = r->n, .stats = r->stats, .elapsed = r->seconds};
            rc = cb(ud, &p) ? 1 : 0;
            t0 = now_s(); /* the callback's time (a plot) is not training time */
        }
    }
    return rc;
}

int lp_sae_run_count(const lp_sae_run *r) { return r->n; }
lp_sae_trainer *lp_sae_run_trainer(const lp_sae_run *r, int i) { return i >= 0 && i < r->n ? r->t[i] : NULL; }
long lp_sae_run_steps(const lp_sae_run *r) { return lp_sae_trainer_steps(r->t[0]); }
int64_t lp_sae_run_tokens(const lp_sae_run *r) { return r->tokens; }

lp_sae_history lp_sae_run_history(const lp_sae_run *r, int i)
{
    const hist *h = &r->h[i];
    return (lp_sae_history){.n = h->n, .step = h->step, .tokens = h->tokens, .loss = h->loss, .mse = h->mse,
                            .sparsity = h->sparsity, .l0 = h->l0, .explained_variance = h->ev, .dead = h->dead};
}
