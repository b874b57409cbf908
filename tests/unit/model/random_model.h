/* Random GPT-2 and Llama models for the analysis tests, built in memory: lp_model_random with
 * weights large enough that every part of the model matters, and norm weights and biases that
 * are not trivial (lp_model_random makes unit norms and zero biases). */
#ifndef LP_TEST_RANDOM_MODEL_H
#define LP_TEST_RANDOM_MODEL_H

#include <criterion/criterion.h>
#include <math.h>

#include "core/error.h"
#include "model/model.h"
#include "rng.h"

static inline void rm_jitter(lp_tensor *t, lp_rng *g, float scale, float offset)
{
    if (!t)
        return;
    for (int64_t i = 0; i < lp_tensor_numel(t); i++)
        t->data[i] = offset + scale * (float)lp_rng_normal(g);
}

/* L layers, d_model D, H heads (K kv heads for Llama), vocabulary V, context 16. */
static inline lp_model *rm_model(int llama, int L, int D, int H, int K, int V, uint64_t seed)
{
    lp_model_config c = {0};
    c.arch = llama ? LP_ARCH_LLAMA : LP_ARCH_GPT2;
    c.n_layers = L, c.d_model = D, c.n_heads = H, c.n_kv_heads = llama ? K : H, c.d_head = D / H;
    c.d_mlp = 2 * D, c.d_vocab = V, c.n_ctx = 16, c.eps = 1e-5f, c.act = 0;
    c.rope_theta = 10000.0, c.rope = LP_ROPE_DEFAULT, c.bos = c.eos = -1;
    lp_model *m = lp_model_random(&c, seed);
    cr_assert_not_null(m, "%s", lp_last_error());
    lp_rng g;
    lp_rng_seed(&g, seed + 1);
    rm_jitter(m->wte, &g, 1.0f, 0);
    rm_jitter(m->wpe, &g, 0.3f, 0);
    if (m->unembed.w->data != m->wte->data) /* untied */
        rm_jitter(m->unembed.w, &g, 1.0f, 0);
    rm_jitter(m->lnf_w, &g, 0.2f, 1);
    rm_jitter(m->lnf_b, &g, 0.2f, 0);
    float ws = 1.0f / sqrtf((float)D);
    for (int l = 0; l < L; l++) {
        lp_block *b = &m->blocks[l];
        rm_jitter(b->ln1_w, &g, 0.3f, 1), rm_jitter(b->ln1_b, &g, 0.2f, 0);
        rm_jitter(b->ln2_w, &g, 0.3f, 1), rm_jitter(b->ln2_b, &g, 0.2f, 0);
        lp_linear *ls[] = {&b->qkv, &b->q, &b->k, &b->v, &b->o, &b->fc, &b->proj, &b->gate, &b->up, &b->down};
        for (size_t i = 0; i < sizeof ls / sizeof *ls; i++) {
            rm_jitter(ls[i]->w, &g, 2 * ws, 0);
            rm_jitter(ls[i]->b, &g, 0.1f, 0);
        }
    }
    return m;
}

#endif
