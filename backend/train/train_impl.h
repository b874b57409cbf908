/* Private to backend/train: the trainer's layout and the kernels its passes share.
 *
 * Memory, one allocation per role (llm.c): `grads`, `mom`, `vel` are flat arrays over every
 * parameter in lp_model_param order (param i at offset p[i].off); `acts` holds the saved
 * activations of a B x T micro-batch, viewed per layer by lp_tlayer; `scratch` the
 * activation gradients, reused by every layer. N = B*T rows throughout. */
#ifndef LP_TRAIN_IMPL_H
#define LP_TRAIN_IMPL_H

#include "train/train.h"

/* Gradient views mirroring lp_linear / lp_block. */
typedef struct {
    float *w, *b;
} lp_glin;

typedef struct {
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    lp_glin qkv, q, k, v, o, fc, proj, gate, up, down;
} lp_gblock;

typedef struct {
    float *wte, *wpe, *lnf_w, *lnf_b;
    lp_glin unembed; /* .w == wte when tied */
    lp_gblock *blocks;
} lp_grads;

typedef struct {
    char name[96];
    lp_tensor *w;  /* the model's, borrowed */
    float **slot;  /* where the trainer keeps a pointer to its gradient (in lp_grads) */
    size_t off, n; /* offset in the flat buffers, numel */
    int decay;     /* 2-D: weight decay applies */
} lp_tparam;

/* Saved activations of one layer (views into acts). */
typedef struct {
    float *res;                       /* (N,D) the residual stream entering the layer */
    float *ln1, *ln1_mean, *ln1_rstd; /* (N,D), (N), (N) */
    float *qkv;                       /* GPT-2 (N,3*H*S) fused c_attn output */
    float *q, *k, *v;                 /* views of qkv (row stride 3*H*S), or Llama's own (N,H*S),
                                       * (N,K*S) after rotary */
    float *att;                       /* (B,H,T,T) softmax pattern, zero above the diagonal */
    float *z;                         /* (N,H*S) */
    float *mid;                       /* (N,D) residual after attention (the next res when attn_only) */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *h, *hg;                    /* GPT-2 (N,F) c_fc output, after GELU */
    float *gate, *up, *act;           /* Llama (N,F) */
} lp_tlayer;

struct lp_trainer {
    lp_model *m;
    lp_train_opts o;
    int B, T, N;
    int H, K, S, QD, KD, ldq, ldk; /* heads, kv heads, head size, widths, q/k/v row strides */

    size_t np, total; /* parameter tensors, parameter count */
    lp_tparam *p;
    lp_grads g;
    float *grads, *mom, *vel;   /* mom, vel: the data of mom_t, vel_t (1-D, total) */
    lp_tensor *mom_t, *vel_t;

    float *acts;
    lp_tlayer *L;               /* n_layers + 0; the final residual is res_final */
    float *res_final;           /* (N,D) */
    float *lnf, *lnf_mean, *lnf_rstd;
    float *logits;              /* (N,V): logits, then in place their gradient */
    float *losses;              /* (N) */
    float *rope_cos, *rope_sin; /* (T, S/2), Llama */

    float *scratch;
    float *dres, *dx, *dln;   /* (N,D) */
    float *dq, *dk, *dv;      /* strides ldq / ldk like q, k, v */
    float *dz;                /* (N,H*S) */
    float *dh, *dh2;          /* (N,F) */

    int steps;        /* updates applied */
    int micro;        /* micro-batches accumulated in this step */
    int dirty;        /* gradients must be zeroed before the next micro-batch */
    double loss_sum;  /* of this step's micro-batch losses */
};

/* ---- parameters (params.c) ---- */

/* Fills out[0..count) (out may be NULL to count) with m's parameters; with g, each slot
 * points at the matching field of g (g->blocks has n_layers entries). */
size_t lp_train_params(const lp_model *m, lp_tparam *out, lp_grads *g);

/* ---- the passes (pass.c) ---- */

/* Forward (and with backward, backward) over one micro-batch of checked tokens: *loss_sum
 * the sum of the per-token losses, *n_valid the targets that are not -1; parameter
 * gradients += the gradient of scale * mean loss. */
int lp_train_pass(lp_trainer *t, const int32_t *inputs, const int32_t *targets, float scale, int backward,
                  double *loss_sum, int *n_valid);

/* ---- kernels (kernels.c): multi-threaded with lp_par_for, never fail midway ---- */

/* y (N,out) = x (N,in) @ W (+ b), either layout. */
int lp_tk_linear_forward(float *y, const float *x, const lp_linear *l, int N);
/* dx (N,in) = (or += with accum) dy @ W^T; dW, db (+=) from dy (N,out) and x. dx/dw/db may
 * be NULL. */
void lp_tk_linear_backward(float *dx, int accum, float *dw, float *db, const float *dy, const float *x,
                           const lp_linear *l, int N);
/* Causal attention with grouped-query heads. q rows of stride ldq (H heads of S), k, v rows
 * of stride ldk (K heads); z (N,H*S); att (B,H,T,T). -1 only on allocation failure. */
int lp_tk_attention_forward(float *z, float *att, const float *q, const float *k, const float *v, int ldq, int ldk,
                            int B, int T, int H, int K, int S);
/* dq (stride ldq), dk, dv (stride ldk) overwritten. */
int lp_tk_attention_backward(float *dq, float *dk, float *dv, const float *dz, const float *q, const float *k,
                             const float *v, const float *att, int ldq, int ldk, int B, int T, int H, int K, int S);
/* Rotary half rotation in place on N rows of stride ld holding nh heads of S; cos/sin (T,S/2);
 * row n is position n % T. sign -1 applies the inverse (the backward). */
void lp_tk_rope(float *x, int ld, int N, int T, int nh, int S, const float *cs, const float *sn, float sign);
/* GELU, tanh form, as forward.c computes it (fast tanh). dinp may alias dout. */
void lp_tk_gelu_tanh_forward(float *out, const float *inp, size_t n);
void lp_tk_gelu_tanh_backward(float *dinp, const float *dout, const float *inp, size_t n);
/* y += x over n values. */
void lp_tk_add(float *y, const float *x, size_t n);
/* Softmax cross-entropy of logits (N,V) in place: losses (N), and logits become
 * scale * (softmax - onehot(target)); rows with target -1 get loss 0 and gradient 0. */
void lp_tk_crossentropy(float *logits, float *losses, const int32_t *targets, int N, int V, float scale);
/* Row-parallel norm forwards through the op table (-1: the op failed, e.g. interrupted). */
int lp_tk_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                            const float *b, int N, int C, float eps);
int lp_tk_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps);
/* Elementwise op-table activations split over threads. */
int lp_tk_gelu_forward(float *out, const float *inp, size_t n, int form);
int lp_tk_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n, int form);
int lp_tk_swiglu_forward(float *out, const float *gate, const float *up, size_t n);
int lp_tk_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n);

#endif
