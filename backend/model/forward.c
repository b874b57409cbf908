/* The forward pass of GPT-2 and Llama-family models with hook points (see model.h), on the
 * CPU op table, in full (lp_model_run) or for new positions after those held by a key/value
 * cache (lp_model_run_cached). Every hook point is a tensor of its own, made once and never
 * written after its hooks ran, so that a cache can keep a reference instead of a copy; hook
 * points that nothing sees (no hook, not cached) may be skipped or fused into the next stage
 * (q, k, v read in place from the projection; norms and softmax in one pass).
 *
 * Layer by layer (TransformerLens' order):
 *   resid_pre -> ln1 (scale, normalized) -> q, k, v [-> rot_q, rot_k] -> attn_scores
 *   -> pattern -> z -> attn_out ; resid_mid = resid_pre + attn_out
 *   -> ln2 -> mlp in -> pre [pre_linear] -> post -> mlp out -> mlp_out ;
 *   resid_post = resid_mid + mlp_out
 * Attention-only models (cfg.attn_only): resid_post = resid_pre + attn_out, and no resid_mid,
 * ln2, mlp or mlp_out.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "model/forward_impl.h"
#include "ops/ops.h"

static lp_rows rows_of(const lp_tensor *x, int64_t off)
{
    /* x is (B,T,W) or (B,T,n,S), contiguous: a row is W (= n*S) floats */
    int64_t W = x->ndim == 4 ? x->shape[2] * x->shape[3] : x->shape[2];
    return (lp_rows){x->data + off, x->shape[1] * W, W};
}

/* The new keys and values (B,T,K,S as rows) into the cache at positions p0.. of layer L;
 * returns the rows of every cached position. */
static void kv_append(lp_fwd *f, int L, lp_rows *k, lp_rows *v)
{
    lp_kv_cache *c = f->kv;
    int64_t w = (int64_t)c->K * c->S, row = (int64_t)c->B * w;
    for (int t = 0; t < f->T; t++)
        for (int b = 0; b < f->B; b++) {
            int64_t at = (int64_t)(f->p0 + t) * row + b * w;
            memcpy(c->k[L] + at, k->p + b * k->bstride + t * k->rstride, (size_t)w * sizeof(float));
            memcpy(c->v[L] + at, v->p + b * v->bstride + t * v->rstride, (size_t)w * sizeof(float));
        }
    *k = (lp_rows){c->k[L], w, row};
    *v = (lp_rows){c->v[L], w, row};
}

