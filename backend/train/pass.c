/* The trainer's forward and backward passes over one micro-batch (llm.c's
 * gpt2_forward / gpt2_backward): the forward saves what the backward reads (lp_tlayer), the
 * backward is the forward's call list in reverse. Gradients of parameters accumulate (+=);
 * gradients of activations are overwritten, except the residual stream's (dres), which
 * each branch adds into. The function is forward.c's (see train.h).
 *
 * With t->frozen (train.h's LP_FREEZE_*), the backward holds attention patterns and norm
 * scales constant: Llama's q and k are then not differentiated at all, GPT-2's get zero.
 *
 * Per layer:
 *   ln1 = norm1(res); q, k, v = ln1 @ W [+ rotary]; z = attention(q, k, v); mid = res + z @ Wo
 *   ln2 = norm2(mid); res' = mid + mlp(ln2)          (attn_only: res' = mid)
 * The interrupt flag is polled between layers in both directions. */
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "ops/ops.h"
#include "train/train_impl.h"

static int embed_forward(lp_trainer *t, const int32_t *ids)
{
    const lp_model_config *c = &t->m->cfg;
    int D = c->d_model;
    float *x = t->L[0].res;
    if (t->ops->embed_forward(x, ids, t->w.wte, t->N, D, c->d_vocab) < 0)
        return -1;
    if (c->arch == LP_ARCH_GPT2)
        for (int b = 0; b < t->B; b++)
            if (lp_tkd_add(t, x + (size_t)b * t->T * D, t->w.wpe, (size_t)t->T * D) < 0)
                return -1;
    return 0;
}

static int block_forward(lp_trainer *t, int l)
{
    const lp_model_config *c = &t->m->cfg;
    const lp_block *bl = &t->m->blocks[l];
    const lp_gblock *w = &t->w.blocks[l];
    lp_tlayer *a = &t->L[l];
    int N = t->N, D = c->d_model;
    float *next = l + 1 < c->n_layers ? t->L[l + 1].res : t->res_final;
    if (lp_tkd_norm_forward(t, a->ln1, a->ln1_mean, a->ln1_rstd, a->res, w->ln1_w, w->ln1_b) < 0)
        return -1;
    if (c->arch == LP_ARCH_GPT2) {
        if (lp_tkd_linear_forward(t, a->qkv, a->ln1, &w->qkv, &bl->qkv) < 0)
            return -1;
    } else {
        if (lp_tkd_linear_forward(t, a->q, a->ln1, &w->q, &bl->q) < 0 ||
            lp_tkd_linear_forward(t, a->k, a->ln1, &w->k, &bl->k) < 0 ||
            lp_tkd_linear_forward(t, a->v, a->ln1, &w->v, &bl->v) < 0 || lp_tkd_rope(t, a->q, t->H, 1.0f) < 0 ||
            lp_tkd_rope(t, a->k, t->K, 1.0f) < 0)
            return -1;
    }
    if (lp_tkd_attention_forward(t, a) < 0 || lp_tkd_linear_forward(t, a->mid, a->z, &w->o, &bl->o) < 0 ||
        lp_tkd_add(t, a->mid, a->res, (size_t)N * D) < 0)
        return -1;
    if (c->attn_only) /* mid is the next layer's residual (same buffer) */
        return 0;
    if (lp_tkd_norm_forward(t, a->ln2, a->ln2_mean, a->ln2_rstd, a->mid, w->ln2_w, w->ln2_b) < 0)
        return -1;
    size_t nf = (size_t)N * c->d_mlp;
    if (c->arch == LP_ARCH_GPT2) {
        if (lp_tkd_linear_forward(t, a->h, a->ln2, &w->fc, &bl->fc) < 0 || lp_tkd_gelu_forward(t, a->hg, a->h, nf) < 0 ||
            lp_tkd_linear_forward(t, next, a->hg, &w->proj, &bl->proj) < 0)
            return -1;
    } else {
        if (lp_tkd_linear_forward(t, a->gate, a->ln2, &w->gate, &bl->gate) < 0 ||
            lp_tkd_linear_forward(t, a->up, a->ln2, &w->up, &bl->up) < 0 ||
            lp_tkd_swiglu_forward(t, a->act, a->gate, a->up, nf) < 0 ||
            lp_tkd_linear_forward(t, next, a->act, &w->down, &bl->down) < 0)
            return -1;
    }
    return lp_tkd_add(t, next, a->mid, (size_t)N * D);
}

