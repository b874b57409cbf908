/* Toy models of superposition (Elhage et al. 2022, "Toy Models of Superposition"): n sparse
 * features squeezed through m < n hidden dimensions and read back with a ReLU.
 *
 *   x_i = 0 with probability S (the sparsity), else U[0, 1]       x (B,n)
 *   h   = W x                                                    W (m,n), h (B,m)
 *   x'  = ReLU(W^T h + b)                                        b (n),   x' (B,n)
 *   L   = (1/B) sum_b sum_i I_i (x_i - x'_i)^2                   I (n): the importance
 *
 * Many instances (one per sparsity, a sweep) train at once, each with its own W and b, on
 * the CPU, single-threaded and deterministic for a seed:
 *
 *   float S[3] = {0, 0.9f, 0.99f}, I[5];
 *   for (int i = 0; i < 5; i++) I[i] = powf(0.9f, (float)i);
 *   lp_toy_config c = lp_toy_defaults(5, 2);
 *   c.instances = 3; c.sparsity = S; c.importance = I;
 *   lp_toy_model *t = lp_toy_new(&c);               // NULL + lp_last_error() on bad input
 *   if (lp_toy_train(t, 3000, NULL, NULL) < 0) ...  // "interrupted": weights as of the
 *   lp_toy_feature_norms(norms, lp_toy_weights(t, 2), 2, 5);   // last finished step
 *   lp_toy_free(t);
 *
 * The layer functions follow llm.c: outputs first, then inputs, then sizes. Parameter
 * gradients accumulate (+=); activation gradients overwrite. */
#ifndef LP_TOY_SUPERPOSITION_H
#define LP_TOY_SUPERPOSITION_H

#include <stdint.h>

#include "rng.h"

typedef struct lp_toy_config {
    int n, m;              /* features, hidden dimensions (>= 1 each) */
    int instances;         /* models trained side by side (>= 1) */
    const float *sparsity; /* instances values in [0, 1]; copied */
    const float *importance; /* n values >= 0, or NULL for all 1; copied */
    int batch;             /* samples per step per instance */
    float lr, beta1, beta2, eps, weight_decay; /* AdamW */
    uint64_t seed;         /* initial weights and every batch */
    int report_every;      /* progress callback period in steps (>= 1) */
} lp_toy_config;

/* n and m filled in; one instance of sparsity 0, batch 1024, lr 1e-3, betas 0.9/0.999,
 * eps 1e-8, no weight decay, seed 0, a report every 10 steps. */
lp_toy_config lp_toy_defaults(int n, int m);

/* The trainer. All buffers are allocated by lp_toy_new, one allocation per role. */
typedef struct lp_toy_model {
    int n, m, instances, batch, report_every;
    float lr, beta1, beta2, eps, weight_decay;
    long step; /* optimizer steps done so far */
    lp_rng rng;
    float *params;  /* W (I,m,n) then b (I,n) */
    float *grads;   /* dW, db: same layout */
    float *moments; /* AdamW m then v: same layout each */
    float *acts;    /* one instance at a time: x (B,n), h (B,m), out (B,n), dpre (B,n), dh (B,m) */
    float *meta;    /* sparsity (I), importance (n), loss (I), loss_sum (I) */
    float *W, *b, *dW, *db, *mom_m, *mom_v;
    float *x, *h, *out, *dpre, *dh;
    float *sparsity, *importance, *loss, *loss_sum;
    size_t nparams;
} lp_toy_model;

/* A new model with W ~ N(0, 2/(m+n)) (Xavier) and b = 0. NULL with the error set on a bad
 * configuration or when memory runs out. The caller owns it (lp_toy_free). */
lp_toy_model *lp_toy_new(const lp_toy_config *c);
void lp_toy_free(lp_toy_model *t); /* NULL: no-op */

/* Progress: called every report_every steps and after the last one, with the number of
 * steps done by this model in all (t->step), the target of this call, and each instance's
 * loss averaged over the steps since the previous report (instances values, borrowed).
 * A non-zero return stops training (the caller's error is kept; lp_toy_train returns -1).
 * The callback may also longjmp (a Lua error): lp_toy_train holds nothing across it. */
typedef int (*lp_toy_progress_fn)(void *ud, long step, long target, const float *loss,
                                  int instances);

/* Trains for `steps` more optimizer steps (resuming where the last call stopped). Polls the
 * interrupt flag before every step: an interrupt returns -1 with the error "interrupted",
 * the weights as of the last finished step. A non-finite loss stops before its update with
 * an error naming the step and instance. Returns 0, or -1 with the error set. */
int lp_toy_train(lp_toy_model *t, long steps, lp_toy_progress_fn cb, void *ud);

/* Views into the model (borrowed; valid until lp_toy_free). instance in [0, instances). */
const float *lp_toy_weights(const lp_toy_model *t, int instance); /* (m,n) */
const float *lp_toy_bias(const lp_toy_model *t, int instance);    /* (n) */

/* ---- the layer, for one instance ---- */

/* x (B,n): each entry 0 with probability S, else uniform in [0, 1). */
void lp_toy_sample(float *x, lp_rng *g, float S, int B, int n);
/* x (B,n), W (m,n), b (n), imp (n) -> h (B,m), out (B,n) = ReLU(W^T h + b). Returns the
 * loss (1/B) sum_b sum_i imp_i (x - out)^2. */
float lp_toy_forward(float *h, float *out, const float *x, const float *W, const float *b,
                     const float *imp, int B, int m, int n);
/* The gradient of that loss: dW (m,n) and db (n) accumulate; dpre (B,n) and dh (B,m) are
 * scratch (overwritten). x, h, out, W as in the forward. */
void lp_toy_backward(float *dW, float *db, float *dpre, float *dh, const float *x,
                     const float *h, const float *out, const float *W, const float *imp, int B,
                     int m, int n);

/* ---- metrics of one instance's W (m,n); feature i is the column W_i ---- */

/* out (n,n) = W^T W. */
void lp_toy_wtw(float *out, const float *W, int m, int n);
/* out (n) = ||W_i||. */
void lp_toy_feature_norms(float *out, const float *W, int m, int n);
/* out (n) = sum_{j != i} (W_i_hat . W_j)^2: how much other features share i's direction
 * (0 for a feature of norm < 1e-6). */
void lp_toy_superposition(float *out, const float *W, int m, int n);
/* out (n) = D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2: 1 for a dimension of its own, 1/2 for
 * an antipodal pair, 2/5 for a pentagon, 0 for a feature not represented (norm < 1e-6). */
void lp_toy_dimensionality(float *out, const float *W, int m, int n);
/* m / ||W||_F^2: dimensions per embedded feature (infinity when W is 0). */
float lp_toy_dims_per_feature(const float *W, int m, int n);

#endif
