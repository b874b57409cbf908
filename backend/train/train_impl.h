/* Private to backend/train: the trainer's layout and the kernels its passes share.
 *
 * Memory, one allocation per role (llm.c): `grads`, `mom`, `vel` are flat arrays over every
 * parameter in lp_model_param order (param i at offset p[i].off); `acts` holds the saved
 * activations of a B x T micro-batch, viewed per layer by lp_tlayer; `scratch` the
 * activation gradients, reused by every layer. N = B*T rows throughout.
 *
 * Two paths run the same passes (pass.c) through the dispatchers of kernels_ops.c:
 *   - the CPU path (be == NULL): kernels.c's multi-threaded kernels, the weights read and
 *     updated in place in the model's tensors, everything in host memory;
 *   - the device path (be set): the op table of a backend (ops/ops.h) on memory that backend
 *     allocates, the weights in a flat buffer `params` laid out like `grads`, copied from the
 *     model at creation and by lp_trainer_push, back into it by lp_trainer_pull. On a GPU this
 *     is CUDA training; tests also run it on the CPU backend, where it must agree with the
 *     CPU path. */
#ifndef LP_TRAIN_IMPL_H
#define LP_TRAIN_IMPL_H

#include "device.h"
#include "ops/ops.h"
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
    float **wslot; /* and to the weight the passes read (the same fields of another lp_grads) */
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
    const lp_backend *be; /* NULL: the CPU path; else the device path on be (see above) */
    const lp_ops *ops;    /* be->ops, or lp_cpu_ops() */
    lp_grads w;           /* the weights the passes read: the model's data, or views of params */
    int B, T, N;
    int H, K, S, QD, KD, ldq, ldk; /* heads, kv heads, head size, widths, q/k/v row strides */

    size_t np, total; /* parameter tensors, parameter count */
    lp_tparam *p;
    lp_grads g;
    float *grads, *mom, *vel;   /* CPU path: mom, vel are the data of mom_t, vel_t (1-D, total); */
    lp_tensor *mom_t, *vel_t;   /* device path: host copies of them, made when asked for */

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

    /* the device path's own buffers (on be) and host copies */
    float *params;        /* every weight, flat like grads */
    int32_t *ids, *tgts;  /* (N) the micro-batch's inputs and targets */
    float *dloss;         /* (N) each row's share of the loss's gradient */
    float *qkv3, *dqkv3;  /* GPT-2: q, k, v as three contiguous (N,QD) blocks; their gradient */
    float *norm_part;     /* the gradient's partial norms (LP_NORM_PARTS) */
    float *losses_h;      /* host (N): the losses read back */
    float *grads_h;       /* host (total): lp_trainer_grad's copy, made on demand */

    int frozen;       /* LP_FREEZE_* flags of the backward */
    int has_dres;     /* a backward has run: dres holds the embedding output's gradient */
    float *dres_h;    /* host (N,D): lp_trainer_input_grad's copy on the device path */

    int steps;        /* updates applied */
    int micro;        /* micro-batches accumulated in this step */
    int dirty;        /* gradients must be zeroed before the next micro-batch */
    double loss_sum;  /* of this step's micro-batch losses */
};

/* ---- parameters (params.c) ---- */

/* Fills out[0..count) (out may be NULL to count) with m's parameters; with g and w, each
 * slot / wslot points at the matching field of g / w (->blocks have n_layers entries). */
size_t lp_train_params(const lp_model *m, lp_tparam *out, lp_grads *g, lp_grads *w);

/* Partial sums the device path reduces the gradient's norm into (a power of two). */
#define LP_NORM_PARTS 4096

/* A trainer on backend be's memory through its op table (the device path); be NULL is the
 * CPU path. lp_trainer_new_on with the CUDA backend; tests run the device path on the CPU
 * backend. */
lp_trainer *lp_trainer_new_backend(lp_model *m, const lp_train_opts *o, int B, int T, const lp_backend *be);
/* The device path's moments copied into mom_t / vel_t (host tensors, made on first use);
 * a no-op on the CPU path, whose moments are those tensors. */
int lp_trainer_moments_to_host(lp_trainer *t);

/* ---- the passes (pass.c) ---- */

