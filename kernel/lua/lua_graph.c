/* Lua bindings of attribution graphs (backend/attrib/graph.h):
 *
 *   g = loupe.attribute{model = m, transcoders = tcs, prompt = "..." | tokens = {...},
 *                       target = " Oslo" | {" Oslo", " Paris"}, max_n_logits = 10,
 *                       desired_logit_prob = 0.95, batch = 32, node_threshold = 0.8,
 *                       edge_threshold = 0.98, prune = true, scan = "...", slug = "..."}
 *   g.nodes, g.adjacency, g.scores, g.full, g:prune{...}, g:inputs(id, k), g:outputs(id, k),
 *   g:paths{k = 5}, g:node(id), g:save(path), loupe.graph.load(path)
 *
 * Objects: "loupe.Graph" holds one lp_graph*; its first user value is the full (unpruned)
 * graph it was pruned from (a loupe.Graph, or nil), its second the cached g.nodes table.
 * A node is named by its 1-based index or its id string (the file's node_id). Layers and
 * feature indices count from 0 as in the ids; `pos` counts from 1 (Lua), `ctx_idx` from 0.
 * Follows the contract in lua_api.h. */
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/graph.h"
#include "core/buf.h"
#include "circuit.h"
#include "core/error.h"
#include "html.h"
#include "lua_api.h"
#include "lua_dict.h"
#include "lua_plot.h"
#include "lua_model_impl.h"
#include "lua_tensor.h"

#include "lua_graph_extra.h"

#define GRAPH_MT "loupe.Graph"

typedef struct {
    lp_graph *g;
} graph_ud;

static lp_graph *check_graph(lua_State *L, int idx)
{
    graph_ud *u = luaL_checkudata(L, idx, GRAPH_MT);
    if (!u->g)
        luaL_error(L, "the graph has been freed");
    return u->g;
}

/* Pushes g as a loupe.Graph (taking it; NULL raises lp_last_error() for what), with full
 * (a stack index of the graph it was pruned from, or 0). */
static void push_graph(lua_State *L, lp_graph *g, int full, const char *what)
{
    if (!g)
        lp_lua_backend_error(L, what);
    full = full ? lua_absindex(L, full) : 0;
    graph_ud *u = lua_newuserdatauv(L, sizeof *u, 3); /* 3: {model, transcoders} (lua_graph_extra.c) */
    u->g = g;
    luaL_setmetatable(L, GRAPH_MT);
    if (full) {
        lua_pushvalue(L, full);
        lua_setiuservalue(L, -2, 1);
    }
}

void lp_lua_push_graph(lua_State *L, lp_graph *g, int full, const char *what)
{
    push_graph(L, g, full, what);
}

static int graph_gc(lua_State *L)
{
    graph_ud *u = luaL_checkudata(L, 1, GRAPH_MT);
    lp_graph_free(u->g);
    u->g = NULL;
    return 0;
}

/* ---- options ---- */

static double opt_num(lua_State *L, int t, const char *key, double def, double lo, double hi)
{
    int ty = lua_getfield(L, t, key);
    double v = def;
    if (ty != LUA_TNIL) {
        if (!lua_isnumber(L, -1))
            luaL_error(L, "%s must be a number", key);
        v = lua_tonumber(L, -1);
        if (!(v >= lo && v <= hi))
            luaL_error(L, "%s must be in [%g, %g] (got %g)", key, lo, hi, v);
    }
    lua_pop(L, 1);
    return v;
}

static const char *opt_string(lua_State *L, int t, const char *key)
{
    int ty = lua_getfield(L, t, key);
    const char *s = NULL;
    if (ty == LUA_TSTRING)
        s = lua_tostring(L, -1);
    else if (ty != LUA_TNIL)
        luaL_error(L, "%s must be a string", key);
    lua_pop(L, 1); /* the string stays alive in the options table */
    return s;
}

/* ---- node tables ---- */

static void push_node(lua_State *L, const lp_graph *g, int i)
{
    const lp_graph_node *d = &g->nodes[i];
    lua_createtable(L, 0, 14);
    lua_pushinteger(L, i + 1), lua_setfield(L, -2, "index");
    lua_pushstring(L, d->id), lua_setfield(L, -2, "id");
    lua_pushstring(L, lp_node_kind_name(d->kind)), lua_setfield(L, -2, "kind");
    lua_pushinteger(L, d->layer), lua_setfield(L, -2, "layer");
    lua_pushinteger(L, d->pos + 1), lua_setfield(L, -2, "pos");
    lua_pushinteger(L, d->pos), lua_setfield(L, -2, "ctx_idx");
    if (d->kind == LP_NODE_FEATURE) {
        lua_pushinteger(L, d->feature), lua_setfield(L, -2, "feature");
        lua_pushnumber(L, d->activation), lua_setfield(L, -2, "activation");
    }
    if (d->token >= 0)
        lua_pushinteger(L, d->token), lua_setfield(L, -2, "token");
    if (d->text)
        lua_pushstring(L, d->text), lua_setfield(L, -2, "text");
    if (d->kind == LP_NODE_LOGIT) {
        lua_pushnumber(L, d->prob), lua_setfield(L, -2, "prob");
        lua_pushboolean(L, d->is_target), lua_setfield(L, -2, "is_target");
    }
    if (!isnan(d->influence))
        lua_pushnumber(L, d->influence), lua_setfield(L, -2, "influence");
    if (d->label)
        lua_pushstring(L, d->label), lua_setfield(L, -2, "label");
}

