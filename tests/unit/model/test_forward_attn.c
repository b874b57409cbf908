/* The attention of the forward pass (backend/model/forward_attn.c: per-head kernels reading
 * q, k, v in place) against a naive reference computed here in double from the cached q, k,
 * v (rot_q, rot_k for Llama): scores, pattern and z, for head sizes that use the kernels'
 * full and partial blocks, grouped-query heads, and sequences longer than a block. And the
 * fused path (nothing observes q, k, v, the norms or the pattern) gives the same logits as
 * the path with every hook point made. The kernels exist for AVX-512, AVX2 and the baseline:
 * each is checked (LOUPE_CPU_LEVEL; each test runs in a process of its own). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model.h"

static lp_model *random_model(lp_model_config c)
{
    lp_model *r = lp_model_random(&c, 5);
    cr_assert_not_null(r, "%s", lp_last_error());
    for (int L = 0; L < c.n_layers; L++) {
        lp_block *b = &r->blocks[L];
        lp_linear *ls[] = {&b->qkv, &b->q, &b->k, &b->v, &b->o};
        for (size_t i = 0; i < sizeof ls / sizeof *ls; i++)
            for (int64_t k = 0; ls[i]->w && k < lp_tensor_numel(ls[i]->w); k++)
                ls[i]->w->data[k] *= 10;
    }
    for (int64_t k = 0; k < lp_tensor_numel(r->wte); k++)
        r->wte->data[k] *= 20;
    return r;
}

static void check_layer(const lp_model *m, const lp_run *r, int L, int B, int T)
{
    int H = m->cfg.n_heads, K = m->cfg.n_kv_heads, S = m->cfg.d_head, grp = H / K;
    int llama = m->cfg.arch == LP_ARCH_LLAMA;
    char n[96];
#define GET(var, suffix)                                                   \
    snprintf(n, sizeof n, "blocks.%d.attn.%s", L, suffix);                 \
    const lp_tensor *var = lp_run_get(r, n);                               \
    cr_assert_not_null(var, "%s", n);
    GET(q, llama ? "hook_rot_q" : "hook_q")
    GET(k, llama ? "hook_rot_k" : "hook_k")
    GET(v, "hook_v")
    GET(sc, "hook_attn_scores")
    GET(pat, "hook_pattern")
    GET(z, "hook_z")
#undef GET
    double *s = malloc(sizeof(double) * (size_t)T), vmax = 0; /* z is compared relative to v's scale */
    for (int64_t i = 0; i < lp_tensor_numel(v); i++)
        vmax = fmax(vmax, fabs(v->data[i]));
    float worst_s = 0, worst_p = 0, worst_z = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                int g = h / grp;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    double acc = 0;
                    for (int d = 0; d < S; d++)
                        acc += (double)q->data[(((size_t)b * T + i) * H + h) * S + d] *
                               k->data[(((size_t)b * T + j) * K + g) * S + d];
                    s[j] = acc / sqrt((double)S);
                    mx = fmax(mx, s[j]);
                }
                const float *srow = sc->data + (((size_t)b * H + h) * T + i) * T;
                const float *prow = pat->data + (((size_t)b * H + h) * T + i) * T;
                for (int j = 0; j <= i; j++) {
                    worst_s = fmaxf(worst_s, (float)(fabs(srow[j] - s[j]) / (1 + fabs(s[j]))));
                    sum += exp(s[j] - mx);
                }
                for (int j = i + 1; j < T; j++) {
                    cr_assert(isinf(srow[j]) && srow[j] < 0, "masked score [%d,%d,%d,%d] is %g", b, h, i, j, srow[j]);
                    cr_assert_eq(prow[j], 0.0f);
                }
                for (int d = 0; d < S; d++) {
                    double zz = 0;
                    for (int j = 0; j <= i; j++) {
                        double p = exp(s[j] - mx) / sum;
                        if (d == 0)
                            worst_p = fmaxf(worst_p, (float)fabs(prow[j] - p));
                        zz += p * v->data[(((size_t)b * T + j) * K + g) * S + d];
                    }
                    float got = z->data[(((size_t)b * T + i) * H + h) * S + d];
                    worst_z = fmaxf(worst_z, (float)(fabs(got - zz) / (1 + vmax)));
                }
            }
    free(s);
    cr_assert(worst_s <= 1e-5f, "layer %d scores off by %g", L, worst_s);
    cr_assert(worst_p <= 1e-5f, "layer %d pattern off by %g", L, worst_p);
    cr_assert(worst_z <= 1e-5f, "layer %d z off by %g", L, worst_z);
}

