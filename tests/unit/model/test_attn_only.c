/* Attention-only GPT-2 models (cfg.attn_only, TransformerLens' attn_only): a block is
 * resid_pre -> ln1 -> attention -> attn_out, resid_post = resid_pre + attn_out. Their hook
 * points (no resid_mid, ln2, mlp, mlp_out), and their function: the same logits as a full
 * GPT-2 with the same attention weights and an MLP that outputs zero. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model.h"

static lp_model_config cfg(int attn_only)
{
    return (lp_model_config){.arch = LP_ARCH_GPT2, .n_layers = 2, .d_model = 16, .n_heads = 4, .n_kv_heads = 4,
                             .d_head = 4, .d_mlp = 24, .d_vocab = 37, .n_ctx = 12, .eps = 1e-5f, .tied = 1,
                             .attn_only = attn_only, .bos = -1, .eos = -1};
}

static void copy(lp_tensor *dst, const lp_tensor *src)
{
    cr_assert(dst && src && lp_tensor_same_shape(dst, src));
    memcpy(dst->data, src->data, (size_t)lp_tensor_numel(src) * sizeof(float));
}

static void scale(lp_tensor *t, float s)
{
    for (int64_t i = 0; t && i < lp_tensor_numel(t); i++)
        t->data[i] *= s;
}

/* A full model with large random attention weights and a zero MLP, and the attention-only
 * model with the same weights. */
static void pair(lp_model **full, lp_model **ao)
{
    lp_model_config cf = cfg(0), ca = cfg(1);
    *full = lp_model_random(&cf, 3);
    *ao = lp_model_random(&ca, 4);
    cr_assert(*full && *ao, "%s", lp_last_error());
    lp_model *f = *full, *a = *ao;
    scale(f->wte, 20);
    scale(f->wpe, 20);
    for (int L = 0; L < cf.n_layers; L++) {
        lp_block *bf = &f->blocks[L], *ba = &a->blocks[L];
        cr_assert_null(ba->ln2_w, "attention-only blocks have no ln2");
        scale(bf->qkv.w, 15);
        scale(bf->o.w, 15);
        for (int64_t i = 0; i < lp_tensor_numel(bf->qkv.b); i++)
            bf->qkv.b->data[i] = 0.01f * (float)(i % 7);
        memset(bf->fc.w->data, 0, (size_t)lp_tensor_numel(bf->fc.w) * sizeof(float));
        memset(bf->proj.w->data, 0, (size_t)lp_tensor_numel(bf->proj.w) * sizeof(float));
        copy(ba->ln1_w, bf->ln1_w), copy(ba->ln1_b, bf->ln1_b);
        copy(ba->qkv.w, bf->qkv.w), copy(ba->qkv.b, bf->qkv.b);
        copy(ba->o.w, bf->o.w), copy(ba->o.b, bf->o.b);
    }
    copy(a->wte, f->wte), copy(a->wpe, f->wpe), copy(a->lnf_w, f->lnf_w), copy(a->lnf_b, f->lnf_b);
}

Test(attn_only, hook_points)
{
    lp_model_config c = cfg(1);
    lp_model *m = lp_model_random(&c, 1);
    cr_assert_not_null(m, "%s", lp_last_error());
    static const char *const absent[] = {"blocks.0.hook_resid_mid", "blocks.0.ln2.hook_scale",
                                         "blocks.1.ln2.hook_normalized", "blocks.0.mlp.hook_pre",
                                         "blocks.1.mlp.hook_post", "blocks.0.hook_mlp_out"};
    for (size_t i = 0; i < sizeof absent / sizeof *absent; i++)
        cr_assert(!lp_model_has_hook(m, absent[i]), "%s", absent[i]);
    static const char *const present[] = {"hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre",
                                          "blocks.1.attn.hook_pattern", "blocks.0.hook_attn_out",
                                          "blocks.1.hook_resid_post", "ln_final.hook_normalized"};
    for (size_t i = 0; i < sizeof present / sizeof *present; i++)
        cr_assert(lp_model_has_hook(m, present[i]), "%s", present[i]);
    /* the enumeration: 2 + 11 per block + 2, in the order a run reaches them */
    char name[96];
    size_t n = 0;
    while (lp_model_hook_name(m, n, name, sizeof name) == 0)
        n++;
    cr_assert_eq(n, 2 + 11 * 2 + 2);
    int32_t tok[5] = {1, 2, 3, 4, 5};
    lp_run r;
    lp_run_opts all = {.cache_all = 1};
    cr_assert_eq(lp_model_run(m, tok, 1, 5, &all, &r), 0, "%s", lp_last_error());
    cr_assert_eq(r.n, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(lp_model_hook_name(m, i, name, sizeof name), 0);
        cr_assert_str_eq(r.names[i], name);
    }
    /* resid_post = resid_pre + attn_out */
    for (int L = 0; L < 2; L++) {
        char a[64], b[64], p[64];
        snprintf(a, sizeof a, "blocks.%d.hook_resid_pre", L);
        snprintf(b, sizeof b, "blocks.%d.hook_attn_out", L);
        snprintf(p, sizeof p, "blocks.%d.hook_resid_post", L);
        const lp_tensor *x = lp_run_get(&r, a), *y = lp_run_get(&r, b), *z = lp_run_get(&r, p);
        for (int64_t i = 0; i < lp_tensor_numel(z); i++)
            cr_assert_eq(z->data[i], x->data[i] + y->data[i]);
    }
    lp_run_clear(&r);
    /* hooks that do not exist here are refused by name */
    lp_hook h = {.name = "blocks.0.hook_resid_mid", .kind = LP_HOOK_ZERO, .head = -1, .pos = -1};
    lp_run_opts o = {.hooks = &h, .nhooks = 1};
    cr_assert_eq(lp_model_run(m, tok, 1, 5, &o, &r), -1);
    cr_assert(strstr(lp_last_error(), "unknown hook point 'blocks.0.hook_resid_mid'"), "%s", lp_last_error());
    lp_model_free(m);
}

