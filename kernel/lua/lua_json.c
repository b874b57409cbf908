/* JSON <-> Lua values, for comm messages and user data. Arrays become sequences, objects
 * tables with string keys, null becomes nil inside tables (dropped) and at top level. */
#include <lauxlib.h>
#include <math.h>

#include "interp.h"

void lp_lua_push_json(lua_State *L, json_t *v)
{
    luaL_checkstack(L, 4, "JSON too deeply nested");
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        lua_createtable(L, 0, (int)json_object_size(v));
        json_object_foreach(v, k, x)
        {
            lp_lua_push_json(L, x);
            lua_setfield(L, -2, k);
        }
        return;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        lua_createtable(L, (int)json_array_size(v), 0);
        json_array_foreach(v, i, x)
        {
            lp_lua_push_json(L, x);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        return;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        return;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(v));
        return;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        return;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        return;
    default:
        lua_pushnil(L);
    }
}

static json_t *to_json(lua_State *L, int idx, int depth)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return json_integer((json_int_t)lua_tointeger(L, idx));
        else {
            double d = lua_tonumber(L, idx);
            return isfinite(d) ? json_real(d) : json_null(); /* JSON has no NaN or Infinity */
        }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        json_t *j = json_stringn(s, n);
        return j ? j : json_string("\xEF\xBF\xBD"); /* invalid UTF-8 */
    }
    case LUA_TTABLE: {
        if (depth > 64 || !lua_checkstack(L, 4))
            return json_null();
        size_t n = lua_rawlen(L, idx);
        size_t count = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            count++;
            lua_pop(L, 1);
        }
        if (n > 0 && count == n) {
            json_t *a = json_array();
            for (size_t i = 1; i <= n; i++) {
                lua_rawgeti(L, idx, (lua_Integer)i);
                json_array_append_new(a, to_json(L, -1, depth + 1));
                lua_pop(L, 1);
            }
            return a;
        }
        json_t *o = json_object();
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pushvalue(L, -2);
            const char *k = luaL_tolstring(L, -1, NULL);
            json_object_set_new(o, k, to_json(L, -3, depth + 1));
            lua_pop(L, 3); /* the string copy of the key, the key copy, the value */
            /* lua_next needs the original key on top: it is still there below. */
        }
        return o;
    }
    default:
        return json_null();
    }
}

json_t *lp_lua_to_json(lua_State *L, int idx) { return to_json(L, idx, 0); }
