/* Graph methods beyond the basics (lua_graph.c):
 *   g:qk{layer, head, query, key [, k = 10, model, transcoders]}   QK attribution (attrib/qk.h)
 *   g:supernodes{threshold = 0.9, layer_gap = 1, labels = true}    automatic supernodes (attrib/supernodes.h)
 * Layers and heads count from 0 (as node ids and L{layer}H{head}); query and key are
 * positions as g.nodes' `pos` counts them, from 1. The model and transcoders are those of
 * loupe.attribute (kept with the graph, third user value) unless given. */
#include <jansson.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/qk.h"
#include "attrib/supernodes.h"
#include "core/error.h"
#include "lua_api.h"
#include "lua_dict.h"
#include "lua_graph_extra.h"
#include "lua_model_impl.h"

#define GRAPH_MT "loupe.Graph"

typedef struct {
    lp_graph *g;
} graph_ud; /* lua_graph.c's layout */

static lp_graph *check_graph(lua_State *L, int idx)
{
    graph_ud *u = luaL_checkudata(L, idx, GRAPH_MT);
    if (!u->g)
        luaL_error(L, "the graph has been freed");
    return u->g;
}

void lp_lua_graph_keep_model(lua_State *L, int idx, int opts)
{
    idx = lua_absindex(L, idx), opts = lua_absindex(L, opts);
    lua_createtable(L, 0, 2);
    lua_getfield(L, opts, "model"), lua_setfield(L, -2, "model");
    lua_getfield(L, opts, "transcoders"), lua_setfield(L, -2, "transcoders");
    lua_setiuservalue(L, idx, 3);
}

static lua_Integer need_int(lua_State *L, int t, const char *key, const char *fn)
{
    lua_getfield(L, t, key);
    if (!lua_isinteger(L, -1))
        luaL_error(L, "%s: %s must be an integer (got %s)", fn, key, luaL_typename(L, -1));
    lua_Integer v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

/* the option key of t, else the graph's kept one; pushed */
static void model_part(lua_State *L, int self, int t, const char *key)
{
    if (lua_getfield(L, t, key) != LUA_TNIL)
        return;
    lua_pop(L, 1);
    if (lua_getiuservalue(L, self, 3) == LUA_TTABLE) {
        lua_getfield(L, -1, key);
        lua_remove(L, -2);
    }
    if (lua_isnil(L, -1))
        luaL_error(L, "g:qk: the graph keeps no %s (it was loaded from a file?): pass %s = ...", key, key);
}

static void push_pairs(lua_State *L, json_t *a, int pair)
{
    size_t n = json_array_size(a);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(a, i);
        lua_createtable(L, 0, 3);
        if (pair) {
            lua_pushstring(L, json_string_value(json_array_get(x, 0))), lua_setfield(L, -2, "q");
            lua_pushstring(L, json_string_value(json_array_get(x, 1))), lua_setfield(L, -2, "k");
        } else {
            lua_pushstring(L, json_string_value(json_array_get(x, 0))), lua_setfield(L, -2, "id");
        }
        lua_pushnumber(L, json_number_value(json_array_get(x, pair ? 2 : 1))), lua_setfield(L, -2, "value");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static int graph_qk(lua_State *L)
{
    lp_graph *g = check_graph(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *fn = "g:qk";
    lua_Integer layer = need_int(L, 2, "layer", fn), head = need_int(L, 2, "head", fn);
    lua_Integer qp = need_int(L, 2, "query", fn), kp = need_int(L, 2, "key", fn);
    lua_Integer k = 10;
    if (lua_getfield(L, 2, "k") != LUA_TNIL) {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > 100000)
            luaL_error(L, "g:qk: k must be an integer in 1..100000");
        k = lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    if (qp < 1 || qp > g->n_tokens || kp < 1 || kp > qp)
        luaL_error(L, "g:qk: need 1 <= key <= query <= %d (positions as g.nodes' pos; got query %d, key %d)",
                   g->n_tokens, (int)qp, (int)kp);
    if (layer < 0 || layer > 1 << 20 || head < 0 || head > 1 << 20)
        luaL_error(L, "g:qk: layer and head count from 0");
    for (int t = 0; t < g->n_tokens; t++)
        if (g->tokens[t] < 0)
            luaL_error(L, "g:qk: the graph does not know the token id at position %d", t + 1);
    model_part(L, 1, 2, "model");
    model_ud *mu = check_model(L, -1);
    model_part(L, 1, 2, "transcoders");
    lp_transcoder_set *set;
    lp_clt *clt;
    lp_lua_check_transcoders(L, -1, &set, &clt);
    if (!set)
        luaL_error(L, "g:qk: cross-layer transcoders are not supported yet; use a per-layer transcoder set");
    for (int t = 0; t < g->n_tokens; t++)
        if (g->tokens[t] >= mu->m->cfg.d_vocab)
            luaL_error(L, "g:qk: token %d of the graph is not in this model's vocabulary", t + 1);
    lp_qk *q = lp_qk_compute(mu->m, set, g->tokens, g->n_tokens, (int)layer, (int)head, (int)qp - 1, (int)kp - 1);
    if (!q)
        return lp_lua_backend_error(L, fn);
    json_t *o = lp_qk_json(q, (int)k);
    int rc = o ? lp_graph_add_qk(g, q, (int)k) : -1;
    lp_qk_free(q);
    if (rc < 0) {
        json_decref(o);
        return lp_lua_backend_error(L, fn);
    }
    lua_createtable(L, 0, 10);
    lua_pushinteger(L, layer), lua_setfield(L, -2, "layer");
    lua_pushinteger(L, head), lua_setfield(L, -2, "head");
    lua_pushinteger(L, qp), lua_setfield(L, -2, "query");
    lua_pushinteger(L, kp), lua_setfield(L, -2, "key");
    lua_pushnumber(L, json_number_value(json_object_get(o, "score"))), lua_setfield(L, -2, "score");
    lua_pushnumber(L, json_number_value(json_object_get(o, "total"))), lua_setfield(L, -2, "total");
    push_pairs(L, json_object_get(o, "pair_wise_contributors"), 1), lua_setfield(L, -2, "pairs");
    push_pairs(L, json_object_get(o, "top_q_marginal_contributors"), 0), lua_setfield(L, -2, "q_top");
    push_pairs(L, json_object_get(o, "top_k_marginal_contributors"), 0), lua_setfield(L, -2, "k_top");
    json_decref(o);
    return 1;
}

static int graph_supernodes(lua_State *L)
{
    lp_graph *g = check_graph(L, 1);
    lp_supernode_opts o = lp_supernode_defaults();
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "threshold") != LUA_TNIL) {
            if (!lua_isnumber(L, -1))
                luaL_error(L, "g:supernodes: threshold must be a number (a cosine in [-1, 1])");
            o.threshold = lua_tonumber(L, -1);
        }
        if (lua_getfield(L, 2, "layer_gap") != LUA_TNIL) {
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > 1 << 20)
                luaL_error(L, "g:supernodes: layer_gap must be an integer >= 0");
            o.layer_gap = (int)lua_tointeger(L, -1);
        }
        o.labels = lp_lua_opt_bool(L, 2, "labels", 1);
        lua_settop(L, 2);
    }
    int *group = lua_newuserdatauv(L, (size_t)(g->n_nodes ? g->n_nodes : 1) * sizeof(int), 0); /* freed by Lua */
    int ng = lp_graph_supernodes(g, &o, group);
    if (ng < 0)
        return lp_lua_backend_error(L, "g:supernodes");
    int *size = lua_newuserdatauv(L, (size_t)(ng ? ng : 1) * sizeof(int), 0); /* stays on the stack */
    memset(size, 0, (size_t)(ng ? ng : 1) * sizeof(int));
    for (int i = 0; i < g->n_nodes; i++)
        size[group[i]]++;
    lp_graph *h = lp_graph_coarsen(g, group, ng);
    lp_lua_push_graph(L, h, 0, "g:supernodes");
    lua_getiuservalue(L, 1, 3);
    lua_setiuservalue(L, -2, 3);
    /* the groups: {{index, name, ids}} for every group of several nodes */
    lua_newtable(L);
    int n = 0;
    for (int k = 0; k < ng; k++) {
        if (size[k] < 2)
            continue;
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, k + 1), lua_setfield(L, -2, "index");
        lua_pushstring(L, h->nodes[k].label ? h->nodes[k].label : ""), lua_setfield(L, -2, "name");
        lua_createtable(L, size[k], 0);
        for (int i = 0, j = 0; i < g->n_nodes; i++)
            if (group[i] == k)
                lua_pushstring(L, g->nodes[i].id), lua_rawseti(L, -2, ++j);
        lua_setfield(L, -2, "ids");
        lua_rawseti(L, -2, ++n);
    }
    return 2;
}