/* A node argument: a 1-based index or an id string; returns the 0-based index. */
static int check_node(lua_State *L, const lp_graph *g, int idx)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        int i = lp_graph_find(g, lua_tostring(L, idx));
        if (i < 0)
            luaL_error(L, "the graph has no node '%s'", lua_tostring(L, idx));
        return i;
    }
    if (lua_type(L, idx) == LUA_TTABLE) { /* a node table */
        lua_getfield(L, idx, "index");
        lua_Integer k = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
        lua_pop(L, 1);
        if (k >= 1 && k <= g->n_nodes)
            return (int)k - 1;
        luaL_error(L, "the node table has no valid index");
    }
    if (!lua_isinteger(L, idx))
        luaL_error(L, "a node is a 1-based index or an id string (got %s)", luaL_typename(L, idx));
    lua_Integer k = lua_tointeger(L, idx);
    if (k < 1 || k > g->n_nodes)
        luaL_error(L, "node %d out of range (1..%d)", (int)k, g->n_nodes);
    return (int)k - 1;
}

static void push_nodes(lua_State *L, int self, const lp_graph *g)
{
    if (lua_getiuservalue(L, self, 2) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_createtable(L, g->n_nodes, 0);
    for (int i = 0; i < g->n_nodes; i++) {
        push_node(L, g, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, self, 2);
}

static void push_string_list(lua_State *L, char *const *s, int n)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, s[i] ? s[i] : "");
        lua_rawseti(L, -2, i + 1);
    }
}

static int graph_index(lua_State *L)
{
    lp_graph *g = check_graph(L, 1);
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    luaL_getmetatable(L, GRAPH_MT);
    lua_getfield(L, -1, "__methods");
    if (k && lua_getfield(L, -1, k) != LUA_TNIL)
        return 1;
    if (!k) {
        lua_pushnil(L);
    } else if (!strcmp(k, "nodes")) {
        push_nodes(L, 1, g);
    } else if (!strcmp(k, "n_nodes")) {
        lua_pushinteger(L, g->n_nodes);
    } else if (!strcmp(k, "n_edges")) {
        lua_pushinteger(L, lp_graph_n_edges(g));
    } else if (!strcmp(k, "adjacency")) {
        int64_t sh[2] = {g->n_nodes, g->n_nodes};
        lp_tensor *t = lp_tensor_empty_for("graph adjacency", 2, sh, LP_DEVICE_CPU);
        if (t)
            lp_graph_dense(g, t->data);
        lp_lua_push_tensor(L, t);
    } else if (!strcmp(k, "scores")) {
        lua_createtable(L, 0, 2);
        lua_pushnumber(L, g->replacement), lua_setfield(L, -2, "replacement");
        lua_pushnumber(L, g->completeness), lua_setfield(L, -2, "completeness");
    } else if (!strcmp(k, "tokens")) {
        lua_createtable(L, g->n_tokens, 0);
        for (int t = 0; t < g->n_tokens; t++)
            lua_pushinteger(L, g->tokens[t]), lua_rawseti(L, -2, t + 1);
    } else if (!strcmp(k, "prompt_tokens")) {
        push_string_list(L, g->token_text, g->n_tokens);
    } else if (!strcmp(k, "prompt")) {
        lua_pushstring(L, g->prompt ? g->prompt : "");
    } else if (!strcmp(k, "n_layers")) {
        lua_pushinteger(L, g->n_layers);
    } else if (!strcmp(k, "logits")) {
        lua_newtable(L);
        for (int i = 0, n = 0; i < g->n_nodes; i++)
            if (g->nodes[i].kind == LP_NODE_LOGIT)
                push_node(L, g, i), lua_rawseti(L, -2, ++n);
    } else if (!strcmp(k, "full")) {
        lua_getiuservalue(L, 1, 1);
    } else if (!strcmp(k, "metadata")) {
        lua_createtable(L, 0, 8);
        const char *names[] = {"model", "scan", "slug", "generator", "version"};
        const char *vals[] = {g->model, g->scan, g->slug, g->generator, g->generator_version};
        for (int i = 0; i < 5; i++)
            if (vals[i])
                lua_pushstring(L, vals[i]), lua_setfield(L, -2, names[i]);
        if (!isnan(g->node_threshold))
            lua_pushnumber(L, g->node_threshold), lua_setfield(L, -2, "node_threshold");
        if (!isnan(g->edge_threshold))
            lua_pushnumber(L, g->edge_threshold), lua_setfield(L, -2, "edge_threshold");
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static int graph_len(lua_State *L)
{
    lua_pushinteger(L, check_graph(L, 1)->n_nodes);
    return 1;
}

/* ---- methods ---- */

static int graph_node(lua_State *L)
{
    lp_graph *g = check_graph(L, 1);
    push_node(L, g, check_node(L, g, 2));
    return 1;
}

static int push_links(lua_State *L, int inputs)
{
    lp_graph *g = check_graph(L, 1);
    int i = check_node(L, g, 2);
    lua_Integer k = luaL_optinteger(L, 3, 10);
    if (k < 0 || k > (1 << 30))
        luaL_error(L, "k must be >= 0 (0: all)");
    lp_graph_link *l;
    int n = inputs ? lp_graph_in(g, i, (int)k, &l) : lp_graph_out(g, i, (int)k, &l);
    if (n < 0)
        return lp_lua_backend_error(L, inputs ? "g:inputs" : "g:outputs");
    lua_createtable(L, n, 0);
    for (int j = 0; j < n; j++) {
        const lp_graph_node *d = &g->nodes[l[j].node];
        lua_createtable(L, 0, 4);
        lua_pushinteger(L, l[j].node + 1), lua_setfield(L, -2, "index");
        lua_pushstring(L, d->id), lua_setfield(L, -2, "id");
        lua_pushstring(L, lp_node_kind_name(d->kind)), lua_setfield(L, -2, "kind");
        lua_pushnumber(L, l[j].weight), lua_setfield(L, -2, "weight");
        lua_rawseti(L, -2, j + 1);
    }
    free(l);
    return 1;
}

static int graph_inputs(lua_State *L)
{
    return push_links(L, 1);
}

static int graph_outputs(lua_State *L)
{
    return push_links(L, 0);
}

static int graph_paths(lua_State *L)
{
    lp_graph *g = check_graph(L, 1);
    lua_Integer k = 5;
    int from = -1, to = -1;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        k = (lua_Integer)opt_num(L, 2, "k", 5, 1, 100000);
        if (lua_getfield(L, 2, "from") != LUA_TNIL)
            from = check_node(L, g, lua_gettop(L));
        if (lua_getfield(L, 2, "to") != LUA_TNIL)
            to = check_node(L, g, lua_gettop(L));
        lua_pop(L, 2);
    }
    lp_graph_path *p;
    int n = lp_graph_paths(g, (int)k, from, to, &p);
    if (n < 0)
        return lp_lua_backend_error(L, "g:paths");
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 4);
        lua_pushnumber(L, p[i].score), lua_setfield(L, -2, "score");
        lua_pushinteger(L, p[i].sign), lua_setfield(L, -2, "sign");
        lua_createtable(L, p[i].n, 0);
        for (int j = 0; j < p[i].n; j++)
            lua_pushinteger(L, p[i].nodes[j] + 1), lua_rawseti(L, -2, j + 1);
        lua_setfield(L, -2, "nodes");
        lua_createtable(L, p[i].n, 0);
        for (int j = 0; j < p[i].n; j++)
            lua_pushstring(L, g->nodes[p[i].nodes[j]].id), lua_rawseti(L, -2, j + 1);
        lua_setfield(L, -2, "ids");
        lua_rawseti(L, -2, i + 1);
    }
    lp_graph_paths_free(p, n);
    return 1;
}

