/* The compute core of a cross-layer transcoder (sae.h's lp_clt; DICTIONARY.md "CLT"): a batch
 * of N tokens through every layer's encoder and every decoder, the losses, the gradients.
 * Row vectors, f32; L layers, d = d_model, T = d_tc; activations layer-major:
 *
 *   x (L,N,d)   x[l] the MLP input of layer l (feature_input_hook)
 *   z_l = x[l] W_enc[l] + b_enc[l]                       (N,T)
 *   f_l = relu(z_l), or z_l * 1[z_l > threshold[l]] (jumprelu)
 *   y_hat[l'] = sum_{l <= l'} f_l W_dec[l][:, l'-l, :] + b_dec[l']   (N,d)
 *   y (L,N,d)   y[l'] the MLP output of layer l' (feature_output_hook), the target
 *
 * Losses (means over tokens):
 *   mse       sum over l' of sum_d (y_hat[l'] - y[l'])^2
 *   sparsity  l1 sum_l sum_i s(f_l,i, ||W_dec[l]_i||), the norm of feature i's decoders into
 *             every layer concatenated: tanh (tanh(tanh_c f n), Anthropic's CLT penalty) for
 *             relu and jumprelu; step (H(z - theta)) for jumprelu or decoder-weighted L1
 *             (f n) for relu when o->sparsity is LP_SPARSITY_STEP
 *   pre_act   jumprelu: pre_act sum_l sum_i ReLU(theta_i - z_i) ||W_dec[l]_i||
 * JumpReLU thresholds get the rectangle kernel's gradient of width o->bandwidth (sae_ops.h).
 *
 * The fast path (clt_ops.c) runs each layer's encoder and decoders as one transcoder of the
 * SAE core (sae_ops.c / sae_grad.c: sparse lists of active pairs, dense products when many
 * are active) whose decoder rows are feature i's decoders into layers l..L-1 laid end to
 * end (W_dec[l] is [T, L-l, d], so that row is contiguous and its norm is the concatenated
 * one); the layers' predictions are summed, and each layer's backward gets d loss / d y_hat
 * of every layer it writes. The reference (clt_ref.c) is plain loops in double over every
 * pair. Gradients ACCUMULATE (+=). Errors: -1 with lp_last_error() set.
 */
#ifndef LP_DICT_CLT_OPS_H
#define LP_DICT_CLT_OPS_H

#include <stddef.h>

#include "dict/sae_ops.h"

typedef struct lp_clt_losses {
    double mse, sparsity, pre_act, total;
    double l0;       /* active features per token, the mean over layers */
    double sse, sst; /* summed over layers: sum ||y - y_hat||^2, sum ||y - ybar||^2 (per-layer ybar) */
} lp_clt_losses;

/* Gradients of every parameter in one allocation, per layer in the order W_enc, b_enc,
 * W_dec, b_dec, threshold (jumprelu), layer after layer; views of lp_clt's shapes. */
typedef struct lp_clt_grads {
    int n_layers;
    float **W_enc, **b_enc, **W_dec, **b_dec, **threshold; /* n_layers each; threshold NULL for relu */
    float *mem;
    size_t n;
} lp_clt_grads;

lp_clt_grads *lp_clt_grads_new(const lp_clt *c); /* zeros; NULL on no memory */
void lp_clt_grads_zero(lp_clt_grads *g);
void lp_clt_grads_free(lp_clt_grads *g);

/* Saved activations and scratch for batches of at most N tokens, for one lp_clt (its
 * tensors are borrowed by the work: the CLT must outlive it and keep its shapes). */
typedef struct lp_clt_work lp_clt_work;
lp_clt_work *lp_clt_work_new(const lp_clt *c, int N);
void lp_clt_work_free(lp_clt_work *w);
/* What the last forward saved, borrowed: y_hat (L,N,d) (until a backward, which writes its
 * gradient there); layer l's z and f (N,T). */
const float *lp_clt_work_y_hat(const lp_clt_work *w);
const float *lp_clt_work_z(const lp_clt_work *w, int l);
const float *lp_clt_work_f(const lp_clt_work *w, int l);
/* Layer l of the last forward with losses: sum ||y - y_hat||^2, sum ||y - ybar||^2, the
 * mean active features per token; whether its pairs were too many for the lists. */
void lp_clt_work_layer(const lp_clt_work *w, int l, double *sse, double *sst, double *l0, int *dense);
/* The per-layer transcoder the fast path runs for layer l (borrowed; its tensors are the
 * CLT's, its b_dec zero): for the trainer's dead-feature counters. */
const lp_sae_work *lp_clt_work_layer_work(const lp_clt_work *w, int l);

/* Forward: z, f of every layer and y_hat. With o, the losses against y into out (o NULL:
 * inference; out and y unread). */
int lp_clt_forward(lp_clt_losses *out, lp_clt_work *w, const lp_clt *c, const float *x, const float *y, int N,
                   const lp_sae_loss_opts *o);
/* Backward of the last lp_clt_forward with o on w (same c, x, y, N, o): g += d total / d params. */
int lp_clt_backward(lp_clt_grads *g, lp_clt_work *w, const lp_clt *c, const float *x, const float *y, int N,
                    const lp_sae_loss_opts *o);

/* Inference in one call: f (L,N,T) the features and/or y_hat (L,N,d) (either may be NULL). */
int lp_clt_run(float *f, float *y_hat, const lp_clt *c, const float *x, int N);

/* Inference of one layer (a splice's hook, clt_ops.c): z (may be NULL) and f (N,T) of layer l
 * from its input x (N,d); f from a given z (relu, or z * 1[z > threshold]); layer l2's
 * prediction y (N,d) = b_dec[l2] + sum_{l <= l2} f[l] W_dec[l][:, l2-l, :] from the features
 * f[0..l2] (N,T) of the layers up to l2. */
int lp_clt_encode_layer(float *z, float *f, const lp_clt *c, int l, const float *x, int N);
void lp_clt_activate_layer(float *f, const float *z, const lp_clt *c, int l, int N);
void lp_clt_decode_layer(float *y, const lp_clt *c, int l2, const float *const *f, int N);

/* The references (clt_ref.c), stateless: losses (out may be NULL; o NULL: no losses), and
 * optionally f (L,N,T) and y_hat (L,N,d); the backward recomputes the forward. */
int lp_clt_forward_ref(lp_clt_losses *out, float *f, float *y_hat, const lp_clt *c, const float *x, const float *y,
                       int N, const lp_sae_loss_opts *o);
int lp_clt_backward_ref(lp_clt_grads *g, const lp_clt *c, const float *x, const float *y, int N,
                        const lp_sae_loss_opts *o);

/* Training's initialisation (DICTIONARY.md): biases 0; each feature's concatenated decoder
 * row a random direction of norm dec_norm; encoder columns random of the same norm;
 * thresholds `threshold`. Deterministic in seed. */
int lp_clt_init_random(lp_clt *c, uint64_t seed, float dec_norm, float threshold);

#endif
