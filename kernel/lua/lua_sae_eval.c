/* sae:evaluate{model = m, data = dataset | {ids}, tokens = 20000, ctx = 64, batch = 8,
 * prepend_bos, keep_special} -> table of metrics (backend/dict/eval.h), shown as a table and
 * a log10 feature-density histogram (loupe.table, loupe.plot.hist). A thin binding: reads the
 * arguments, calls lp_sae_evaluate, pushes the result. Follows the contract in lua_api.h. */
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "dict/eval.h"
#include "lua_api.h"
#include "lua_data.h"
#include "lua_dict.h"
#include "lua_model_impl.h"

static lua_Integer opt_int(lua_State *L, int t, const char *key, lua_Integer def)
{
    lua_getfield(L, t, key);
    lua_Integer v = lua_isnil(L, -1) ? def : luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    return v;
}

static void set_num(lua_State *L, int t, const char *key, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, t, key);
}

/* The metrics as loupe.table rows and the density histogram, displayed now. */
static void show(lua_State *L, int res, int dead, int d_sae)
{
    static const char *const keys[] = {"l0", "l1", "mse", "cossim", "l2_ratio", "relative_reconstruction_bias",
                                       "explained_variance", "ce_loss_score", "kl_div_score", "ce_clean", "ce_sae",
                                       "ce_zero", "kl_sae", "kl_zero", "dead", "n_tokens"};
    lua_getglobal(L, "display");
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    int disp = lua_gettop(L);
    lua_getglobal(L, "loupe");
    int loupe = lua_gettop(L);
    lua_getfield(L, loupe, "table");
    lua_newtable(L);
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        lua_createtable(L, 2, 0);
        lua_pushstring(L, keys[i]);
        lua_rawseti(L, -2, 1);
        lua_getfield(L, res, keys[i]);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_createtable(L, 0, 2);
    lua_createtable(L, 2, 0);
    lua_pushstring(L, "metric");
    lua_rawseti(L, -2, 1);
    lua_pushstring(L, "value");
    lua_rawseti(L, -2, 2);
    lua_setfield(L, -2, "header");
    lua_pushstring(L, "SAE evaluation");
    lua_setfield(L, -2, "title");
    lua_call(L, 2, 1); /* the table figure */
    int nfig = 1;
    lua_getfield(L, loupe, "plot");
    lua_getfield(L, -1, "hist");
    lua_remove(L, -2);
    lua_newtable(L);
    lua_newtable(L);
    int n = 0;
    lua_getfield(L, res, "density");
    for (int i = 1; i <= d_sae; i++) {
        double v = (lua_rawgeti(L, -1, i), lua_tonumber(L, -1));
        lua_pop(L, 1);
        if (v > 0) {
            lua_pushnumber(L, log10(v));
            lua_rawseti(L, -3, ++n);
        }
    }
    lua_pop(L, 1);
    if (n > 0) {
        lua_setfield(L, -2, "values");
        lua_pushfstring(L, "feature density (%d live, %d dead)", n, dead);
        lua_setfield(L, -2, "title");
        lua_pushstring(L, "log10 fraction of tokens where the feature fires");
        lua_setfield(L, -2, "xlabel");
        lua_call(L, 1, 1);
        nfig++;
    } else {
        lua_pop(L, 3); /* values, arguments, hist */
    }
    lua_pushvalue(L, disp);
    for (int i = 0; i < nfig; i++)
        lua_pushvalue(L, loupe + 1 + i);
    lua_call(L, nfig, 0);
    lua_settop(L, disp - 1);
}

