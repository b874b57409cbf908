/* The registry of object types: what help(), completion and inspection know of a type
 * (its docstring, its methods, its fields). See lp_lua_settype in lua_api.h. */
#include <lauxlib.h>
#include <string.h>

#include "lua_api.h"

void lp_lua_settype(lua_State *L, int mt, const char *doc, const lp_lua_field *fields)
{
    mt = lua_absindex(L, mt);
    if (doc)
        lp_lua_setdoc(L, mt, doc);
    lua_newtable(L);
    for (const lp_lua_field *f = fields; f && f->name; f++) {
        lua_pushstring(L, f->doc ? f->doc : "");
        lua_setfield(L, -2, f->name);
    }
    lua_setfield(L, mt, "__fields");
    if (lua_getfield(L, LUA_REGISTRYINDEX, LP_LUA_TYPES_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, LP_LUA_TYPES_KEY);
    }
    const char *name = "object";
    if (lua_getfield(L, mt, "__name") == LUA_TSTRING)
        name = lua_tostring(L, -1);
    if (strncmp(name, "loupe.", 6) == 0)
        name += 6;
    lua_pushstring(L, name);
    lua_remove(L, -2); /* __name */
    lua_pushvalue(L, mt);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    /* and metatable -> true, which user code cannot forge (completion reads fields through
     * the __index of registered metatables only) */
    if (lua_getfield(L, LUA_REGISTRYINDEX, LP_LUA_TYPE_OF_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, LP_LUA_TYPE_OF_KEY);
    }
    lua_pushvalue(L, mt);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}
