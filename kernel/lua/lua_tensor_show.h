/* The text and display forms of loupe.Tensor (lua_tensor_show.c), used by lua_tensor.c's
 * method table. Each is a lua_CFunction taking the tensor as argument 1. */
#ifndef LP_LUA_TENSOR_SHOW_H
#define LP_LUA_TENSOR_SHOW_H

#include <lua.h>

int lp_lua_tensor_totable(lua_State *L);  /* t:totable() -> nested tables */
int lp_lua_tensor_tostring(lua_State *L); /* __tostring: shape and dtype, then aligned values, summarised when large */
int lp_lua_tensor_display(lua_State *L);  /* __display: a mime bundle (table + text) */
int lp_lua_tensor_heatmap(lua_State *L);  /* t:heatmap([opts]) -> figure */

#endif
