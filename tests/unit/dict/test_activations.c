/* The activation stream (backend/dict/activations.h) on a tiny random model: every served
 * row is the hook value of one (window, position) of a full run, served once per epoch, BOS
 * and separators excluded, batches mixed across many windows, rows aligned across hooks,
 * memory bounded by the buffer, determinism by seed, normalisation, and bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "dict/activations.h"
#include "../model/random_model.h"

enum { L_ = 2, D_ = 16, V_ = 37, CTX = 12, BATCH = 32, BUF = 8, SEP = 0 };
static const char *const HOOKS[] = {"blocks.0.mlp.hook_in", "blocks.1.mlp.hook_out"};

static lp_model *model(void)
{
    lp_model *m = rm_model(0, L_, D_, 4, 4, V_, 21);
    m->cfg.bos = m->cfg.eos = SEP; /* GPT-2's <|endoftext|>: BOS and separator */
    return m;
}

/* n tokens in 1..V-1, a separator every 40 or so */
static int32_t *corpus(size_t n, uint64_t seed)
{
    int32_t *t = malloc(n * sizeof *t);
    lp_rng g;
    lp_rng_seed(&g, seed);
    for (size_t i = 0; i < n; i++)
        t[i] = lp_rng_below(&g, 40) == 0 ? SEP : 1 + (int32_t)lp_rng_below(&g, V_ - 1);
    return t;
}

static lp_act_opts opts(const int32_t *tok, size_t n)
{
    return (lp_act_opts){.hooks = HOOKS, .nhooks = 2, .tokens = tok, .ntokens = n, .ctx = CTX, .batch = BATCH,
                         .buffer = BUF, .seed = 3, .prepend_bos = 1};
}

/* The reference: every window (BOS + CTX-1 tokens) in one run with both hooks cached; the
 * rows of the positions that are not BOS / separators, with their window. */
typedef struct {
    int64_t n;
    float *row[2];
    int *win;
} ref_rows;

static ref_rows reference(const lp_model *m, const int32_t *tok, size_t n)
{
    int per = CTX - 1, nwin = (int)(n / per);
    int32_t *ids = malloc(sizeof *ids * nwin * CTX);
    for (int w = 0; w < nwin; w++) {
        ids[w * CTX] = SEP;
        memcpy(ids + w * CTX + 1, tok + (size_t)w * per, sizeof *ids * per);
    }
    lp_run r;
    lp_run_opts o = {.cache_all = 1};
    cr_assert_eq(lp_model_run(m, ids, nwin, CTX, &o, &r), 0, "%s", lp_last_error());
    ref_rows f = {0};
    f.row[0] = malloc(sizeof(float) * nwin * CTX * D_);
    f.row[1] = malloc(sizeof(float) * nwin * CTX * D_);
    f.win = malloc(sizeof(int) * nwin * CTX);
    for (int i = 0; i < nwin * CTX; i++) {
        if (ids[i] == SEP)
            continue;
        for (int h = 0; h < 2; h++)
            memcpy(f.row[h] + f.n * D_, lp_run_get(&r, HOOKS[h])->data + (size_t)i * D_, sizeof(float) * D_);
        f.win[f.n++] = i / CTX;
    }
    lp_run_clear(&r);
    free(ids);
    return f;
}

/* a reference row equal to x (within float rounding of another batch size) and not yet
 * seen (seen may be NULL), or -1. Windows that begin alike have equal rows: they count as
 * several. */
static int64_t find(const ref_rows *f, int h, const float *x, const char *seen)
{
    for (int64_t i = 0; i < f->n; i++) {
        if (seen && seen[i])
            continue;
        const float *y = f->row[h] + i * D_;
        int same = 1;
        for (int k = 0; k < D_ && same; k++)
            same = fabsf(x[k] - y[k]) <= 1e-4f * (1.0f + fabsf(y[k]));
        if (same)
            return i;
    }
    return -1;
}

