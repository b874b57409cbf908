/* The activation stream for dictionary learning: model runs over windows of a corpus into a
 * mixing buffer, served in shuffled batches of rows (see activations.h). */
#include "dict/activations.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"

struct lp_act_stream {
    const lp_model *m;
    size_t nh;
    char **names;
    int64_t *d;
    float *scale;
    const int32_t *tok;
    int ctx, per;          /* positions per window; corpus tokens per window */
    int prepend, keep;
    int R;                 /* windows per run */
    int64_t nwin, win, epoch;
    int32_t *ids;          /* R x ctx */
    float **buf;           /* per hook: cap x d */
    int64_t batch, cap, fill_to, half, count, served;
    uint64_t seed;
    lp_rng g;
    size_t bytes;
};

/* ---- nearest hook names ---- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (nb > 127)
        nb = 127;
    size_t row[128];
    for (size_t j = 0; j <= nb; j++)
        row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[nb];
}

void lp_model_hook_nearest(const lp_model *m, const char *name, char *buf, size_t cap)
{
    enum { K = 3 };
    char best[K][96];
    size_t dist[K], nbest = 0;
    char cand[96];
    for (size_t i = 0; lp_model_hook_name(m, i, cand, sizeof cand) == 0; i++) {
        size_t dd = edit_distance(name, cand), at = nbest < K ? nbest : K;
        while (at > 0 && dist[at - 1] > dd)
            at--;
        if (at >= K)
            continue;
        for (size_t j = (nbest < K ? nbest : K - 1); j > at; j--) {
            dist[j] = dist[j - 1];
            memcpy(best[j], best[j - 1], sizeof best[j]);
        }
        dist[at] = dd;
        memcpy(best[at], cand, sizeof cand);
        if (nbest < K)
            nbest++;
    }
    size_t len = 0;
    if (cap)
        buf[0] = 0;
    for (size_t j = 0; j < nbest && len < cap; j++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", j ? ", " : "", best[j]);
}

/* ---- runs into the buffer ---- */

static int keep_name(void *ud, const char *name)
{
    const lp_act_stream *s = ud;
    for (size_t h = 0; h < s->nh; h++)
        if (!strcmp(s->names[h], name))
            return 1;
    return 0;
}

/* The blocks a run needs for the asked hooks: 1 + the last block named (blocks.L.*; the
 * embeddings' hooks need one), or 0 (the whole model) when one is after the blocks. */
static int blocks_needed(const lp_act_stream *s)
{
    int need = 1;
    for (size_t h = 0; h < s->nh; h++) {
        const char *n = s->names[h];
        int L, used = 0;
        if (!strcmp(n, "hook_embed") || !strcmp(n, "hook_pos_embed"))
            continue;
        if (sscanf(n, "blocks.%d.%n", &L, &used) != 1 || used == 0 || L < 0)
            return 0;
        need = L + 1 > need ? L + 1 : need;
    }
    return need < s->m->cfg.n_layers ? need : 0;
}

/* Runs the next R windows; with probe, only checks the hooks and sets d. Appends every kept
 * position's rows to the buffer otherwise. */
static int run_windows(lp_act_stream *s, int probe)
{
    const lp_model_config *c = &s->m->cfg;
    int R = probe ? 1 : s->R;
    for (int r = 0; r < R; r++) {
        int32_t *row = s->ids + (size_t)r * s->ctx;
        if (s->prepend)
            row[0] = c->bos;
        memcpy(row + s->prepend, s->tok + s->win * s->per, (size_t)s->per * sizeof *row);
        if (probe)
            continue;
        if (++s->win == s->nwin)
            s->win = 0, s->epoch++;
    }
    if (lp_interrupt_check() < 0)
        return -1;
    lp_run_opts o = {.filter = keep_name, .filter_ud = s};
    lp_run run;
    if (lp_model_run_blocks(s->m, s->ids, R, s->ctx, &o, blocks_needed(s), &run) < 0)
        return -1;
    const float *src[64];
    int rc = -1;
    for (size_t h = 0; h < s->nh; h++) {
        const lp_tensor *t = lp_run_get(&run, s->names[h]);
        if (!t || t->ndim < 3 || t->shape[0] != R || t->shape[1] != s->ctx || !lp_tensor_is_contiguous(t)) {
            lp_set_error("activations: hook point '%s' has no row per token (its positions are not dim 1)",
                         s->names[h]);
            goto done;
        }
        int64_t d = lp_tensor_numel(t) / ((int64_t)R * s->ctx);
        if (probe)
            s->d[h] = d;
        src[h] = t->data;
    }
    if (!probe)
        for (int64_t i = 0; i < (int64_t)R * s->ctx; i++) {
            int32_t id = s->ids[i];
            if (!s->keep && ((c->bos >= 0 && id == c->bos) || (c->eos >= 0 && id == c->eos)))
                continue;
            for (size_t h = 0; h < s->nh; h++)
                memcpy(s->buf[h] + s->count * s->d[h], src[h] + i * s->d[h], (size_t)s->d[h] * sizeof(float));
            s->count++;
        }
    rc = 0;
done:
    lp_run_clear(&run);
    return rc;
}