static int graph_prune(lua_State *L)
{
    check_graph(L, 1);
    double nt = 0.8, et = 0.98;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        nt = opt_num(L, 2, "node_threshold", 0.8, 0, 1);
        et = opt_num(L, 2, "edge_threshold", 0.98, 0, 1);
    }
    /* prune the full graph when this one was pruned from one */
    int src = 1;
    if (lua_getiuservalue(L, 1, 1) != LUA_TNIL)
        src = lua_gettop(L);
    lp_graph *g = check_graph(L, src);
    push_graph(L, lp_graph_prune(g, nt, et), src, "g:prune");
    lua_getiuservalue(L, src, 3); /* the model and transcoders, for g:qk */
    lua_setiuservalue(L, -2, 3);
    return 1;
}

static int graph_save(lua_State *L)
{
    lp_graph *g = check_graph(L, 1);
    const char *path = luaL_checkstring(L, 2);
    if (lp_graph_save_json(g, path) < 0)
        return lp_lua_backend_error(L, "g:save");
    lua_settop(L, 1);
    return 1;
}

static int graph_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    push_graph(L, lp_graph_load_json(path), 0, "loupe.graph.load");
    return 1;
}

/* ---- display: a summary, and the circuit diagram (display/circuit.h) ---- */

/* The edges a graph's diagram embeds for its script (a node's inputs and outputs, the
 * canvas): about 25 bytes each, so 20,000 are about 500 KB; g:diagram{max_data_edges} up to
 * 100,000. */
#define GRAPH_DATA_EDGES 20000


static void summary(lp_buf *b, const lp_graph *g)
{
    int nf = 0, ne = 0, nt = 0, nl = 0;
    for (int i = 0; i < g->n_nodes; i++)
        switch (g->nodes[i].kind) {
        case LP_NODE_FEATURE: nf++; break;
        case LP_NODE_ERROR: ne++; break;
        case LP_NODE_EMBEDDING: nt++; break;
        case LP_NODE_LOGIT: nl++; break;
        }
    lp_buf_printf(b, "attribution graph: %d nodes (%d features, %d errors, %d embeddings, %d logits), %lld edges\n",
                  g->n_nodes, nf, ne, nt, nl, (long long)lp_graph_n_edges(g));
    lp_buf_printf(b, "prompt: %d tokens", g->n_tokens);
    if (g->model)
        lp_buf_printf(b, "; model %s", g->model);
    if (g->scan && *g->scan)
        lp_buf_printf(b, "; transcoders %s", g->scan);
    lp_buf_putc(b, '\n');
    if (!isnan(g->replacement))
        lp_buf_printf(b, "scores: replacement %.4f, completeness %.4f\n", g->replacement, g->completeness);
    if (!isnan(g->node_threshold))
        lp_buf_printf(b, "pruned at node_threshold %.3g, edge_threshold %.3g\n", g->node_threshold,
                      isnan(g->edge_threshold) ? 0.0 : g->edge_threshold);
    lp_buf_puts(b, "logits:");
    for (int i = 0, k = 0; i < g->n_nodes && k < 10; i++)
        if (g->nodes[i].kind == LP_NODE_LOGIT)
            lp_buf_printf(b, "%s \"%s\" %.3f", k++ ? "," : "", g->nodes[i].text ? g->nodes[i].text : "?",
                          (double)g->nodes[i].prob);
    lp_buf_putc(b, '\n');
    lp_graph_path *p = NULL;
    int n = g->n_nodes <= 4000 ? lp_graph_paths(g, 3, -1, -1, &p) : 0; /* quadratic: small graphs only */
    for (int i = 0; i < n; i++) {
        lp_buf_printf(b, "path %d (%.3g): ", i + 1, p[i].score);
        for (int j = 0; j < p[i].n; j++)
            lp_buf_printf(b, "%s%s", j ? " -> " : "", g->nodes[p[i].nodes[j]].id);
        lp_buf_putc(b, '\n');
    }
    if (n > 0)
        lp_graph_paths_free(p, n);
}