void lp_lua_graph_extra_methods(lua_State *L, int methods)
{
    lp_lua_setfunc(L, methods, "supernodes", graph_supernodes,
                   "g:supernodes{threshold = 0.9, layer_gap = 1, labels = true} -> Graph, {{index, name, ids}}\n"
                   "Automatic supernodes: features at the same position, with layers at most layer_gap apart, whose "
                   "edge profiles (inputs and outputs) have a cosine of at least threshold, and whose labels share "
                   "half their words when both have one (labels = false: ignore labels), grouped (single linkage). "
                   "Returns the coarsened graph (one node per group, named from its members' labels or "
                   "\"L{layer} P{pos} \xc3\x97n\"; edges the sums of the members' edges between groups) and the "
                   "groups of several nodes (index: the node in the coarsened graph). Its g:save records the groups "
                   "as qParams supernodes.");
    lp_lua_setfunc(L, methods, "qk", graph_qk,
                   "g:qk{layer, head, query, key [, k = 10, model, transcoders]} -> {score, total, pairs = {{q, k, "
                   "value}}, q_top = {{id, value}}, k_top = {{id, value}}}\nQK attribution: head `head` of layer "
                   "`layer` (both from 0), its pre-softmax attention score from position `query` to `key` (from 1, "
                   "as node pos) decomposed, with the norm scales and earlier attention patterns frozen, into pairs "
                   "of a query-side and a key-side term: features, errors and embeddings (node ids), pos_embed, "
                   "bias, bos_mlp (position 0's MLP outputs). The k largest pairs and marginals (a term against the "
                   "whole other side); they add up to score. Recorded in the graph: g:save writes it as "
                   "qk_tracing_results. The model and transcoders are loupe.attribute's unless given.");
}
