/* Reading the options tables that loupe's functions take ({steps = 100, live = false, ...}):
 * one helper each, shared by every binding (see lua_api.h). */
#include <lauxlib.h>

#include "lua_api.h"

int lp_lua_opt_bool(lua_State *L, int t, const char *key, int def)
{
    lua_getfield(L, t, key);
    int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}
