/* The trainer's kernels for either path (train_impl.h): on the CPU path the multi-threaded
 * kernels of kernels.c, on the device path the op table of the trainer's backend (ops/ops.h),
 * whose contracts differ from the CPU kernels' in three places handled here:
 *   - the op table's attention reads contiguous q, k, v: GPT-2's fused c_attn output is
 *     gathered into three blocks (qkv3) and the gradient scattered back by a second gather;
 *   - matmul_backward overwrites dx: an accumulating linear backward goes through t->dx
 *     (free while q, k, v or gate, up are differentiated) and an add;
 *   - cross-entropy is the op pair forward/backward over one buffer (probs alias logits). */
#include "core/error.h"
#include "train/train_impl.h"

int lp_tkd_linear_forward(lp_trainer *t, float *y, const float *x, const lp_glin *w, const lp_linear *l)
{
    return t->ops->matmul_forward(y, x, w->w, w->b, 1, t->N, l->in, l->out, LP_SHARE_B | (l->trans ? LP_TRANS_B : 0));
}

int lp_tkd_linear_backward(lp_trainer *t, float *dx, int accum, float *dw, float *db, const float *dy,
                           const float *x, const lp_glin *w, const lp_linear *l)
{
    if (!t->be) {
        lp_tk_linear_backward(dx, accum, dw, db, dy, x, w->w, l, t->N);
        return 0;
    }
    float *out = accum && dx ? t->dx : dx;
    if (accum && dx && l->in != t->m->cfg.d_model)
        return lp_set_error("trainer: accumulating linear backward of width %d (scratch holds %d)", l->in,
                            t->m->cfg.d_model);
    if (t->ops->matmul_backward(out, dw, db, dy, x, w->w, 1, t->N, l->in, l->out,
                                LP_SHARE_B | (l->trans ? LP_TRANS_B : 0)) < 0)
        return -1;
    return out != dx ? lp_tkd_add(t, dx, out, (size_t)t->N * l->in) : 0;
}

/* (3,N,QD) blocks from (N,3,QD) rows, or back: one strided gather either way. */
static int regroup(lp_trainer *t, float *dst, const float *src, int to_blocks)
{
    int64_t N = t->N, QD = t->QD;
    int64_t shape[3], strides[3];
    if (to_blocks) /* dst[p][n][e] = src[n][p][e] */
        shape[0] = 3, shape[1] = N, shape[2] = QD, strides[0] = QD, strides[1] = 3 * QD, strides[2] = 1;
    else /* dst[n][p][e] = src[p][n][e] */
        shape[0] = N, shape[1] = 3, shape[2] = QD, strides[0] = QD, strides[1] = N * QD, strides[2] = 1;
    return t->ops->strided_copy(dst, src, 3, shape, strides);
}

int lp_tkd_attention_forward(lp_trainer *t, lp_tlayer *a)
{
    if (!t->be)
        return lp_tk_attention_forward(a->z, a->att, a->q, a->k, a->v, t->ldq, t->ldk, t->B, t->T, t->H, t->K, t->S);
    const float *q = a->q, *k = a->k, *v = a->v;
    if (a->qkv) {
        if (regroup(t, t->qkv3, a->qkv, 1) < 0)
            return -1;
        size_t blk = (size_t)t->N * t->QD;
        q = t->qkv3, k = t->qkv3 + blk, v = t->qkv3 + 2 * blk;
    }
    return t->ops->attention_forward(a->z, a->att, q, k, v, t->B, t->T, t->H, t->K, t->S);
}

/* The device path's frozen attention: dv from the op table's frozen backward; GPT-2's dq, dk
 * (blocks of dqkv3) zeroed, Llama's untouched. */
static int attention_backward_frozen(lp_trainer *t, const lp_tlayer *a)
{
    if (!t->ops->attention_backward_frozen)
        return lp_set_error("trainer: this device has no frozen attention backward");
    if (!a->qkv)
        return t->ops->attention_backward_frozen(t->dv, t->dz, a->att, t->B, t->T, t->H, t->K, t->S);
    size_t blk = (size_t)t->N * t->QD;
    if (t->ops->fill(t->dqkv3, 0.0f, 2 * blk) < 0 ||
        t->ops->attention_backward_frozen(t->dqkv3 + 2 * blk, t->dz, a->att, t->B, t->T, t->H, t->K, t->S) < 0)
        return -1;
    return regroup(t, t->dq, t->dqkv3, 0);
}

int lp_tkd_attention_backward(lp_trainer *t, const lp_tlayer *a)
{
    int frozen = t->frozen & LP_FREEZE_ATTENTION;
    if (!t->be)
        return lp_tk_attention_backward(a->qkv || !frozen ? t->dq : NULL, a->qkv || !frozen ? t->dk : NULL, t->dv,
                                        t->dz, a->q, a->k, a->v, a->att, t->ldq, t->ldk, t->B, t->T, t->H, t->K, t->S,
                                        frozen);
    if (frozen)
        return attention_backward_frozen(t, a);
    if (!a->qkv)
        return t->ops->attention_backward(t->dq, t->dk, t->dv, t->dz, a->q, a->k, a->v, a->att, t->B, t->T, t->H,
                                          t->K, t->S);
    size_t blk = (size_t)t->N * t->QD;
    if (regroup(t, t->qkv3, a->qkv, 1) < 0 ||
        t->ops->attention_backward(t->dqkv3, t->dqkv3 + blk, t->dqkv3 + 2 * blk, t->dz, t->qkv3, t->qkv3 + blk,
                                   t->qkv3 + 2 * blk, a->att, t->B, t->T, t->H, t->K, t->S) < 0)
        return -1;
    return regroup(t, t->dq, t->dqkv3, 0);
}

