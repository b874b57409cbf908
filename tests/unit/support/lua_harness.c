#include "lua_harness.h"

#include <criterion/criterion.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "lua_api.h"

#define DOCS_KEY "loupe.test.docs"     /* registry: value -> docstring */
#define LAST_KEY "loupe.test.last"     /* registry: keeps the last returned string alive */

t_publish_log t_pub = {.last_update = -1};
static int publish_mode = T_PUBLISH_REFUSE;

/* ---- stand-ins for kernel/lua/lua_base.c ---------------------------------------------- */

static void push_docs(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, DOCS_KEY) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, DOCS_KEY);
}

void lp_lua_setdoc(lua_State *L, int idx, const char *doc)
{
    idx = lua_absindex(L, idx);
    push_docs(L);
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

static void record_in_lua(lua_State *L, const char *id, int update, const char *plain, const char *html)
{
    if (lua_getglobal(L, "published") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setglobal(L, "published");
    }
    lua_createtable(L, 0, 4);
    lua_pushstring(L, id);
    lua_setfield(L, -2, "id");
    lua_pushboolean(L, update);
    lua_setfield(L, -2, "update");
    lua_pushstring(L, plain);
    lua_setfield(L, -2, "plain");
    lua_pushstring(L, html);
    lua_setfield(L, -2, "html");
    lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
    lua_pop(L, 1);
}

int lp_lua_publish(lua_State *L, json_t *bundle, const char *display_id, int update)
{
    if (publish_mode == T_PUBLISH_REFUSE) {
        json_decref(bundle);
        return luaL_error(L, "publish is not available in tests");
    }
    if (!json_is_object(bundle)) {
        json_decref(bundle);
        return luaL_error(L, "display: a bundle must be an object of mime type -> data");
    }
    const char *plain = json_string_value(json_object_get(bundle, "text/plain"));
    const char *html = json_string_value(json_object_get(bundle, "text/html"));
    if (!plain) {
        json_decref(bundle);
        return luaL_error(L, "publish: a bundle needs text/plain");
    }
    const char *id = display_id ? display_id : "";
    /* The log takes the bundle first, so that it is freed even if Lua raises below. */
    t_pub.count++;
    t_pub.last_update = update;
    snprintf(t_pub.last_id, sizeof t_pub.last_id, "%s", id);
    json_decref(t_pub.last_bundle);
    t_pub.last_bundle = bundle;
    record_in_lua(L, id, update, plain, html ? html : "");
    return 0;
}

/* ---- states and chunks ------------------------------------------------------------------ */

static void reset_log(void)
{
    json_decref(t_pub.last_bundle);
    memset(&t_pub, 0, sizeof t_pub);
    t_pub.last_update = -1;
}

lua_State *t_lua_new_list(int publish, const t_lua_opener *openers)
{
    reset_log();
    publish_mode = publish;
    lua_State *L = luaL_newstate();
    cr_assert_not_null(L, "cannot create a Lua state");
    luaL_openlibs(L);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "loupe");
    for (size_t i = 0; openers[i]; i++) {
        openers[i](L);
        cr_assert_eq(lua_gettop(L), 1, "binding opener %zu must leave the stack as it found it (top %d, not 1)",
                     i + 1, lua_gettop(L));
    }
    lua_pop(L, 1);
    return L;
}

void t_lua_close(lua_State *L)
{
    if (L)
        lua_close(L);
    reset_log();
}

void t_lua_run(lua_State *L, const char *code)
{
    int top = lua_gettop(L);
    if (luaL_dostring(L, code) != LUA_OK)
        cr_assert_fail("Lua error: %s\nin:\n%s", lua_tostring(L, -1), code);
    lua_settop(L, top);
}

/* Keeps the string at the top alive in the registry, pops it, returns it. */
static const char *keep_top(lua_State *L)
{
    lua_setfield(L, LUA_REGISTRYINDEX, LAST_KEY);
    lua_getfield(L, LUA_REGISTRYINDEX, LAST_KEY);
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1);
    return s;
}

const char *t_lua_string(lua_State *L, const char *code)
{
    int top = lua_gettop(L);
    if (luaL_dostring(L, code) != LUA_OK)
        cr_assert_fail("Lua error: %s\nin:\n%s", lua_tostring(L, -1), code);
    cr_assert(lua_gettop(L) > top && lua_isstring(L, top + 1), "no string from:\n%s", code);
    lua_settop(L, top + 1);
    lua_tostring(L, -1); /* a number becomes a string in place */
    return keep_top(L);
}

const char *t_lua_fails(lua_State *L, const char *code)
{
    int top = lua_gettop(L);
    cr_assert_neq(luaL_dostring(L, code), LUA_OK, "expected an error from:\n%s", code);
    if (!lua_isstring(L, -1)) { /* error(nil) or error({}) */
        lua_pop(L, 1);
        lua_pushstring(L, "(error object is not a string)");
    }
    lua_settop(L, top + 1);
    return keep_top(L);
}

void t_lua_set_string(lua_State *L, const char *name, const char *value)
{
    lua_pushstring(L, value);
    lua_setglobal(L, name);
}

const char *t_lua_doc(lua_State *L, const char *code)
{
    int top = lua_gettop(L);
    if (luaL_dostring(L, code) != LUA_OK)
        cr_assert_fail("Lua error: %s\nin:\n%s", lua_tostring(L, -1), code);
    cr_assert(lua_gettop(L) > top, "no value from:\n%s", code);
    lua_settop(L, top + 1);
    push_docs(L);
    lua_pushvalue(L, -2);
    lua_rawget(L, -2);
    const char *doc = lua_tostring(L, -1); /* kept alive by the docs table */
    lua_settop(L, top);
    return doc;
}