/* Forward (and with backward, backward) over one micro-batch of checked tokens: *loss_sum
 * the sum of the per-token losses, *n_valid the targets that are not -1; parameter
 * gradients += the gradient of scale * mean loss. */
int lp_train_pass(lp_trainer *t, const int32_t *inputs, const int32_t *targets, float scale, int backward,
                  double *loss_sum, int *n_valid);

/* ---- the kernels of either path (kernels_ops.c): the CPU kernels below, or t->ops on the
 * device; 0 or -1 with an error. Shapes as the CPU kernels' below. ---- */

int lp_tkd_linear_forward(lp_trainer *t, float *y, const float *x, const lp_glin *w, const lp_linear *l);
int lp_tkd_linear_backward(lp_trainer *t, float *dx, int accum, float *dw, float *db, const float *dy,
                           const float *x, const lp_glin *w, const lp_linear *l);
/* Layer a's attention: z and att from q, k, v (GPT-2: inside qkv) ... */
int lp_tkd_attention_forward(lp_trainer *t, lp_tlayer *a);
/* ... and t->dq, dk, dv (GPT-2: the fused gradient of qkv) from t->dz. With LP_FREEZE_ATTENTION
 * only dv: GPT-2's dq, dk are zeroed (the fused gradient stays whole), Llama's left alone. */
int lp_tkd_attention_backward(lp_trainer *t, const lp_tlayer *a);
/* Rotary embeddings on N rows of nh heads (in place); sign -1 is the backward. */
int lp_tkd_rope(lp_trainer *t, float *x, int nh, float sign);
int lp_tkd_add(lp_trainer *t, float *y, const float *x, size_t n);
int lp_tkd_norm_forward(lp_trainer *t, float *out, float *mean, float *rstd, const float *inp, const float *w,
                        const float *b);
int lp_tkd_norm_backward(lp_trainer *t, float *dx, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, const float *mean, const float *rstd);
int lp_tkd_gelu_forward(lp_trainer *t, float *out, const float *inp, size_t n);
int lp_tkd_gelu_backward(lp_trainer *t, float *dinp, const float *dout, const float *inp, size_t n);
int lp_tkd_swiglu_forward(lp_trainer *t, float *out, const float *gate, const float *up, size_t n);
int lp_tkd_swiglu_backward(lp_trainer *t, float *dgate, float *dup, const float *dout, const float *gate,
                           const float *up, size_t n);
/* The loss of each row into t->losses (host on the CPU path, read back into t->losses_h on
 * the device), and the logits become scale * (softmax - onehot(target)). */
int lp_tkd_crossentropy(lp_trainer *t, const int32_t *targets, float scale);

/* ---- CPU kernels (kernels.c): multi-threaded with lp_par_for, never fail midway ---- */

/* dx (N,in) = (or += with accum) dy @ W^T; dW, db (+=) from dy (N,out) and x. dx/dw/db may
 * be NULL. W is l's weight, in l's layout. */
void lp_tk_linear_backward(float *dx, int accum, float *dw, float *db, const float *dy, const float *x,
                           const float *W, const lp_linear *l, int N);
/* Causal attention with grouped-query heads. q rows of stride ldq (H heads of S), k, v rows
 * of stride ldk (K heads); z (N,H*S); att (B,H,T,T). -1 only on allocation failure. */
int lp_tk_attention_forward(float *z, float *att, const float *q, const float *k, const float *v, int ldq, int ldk,
                            int B, int T, int H, int K, int S);
/* dq (stride ldq), dk, dv (stride ldk) overwritten; frozen: the pattern a constant, dv only
 * (dq, dk NULL or zeroed). */
int lp_tk_attention_backward(float *dq, float *dk, float *dv, const float *dz, const float *q, const float *k,
                             const float *v, const float *att, int ldq, int ldk, int B, int T, int H, int K, int S,
                             int frozen);
/* Rotary half rotation in place on N contiguous rows of nh heads of S; cos/sin (T,S/2); row n
 * is position n % T. sign -1 applies the inverse (the backward). The op table's rope_table. */
void lp_tk_rope(float *x, int N, int T, int nh, int S, const float *cs, const float *sn, float sign);
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
