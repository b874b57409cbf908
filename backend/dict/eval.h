/* Evaluating a dictionary: the reconstruction metrics of DICTIONARY.md ("Metrics", SAELens'
 * run_evals names) accumulated in f64 over batches of tokens, in bounded memory (sums per
 * dimension and per feature only). Feed it x (what the SAE reads, or the target of a
 * transcoder), x_hat and f batch by batch, unscaled (the model's units), then read:
 *   l0        mean number of non-zero features per token       l1  mean sum_i |f_i|
 *   mse       mean ||x - x_hat||^2                             cossim  mean cos(x, x_hat)
 *   l2_ratio  mean ||x_hat|| / ||x||
 *   relative_reconstruction_bias  E||x_hat||^2 / E[x . x_hat]
 *   explained_variance (pooled)   1 - sum_t ||x_t - x_hat_t||^2 / sum_t ||x_t - xbar||^2,
 *             xbar the per-dimension mean over every token fed (sum ||x - xbar||^2 =
 *             sum ||x||^2 - ||sum x||^2 / N, all in f64)
 *   dead      features that never fired; density[i] the fraction of tokens where i fired.
 * A token whose ||x|| (or ||x_hat||, for cossim) is 0 counts 0 towards cossim and l2_ratio.
 *
 *   lp_sae_eval *e = lp_sae_eval_new(d, d_sae);
 *   for each batch: lp_sae_eval_add(e, x, x_hat, f, N);
 *   lp_sae_metrics r; lp_sae_eval_metrics(e, &r);
 *   lp_sae_eval_free(e);
 *
 * Errors: NULL or -1 with lp_last_error() (no memory, no tokens fed).
 */
#ifndef LP_DICT_EVAL_H
#define LP_DICT_EVAL_H

#include <stdint.h>

typedef struct lp_sae_metrics {
    double n_tokens;
    double l0, l1, mse, cossim, l2_ratio, relative_reconstruction_bias, explained_variance;
    int dead; /* features that never fired */
} lp_sae_metrics;

typedef struct lp_sae_eval lp_sae_eval;

lp_sae_eval *lp_sae_eval_new(int d, int d_sae);
void lp_sae_eval_free(lp_sae_eval *e); /* NULL is a no-op */
/* Adds N tokens: x, x_hat (N,d), f (N,d_sae), all borrowed. */
int lp_sae_eval_add(lp_sae_eval *e, const float *x, const float *x_hat, const float *f, int N);
int lp_sae_eval_metrics(const lp_sae_eval *e, lp_sae_metrics *out);
/* The firing fraction of every feature into density (d_sae). */
int lp_sae_eval_density(const lp_sae_eval *e, double *density);


/* ---- evaluation over model runs (eval_run.c) ----
 * The corpus is cut into consecutive windows of ctx positions (a BOS first when prepend_bos,
 * then ctx - 1 tokens), `batch` windows per model run, until `tokens` positions are run (or
 * the corpus ends). Each batch is run three times: clean (caching the dictionary's hooks),
 * with the reconstruction patched in at its hook (no error term), and with that hook zero-
 * ablated. Positions whose token is the model's BOS or EOS are excluded (keep_special
 * counts them) from every metric, and keep their clean activation in the reconstruction
 * run, as SAELens' run_evals does with exclude_special_tokens:
 *   ce_*  mean over positions t < ctx - 1 of -log p(token t+1), t not special
 *   kl_*  mean over positions of KL(p_clean || p_run) summed over the vocabulary
 *   ce_loss_score = (ce_zero - ce_sae) / (ce_zero - ce_clean)
 *   kl_div_score  = (kl_zero - kl_sae) / kl_zero
 * and the reconstruction metrics above on every position that is not special. Memory: one
 * batch's three sets of logits. Polls the interrupt flag between runs. */
#include "data/dataset.h"
#include "dict/sae.h"
#include "model/model.h"

typedef struct lp_sae_eval_opts {
    const int32_t *tokens; /* the corpus (borrowed) */
    size_t ntokens;
    int ctx;        /* positions per window: 2..the model's context */
    int64_t want;   /* positions to run (at least one window) */
    int batch;      /* windows per run; 0: 8 */
    int prepend_bos;
    int keep_special;
    /* called after each batch with positions run so far and the total; non-zero stops
     * (an "interrupted" error). May be NULL. */
    int (*progress)(void *ud, int64_t done, int64_t total);
    void *ud;
} lp_sae_eval_opts;

typedef struct lp_sae_eval_result {
    lp_sae_metrics m;
    double ce_clean, ce_sae, ce_zero, kl_sae, kl_zero, ce_loss_score, kl_div_score;
    int64_t positions; /* run in all */
    double *density;   /* d_sae firing fractions, owned: free() it */
    int d_sae;
} lp_sae_eval_result;

/* 0, or -1 with an error (a hook the model lacks, a corpus shorter than one window, bad
 * sizes, no memory, an interrupt); out->density is NULL on error. */
int lp_sae_evaluate(const lp_model *m, const lp_sae *s, const lp_sae_eval_opts *o, lp_sae_eval_result *out);

#endif
