/* kernel/lua/lua_circuit.c: loupe.display.circuit{...} in a bare Lua state: a hand-made
 * graph gives a figure with the diagram, indices are read as documented (1-based nodes,
 * 0-based layers and positions), and bad arguments are clear errors. */
#include <criterion/criterion.h>
#include <string.h>

#include "lua_harness.h"
#include "lua_plot.h"
#include "util.h"

static lua_State *L;

static void setup(void)
{
    L = t_lua_new(T_PUBLISH_RECORD, lp_lua_open_plot, lp_lua_open_circuit);
    t_lua_run(L, "function bundle(x) return getmetatable(x).__display(x) end\n"
                 "G = {tokens = {'The', ' capital', ' of'}, n_layers = 2, replacement_score = 0.7,\n"
                 "  completeness_score = 0.9, title = 'hand-made',\n"
                 "  nodes = {{kind = 'embedding', pos = 0}, {kind = 'embedding', pos = 1},\n"
                 "           {kind = 'feature', layer = 1, pos = 1, feature = 42, activation = 2, influence = 0.5,\n"
                 "            label = 'capital cities <b>'},\n"
                 "           {kind = 'error', layer = 0, pos = 1, influence = 0.1},\n"
                 "           {kind = 'logit', pos = 1, feature = 6184, prob = 0.6, influence = 1, label = ' Paris'}},\n"
                 "  edges = {{1, 3, 1.5}, {2, 3, -0.5}, {src = 3, dst = 5, weight = 2}, {4, 5, 0.5}}}");
}

static void teardown(void) { t_lua_close(L); }

TestSuite(lua_circuit, .init = setup, .fini = teardown);

Test(lua_circuit, a_hand_made_graph_gives_the_diagram)
{
    const char *plain = t_lua_string(L, "return tostring(loupe.display.circuit(G))");
    cr_assert(strstr(plain, "hand-made: attribution graph: 5 nodes (1 features, 1 errors, 2 embeddings, 1 logits), "
                            "4 edges, 3 tokens, 2 layers"), "%s", plain);
    cr_assert(strstr(plain, "replacement score 0.7, completeness score 0.9"), "%s", plain);
    /* the paths: emb "The" -> feature 42 (share 0.75 of its input) -> Paris (0.8) and emb " capital" (-0.25) */
    cr_assert(strstr(plain, "top paths:\n  0.6  emb The @0 \xE2\x86\x92 L1 capital cities <b> \xE2\x86\x92 logit \xE2\x90\xA3Paris @1"), "%s", plain);
    cr_assert(strstr(plain, "-0.2  emb \xE2\x90\xA3" "capital @1"), "%s", plain);
    const char *html = t_lua_string(L, "return bundle(loupe.display.circuit(G))['text/html']");
    cr_assert(strstr(html, "data:image/svg+xml;base64,"));
    cr_assert(strstr(html, "capital cities &lt;b&gt;"));
    cr_assert(strstr(html, "data-lp-circuit=\"1\""));
    /* 1-based edges: 4 lines, two in each colour */
    char *svg = t_svg_at(html, 0);
    cr_assert_eq(t_count(svg, "<line "), 4);
    cr_assert_eq(t_count(svg, "#8e44ad"), 1, "one negative edge");
    free(svg);
    /* given paths and options */
    plain = t_lua_string(L, "G.paths = {{nodes = {1, 3, 5}, score = 0.25}}; G.max_edges = 1\n"
                            "return tostring(loupe.display.circuit(G))");
    cr_assert(strstr(plain, "0.25  emb The @0"), "%s", plain);
    cr_assert(strstr(plain, "1 of 4 edges drawn"), "%s", plain);
}

Test(lua_circuit, an_empty_graph_and_bad_arguments)
{
    const char *plain = t_lua_string(L, "return tostring(loupe.display.circuit{tokens = {'a'}})");
    cr_assert(strstr(plain, "no nodes to draw"), "%s", plain);
    plain = t_lua_string(L, "return tostring(loupe.display.circuit{})");
    cr_assert(strstr(plain, "nothing to show"), "%s", plain);
    const char *e = t_lua_fails(L, "loupe.display.circuit{nodes = {{kind = 'neuron'}}}");
    cr_assert(strstr(e, "nodes[1].kind: expected \"feature\""), "%s", e);
    e = t_lua_fails(L, "loupe.display.circuit{nodes = {{kind = 'feature'}}, edges = {{1, 2, 1}}}");
    cr_assert(strstr(e, "edges[1].dst: 2.0 is not a node index (1..1)"), "%s", e);
    e = t_lua_fails(L, "loupe.display.circuit{nodes = {{kind = 'feature', layer = 'x'}}}");
    cr_assert(strstr(e, "nodes[1].layer: expected a number"), "%s", e);
    e = t_lua_fails(L, "loupe.display.circuit{nodes = 3}");
    cr_assert(strstr(e, "nodes: expected an array"), "%s", e);
    e = t_lua_fails(L, "loupe.display.circuit(5)");
    cr_assert(strstr(e, "table expected"), "%s", e);
    e = t_lua_fails(L, "loupe.display.circuit{tokens = {{}}}");
    cr_assert(strstr(e, "tokens[1]: expected a string"), "%s", e);
}
