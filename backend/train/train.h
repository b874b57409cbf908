/* Training GPT-2-family (attention-only included) and Llama-family models on the CPU or a
 * GPU, llm.c style: explicit forward and backward passes over one allocation of saved
 * activations, one flat buffer each for the gradients and the two AdamW moments, OpenBLAS
 * (or cuBLAS) for the products.
 *
 *   lp_train_opts o;
 *   lp_train_opts_default(&o);
 *   o.lr = 1e-3f, o.warmup_steps = 10, o.total_steps = 1000, o.schedule = LP_SCHED_COSINE;
 *   lp_trainer *t = lp_trainer_new(m, &o, 8, 128);       // batch 8 x 128 tokens
 *   for (int s = 0; s < 1000; s++) {
 *       float loss, norm, lr;
 *       if (lp_trainer_forward_backward(t, x, y, &loss) < 0 ||   // x, y: (8,128) int32
 *           lp_trainer_step(t, &norm, &lr) < 0)
 *           report(lp_last_error());                       // "interrupted", "step 12: loss is NaN ..."
 *   }
 *   lp_trainer_free(t);
 *
 * The function trained is the one lp_model_run computes (backend/model/forward.c): GPT-2
 * LayerNorm, learned positions, GELU (tanh or erf form per cfg.act), tied unembedding, and
 * for cfg.attn_only blocks without ln_2 and MLP; Llama RMSNorm, rotary embeddings as
 * lp_rope_inv_freq gives them (scaled forms included), grouped-query attention, SwiGLU,
 * optional q/k/v/o and MLP biases, tied or untied unembedding. Weights may be in Conv1D
 * layout (lp_linear.trans == 0, w (in,out)) or Linear layout (trans, w (out,in)).
 *
 * The loss is the mean cross-entropy of the next token over the targets that are not -1
 * (torch's F.cross_entropy(..., ignore_index=-1)), per micro-batch.
 *
 * Optimizer: AdamW exactly as torch.optim.AdamW (decoupled decay p -= lr*wd*p, bias-corrected
 * moments, eps added to sqrt(v_hat)), after clipping the global L2 norm of all gradients as
 * torch.nn.utils.clip_grad_norm_ (scale max_norm / (norm + 1e-6) when norm > max_norm).
 * Weight decay applies to the 2-D tensors (every weight matrix, the embeddings included,
 * as nanoGPT's configure_optimizers), not to biases or norm weights.
 *
 * Threads: lp_get_threads() for BLAS and for our own loops. The trainer borrows the model
 * and writes its weights in place in lp_trainer_step; no lp_model_run may use the model on
 * another thread at the same time.
 *
 * On a GPU (lp_trainer_new_on(..., LP_DEVICE_CUDA)) the trainer keeps its own copy of the
 * weights in GPU memory with everything else: lp_trainer_step updates that copy, and
 * lp_trainer_pull writes it into the model's tensors (do it before anything reads the model:
 * a run, a checkpoint); lp_trainer_push copies the model's weights to the GPU (creation does
 * it once). The passes and the update are the op table's (ops/ops.h) of the CUDA backend.
 *
 * Interrupts: forward_backward polls the kernel's interrupt flag between layers and
 * returns -1 "interrupted"; the weights are untouched, the gradients of the step so far
 * are discarded (zeroed at the next forward_backward) and the step must be started again.
 * lp_trainer_step never polls: an AdamW update is applied whole or not at all.
 */
#ifndef LP_TRAIN_H
#define LP_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"
#include "device.h"
#include "model/model.h"
#include "rng.h"

typedef enum lp_sched {
    LP_SCHED_CONSTANT = 0, /* lr after the warm-up */
    LP_SCHED_COSINE = 1    /* cosine from lr to lr * min_lr_frac over total_steps, then flat */
} lp_sched;

typedef struct lp_train_opts {
    float lr;           /* peak learning rate (default 3e-4) */
    float beta1, beta2; /* AdamW moments (0.9, 0.95: GPT-2/-3 training, llm.c, nanoGPT) */
    float eps;          /* added to sqrt(v_hat) (1e-8) */
    float weight_decay; /* decoupled, on 2-D tensors only (0.1) */
    float grad_clip;    /* max global L2 norm of the gradients; 0 = no clipping (1.0) */
    int warmup_steps;   /* linear warm-up: lr * (s + 1) / warmup_steps for steps s < warmup (0) */
    int total_steps;    /* the cosine schedule's length, warm-up included (0) */
    int schedule;       /* lp_sched (LP_SCHED_CONSTANT) */
    float min_lr_frac;  /* cosine floor as a fraction of lr (0.1) */
    int accum;          /* micro-batches (forward_backward calls) per step; 0 means 1 (1) */
} lp_train_opts;

