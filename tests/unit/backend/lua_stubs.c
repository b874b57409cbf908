/* Test-only stand-ins for the kernel's Lua helpers (kernel/lua/lua_api.h), so that the tensor
 * bindings can be tested without the kernel: docstrings go to a registry table, errors are
 * raised by the real kernel/lua/lua_error.c, publishing is refused. */
#include <lauxlib.h>

#include "core/error.h"
#include "lua_api.h"

void lp_lua_setdoc(lua_State *L, int idx, const char *doc)
{
    idx = lua_absindex(L, idx);
    lua_getfield(L, LUA_REGISTRYINDEX, "loupe.test.docs");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "loupe.test.docs");
    }
    lua_pushvalue(L, idx);
    lua_pushstring(L, doc);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

void lp_lua_setfunc(lua_State *L, int t, const char *name, lua_CFunction f, const char *doc)
{
    t = lua_absindex(L, t);
    lua_pushcfunction(L, f);
    lp_lua_setdoc(L, -1, doc);
    lua_setfield(L, t, name);
}

int lp_lua_publish(lua_State *L, json_t *bundle, const char *display_id, int update)
{
    json_decref(bundle);
    return luaL_error(L, "publish is not available in tests");
}