static int graph_tostring(lua_State *L)
{
    lp_buf b = LP_BUF_INIT;
    summary(&b, check_graph(L, 1));
    char *s = lp_buf_finish(&b);
    if (!s)
        return lp_lua_backend_error(L, NULL);
    lua_pushstring(L, s);
    free(s);
    return 1;
}

/* The graph as display/circuit.h's plain description, drawn. Influence: the graph keeps the
 * cumulative share at a node's rank (lower = more important), the diagram wants larger =
 * more important. The edges are every non-zero entry; the diagram draws the strongest. */
static json_t *graph_diagram(const lp_graph *g, const lp_circuit_opts *o)
{
    json_t *bundle = NULL;
    int n = g->n_nodes;
    int64_t ne = lp_graph_n_edges(g), k = 0;
    lp_circuit_node *nodes = lp_calloc((size_t)(n ? n : 1), sizeof *nodes, "the diagram's nodes");
    lp_circuit_edge *edges = lp_calloc((size_t)(ne ? ne : 1), sizeof *edges, "the diagram's edges");
    lp_graph_path *p = NULL;
    lp_circuit_path *cp = NULL;
    int np = 0;
    if (!nodes || !edges || ne > INT32_MAX)
        goto out;
    for (int i = 0; i < n; i++) {
        const lp_graph_node *gn = &g->nodes[i];
        lp_circuit_node *c = &nodes[i];
        c->kind = gn->kind == LP_NODE_FEATURE ? LP_CIRCUIT_FEATURE
                  : gn->kind == LP_NODE_ERROR ? LP_CIRCUIT_ERROR
                  : gn->kind == LP_NODE_EMBEDDING ? LP_CIRCUIT_EMBEDDING
                                                  : LP_CIRCUIT_LOGIT;
        c->layer = gn->layer, c->pos = gn->pos;
        c->feature = gn->kind == LP_NODE_FEATURE ? gn->feature : gn->kind == LP_NODE_ERROR ? -1 : (int)gn->token;
        c->activation = gn->activation;
        c->influence = isfinite(gn->influence) ? 1.0f - gn->influence : 0.0f;
        c->prob = gn->prob;
        c->label = gn->kind == LP_NODE_LOGIT || gn->kind == LP_NODE_EMBEDDING ? gn->text : gn->label;
    }
    for (int t = 0; t < n; t++)
        for (int s = 0; s < n && k < ne; s++) {
            float w = lp_graph_edge(g, t, s);
            if (w != 0)
                edges[k++] = (lp_circuit_edge){.src = s, .dst = t, .weight = w};
        }
    if (n <= 4000) { /* the graph's own path search is quadratic; beyond, the diagram's */
        np = lp_graph_paths(g, o && o->max_paths > 0 ? o->max_paths : 10, -1, -1, &p);
        if (np < 0)
            goto out;
        cp = lp_calloc((size_t)(np ? np : 1), sizeof *cp, "the diagram's paths");
        if (!cp)
            goto out;
        for (int i = 0; i < np; i++)
            cp[i] = (lp_circuit_path){.n = p[i].n, .nodes = p[i].nodes, .score = p[i].score * p[i].sign};
    }
    lp_circuit c = {.n_nodes = n, .nodes = nodes, .n_edges = (int)k, .edges = edges, .n_tokens = g->n_tokens,
                    .tokens = (const char *const *)g->token_text, .n_layers = g->n_layers,
                    .replacement_score = g->replacement, .completeness_score = g->completeness,
                    .n_paths = np, .paths = cp, .title = g->prompt};
    lp_circuit_group *cg = g->n_groups ? lp_calloc((size_t)g->n_groups, sizeof *cg, "the diagram's supernodes") : NULL;
    if (g->n_groups && !cg)
        goto out;
    for (int i = 0; i < g->n_groups; i++)
        cg[i] = (lp_circuit_group){g->groups[i].name, g->groups[i].n, g->groups[i].ids};
    c.n_pinned = g->n_pinned, c.pinned = g->pinned, c.n_groups = g->n_groups, c.groups = cg;
    bundle = lp_circuit_display(&c, o);
    free(cg);
out:
    if (np > 0)
        lp_graph_paths_free(p, np);
    free(cp), free(nodes), free(edges);
    return bundle;
}