static void swap_rows(lp_act_stream *s, int64_t i, int64_t j)
{
    for (size_t h = 0; h < s->nh; h++) {
        float *a = s->buf[h] + i * s->d[h], *b = s->buf[h] + j * s->d[h];
        for (int64_t k = 0; k < s->d[h]; k++) {
            float t = a[k];
            a[k] = b[k];
            b[k] = t;
        }
    }
}

/* Runs the model until the buffer holds fill_to rows, then shuffles it (Fisher-Yates, the
 * same permutation for every hook). */
static int refill(lp_act_stream *s)
{
    int64_t idle = 0; /* runs in a row that kept no position */
    while (s->count < s->fill_to) {
        int64_t before = s->count;
        int64_t win0 = s->win, ep0 = s->epoch;
        if (run_windows(s, 0) < 0) {
            s->count = before, s->win = win0, s->epoch = ep0; /* an interrupt loses nothing */
            return -1;
        }
        idle = s->count == before ? idle + 1 : 0;
        if (idle * s->R > s->nwin)
            return lp_set_error("activations: no position of the corpus is served (every token is BOS or a "
                                "separator; keep_special serves them)");
    }
    for (int64_t i = s->count - 1; i > 0; i--)
        swap_rows(s, i, (int64_t)lp_rng_below(&s->g, (uint64_t)i + 1));
    return 0;
}

int lp_act_stream_next(lp_act_stream *s, float *const *rows)
{
    if (s->count - s->batch < s->half && refill(s) < 0)
        return -1;
    s->count -= s->batch;
    for (size_t h = 0; h < s->nh; h++) {
        const float *src = s->buf[h] + s->count * s->d[h];
        int64_t n = s->batch * s->d[h];
        float k = s->scale[h];
        for (int64_t i = 0; i < n; i++)
            rows[h][i] = k * src[i];
    }
    s->served += s->batch;
    return 0;
}

static void restart(lp_act_stream *s)
{
    s->win = 0, s->epoch = 0, s->count = 0, s->served = 0;
    lp_rng_seed(&s->g, s->seed);
}

/* s = sqrt(d) / E||x|| per hook over n batches, then the stream starts again. */
static int estimate_scale(lp_act_stream *s, int n)
{
    float *rows[64] = {0};
    double *sum = lp_calloc(s->nh, sizeof *sum, "normalisation sums");
    int rc = -1;
    if (!sum)
        return -1;
    for (size_t h = 0; h < s->nh; h++)
        if (!(rows[h] = lp_malloc((size_t)(s->batch * s->d[h]) * sizeof(float), "a normalisation batch")))
            goto done;
    for (int b = 0; b < n; b++) {
        if (lp_act_stream_next(s, rows) < 0)
            goto done;
        for (size_t h = 0; h < s->nh; h++)
            for (int64_t i = 0; i < s->batch; i++) {
                double q = 0;
                for (int64_t k = 0; k < s->d[h]; k++) {
                    double v = rows[h][i * s->d[h] + k];
                    q += v * v;
                }
                sum[h] += sqrt(q);
            }
    }
    for (size_t h = 0; h < s->nh; h++) {
        double mean = sum[h] / ((double)n * (double)s->batch);
        s->scale[h] = mean > 0 ? (float)(sqrt((double)s->d[h]) / mean) : 1.0f;
    }
    restart(s);
    rc = 0;
done:
    for (size_t h = 0; h < s->nh; h++)
        free(rows[h]);
    free(sum);
    return rc;
}

static int check_opts(const lp_model *m, const lp_act_opts *o, size_t ntok)
{
    const lp_model_config *c = &m->cfg;
    if (!o->nhooks || !o->hooks)
        return lp_set_error("activations: no hook point asked");
    if (o->nhooks > 64)
        return lp_set_error("activations: %zu hook points asked, at most 64", o->nhooks);
    for (size_t h = 0; h < o->nhooks; h++)
        if (!o->hooks[h] || !lp_model_has_hook(m, o->hooks[h])) {
            char near[320];
            lp_model_hook_nearest(m, o->hooks[h] ? o->hooks[h] : "", near, sizeof near);
            return lp_set_error("activations: the model has no hook point '%s' (nearest: %s)",
                                o->hooks[h] ? o->hooks[h] : "(null)", near);
        }
    if (!o->data && !o->tokens)
        return lp_set_error("activations: no tokens (a dataset or a token array)");
    if (o->ctx < 2 || o->ctx > c->n_ctx)
        return lp_set_error("activations: ctx %d must be within 2..%d (the model's context)", o->ctx, c->n_ctx);
    if (o->prepend_bos && c->bos < 0)
        return lp_set_error("activations: prepend_bos, but the model has no BOS token");
    if (o->batch < 1 || o->batch > (1 << 24))
        return lp_set_error("activations: batch %lld must be within 1..%d rows", (long long)o->batch, 1 << 24);
    if (o->buffer < 2 || o->buffer > 4096)
        return lp_set_error("activations: buffer %d must be within 2..4096 batches", o->buffer);
    if (o->run_rows < 0 || o->run_rows > 4096)
        return lp_set_error("activations: run_rows %d must be within 0..4096", o->run_rows);
    size_t per = (size_t)(o->ctx - (o->prepend_bos ? 1 : 0));
    if (ntok < per)
        return lp_set_error("activations: the corpus has %zu tokens, fewer than one context of %zu", ntok, per);
    return 0;
}

