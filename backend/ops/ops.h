/* The operations of transformers on raw f32 arrays, llm.c style: each layer is a pair
 *   lp_<op>_forward(out..., inp..., params..., sizes)
 *   lp_<op>_backward(dinp, dparams..., dout, saved..., sizes)
 * outputs first, then inputs, then sizes, with the shape of every array in a comment.
 * All arrays are contiguous, row-major, and live on the device of the table they are called
 * through (lp_ops below); integer arrays (tokens, targets, indices) are int32.
 *
 * Gradient convention (as llm.c): gradients of parameters ACCUMULATE (+=), so a training
 * step zeroes them once and every use adds; gradients of activations (dinp) are OVERWRITTEN.
 * A NULL gradient pointer skips that gradient.
 *
 * Return: 0, or -1 with lp_last_error() set (a token out of range, an allocation of
 * scratch space that failed, "interrupted" when the kernel's interrupt flag was raised
 * between chunks of a long op, or a device error).
 *
 * Three implementations share these signatures:
 *   lp_cpu_ops()  fast CPU versions (OpenBLAS for products), ops/<group>.c
 *   lp_ref_ops()  naive references (double accumulation), ops/<group>_ref.c: the test oracle
 *   the CUDA table, backend/cuda/ (.cu files), reached through lp_backend_get(LP_DEVICE_CUDA)->ops
 * A NULL entry in a table means the device does not support the op.
 */
#ifndef LP_OPS_H
#define LP_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* matmul flags */
enum {
    LP_TRANS_A = 1, /* a is stored (K,M) */
    LP_TRANS_B = 2, /* b is stored (N,K): a Linear weight (out_features, in_features) */
    LP_SHARE_B = 4, /* one b for every batch entry (weights) */
    LP_ACCUM = 8    /* out += a @ b instead of out = a @ b */
};

enum { LP_GELU_TANH = 0, LP_GELU_ERF = 1 };

/* reductions over one dim */
enum { LP_REDUCE_SUM = 0, LP_REDUCE_MEAN = 1, LP_REDUCE_MAX = 2, LP_REDUCE_NORM = 3, LP_REDUCE_MIN = 4 };

/* elementwise binary ops */
enum { LP_BIN_ADD = 0, LP_BIN_SUB = 1, LP_BIN_MUL = 2, LP_BIN_DIV = 3 };

/* The elementwise broadcasting op works on up to this many dims. */
#define LP_BIN_MAX_DIMS 8

