/* loupe.load, loupe.Model, m:run and the hook constructors (see lua_model.h); the Run object
 * a forward pass returns is in lua_run.c. */
#include "lua_model.h"
#include "lua_model_impl.h"
#include "lua_steer.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "core/error.h"
#include "figures.h"
#include "dict/splice.h"
#include "lua_api.h"
#include "lua_dict.h"
#include "lua_tensor.h"
#include "model/model.h"
#include "ops/ops.h"
#include "tokenizer/tokenizer.h"

#define HOOK_MT "loupe.Hook"

/* ---- loading ---- */

static int l_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    model_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, MODEL_MT);
    u->m = lp_model_load(path);
    if (!u->m)
        return lp_lua_backend_error(L, "load");
    u->tok = lp_tokenizer_load(path);
    if (!u->tok)
        snprintf(u->tokerr, sizeof u->tokerr, "%s", lp_last_error());
    return 1;
}

static int model_gc(lua_State *L)
{
    model_ud *u = luaL_checkudata(L, 1, MODEL_MT);
    lp_model_free(u->m);
    lp_tokenizer_free(u->tok);
    u->m = NULL, u->tok = NULL;
    return 0;
}

static int model_tostring(lua_State *L)
{
    model_ud *u = check_model(L, 1);
    const lp_model_config *c = &u->m->cfg;
    char mem[32];
    lp_format_bytes(u->m->param_bytes, mem, sizeof mem);
    lua_pushfstring(L, "Model(%s, %d layers, d_model %d, %d heads (%d kv), d_mlp %d, vocab %d, %s f32%s)",
                    lp_arch_name(c->arch), c->n_layers, c->d_model, c->n_heads, c->n_kv_heads, c->d_mlp,
                    c->d_vocab, mem, u->tok ? "" : ", no tokenizer");
    return 1;
}

/* ---- tokens ---- */

/* Tokens of argument idx (text, {ids}, {{ids}...} or a Tensor) into a userdata buffer left on
 * the stack (freed by Lua, even on error). */
int32_t *lp_lua_model_tokens(lua_State *L, model_ud *u, int idx, int *B, int *T)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        if (!u->tok)
            luaL_error(L, "run: this model has no tokenizer (%s); pass token ids instead", u->tokerr);
        size_t len, n;
        const char *s = lua_tolstring(L, idx, &len);
        int32_t *ids;
        if (lp_tokenizer_encode(u->tok, s, len, 1, &ids, &n) < 0)
            lp_lua_backend_error(L, "run");
        if (n == 0 || n > (1u << 30)) {
            free(ids);
            luaL_error(L, "run: the text has no tokens");
        }
        int32_t *buf = lua_newuserdatauv(L, n * sizeof *buf, 0);
        memcpy(buf, ids, n * sizeof *buf);
        free(ids);
        *B = 1, *T = (int)n;
        return buf;
    }
    lp_tensor *tt = lua_type(L, idx) == LUA_TUSERDATA ? lp_lua_check_tensor(L, idx) : NULL;
    if (tt) {
        if (tt->ndim != 1 && tt->ndim != 2)
            luaL_error(L, "run: a token tensor must be (T) or (B, T)");
        *B = tt->ndim == 2 ? (int)tt->shape[0] : 1;
        *T = (int)tt->shape[tt->ndim - 1];
        size_t n = (size_t)lp_tensor_numel(tt);
        if (n == 0)
            luaL_error(L, "run: no tokens");
        float *f = lua_newuserdatauv(L, n * sizeof *f, 0);
        if (lp_tensor_to_host(tt, f) < 0)
            lp_lua_backend_error(L, "run");
        int32_t *buf = lua_newuserdatauv(L, n * sizeof *buf, 0);
        for (size_t i = 0; i < n; i++) {
            if (f[i] != floorf(f[i]) || f[i] < 0 || f[i] > 2e9f)
                luaL_error(L, "run: token %d is not a token id (%f)", (int)i + 1, (double)f[i]);
            buf[i] = (int32_t)f[i];
        }
        lua_remove(L, -2);
        return buf;
    }
    luaL_checktype(L, idx, LUA_TTABLE);
    int nested = lua_rawgeti(L, idx, 1) == LUA_TTABLE;
    lua_pop(L, 1);
    *B = nested ? (int)lua_rawlen(L, idx) : 1;
    if (nested) {
        lua_rawgeti(L, idx, 1);
        *T = (int)lua_rawlen(L, -1);
        lua_pop(L, 1);
    } else {
        *T = (int)lua_rawlen(L, idx);
    }
    if (*B <= 0 || *T <= 0)
        luaL_error(L, "run: no tokens");
    int32_t *buf = lua_newuserdatauv(L, (size_t)*B * *T * sizeof *buf, 0);
    for (int b = 0; b < *B; b++) {
        int row = idx;
        if (nested) {
            lua_rawgeti(L, idx, b + 1);
            row = lua_gettop(L);
            if (!lua_istable(L, row) || (int)lua_rawlen(L, row) != *T)
                luaL_error(L, "run: row %d of the token batch is not a list of %d ids", b + 1, *T);
        }
        for (int t = 0; t < *T; t++) {
            lua_rawgeti(L, row, t + 1);
            int ok;
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            if (!ok || v < 0 || v > INT32_MAX)
                luaL_error(L, "run: token %d is not a token id", t + 1);
            buf[(size_t)b * *T + t] = (int32_t)v;
            lua_pop(L, 1);
        }
        if (nested)
            lua_pop(L, 1);
    }
    return buf;
}