lp_act_stream *lp_act_stream_new(const lp_model *m, const lp_act_opts *o)
{
    size_t ntok = o->data ? lp_dataset_size(o->data) : o->ntokens;
    if (check_opts(m, o, ntok) < 0)
        return NULL;
    lp_act_stream *s = lp_calloc(1, sizeof *s, "an activation stream");
    if (!s)
        return NULL;
    s->m = m, s->nh = o->nhooks;
    s->tok = o->data ? lp_dataset_ids(o->data) : o->tokens;
    s->ctx = o->ctx, s->prepend = o->prepend_bos != 0, s->keep = o->keep_special != 0;
    s->per = s->ctx - s->prepend;
    s->nwin = (int64_t)(ntok / (size_t)s->per);
    s->batch = o->batch, s->seed = o->seed;
    int64_t R = o->run_rows;
    if (!R) { /* about a batch per run, at most 64 windows and 256 MB of logits (the run makes them) */
        int64_t most = ((int64_t)256 << 20) / ((int64_t)s->ctx * m->cfg.d_vocab * (int64_t)sizeof(float));
        R = (o->batch + s->ctx - 1) / s->ctx;
        R = R > 64 ? 64 : R > most ? most : R;
        R = R < 1 ? 1 : R;
    }
    s->R = (int)R;
    s->half = (int64_t)o->buffer * o->batch / 2;
    s->fill_to = (int64_t)o->buffer * o->batch;
    s->cap = s->fill_to + (int64_t)s->R * s->ctx; /* one run past full */
    lp_rng_seed(&s->g, s->seed);
    if (!(s->names = lp_calloc(s->nh, sizeof *s->names, "an activation stream")) ||
        !(s->d = lp_calloc(s->nh, sizeof *s->d, "an activation stream")) ||
        !(s->scale = lp_calloc(s->nh, sizeof *s->scale, "an activation stream")) ||
        !(s->buf = lp_calloc(s->nh, sizeof *s->buf, "an activation stream")) ||
        !(s->ids = lp_malloc((size_t)s->R * s->ctx * sizeof *s->ids, "the stream's token windows")))
        goto fail;
    for (size_t h = 0; h < s->nh; h++) {
        if (!(s->names[h] = lp_strdup(o->hooks[h], "an activation stream")))
            goto fail;
        s->scale[h] = 1.0f;
    }
    if (run_windows(s, 1) < 0)
        goto fail;
    s->bytes = sizeof *s + (size_t)s->R * s->ctx * sizeof *s->ids;
    for (size_t h = 0; h < s->nh; h++) {
        size_t n = (size_t)s->cap * (size_t)s->d[h];
        if (n / (size_t)s->d[h] != (size_t)s->cap || n > SIZE_MAX / sizeof(float)) {
            lp_set_error_code(LP_ERR_NOMEM, "cannot allocate the mixing buffer of %lld rows x %lld",
                              (long long)s->cap, (long long)s->d[h]);
            goto fail;
        }
        if (!(s->buf[h] = lp_malloc(n * sizeof(float), "the activations' mixing buffer")))
            goto fail;
        s->bytes += n * sizeof(float);
    }
    if (o->normalize && estimate_scale(s, o->norm_batches > 0 ? o->norm_batches : 32) < 0)
        goto fail;
    return s;
fail:
    lp_act_stream_free(s);
    return NULL;
}

void lp_act_stream_free(lp_act_stream *s)
{
    if (!s)
        return;
    for (size_t h = 0; h < s->nh; h++) {
        if (s->names)
            free(s->names[h]);
        if (s->buf)
            free(s->buf[h]);
    }
    free(s->names);
    free(s->buf);
    free(s->d);
    free(s->scale);
    free(s->ids);
    free(s);
}

size_t lp_act_stream_nhooks(const lp_act_stream *s) { return s->nh; }
const char *lp_act_stream_hook(const lp_act_stream *s, size_t h) { return h < s->nh ? s->names[h] : NULL; }
int64_t lp_act_stream_dim(const lp_act_stream *s, size_t h) { return h < s->nh ? s->d[h] : 0; }
int64_t lp_act_stream_batch(const lp_act_stream *s) { return s->batch; }
float lp_act_stream_scale(const lp_act_stream *s, size_t h) { return h < s->nh ? s->scale[h] : 0.0f; }
int64_t lp_act_stream_tokens_seen(const lp_act_stream *s) { return s->served; }
int64_t lp_act_stream_epoch(const lp_act_stream *s) { return s->epoch; }
size_t lp_act_stream_bytes(const lp_act_stream *s) { return s->bytes; }