/* The defaults above. */
void lp_train_opts_default(lp_train_opts *o);
/* 0, or -1 with an error naming the option ("learning rate nan is not a finite number >= 0"). */
int lp_train_opts_check(const lp_train_opts *o);
/* The learning rate of step s (0-based: the (s+1)-th update) under o's schedule. */
float lp_train_lr_at(const lp_train_opts *o, int s);

typedef struct lp_trainer lp_trainer;

/* A trainer for micro-batches of B x T tokens: allocates the gradients, both AdamW moments
 * (zero) and the saved activations. m is borrowed and must outlive the trainer. NULL with
 * an error on bad options, B or T < 1, T beyond the model's context ("... context of 1024"),
 * or a failed allocation ("cannot allocate 2.1 GiB for training activations ..."). */
lp_trainer *lp_trainer_new(lp_model *m, const lp_train_opts *o, int B, int T);
/* The same on a device: LP_DEVICE_CPU is lp_trainer_new; LP_DEVICE_CUDA trains on the GPU
 * (NULL with "CUDA is not available: ..." where there is none, or "cannot allocate ... on the
 * GPU"). */
lp_trainer *lp_trainer_new_on(lp_model *m, const lp_train_opts *o, int B, int T, lp_device dev);
/* Every check lp_trainer_new makes before it allocates (options, B and T, the context, the
 * model's weights): 0, or -1 with the error lp_trainer_new would give. Past it, a trainer
 * fails only for memory (or the device). */
int lp_trainer_check(const lp_model *m, const lp_train_opts *o, int B, int T);
void lp_trainer_free(lp_trainer *t); /* NULL is a no-op */
lp_device lp_trainer_device(const lp_trainer *t);
/* Weights between the model's tensors and a GPU trainer's copy (no-ops on the CPU): pull
 * writes the trainer's (as of its last step) into the model, push the model's into the
 * trainer. 0, or -1 with an error. */
int lp_trainer_pull(lp_trainer *t);
int lp_trainer_push(lp_trainer *t);

/* One micro-batch: inputs and targets are (B,T) row-major; inputs in [0, d_vocab),
 * targets in [0, d_vocab) or -1 (ignored). Adds the gradient of loss / accum to the
 * gradients (the first micro-batch of a step starts from zero). *loss (may be NULL) is the
 * micro-batch's mean loss over its non-ignored targets (0 when there are none). Returns 0,
 * or -1 with an error (a token out of range, "interrupted", more than accum micro-batches
 * without a step); on error the step's gradients are discarded and the weights untouched. */
int lp_trainer_forward_backward(lp_trainer *t, const int32_t *inputs, const int32_t *targets, float *loss);

/* The mean loss of one micro-batch (as forward_backward computes it) without touching the
 * gradients or the step in progress: validation loss. 0, or -1 with an error. */
int lp_trainer_eval(lp_trainer *t, const int32_t *inputs, const int32_t *targets, float *loss);

/* After exactly accum micro-batches: clips, applies the schedule and one AdamW update to
 * every parameter, zeroes the gradients, counts the step. *grad_norm (the global norm before
 * clipping) and *lr_used may be NULL. A NaN or infinite loss or gradient norm is an error
 * ("step 12: loss is NaN (learning rate too high?)") and leaves the weights and moments
 * unchanged (the gradients are discarded). */
int lp_trainer_step(lp_trainer *t, float *grad_norm, float *lr_used);

/* Replaces the options (checked first; on error nothing changes). The step count and the
 * moments are kept; a different accum takes effect at the next step. */
int lp_trainer_set_opts(lp_trainer *t, const lp_train_opts *o);
const lp_train_opts *lp_trainer_opts(const lp_trainer *t);
int lp_trainer_steps(const lp_trainer *t); /* updates applied so far */

/* The parameters, in lp_model_param's order: param i's gradient (numel of its tensor),
 * valid until the next step or forward_backward; its AdamW moments (exp_avg, exp_avg_sq).
 * Host memory (a GPU trainer copies them out: NULL with an error if that fails). */
