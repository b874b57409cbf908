/* loupe.activations{...} and the loupe.ActivationStream userdata: a thin layer over
 * backend/dict/activations.h. The stream keeps its model and dataset alive (user values). */
#include "lua_acts.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "dict/activations.h"
#include "lua_api.h"
#include "lua_data.h"
#include "lua_model_impl.h"
#include "lua_tensor.h"

#define ACTS_MT "loupe.ActivationStream"

typedef struct {
    lp_act_stream *s;    /* a stream of model runs, or */
    lp_act_shards *sh;   /* shards read back (loupe.activations{shards = dir, ...}) */
    int32_t *tokens;     /* a copy of a token table, or NULL */
    char **names;        /* the shards' hooks */
    size_t nh;
    int64_t served;      /* rows read from shards */
} acts_ud;

static acts_ud *check_acts(lua_State *L, int idx)
{
    acts_ud *u = luaL_checkudata(L, idx, ACTS_MT);
    if (!u->s && !u->sh)
        luaL_error(L, "the activation stream has been freed");
    return u;
}

lp_act_stream *lp_lua_check_act_stream(lua_State *L, int idx)
{
    acts_ud *u = check_acts(L, idx);
    if (!u->s)
        luaL_error(L, "the activation stream reads shards back; training needs one of model runs");
    return u->s;
}

static size_t nhooks(const acts_ud *u) { return u->s ? lp_act_stream_nhooks(u->s) : u->nh; }
static const char *hook(const acts_ud *u, size_t h) { return u->s ? lp_act_stream_hook(u->s, h) : u->names[h]; }
static int64_t dim(const acts_ud *u, size_t h)
{
    return u->s ? lp_act_stream_dim(u->s, h) : lp_act_shards_dim(u->sh, h);
}
static int64_t batch(const acts_ud *u) { return u->s ? lp_act_stream_batch(u->s) : lp_act_shards_batch(u->sh); }
static int64_t served(const acts_ud *u) { return u->s ? lp_act_stream_tokens_seen(u->s) : u->served; }

static lua_Integer opt_int(lua_State *L, int t, const char *key, lua_Integer def)
{
    lua_getfield(L, t, key);
    lua_Integer v = def;
    if (!lua_isnil(L, -1)) {
        int ok;
        v = lua_tointegerx(L, -1, &ok);
        if (!ok)
            luaL_error(L, "loupe.activations: %s must be an integer", key);
    }
    lua_pop(L, 1);
    return v;
}

