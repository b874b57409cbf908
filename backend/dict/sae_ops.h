/* The compute core of dictionary learning: a batch of N tokens through an SAE or transcoder
 * (backend/dict/sae.h), its losses, and the gradients of every parameter. Row vectors, f32:
 *
 *   x' = x - b_dec (apply_b_dec_to_input) or x      x (N,d_in)
 *   z  = x' W_enc + b_enc                            z (N,d_sae) pre-activations
 *   f  = act(z)                                      f (N,d_sae) features
 *   x_hat = sum_i c_i W_dec,i + b_dec (+ x W_skip^T) x_hat (N,d_out); c = f, or f / ||W_dec,i||
 *                                                    for topk with rescale_acts_by_decoder_norm
 * act by architecture (DICTIONARY.md): standard ReLU; topk the k largest per token (ties: the
 * lower index), then ReLU; batchtopk / matryoshka the k*N largest of ReLU(z) over the batch
 * (batch mode, training) or z * 1[z > threshold] (threshold mode, inference); jumprelu
 * z * 1[z > threshold].
 *
 * Losses (each a mean over tokens of a sum over dimensions or features):
 *   mse      sum_d (x_hat - y)^2, y the target (x for an SAE)
 *   sparsity standard: l1 sum_i f_i ||W_dec,i|| (tanh: as jumprelu tanh); jumprelu step: l1 sum_i H(z_i - theta_i);
 *            jumprelu tanh: l1 sum_i tanh(tanh_c f_i ||W_dec,i||)
 *   pre_act  jumprelu: pre_act sum_i ReLU(theta_i - z_i) ||W_dec,i||
 *   aux      topk AuxK: aux_alpha * min(n_dead / k_aux, 1) * sum_d (a W_dec - e)^2, a the
 *            k_aux largest z over dead features, e = stopgrad(y - x_hat) (no b_dec in a W_dec)
 *   prefix   matryoshka: sum over prefix widths w of the MSE of f[:w] W_dec[:w] + b_dec
 * JumpReLU's threshold gradients use the rectangle kernel of width `bandwidth` (straight-
 * through: d f / d theta = -(theta/eps) K((z-theta)/eps), d H / d theta = -(1/eps) K(..)).
 *
 * The fast path (sae_ops.c, sae_grad.c) computes z with one sgemm, keeps the active pairs
 * (token, feature) in per-token lists and decodes and differentiates through them only
 * (top-k decode is a gather of k rows of W_dec), falling back to dense products when more
 * than an eighth of the pairs are active (a young ReLU SAE) or the pre-activation loss
 * touches every pair. The reference (sae_ref.c) is plain loops in double over every pair:
 * the test oracle, same signatures with _ref.
 *
 * Gradient convention (ops.h): parameter gradients ACCUMULATE (+=).
 * Errors: -1 with lp_last_error() set (N larger than the work was made for, no memory).
 */
#ifndef LP_DICT_SAE_OPS_H
#define LP_DICT_SAE_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "dict/sae.h"

#define LP_SAE_MAX_PREFIX 8

typedef struct lp_sae_loss_opts {
    float l1;                 /* sparsity coefficient (standard, jumprelu) */
    lp_sae_sparsity sparsity; /* jumprelu: step or tanh */
    float tanh_c;             /* 4 */
    float bandwidth;          /* jumprelu eps: 0.05 (step), 2.0 (tanh) */
    float pre_act;            /* jumprelu pre-activation coefficient, 0 = off */
    float aux_alpha;          /* topk AuxK weight (1), 0 = off */
    int k_aux;                /* AuxK's k (d_in / 2) */
    const uint8_t *dead;      /* topk AuxK: dead[i] != 0 for dead features (d_sae), or NULL: none */
    int batch_mode;           /* batchtopk / matryoshka: 1 = top k*N over the batch, 0 = threshold */
    int n_prefix;             /* matryoshka: prefix widths, ascending, each in 1..d_sae */
    int prefix[LP_SAE_MAX_PREFIX];
    /* backward only: d loss / d x_hat (N,d_out) given by the caller instead of the MSE's
     * 2/N (x_hat - y), y then unread (a CLT's layers sum into one prediction: clt_ops.c);
     * NULL: the MSE. Not with prefixes. */
    const float *dxhat;
} lp_sae_loss_opts;

