/* The trainer's forward and backward passes over one micro-batch (llm.c's
 * gpt2_forward / gpt2_backward): the forward saves what the backward reads (lp_tlayer), the
 * backward is the forward's call list in reverse. Gradients of parameters accumulate (+=);
 * gradients of activations are overwritten, except the residual stream's (dres), which
 * each branch adds into. The function is forward.c's (see train.h).
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

static int norm_forward(const lp_trainer *t, float *out, float *mean, float *rstd, const float *inp,
                        const lp_tensor *w, const lp_tensor *b)
{
    const lp_model_config *c = &t->m->cfg;
    if (c->arch == LP_ARCH_GPT2)
        return lp_tk_layernorm_forward(out, mean, rstd, inp, w->data, b ? b->data : NULL, t->N, c->d_model, c->eps);
    return lp_tk_rmsnorm_forward(out, rstd, inp, w->data, t->N, c->d_model, c->eps);
}

/* dx = norm backward of dout (overwritten); dw, db accumulate. */
static int norm_backward(const lp_trainer *t, float *dx, float *dw, float *db, const float *dout, const float *inp,
                         const lp_tensor *w, const float *mean, const float *rstd)
{
    const lp_ops *ops = lp_cpu_ops();
    int D = t->m->cfg.d_model;
    if (t->m->cfg.arch == LP_ARCH_GPT2)
        return ops->layernorm_backward(dx, dw, db, dout, inp, w->data, mean, rstd, t->N, D);
    return ops->rmsnorm_backward(dx, dw, dout, inp, w->data, rstd, t->N, D);
}

static int embed_forward(lp_trainer *t, const int32_t *inputs)
{
    const lp_model *m = t->m;
    int D = m->cfg.d_model;
    float *x = t->L[0].res;
    if (lp_cpu_ops()->embed_forward(x, inputs, m->wte->data, t->N, D, m->cfg.d_vocab) < 0)
        return -1;
    if (m->cfg.arch == LP_ARCH_GPT2)
        for (int b = 0; b < t->B; b++)
            lp_tk_add(x + (size_t)b * t->T * D, m->wpe->data, (size_t)t->T * D);
    return 0;
}

static int block_forward(lp_trainer *t, int l)
{
    const lp_model *m = t->m;
    const lp_model_config *c = &m->cfg;
    const lp_block *bl = &m->blocks[l];
    lp_tlayer *a = &t->L[l];
    int N = t->N, D = c->d_model;
    float *next = l + 1 < c->n_layers ? t->L[l + 1].res : t->res_final;
    if (norm_forward(t, a->ln1, a->ln1_mean, a->ln1_rstd, a->res, bl->ln1_w, bl->ln1_b) < 0)
        return -1;
    if (c->arch == LP_ARCH_GPT2) {
        if (lp_tk_linear_forward(a->qkv, a->ln1, &bl->qkv, N) < 0)
            return -1;
    } else {
        if (lp_tk_linear_forward(a->q, a->ln1, &bl->q, N) < 0 || lp_tk_linear_forward(a->k, a->ln1, &bl->k, N) < 0 ||
            lp_tk_linear_forward(a->v, a->ln1, &bl->v, N) < 0)
            return -1;
        lp_tk_rope(a->q, t->ldq, N, t->T, t->H, t->S, t->rope_cos, t->rope_sin, 1.0f);
        lp_tk_rope(a->k, t->ldk, N, t->T, t->K, t->S, t->rope_cos, t->rope_sin, 1.0f);
    }
    if (lp_tk_attention_forward(a->z, a->att, a->q, a->k, a->v, t->ldq, t->ldk, t->B, t->T, t->H, t->K, t->S) < 0 ||
        lp_tk_linear_forward(a->mid, a->z, &bl->o, N) < 0)
        return -1;
    lp_tk_add(a->mid, a->res, (size_t)N * D);
    if (c->attn_only) /* mid is the next layer's residual (same buffer) */
        return 0;
    if (norm_forward(t, a->ln2, a->ln2_mean, a->ln2_rstd, a->mid, bl->ln2_w, bl->ln2_b) < 0)
        return -1;
    size_t nf = (size_t)N * c->d_mlp;
    if (c->arch == LP_ARCH_GPT2) {
        if (lp_tk_linear_forward(a->h, a->ln2, &bl->fc, N) < 0 || lp_tk_gelu_forward(a->hg, a->h, nf, c->act) < 0 ||
            lp_tk_linear_forward(next, a->hg, &bl->proj, N) < 0)
            return -1;
    } else {
        if (lp_tk_linear_forward(a->gate, a->ln2, &bl->gate, N) < 0 ||
            lp_tk_linear_forward(a->up, a->ln2, &bl->up, N) < 0 ||
            lp_tk_swiglu_forward(a->act, a->gate, a->up, nf) < 0 ||
            lp_tk_linear_forward(next, a->act, &bl->down, N) < 0)
            return -1;
    }
    lp_tk_add(next, a->mid, (size_t)N * D);
    return 0;
}

