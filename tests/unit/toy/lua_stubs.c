/* Test-only stand-ins for the kernel's Lua helpers (kernel/lua/lua_api.h), so that the toy
 * bindings can be tested without the kernel: docstrings go to a registry table, errors are
 * raised by the real kernel/lua/lua_error.c, and every publish is recorded in the global Lua
 * table `published` as {id =, update =, plain =, html =} (the bundle is checked and freed). */
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
    const char *plain = json_string_value(json_object_get(bundle, "text/plain"));
    const char *html = json_string_value(json_object_get(bundle, "text/html"));
    if (!json_is_object(bundle) || !plain) {
        json_decref(bundle);
        return luaL_error(L, "publish: a bundle needs text/plain");
    }
    if (lua_getglobal(L, "published") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setglobal(L, "published");
    }
    lua_createtable(L, 0, 4);
    lua_pushstring(L, display_id ? display_id : "");
    lua_setfield(L, -2, "id");
    lua_pushboolean(L, update);
    lua_setfield(L, -2, "update");
    lua_pushstring(L, plain);
    lua_setfield(L, -2, "plain");
    lua_pushstring(L, html ? html : "");
    lua_setfield(L, -2, "html");
    json_decref(bundle);
    lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
    lua_pop(L, 1);
    return 0;
}