static int l_evaluate(lua_State *L)
{
    lp_sae *s = lp_lua_check_sae(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lua_getfield(L, 2, "model"); /* 3 */
    if (lua_isnil(L, 3))
        return luaL_error(L, "evaluate: no model (model = m)");
    model_ud *mu = check_model(L, 3);
    const lp_model_config *c = &mu->m->cfg;
    lp_sae_eval_opts o = {0};
    lua_getfield(L, 2, "data"); /* 4 */
    if (lua_istable(L, 4)) {
        size_t n = lua_rawlen(L, 4);
        int32_t *ids = lua_newuserdatauv(L, (n ? n : 1) * sizeof *ids, 0);
        for (size_t i = 0; i < n; i++) {
            int ok;
            lua_rawgeti(L, 4, (lua_Integer)i + 1);
            lua_Integer id = lua_tointegerx(L, -1, &ok);
            if (!ok || id < 0 || id >= c->d_vocab)
                return luaL_error(L, "evaluate: data[%d] is not a token id of this model (0..%d)", (int)i + 1,
                                  c->d_vocab - 1);
            ids[i] = (int32_t)id;
            lua_pop(L, 1);
        }
        o.tokens = ids, o.ntokens = n;
    } else if (!lua_isnil(L, 4)) {
        lp_dataset *d = lp_lua_check_dataset(L, 4, NULL);
        o.tokens = lp_dataset_ids(d), o.ntokens = lp_dataset_size(d);
    } else {
        return luaL_error(L, "evaluate: no data (a loupe.data dataset or a table of token ids)");
    }
    o.ctx = (int)opt_int(L, 2, "ctx", c->n_ctx > 0 && c->n_ctx < 64 ? c->n_ctx : 64);
    o.want = opt_int(L, 2, "tokens", 20000);
    o.batch = (int)opt_int(L, 2, "batch", 8);
    o.prepend_bos = lp_lua_opt_bool(L, 2, "prepend_bos", c->bos >= 0);
    o.keep_special = lp_lua_opt_bool(L, 2, "keep_special", 0);
    int quiet = lp_lua_opt_bool(L, 2, "quiet", 0);
    lp_sae_eval_result r;
    if (lp_sae_evaluate(mu->m, s, &o, &r) < 0)
        return lp_lua_backend_error(L, NULL);
    lua_createtable(L, 0, 20);
    int res = lua_gettop(L);
    set_num(L, res, "l0", r.m.l0);
    set_num(L, res, "l1", r.m.l1);
    set_num(L, res, "mse", r.m.mse);
    set_num(L, res, "cossim", r.m.cossim);
    set_num(L, res, "l2_ratio", r.m.l2_ratio);
    set_num(L, res, "relative_reconstruction_bias", r.m.relative_reconstruction_bias);
    set_num(L, res, "explained_variance", r.m.explained_variance);
    set_num(L, res, "ce_loss_score", r.ce_loss_score);
    set_num(L, res, "kl_div_score", r.kl_div_score);
    set_num(L, res, "ce_clean", r.ce_clean);
    set_num(L, res, "ce_sae", r.ce_sae);
    set_num(L, res, "ce_zero", r.ce_zero);
    set_num(L, res, "kl_sae", r.kl_sae);
    set_num(L, res, "kl_zero", r.kl_zero);
    lua_pushinteger(L, r.m.dead);
    lua_setfield(L, res, "dead");
    lua_pushinteger(L, (lua_Integer)r.m.n_tokens);
    lua_setfield(L, res, "n_tokens");
    lua_pushinteger(L, r.positions);
    lua_setfield(L, res, "positions");
    lua_createtable(L, r.d_sae, 0);
    for (int i = 0; i < r.d_sae; i++) {
        lua_pushnumber(L, r.density[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, res, "density");
    int dead = r.m.dead, d_sae = r.d_sae;
    free(r.density); /* copied: nothing leaks if showing raises */
    if (!quiet)
        show(L, res, dead, d_sae);
    return 1;
}

void lp_lua_open_sae_eval(lua_State *L)
{
    if (!luaL_getmetatable(L, LP_LUA_SAE_MT)) {
        lua_pop(L, 1);
        return;
    }
    if (lua_getfield(L, -1, "__methods") != LUA_TTABLE) {
        lua_pop(L, 2);
        return;
    }
    lp_lua_setfunc(L, -1, "evaluate", l_evaluate,
                   "sae:evaluate{model = m, data = dataset | {ids}, tokens = 20000, ctx = 64, batch = 8\n"
                   "             [, prepend_bos, keep_special, quiet]} -> table\n"
                   "Runs the model over `tokens` positions of data three times (clean, with the SAE's\n"
                   "reconstruction in place of its hook, with the hook zero-ablated) and returns l0, l1, mse,\n"
                   "cossim, l2_ratio, relative_reconstruction_bias, explained_variance (pooled),\n"
                   "ce_loss_score, kl_div_score, dead and density (per feature); BOS and EOS positions are\n"
                   "left out unless keep_special. Shows the metrics and a log10 density histogram.");
    lua_pop(L, 2);
}