/* ---- hooks ---- */

typedef struct {
    lua_State *L;
    int fn;            /* stack index of the filter, or of the table of hook functions */
    int slot;          /* hook functions: index in that table */
    int failed;        /* filter: an error was raised */
    lp_err code;       /* and its code */
    char err[512];
} lua_cb;

static int is_hook(lua_State *L, int idx)
{
    if (!lua_istable(L, idx) || !lua_getmetatable(L, idx))
        return 0;
    luaL_getmetatable(L, HOOK_MT);
    int eq = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return eq;
}

static int call_trampoline(lua_State *L)
{
    const lp_tensor *act = lua_touserdata(L, 2);
    lp_lua_push_tensor(L, lp_tensor_alias(act));
    lua_replace(L, 2);
    lua_call(L, 2, 1); /* fn(tensor, name) */
    return 1;
}

static int hook_fn(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    lua_cb *cb = ud;
    lua_State *L = cb->L;
    lua_pushcfunction(L, call_trampoline);
    lua_rawgeti(L, cb->fn, cb->slot);
    lua_pushlightuserdata(L, (void *)act);
    lua_pushstring(L, name);
    int st = lua_pcall(L, 3, 1, 0);
    if (st != LUA_OK) {
        lp_set_error_code(lp_lua_caught_code(L, st, -1), "hook '%s': %s", name,
                          lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
        lua_pop(L, 1);
        return -1;
    }
    int rc = 0;
    if (!lua_isnil(L, -1)) {
        lp_tensor **t = luaL_testudata(L, -1, "loupe.Tensor");
        if (!t || !*t)
            rc = lp_set_error("hook '%s': the function must return a Tensor or nil, not a %s", name,
                              luaL_typename(L, -1));
        else if (!(*out = lp_tensor_alias(*t)))
            rc = -1;
    }
    lua_pop(L, 1);
    return rc;
}

static int filter_fn(void *ud, const char *name)
{
    lua_cb *cb = ud;
    lua_State *L = cb->L;
    if (cb->failed)
        return 0;
    if (lua_type(L, cb->fn) == LUA_TSTRING)
        return strstr(name, lua_tostring(L, cb->fn)) != NULL;
    if (lua_type(L, cb->fn) == LUA_TTABLE) { /* a set built by parse_cache */
        lua_pushstring(L, name);
        int keep = lua_rawget(L, cb->fn) != LUA_TNIL;
        lua_pop(L, 1);
        return keep;
    }
    lua_pushvalue(L, cb->fn);
    lua_pushstring(L, name);
    int st = lua_pcall(L, 1, 1, 0);
    if (st != LUA_OK) {
        cb->failed = 1;
        cb->code = lp_lua_caught_code(L, st, -1);
        snprintf(cb->err, sizeof cb->err, "cache filter: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
        lua_pop(L, 1);
        return 0;
    }
    int keep = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return keep;
}

/* A hook's head (0-based, as in blocks.L.attn.hook_z and every display) or position
 * (1-based, as Lua indexes r.tokens); -1 when absent. */
static int opt_index(lua_State *L, int spec, const char *key)
{
    lua_getfield(L, spec, key);
    int v = -1, base = strcmp(key, "head") == 0 ? 0 : 1;
    if (!lua_isnil(L, -1)) {
        int ok;
        lua_Integer i = lua_tointegerx(L, -1, &ok);
        if (!ok || i < base || i > INT32_MAX)
            luaL_error(L, base ? "hook: %s must be a positive integer (1-based, as r.tokens)"
                               : "hook: %s must be an integer >= 0 (heads count from 0, as in the hook names)",
                       key);
        v = (int)(i - base);
    }
    lua_pop(L, 1);
    return v;
}

/* Fills h from the hook spec or function at stack index v (for hook point name); functions
 * are appended to the table at stack index fns. Leaves the stack as it found it (the values
 * stay referenced by the options table during the run). */
static void parse_hook(lua_State *L, int v, const char *name, lp_hook *h, lua_cb *cb, int fns)
{
    memset(h, 0, sizeof *h);
    h->name = name, h->head = -1, h->pos = -1;
    if (lua_isfunction(L, v)) {
        h->kind = LP_HOOK_FN, h->fn = hook_fn, h->ud = cb;
        cb->L = L, cb->fn = fns, cb->slot = (int)lua_rawlen(L, fns) + 1;
        lua_pushvalue(L, v);
        lua_rawseti(L, fns, cb->slot);
        return;
    }
    if (!is_hook(L, v))
        luaL_error(L, "hooks[\"%s\"]: expected a function or a hook (loupe.ablate, loupe.patch, loupe.steer), got %s",
                   name, luaL_typename(L, v));
    lua_getfield(L, v, "kind");
    const char *kind = lua_tostring(L, -1);
    lua_pop(L, 1);
    h->head = opt_index(L, v, "head");
    h->pos = opt_index(L, v, "pos");
    lua_getfield(L, v, "value");
    int val = lua_gettop(L);
    if (kind && !strcmp(kind, "zero")) {
        h->kind = LP_HOOK_ZERO;
    } else if (kind && !strcmp(kind, "mean")) {
        h->kind = LP_HOOK_MEAN;
        if (lua_isuserdata(L, val))
            h->value = lp_lua_check_tensor(L, val);
    } else if (kind && !strcmp(kind, "patch")) {
        h->kind = LP_HOOK_PATCH;
        run_ud *src = luaL_testudata(L, val, RUN_MT);
        if (src) {
            h->value = lp_run_get(&src->run, name);
            if (!h->value)
                luaL_error(L, "patch: the cache has no '%s' (run the source with cache = true or a filter "
                              "that keeps it)", name);
        } else {
            h->value = lp_lua_check_tensor(L, val);
        }
    } else if (kind && !strcmp(kind, "add")) {
        h->kind = LP_HOOK_ADD;
        h->value = lp_lua_check_tensor(L, val);
        lua_getfield(L, v, "scale");
        h->scale = lua_isnil(L, -1) ? 1.0f : (float)luaL_checknumber(L, -1);
        lua_pop(L, 1);
    } else {
        luaL_error(L, "hooks[\"%s\"]: unknown hook kind", name);
    }
    lua_pop(L, 1); /* value */
}

/* ---- run ---- */

/* opts.saes = {sae, transcoders, ...} and opts.error_term into so: the dictionaries (a
 * transcoder set as its layers, copies anchored on the stack for the run). */
static void read_saes(lua_State *L, int opts, lp_splice_opts *so)
{
    lua_getfield(L, opts, "error_term");
    so->error_term = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, opts, "saes") == LUA_TNIL)
        return;
    int t = lua_gettop(L);
    if (luaL_testudata(L, t, LP_LUA_SAE_MT) || luaL_testudata(L, t, LP_LUA_TRANSCODERS_MT)) {
        lua_newtable(L); /* a single dictionary: a list of one */
        lua_pushvalue(L, t);
        lua_rawseti(L, -2, 1);
        t = lua_gettop(L);
    }
    luaL_argexpected(L, lua_istable(L, t), opts, "saes: a list of SAEs and transcoders");
    lua_newtable(L); /* every lp_sae, kept alive */
    int all = lua_gettop(L), n = 0, nclt = 0;
    lua_newtable(L); /* every CLT (kept alive by the list t) */
    int clts = lua_gettop(L);
    for (lua_Integer i = 1; lua_rawgeti(L, t, i) != LUA_TNIL; i++) {
        int v = lua_gettop(L);
        if (luaL_testudata(L, v, LP_LUA_TRANSCODERS_MT) && lua_getfield(L, v, "kind") == LUA_TSTRING &&
            !strcmp(lua_tostring(L, -1), "cross_layer_transcoder")) {
            lua_pop(L, 1);
            lua_pushvalue(L, v);
            lua_rawseti(L, clts, ++nclt);
        } else if (luaL_testudata(L, v, LP_LUA_TRANSCODERS_MT)) {
            lua_settop(L, v);
            lua_Integer nl = luaL_len(L, v);
            for (lua_Integer l = 1; l <= nl; l++) {
                if (lua_geti(L, v, l) != LUA_TUSERDATA)
                    luaL_error(L, "run: saes[%d]: only a transcoder set splices in (not a cross-layer transcoder)", (int)i);
                lua_rawseti(L, all, ++n);
            }
        } else if (luaL_testudata(L, v, LP_LUA_SAE_MT)) {
            lua_pushvalue(L, v);
            lua_rawseti(L, all, ++n);
        } else {
            luaL_error(L, "run: saes[%d] is not an SAE or transcoders (%s)", (int)i, luaL_typename(L, v));
        }
        lua_pop(L, 1);
    }
    const lp_sae **list = lua_newuserdatauv(L, (n ? n : 1) * sizeof *list, 0);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, all, i + 1);
        list[i] = lp_lua_check_sae(L, -1);
        lua_pop(L, 1);
    }
    so->saes = list, so->n = n;
    const lp_clt **cl = lua_newuserdatauv(L, (nclt ? nclt : 1) * sizeof *cl, 0);
    for (int i = 0; i < nclt; i++) {
        lua_rawgeti(L, clts, i + 1);
        cl[i] = lp_lua_check_clt(L, -1);
        lua_pop(L, 1);
    }
    so->clts = cl, so->nclt = nclt;
}

