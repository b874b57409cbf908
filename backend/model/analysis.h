/* Analyses of a model's weights and of a run's cache, with TransformerLens' conventions:
 * per-head weight matrices, Q/K/V composition scores between heads (Elhage et al. 2021, "A
 * Mathematical Framework for Transformer Circuits"), direct logit attribution (dla.c) and the
 * logit lens (lens.c). The activation patching sweep has its own header, patch.h.
 *
 *   float *s = malloc(sizeof *s * LH * LH);            // LH = n_layers * n_heads
 *   if (lp_composition_scores(m, LP_COMPOSE_K, 0, -1, -1, s) < 0) report(lp_last_error());
 *   // s[(l1*H + h1) * LH + l2*H + h2]: K-composition of head h1 of layer l1 into h2 of l2
 *
 * Row-vector convention throughout (TransformerLens'): a head reads x (1 x d_model) as
 * q = x W_Q, k = x W_K, v = x W_V with W_Q, W_K, W_V (d_model x d_head), and writes z W_O with
 * W_O (d_head x d_model). GPT-2's fused Conv1D c_attn ([in, out] = [D, 3D], columns q | k | v,
 * head h at columns h*S ..) and Llama's Linear q/k/v/o_proj ([out, in]) are both read into
 * this form; with grouped-query attention, query head h uses kv head h / (n_heads /
 * n_kv_heads), so heads are always the n_heads query heads.
 *
 * Errors: -1 with lp_last_error() set (allocation, an argument out of range, a hook point the
 * run did not cache, "interrupted"). Outputs are written only on success.
 */
#ifndef LP_MODEL_ANALYSIS_H
#define LP_MODEL_ANALYSIS_H

#include <stdint.h>

#include "model/model.h"

/* The weights of query head `head` of layer `layer`: wq, wk, wv (D x S) and wo (S x D), each
 * row-major; any of them may be NULL. fold_ln != 0 applies TransformerLens' from_pretrained
 * processing that matters for composition: the layer's ln1 weight is folded into W_Q, W_K and
 * W_V (rows scaled: diag(w) W), and, for LayerNorm models (GPT-2), each row of W_O is centred
 * (its mean over d_model removed, center_writing_weights). Biases are not part of these. */
int lp_head_weights(const lp_model *m, int layer, int head, int fold_ln, float *wq, float *wk, float *wv,
                    float *wo);

typedef enum lp_compose_kind { LP_COMPOSE_Q = 0, LP_COMPOSE_K = 1, LP_COMPOSE_V = 2 } lp_compose_kind;

/* Composition scores, as TransformerLens' all_composition_scores(mode): with the earlier
 * head's W_OV = W_V W_O and the later head's W_QK = W_Q W_K^T (both d_model x d_model),
 *   Q: W_A = W_OV(1), W_B = W_QK(2)      (the earlier head writes what the later one's query reads)
 *   K: W_A = W_OV(1), W_B = W_QK(2)^T = W_K W_Q^T   (... what its key reads)
 *   V: W_A = W_OV(1), W_B = W_OV(2)      (... what its value reads)
 *   score = ||W_A W_B||_F / (||W_A||_F ||W_B||_F)      in [0, 1]
 * Computed through the d_head-sized factors (Gram matrices and their Cholesky factors), never
 * a d_model x d_model product. A head whose W_A or W_B is zero gets NaN (0 / 0).
 * l1 < 0: every pair; out is (L*H) x (L*H), row l1*H + h1 (earlier), column l2*H + h2 (later),
 * 0 where l2 <= l1 (TransformerLens' mask). l1 >= 0: one layer pair, l1 < l2; out is H x H.
 * fold_ln: as lp_head_weights. Polls the interrupt flag between layer pairs. */
int lp_composition_scores(const lp_model *m, lp_compose_kind kind, int fold_ln, int l1, int l2, float *out);
/* The naive reference of the same (d_model x d_model products in double): the test oracle,
 * for small models only. */
int lp_composition_scores_ref(const lp_model *m, lp_compose_kind kind, int fold_ln, int l1, int l2, float *out);

/* Direct logit attribution of one position of a cached run: the logit of `token` (minus the
 * logit of `baseline` when baseline >= 0) split into what each part of the residual stream
 * contributes through the final norm with its scale frozen at the run's value
 * (ln_final.hook_scale) and the unembedding, TransformerLens' apply_ln_to_stack convention:
 *   u         = W_U[:, token] - W_U[:, baseline]            (d_model)
 *   dir       = w_lnf * u, centred (LayerNorm only: the norm removes each vector's mean),
 *               divided by the frozen scale
 *   part(c)   = c . dir  for c = hook_embed, hook_pos_embed, every hook_attn_out and hook_mlp_out
 *   head(l,h) = z[l,h] W_O^h . dir  (hook_z), and attn_bias(l) = b_O . dir, so that the heads
 *               of a layer plus its attn_bias add up to its attn part
 *   bias      = b_lnf . u + b_U[token] - b_U[baseline]      (the constant the norm's bias and
 *               the unembedding's bias add)
 *   total     = sum of the parts + bias, which equals the run's logit (difference) up to float
 *               rounding when no hook wrote the residual stream itself.
 * Needs the run to have cached hook_embed, hook_pos_embed (GPT-2), ln_final.hook_scale and,
 * for every layer, hook_attn_out, hook_mlp_out and attn.hook_z. row, pos: 0-based. */
typedef struct lp_dla {
    int n_layers, n_heads;
    double embed, pos_embed; /* pos_embed is 0 for models without one */
    double *attn, *mlp;      /* n_layers each */
    double *attn_bias;       /* n_layers */
    double *heads;           /* n_layers x n_heads */
    double bias, total;
    double actual;           /* the logit (difference) in the run's logits */
    double scale;            /* the frozen ln_final scale */
} lp_dla;

int lp_dla_compute(const lp_model *m, const lp_run *r, int row, int pos, int32_t token, int32_t baseline,
                   lp_dla *out);
void lp_dla_free(lp_dla *d); /* frees the arrays; NULL is a no-op */

/* The logit lens (nostalgebraist 2020): what the residual stream after each layer
 * (blocks.L.hook_resid_post) predicts at one position of a cached run, read through the final
 * norm and the unembedding (lp_model_unembed) as if the model ended there; the last layer's is
 * the model's own prediction. Per layer: the softmax's k most likely tokens (1 <= k <= 50,
 * most likely first; fewer when the vocabulary is smaller or logits are -inf: id -1, prob 0)
 * and, when next >= 0, the probability of token `next` (the token that actually follows).
 * Probabilities are computed in double from the float logits. row, pos: 0-based. */
typedef struct lp_lens {
    int n_layers, k;
    int32_t *top;      /* n_layers x k token ids */
    double *top_prob;  /* n_layers x k */
    double *next_prob; /* n_layers, or NULL when next < 0 */
} lp_lens;

int lp_logit_lens(const lp_model *m, const lp_run *r, int row, int pos, int k, int32_t next, lp_lens *out);
void lp_lens_free(lp_lens *l); /* frees the arrays; NULL is a no-op */

#endif
