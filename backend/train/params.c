/* The parameters of a model by their Hugging Face names, in state-dict order: what the
 * trainer's flat buffers are laid out by, and what checkpoints are written with. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "train/train_impl.h"

typedef struct {
    lp_tparam *out; /* every entry, or */
    size_t want;    /* only this one, into *out (SIZE_MAX: none) */
    size_t n;
} lister;

static void add(lister *ls, lp_tensor *w, float **slot, float **wslot, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void add(lister *ls, lp_tensor *w, float **slot, float **wslot, const char *fmt, ...)
{
    if (!w)
        return;
    if (ls->out && (ls->want == SIZE_MAX || ls->want == ls->n)) {
        lp_tparam *p = ls->want == SIZE_MAX ? &ls->out[ls->n] : ls->out;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->name, sizeof p->name, fmt, ap);
        va_end(ap);
        p->w = w;
        p->slot = slot;
        p->wslot = wslot;
        p->n = (size_t)lp_tensor_numel(w);
        p->decay = w->ndim == 2;
    }
    ls->n++;
}

static int tied(const lp_model *m) { return m->unembed.w && m->wte && m->unembed.w->data == m->wte->data; }

/* A linear's weight and bias, named base.weight / base.bias. */
#define LIN(field, base)                                                                  \
    do {                                                                                  \
        add(&ls, bl->field.w, g ? &gb->field.w : NULL, wv ? &wb->field.w : NULL, "%s" base ".weight", pre);        \
        add(&ls, bl->field.b, g ? &gb->field.b : NULL, wv ? &wb->field.b : NULL, "%s" base ".bias", pre);          \
    } while (0)

static size_t list(const lp_model *m, lp_tparam *out, size_t want, lp_grads *g, lp_grads *wv)
{
    const lp_model_config *c = &m->cfg;
    lister ls = {out, want, 0};
    char pre[48];
    int gpt2 = c->arch == LP_ARCH_GPT2;
    if (gpt2) {
        add(&ls, m->wte, g ? &g->wte : NULL, wv ? &wv->wte : NULL, "wte.weight");
        add(&ls, m->wpe, g ? &g->wpe : NULL, wv ? &wv->wpe : NULL, "wpe.weight");
    } else {
        add(&ls, m->wte, g ? &g->wte : NULL, wv ? &wv->wte : NULL, "model.embed_tokens.weight");
    }
    for (int L = 0; L < c->n_layers; L++) {
        const lp_block *bl = &m->blocks[L];
        lp_gblock *gb = g ? &g->blocks[L] : NULL, *wb = wv ? &wv->blocks[L] : NULL;
        if (gpt2) {
            snprintf(pre, sizeof pre, "h.%d.", L);
            add(&ls, bl->ln1_w, g ? &gb->ln1_w : NULL, wv ? &wb->ln1_w : NULL, "%sln_1.weight", pre);
            add(&ls, bl->ln1_b, g ? &gb->ln1_b : NULL, wv ? &wb->ln1_b : NULL, "%sln_1.bias", pre);
            LIN(qkv, "attn.c_attn");
            LIN(o, "attn.c_proj");
            if (!c->attn_only) {
                add(&ls, bl->ln2_w, g ? &gb->ln2_w : NULL, wv ? &wb->ln2_w : NULL, "%sln_2.weight", pre);
                add(&ls, bl->ln2_b, g ? &gb->ln2_b : NULL, wv ? &wb->ln2_b : NULL, "%sln_2.bias", pre);
                LIN(fc, "mlp.c_fc");
                LIN(proj, "mlp.c_proj");
            }
        } else {
            snprintf(pre, sizeof pre, "model.layers.%d.", L);
            LIN(q, "self_attn.q_proj");
            LIN(k, "self_attn.k_proj");
            LIN(v, "self_attn.v_proj");
            LIN(o, "self_attn.o_proj");
            LIN(gate, "mlp.gate_proj");
            LIN(up, "mlp.up_proj");
            LIN(down, "mlp.down_proj");
            add(&ls, bl->ln1_w, g ? &gb->ln1_w : NULL, wv ? &wb->ln1_w : NULL, "%sinput_layernorm.weight", pre);
            add(&ls, bl->ln2_w, g ? &gb->ln2_w : NULL, wv ? &wb->ln2_w : NULL, "%spost_attention_layernorm.weight", pre);
        }
    }
    if (gpt2) {
        add(&ls, m->lnf_w, g ? &g->lnf_w : NULL, wv ? &wv->lnf_w : NULL, "ln_f.weight");
        add(&ls, m->lnf_b, g ? &g->lnf_b : NULL, wv ? &wv->lnf_b : NULL, "ln_f.bias");
    } else {
        add(&ls, m->lnf_w, g ? &g->lnf_w : NULL, wv ? &wv->lnf_w : NULL, "model.norm.weight");
    }
    if (!tied(m)) {
        add(&ls, m->unembed.w, g ? &g->unembed.w : NULL, wv ? &wv->unembed.w : NULL, "lm_head.weight");
        add(&ls, m->unembed.b, g ? &g->unembed.b : NULL, wv ? &wv->unembed.b : NULL, "lm_head.bias");
    }
    return ls.n;
}

#undef LIN

size_t lp_train_params(const lp_model *m, lp_tparam *out, lp_grads *g, lp_grads *w)
{
    return list(m, out, SIZE_MAX, g, w);
}

size_t lp_model_param_count(const lp_model *m) { return list(m, NULL, SIZE_MAX, NULL, NULL); }

int lp_model_param(const lp_model *m, size_t i, char *buf, size_t cap, lp_tensor **w)
{
    lp_tparam one = {0};
    if (i == SIZE_MAX || i >= list(m, &one, i, NULL, NULL))
        return -1;
    if (buf && cap)
        snprintf(buf, cap, "%s", one.name);
    if (w)
        *w = one.w;
    return 0;
}
