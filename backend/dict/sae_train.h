/* Training an SAE or transcoder on activations someone else harvested: a batch of N tokens
 * (x (N,d_in), and y (N,d_out) the target of a transcoder) per step, Adam (DICTIONARY.md).
 *
 *   lp_sae_train_opts o = lp_sae_train_defaults(&sae->cfg);
 *   o.steps = 5000; o.loss.l1 = 5;
 *   lp_sae_trainer *t = lp_sae_trainer_new(sae, &o);     // borrows sae, trains it in place
 *   for (...) {
 *       if (lp_sae_trainer_step(t, x, NULL, N, &st) < 0) break;   // a message naming the step
 *       if (lp_interrupted()) break;                               // between steps only
 *   }
 *   lp_sae_trainer_free(t);
 *
 * A step: sparsity coefficient and learning rate from their schedules (linear warm-ups, an
 * optional linear decay to 0 over the last 20 % of `steps`), forward, losses, backward, the
 * gradient norm clipped, Adam (bias-corrected), then the architecture's upkeep: batchtopk's
 * threshold (theta <- 0.99 theta + 0.01 min kept value), unit decoder rows where asked,
 * dead-feature counters (steps since each feature last fired), and for standard SAEs the
 * resampling of dead features. A NaN or Inf in the loss or the gradients fails the step and
 * changes nothing: weights, moments, counters stay the last good ones. Several trainers may
 * read the same batches (a sweep); nothing is global.
 */
#ifndef LP_DICT_SAE_TRAIN_H
#define LP_DICT_SAE_TRAIN_H

#include <stdint.h>

#include "dict/sae_ops.h"
#include "rng.h"

typedef struct lp_sae_train_opts {
    lp_sae_loss_opts loss;   /* loss.l1 is the coefficient after its warm-up; loss.dead is the trainer's */
    float lr, beta1, beta2, adam_eps; /* 3e-4, 0.9, 0.999, 1e-8 */
    float clip;              /* gradient norm clip (1); 0 = none */
    long steps;              /* the planned number of steps (for the decay); 0 = unknown */
    long warmup;             /* learning-rate warm-up steps (0 = none) */
    int decay;               /* 1: linear decay to 0 over the last 20 % of steps */
    long l1_warmup;          /* sparsity coefficient warm-up steps (5 % of steps; 0 = none) */
    int dead_window;         /* a feature is dead after this many steps without firing (1000) */
    long resample_every;     /* standard: resample dead features every this many steps (0 = never) */
    int unit_decoder;        /* 1: decoder rows renormalised to unit norm after each step */
    int batch;               /* the most tokens a step gets (4096) */
    uint64_t seed;           /* resampling's choices */
} lp_sae_train_opts;

/* Defaults for c's architecture (the values above; lr 5e-5 for standard). */
lp_sae_train_opts lp_sae_train_defaults(const lp_sae_config *c);

typedef struct lp_sae_step_stats {
    lp_sae_losses loss;
    double explained_variance; /* of this batch: 1 - sse / sst */
    int dead;                  /* features not fired for dead_window steps */
    int resampled;             /* features resampled by this step */
    long step;                 /* steps done, this one included */
    float lr, l1;              /* as used by this step */
} lp_sae_step_stats;

typedef struct lp_sae_trainer lp_sae_trainer;

/* A trainer of s (borrowed: it must outlive the trainer). NULL with a message on bad options
 * or no memory. */
lp_sae_trainer *lp_sae_trainer_new(lp_sae *s, const lp_sae_train_opts *o);
/* One step on x (N,d_in) and y (N,d_out; NULL for an SAE), 1 <= N <= batch. 0 or -1. */
int lp_sae_trainer_step(lp_sae_trainer *t, const float *x, const float *y, int N, lp_sae_step_stats *st);
/* A trainer of a cross-layer transcoder (borrowed), clt_ops.h's losses with o->loss (l1,
 * sparsity, tanh_c, bandwidth, pre_act; AuxK, prefixes and resampling do not apply): each
 * step takes x and y of (n_layers, N, d_model), layer-major; the statistics are the sums
 * over layers (explained variance pooled: 1 - sum sse / sum sst; l0 the mean per layer),
 * the dead features those of every layer. The same lp_sae_trainer_* functions step it and
 * free it (no clone). */
lp_sae_trainer *lp_clt_trainer_new(lp_clt *c, const lp_sae_train_opts *o);
/* The CLT's n_layers for a CLT's trainer, 0 for an SAE's. */
int lp_sae_trainer_layers(const lp_sae_trainer *t);
/* A CLT trainer's last step, layer l: explained variance of its MLP output and its L0. */
void lp_clt_trainer_layer_stats(const lp_sae_trainer *t, int l, double *ev, double *l0);

/* A trainer of s (a copy of the first one's SAE) in the state of t: moments, step, dead
 * counters, random state. Resuming from it equals going on with t. */
lp_sae_trainer *lp_sae_trainer_clone(const lp_sae_trainer *t, lp_sae *s);
long lp_sae_trainer_steps(const lp_sae_trainer *t);
/* Steps since each feature last fired (d_sae), borrowed. */
const int *lp_sae_trainer_since_fired(const lp_sae_trainer *t);
void lp_sae_trainer_free(lp_sae_trainer *t); /* NULL is a no-op; the SAE stays */

#endif