/* g's display: the circuit diagram (with its scores and tables), under a line saying what
 * the graph is; text/plain the summary. */
static int graph_display(lua_State *L)
{
    lp_graph *g = check_graph(L, 1);
    lp_buf b = LP_BUF_INIT, h = LP_BUF_INIT;
    summary(&b, g);
    char *s = lp_buf_finish(&b);
    const lp_circuit_opts o = {.max_data_edges = GRAPH_DATA_EDGES};
    json_t *d = s ? graph_diagram(g, &o) : NULL;
    if (!d) {
        free(s);
        return lp_lua_backend_error(L, "the graph's display");
    }
    const char *first = strchr(s, '\n');
    lp_buf_puts(&h, "<div style=\"font-family:sans-serif;font-size:12px;margin:0 0 4px 0\">");
    lp_html_escape(&h, s, first ? (size_t)(first - s) : strlen(s));
    lp_buf_puts(&h, "</div>");
    const char *dh = json_string_value(json_object_get(d, "text/html"));
    lp_buf_puts(&h, dh ? dh : "");
    char *hs = lp_buf_finish(&h);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, s), lua_setfield(L, -2, "text/plain");
    lua_pushstring(L, hs ? hs : ""), lua_setfield(L, -2, "text/html");
    free(s), free(hs);
    json_decref(d);
    return 1;
}

/* g:diagram{max_edges, max_per_cell, max_paths, max_table_nodes, max_data_edges} -> Figure */
static int graph_diagram_fig(lua_State *L)
{
    lp_graph *g = check_graph(L, 1);
    lp_circuit_opts o = {0};
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        o.max_edges = (int)opt_num(L, 2, "max_edges", 0, 0, 1 << 20);
        o.max_per_cell = (int)opt_num(L, 2, "max_per_cell", 0, 0, 1 << 20);
        o.max_paths = (int)opt_num(L, 2, "max_paths", 0, 0, 1 << 20);
        o.max_table_nodes = (int)opt_num(L, 2, "max_table_nodes", 0, 0, 1 << 20);
        o.max_data_edges = (int)opt_num(L, 2, "max_data_edges", GRAPH_DATA_EDGES, 1, 100000);
    } else {
        o.max_data_edges = GRAPH_DATA_EDGES;
    }
    return lp_lua_push_figure(L, graph_diagram(g, &o), "g:diagram");
}

/* ---- the diagram's view: pins and supernodes (issue 18) ---- */

/* The nodes of the list at idx (1-based indices, ids or node tables) as 0-based indices,
 * *n of them, in a userdata pushed on the stack (the GC frees it, also after an error); a
 * Lua error names the bad entry. */
static int *check_node_list(lua_State *L, const lp_graph *g, int idx, const char *what, int *n)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer len = luaL_len(L, idx);
    if (len < 0 || len > g->n_nodes * 4LL + 16)
        luaL_error(L, "%s: too many nodes (%d)", what, (int)len);
    int *ids = lua_newuserdatauv(L, (size_t)(len ? len : 1) * sizeof *ids, 0); /* freed by the GC */
    for (lua_Integer k = 1; k <= len; k++) {
        lua_geti(L, idx, k);
        ids[k - 1] = check_node(L, g, lua_gettop(L));
        lua_pop(L, 1);
    }
    *n = (int)len;
    return ids;
}

/* g:pin{nodes} -> g: the pinned nodes become these ({} unpins all) */
static int graph_pin(lua_State *L)
{
    lp_graph *g = check_graph(L, 1);
    int n;
    int *ids = check_node_list(L, g, 2, "g:pin", &n);
    if (lp_graph_set_pinned(g, ids, n) != 0)
        return lp_lua_backend_error(L, "g:pin");
    lua_settop(L, 1);
    return 1;
}

/* g:supernode(name, {nodes}) -> g */
static int graph_supernode(lua_State *L)
{
    lp_graph *g = check_graph(L, 1);
    const char *name = luaL_checkstring(L, 2);
    int n;
    int *ids = check_node_list(L, g, 3, "g:supernode", &n);
    if (n == 0)
        return luaL_error(L, "g:supernode: '%s' needs at least one node", name);
    if (lp_graph_add_group(g, name, ids, n) != 0)
        return lp_lua_backend_error(L, "g:supernode");
    lua_settop(L, 1);
    return 1;
}

/* g:state() -> {pinned = {i..}, supernodes = {{name = .., nodes = {i..}}..}} (1-based) */
static int graph_state(lua_State *L)
{
    lp_graph *g = check_graph(L, 1);
    lua_createtable(L, 0, 2);
    lua_createtable(L, g->n_pinned, 0);
    for (int i = 0; i < g->n_pinned; i++)
        lua_pushinteger(L, g->pinned[i] + 1), lua_rawseti(L, -2, i + 1);
    lua_setfield(L, -2, "pinned");
    lua_createtable(L, g->n_groups, 0);
    for (int k = 0; k < g->n_groups; k++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, g->groups[k].name), lua_setfield(L, -2, "name");
        lua_createtable(L, g->groups[k].n, 0);
        for (int i = 0; i < g->groups[k].n; i++)
            lua_pushinteger(L, g->groups[k].ids[i] + 1), lua_rawseti(L, -2, i + 1);
        lua_setfield(L, -2, "nodes");
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "supernodes");
    return 1;
}

/* ---- loupe.attribute ---- */

