/* Raising backend errors in Lua with their code. Lua errors are strings (so that pcall, print
 * and string methods work on them as users expect); the code of the last one a binding raised
 * is kept beside its message in the registry, where the interpreter's message handler reads it
 * (lp_lua_error_code) to name the error. Nothing here depends on the rest of the kernel, so
 * that binding tests compile it in as it is. */
#include <lauxlib.h>
#include <stdarg.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "lua_api.h"

#define KEY_MSG "loupe.error.message"
#define KEY_CODE "loupe.error.code"

/* Records the string on top of the stack as the error raised with code, and raises it. */
static int raise_top(lua_State *L, lp_err code)
{
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, KEY_MSG);
    lua_pushinteger(L, code);
    lua_setfield(L, LUA_REGISTRYINDEX, KEY_CODE);
    return lua_error(L);
}

int lp_lua_raise(lua_State *L, lp_err code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    luaL_where(L, 1); /* as luaL_error: "chunk:line: " when raised from Lua code, else "" */
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    return raise_top(L, code);
}

int lp_lua_backend_error(lua_State *L, const char *what)
{
    if (what)
        return lp_lua_raise(L, lp_last_error_code(), "%s: %s", what, lp_last_error());
    return lp_lua_raise(L, lp_last_error_code(), "%s", lp_last_error());
}

lp_err lp_lua_error_code(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TSTRING)
        return LP_ERR_NONE;
    lp_err code = LP_ERR_NONE;
    lua_getfield(L, LUA_REGISTRYINDEX, KEY_MSG);
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n, m;
        const char *s = lua_tolstring(L, idx, &n), *raised = lua_tolstring(L, -1, &m);
        /* the raised message itself, or with a prefix ending ": " that Lua (a position) or a
         * binding (its name) put in front of it on the way out */
        int same = n == m ? memcmp(s, raised, n) == 0
                          : n > m + 1 && memcmp(s + n - m, raised, m) == 0 && s[n - m - 2] == ':' &&
                                s[n - m - 1] == ' ';
        if (same) {
            lua_getfield(L, LUA_REGISTRYINDEX, KEY_CODE);
            code = (lp_err)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return code;
}

lp_err lp_lua_caught_code(lua_State *L, int status, int idx)
{
    if (status == LUA_ERRMEM)
        return LP_ERR_NOMEM;
    if (lp_interrupted())
        return LP_ERR_INTERRUPTED;
    return lp_lua_error_code(L, idx);
}

void lp_lua_error_forget(lua_State *L)
{
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, KEY_MSG);
}
