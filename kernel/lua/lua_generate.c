/* m:generate: text continuation (with dictionaries spliced in and features steered when asked:
 * saes, transcoders, features, steer, set as lua_steer.h reads them). The prompt runs once into a key/value cache, then each step
 * runs only the new token against it (lp_model_run_cached); {kv_cache = false} reruns the whole
 * sequence every step instead (the same tokens, slower: for checks). */
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lua_api.h"
#include "lua_model_impl.h"
#include "lua_steer.h"
#include "rng.h"

static lua_Number opt_num(lua_State *L, int t, const char *k, lua_Number def)
{
    if (!lua_istable(L, t))
        return def;
    lua_getfield(L, t, k);
    lua_Number v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Picks the next token from the logits of the last position. */
static int32_t pick(const float *logits, int V, double temperature, int top_k, lp_rng *g, float *scratch)
{
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best])
            best = i;
    if (temperature <= 0)
        return best;
    /* threshold for top-k: the k-th largest logit (a partial selection by repeated scans is
     * fine at these vocab sizes only for small k; otherwise keep every token) */
    float cut = -INFINITY;
    if (top_k > 0 && top_k < V) {
        memcpy(scratch, logits, (size_t)V * sizeof *scratch);
        for (int r = 0; r < top_k; r++) {
            int m = -1;
            for (int i = 0; i < V; i++)
                if (scratch[i] != -INFINITY && (m < 0 || scratch[i] > scratch[m]))
                    m = i;
            if (m < 0)
                break;
            cut = scratch[m];
            scratch[m] = -INFINITY;
        }
    }
    double z = 0;
    for (int i = 0; i < V; i++)
        z += logits[i] >= cut ? exp((logits[i] - logits[best]) / temperature) : 0;
    double u = lp_rng_uniform(g) * z, acc = 0;
    for (int i = 0; i < V; i++) {
        if (logits[i] < cut)
            continue;
        acc += exp((logits[i] - logits[best]) / temperature);
        if (acc >= u)
            return i;
    }
    return best;
}

int lp_lua_model_generate(lua_State *L)
{
    model_ud *u = check_model(L, 1);
    int opts = 3;
    int max_tokens = (int)opt_num(L, opts, "max_tokens", 20);
    double temperature = opt_num(L, opts, "temperature", 0);
    int top_k = (int)opt_num(L, opts, "top_k", 0);
    uint64_t seed = (uint64_t)opt_num(L, opts, "seed", 0);
    int stop = 1, use_cache = 1;
    if (lua_istable(L, opts)) {
        lua_getfield(L, opts, "stop");
        if (!lua_isnil(L, -1))
            stop = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, opts, "kv_cache");
        if (!lua_isnil(L, -1))
            use_cache = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    if (max_tokens < 0 || temperature < 0 || !isfinite(temperature))
        return luaL_error(L, "generate: max_tokens and temperature must be >= 0");
    int B, T;
    int32_t *prompt = lp_lua_model_tokens(L, u, 2, &B, &T);
    if (B != 1)
        return luaL_error(L, "generate: one prompt at a time (got a batch of %d)", B);
    /* dictionaries spliced in, and feature edits at the chosen positions and every generated
     * token (lua_steer.h) */
    lp_splice_opts so = {0};
    lp_run_opts ro = {0};
    lp_feature_hook *fh = NULL;
    int nfh = 0;
    if (lua_istable(L, opts)) {
        lp_lua_read_dicts(L, opts, &so);
        fh = lp_lua_read_features(L, opts, T, T, &so, &ro, &nfh);
    }
    const lp_model_config *c = &u->m->cfg;
    int n_ctx = c->n_ctx > 0 ? c->n_ctx : T + max_tokens, V = c->d_vocab;
    size_t cap = (size_t)T + (size_t)max_tokens;
    int32_t *toks = lua_newuserdatauv(L, cap * sizeof *toks, 0);
    float *last = lua_newuserdatauv(L, 2 * (size_t)V * sizeof *last, 0);
    memcpy(toks, prompt, (size_t)T * sizeof *toks);
    lp_rng g;
    lp_rng_seed(&g, seed);
    int32_t eos = u->tok ? lp_tokenizer_eos(u->tok) : -1;
    int n = T, fed = 0; /* tokens in the sequence, and those already in the cache */
    lp_kv_cache *kv = NULL;
    if (use_cache && max_tokens > 0 && n < n_ctx && !(kv = lp_kv_cache_new(u->m, 1, (int)cap)))
        return lp_lua_backend_error(L, "generate");
    for (int step = 0; step < max_tokens && n < n_ctx; step++) {
        lp_run r = {0};
        for (int i = 0; i < nfh; i++)
            fh[i].offset = kv ? fed : 0; /* the absolute position of the run's first row */
        int rc;
        if (so.n)
            rc = kv ? lp_model_run_spliced_cached(u->m, kv, toks + fed, 1, n - fed, &so, &ro, &r)
                    : lp_model_run_spliced(u->m, toks, 1, n, &so, &ro, &r);
        else
            rc = kv ? lp_model_run_cached(u->m, kv, toks + fed, 1, n - fed, &ro, &r)
                    : lp_model_run(u->m, toks, 1, n, &ro, &r);
        if (rc == 0) { /* the last position's logits */
            int64_t rows = r.logits->shape[1], idx[3] = {0, rows - 1, 0};
            if (r.logits->device == LP_DEVICE_CPU && lp_tensor_is_contiguous(r.logits))
                memcpy(last, r.logits->data + (rows - 1) * V, (size_t)V * sizeof *last);
            else
                for (int v = 0; v < V && rc == 0; v++) {
                    idx[2] = v;
                    rc = lp_tensor_get(r.logits, idx, &last[v]);
                }
        }
        lp_run_clear(&r);
        if (rc < 0) {
            lp_kv_cache_free(kv);
            return lp_lua_backend_error(L, "generate");
        }
        fed = n;
        int32_t next = pick(last, V, temperature, top_k, &g, last + V);
        toks[n++] = next;
        if (stop && next == eos)
            break;
    }
    lp_kv_cache_free(kv);
    /* text of the new tokens (when there is a tokenizer), and every id */
    if (u->tok) {
        size_t len;
        char *text = lp_tokenizer_decode(u->tok, toks + T, (size_t)(n - T), &len);
        if (!text)
            return lp_lua_backend_error(L, "generate");
        lua_pushlstring(L, text, len);
        free(text);
    } else {
        lua_pushnil(L);
    }
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, toks[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 2;
}
