/* An SAE training run: batches from an activation stream (or a caller's source) stepped
 * through one or several trainers (a sweep: several SAEs of different k or l1 trained on
 * the same batches), per-trainer history, a progress callback, interrupts and resume.
 *
 *   lp_sae_trainer *ts[2] = {t16, t32};                  // same d_in / d_out / batch
 *   lp_sae_run_opts ro = {.stream = s, .batch = 4096};
 *   lp_sae_run *r = lp_sae_run_new(ts, 2, &ro);         // takes the trainers
 *   if (lp_sae_run_go(r, 5000, on_progress, ctx) < 0)   // "interrupted": call it again
 *       report(lp_last_error());                        // later to continue
 *   lp_sae_run_free(r);                                 // and the trainers (the SAEs stay)
 *
 * Each step draws one batch (x, and y the target for a transcoder: the stream's second
 * hook) and steps every trainer on it in order. The interrupt flag is polled before each
 * batch is drawn (and by the stream between model runs, which loses nothing), never
 * between the trainers of one step, so a run stops only between whole steps: an
 * interrupted run called again to the same total equals an uninterrupted one, bit for bit
 * (the stream and the trainers continue where they were).
 *
 * A NaN or Inf in a trainer's loss or gradients stops the run: that trainer keeps the
 * weights of its last good step (sae_train.h) and the error names the SAE of the sweep and
 * the step ("SAE 2 of 3: SAE training: the loss is nan at step 12 ..."); the trainers
 * before it in the sweep made that step. Such a run does not go on (the trainers are no
 * longer in step): lp_sae_run_go fails again with that message. */
#ifndef LP_DICT_SAE_RUN_H
#define LP_DICT_SAE_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "dict/activations.h"
#include "dict/sae_train.h"

/* A caller's batches: x (N, d_in) and, for transcoders, y (N, d_out; NULL for SAEs). 0, or
 * -1 with the error set; a source that fails must not have advanced (resume draws again). */
typedef int (*lp_sae_source_fn)(void *ud, float *x, float *y, int N);

typedef struct lp_sae_run_opts {
    lp_act_stream *stream;   /* borrowed: one hook (SAE) or two (transcoder: in, out); or */
    lp_sae_source_fn source; /* a caller's source with its data */
    void *source_ud;
    int batch;               /* tokens per step: the stream's batch; at most each trainer's */
    int d_in, d_out;         /* the trainers' SAEs' (d_out 0: an SAE, y not drawn); a
                                stream's hooks must have these dimensions */
    int layers;              /* > 0: CLT trainers (lp_clt_trainer_new) of this many layers: the
                                stream's hooks are the layers' inputs then their outputs, a
                                batch x and y (layers, batch, d) layer-major; 0 otherwise */
} lp_sae_run_opts;

/* What the callback sees after each step: the step's statistics of every trainer. */
typedef struct lp_sae_progress {
    long step, total;     /* the step just finished (1-based, every call) and this call's aim */
    int64_t tokens;       /* tokens trained on so far, every call */
    int n;                /* trainers */
    const lp_sae_step_stats *stats; /* n, borrowed for the call */
    double elapsed;       /* seconds inside lp_sae_run_go, every call */
} lp_sae_progress;

/* Returning non-zero stops the run after this step (lp_sae_run_go returns 1). It must not
 * step the trainers or free the run. */
typedef int (*lp_sae_progress_fn)(void *ud, const lp_sae_progress *p);

/* One trainer's history: n entries of each, one per finished step, in order. Borrowed,
 * valid until the next lp_sae_run_go or lp_sae_run_free. */
typedef struct lp_sae_history {
    size_t n;
    const long *step;
    const int64_t *tokens;
    const double *loss, *mse, *sparsity, *l0, *explained_variance;
    const int *dead;
} lp_sae_history;

typedef struct lp_sae_run lp_sae_run;

/* A run of n trainers (taken: freed with the run, and by this call when it fails), all at
 * the same step, of SAEs with o->d_in and o->d_out, each taking batches of o->batch (a
 * trainer made for fewer fails its first step); a stream's hook dimensions must match.
 * NULL with an error. */
lp_sae_run *lp_sae_run_new(lp_sae_trainer **trainers, int n, const lp_sae_run_opts *o);
void lp_sae_run_free(lp_sae_run *r); /* NULL is a no-op; frees the trainers */

/* Steps until the trainers have made `total` steps; cb (may be NULL) after each. 0 at total,
 * 1 when cb stopped it, -1 with an error ("interrupted": call again to continue; a NaN
 * stop; a failing source). */
int lp_sae_run_go(lp_sae_run *r, long total, lp_sae_progress_fn cb, void *ud);

int lp_sae_run_count(const lp_sae_run *r);
lp_sae_trainer *lp_sae_run_trainer(const lp_sae_run *r, int i); /* borrowed */
long lp_sae_run_steps(const lp_sae_run *r);
int64_t lp_sae_run_tokens(const lp_sae_run *r);
lp_sae_history lp_sae_run_history(const lp_sae_run *r, int i);

#endif