/* On entry t->dres is the gradient of the layer's output; on return, of its input. */
static int block_backward(lp_trainer *t, int l)
{
    const lp_model_config *c = &t->m->cfg;
    const lp_block *bl = &t->m->blocks[l];
    const lp_gblock *g = &t->g.blocks[l], *w = &t->w.blocks[l];
    lp_tlayer *a = &t->L[l];
    int N = t->N, D = c->d_model;
    size_t nf = (size_t)N * c->d_mlp;
    if (!c->attn_only) {
        if (c->arch == LP_ARCH_GPT2) {
            if (lp_tkd_linear_backward(t, t->dh, 0, g->proj.w, g->proj.b, t->dres, a->hg, &w->proj, &bl->proj) < 0 ||
                lp_tkd_gelu_backward(t, t->dh, t->dh, a->h, nf) < 0 ||
                lp_tkd_linear_backward(t, t->dln, 0, g->fc.w, g->fc.b, t->dh, a->ln2, &w->fc, &bl->fc) < 0)
                return -1;
        } else {
            if (lp_tkd_linear_backward(t, t->dh, 0, g->down.w, g->down.b, t->dres, a->act, &w->down, &bl->down) < 0 ||
                lp_tkd_swiglu_backward(t, t->dh, t->dh2, t->dh, a->gate, a->up, nf) < 0 ||
                lp_tkd_linear_backward(t, t->dln, 0, g->gate.w, g->gate.b, t->dh, a->ln2, &w->gate, &bl->gate) < 0 ||
                lp_tkd_linear_backward(t, t->dln, 1, g->up.w, g->up.b, t->dh2, a->ln2, &w->up, &bl->up) < 0)
                return -1;
        }
        if (lp_tkd_norm_backward(t, t->dx, g->ln2_w, g->ln2_b, t->dln, a->mid, w->ln2_w, a->ln2_mean, a->ln2_rstd) < 0 ||
            lp_tkd_add(t, t->dres, t->dx, (size_t)N * D) < 0)
            return -1;
    }
    if (lp_tkd_linear_backward(t, t->dz, 0, g->o.w, g->o.b, t->dres, a->z, &w->o, &bl->o) < 0 ||
        lp_tkd_attention_backward(t, a) < 0)
        return -1;
    if (c->arch == LP_ARCH_GPT2) {
        if (lp_tkd_linear_backward(t, t->dln, 0, g->qkv.w, g->qkv.b, t->dq, a->ln1, &w->qkv, &bl->qkv) < 0)
            return -1;
    } else if (t->frozen & LP_FREEZE_ATTENTION) { /* q and k get no gradient: v alone */
        if (lp_tkd_linear_backward(t, t->dln, 0, g->v.w, g->v.b, t->dv, a->ln1, &w->v, &bl->v) < 0)
            return -1;
    } else {
        if (lp_tkd_rope(t, t->dq, t->H, -1.0f) < 0 || lp_tkd_rope(t, t->dk, t->K, -1.0f) < 0 ||
            lp_tkd_linear_backward(t, t->dln, 0, g->q.w, g->q.b, t->dq, a->ln1, &w->q, &bl->q) < 0 ||
            lp_tkd_linear_backward(t, t->dln, 1, g->k.w, g->k.b, t->dk, a->ln1, &w->k, &bl->k) < 0 ||
            lp_tkd_linear_backward(t, t->dln, 1, g->v.w, g->v.b, t->dv, a->ln1, &w->v, &bl->v) < 0)
            return -1;
    }
    if (lp_tkd_norm_backward(t, t->dx, g->ln1_w, g->ln1_b, t->dln, a->res, w->ln1_w, a->ln1_mean, a->ln1_rstd) < 0)
        return -1;
    return lp_tkd_add(t, t->dres, t->dx, (size_t)N * D);
}

static int embed_backward(lp_trainer *t, const int32_t *ids)
{
    const lp_model_config *c = &t->m->cfg;
    int D = c->d_model;
    if (t->ops->embed_backward(t->g.wte, t->dres, ids, t->N, D, c->d_vocab) < 0)
        return -1;
    if (c->arch == LP_ARCH_GPT2)
        for (int b = 0; b < t->B; b++)
            if (lp_tkd_add(t, t->g.wpe, t->dres + (size_t)b * t->T * D, (size_t)t->T * D) < 0)
                return -1;
    return 0;
}

int lp_train_pass(lp_trainer *t, const int32_t *inputs, const int32_t *targets, float scale, int backward,
                  double *loss_sum, int *n_valid)
{
    const lp_model_config *c = &t->m->cfg;
    int N = t->N;
    int valid = 0;
    for (int i = 0; i < N; i++)
        valid += targets[i] >= 0;
    *n_valid = valid;
    /* the device path reads the tokens from its own memory */
    const int32_t *ids = inputs, *tgts = targets;
    if (t->be) {
        if (t->be->to_device(t->ids, inputs, (size_t)N * sizeof *ids) < 0 ||
            t->be->to_device(t->tgts, targets, (size_t)N * sizeof *tgts) < 0)
            return -1;
        ids = t->ids, tgts = t->tgts;
    }
    /* ---- forward ---- */
    if (embed_forward(t, ids) < 0)
        return -1;
    for (int l = 0; l < c->n_layers; l++)
        if (lp_interrupt_check() < 0 || block_forward(t, l) < 0)
            return -1;
    if (lp_interrupt_check() < 0 ||
        lp_tkd_norm_forward(t, t->lnf, t->lnf_mean, t->lnf_rstd, t->res_final, t->w.lnf_w, t->w.lnf_b) < 0 ||
        lp_tkd_linear_forward(t, t->logits, t->lnf, &t->w.unembed, &t->m->unembed) < 0)
        return -1;
    /* every token's share of the step's loss: mean over valid targets, over accum micro-batches */
    if (lp_tkd_crossentropy(t, tgts, valid ? scale / (float)valid : 0.0f) < 0)
        return -1;
    const float *losses = t->be ? t->losses_h : t->losses;
    double s = 0;
    for (int i = 0; i < N; i++)
        s += losses[i];
    *loss_sum = s;
    if (!backward)
        return 0;
    /* ---- backward ---- */
    t->has_dres = 0;
    if (lp_interrupt_check() < 0 ||
        lp_tkd_linear_backward(t, t->dln, 0, t->g.unembed.w, t->g.unembed.b, t->logits, t->lnf, &t->w.unembed,
                               &t->m->unembed) < 0 ||
        lp_tkd_norm_backward(t, t->dres, t->g.lnf_w, t->g.lnf_b, t->dln, t->res_final, t->w.lnf_w, t->lnf_mean,
                             t->lnf_rstd) < 0)
        return -1;
    for (int l = c->n_layers - 1; l >= 0; l--)
        if (lp_interrupt_check() < 0 || block_backward(t, l) < 0)
            return -1;
    t->has_dres = 1; /* dres: the gradient of the embedding output (lp_trainer_input_grad) */
    return embed_backward(t, ids);
}
