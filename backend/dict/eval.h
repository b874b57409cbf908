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
 *   lp_sae_metrics r; lp_sae_eval_result(e, &r);
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
int lp_sae_eval_result(const lp_sae_eval *e, lp_sae_metrics *out);
/* The firing fraction of every feature into density (d_sae). */
int lp_sae_eval_density(const lp_sae_eval *e, double *density);

#endif