static int mlp(lp_fwd *f, lp_track *tr, int L, lp_tensor *x, lp_tensor **out)
{
    const lp_model_config *c = &f->m->cfg;
    const lp_block *bl = &f->m->blocks[L];
    char name[96];
#define HOOK(tensor, suffix)                                                  \
    do {                                                                      \
        snprintf(name, sizeof name, "blocks.%d.%s", L, suffix);              \
        if (lp_fwd_hook(f, name, tensor, -1, 1) < 0)                          \
            return -1;                                                        \
    } while (0)
    lp_tensor *post;
    HOOK(x, "mlp.hook_in"); /* the norm's output is a tensor of its own: no copy */
    /* the activation overwrites mlp.hook_pre when nothing sees it (less memory traffic) */
    snprintf(name, sizeof name, "blocks.%d.mlp.hook_pre", L);
    int inplace = !lp_fwd_wants(f, name);
    if (c->arch == LP_ARCH_GPT2) {
        lp_tensor *h = lp_fwd_linear(f, tr, &bl->fc, x, "mlp");
        if (!h)
            return -1;
        HOOK(h, "mlp.hook_pre");
        if (!(post = inplace ? h : lp_fwd_new(f, tr, "mlp", 3, f->B, f->T, c->d_mlp, 0)))
            return -1;
        lp_fwd_gelu(post->data, h->data, (size_t)lp_tensor_numel(h), c->act);
        HOOK(post, "mlp.hook_post");
        *out = lp_fwd_linear(f, tr, &bl->proj, post, "mlp out");
    } else {
        lp_tensor *g = lp_fwd_linear(f, tr, &bl->gate, x, "mlp gate");
        if (!g)
            return -1;
        HOOK(g, "mlp.hook_pre");
        lp_tensor *u = lp_fwd_linear(f, tr, &bl->up, x, "mlp up");
        if (!u)
            return -1;
        HOOK(u, "mlp.hook_pre_linear");
        if (!(post = inplace ? g : lp_fwd_new(f, tr, "mlp", 3, f->B, f->T, c->d_mlp, 0)))
            return -1;
        lp_fwd_swiglu(post->data, g->data, u->data, (size_t)lp_tensor_numel(g));
        HOOK(post, "mlp.hook_post");
        *out = lp_fwd_linear(f, tr, &bl->down, post, "mlp out");
    }
    if (!*out)
        return -1;
    HOOK(*out, "mlp.hook_out");
    /* hook_mlp_out is the same tensor: a hook on it must not change a cached mlp.hook_out */
    snprintf(name, sizeof name, "blocks.%d.hook_mlp_out", L);
    if (lp_fwd_hooked(f, name)) {
        snprintf(name, sizeof name, "blocks.%d.mlp.hook_out", L);
        if (lp_fwd_wants(f, name) && !(*out = lp_track_keep(tr, lp_tensor_clone(*out))))
            return -1;
    }
    HOOK(*out, "hook_mlp_out");
#undef HOOK
    return 0;
}