/* Defaults for an architecture: l1 5 (standard) / 1e-3 (jumprelu), tanh_c 4, bandwidth
 * 0.05, aux_alpha 1 with k_aux d_in/2 (topk), batch_mode 1. */
lp_sae_loss_opts lp_sae_loss_defaults(const lp_sae_config *c);

typedef struct lp_sae_losses {
    double mse, sparsity, pre_act, aux, prefix, total;
    double l0;        /* mean number of non-zero features per token */
    double sse, sst;  /* sum ||y - x_hat||^2 and sum ||y - ybar||^2 over the batch (explained variance) */
    float min_active; /* smallest non-zero feature value (batchtopk's threshold update), 0 if none */
} lp_sae_losses;

/* Gradients of every parameter, one allocation; views in sae.h's order and shapes. */
typedef struct lp_sae_grads {
    float *W_enc, *b_enc, *W_dec, *b_dec, *threshold, *W_skip; /* threshold, W_skip NULL when absent */
    float *mem;
    size_t n; /* floats in mem */
} lp_sae_grads;

lp_sae_grads *lp_sae_grads_new(const lp_sae_config *c); /* zeros; NULL on no memory */
void lp_sae_grads_zero(lp_sae_grads *g);
void lp_sae_grads_free(lp_sae_grads *g);

/* Saved activations and scratch for batches of at most N tokens (owned, opaque). */
typedef struct lp_sae_work lp_sae_work;
lp_sae_work *lp_sae_work_new(const lp_sae_config *c, int N, int k_aux); /* NULL on no memory */
void lp_sae_work_free(lp_sae_work *w);
/* Views of what the last forward saved: z, f (N,d_sae), x_hat (N,d_out). Borrowed. */
const float *lp_sae_work_z(const lp_sae_work *w);
const float *lp_sae_work_f(const lp_sae_work *w);
const float *lp_sae_work_x_hat(const lp_sae_work *w);

/* Encoding and decoding alone (inference). z, f (N,d_sae); x (N,d_in); x_hat (N,d_out).
 * batch_mode: see lp_sae_loss_opts. z may be NULL. decode reads x only for W_skip. */
int lp_sae_encode(float *z, float *f, const lp_sae *s, const float *x, int N, int batch_mode);
int lp_sae_decode(float *x_hat, const lp_sae *s, const float *f, const float *x, int N);

/* Forward with losses: saves z, f, x_hat and the active lists in w. x (N,d_in); y (N,d_out)
 * the target, or NULL for an SAE (y = x). */
int lp_sae_forward(lp_sae_losses *out, lp_sae_work *w, const lp_sae *s, const float *x, const float *y, int N,
                   const lp_sae_loss_opts *o);
/* Backward of the last lp_sae_forward on w (same s, x, y, N, o): g += d total / d params. */
int lp_sae_backward(lp_sae_grads *g, lp_sae_work *w, const lp_sae *s, const float *x, const float *y, int N,
                    const lp_sae_loss_opts *o);

/* The references (sae_ref.c): the same, in plain loops with double accumulation. */
int lp_sae_encode_ref(float *z, float *f, const lp_sae *s, const float *x, int N, int batch_mode);
int lp_sae_decode_ref(float *x_hat, const lp_sae *s, const float *f, const float *x, int N);
int lp_sae_forward_ref(lp_sae_losses *out, lp_sae_work *w, const lp_sae *s, const float *x, const float *y, int N,
                       const lp_sae_loss_opts *o);
int lp_sae_backward_ref(lp_sae_grads *g, lp_sae_work *w, const lp_sae *s, const float *x, const float *y, int N,
                        const lp_sae_loss_opts *o);

/* ---- shared by the implementations (sae_ops.c) ---- */
/* ||W_dec,i|| for every feature, in double. norms (d_sae). */
void lp_sae_decoder_norms(double *norms, const lp_sae *s);
/* The k_aux largest z over dead features of one row (ties: lower index), -1-padded: returns
 * the count. idx (k_aux). */
int lp_sae_aux_select(int *idx, const float *zrow, const uint8_t *dead, int d_sae, int k_aux);

#endif