typedef struct lp_ops {
    /* out is (batch,M,N); a is (batch,M,K) or (batch,K,M) with LP_TRANS_A; b is (batch,K,N),
     * or (batch,N,K) with LP_TRANS_B, one (K,N)/(N,K) with LP_SHARE_B; bias is (N) or NULL. */
    int (*matmul_forward)(float *out, const float *a, const float *b, const float *bias,
                          int batch, int M, int K, int N, int flags);
    /* da (activation) is overwritten; db and dbias (parameters) accumulate. dout is (batch,M,N).
     * With LP_SHARE_B, db sums over the batch. LP_ACCUM in flags is ignored. */
    int (*matmul_backward)(float *da, float *db, float *dbias, const float *dout, const float *a,
                           const float *b, int batch, int M, int K, int N, int flags);

    /* out, inp are (N,C); bias is (C). out may alias inp. */
    int (*bias_add_forward)(float *out, const float *inp, const float *bias, int N, int C);
    int (*bias_add_backward)(float *dinp, float *dbias, const float *dout, int N, int C);

    /* out, inp are (N,C); weight, bias (C) (bias may be NULL); mean, rstd (N) saved. */
    int (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp,
                             const float *weight, const float *bias, int N, int C, float eps);
    int (*layernorm_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, const float *mean,
                              const float *rstd, int N, int C);
    /* out = inp * rstd * weight (Llama). out, inp (N,C); weight (C); rstd (N) saved. */
    int (*rmsnorm_forward)(float *out, float *rstd, const float *inp, const float *weight, int N,
                           int C, float eps);
    int (*rmsnorm_backward)(float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *weight, const float *rstd, int N, int C);
    /* The same backwards with rstd held at its saved value, a constant (attribution's frozen
     * normalisation: the norm is linear in inp). LayerNorm, xh = (inp - mean) * rstd:
     * dinp = rstd * (dout*weight - mean_c(dout*weight)) (the mean subtraction still
     * differentiated); RMSNorm: dinp = rstd * dout * weight. dweight, dbias accumulate the
     * values the full backwards give. */
    int (*layernorm_backward_frozen)(float *dinp, float *dweight, float *dbias, const float *dout,
                                     const float *inp, const float *weight, const float *mean,
                                     const float *rstd, int N, int C);
    int (*rmsnorm_backward_frozen)(float *dinp, float *dweight, const float *dout, const float *inp,
                                   const float *weight, const float *rstd, int N, int C);

    /* Elementwise activations on n values; out may alias inp, dinp may alias dout. */
    int (*gelu_forward)(float *out, const float *inp, size_t n, int form);
    int (*gelu_backward)(float *dinp, const float *dout, const float *inp, size_t n, int form);
    int (*silu_forward)(float *out, const float *inp, size_t n);
    int (*silu_backward)(float *dinp, const float *dout, const float *inp, size_t n);
    int (*relu_forward)(float *out, const float *inp, size_t n);
    int (*relu_backward)(float *dinp, const float *dout, const float *inp, size_t n);
    /* SwiGLU: out = silu(gate) * up; all n values. dgate or dup may alias dout (the
     * trainer writes dgate over dout). */
    int (*swiglu_forward)(float *out, const float *gate, const float *up, size_t n);
    int (*swiglu_backward)(float *dgate, float *dup, const float *dout, const float *gate,
                           const float *up, size_t n);
    /* TopK SAE activation: out = relu(x) at the k largest entries of each row, 0 elsewhere
     * (ties: the lower index wins). out, inp (N,C). Backward passes dout where out > 0. */
    int (*topk_act_forward)(float *out, const float *inp, int N, int C, int k);
    int (*topk_act_backward)(float *dinp, const float *dout, const float *out, int N, int C);
    /* JumpReLU: out = x where x > threshold[c], else 0. inp, out (N,C); threshold (C).
     * dthreshold (C, accumulates, may be NULL) is the straight-through estimate with a
     * rectangle kernel of width `bandwidth`: -threshold/bandwidth * dout where
     * |x - threshold| < bandwidth/2 (Rajamanoharan et al. 2024). dinp may alias dout. */
    int (*jumprelu_forward)(float *out, const float *inp, const float *threshold, int N, int C);
    int (*jumprelu_backward)(float *dinp, float *dthreshold, const float *dout, const float *inp,
                             const float *threshold, int N, int C, float bandwidth);

    /* Softmax over the last dim. inp, out are (R,T,C): R blocks of T rows of length C. With
     * causal, row t of each block sees columns j <= t + (C - T) (the rest are 0). */
    int (*softmax_forward)(float *out, const float *inp, int R, int T, int C, int causal);
    int (*softmax_backward)(float *dinp, const float *dout, const float *out, int R, int T, int C);

    /* Causal multi-head attention with grouped-query heads (NH % NKV == 0; head h reads kv
     * head h / (NH/NKV)), scale 1/sqrt(HS).
     * q is (B,T,NH,HS); k, v are (B,T,NKV,HS); out is (B,T,NH,HS); att is (B,NH,T,T), the
     * pattern (post-softmax), saved for backward. */
    int (*attention_forward)(float *out, float *att, const float *q, const float *k,
                             const float *v, int B, int T, int NH, int NKV, int HS);
    /* dq, dk, dv overwritten (shapes of q, k, v). */
    int (*attention_backward)(float *dq, float *dk, float *dv, const float *dout, const float *q,
                              const float *k, const float *v, const float *att, int B, int T,
                              int NH, int NKV, int HS);
    /* The backward with the pattern att held constant (attribution's frozen attention: no
     * gradient reaches q and k): dv (B,T,NKV,HS) overwritten = the sum over the query heads
     * that share it of att^T @ dout. */
    int (*attention_backward_frozen)(float *dv, const float *dout, const float *att, int B, int T,
                                     int NH, int NKV, int HS);

    /* Rotary embeddings, NeoX/Llama half rotation on the first rot dims of each head:
     * (x[i], x[i+rot/2]) rotated by angle (pos0+t) * theta^(-2i/rot), i < rot/2.
     * inp, out are (B,T,NH,HS); rot even, <= HS. out may alias inp. */
    int (*rope_forward)(float *out, const float *inp, int B, int T, int NH, int HS, int rot,
                        float theta, int pos0);
    int (*rope_backward)(float *dinp, const float *dout, int B, int T, int NH, int HS, int rot,
                         float theta, int pos0);
    /* Rotary embeddings from precomputed tables (any frequency scaling: lp_rope_inv_freq), in
     * place. x is (N,NH,HS), row n at position n % T; cos, sin are (T,HS/2). Each pair
     * (x[i], x[i+HS/2]) turns by the angle whose cosine and sine the tables hold at
     * (position, i); sign -1 turns it back (the backward). HS even. */
    int (*rope_table)(float *x, const float *cos, const float *sin, int N, int T, int NH, int HS,
                      float sign);

    /* out (N,C) = table[ids[n]]; table is (V,C); ids (N), each in [0,V) else an error. */
    int (*embed_forward)(float *out, const int32_t *ids, const float *table, int N, int C, int V);
    /* dtable (V,C) += scatter of dout (N,C) rows. */
    int (*embed_backward)(float *dtable, const float *dout, const int32_t *ids, int N, int C,
                          int V);

    /* losses (N) = -log softmax(logits)[target]; probs (N,V) saved; logits (N,V); targets (N),
     * a target of -1 is ignored (loss 0, gradient 0), others must be in [0,V). probs may
     * alias logits (the trainer keeps one (N,V) buffer: logits, probabilities, gradient). */
    int (*crossentropy_forward)(float *losses, float *probs, const float *logits,
                                const int32_t *targets, int N, int V);
    /* dlogits (N,V) overwritten = (probs - onehot(target)) * dlosses[n]; may alias probs. */
    int (*crossentropy_backward)(float *dlogits, const float *dlosses, const float *probs,
                                 const int32_t *targets, int N, int V);

    /* One AdamW step on n parameters, t >= 1 (bias correction), decoupled weight decay:
     * p -= lr * (mhat / (sqrt(vhat) + eps) + weight_decay * p). m, v updated in place. */
    int (*adamw_step)(float *params, const float *grads, float *m, float *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, int t);

    /* inp is (outer,n,inner), out (outer,inner): reduce over the middle dim. NORM is the L2
     * norm. n >= 1. */
    int (*reduce_forward)(float *out, const float *inp, int64_t outer, int64_t n, int64_t inner,
                          int op);
    /* idx (outer,inner): position of the max over the middle dim (first one on ties). */
    int (*argmax_forward)(int32_t *idx, const float *inp, int64_t outer, int64_t n,
                          int64_t inner);
    /* inp (R,C) -> vals, idx (R,k): the k largest of each row, descending (ties: lower
     * index first). k <= C. */
    int (*topk_forward)(float *vals, int32_t *idx, const float *inp, int64_t R, int64_t C,
                        int64_t k);
    /* out (R) = cos(a[r], b[r]) = a.b / max(|a||b|, eps); a, b (R,C). */
    int (*cosine_forward)(float *out, const float *a, const float *b, int64_t R, int64_t C,
                          float eps);

    /* out[i] = a[i] op b[i] over `shape` (ndim <= LP_BIN_MAX_DIMS) with per-operand element
     * strides (0 broadcasts); out contiguous. */
    int (*binary_forward)(float *out, const float *a, const float *b, int op, int ndim,
                          const int64_t *shape, const int64_t *sa, const int64_t *sb);
    /* out = a * alpha + beta elementwise (n values): scalar arithmetic. */
    int (*affine_forward)(float *out, const float *a, float alpha, float beta, size_t n);
    /* Gathers a strided view into contiguous out. */
    int (*strided_copy)(float *out, const float *inp, int ndim, const int64_t *shape,
                        const int64_t *strides);
    int (*fill)(float *out, float value, size_t n);
} lp_ops;

/* The fast CPU table and the reference table. Never NULL; static storage. */
const lp_ops *lp_cpu_ops(void);
const lp_ops *lp_ref_ops(void);

#ifdef __cplusplus
}
#endif

#endif