static int block(lp_fwd *f, int L, lp_tensor **resid, const float *cs, const float *sn)
{
    const lp_model *m = f->m;
    const lp_model_config *c = &m->cfg;
    const lp_block *bl = &m->blocks[L];
    int gpt2 = c->arch == LP_ARCH_GPT2;
    int64_t H = c->n_heads, K = c->n_kv_heads, S = c->d_head, B = f->B, T = f->T;
    lp_track tr = {0};
    char name[96], pre[48];
    lp_tensor *x, *z;
    lp_rows qr, kr, vr;
#define NAME(suffix) (snprintf(name, sizeof name, "blocks.%d.%s", L, suffix), name)
#define HOOK(tensor, suffix, hd, pd)                                          \
    do {                                                                      \
        if (lp_fwd_hook(f, NAME(suffix), tensor, hd, pd) < 0)                 \
            goto fail;                                                        \
    } while (0)
    if (lp_fwd_hooked(f, NAME("hook_resid_pre"))) { /* resid_pre shares storage with the previous hook point */
        lp_tensor *cl = lp_tensor_clone(*resid);
        if (!cl)
            goto fail;
        lp_tensor_free(*resid);
        *resid = cl;
    }
    HOOK(*resid, "hook_resid_pre", -1, 1);
    snprintf(pre, sizeof pre, "blocks.%d.ln1", L);
    if (!(x = lp_fwd_norm(f, &tr, *resid, NULL, NULL, NULL, bl->ln1_w, bl->ln1_b, pre)))
        goto fail;
    if (gpt2) {
        /* q, k, v are column ranges of the fused product: a tensor of their own only when
         * something sees them, else attention reads them in place */
        lp_tensor *t = lp_fwd_linear(f, &tr, &bl->qkv, x, "attention qkv"), *h;
        if (!t)
            goto fail;
        static const char *const sfx[3] = {"attn.hook_q", "attn.hook_k", "attn.hook_v"};
        lp_rows *rs[3] = {&qr, &kr, &vr};
        for (int i = 0; i < 3; i++) {
            if (!lp_fwd_wants(f, NAME(sfx[i]))) {
                *rs[i] = rows_of(t, i * H * S);
                continue;
            }
            if (!(h = lp_fwd_heads(f, &tr, t, i * H * S, H, S)))
                goto fail;
            HOOK(h, sfx[i], 2, 1);
            *rs[i] = rows_of(h, 0);
        }
    } else {
        lp_tensor *q, *k, *v;
        int64_t sq[4] = {B, T, H, S}, sk[4] = {B, T, K, S};
#define PROJ(dst, lin, shape, what)                                                              \
        {                                                                                         \
            lp_tensor *p_ = lp_fwd_linear(f, &tr, lin, x, what);                                  \
            if (!p_ || !(dst = lp_track_keep(&tr, lp_tensor_reshape(p_, 4, shape))))              \
                goto fail;                                                                        \
        }
        PROJ(q, &bl->q, sq, "attention q")
        PROJ(k, &bl->k, sk, "attention k")
        PROJ(v, &bl->v, sk, "attention v")
#undef PROJ
        HOOK(q, "attn.hook_q", 2, 1);
        HOOK(k, "attn.hook_k", 2, 1);
        HOOK(v, "attn.hook_v", 2, 1);
        if (!(q = lp_fwd_rope(f, &tr, q, cs, sn)))
            goto fail;
        HOOK(q, "attn.hook_rot_q", 2, 1);
        if (!(k = lp_fwd_rope(f, &tr, k, cs, sn)))
            goto fail;
        HOOK(k, "attn.hook_rot_k", 2, 1);
        qr = rows_of(q, 0), kr = rows_of(k, 0), vr = rows_of(v, 0);
    }
    if (f->kv)
        kv_append(f, L, &kr, &vr);
    if (!(z = lp_fwd_attention(f, &tr, L, qr, kr, vr, (int)H, (int)K, (int)S)))
        goto fail;
    lp_tensor *zf = lp_track_keep(&tr, lp_tensor_reshape(z, 3, (int64_t[]){B, T, H * S}));
    lp_tensor *ao = zf ? lp_fwd_linear(f, &tr, &bl->o, zf, "attention out") : NULL;
    if (!ao)
        goto fail;
    HOOK(ao, "hook_attn_out", -1, 1);
    lp_tensor *rp;
    if (c->attn_only) {
        if (!(rp = lp_fwd_add(f, &tr, *resid, ao)))
            goto fail;
    } else {
        lp_tensor *mid = NULL, *mo;
        snprintf(pre, sizeof pre, "blocks.%d.ln2", L);
        if (!(x = lp_fwd_norm(f, &tr, *resid, ao, &mid, NAME("hook_resid_mid"), bl->ln2_w, bl->ln2_b, pre)) ||
            mlp(f, &tr, L, x, &mo) < 0 || !(rp = lp_fwd_add(f, &tr, mid, mo)))
            goto fail;
    }
    HOOK(rp, "hook_resid_post", -1, 1);
#undef HOOK
#undef NAME
    lp_tensor *next = lp_tensor_alias(rp);
    if (!next)
        goto fail;
    lp_tensor_free(*resid);
    *resid = next;
    lp_track_drop(f, &tr);
    return 0;
fail:
    lp_track_drop(f, &tr);
    return -1;
}

/* The embedding (and GPT-2's position embedding, rows p0..) of the tokens: resid_pre of
 * block 0. */
static lp_tensor *embed(lp_fwd *f, const int32_t *tokens)
{
    const lp_model *m = f->m;
    int64_t D = m->cfg.d_model, N = (int64_t)f->B * f->T;
    lp_track tr = {0};
    lp_tensor *e = lp_fwd_new(f, &tr, "embedding", 3, f->B, f->T, D, 0), *out = NULL;
    if (!e || lp_cpu_ops()->embed_forward(e->data, tokens, m->wte->data, (int)N, (int)D, m->cfg.d_vocab) < 0 ||
        lp_fwd_hook(f, "hook_embed", e, -1, 1) < 0)
        goto done;
    if (m->cfg.arch != LP_ARCH_GPT2) {
        out = lp_tensor_alias(e);
        goto done;
    }
    lp_tensor *p = lp_fwd_new(f, &tr, "position embedding", 3, f->B, f->T, D, 0);
    if (!p)
        goto done;
    for (int64_t b = 0; b < f->B; b++)
        memcpy(p->data + b * f->T * D, m->wpe->data + (int64_t)f->p0 * D, (size_t)(f->T * D) * sizeof(float));
    if (lp_fwd_hook(f, "hook_pos_embed", p, -1, 1) < 0)
        goto done;
    lp_tensor *r = lp_fwd_add(f, &tr, e, p);
    out = r ? lp_tensor_alias(r) : NULL;
done:
    lp_track_drop(f, &tr);
    return out;
}