/* The single token of s, or a Lua error. */
static int32_t one_token(lua_State *L, model_ud *u, const char *s)
{
    int32_t *ids;
    size_t n;
    if (lp_tokenizer_encode(u->tok, s, strlen(s), 0, &ids, &n) < 0)
        lp_lua_backend_error(L, "loupe.attribute");
    int32_t t = n == 1 ? ids[0] : -1;
    free(ids);
    if (n != 1)
        luaL_error(L, "loupe.attribute: the target '%s' is %d tokens, not one", s, (int)n);
    return t;
}

/* The label of each feature node of g from the transcoder set at tcs (lp_lua_tcs_feature_label:
 * when the set's layer has a harvest or labels); then the same label on the nodes of `full`
 * (may be NULL) with the same layer and feature, so that g.full and its prunings show them
 * without labelling every active feature. Each (layer, feature) is labelled once. Raises on
 * out of memory (g and full are owned by Lua by then). */
static void label_features(lua_State *L, int tcs, lp_graph *g, lp_graph *full)
{
    char buf[320];
    lua_newtable(L); /* (layer, feature) -> label or false: a feature at many positions is labelled once */
    int cache = lua_gettop(L);
    for (int i = 0; i < g->n_nodes; i++) {
        lp_graph_node *d = &g->nodes[i];
        if (d->kind != LP_NODE_FEATURE || d->label)
            continue;
        lua_Integer key = (lua_Integer)d->layer * ((lua_Integer)1 << 32) + d->feature;
        int t = lua_rawgeti(L, cache, key);
        if (t == LUA_TNIL) {
            lua_pop(L, 1);
            if (lp_lua_tcs_feature_label(L, tcs, d->layer, d->feature, buf, sizeof buf))
                lua_pushstring(L, buf);
            else
                lua_pushboolean(L, 0);
            lua_pushvalue(L, -1);
            lua_rawseti(L, cache, key);
        }
        if (lua_type(L, -1) == LUA_TSTRING && !(d->label = lp_strdup(lua_tostring(L, -1), "the graph's labels")))
            lp_lua_raise(L, LP_ERR_NOMEM, "loupe.attribute: out of memory for the labels");
        lua_pop(L, 1);
    }
    for (int j = 0; full && j < full->n_nodes; j++) {
        lp_graph_node *f = &full->nodes[j];
        if (f->kind != LP_NODE_FEATURE || f->label)
            continue;
        if (lua_rawgeti(L, cache, (lua_Integer)f->layer * ((lua_Integer)1 << 32) + f->feature) == LUA_TSTRING &&
            !(f->label = lp_strdup(lua_tostring(L, -1), "the graph's labels")))
            lp_lua_raise(L, LP_ERR_NOMEM, "loupe.attribute: out of memory for the labels");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static int attribute(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getfield(L, 1, "model") == LUA_TNIL)
        luaL_error(L, "loupe.attribute: model is missing");
    model_ud *mu = check_model(L, -1);
    if (lua_getfield(L, 1, "transcoders") == LUA_TNIL)
        luaL_error(L, "loupe.attribute: transcoders is missing");
    lp_transcoder_set *set;
    lp_clt *clt;
    lp_lua_check_transcoders(L, -1, &set, &clt);
    lua_pop(L, 2); /* both stay alive in the options table */

    lp_attrib_opts o = lp_attrib_defaults();
    o.max_n_logits = (int)opt_num(L, 1, "max_n_logits", o.max_n_logits, 1, 1e6);
    o.desired_logit_prob = (float)opt_num(L, 1, "desired_logit_prob", o.desired_logit_prob, 0, 1);
    o.batch = (int)opt_num(L, 1, "batch", o.batch, 1, 1 << 20);
    o.max_feature_nodes = (int)opt_num(L, 1, "max_feature_nodes", 0, 0, 1 << 30);
    double nt = opt_num(L, 1, "node_threshold", 0.8, 0, 1), et = opt_num(L, 1, "edge_threshold", 0.98, 0, 1);
    int do_prune = lp_lua_opt_bool(L, 1, "prune", 1);

    /* the prompt: text or ids; a BOS in front when the tokenizer has one and it is missing */
    const char *prompt = opt_string(L, 1, "prompt");
    int32_t *ids = NULL;
    size_t n = 0;
    if (prompt) {
        if (!mu->tok)
            luaL_error(L, "loupe.attribute: this model has no tokenizer (%s); pass tokens = {...}", mu->tokerr);
        if (lp_tokenizer_encode(mu->tok, prompt, strlen(prompt), 1, &ids, &n) < 0)
            return lp_lua_backend_error(L, "loupe.attribute");
        int32_t b0 = lp_tokenizer_bos(mu->tok);
        size_t content = n - (n && ids[0] == b0);
        if (!*prompt || content == 0) {
            free(ids);
            luaL_error(L, "loupe.attribute: the prompt is empty");
        }
    } else if (lua_getfield(L, 1, "tokens") == LUA_TTABLE) {
        n = lua_rawlen(L, -1);
        if (n == 0 || n > (1u << 24))
            luaL_error(L, "loupe.attribute: tokens is empty");
        ids = malloc(n * sizeof *ids);
        if (!ids)
            return lp_lua_raise(L, LP_ERR_NOMEM, "loupe.attribute: out of memory");
        for (size_t i = 0; i < n; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) >= mu->m->cfg.d_vocab) {
                free(ids);
                luaL_error(L, "loupe.attribute: tokens[%d] is not a token id of this model (0..%d)", (int)i + 1,
                           mu->m->cfg.d_vocab - 1);
            }
            ids[i] = (int32_t)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    } else {
        luaL_error(L, "loupe.attribute: give prompt = \"...\" or tokens = {ids}");
    }
    int32_t bos = mu->tok ? lp_tokenizer_bos(mu->tok) : -1;
    int32_t *buf = lua_newuserdatauv(L, (n + 1) * sizeof *buf, 0); /* freed by Lua on any error */
    int T = 0;
    if (bos >= 0 && ids[0] != bos)
        buf[T++] = bos;
    memcpy(buf + T, ids, n * sizeof *ids);
    T += (int)n;
    free(ids);

    /* the target */
    lp_graph_target tg = {.token = -1, .minus_token = -1};
    int ty = lua_getfield(L, 1, "target");
    if (ty != LUA_TNIL) {
        if (!mu->tok)
            luaL_error(L, "loupe.attribute: a target needs the model's tokenizer");
        if (ty == LUA_TSTRING) {
            tg.token = one_token(L, mu, lua_tostring(L, -1));
            tg.text = lua_tostring(L, -1);
        } else if (ty == LUA_TTABLE && lua_rawlen(L, -1) == 2) {
            lua_rawgeti(L, -1, 1), lua_rawgeti(L, -2, 2);
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "loupe.attribute: target = {a, b} takes two strings (the logit difference a - b)");
            tg.token = one_token(L, mu, lua_tostring(L, -2));
            tg.minus_token = one_token(L, mu, lua_tostring(L, -1));
            lua_pushfstring(L, "%s - %s", lua_tostring(L, -2), lua_tostring(L, -1));
            tg.text = lua_tostring(L, -1); /* stays on the stack until the graph is made */
        } else {
            luaL_error(L, "loupe.attribute: target is a token string or {a, b} (a logit difference)");
        }
        tg.set = 1;
    }

    char model_name[256];
    const char *folder = mu->m->folder ? mu->m->folder : "model", *slash = strrchr(folder, '/');
    snprintf(model_name, sizeof model_name, "%s", slash && slash[1] ? slash + 1 : folder);
    char *text = mu->tok ? lp_tokenizer_decode(mu->tok, buf, (size_t)T, NULL) : NULL;
    lp_graph_meta meta = {.model = model_name, .scan = opt_string(L, 1, "scan"), .slug = opt_string(L, 1, "slug"),
                          .prompt = text ? text : prompt, .tok = mu->tok};
    lp_graph *g = set ? lp_graph_attribute(mu->m, set, buf, T, &o, &tg, &meta)
                      : lp_graph_attribute_clt(mu->m, clt, buf, T, &o, &tg, &meta);
    free(text);
    if (!g)
        return lp_lua_backend_error(L, "loupe.attribute");
    push_graph(L, g, 0, "loupe.attribute");
    lp_lua_graph_keep_model(L, -1, 1);
    lua_getfield(L, 1, "transcoders");
    int tcs = lua_gettop(L);
    if (!do_prune) {
        label_features(L, tcs, g, NULL);
        lua_pop(L, 1);
        return 1;
    }
    int full = tcs - 1;
    lp_graph *h = lp_graph_prune(g, nt, et);
    push_graph(L, h, full, "loupe.attribute");
    lp_lua_graph_keep_model(L, -1, 1);
    label_features(L, tcs, h, g);
    return 1;
}