static int l_run(lua_State *L)
{
    model_ud *u = check_model(L, 1);
    int has_opts = !lua_isnoneornil(L, 3);
    if (has_opts)
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    int B, T;
    int32_t *tokens = lp_lua_model_tokens(L, u, 2, &B, &T);
    lp_run_opts o = {.cache_all = 1};
    lp_splice_opts so = {0};
    lua_cb fcb = {.L = L};
    if (has_opts) {
        lua_getfield(L, 3, "cache");
        int c = lua_gettop(L);
        if (lua_isnil(L, c) || (lua_isboolean(L, c) && lua_toboolean(L, c))) {
            o.cache_all = 1;
        } else if (lua_isboolean(L, c)) {
            o.cache_all = 0;
        } else if (lua_type(L, c) == LUA_TSTRING || lua_isfunction(L, c)) {
            o.cache_all = 0, o.filter = filter_fn, o.filter_ud = &fcb, fcb.fn = c;
        } else if (lua_istable(L, c)) {
            lua_newtable(L); /* the set of names */
            for (lua_Integer i = 1; lua_rawgeti(L, c, i) != LUA_TNIL; i++) {
                if (lua_type(L, -1) != LUA_TSTRING)
                    luaL_error(L, "run: cache[%d] is not a hook name", (int)i);
                if (!lp_model_has_hook(u->m, lua_tostring(L, -1)) && !strstr(lua_tostring(L, -1), ".hook_sae_"))
                    luaL_error(L, "run: cache: unknown hook point '%s'", lua_tostring(L, -1));
                lua_pushboolean(L, 1);
                lua_rawset(L, -3);
            }
            lua_pop(L, 1);
            o.cache_all = 0, o.filter = filter_fn, o.filter_ud = &fcb, fcb.fn = lua_gettop(L);
        } else {
            luaL_error(L, "run: cache must be true, false, a string, a list of hook names or a function");
        }
        lua_getfield(L, 3, "hooks");
        int hk = lua_gettop(L);
        if (!lua_isnil(L, hk)) {
            luaL_checktype(L, hk, LUA_TTABLE);
            size_t n = 0, cap = 0;
            lua_pushnil(L);
            while (lua_next(L, hk)) { /* count */
                cap += lua_istable(L, -1) && !is_hook(L, -1) ? lua_rawlen(L, -1) : 1;
                lua_pop(L, 1);
            }
            lp_hook *hooks = lua_newuserdatauv(L, (cap ? cap : 1) * sizeof *hooks, 0);
            lua_cb *cbs = lua_newuserdatauv(L, (cap ? cap : 1) * sizeof *cbs, 0);
            lua_newtable(L);
            int fns = lua_gettop(L);
            lua_pushnil(L);
            while (lua_next(L, hk)) { /* key at -2, value at -1 */
                if (lua_type(L, -2) != LUA_TSTRING)
                    luaL_error(L, "run: hooks must be keyed by hook point name");
                const char *name = lua_tostring(L, -2);
                int v = lua_gettop(L);
                if (lua_istable(L, v) && !is_hook(L, v)) {
                    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, v) && n < cap; i++) {
                        lua_rawgeti(L, v, i);
                        parse_hook(L, lua_gettop(L), name, &hooks[n], &cbs[n], fns);
                        n++;
                        lua_pop(L, 1);
                    }
                } else if (n < cap) {
                    parse_hook(L, v, name, &hooks[n], &cbs[n], fns);
                    n++;
                }
                lua_pop(L, 1);
            }
            o.hooks = hooks, o.nhooks = n;
        }
        lua_getfield(L, 3, "transcoders"); /* transcoders = tcs (with or without saes): lua_steer.c reads both */
        int has_tcs = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (has_tcs)
            lp_lua_read_dicts(L, 3, &so);
        else
            read_saes(L, 3, &so);
        int nfh;
        lp_lua_read_features(L, 3, T, INT_MAX, &so, &o, &nfh); /* features = {...}: lua_steer.c */
    }
    run_ud *r = lua_newuserdatauv(L, sizeof *r, 1);
    memset(r, 0, sizeof *r);
    luaL_setmetatable(L, RUN_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1); /* the run keeps its model (and tokenizer) alive */
    r->tokens = lp_malloc((size_t)B * T * sizeof *r->tokens, "the tokens of a run");
    if (!r->tokens)
        return lp_lua_backend_error(L, "run");
    memcpy(r->tokens, tokens, (size_t)B * T * sizeof *tokens);
    r->B = B, r->T = T;
    if ((so.n || so.nclt ? lp_model_run_spliced(u->m, tokens, B, T, &so, &o, &r->run) : lp_model_run(u->m, tokens, B, T, &o, &r->run)) < 0)
        return lp_lua_backend_error(L, "run");
    if (fcb.failed)
        return lp_lua_raise(L, fcb.code, "run: %s", fcb.err);
    return 1;
}