/* On entry t->dres is the gradient of the layer's output; on return, of its input. */
static int block_backward(lp_trainer *t, int l)
{
    const lp_model *m = t->m;
    const lp_model_config *c = &m->cfg;
    const lp_block *bl = &m->blocks[l];
    const lp_gblock *g = &t->g.blocks[l];
    lp_tlayer *a = &t->L[l];
    int N = t->N, D = c->d_model;
    size_t nf = (size_t)N * c->d_mlp;
    if (!c->attn_only) {
        if (c->arch == LP_ARCH_GPT2) {
            lp_tk_linear_backward(t->dh, 0, g->proj.w, g->proj.b, t->dres, a->hg, &bl->proj, N);
            if (lp_tk_gelu_backward(t->dh, t->dh, a->h, nf, c->act) < 0)
                return -1;
            lp_tk_linear_backward(t->dln, 0, g->fc.w, g->fc.b, t->dh, a->ln2, &bl->fc, N);
        } else {
            lp_tk_linear_backward(t->dh, 0, g->down.w, g->down.b, t->dres, a->act, &bl->down, N);
            if (lp_tk_swiglu_backward(t->dh, t->dh2, t->dh, a->gate, a->up, nf) < 0)
                return -1;
            lp_tk_linear_backward(t->dln, 0, g->gate.w, g->gate.b, t->dh, a->ln2, &bl->gate, N);
            lp_tk_linear_backward(t->dln, 1, g->up.w, g->up.b, t->dh2, a->ln2, &bl->up, N);
        }
        if (norm_backward(t, t->dx, g->ln2_w, g->ln2_b, t->dln, a->mid, bl->ln2_w, a->ln2_mean, a->ln2_rstd) < 0)
            return -1;
        lp_tk_add(t->dres, t->dx, (size_t)N * D);
    }
    lp_tk_linear_backward(t->dz, 0, g->o.w, g->o.b, t->dres, a->z, &bl->o, N);
    if (lp_tk_attention_backward(t->dq, t->dk, t->dv, t->dz, a->q, a->k, a->v, a->att, t->ldq, t->ldk, t->B, t->T,
                                 t->H, t->K, t->S) < 0)
        return -1;
    if (c->arch == LP_ARCH_GPT2) {
        lp_tk_linear_backward(t->dln, 0, g->qkv.w, g->qkv.b, t->dq, a->ln1, &bl->qkv, N);
    } else {
        lp_tk_rope(t->dq, t->ldq, N, t->T, t->H, t->S, t->rope_cos, t->rope_sin, -1.0f);
        lp_tk_rope(t->dk, t->ldk, N, t->T, t->K, t->S, t->rope_cos, t->rope_sin, -1.0f);
        lp_tk_linear_backward(t->dln, 0, g->q.w, g->q.b, t->dq, a->ln1, &bl->q, N);
        lp_tk_linear_backward(t->dln, 1, g->k.w, g->k.b, t->dk, a->ln1, &bl->k, N);
        lp_tk_linear_backward(t->dln, 1, g->v.w, g->v.b, t->dv, a->ln1, &bl->v, N);
    }
    if (norm_backward(t, t->dx, g->ln1_w, g->ln1_b, t->dln, a->res, bl->ln1_w, a->ln1_mean, a->ln1_rstd) < 0)
        return -1;
    lp_tk_add(t->dres, t->dx, (size_t)N * D);
    return 0;
}

static int embed_backward(lp_trainer *t, const int32_t *inputs)
{
    const lp_model *m = t->m;
    int D = m->cfg.d_model;
    if (lp_cpu_ops()->embed_backward(t->g.wte, t->dres, inputs, t->N, D, m->cfg.d_vocab) < 0)
        return -1;
    if (m->cfg.arch == LP_ARCH_GPT2)
        for (int b = 0; b < t->B; b++)
            lp_tk_add(t->g.wpe, t->dres + (size_t)b * t->T * D, (size_t)t->T * D);
    return 0;
}

int lp_train_pass(lp_trainer *t, const int32_t *inputs, const int32_t *targets, float scale, int backward,
                  double *loss_sum, int *n_valid)
{
    const lp_model *m = t->m;
    const lp_model_config *c = &m->cfg;
    int N = t->N, V = c->d_vocab;
    int valid = 0;
    for (int i = 0; i < N; i++)
        valid += targets[i] >= 0;
    *n_valid = valid;
    /* ---- forward ---- */
    if (embed_forward(t, inputs) < 0)
        return -1;
    for (int l = 0; l < c->n_layers; l++)
        if (lp_interrupt_check() < 0 || block_forward(t, l) < 0)
            return -1;
    if (lp_interrupt_check() < 0 ||
        norm_forward(t, t->lnf, t->lnf_mean, t->lnf_rstd, t->res_final, m->lnf_w, m->lnf_b) < 0 ||
        lp_tk_linear_forward(t->logits, t->lnf, &m->unembed, N) < 0)
        return -1;
    /* every token's share of the step's loss: mean over valid targets, over accum micro-batches */
    float g = valid ? scale / (float)valid : 0.0f;
    lp_tk_crossentropy(t->logits, t->losses, targets, N, V, g);
    double s = 0;
    for (int i = 0; i < N; i++)
        s += t->losses[i];
    *loss_sum = s;
    if (!backward)
        return 0;
    /* ---- backward ---- */
    if (lp_interrupt_check() < 0)
        return -1;
    lp_tk_linear_backward(t->dln, 0, t->g.unembed.w, t->g.unembed.b, t->logits, t->lnf, &m->unembed, N);
    if (norm_backward(t, t->dres, t->g.lnf_w, t->g.lnf_b, t->dln, t->res_final, m->lnf_w, t->lnf_mean,
                      t->lnf_rstd) < 0)
        return -1;
    for (int l = c->n_layers - 1; l >= 0; l--)
        if (lp_interrupt_check() < 0 || block_backward(t, l) < 0)
            return -1;
    return embed_backward(t, inputs);
}