/* loupe.activations{model, hook | hooks, data, ctx, batch, buffer, seed, normalize, ...} */
static int l_activations(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "model");
    model_ud *mu = lua_isnil(L, -1) ? NULL : check_model(L, -1); /* stays at index 2 */
    const char *names[64];
    size_t nh = 0;
    lua_getfield(L, 1, "hook");
    lua_getfield(L, 1, "hooks");
    if (lua_isstring(L, 3) && lua_isnil(L, 4)) {
        names[nh++] = lua_tostring(L, 3);
    } else if (lua_istable(L, 4) && lua_isnil(L, 3)) {
        nh = lua_rawlen(L, 4);
        if (nh < 1 || nh > 64)
            return luaL_error(L, "loupe.activations: hooks must list 1 to 64 hook names");
        for (size_t i = 0; i < nh; i++) {
            lua_rawgeti(L, 4, (lua_Integer)i + 1);
            if (!lua_isstring(L, -1))
                return luaL_error(L, "loupe.activations: hooks[%d] is not a name", (int)i + 1);
            names[i] = lua_tostring(L, -1); /* kept alive by the table */
            lua_pop(L, 1);
        }
    } else {
        return luaL_error(L, "loupe.activations: give hook = \"name\" or hooks = {names} (one of them)");
    }
    lua_getfield(L, 1, "shards");
    if (!lua_isnil(L, -1)) { /* read back what s:save wrote; no model run */
        const char *dir = luaL_checkstring(L, -1);
        acts_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
        memset(u, 0, sizeof *u);
        luaL_setmetatable(L, ACTS_MT);
        if (!(u->names = lp_calloc(nh, sizeof *u->names, "the stream's hook names")))
            return lp_lua_backend_error(L, NULL);
        for (u->nh = 0; u->nh < nh; u->nh++)
            if (!(u->names[u->nh] = lp_strdup(names[u->nh], "the stream's hook names")))
                return lp_lua_backend_error(L, NULL);
        if (!(u->sh = lp_act_shards_open(dir, names, nh)))
            return lp_lua_backend_error(L, NULL);
        return 1;
    }
    lua_pop(L, 1);
    if (!mu)
        return luaL_error(L, "loupe.activations: no model (model = m)");
    const lp_model_config *c = &mu->m->cfg;
    lp_act_opts o = {.hooks = names, .nhooks = nh};
    o.ctx = (int)opt_int(L, 1, "ctx", c->n_ctx < 64 ? c->n_ctx : 64);
    o.batch = opt_int(L, 1, "batch", 4096);
    o.buffer = (int)opt_int(L, 1, "buffer", 16);
    o.run_rows = (int)opt_int(L, 1, "run_rows", 0);
    o.seed = (uint64_t)opt_int(L, 1, "seed", 1);
    o.norm_batches = (int)opt_int(L, 1, "norm_batches", 0);
    o.normalize = lp_lua_opt_bool(L, 1, "normalize", 0);
    o.prepend_bos = lp_lua_opt_bool(L, 1, "prepend_bos", c->bos >= 0);
    o.keep_special = lp_lua_opt_bool(L, 1, "keep_special", 0);
    acts_ud *u = lua_newuserdatauv(L, sizeof *u, 2); /* user values: the model, the dataset */
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, ACTS_MT);
    int ud = lua_gettop(L);
    lua_getfield(L, 1, "data");
    if (lua_istable(L, -1)) {
        size_t n = lua_rawlen(L, -1);
        if (!n)
            return luaL_error(L, "loupe.activations: data is an empty token table");
        if (!(u->tokens = lp_malloc(n * sizeof *u->tokens, "the stream's tokens")))
            return lp_lua_backend_error(L, "loupe.activations");
        for (size_t i = 0; i < n; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            int ok;
            lua_Integer id = lua_tointegerx(L, -1, &ok);
            if (!ok || id < 0 || id >= c->d_vocab)
                return luaL_error(L, "loupe.activations: data[%d] is not a token id of this model (0..%d)",
                                  (int)i + 1, c->d_vocab - 1);
            u->tokens[i] = (int32_t)id;
            lua_pop(L, 1);
        }
        o.tokens = u->tokens, o.ntokens = n;
    } else if (!lua_isnil(L, -1)) {
        o.data = lp_lua_check_dataset(L, -1, NULL);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, ud, 2);
    } else {
        return luaL_error(L, "loupe.activations: no data (a loupe.data dataset or a table of token ids)");
    }
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, ud, 1);
    if (!(u->s = lp_act_stream_new(mu->m, &o)))
        return lp_lua_backend_error(L, NULL); /* the message starts with "activations: " */
    lua_pushvalue(L, ud);
    return 1;
}

/* s:next() -> Tensor (batch x d), one per hook */
static int l_next(lua_State *L)
{
    acts_ud *u = check_acts(L, 1);
    size_t nh = nhooks(u);
    int64_t B = batch(u);
    float *rows[64];
    lua_settop(L, 1);
    for (size_t h = 0; h < nh; h++) {
        lp_tensor *t = lp_tensor_empty(2, (int64_t[]){B, dim(u, h)}, LP_DEVICE_CPU);
        lp_lua_push_tensor(L, t); /* raises when t is NULL; owned by Lua from here */
        rows[h] = t->data;
    }
    if ((u->s ? lp_act_stream_next(u->s, rows) : lp_act_shards_next(u->sh, rows)) < 0)
        return lp_lua_backend_error(L, "activations:next");
    if (u->sh)
        u->served += B;
    return (int)nh;
}

