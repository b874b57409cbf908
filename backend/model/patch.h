/* Activation patching sweeps, as TransformerLens' patching utilities (get_act_patch_resid_pre,
 * get_act_patch_attn_head_out_all_pos, ...) do them: the clean prompt runs once with one hook
 * kind cached, the corrupt prompt runs once (cached too) for its baseline, then the corrupt
 * prompt runs again with one region of one layer's activation taken from the clean run, for
 * every layer and region, and a metric of each patched run's logits is recorded.
 *
 *   lp_patch_opts o = {.kind = lp_patch_kind_find("z"), .positions = -1, .normalize = 1,
 *                      .token = paris, .baseline = rome, .pos = -1};
 *   lp_patch_result res;
 *   if (lp_patch_sweep(m, clean, corrupt, T, &o, &res) < 0) report(lp_last_error());
 *   // res.values[l * res.cols + h]: (metric - corrupt) / (clean - corrupt), patching head h of
 *   // layer l's hook_z at every position; 1 is the clean result, 0 the corrupt one
 *   lp_patch_result_free(&res);
 *
 * Regions: per position (resid_*, attn_out, mlp_out: one position of the activation, or all
 * positions at once), per head (z, q, k, v, pattern: one head at every position), or per head
 * and position. A region whose clean and corrupt values are bit for bit equal needs no run:
 * patching it in changes nothing, so its metric is the corrupt run's, exactly (every position
 * before the first token that differs, say). The others are batched: one forward pass patches
 * a different region in each batch row.
 *
 * The metric is a callback, or built in: logits[pos, token] - logits[pos, baseline] (the
 * baseline term left out when baseline < 0). The progress callback sees every forward pass.
 * The sweep polls the interrupt flag before every forward pass (and the run between layers).
 *
 * Errors: -1 with lp_last_error() set (an argument out of range, allocation, a failing run, a
 * metric that failed, "interrupted"); everything the sweep made is freed and *out is left
 * alone. Outputs are written only on success. Callbacks run on the calling thread, while the
 * sweep holds its runs; they must return (not longjmp) for the sweep to free them.
 */
#ifndef LP_MODEL_PATCH_H
#define LP_MODEL_PATCH_H

#include <stdint.h>

#include "model/model.h"

/* A kind of hook point a sweep patches. */
typedef struct lp_patch_kind {
    const char *key;     /* "resid_pre" */
    const char *fmt;     /* the hook name of layer %d: "blocks.%d.hook_resid_pre" */
    int headdim, posdim; /* in the activation; -1: none */
} lp_patch_kind;

/* The kind called key: resid_pre, resid_mid, resid_post, attn_out, mlp_out (per position), z,
 * q, k, v, pattern (per head); a "hook_" prefix is allowed. NULL with an error listing them. */
const lp_patch_kind *lp_patch_kind_find(const char *key);

/* The metric of one run: logits is (1, T, vocab), borrowed for the call (keep an alias of it,
 * not it). Return 0 with *value set, or -1 with lp_last_error() set: the sweep stops and
 * returns -1 with that error. */
typedef int (*lp_patch_metric_fn)(void *ud, const lp_tensor *logits, double *value);

/* Progress in regions (skipped ones count as done): state 0 after each forward pass, 1 when
 * the sweep is done (done == total), -1 when it stops on an error or an interrupt. */
typedef void (*lp_patch_progress_fn)(void *ud, long done, long total, int state);

typedef struct lp_patch_opts {
    const lp_patch_kind *kind; /* NULL: resid_pre */
    int positions;             /* per position (1) or all positions at once (0); < 0: 1 for the
                                  per-position kinds, 0 for the per-head ones */
    int normalize;             /* values = (metric - corrupt) / (clean - corrupt); NaN when equal */
    lp_patch_metric_fn metric; /* NULL: the built-in logit difference */
    void *metric_ud;
    int32_t token, baseline;   /* the built-in metric's tokens; baseline < 0: logit(token) alone */
    int pos;                   /* its position, 0-based; < 0 counts from the end (-1: the last) */
    int batch;                 /* most regions per forward pass; 0: 2048 tokens' worth, 1..64 */
    lp_patch_progress_fn progress; /* may be NULL */
    void *progress_ud;
} lp_patch_opts;

typedef struct lp_patch_result {
    const lp_patch_kind *kind;
    int per_head, positions;
    int n_layers, n_heads;  /* n_heads: of the hook point (kv heads for k, v); 0 per position */
    int n_regions;          /* per layer */
    int rows, cols;         /* the layout of values and raw, row-major:
                               per head and position: (layer * n_heads + head) x position;
                               otherwise layer x region (position, head, or 1 for all) */
    float *values;          /* rows x cols: normalised, or the metric itself */
    float *raw;             /* rows x cols: the metric */
    double clean, corrupt;  /* the metric of the unpatched runs */
    long runs;              /* regions that needed a patched run (the others are equal) */
} lp_patch_result;

/* Runs the sweep of clean into corrupt, both T tokens (batch 1). See the top of the file. */
int lp_patch_sweep(const lp_model *m, const int32_t *clean, const int32_t *corrupt, int T,
                   const lp_patch_opts *o, lp_patch_result *out);
void lp_patch_result_free(lp_patch_result *r); /* frees values and raw; NULL is a no-op */

#endif
