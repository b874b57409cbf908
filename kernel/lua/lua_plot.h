/* Lua bindings of the figures in display/: loupe.plot.line, .hist, .scatter, .bar,
 * .heatmap, .live, loupe.tokens and loupe.table. Each returns a figure object (userdata
 * "loupe.Figure") whose __display gives its MIME bundle and whose __tostring gives its
 * text/plain; loupe.plot.live returns a "loupe.LivePlot" that updates its output in place.
 * Follows the contract in lua_api.h. Data are plain Lua arrays of numbers for now
 * (tensors will be accepted once the tensor bindings exist). */
#ifndef LP_LUA_PLOT_H
#define LP_LUA_PLOT_H

#include <jansson.h>
#include <lua.h>

/* Called with the `loupe` table on top of the stack; adds loupe.plot, loupe.tokens and
 * loupe.table, and leaves the stack as it found it. */
void lp_lua_open_plot(lua_State *L);

/* Pushes a loupe.Figure that shows bundle (a MIME bundle, stolen), for other bindings that
 * build figures (loupe.display.circuit). bundle NULL raises lp_last_error() as "what: ...". */
int lp_lua_push_figure(lua_State *L, json_t *bundle, const char *what);
/* Adds loupe.display.circuit (lua_circuit.c); called with `loupe` on top, after
 * lp_lua_open_plot (it returns loupe.Figure objects). */
void lp_lua_open_circuit(lua_State *L);

#endif