/* The run of f->T new positions after f->p0 held by f->kv (when not NULL). */
static int forward(lp_fwd *f, const int32_t *tokens)
{
    const lp_model *m = f->m;
    const lp_model_config *c = &m->cfg;
    lp_run *out = f->r;
    int T = f->T, Tk = f->p0 + f->T;
    float *cs = NULL, *sn = NULL, *inv = NULL;
    lp_tensor *resid = NULL;
    lp_track tr = {0};
    for (int64_t i = 0; i < (int64_t)f->B * T; i++)
        if (tokens[i] < 0 || tokens[i] >= c->d_vocab)
            return lp_set_error("run: token %d at position %lld is outside the vocabulary (0..%d)", tokens[i],
                                (long long)(i % T + 1), c->d_vocab - 1);
    if (lp_fwd_check_hooks(m, f->o) < 0)
        return -1;
    if (c->arch == LP_ARCH_LLAMA) {
        int half = c->d_head / 2;
        cs = lp_malloc((size_t)T * half * sizeof(float), "rotary table");
        sn = lp_malloc((size_t)T * half * sizeof(float), "rotary table");
        inv = lp_malloc((size_t)half * sizeof(float), "rotary table");
        if (!cs || !sn || !inv)
            goto fail;
        /* the dynamic form scales by the length of the whole sequence (as transformers does
         * for each step of a cached generation) */
        lp_rope_inv_freq(c, Tk, inv);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < half; i++) {
                float a = (float)(f->p0 + t) * inv[i];
                cs[t * half + i] = cosf(a);
                sn[t * half + i] = sinf(a);
            }
    }
    if (!(resid = embed(f, tokens)))
        goto fail;
    int nl = f->nblocks > 0 && f->nblocks < c->n_layers ? f->nblocks : c->n_layers;
    for (int L = 0; L < nl; L++)
        if (lp_interrupt_check() < 0 || block(f, L, &resid, cs, sn) < 0)
            goto fail;
    if (nl < c->n_layers) { /* stopped early: the cache holds what the blocks made, no logits */
        lp_tensor_free(resid);
        lp_fwd_pool_clear(f);
        free(cs), free(sn), free(inv);
        return 0;
    }
    lp_tensor *x = lp_fwd_norm(f, &tr, resid, NULL, NULL, NULL, m->lnf_w, m->lnf_b, "ln_final");
    lp_tensor *logits = x ? lp_fwd_linear(f, &tr, &m->unembed, x, "logits") : NULL;
    if (!logits || !(out->logits = lp_tensor_alias(logits)))
        goto fail;
    lp_track_drop(NULL, &tr);
    lp_tensor_free(resid);
    lp_fwd_pool_clear(f);
    free(cs), free(sn), free(inv);
    return 0;
fail:
    lp_track_drop(NULL, &tr);
    lp_tensor_free(resid);
    lp_fwd_pool_clear(f);
    free(cs), free(sn), free(inv);
    lp_run_clear(out);
    return -1;
}

int lp_model_run(const lp_model *m, const int32_t *tokens, int B, int T, const lp_run_opts *opts, lp_run *out)
{
    return lp_model_run_blocks(m, tokens, B, T, opts, 0, out);
}

