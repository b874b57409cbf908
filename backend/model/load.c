/* Building an lp_model from a folder: config.json, then every tensor by its Hugging Face
 * name with its expected shape. One f32 copy of each weight; the files are unmapped before
 * returning. GPT-2 keys may carry the "transformer." prefix; its attn.bias / masked_bias
 * buffers are never read. An attention-only GPT-2 (cfg.attn_only) reads no ln_2 or MLP
 * tensors, even when the file has them (loupe's checkpoints carry zero placeholders for
 * transformers): ln2_w / ln2_b stay NULL and fc / proj zeroed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model.h"
#include "model/weights.h"
#include "rng.h"

typedef struct {
    lp_model *m;
    lp_weights *w;
    const char *prefix; /* "transformer." / "model." / "" */
} loader;

static lp_tensor *get(loader *ld, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static lp_tensor *get(loader *ld, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
{
    char name[256];
    int n = snprintf(name, sizeof name, "%s", ld->prefix);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name + n, sizeof name - (size_t)n, fmt, ap);
    va_end(ap);
    int64_t shape[2] = {d0, d1};
    lp_tensor *t = lp_weights_get(ld->w, name, ndim, shape, LP_DEVICE_CPU);
    if (t)
        ld->m->param_bytes += (size_t)lp_tensor_numel(t) * sizeof(float);
    return t;
}

/* A Linear (out,in) (trans) or Conv1D (in,out) weight with an optional bias. */
static int linear(loader *ld, lp_linear *l, int in, int out, int trans, int bias, const char *base)
{
    l->in = in, l->out = out, l->trans = trans;
    l->w = trans ? get(ld, 2, out, in, "%s.weight", base) : get(ld, 2, in, out, "%s.weight", base);
    if (!l->w)
        return -1;
    if (bias && !(l->b = get(ld, 1, out, 0, "%s.bias", base)))
        return -1;
    return 0;
}

static int load_gpt2(loader *ld)
{
    lp_model *m = ld->m;
    const lp_model_config *c = &m->cfg;
    int D = c->d_model, F = c->d_mlp;
    ld->prefix = lp_weights_find(ld->w, "transformer.wte.weight", NULL) ? "transformer." : "";
    if (!(m->wte = get(ld, 2, c->d_vocab, D, "wte.weight")) || !(m->wpe = get(ld, 2, c->n_ctx, D, "wpe.weight")) ||
        !(m->lnf_w = get(ld, 1, D, 0, "ln_f.weight")) || !(m->lnf_b = get(ld, 1, D, 0, "ln_f.bias")))
        return -1;
    for (int L = 0; L < c->n_layers; L++) {
        lp_block *b = &m->blocks[L];
        char base[64];
        if (!(b->ln1_w = get(ld, 1, D, 0, "h.%d.ln_1.weight", L)) || !(b->ln1_b = get(ld, 1, D, 0, "h.%d.ln_1.bias", L)))
            return -1;
        if (!c->attn_only && (!(b->ln2_w = get(ld, 1, D, 0, "h.%d.ln_2.weight", L)) ||
                              !(b->ln2_b = get(ld, 1, D, 0, "h.%d.ln_2.bias", L))))
            return -1;
#define LIN(field, in, out, fmt)                              \
        snprintf(base, sizeof base, fmt, L);                  \
        if (linear(ld, &b->field, in, out, 0, 1, base) < 0)   \
            return -1;
        LIN(qkv, D, 3 * D, "h.%d.attn.c_attn")
        LIN(o, D, D, "h.%d.attn.c_proj")
        if (c->attn_only)
            continue;
        LIN(fc, D, F, "h.%d.mlp.c_fc")
        LIN(proj, F, D, "h.%d.mlp.c_proj")
#undef LIN
    }
    return 0;
}

static int load_llama(loader *ld)
{
    lp_model *m = ld->m;
    const lp_model_config *c = &m->cfg;
    int D = c->d_model, F = c->d_mlp, HS = c->d_head, H = c->n_heads, K = c->n_kv_heads;
    ld->prefix = lp_weights_find(ld->w, "model.embed_tokens.weight", NULL) ? "model." : "";
    if (!(m->wte = get(ld, 2, c->d_vocab, D, "embed_tokens.weight")) || !(m->lnf_w = get(ld, 1, D, 0, "norm.weight")))
        return -1;
    for (int L = 0; L < c->n_layers; L++) {
        lp_block *b = &m->blocks[L];
        char base[80];
        if (!(b->ln1_w = get(ld, 1, D, 0, "layers.%d.input_layernorm.weight", L)) ||
            !(b->ln2_w = get(ld, 1, D, 0, "layers.%d.post_attention_layernorm.weight", L)))
            return -1;
#define LIN(field, in, out, bias, fmt)                        \
        snprintf(base, sizeof base, fmt, L);                  \
        if (linear(ld, &b->field, in, out, 1, bias, base) < 0) \
            return -1;
        LIN(q, D, H * HS, c->attn_bias, "layers.%d.self_attn.q_proj")
        LIN(k, D, K * HS, c->attn_bias, "layers.%d.self_attn.k_proj")
        LIN(v, D, K * HS, c->attn_bias, "layers.%d.self_attn.v_proj")
        LIN(o, H * HS, D, c->attn_bias, "layers.%d.self_attn.o_proj")
        LIN(gate, D, F, c->mlp_bias, "layers.%d.mlp.gate_proj")
        LIN(up, D, F, c->mlp_bias, "layers.%d.mlp.up_proj")
        LIN(down, F, D, c->mlp_bias, "layers.%d.mlp.down_proj")
#undef LIN
    }
    if (!c->tied) {
        ld->prefix = "";
        if (linear(ld, &m->unembed, D, c->d_vocab, 1, 0, "lm_head") < 0)
            return -1;
    }
    return 0;
}

lp_model *lp_model_load(const char *folder)
{
    lp_model *m = lp_calloc(1, sizeof *m, "a model");
    if (!m || !(m->folder = lp_strdup(folder, "a model"))) {
        free(m);
        lp_set_error_code(LP_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (lp_model_config_load(folder, &m->cfg) < 0)
        goto fail;
    m->blocks = lp_calloc((size_t)m->cfg.n_layers, sizeof *m->blocks, "a model");
    if (!m->blocks) {
        lp_set_error_code(LP_ERR_NOMEM, "cannot allocate %d layers", m->cfg.n_layers);
        goto fail;
    }
    loader ld = {.m = m, .w = lp_weights_open(folder)};
    if (!ld.w)
        goto fail;
    int rc = m->cfg.arch == LP_ARCH_GPT2 ? load_gpt2(&ld) : load_llama(&ld);
    lp_weights_close(ld.w);
    if (rc < 0)
        goto fail;
    if (m->cfg.tied) { /* the unembedding is the embedding: a second header, no copy */
        m->unembed.w = lp_tensor_alias(m->wte);
        if (!m->unembed.w)
            goto fail;
        m->unembed.trans = 1, m->unembed.in = m->cfg.d_model, m->unembed.out = m->cfg.d_vocab;
    }
    return m;
fail:
    lp_model_free(m);
    return NULL;
}

/* ---- random weights (benchmarks, tests) ---- */

static lp_tensor *rnd(lp_model *m, lp_rng *g, int ndim, int64_t d0, int64_t d1, float std, float mean)
{
    int64_t shape[2] = {d0, d1};
    lp_tensor *t = lp_tensor_empty_for("random weights", ndim, shape, LP_DEVICE_CPU);
    if (!t)
        return NULL;
    int64_t n = lp_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        t->data[i] = mean + (std > 0 ? std * (float)lp_rng_normal(g) : 0.0f);
    m->param_bytes += (size_t)n * sizeof(float);
    return t;
}

static int rnd_linear(lp_model *m, lp_rng *g, lp_linear *l, int in, int out, int trans, int bias)
{
    l->in = in, l->out = out, l->trans = trans;
    l->w = trans ? rnd(m, g, 2, out, in, 0.02f, 0) : rnd(m, g, 2, in, out, 0.02f, 0);
    if (!l->w || (bias && !(l->b = rnd(m, g, 1, out, 0, 0, 0))))
        return -1;
    return 0;
}

lp_model *lp_model_random(const lp_model_config *cfg, uint64_t seed)
{
    if (cfg->attn_only && cfg->arch != LP_ARCH_GPT2) {
        lp_set_error("attention-only models are GPT-2 family only (this config is %s)", lp_arch_name(cfg->arch));
        return NULL;
    }
    lp_model *m = lp_calloc(1, sizeof *m, "a model");
    if (!m || !(m->folder = lp_strdup("(random)", "a model")) ||
        !(m->blocks = lp_calloc((size_t)cfg->n_layers, sizeof *m->blocks, "a model"))) {
        lp_model_free(m);
        lp_set_error_code(LP_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    lp_rng g;
    lp_rng_seed(&g, seed);
    int D = cfg->d_model, F = cfg->d_mlp, HS = cfg->d_head, gpt2 = cfg->arch == LP_ARCH_GPT2;
    if (!(m->wte = rnd(m, &g, 2, cfg->d_vocab, D, 0.02f, 0)) || !(m->lnf_w = rnd(m, &g, 1, D, 0, 0, 1)) ||
        (gpt2 && (!(m->wpe = rnd(m, &g, 2, cfg->n_ctx, D, 0.01f, 0)) || !(m->lnf_b = rnd(m, &g, 1, D, 0, 0, 0)))))
        goto fail;
    for (int L = 0; L < cfg->n_layers; L++) {
        lp_block *b = &m->blocks[L];
        int mlp = !(gpt2 && cfg->attn_only);
        if (!(b->ln1_w = rnd(m, &g, 1, D, 0, 0, 1)) || (mlp && !(b->ln2_w = rnd(m, &g, 1, D, 0, 0, 1))))
            goto fail;
        if (gpt2) {
            if (!(b->ln1_b = rnd(m, &g, 1, D, 0, 0, 0)) || (mlp && !(b->ln2_b = rnd(m, &g, 1, D, 0, 0, 0))) ||
                rnd_linear(m, &g, &b->qkv, D, 3 * D, 0, 1) < 0 || rnd_linear(m, &g, &b->o, D, D, 0, 1) < 0 ||
                (mlp && (rnd_linear(m, &g, &b->fc, D, F, 0, 1) < 0 || rnd_linear(m, &g, &b->proj, F, D, 0, 1) < 0)))
                goto fail;
        } else {
            int H = cfg->n_heads, K = cfg->n_kv_heads, ab = cfg->attn_bias, mb = cfg->mlp_bias;
            if (rnd_linear(m, &g, &b->q, D, H * HS, 1, ab) < 0 || rnd_linear(m, &g, &b->k, D, K * HS, 1, ab) < 0 ||
                rnd_linear(m, &g, &b->v, D, K * HS, 1, ab) < 0 || rnd_linear(m, &g, &b->o, H * HS, D, 1, ab) < 0 ||
                rnd_linear(m, &g, &b->gate, D, F, 1, mb) < 0 || rnd_linear(m, &g, &b->up, D, F, 1, mb) < 0 ||
                rnd_linear(m, &g, &b->down, F, D, 1, mb) < 0)
                goto fail;
        }
    }
    if (cfg->tied || gpt2) {
        if (!(m->unembed.w = lp_tensor_alias(m->wte)))
            goto fail;
        m->unembed.trans = 1, m->unembed.in = D, m->unembed.out = cfg->d_vocab;
    } else if (rnd_linear(m, &g, &m->unembed, D, cfg->d_vocab, 1, 0) < 0) {
        goto fail;
    }
    return m;
fail:
    lp_model_free(m);
    return NULL;
}

static void free_linear(lp_linear *l)
{
    lp_tensor_free(l->w);
    lp_tensor_free(l->b);
}

void lp_model_free(lp_model *m)
{
    if (!m)
        return;
    for (int L = 0; m->blocks && L < m->cfg.n_layers; L++) {
        lp_block *b = &m->blocks[L];
        lp_tensor_free(b->ln1_w), lp_tensor_free(b->ln1_b), lp_tensor_free(b->ln2_w), lp_tensor_free(b->ln2_b);
        lp_linear *ls[] = {&b->qkv, &b->q, &b->k, &b->v, &b->o, &b->fc, &b->proj, &b->gate, &b->up, &b->down};
        for (size_t i = 0; i < sizeof ls / sizeof *ls; i++)
            free_linear(ls[i]);
    }
    free(m->blocks);
    lp_tensor_free(m->wte), lp_tensor_free(m->wpe), lp_tensor_free(m->lnf_w), lp_tensor_free(m->lnf_b);
    free_linear(&m->unembed);
    free(m->folder);
    free(m);
}

double lp_model_flops(const lp_model *m, int B, int T)
{
    const lp_model_config *c = &m->cfg;
    double N = (double)B * T, D = c->d_model, HS = c->d_head;
    double qkv = D * (c->n_heads + 2.0 * c->n_kv_heads) * HS, o = c->n_heads * HS * D;
    double mlp = c->attn_only ? 0.0 : (c->arch == LP_ARCH_GPT2 ? 2.0 : 3.0) * D * c->d_mlp;
    double attn = 2.0 * c->n_heads * (double)T * HS; /* q.k and pattern.v per token, full T x T */
    double per_tok = 2.0 * (qkv + o + mlp) + 2.0 * attn;
    return N * (c->n_layers * per_tok + 2.0 * D * c->d_vocab);
}