Test(activations, rows_are_hook_values_served_once_without_bos_mixed_and_aligned)
{
    lp_model *m = model();
    size_t n = 1400;
    int32_t *tok = corpus(n, 9);
    ref_rows f = reference(m, tok, n);
    lp_act_opts o = opts(tok, n);
    lp_act_stream *s = lp_act_stream_new(m, &o);
    cr_assert_not_null(s, "%s", lp_last_error());
    cr_assert_eq(lp_act_stream_dim(s, 0), D_);
    cr_assert_eq(lp_act_stream_dim(s, 1), D_);
    /* served + what the buffer reads ahead stays within the first epoch */
    int nb = (int)((f.n - (BUF * BATCH + 3 * CTX)) / BATCH);
    cr_assert_gt(nb, 10);
    char *seen = calloc((size_t)f.n, 1);
    float a[BATCH * D_], b[BATCH * D_];
    float *rows[2] = {a, b};
    double distinct = 0;
    for (int k = 0; k < nb; k++) {
        cr_assert_eq(lp_act_stream_next(s, rows), 0, "%s", lp_last_error());
        char wins[200] = {0};
        int nw = 0;
        for (int i = 0; i < BATCH; i++) {
            int64_t j = find(&f, 0, a + i * D_, seen);
            cr_assert_geq(j, 0, "batch %d row %d is no hook value of a kept position not served yet (BOS? "
                                "twice?)", k, i);
            seen[j] = 1;
            for (int d = 0; d < D_; d++) /* the second hook's row is of the same token */
                cr_assert(fabsf(b[i * D_ + d] - f.row[1][j * D_ + d]) <= 1e-4f * (1 + fabsf(f.row[1][j * D_ + d])),
                          "batch %d row %d: hooks not aligned", k, i);
            if (!wins[f.win[j]]++)
                nw++;
        }
        distinct += nw;
    }
    /* unmixed, 32 consecutive rows span at most 4 windows of 11 */
    distinct /= nb;
    cr_assert_gt(distinct, 12.0, "rows of a batch come from %.1f windows on average", distinct);
    cr_assert_eq(lp_act_stream_tokens_seen(s), (int64_t)nb * BATCH);
    cr_assert_eq(lp_act_stream_epoch(s), 0);
    lp_act_stream_free(s);
    free(seen);
    free(f.row[0]), free(f.row[1]), free(f.win), free(tok);
    lp_model_free(m);
}

Test(activations, keep_special_serves_bos_rows)
{
    lp_model *m = model();
    size_t n = 300;
    int32_t *tok = corpus(n, 4);
    ref_rows f = reference(m, tok, n);
    lp_act_opts o = opts(tok, n);
    o.keep_special = 1;
    lp_act_stream *s = lp_act_stream_new(m, &o);
    cr_assert_not_null(s, "%s", lp_last_error());
    float a[BATCH * D_], b[BATCH * D_];
    float *rows[2] = {a, b};
    int unmatched = 0;
    for (int k = 0; k < 4; k++) {
        cr_assert_eq(lp_act_stream_next(s, rows), 0, "%s", lp_last_error());
        for (int i = 0; i < BATCH; i++)
            unmatched += find(&f, 0, a + i * D_, NULL) < 0;
    }
    cr_assert_gt(unmatched, 0, "no BOS / separator row was served");
    lp_act_stream_free(s);
    free(f.row[0]), free(f.row[1]), free(f.win), free(tok);
    lp_model_free(m);
}

static void draw(lp_act_stream *s, int nb, float *out)
{
    float b[BATCH * D_];
    for (int k = 0; k < nb; k++) {
        float *rows[2] = {out + (size_t)k * BATCH * D_, b};
        cr_assert_eq(lp_act_stream_next(s, rows), 0, "%s", lp_last_error());
    }
}

Test(activations, deterministic_in_the_seed_and_bounded_whatever_the_corpus)
{
    lp_model *m = model();
    size_t n = 3000;
    int32_t *tok = corpus(n, 5);
    enum { NB = 40 }; /* past one epoch of a 600-token corpus */
    float *x = malloc(sizeof(float) * NB * BATCH * D_), *y = malloc(sizeof(float) * NB * BATCH * D_);
    lp_act_opts o = opts(tok, n);
    lp_act_stream *s = lp_act_stream_new(m, &o), *t = lp_act_stream_new(m, &o);
    cr_assert(s && t, "%s", lp_last_error());
    draw(s, NB, x), draw(t, NB, y);
    cr_assert_eq(memcmp(x, y, sizeof(float) * NB * BATCH * D_), 0, "same seed, different rows");
    size_t big = lp_act_stream_bytes(s);
    lp_act_stream_free(t);
    o.seed = 4;
    t = lp_act_stream_new(m, &o);
    draw(t, NB, y);
    cr_assert_neq(memcmp(x, y, sizeof(float) * NB * BATCH * D_), 0, "another seed, the same rows");
    lp_act_stream_free(t);
    /* a fifth of the corpus, cycled over: the same memory */
    o.ntokens = n / 5;
    t = lp_act_stream_new(m, &o);
    draw(t, NB, y);
    cr_assert_gt(lp_act_stream_epoch(t), 0);
    cr_assert_eq(lp_act_stream_bytes(t), big);
    cr_assert_lt(big, (size_t)(BUF + 2) * BATCH * D_ * 2 * sizeof(float) + 4096);
    lp_act_stream_free(t);
    lp_act_stream_free(s);
    free(x), free(y), free(tok);
    lp_model_free(m);
}

