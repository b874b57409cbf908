/* loupe.display.circuit{...}: the circuit diagram (display/circuit.h) of a graph given as
 * plain Lua tables. The entry point for tests and for graphs built by hand; an attribution
 * graph object shows the same diagram as its own display. Arguments are read into scratch
 * userdata and their strings anchored in a table, so a Lua error at any point leaks
 * nothing. */
#include <lauxlib.h>
#include <math.h>
#include <string.h>

#include "circuit.h"
#include "lua_api.h"
#include "lua_plot.h"

static const char *const KINDS[] = {"feature", "error", "embedding", "logit", NULL};

/* t[key] as a number (def when nil); name says where, for the message. */
static double num_field(lua_State *L, int t, const char *key, double def, const char *what, int i)
{
    lua_getfield(L, t, key);
    double v = def;
    if (!lua_isnil(L, -1)) {
        int ok;
        v = lua_tonumberx(L, -1, &ok);
        if (!ok)
            luaL_error(L, "loupe.display.circuit: %s[%d].%s: expected a number, got %s", what, i, key,
                       luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return v;
}

/* An integer field in [lo, hi] (def when nil). */
static int int_field(lua_State *L, int t, const char *key, int def, const char *what, int i)
{
    double v = num_field(L, t, key, def, what, i);
    if (!(v == floor(v) && v >= -2147483647.0 && v <= 2147483647.0))
        luaL_error(L, "loupe.display.circuit: %s[%d].%s: expected an integer, got %f", what, i, key, v);
    return (int)v;
}

/* A string field (numbers converted) anchored in the table at `anchor`; NULL when nil. */
static const char *str_field(lua_State *L, int t, const char *key, int anchor, const char *what, int i)
{
    lua_getfield(L, t, key);
    const char *s = NULL;
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
        s = luaL_tolstring(L, -1, NULL);
        lua_rawseti(L, anchor, (lua_Integer)luaL_len(L, anchor) + 1); /* keeps s alive */
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "loupe.display.circuit: %s[%d].%s: expected a string, got %s", what, i, key,
                   luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return s;
}

/* The length of the array t[key] (pushed; nil gives 0 and pushes nil). */
static int array_field(lua_State *L, int t, const char *key)
{
    lua_getfield(L, t, key);
    if (lua_isnil(L, -1))
        return 0;
    if (!lua_istable(L, -1))
        return luaL_error(L, "loupe.display.circuit: %s: expected an array, got %s", key, luaL_typename(L, -1));
    lua_Integer n = luaL_len(L, -1);
    if (n < 0 || n > 50000000)
        return luaL_error(L, "loupe.display.circuit: %s: %d entries is too many", key, (int)n);
    return (int)n;
}

static int l_circuit(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_newtable(L); /* 2: anchor of strings */
    int anchor = 2;
    lp_circuit c = {0};
    c.replacement_score = num_field(L, 1, "replacement_score", NAN, "graph", 1);
    c.completeness_score = num_field(L, 1, "completeness_score", NAN, "graph", 1);
    c.n_layers = int_field(L, 1, "n_layers", 0, "graph", 1);
    if (c.n_layers < 0)
        return luaL_error(L, "loupe.display.circuit: n_layers must be >= 0");
    c.title = str_field(L, 1, "title", anchor, "graph", 1);

    /* tokens: an array of strings */
    int nt = array_field(L, 1, "tokens"), tt = lua_gettop(L);
    const char **toks = lua_newuserdatauv(L, (size_t)nt * sizeof *toks + 1, 0);
    for (int i = 0; i < nt; i++) {
        lua_geti(L, tt, i + 1);
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            return luaL_error(L, "loupe.display.circuit: tokens[%d]: expected a string, got %s", i + 1,
                              luaL_typename(L, -1));
        toks[i] = luaL_tolstring(L, -1, NULL);
        lua_rawseti(L, anchor, (lua_Integer)luaL_len(L, anchor) + 1);
        lua_pop(L, 1);
    }
    c.n_tokens = nt;
    c.tokens = nt ? toks : NULL;

    /* nodes: {kind =, layer =, pos =, feature =, activation =, influence =, prob =, label =} */
    int nn = array_field(L, 1, "nodes"), nt_idx = lua_gettop(L);
    lp_circuit_node *nodes = lua_newuserdatauv(L, (size_t)nn * sizeof *nodes + 1, 0);
    for (int i = 0; i < nn; i++) {
        lua_geti(L, nt_idx, i + 1);
        int t = lua_gettop(L);
        if (!lua_istable(L, t))
            return luaL_error(L, "loupe.display.circuit: nodes[%d]: expected a table, got %s", i + 1,
                              luaL_typename(L, t));
        lua_getfield(L, t, "kind");
        const char *k = lua_tostring(L, -1);
        int kind = -1;
        for (int j = 0; k && KINDS[j]; j++)
            if (!strcmp(k, KINDS[j]))
                kind = j;
        if (kind < 0)
            return luaL_error(L, "loupe.display.circuit: nodes[%d].kind: expected \"feature\", \"error\", "
                                 "\"embedding\" or \"logit\", got %s", i + 1, k ? k : luaL_typename(L, -1));
        lua_pop(L, 1);
        nodes[i] = (lp_circuit_node){
            .kind = kind,
            .layer = int_field(L, t, "layer", 0, "nodes", i + 1),
            .pos = int_field(L, t, "pos", 0, "nodes", i + 1),
            .feature = int_field(L, t, "feature", -1, "nodes", i + 1),
            .activation = (float)num_field(L, t, "activation", 0, "nodes", i + 1),
            .influence = (float)num_field(L, t, "influence", 0, "nodes", i + 1),
            .prob = (float)num_field(L, t, "prob", 0, "nodes", i + 1),
            .label = str_field(L, t, "label", anchor, "nodes", i + 1),
        };
        lua_pop(L, 1);
    }
    c.n_nodes = nn;
    c.nodes = nodes;

    /* edges: {src, dst, weight} or {src =, dst =, weight =}, src and dst 1-based node indices */
    int ne = array_field(L, 1, "edges"), et = lua_gettop(L);
    lp_circuit_edge *edges = lua_newuserdatauv(L, (size_t)ne * sizeof *edges + 1, 0);
    for (int i = 0; i < ne; i++) {
        lua_geti(L, et, i + 1);
        int t = lua_gettop(L);
        if (!lua_istable(L, t))
            return luaL_error(L, "loupe.display.circuit: edges[%d]: expected a table, got %s", i + 1,
                              luaL_typename(L, t));
        double v[3];
        static const char *const keys[] = {"src", "dst", "weight"};
        for (int j = 0; j < 3; j++) {
            lua_getfield(L, t, keys[j]);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_geti(L, t, j + 1);
            }
            int ok;
            v[j] = lua_tonumberx(L, -1, &ok);
            if (!ok)
                return luaL_error(L, "loupe.display.circuit: edges[%d].%s: expected a number, got %s", i + 1,
                                  keys[j], luaL_typename(L, -1));
            lua_pop(L, 1);
        }
        for (int j = 0; j < 2; j++)
            if (!(v[j] == floor(v[j]) && v[j] >= 1 && v[j] <= nn))
                return luaL_error(L, "loupe.display.circuit: edges[%d].%s: %f is not a node index (1..%d)",
                                  i + 1, keys[j], v[j], nn);
        edges[i] = (lp_circuit_edge){(int)v[0] - 1, (int)v[1] - 1, (float)v[2]};
        lua_pop(L, 1);
    }
    c.n_edges = ne;
    c.edges = edges;

    /* paths: {{nodes = {i, j, ...}, score = s}, ...}, node indices 1-based */
    int np = array_field(L, 1, "paths"), pt = lua_gettop(L);
    lp_circuit_path *paths = lua_newuserdatauv(L, (size_t)np * sizeof *paths + 1, 0);
    for (int i = 0; i < np; i++) {
        lua_geti(L, pt, i + 1);
        int t = lua_gettop(L);
        if (!lua_istable(L, t))
            return luaL_error(L, "loupe.display.circuit: paths[%d]: expected a table, got %s", i + 1,
                              luaL_typename(L, t));
        paths[i].score = num_field(L, t, "score", NAN, "paths", i + 1);
        int n = array_field(L, t, "nodes"), at = lua_gettop(L);
        int *ids = lua_newuserdatauv(L, (size_t)n * sizeof *ids + 1, 0);
        lua_rawseti(L, anchor, (lua_Integer)luaL_len(L, anchor) + 1);
        for (int j = 0; j < n; j++) {
            lua_geti(L, at, j + 1);
            int ok;
            lua_Integer id = lua_tointegerx(L, -1, &ok);
            if (!ok || id < 1 || id > nn)
                return luaL_error(L, "loupe.display.circuit: paths[%d].nodes[%d]: not a node index (1..%d)",
                                  i + 1, j + 1, nn);
            ids[j] = (int)id - 1;
            lua_pop(L, 1);
        }
        paths[i].n = n;
        paths[i].nodes = ids;
        lua_settop(L, t - 1);
    }
    c.n_paths = np;
    c.paths = np ? paths : NULL;

    lp_circuit_opts o = {
        .max_edges = int_field(L, 1, "max_edges", 0, "graph", 1),
        .max_per_cell = int_field(L, 1, "max_per_cell", 0, "graph", 1),
        .max_paths = int_field(L, 1, "max_paths", 0, "graph", 1),
        .max_table_nodes = int_field(L, 1, "max_nodes", 0, "graph", 1),
        .max_data_edges = int_field(L, 1, "max_data_edges", 0, "graph", 1),
    };
    return lp_lua_push_figure(L, lp_circuit_display(&c, &o), "loupe.display.circuit");
}

void lp_lua_open_circuit(lua_State *L)
{
    int loupe = lua_gettop(L);
    lua_getfield(L, loupe, "display");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lp_lua_setdoc(L, -1, "loupe.display: figures built from plain tables (circuit).");
        lua_pushvalue(L, -1);
        lua_setfield(L, loupe, "display");
    }
    lp_lua_setfunc(L, -1, "circuit", l_circuit,
                   "loupe.display.circuit{nodes = {...}, edges = {...}, tokens = {...} [, n_layers =, "
                   "replacement_score =, completeness_score =, paths =, title =, max_edges = 300, "
                   "max_per_cell = 8, max_paths = 10, max_nodes = 20]} -> Figure\n"
                   "The circuit diagram of an attribution graph given as tables (for graphs built by hand "
                   "and for tests; a graph from loupe.attribute shows it as its own display).\n"
                   "  nodes[i] = {kind = \"feature\"|\"error\"|\"embedding\"|\"logit\", layer = 0.., pos = 0.., "
                   "feature =, activation =, influence =, prob = (logits), label = (features: a description; "
                   "logits: the token)}\n"
                   "  edges[k] = {src, dst, weight}: node indices (1-based), weight = A[dst, src]\n"
                   "  paths[j] = {nodes = {i, ...}, score = s} (default: the top paths by product of shares)\n"
                   "Columns are positions, rows go from the embeddings up through the layers to the logits; "
                   "the strongest edges by share of their target's input are drawn (green positive, purple "
                   "negative), with the scores, the top paths and the top nodes by influence.");
    lua_settop(L, loupe);
}