void lp_lua_open_graph(lua_State *L)
{
    luaL_newmetatable(L, GRAPH_MT);
    int mt = lua_gettop(L);
    lua_pushcfunction(L, graph_index), lua_setfield(L, mt, "__index");
    lua_pushcfunction(L, graph_gc), lua_setfield(L, mt, "__gc");
    lua_pushcfunction(L, graph_len), lua_setfield(L, mt, "__len");
    lua_pushcfunction(L, graph_tostring), lua_setfield(L, mt, "__tostring");
    lua_pushcfunction(L, graph_display), lua_setfield(L, mt, "__display");
    lua_newtable(L);
    lp_lua_setfunc(L, -1, "prune", graph_prune,
                   "g:prune{node_threshold = 0.8, edge_threshold = 0.98} -> Graph\nA new graph pruned by influence "
                   "(circuit-tracer's prune_graph and file selection), from g.full when g was pruned from it.");
    lp_lua_setfunc(L, -1, "inputs", graph_inputs,
                   "g:inputs(node [, k = 10]) -> {{index, id, kind, weight}}\nThe node's k strongest inputs "
                   "(sources) by |weight|, signed; k = 0: all. node: a 1-based index, an id or a node table.");
    lp_lua_setfunc(L, -1, "outputs", graph_outputs,
                   "g:outputs(node [, k = 10]) -> {{index, id, kind, weight}}\nThe node's k strongest outputs "
                   "(targets) by |weight|, signed; k = 0: all.");
    lp_lua_setfunc(L, -1, "paths", graph_paths,
                   "g:paths{k = 5 [, from = node, to = node]} -> {{score, sign, nodes, ids}}\nThe k best paths from "
                   "an embedding to a logit, ranked by the product of the normalised weights |A[t,s]| / sum_s' "
                   "|A[t,s']|; sign is the product of the edges' signs.");
    lp_lua_setfunc(L, -1, "node", graph_node,
                   "g:node(node) -> {index, id, kind, layer, pos, ctx_idx, feature, activation, token, text, prob, "
                   "is_target, influence, label}\nOne node (by 1-based index or id).");
    lp_lua_setfunc(L, -1, "diagram", graph_diagram_fig,
                   "g:diagram{max_edges = 300, max_per_cell = 8, max_paths = 10, max_table_nodes = 20, "
                   "max_data_edges = 20000} -> Figure\n"
                   "The circuit diagram (what a graph displays as): positions left to right, embeddings at the "
                   "bottom, layers, logits at the top; the strongest edges by share of their target's input, "
                   "green positive, purple negative; the scores, the top paths and the top nodes by influence. Where "
                   "scripts run: click a node for its inputs and outputs (from the max_data_edges strongest edges), "
                   "ctrl/cmd-click pins, group pinned nodes, prune by influence, copy the view as Lua (g:pin, "
                   "g:supernode).");
    lp_lua_setfunc(L, -1, "pin", graph_pin,
                   "g:pin{nodes} -> g\nPins these nodes (1-based indices, ids or node tables; {} unpins all) in "
                   "the diagram: they are shown in its pinned panel and saved in the JSON's qParams.pinnedIds. "
                   "The diagram's \"copy as Lua\" button writes these lines.");
    lp_lua_setfunc(L, -1, "supernode", graph_supernode,
                   "g:supernode(name, {nodes}) -> g\nGroups nodes into a supernode named name (replacing one of "
                   "that name), shown by the diagram and saved in the JSON's qParams.supernodes.");
    lp_lua_setfunc(L, -1, "state", graph_state,
                   "g:state() -> {pinned = {..}, supernodes = {{name, nodes}..}}\nThe diagram's view given by "
                   "g:pin and g:supernode (or loaded from a file's qParams), 1-based node indices.");
    lp_lua_setfunc(L, -1, "save", graph_save,
                   "g:save(path) -> g\nWrites the graph JSON (circuit-tracer's schema 1: metadata, qParams, nodes, "
                   "links) that circuit-tracer's viewer and Neuronpedia open.");
    lp_lua_graph_extra_methods(L, lua_gettop(L));
    lua_setfield(L, mt, "__methods");
    static const lp_lua_field fields[] = {
        {"nodes", "{node tables}: index, id, kind, layer, pos (1-based), ctx_idx, feature, activation, token, text, "
                  "prob, is_target, influence, label"},
        {"n_nodes", "number of nodes"},
        {"n_edges", "number of non-zero edges"},
        {"adjacency", "Tensor (n, n): A[target, source], in the order of g.nodes"},
        {"scores", "{replacement, completeness}: of the full graph"},
        {"tokens", "{ids}: the prompt's token ids (BOS included)"},
        {"prompt_tokens", "{strings}: the prompt's tokens"},
        {"prompt", "the prompt as text"},
        {"n_layers", "the model's layers"},
        {"logits", "{node tables}: the logit nodes"},
        {"full", "Graph or nil: the unpruned graph this one was pruned from"},
        {"metadata", "{model, scan, slug, generator, version, node_threshold, edge_threshold}"},
        {NULL, NULL}};
    lp_lua_settype(L, mt,
                   "Graph: an attribution graph (loupe.attribute, loupe.graph.load): feature, error, embedding and "
                   "logit nodes with exact edges, pruned by influence, with replacement and completeness scores.\n"
                   "Nodes are named by 1-based index or id (circuit-tracer's node_id); layers and features count "
                   "from 0.",
                   fields);
    lua_pop(L, 1);

    lp_lua_setfunc(L, -1, "attribute", attribute,
                   "loupe.attribute{model, transcoders, prompt = \"...\" | tokens = {ids} [, target = \" Oslo\" | "
                   "{\" Oslo\", \" Paris\"}, max_n_logits = 10, desired_logit_prob = 0.95, batch = 32, "
                   "node_threshold = 0.8, edge_threshold = 0.98, prune = true, max_feature_nodes, scan, slug]} -> Graph\n"
                   "The attribution graph of the prompt through a per-layer transcoder set or a cross-layer "
                   "transcoder (mlp.hook_in -> mlp.hook_out; a CLT feature's edges go through its decoders into "
                   "its layer and every later one): attention patterns and norm scales frozen, exact edges by "
                   "backward passes, "
                   "pruned (g.full keeps the unpruned graph). A BOS is put in front when the tokenizer has one and "
                   "the prompt lacks it. target: one token, or {a, b} for the logit difference a - b, instead of "
                   "the model's top logits. max_feature_nodes: compute the rows of at most this many features, in order of "
                   "their influence on the logits (as circuit-tracer does); the graph keeps only those features. "
                   "Feature nodes carry the set's labels (tcs:label) where its layer has a harvest or labels: "
                   "node.label, the file's clerp, the diagram.");
    if (lua_getfield(L, -1, "graph") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lp_lua_setdoc(L, -1, "loupe.graph: attribution graph files.");
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "graph");
    }
    lp_lua_setfunc(L, -1, "load", graph_load,
                   "loupe.graph.load(path) -> Graph\nReads a graph JSON file: loupe's, circuit-tracer's "
                   "(create_graph_files) or Neuronpedia's. Unknown fields are ignored; a missing required field is an "
                   "error naming it.");
    lua_pop(L, 1);
}