size_t lp_trainer_param_count(const lp_trainer *t);
const float *lp_trainer_grad(lp_trainer *t, size_t i);
const float *lp_trainer_moment(lp_trainer *t, size_t i, int second);

/* Drops the gradients of the step in progress (the micro-batches accumulated since the last
 * step): the next forward_backward starts the step again. The weights are untouched. */
void lp_trainer_discard(lp_trainer *t);

/* Optimizer state for resuming: a safetensors file with "exp_avg.<name>" and
 * "exp_avg_sq.<name>" for every parameter and the step count in the metadata ("step").
 * Loading checks every name and shape before changing anything. 0, or -1 with an error. */
int lp_trainer_save_state(lp_trainer *t, const char *path);
int lp_trainer_load_state(lp_trainer *t, const char *path);

/* ---- the frozen backward (attribution's local replacement model) ----
 *
 * Flags of lp_trainer_set_frozen: the backward pass treats as constants, at their values in
 * the forward pass just run,
 *   LP_FREEZE_ATTENTION  the attention patterns: no gradient flows into q and k through the
 *                        pattern (their weights and biases get zero gradient); v and the
 *                        output projection get theirs;
 *   LP_FREEZE_NORM       the normalisation scales (ln_1, ln_2, ln_f): LayerNorm's 1/sigma and
 *                        RMSNorm's 1/rms, so LayerNorm is (x - mean(x)) * s * w + b with s fixed
 *                        (the mean subtraction still differentiated) and RMSNorm x * s * w.
 * The forward and the loss are unchanged; only the gradients differ. Both paths (CPU and the
 * device op table) support both flags. */
enum { LP_FREEZE_ATTENTION = 1, LP_FREEZE_NORM = 2 };

/* Sets the frozen flags (0: the true gradient, the default). 0, or -1 with an error for an
 * unknown flag or in the middle of a step (micro-batches accumulated under other flags). */
int lp_trainer_set_frozen(lp_trainer *t, int flags);
int lp_trainer_frozen(const lp_trainer *t);

/* The gradient, from the last forward_backward, of that micro-batch's share of the loss
 * (mean loss / accum) with respect to the embedding output (token embedding plus, for GPT-2,
 * position embedding): the residual stream entering layer 0, (B*T, d_model) row-major, row
 * b*T + p for sequence b, position p. Host memory, valid until the next forward_backward; a
 * device trainer copies it out (NULL with an error if that fails, or before any backward). */
const float *lp_trainer_input_grad(lp_trainer *t);

/* ---- parameters by name ---- */

/* The number of parameter tensors of m (a tied unembedding counted once, as the embedding). */
size_t lp_model_param_count(const lp_model *m);
/* Parameter i (< count) in Hugging Face state-dict order, with the name loading reads:
 * GPT-2 "wte.weight", "wpe.weight", "h.0.ln_1.weight", "h.0.attn.c_attn.weight", ...,
 * "ln_f.bias"; Llama "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
 * ..., "model.norm.weight", "lm_head.weight" (untied). Attention-only blocks have no ln_2
 * and mlp entries. The name goes into buf (cap >= 96 is always enough), *w (may be NULL)
 * is the model's tensor (borrowed). 0, or -1 when i is past the end. */
int lp_model_param(const lp_model *m, size_t i, char *buf, size_t cap, lp_tensor **w);

/* ---- a training run: the loop (run.c) ----
 *
 * A trainer, the data it draws batches from and the validation data, stepped to a total
 * with validation, a progress callback, interrupts and resume; the history is kept here.
 *
 *   lp_training_opts ro = {.data = train, .data_rng = &g, .val = val, .val_rng = &gv,
 *                          .eval_every = 100, .eval_batches = 4};
 *   lp_training *r = lp_training_new(t, &ro);              // takes t
 *   if (lp_training_run(r, 1000, on_progress, ctx) < 0)    // "interrupted": call it again
 *       report(lp_last_error());                           // later to continue
 *   lp_training_free(r);                                   // and t
 *
 * Each step draws accum micro-batches of B x T windows (lp_dataset_batch) from data with
 * data_rng, runs forward_backward on each and steps (the trainer's schedule and clipping).
 * After every eval_every-th step and after the run's last, eval_batches windows of the
 * validation data go through lp_trainer_eval: the weights the trainer holds now, on whichever
 * device it trains (a GPU trainer's own copy, not the model's tensors).
 *
 * Resume. A run stops only between steps: on an interrupt (the flag is polled before every
 * micro-batch and validation batch, and between layers inside them), an error, or a stop
 * asked by the callback. A step that did not finish leaves no trace: its gradients are
 * discarded and both generators are set back to where the step began, so a later
 * lp_training_run draws the same batches. A finished step whose validation or report did not
 * finish gets them at the start of the next call. An interrupted run continued to the same
 * total therefore equals an uninterrupted one (weights, moments and history). */