static void check(lp_model_config c, int B, int T)
{
    lp_model *m = random_model(c);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * T);
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)((i * 2654435761u) % (unsigned)c.d_vocab);
    lp_run all, plain;
    lp_run_opts o = {.cache_all = 1};
    cr_assert_eq(lp_model_run(m, tok, B, T, &o, &all), 0, "%s", lp_last_error());
    for (int L = 0; L < c.n_layers; L++)
        check_layer(m, &all, L, B, T);
    /* the pattern must not be flat, or the check above proves little */
    const lp_tensor *pat = lp_run_get(&all, "blocks.0.attn.hook_pattern");
    float top = 0;
    for (int64_t i = 0; i < lp_tensor_numel(pat); i++)
        top = fmaxf(top, pat->data[(size_t)i]);
    cr_assert(top > 0.5f, "attention too uniform (max %g)", top);
    cr_assert_eq(lp_model_run(m, tok, B, T, NULL, &plain), 0, "%s", lp_last_error());
    float d = 0;
    for (int64_t i = 0; i < lp_tensor_numel(all.logits); i++)
        d = fmaxf(d, fabsf(all.logits->data[i] - plain.logits->data[i]));
    cr_assert(d <= 1e-6f, "fused and observed paths differ by %g", d);
    lp_run_clear(&all);
    lp_run_clear(&plain);
    free(tok);
    lp_model_free(m);
}

Test(forward_attn, gpt2_against_reference)
{
    lp_model_config c = {.arch = LP_ARCH_GPT2, .n_layers = 2, .d_model = 192, .n_heads = 3, .n_kv_heads = 3,
                         .d_head = 64, .d_mlp = 64, .d_vocab = 41, .n_ctx = 80, .eps = 1e-5f, .tied = 1,
                         .bos = -1, .eos = -1};
    check(c, 2, 75);
    c.d_model = 24, c.n_heads = 3, c.n_kv_heads = 3, c.d_head = 8; /* small heads: partial blocks only */
    check(c, 3, 13);
}

Test(forward_attn, llama_gqa_against_reference)
{
    lp_model_config c = {.arch = LP_ARCH_LLAMA, .n_layers = 2, .d_model = 160, .n_heads = 4, .n_kv_heads = 2,
                         .d_head = 40, .d_mlp = 48, .d_vocab = 41, .n_ctx = 80, .eps = 1e-5f, .rope_theta = 10000,
                         .bos = -1, .eos = -1};
    check(c, 2, 41);
    c.n_heads = 2, c.n_kv_heads = 1, c.d_head = 80; /* 64 + a partial block of 16 */
    check(c, 1, 66);
}

/* The AVX2 and baseline versions of the kernels (this machine may run AVX-512 by default). */
static void lower_levels(int level)
{
    char v[2] = {(char)('0' + level), 0};
    setenv("LOUPE_CPU_LEVEL", v, 1);
    lp_model_config g = {.arch = LP_ARCH_GPT2, .n_layers = 1, .d_model = 128, .n_heads = 2, .n_kv_heads = 2,
                         .d_head = 64, .d_mlp = 64, .d_vocab = 41, .n_ctx = 80, .eps = 1e-5f, .tied = 1,
                         .bos = -1, .eos = -1};
    check(g, 2, 45);
    lp_model_config l = {.arch = LP_ARCH_LLAMA, .n_layers = 1, .d_model = 96, .n_heads = 4, .n_kv_heads = 2,
                         .d_head = 24, .d_mlp = 48, .d_vocab = 41, .n_ctx = 80, .eps = 1e-5f, .rope_theta = 10000,
                         .bos = -1, .eos = -1};
    check(l, 2, 37);
}

Test(forward_attn, avx2_version) { lower_levels(1); }
Test(forward_attn, baseline_version) { lower_levels(0); }
