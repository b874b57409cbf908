/* A stream of activations for dictionary learning (DICTIONARY.md, "Training"): runs a model
 * over a token source, keeps the values of one or more hook points at every position that
 * is not BOS or a separator, mixes them in a buffer and serves them in batches of rows.
 *
 *   const char *hooks[] = {"blocks.0.mlp.hook_in", "blocks.0.mlp.hook_out"};
 *   lp_act_opts o = {.hooks = hooks, .nhooks = 2, .data = ds, .ctx = 64, .batch = 4096,
 *                    .buffer = 16, .seed = 1};
 *   lp_act_stream *s = lp_act_stream_new(m, &o);
 *   float *rows[2] = {in, out};                    // batch x d of each hook
 *   while (... && lp_act_stream_next(s, rows) == 0) train(in, out);
 *   lp_act_stream_free(s);
 *
 * The corpus is cut into consecutive windows of ctx tokens (ctx - 1 after a BOS that is put
 * first when prepend_bos), run `run_rows` windows at a time, cycling back to the start after
 * the last whole window (an epoch). Only the hook points asked for are cached. The mixing
 * buffer holds buffer x batch rows (plus one run's): each fill runs the model until it is
 * full, shuffles it, and serves batches until half of it is left, which stays to be mixed
 * with the next fill, so that neighbouring tokens of one document do not share a batch.
 * Rows are aligned across hooks: row i of every hook comes from the same token (a
 * transcoder gets (input, output) pairs). Memory is the buffer's, whatever the corpus.
 * Deterministic for the seed. The interrupt flag is polled between model runs.
 *
 * Normalisation (normalize): s = sqrt(d) / E||x|| per hook, estimated on norm_batches
 * batches drawn first; the stream then starts again from the beginning and serves s x. */
#ifndef LP_DICT_ACTIVATIONS_H
#define LP_DICT_ACTIVATIONS_H

#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"
#include "model/model.h"

typedef struct lp_act_opts {
    const char *const *hooks; /* hook point names (at least one, each of the model) */
    size_t nhooks;
    const lp_dataset *data;   /* the tokens: a dataset, or */
    const int32_t *tokens;    /* an array of ntokens (borrowed for the stream's life) */
    size_t ntokens;
    int ctx;                  /* positions per window, 2..the model's context */
    int64_t batch;            /* rows per batch served */
    int buffer;               /* the mixing buffer, in batches (>= 2) */
    int run_rows;             /* windows per model run; 0: about batch / ctx, at most 64 and
                                 256 MB of logits */
    uint64_t seed;
    int prepend_bos;          /* put the model's BOS first in each window (it must have one) */
    int keep_special;         /* serve BOS and separator (EOS) positions too */
    int normalize;
    int norm_batches;         /* 0: 32 */
} lp_act_opts;

typedef struct lp_act_stream lp_act_stream;

/* NULL with the error set: a hook the model does not have (the error lists the nearest
 * names), a corpus shorter than one window, bad sizes, allocation ("cannot allocate ..."),
 * an interrupt during normalisation. */
lp_act_stream *lp_act_stream_new(const lp_model *m, const lp_act_opts *o);
void lp_act_stream_free(lp_act_stream *s); /* NULL is a no-op */

/* The next batch: rows[h] gets batch x d(h) floats of hook h. 0, or -1 with the error set
 * (an interrupt, a failing run); the stream stays usable after an interrupt. */
int lp_act_stream_next(lp_act_stream *s, float *const *rows);

size_t lp_act_stream_nhooks(const lp_act_stream *s);
const char *lp_act_stream_hook(const lp_act_stream *s, size_t h); /* borrowed */
int64_t lp_act_stream_dim(const lp_act_stream *s, size_t h);      /* d of hook h */
int64_t lp_act_stream_batch(const lp_act_stream *s);
float lp_act_stream_scale(const lp_act_stream *s, size_t h);      /* 1 without normalize */
int64_t lp_act_stream_tokens_seen(const lp_act_stream *s);        /* rows served so far */
int64_t lp_act_stream_epoch(const lp_act_stream *s);              /* windows wrapped: 0 first */
size_t lp_act_stream_bytes(const lp_act_stream *s);               /* memory held */

/* ---- shards on disk (act_shards.c): harvest once, read back for every run of a sweep ----
 * A shard is dir/acts_NNNNN.safetensors (NNNNN from 00000) holding, per hook, one f32
 * tensor named by the hook, (rows x d), rows a multiple of the batch; metadata
 * "loupe_acts_batch" (rows per batch) and "loupe_acts_scale.<h>" (the stream's scale). */

/* Draws nbatches batches from s into shards of per_shard batches in dir (made when missing;
 * shards of an older harvest there are overwritten, each file atomically). Memory: one shard.
 * 0, or -1 with an error naming the file. */
int lp_act_stream_save(lp_act_stream *s, const char *dir, int64_t nbatches, int64_t per_shard);

typedef struct lp_act_shards lp_act_shards;

/* Opens the shards of dir for these hooks (every one in every shard, f32, the same d and
 * rows); one shard is mapped at a time. NULL with an error naming the file and tensor. */
lp_act_shards *lp_act_shards_open(const char *dir, const char *const *hooks, size_t nhooks);
void lp_act_shards_free(lp_act_shards *r); /* NULL is a no-op */
/* The next batch, in the order written, back to the first shard after the last. */
int lp_act_shards_next(lp_act_shards *r, float *const *rows);
int64_t lp_act_shards_batch(const lp_act_shards *r);
int64_t lp_act_shards_dim(const lp_act_shards *r, size_t h);
int64_t lp_act_shards_batches(const lp_act_shards *r); /* in all shards */

/* The names of m's hook points nearest to name (edit distance), comma-separated, into buf. */
void lp_model_hook_nearest(const lp_model *m, const char *name, char *buf, size_t cap);

#endif