int lp_tkd_rope(lp_trainer *t, float *x, int nh, float sign)
{
    if (!t->be) {
        lp_tk_rope(x, t->N, t->T, nh, t->S, t->rope_cos, t->rope_sin, sign);
        return 0;
    }
    return t->ops->rope_table(x, t->rope_cos, t->rope_sin, t->N, t->T, nh, t->S, sign);
}

int lp_tkd_add(lp_trainer *t, float *y, const float *x, size_t n)
{
    if (!t->be) {
        lp_tk_add(y, x, n);
        return 0;
    }
    int64_t shape[1] = {(int64_t)n}, one[1] = {1};
    return t->ops->binary_forward(y, y, x, LP_BIN_ADD, 1, shape, one, one);
}

int lp_tkd_norm_forward(lp_trainer *t, float *out, float *mean, float *rstd, const float *inp, const float *w,
                        const float *b)
{
    const lp_model_config *c = &t->m->cfg;
    if (c->arch == LP_ARCH_GPT2)
        return t->be ? t->ops->layernorm_forward(out, mean, rstd, inp, w, b, t->N, c->d_model, c->eps)
                     : lp_tk_layernorm_forward(out, mean, rstd, inp, w, b, t->N, c->d_model, c->eps);
    return t->be ? t->ops->rmsnorm_forward(out, rstd, inp, w, t->N, c->d_model, c->eps)
                 : lp_tk_rmsnorm_forward(out, rstd, inp, w, t->N, c->d_model, c->eps);
}

/* dx = norm backward of dout (overwritten); dw, db accumulate. The same op on both paths; with
 * LP_FREEZE_NORM the scale rstd is a constant. */
int lp_tkd_norm_backward(lp_trainer *t, float *dx, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, const float *mean, const float *rstd)
{
    int D = t->m->cfg.d_model, frozen = t->frozen & LP_FREEZE_NORM, ln = t->m->cfg.arch == LP_ARCH_GPT2;
    if (frozen && (ln ? !t->ops->layernorm_backward_frozen : !t->ops->rmsnorm_backward_frozen))
        return lp_set_error("trainer: this device has no frozen norm backward");
    if (ln)
        return (frozen ? t->ops->layernorm_backward_frozen : t->ops->layernorm_backward)(dx, dw, db, dout, inp, w,
                                                                                         mean, rstd, t->N, D);
    return (frozen ? t->ops->rmsnorm_backward_frozen : t->ops->rmsnorm_backward)(dx, dw, dout, inp, w, rstd, t->N, D);
}

int lp_tkd_gelu_forward(lp_trainer *t, float *out, const float *inp, size_t n)
{
    int form = t->m->cfg.act;
    return t->be ? t->ops->gelu_forward(out, inp, n, form) : lp_tk_gelu_forward(out, inp, n, form);
}

int lp_tkd_gelu_backward(lp_trainer *t, float *dinp, const float *dout, const float *inp, size_t n)
{
    int form = t->m->cfg.act;
    return t->be ? t->ops->gelu_backward(dinp, dout, inp, n, form) : lp_tk_gelu_backward(dinp, dout, inp, n, form);
}

int lp_tkd_swiglu_forward(lp_trainer *t, float *out, const float *gate, const float *up, size_t n)
{
    return t->be ? t->ops->swiglu_forward(out, gate, up, n) : lp_tk_swiglu_forward(out, gate, up, n);
}

int lp_tkd_swiglu_backward(lp_trainer *t, float *dgate, float *dup, const float *dout, const float *gate,
                           const float *up, size_t n)
{
    return t->be ? t->ops->swiglu_backward(dgate, dup, dout, gate, up, n)
                 : lp_tk_swiglu_backward(dgate, dup, dout, gate, up, n);
}

int lp_tkd_crossentropy(lp_trainer *t, const int32_t *targets, float scale)
{
    int N = t->N, V = t->m->cfg.d_vocab;
    if (!t->be) {
        lp_tk_crossentropy(t->logits, t->losses, targets, N, V, scale);
        return 0;
    }
    if (t->ops->crossentropy_forward(t->losses, t->logits, t->logits, targets, N, V) < 0 ||
        t->ops->fill(t->dloss, scale, (size_t)N) < 0 ||
        t->ops->crossentropy_backward(t->logits, t->dloss, t->logits, targets, N, V) < 0)
        return -1;
    return t->be->to_host(t->losses_h, t->losses, (size_t)N * sizeof(float));
}
