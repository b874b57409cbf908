/* More Graph methods (lua_graph_extra.c): g:qk (QK attribution) and g:supernodes. */
#ifndef LP_LUA_GRAPH_EXTRA_H
#define LP_LUA_GRAPH_EXTRA_H

#include <lua.h>

#include "attrib/graph.h"

/* lua_graph.c: pushes g as a loupe.Graph (taking it; NULL raises lp_last_error() for what),
 * full: a stack index of the graph it was pruned from, or 0 */
void lp_lua_push_graph(lua_State *L, lp_graph *g, int full, const char *what);
/* Keeps opts.model and opts.transcoders (opts at stack index opts) with the Graph at idx, for g:qk. */
void lp_lua_graph_keep_model(lua_State *L, int idx, int opts);
/* Adds the methods to the methods table at index methods. */
void lp_lua_graph_extra_methods(lua_State *L, int methods);

#endif
