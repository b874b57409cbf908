/* The key/value cache of incremental runs (lp_model_run_cached): per layer, the keys
 * (post-rotary for Llama) and values of every position seen so far, (positions, B, K, S)
 * position-major, grown by doubling up to the model's context. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/forward_impl.h"

lp_kv_cache *lp_kv_cache_new(const lp_model *m, int B, int cap)
{
    const lp_model_config *c = &m->cfg;
    if (B <= 0) {
        lp_set_error("kv cache: need a batch of at least 1 (got %d)", B);
        return NULL;
    }
    lp_kv_cache *kv = lp_calloc(1, sizeof *kv, "key/value cache");
    if (!kv)
        return NULL;
    kv->n_layers = c->n_layers, kv->B = B, kv->K = c->n_kv_heads, kv->S = c->d_head;
    /* GPT-2 has no position embedding past n_ctx; Llama's dynamic rope scaling rescales
     * every position once the sequence passes it, which a cache of rotated keys cannot do */
    kv->limit = c->n_ctx;
    kv->k = lp_calloc((size_t)c->n_layers, sizeof *kv->k, "key/value cache");
    kv->v = lp_calloc((size_t)c->n_layers, sizeof *kv->v, "key/value cache");
    if (!kv->k || !kv->v || lp_kv_cache_reserve(kv, cap > 0 ? (cap < kv->limit ? cap : kv->limit) : 16) < 0) {
        lp_kv_cache_free(kv);
        return NULL;
    }
    return kv;
}

void lp_kv_cache_free(lp_kv_cache *kv)
{
    if (!kv)
        return;
    for (int L = 0; L < kv->n_layers; L++) {
        if (kv->k)
            free(kv->k[L]);
        if (kv->v)
            free(kv->v[L]);
    }
    free(kv->k);
    free(kv->v);
    free(kv);
}

int lp_kv_cache_len(const lp_kv_cache *kv) { return kv->len; }

int lp_kv_cache_limit(const lp_kv_cache *kv) { return kv->limit; }

void lp_kv_cache_reset(lp_kv_cache *kv) { kv->len = 0; }

int lp_kv_cache_truncate(lp_kv_cache *kv, int len)
{
    if (len < 0 || len > kv->len)
        return lp_set_error("kv cache: cannot truncate %d positions to %d", kv->len, len);
    kv->len = len;
    return 0;
}

int lp_kv_cache_reserve(lp_kv_cache *kv, int need)
{
    if (need <= kv->cap)
        return 0;
    int64_t cap = kv->cap > 0 ? kv->cap : 16;
    while (cap < need)
        cap *= 2;
    if (cap > kv->limit)
        cap = kv->limit > need ? kv->limit : need;
    size_t bytes = (size_t)cap * kv->B * kv->K * kv->S * sizeof(float);
    for (int L = 0; L < kv->n_layers; L++) {
        float **pp[2] = {&kv->k[L], &kv->v[L]};
        for (int i = 0; i < 2; i++) {
            float *p = lp_realloc(*pp[i], bytes ? bytes : 1, "the key/value cache");
            if (!p) {
                char sz[32];
                return lp_set_error_code(LP_ERR_NOMEM,
                                         "cannot allocate %s for the key/value cache of layer %d (%lld positions)",
                                         lp_format_bytes(bytes, sz, sizeof sz), L, (long long)cap);
            }
            *pp[i] = p;
        }
    }
    kv->cap = (int)cap;
    return 0;
}