int lp_model_run_blocks(const lp_model *m, const int32_t *tokens, int B, int T, const lp_run_opts *opts, int nblocks,
                        lp_run *out)
{
    memset(out, 0, sizeof *out);
    const lp_model_config *c = &m->cfg;
    if (B <= 0 || T <= 0)
        return lp_set_error("run: need at least one token (got batch %d x %d)", B, T);
    /* GPT-2 has no position embedding past n_ctx; Llama's rotary embeddings extend, but
     * only the dynamic scaling form is meant to be used past max_position_embeddings */
    if (T > c->n_ctx && (c->arch == LP_ARCH_GPT2 || c->rope != LP_ROPE_DYNAMIC))
        return lp_set_error("run: %d tokens is longer than the model's context of %d (%s)", T, c->n_ctx,
                            c->arch == LP_ARCH_GPT2 ? "n_positions" : "max_position_embeddings");
    if ((int64_t)B * T > (1 << 30))
        return lp_set_error("run: batch %d x %d tokens is too large", B, T);
    lp_fwd f = {.m = m, .o = opts, .r = out, .B = B, .T = T, .nblocks = nblocks};
    return forward(&f, tokens);
}

int lp_model_run_cached(const lp_model *m, lp_kv_cache *kv, const int32_t *tokens, int B, int T,
                        const lp_run_opts *opts, lp_run *out)
{
    memset(out, 0, sizeof *out);
    const lp_model_config *c = &m->cfg;
    if (B <= 0 || T <= 0)
        return lp_set_error("run: need at least one token (got batch %d x %d)", B, T);
    if (kv->n_layers != c->n_layers || kv->K != c->n_kv_heads || kv->S != c->d_head)
        return lp_set_error("run: the key/value cache was made for another model (%d layers x %d heads x %d, "
                            "this one has %d x %d x %d)", kv->n_layers, kv->K, kv->S, c->n_layers, c->n_kv_heads,
                            c->d_head);
    if (B != kv->B)
        return lp_set_error("run: the key/value cache holds a batch of %d, got %d", kv->B, B);
    if ((int64_t)kv->len + T > kv->limit)
        return lp_set_error("run: %d cached + %d new positions is longer than the model's context of %d (%s)",
                            kv->len, T, kv->limit, c->arch == LP_ARCH_GPT2 ? "n_positions" : "max_position_embeddings");
    if ((int64_t)B * T > (1 << 30))
        return lp_set_error("run: batch %d x %d tokens is too large", B, T);
    if (lp_kv_cache_reserve(kv, kv->len + T) < 0)
        return -1;
    lp_fwd f = {.m = m, .o = opts, .r = out, .B = B, .T = T, .p0 = kv->len, .kv = kv};
    if (forward(&f, tokens) < 0)
        return -1; /* the rows written past len are not part of the cache */
    kv->len += T;
    return 0;
}

int lp_model_unembed(const lp_model *m, const float *resid, int N, float *logits)
{
    const lp_ops *ops = lp_cpu_ops();
    int D = m->cfg.d_model;
    float *x = lp_malloc((size_t)N * D * sizeof *x, "unembed input");
    float *stats = lp_malloc(2 * (size_t)N * sizeof *stats, "unembed norm statistics");
    int rc = -1;
    if (!x || !stats)
        goto done;
    if (m->cfg.arch == LP_ARCH_GPT2) {
        if (ops->layernorm_forward(x, stats, stats + N, resid, m->lnf_w->data, m->lnf_b ? m->lnf_b->data : NULL,
                                   N, D, m->cfg.eps) < 0)
            goto done;
    } else if (ops->rmsnorm_forward(x, stats, resid, m->lnf_w->data, N, D, m->cfg.eps) < 0) {
        goto done;
    }
    const lp_linear *u = &m->unembed;
    rc = ops->matmul_forward(logits, x, u->w->data, u->b ? u->b->data : NULL, 1, N, u->in, u->out,
                             LP_SHARE_B | (u->trans ? LP_TRANS_B : 0));
done:
    free(x);
    free(stats);
    return rc;
}