Test(attn_only, same_function_as_a_zero_mlp)
{
    lp_model *full, *ao;
    pair(&full, &ao);
    int32_t tok[2][9] = {{3, 1, 4, 1, 5, 9, 2, 6, 5}, {2, 7, 18, 28, 18, 28, 4, 5, 9}};
    lp_run a, b, plain;
    cr_assert_eq(lp_model_run(full, tok[0], 2, 9, NULL, &a), 0, "%s", lp_last_error());
    cr_assert_eq(lp_model_run(ao, tok[0], 2, 9, NULL, &b), 0, "%s", lp_last_error());
    float d = 0, spread = 0;
    for (int64_t i = 0; i < lp_tensor_numel(a.logits); i++) {
        d = fmaxf(d, fabsf(a.logits->data[i] - b.logits->data[i]));
        spread = fmaxf(spread, fabsf(a.logits->data[i]));
    }
    cr_assert(d <= 1e-5f, "logits differ by %g", d);
    cr_assert(spread > 0.1f, "logits too flat to compare (%g)", spread);
    /* with every attention output ablated, the residual stream is the embedding throughout */
    lp_hook hs[2] = {{.name = "blocks.0.hook_attn_out", .kind = LP_HOOK_ZERO, .head = -1, .pos = -1},
                     {.name = "blocks.1.hook_attn_out", .kind = LP_HOOK_ZERO, .head = -1, .pos = -1}};
    lp_run_opts o = {.hooks = hs, .nhooks = 2, .cache_all = 1};
    cr_assert_eq(lp_model_run(ao, tok[0], 2, 9, &o, &plain), 0, "%s", lp_last_error());
    const lp_tensor *e = lp_run_get(&plain, "hook_embed"), *p = lp_run_get(&plain, "hook_pos_embed"),
                    *post = lp_run_get(&plain, "blocks.1.hook_resid_post");
    for (int64_t i = 0; i < lp_tensor_numel(post); i++)
        cr_assert_eq(post->data[i], e->data[i] + p->data[i]);
    lp_run_clear(&a), lp_run_clear(&b), lp_run_clear(&plain);
    /* and incremental runs agree with the full run */
    lp_kv_cache *kv = lp_kv_cache_new(ao, 2, 0);
    cr_assert_eq(lp_model_run(ao, tok[0], 2, 9, NULL, &a), 0);
    int32_t first[2][5] = {{3, 1, 4, 1, 5}, {2, 7, 18, 28, 18}}, rest[2][4] = {{9, 2, 6, 5}, {28, 4, 5, 9}};
    cr_assert_eq(lp_model_run_cached(ao, kv, first[0], 2, 5, NULL, &b), 0, "%s", lp_last_error());
    lp_run_clear(&b);
    cr_assert_eq(lp_model_run_cached(ao, kv, rest[0], 2, 4, NULL, &b), 0, "%s", lp_last_error());
    for (int bb = 0; bb < 2; bb++)
        for (int i = 0; i < 4 * 37; i++)
            cr_assert(fabsf(b.logits->data[bb * 4 * 37 + i] - a.logits->data[(bb * 9 + 5) * 37 + i]) <= 1e-5f);
    lp_run_clear(&a), lp_run_clear(&b);
    lp_kv_cache_free(kv);
    lp_model_free(full);
    lp_model_free(ao);
}