Test(activations, normalisation_scales_rows_to_norm_sqrt_d)
{
    lp_model *m = model();
    size_t n = 2000;
    int32_t *tok = corpus(n, 6);
    enum { NB = 6 };
    float *x = malloc(sizeof(float) * NB * BATCH * D_), *y = malloc(sizeof(float) * NB * BATCH * D_);
    lp_act_opts o = opts(tok, n);
    lp_act_stream *s = lp_act_stream_new(m, &o);
    o.normalize = 1, o.norm_batches = 8;
    lp_act_stream *t = lp_act_stream_new(m, &o);
    cr_assert(s && t, "%s", lp_last_error());
    cr_assert_eq(lp_act_stream_scale(s, 0), 1.0f);
    float k = lp_act_stream_scale(t, 0);
    cr_assert(k > 0 && k != 1.0f);
    draw(s, NB, x), draw(t, NB, y);
    double norm = 0;
    for (int i = 0; i < NB * BATCH; i++) {
        double q = 0;
        for (int d = 0; d < D_; d++) {
            cr_assert_float_eq(y[i * D_ + d], k * x[i * D_ + d], 1e-5f * (1 + fabsf(y[i * D_ + d])));
            q += (double)y[i * D_ + d] * y[i * D_ + d];
        }
        norm += sqrt(q);
    }
    norm /= NB * BATCH;
    cr_assert(fabs(norm - sqrt(D_)) < 0.1 * sqrt(D_), "mean norm %g, sqrt(d) %g", norm, sqrt(D_));
    cr_assert_eq(lp_act_stream_tokens_seen(t), NB * BATCH, "the estimate's batches are not counted");
    lp_act_stream_free(s), lp_act_stream_free(t);
    free(x), free(y), free(tok);
    lp_model_free(m);
}

Test(activations, bad_input_says_what)
{
    lp_model *m = model();
    int32_t *tok = corpus(100, 7);
    lp_act_opts o = opts(tok, 100);
    const char *bad[] = {"blocks.0.mlp.hook_inn"};
    o.hooks = bad, o.nhooks = 1;
    cr_assert_null(lp_act_stream_new(m, &o));
    cr_assert(strstr(lp_last_error(), "no hook point 'blocks.0.mlp.hook_inn'") &&
                  strstr(lp_last_error(), "nearest: blocks.0.mlp.hook_in"), "%s", lp_last_error());
    const char *pat[] = {"blocks.0.attn.hook_pattern"};
    o.hooks = pat;
    cr_assert_null(lp_act_stream_new(m, &o));
    cr_assert(strstr(lp_last_error(), "no row per token"), "%s", lp_last_error());
    o = opts(tok, 10);
    cr_assert_null(lp_act_stream_new(m, &o));
    cr_assert(strstr(lp_last_error(), "the corpus has 10 tokens, fewer than one context of 11"), "%s",
              lp_last_error());
    o = opts(tok, 100);
    o.ctx = 17;
    cr_assert_null(lp_act_stream_new(m, &o));
    cr_assert(strstr(lp_last_error(), "ctx 17"), "%s", lp_last_error());
    o = opts(tok, 100);
    o.buffer = 1;
    cr_assert_null(lp_act_stream_new(m, &o));
    cr_assert(strstr(lp_last_error(), "buffer 1"), "%s", lp_last_error());
    /* every token a separator: an error, not an endless loop */
    int32_t seps[40] = {0};
    o = opts(seps, 40);
    lp_act_stream *s = lp_act_stream_new(m, &o);
    cr_assert_not_null(s, "%s", lp_last_error());
    float a[BATCH * D_], b[BATCH * D_];
    float *rows[2] = {a, b};
    cr_assert_eq(lp_act_stream_next(s, rows), -1);
    cr_assert(strstr(lp_last_error(), "no position of the corpus"), "%s", lp_last_error());
    lp_act_stream_free(s);
    free(tok);
    lp_model_free(m);
}

