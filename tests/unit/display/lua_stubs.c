/* Test-only stand-ins for the kernel's Lua plumbing (kernel/lua/lua_base.c provides the real
 * ones): docstrings are kept in a registry table, published bundles are recorded so that
 * tests can inspect them. */
#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "lua_api.h"
#include "lua_stubs.h"

int t_published = 0, t_last_update = -1;
char t_last_id[64];
json_t *t_last_bundle = NULL;

void lp_lua_setdoc(lua_State *L, int idx, const char *doc)
{
    idx = lua_absindex(L, idx);
    lua_getfield(L, LUA_REGISTRYINDEX, "t_docs");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "t_docs");
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
    if (doc)
        lp_lua_setdoc(L, -1, doc);
    lua_setfield(L, t, name);
}

int lp_lua_publish(lua_State *L, json_t *bundle, const char *display_id, int update)
{
    if (!json_is_object(bundle)) {
        json_decref(bundle);
        return luaL_error(L, "display: a bundle must be an object of mime type -> data");
    }
    t_published++;
    t_last_update = update;
    strncpy(t_last_id, display_id ? display_id : "", sizeof t_last_id - 1);
    json_decref(t_last_bundle);
    t_last_bundle = bundle;
    return 0;
}