typedef struct lp_training_opts {
    const lp_dataset *data; /* training windows (borrowed; must outlive the training) */
    lp_rng *data_rng;       /* the generator they are drawn with (borrowed, advanced) */
    const lp_dataset *val;  /* validation windows, or NULL for no validation (borrowed) */
    lp_rng *val_rng;        /* its generator (borrowed, advanced; needed with val) */
    int eval_every;         /* validate after every eval_every-th step (>= 1) ... */
    int eval_batches;       /* ... on this many B x T batches (>= 1) */
} lp_training_opts;

/* What the callback sees after each finished step (and its validation). */
typedef struct lp_train_progress {
    int step;          /* the step just finished, counted over every call (1-based) */
    int total;         /* the step this call runs to */
    long long tokens;  /* input positions trained on so far, every micro-batch, every call */
    double loss;       /* the step's mean loss over its micro-batches */
    double lr;         /* the learning rate it used */
    double grad_norm;  /* the global gradient norm before clipping */
    int validated;     /* whether this step was validated; then val_loss is ... */
    double val_loss;   /* ... the mean loss of the current weights on the validation batches (else NaN) */
    double elapsed;    /* seconds inside lp_training_run so far, every call */
} lp_train_progress;

/* Called after every finished step. The model's tensors are not the current weights on a
 * GPU: call lp_trainer_pull(lp_training_trainer(r)) first where the callback reads the model
 * (a plot of it, a checkpoint, user code). Returning non-zero stops the run after this step
 * (lp_training_run returns 1). It must return (a binding calls Lua under lua_pcall) and must
 * not step the trainer or free the training. */
typedef int (*lp_train_progress_fn)(void *ud, const lp_train_progress *p);

/* The steps, losses, learning rates and gradient norms of every finished step (n of each,
 * in order), and the validations (n_val). Borrowed, valid until the next lp_training_run or
 * lp_training_free. */
typedef struct lp_train_history {
    size_t n, n_val;
    const int *step;
    const double *loss, *lr, *grad_norm;
    const int *val_step;
    const double *val_loss;
} lp_train_history;

typedef struct lp_training lp_training;

/* Checks a training of m on windows of T tokens before anything is allocated: both datasets
 * hold at least T + 1 tokens and no id outside the vocabulary ("the validation data has token
 * id 99 but the model's vocabulary has 40 ids"), eval_every and eval_batches >= 1, a
 * generator for each dataset. 0, or -1 with an error. */
int lp_training_check(const lp_model *m, int T, const lp_training_opts *o);
/* A training of t (taken: freed with the training, and by this call when it fails) from t's
 * current step. NULL with an error (lp_training_check's, or memory). */
lp_training *lp_training_new(lp_trainer *t, const lp_training_opts *o);
void lp_training_free(lp_training *r); /* NULL is a no-op; frees the trainer */

/* Trains until the trainer has made `total` steps (total >= lp_trainer_steps(t)); cb (may be
 * NULL) after each step. A GPU trainer gets the model's weights first (lp_trainer_push: the
 * model may have been changed since) and gives them back at the end, also on error, so that
 * on return the model holds the weights of the last finished step. Returns 0 at total, 1
 * when cb stopped it, -1 with an error: "interrupted" (lp_interrupted() is set; call again to
 * continue), "step 12: loss is NaN (learning rate too high?)" (the weights of step 11
 * kept), data or memory errors. */
int lp_training_run(lp_training *r, int total, lp_train_progress_fn cb, void *ud);

lp_trainer *lp_training_trainer(const lp_training *r); /* borrowed */
lp_train_history lp_training_history(const lp_training *r);
long long lp_training_tokens(const lp_training *r); /* trained on, every call */
double lp_training_seconds(const lp_training *r);   /* spent in lp_training_run, every call */

#endif