Test(activations, an_interrupt_stops_between_runs_and_loses_nothing)
{
    lp_model *m = model();
    size_t n = 1000;
    int32_t *tok = corpus(n, 8);
    enum { NB = 12 };
    float *x = malloc(sizeof(float) * NB * BATCH * D_), *y = malloc(sizeof(float) * NB * BATCH * D_);
    lp_act_opts o = opts(tok, n);
    lp_act_stream *s = lp_act_stream_new(m, &o), *t = lp_act_stream_new(m, &o);
    cr_assert(s && t, "%s", lp_last_error());
    draw(s, NB, x);
    float a[BATCH * D_], b[BATCH * D_];
    float *rows[2] = {a, b};
    lp_interrupt_request();
    cr_assert_eq(lp_act_stream_next(t, rows), -1);
    cr_assert_eq(lp_last_error_code(), LP_ERR_INTERRUPTED, "%s", lp_last_error());
    lp_interrupt_clear();
    draw(t, NB, y); /* carries on as if nothing happened */
    cr_assert_eq(memcmp(x, y, sizeof(float) * NB * BATCH * D_), 0);
    lp_act_stream_free(s), lp_act_stream_free(t);
    free(x), free(y), free(tok);
    lp_model_free(m);
}

/* A run stopped after the first block (what the stream does for hooks of block 0 only)
 * caches the same values as the whole run for what it made, nothing of later blocks, and no
 * logits; the stream of block-0 hooks on a two-block model serves rows of the whole run. */
Test(activations, a_run_stops_after_the_last_block_the_hooks_need)
{
    lp_model *m = model();
    int32_t ids[2 * CTX];
    for (int i = 0; i < 2 * CTX; i++)
        ids[i] = 1 + i % (V_ - 1);
    lp_run full, part;
    lp_run_opts o = {.cache_all = 1};
    cr_assert_eq(lp_model_run(m, ids, 2, CTX, &o, &full), 0, "%s", lp_last_error());
    cr_assert_eq(lp_model_run_blocks(m, ids, 2, CTX, &o, 1, &part), 0, "%s", lp_last_error());
    cr_assert_null(part.logits);
    cr_assert_not_null(full.logits);
    cr_assert_gt(part.n, 5);
    for (size_t i = 0; i < part.n; i++) {
        cr_assert(strncmp(part.names[i], "blocks.1.", 9) != 0 && strncmp(part.names[i], "ln_final", 8) != 0,
                  "a stopped run made %s", part.names[i]);
        const lp_tensor *a = part.acts[i], *b = lp_run_get(&full, part.names[i]);
        cr_assert_not_null(b, "%s", part.names[i]);
        cr_assert_eq(lp_tensor_numel(a), lp_tensor_numel(b));
        for (int64_t k = 0; k < lp_tensor_numel(a); k++)
            cr_assert_eq(a->data[k], b->data[k], "%s[%lld]", part.names[i], (long long)k);
    }
    cr_assert_not_null(lp_run_get(&full, "blocks.1.hook_resid_post"));
    cr_assert_null(lp_run_get(&part, "blocks.1.hook_resid_post"));
    cr_assert_not_null(lp_run_get(&part, "blocks.0.hook_resid_post"));
    lp_run_clear(&part);
    lp_run_clear(&full);

    /* the stream: block-0 rows are those of a whole run */
    size_t n = 600;
    int32_t *tok = corpus(n, 5);
    ref_rows f = reference(m, tok, n);
    const char *const early[] = {"blocks.0.mlp.hook_in", "blocks.0.mlp.hook_in"};
    lp_act_opts ao = opts(tok, n);
    ao.hooks = early;
    lp_act_stream *s = lp_act_stream_new(m, &ao);
    cr_assert_not_null(s, "%s", lp_last_error());
    float a[BATCH * D_], b[BATCH * D_];
    float *rows[2] = {a, b};
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(lp_act_stream_next(s, rows), 0, "%s", lp_last_error());
        for (int i = 0; i < BATCH; i++)
            cr_assert_geq(find(&f, 0, a + i * D_, NULL), 0, "batch %d row %d is not a row of the whole run", k, i);
    }
    lp_act_stream_free(s);
    free(f.row[0]), free(f.row[1]), free(f.win), free(tok);
    lp_model_free(m);
}