/* ---- model methods ---- */

static int model_hooks(lua_State *L)
{
    model_ud *u = check_model(L, 1);
    char name[96];
    lua_newtable(L);
    for (size_t i = 0; lp_model_hook_name(u->m, i, name, sizeof name) == 0; i++) {
        lua_pushstring(L, name);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int model_to_tokens(lua_State *L)
{
    model_ud *u = check_model(L, 1);
    luaL_checkstring(L, 2);
    int B, T;
    int32_t *ids = lp_lua_model_tokens(L, u, 2, &B, &T);
    lua_createtable(L, T, 0);
    for (int t = 0; t < T; t++) {
        lua_pushinteger(L, ids[t]);
        lua_rawseti(L, -2, t + 1);
    }
    return 1;
}

static int model_save(lua_State *L)
{
    model_ud *u = check_model(L, 1);
    const char *folder = luaL_checkstring(L, 2);
    if (lp_model_save(u->m, folder, u->tok) < 0)
        return lp_lua_backend_error(L, "save");
    lua_settop(L, 2);
    return 1;
}

static int model_index(lua_State *L)
{
    model_ud *u = check_model(L, 1);
    const char *key = luaL_checkstring(L, 2);
    if (luaL_getmetafield(L, 1, "__methods") != LUA_TNIL) {
        if (lua_getfield(L, -1, key) != LUA_TNIL)
            return 1;
        lua_pop(L, 2);
    }
    const lp_model_config *c = &u->m->cfg;
    struct { const char *k; int v; } f[] = {{"n_layers", c->n_layers}, {"d_model", c->d_model}, {"n_heads", c->n_heads},
                                             {"n_kv_heads", c->n_kv_heads}, {"d_head", c->d_head}, {"d_mlp", c->d_mlp},
                                             {"d_vocab", c->d_vocab}, {"n_ctx", c->n_ctx}};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (!strcmp(key, f[i].k)) {
            lua_pushinteger(L, f[i].v);
            return 1;
        }
    if (!strcmp(key, "arch")) {
        lua_pushstring(L, lp_arch_name(c->arch));
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

/* ---- hook constructors ---- */

static void push_hook(lua_State *L, const char *kind)
{
    lua_createtable(L, 0, 5);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    luaL_setmetatable(L, HOOK_MT);
}

static void copy_field(lua_State *L, int from, const char *key)
{
    lua_getfield(L, from, key);
    lua_setfield(L, -2, key);
}

static int l_ablate(lua_State *L)
{
    int has = !lua_isnoneornil(L, 1);
    if (has)
        luaL_checktype(L, 1, LUA_TTABLE);
    int mean = 0;
    if (has) {
        lua_getfield(L, 1, "mean");
        mean = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    push_hook(L, mean ? "mean" : "zero");
    if (has) {
        copy_field(L, 1, "head");
        copy_field(L, 1, "pos");
        lua_getfield(L, 1, "mean");
        if (lua_isuserdata(L, -1))
            lua_setfield(L, -2, "value");
        else
            lua_pop(L, 1);
    }
    return 1;
}

static int l_patch(lua_State *L)
{
    if (!luaL_testudata(L, 1, RUN_MT))
        lp_lua_check_tensor(L, 1);
    int opts = !lua_isnoneornil(L, 2);
    if (opts)
        luaL_checktype(L, 2, LUA_TTABLE);
    push_hook(L, "patch");
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "value");
    if (opts) {
        copy_field(L, 2, "head");
        copy_field(L, 2, "pos");
    }
    return 1;
}

static int l_steer(lua_State *L)
{
    lp_lua_check_tensor(L, 1);
    double scale = luaL_optnumber(L, 2, 1.0);
    int opts = !lua_isnoneornil(L, 3);
    if (opts)
        luaL_checktype(L, 3, LUA_TTABLE);
    push_hook(L, "add");
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "value");
    lua_pushnumber(L, scale);
    lua_setfield(L, -2, "scale");
    if (opts)
        copy_field(L, 3, "pos");
    return 1;
}

static int hook_tostring(lua_State *L)
{
    lua_getfield(L, 1, "kind");
    lua_getfield(L, 1, "head");
    lua_getfield(L, 1, "pos");
    lua_pushfstring(L, "Hook(%s%s%s%s%s)", lua_tostring(L, 2), lua_isnil(L, 3) ? "" : ", head ",
                    lua_isnil(L, 3) ? "" : lua_tostring(L, 3), lua_isnil(L, 4) ? "" : ", pos ",
                    lua_isnil(L, 4) ? "" : lua_tostring(L, 4));
    return 1;
}

/* ---- registration ---- */

void lp_lua_open_model(lua_State *L)
{
    int loupe = lua_gettop(L);
    luaL_newmetatable(L, MODEL_MT);
    int mt = lua_gettop(L);
    lua_newtable(L);
    lp_lua_setfunc(L, -1, "run", l_run,
                   "m:run(input [, {cache = ..., hooks = {...}}]) -> Run\n"
                   "A forward pass. input: text (needs the folder's tokenizer), a list of token ids, a list of\n"
                   "equal-length lists (a batch), or a Tensor of ids (T) or (B, T). Ids are the model's (0-based).\n"
                   "cache: true (default: every hook point), false (none), a string (names containing it),\n"
                   "a list of hook names, or function(name) -> boolean.\n"
                   "hooks: {[hook name] = hook or function(tensor, name) -> Tensor or nil, or a list of them};\n"
                   "hooks come from loupe.ablate, loupe.patch and loupe.steer. Heads count from 0 (as in the hook\n"
                   "names), positions from 1 (as r.tokens).\n"
                   "saes: {sae, transcoders, ...} splices reconstructions in (error_term = true adds x - x_hat\n"
                   "back); each caches <hook>.hook_sae_input, _acts_pre, _acts_post, _recons, _error, _output\n"
                   "(a cross-layer transcoder: per layer, <hook> = blocks.L.mlp.hook_out, recons the sum over\n"
                   "layers <= L).\n"
                   "transcoders = tcs splices a transcoder set too (as saes does); set = {{layer, pos, feature,\n"
                   "value}, ...} sets its features (layers and features from 0, positions from 1).\n"
                   "features: {{sae = s [, layer = l], feature = i, set = v | add = v | ablate = true [, pos = p]}, ...}\n"
                   "edits spliced features at hook_sae_acts_post (pos from 1; nil: every position; layer picks a\n"
                   "transcoder of a set, from 0); the error term is then kept unless error_term = false, so only\n"
                   "the edits move the output.");
    lp_lua_setfunc(L, -1, "generate", lp_lua_model_generate,
                   "m:generate(prompt [, {max_tokens = 20, temperature = 0, top_k = 0, seed = 0, stop = true,\n"
                   "  kv_cache = true}]) -> text, {ids}\nContinues prompt (text or token ids) one token at a time: greedy when\n"
                   "temperature is 0, else sampled from softmax(logits / temperature) (over the top_k\n"
                   "tokens when top_k > 0) with a generator seeded by seed. Stops at max_tokens, at the\n"
                   "end-of-text token when stop is true, or at the model's context length. Keys and values of\n"
                   "earlier positions are kept (kv_cache = false reruns the whole sequence every token).\n"
                   "Steering: saes = {...} and/or transcoders = tcs splice dictionaries in; steer = {{sae, feature,\n"
                   "scale [, pos = p, layer = l]}} adds scale to a feature (scale * W_dec,i at its hook), features =\n"
                   "{...} as m:run's, set = {{layer, pos, feature, value}} sets transcoder features; each applies at\n"
                   "its prompt position (all when pos is nil) and at every generated token. Error terms are kept.");
    /* registered again, with m:composition, m:patch_sweep and r:dla, by lp_lua_open_analysis */
    lp_lua_setfunc(L, -1, "head_scores", lp_lua_model_head_scores,
                   "m:head_scores([{seq_len = 50, batch = 4, seed = 0}]) -> figure\n"
                   "Previous-token, induction and prefix-matching scores of every head on repeated random\n"
                   "tokens: .previous_token, .induction, .prefix_matching [layer + 1][head], .tokens.");
    lp_lua_setfunc(L, -1, "hooks", model_hooks, "m:hooks() -> {names}\nEvery hook point of the model, in forward order.");
    lp_lua_setfunc(L, -1, "to_tokens", model_to_tokens,
                   "m:to_tokens(text) -> {ids}\nThe token ids of text (BOS as the model's tokenizer adds it).");
    lp_lua_setfunc(L, -1, "save", model_save,
                   "m:save(folder) -> folder\nWrites the model as a Hugging Face folder that loupe.load and "
                   "transformers'\nAutoModelForCausalLM.from_pretrained read: config.json, model.safetensors (f32) "
                   "and,\nwhen the model has one, its tokenizer (tokenizer.json). The files are written beside the\n"
                   "folder first and moved in at the end: a failure leaves what was there untouched.");
    lua_setfield(L, mt, "__methods");
    lua_pushcfunction(L, model_index);
    lua_setfield(L, mt, "__index");
    lua_pushcfunction(L, model_gc);
    lua_setfield(L, mt, "__gc");
    lua_pushcfunction(L, model_tostring);
    lua_setfield(L, mt, "__tostring");
    static const lp_lua_field model_fields[] = {
        {"arch", "\"gpt2\" or \"llama\": the family"}, {"n_layers", "number of layers (counted from 0)"},
        {"d_model", "width of the residual stream"},   {"n_heads", "attention heads per layer (from 0)"},
        {"n_kv_heads", "key/value heads per layer"},  {"d_head", "width of a head"},
        {"d_mlp", "width of the MLP"},                {"d_vocab", "size of the vocabulary"},
        {"n_ctx", "longest input, in tokens"},        {NULL, NULL}};
    lp_lua_settype(L, mt,
                   "Model: a transformer loaded by loupe.load(folder) or trained by loupe.train.\n"
                   "m:run(text) is a forward pass with every hook point cached (a Run: help(r)).",
                   model_fields);
    lua_pop(L, 1);

    lp_lua_open_run(L);

    luaL_newmetatable(L, HOOK_MT);
    lua_pushcfunction(L, hook_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lp_lua_setfunc(L, loupe, "load", l_load,
                   "loupe.load(folder) -> Model\nA Hugging Face model folder: config.json, model.safetensors (or a "
                   "sharded index)\nand, for text input, tokenizer.json or vocab.json + merges.txt. GPT-2 and Llama "
                   "families.");
    lp_lua_setfunc(L, loupe, "ablate", l_ablate,
                   "loupe.ablate{[head = h] [, pos = p] [, mean = true or Tensor]} -> hook\n"
                   "Zero ablation (or mean: over batch and positions, or the given tensor) of a hook point,\n"
                   "of one head (from 0) and/or one position (from 1) when given.");
    lp_lua_setfunc(L, loupe, "patch", l_patch,
                   "loupe.patch(run or Tensor [, {head = h, pos = p}]) -> hook\n"
                   "Activation patching: the hook point's value from another run's cache (same shape, or batch 1).");
    lp_lua_setfunc(L, loupe, "steer", l_steer,
                   "loupe.steer(vec [, scale [, {pos = p}]]) -> hook\nAdds scale * vec (broadcast, e.g. a d_model "
                   "vector) to the hook point.");
    lua_settop(L, loupe);
}