/* s:save(dir, batches [, per_shard]): the next batches written as shards */
static int l_save(lua_State *L)
{
    acts_ud *u = check_acts(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    lua_Integer n = luaL_checkinteger(L, 3), per = luaL_optinteger(L, 4, 16);
    if (!u->s)
        return luaL_error(L, "activations:save: this stream reads shards already");
    if (lp_act_stream_save(u->s, dir, n, per) < 0)
        return lp_lua_backend_error(L, "activations:save");
    return 0;
}

static int l_index(lua_State *L)
{
    acts_ud *u = check_acts(L, 1);
    const char *k = luaL_checkstring(L, 2);
    size_t nh = nhooks(u);
    if (!strcmp(k, "d")) {
        lua_pushinteger(L, dim(u, 0));
    } else if (!strcmp(k, "hooks") || !strcmp(k, "dims") || (!strcmp(k, "scale") && nh > 1)) {
        lua_createtable(L, (int)nh, 0);
        for (size_t h = 0; h < nh; h++) {
            if (k[0] == 'h')
                lua_pushstring(L, hook(u, h));
            else if (k[0] == 'd')
                lua_pushinteger(L, dim(u, h));
            else
                lua_pushnumber(L, u->s ? lp_act_stream_scale(u->s, h) : 1.0);
            lua_rawseti(L, -2, (lua_Integer)h + 1);
        }
    } else if (!strcmp(k, "scale")) {
        lua_pushnumber(L, u->s ? lp_act_stream_scale(u->s, 0) : 1.0); /* shards hold scaled rows */
    } else if (!strcmp(k, "tokens_seen")) {
        lua_pushinteger(L, served(u));
    } else if (!strcmp(k, "batch")) {
        lua_pushinteger(L, batch(u));
    } else if (!strcmp(k, "epoch")) {
        lua_pushinteger(L, u->s ? lp_act_stream_epoch(u->s) : served(u) / batch(u) / lp_act_shards_batches(u->sh));
    } else if (luaL_getmetafield(L, 1, "__methods") != LUA_TNIL) {
        lua_getfield(L, -1, k);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static int l_tostring(lua_State *L)
{
    acts_ud *u = luaL_checkudata(L, 1, ACTS_MT);
    if (!u->s && !u->sh) {
        lua_pushstring(L, "ActivationStream(freed)");
        return 1;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "ActivationStream(");
    for (size_t h = 0; h < nhooks(u); h++) {
        lua_pushfstring(L, "%s%s (d %d)", h ? ", " : "", hook(u, h), (int)dim(u, h));
        luaL_addvalue(&b);
    }
    lua_pushfstring(L, "; batch %d, %d tokens served%s)", (int)batch(u), (int)served(u), u->sh ? ", from shards" : "");
    luaL_addvalue(&b);
    luaL_pushresult(&b);
    return 1;
}

static int l_gc(lua_State *L)
{
    acts_ud *u = luaL_checkudata(L, 1, ACTS_MT);
    lp_act_stream_free(u->s);
    lp_act_shards_free(u->sh);
    free(u->tokens);
    for (size_t h = 0; u->names && h < u->nh; h++)
        free(u->names[h]);
    free(u->names);
    u->s = NULL, u->sh = NULL, u->tokens = NULL, u->names = NULL;
    return 0;
}

void lp_lua_open_acts(lua_State *L)
{
    luaL_newmetatable(L, ACTS_MT);
    lua_newtable(L);
    lp_lua_setfunc(L, -1, "next", l_next,
                   "s:next() -> Tensor, ...\nThe next batch: a batch x d Tensor per hook, rows aligned across hooks.");
    lp_lua_setfunc(L, -1, "save", l_save,
                   "s:save(dir, batches [, per_shard = 16])\nWrites the next `batches` batches to dir as safetensors "
                   "shards;\nloupe.activations{shards = dir, hook(s) = ...} reads them back in order (a sweep harvests once).");
    lua_setfield(L, -2, "__methods");
    lua_pushcfunction(L, l_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lp_lua_setfunc(L, -1, "activations", l_activations,
                   "loupe.activations{model = m, hook = name | hooks = {names}, data = dataset | {ids}, ctx = 64,\n"
                   "  batch = 4096, buffer = 16, seed = 1, normalize = false} -> ActivationStream\n"
                   "Runs m over windows of ctx tokens of data and serves the hook points' values in shuffled\n"
                   "batches (a mixing buffer of `buffer` batches: tokens of one document do not share a batch),\n"
                   "BOS and separator positions left out (keep_special = true keeps them). s:next() gives a\n"
                   "batch x d Tensor per hook (rows of the same tokens); s.d, s.hooks, s.tokens_seen, s.scale\n"
                   "(sqrt(d) / E||x|| with normalize = true, else 1), s.epoch. Options: prepend_bos (default:\n"
                   "when the model has one), run_rows (windows per model run), norm_batches (32).\n"
                   "With shards = dir (what s:save wrote) the batches are read back from disk instead (no model).");
}
