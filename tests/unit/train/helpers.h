/* Tiny random models for the trainer tests: GPT-2 (tanh or erf GELU, attention-only),
 * Llama (grouped-query heads, tied or untied, biases), with weights large enough that
 * every parameter matters (matrices N(0, 0.3^2), norm weights 1 + N(0, 0.2^2), biases
 * N(0, 0.1^2)), and random token batches. */
#ifndef LP_TRAIN_TEST_HELPERS_H
#define LP_TRAIN_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "model/model.h"
#include "ops/ops.h"
#include "rng.h"
#include "train/train.h"

enum { TV = 23, TCTX = 8 };

static inline lp_model_config tcfg_gpt2(int attn_only, int act)
{
    return (lp_model_config){.arch = LP_ARCH_GPT2, .n_layers = 2, .d_model = 16, .n_heads = 2, .n_kv_heads = 2,
                             .d_head = 8, .d_mlp = 32, .d_vocab = TV, .n_ctx = TCTX, .eps = 1e-5f, .act = act,
                             .tied = 1, .attn_only = attn_only, .rope_theta = 10000.0, .bos = -1, .eos = -1};
}

static inline lp_model_config tcfg_llama(int tied, int kv_heads, int bias)
{
    return (lp_model_config){.arch = LP_ARCH_LLAMA, .n_layers = 2, .d_model = 16, .n_heads = 4,
                             .n_kv_heads = kv_heads, .d_head = 4, .d_mlp = 24, .d_vocab = TV, .n_ctx = TCTX,
                             .eps = 1e-5f, .tied = tied, .attn_bias = bias, .mlp_bias = bias,
                             .rope_theta = 10000.0, .rope = LP_ROPE_DEFAULT, .rope_factor = 1.0, .bos = -1,
                             .eos = -1};
}

static inline void strip_linear(lp_linear *l)
{
    lp_tensor_free(l->w), lp_tensor_free(l->b);
    memset(l, 0, sizeof *l);
}

/* Makes a GPT-2 model attention-only: no ln_2, no MLP (whatever lp_model_random made). */
static inline void make_attn_only(lp_model *m)
{
    m->cfg.attn_only = 1;
    for (int L = 0; L < m->cfg.n_layers; L++) {
        lp_block *b = &m->blocks[L];
        lp_tensor_free(b->ln2_w), lp_tensor_free(b->ln2_b);
        b->ln2_w = b->ln2_b = NULL;
        strip_linear(&b->fc), strip_linear(&b->proj);
    }
}

static inline lp_model *tmodel(const lp_model_config *c, uint64_t seed)
{
    lp_model_config full = *c;
    full.attn_only = 0;
    lp_model *m = lp_model_random(&full, seed);
    cr_assert_not_null(m, "%s", lp_last_error());
    if (c->attn_only)
        make_attn_only(m);
    lp_rng g;
    lp_rng_seed(&g, seed * 7 + 1);
    size_t np = lp_model_param_count(m);
    for (size_t i = 0; i < np; i++) {
        char name[96];
        lp_tensor *w;
        cr_assert_eq(lp_model_param(m, i, name, sizeof name, &w), 0);
        int norm = strstr(name, "ln_") || strstr(name, "norm");
        int64_t n = lp_tensor_numel(w);
        for (int64_t j = 0; j < n; j++) {
            double r = lp_rng_normal(&g);
            w->data[j] = (float)(w->ndim == 2 ? 0.3 * r : norm && strstr(name, "weight") ? 1.0 + 0.2 * r : 0.1 * r);
        }
    }
    return m;
}

static inline void ttokens(int32_t *x, int32_t *y, int n, uint64_t seed)
{
    lp_rng g;
    lp_rng_seed(&g, seed);
    for (int i = 0; i < n; i++) {
        x[i] = (int32_t)lp_rng_below(&g, TV);
        y[i] = (int32_t)lp_rng_below(&g, TV);
    }
}

static inline lp_trainer *ttrainer(lp_model *m, float lr, int accum, int B, int T)
{
    lp_train_opts o;
    lp_train_opts_default(&o);
    o.lr = lr, o.accum = accum;
    lp_trainer *t = lp_trainer_new(m, &o, B, T);
    cr_assert_not_null(t, "%s", lp_last_error());
    return t;
}

/* A fresh empty file from the template path ("/tmp/...XXXXXX", rewritten in place). */
static inline void ttmpfile(char *path)
{
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp %s", path);
    close(fd);
}

/* Every parameter of m, concatenated (the caller frees). */
static inline float *tsnapshot(const lp_model *m, size_t *count)
{
    size_t np = lp_model_param_count(m), n = 0;
    for (size_t i = 0; i < np; i++) {
        lp_tensor *w;
        lp_model_param(m, i, NULL, 0, &w);
        n += (size_t)lp_tensor_numel(w);
    }
    float *s = malloc(n * sizeof *s), *p = s;
    cr_assert_not_null(s);
    for (size_t i = 0; i < np; i++) {
        lp_tensor *w;
        lp_model_param(m, i, NULL, 0, &w);
        memcpy(p, w->data, (size_t)lp_tensor_numel(w) * sizeof *p);
        p += lp_tensor_numel(w);
    }
    *count = n;
    return s;
}

#endif
