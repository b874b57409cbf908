/* Comms from Lua: a cell registers a target, and the frontend opens comms to it
 *   loupe.comm_target("echo", function(comm, data)
 *     comm:on_msg(function(d) comm:send(d) end)
 *   end)
 * or a cell opens one to the frontend: c = loupe.comm_open("target", data).
 * A comm is a table {id = ..., target = ...} with methods send, close, on_msg, on_close. */
#include <lauxlib.h>
#include <string.h>

#include "interp.h"
#include "lua_api.h"
#include "util.h"

#define TARGETS_KEY "loupe.comm_targets"
#define COMMS_KEY "loupe.comms"

static const lp_io *io_of(lua_State *L) { return lp_interp_io(lp_interp_from_lua(L)); }

static void push_registry_table(lua_State *L, const char *key)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, key);
}

static const char *comm_id(lua_State *L, int idx)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "id");
    const char *id = lua_tostring(L, -1);
    lua_pop(L, 1); /* the comm table keeps the string alive */
    if (!id)
        luaL_error(L, "not a comm");
    return id;
}

static json_t *data_arg(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx))
        return json_object();
    json_t *j = lp_lua_to_json(L, idx);
    if (!json_is_object(j)) { /* comm data is a JSON object; wrap anything else */
        json_t *o = json_object();
        json_object_set_new(o, "value", j);
        return o;
    }
    return j;
}

static int c_send(lua_State *L)
{
    const char *id = comm_id(L, 1);
    const lp_io *io = io_of(L);
    json_t *content = json_pack("{s:s, s:o}", "comm_id", id, "data", data_arg(L, 2));
    io->comm(io->ud, "comm_msg", content);
    return 0;
}

static void forget(lua_State *L, const char *id)
{
    push_registry_table(L, COMMS_KEY);
    lua_pushnil(L);
    lua_setfield(L, -2, id);
    lua_pop(L, 1);
}

static int c_close(lua_State *L)
{
    const char *id = comm_id(L, 1);
    const lp_io *io = io_of(L);
    io->comm(io->ud, "comm_close", json_pack("{s:s, s:o}", "comm_id", id, "data", data_arg(L, 2)));
    forget(L, id);
    return 0;
}

static int c_on_msg(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_setfield(L, 1, "_on_msg");
    return 0;
}

static int c_on_close(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_setfield(L, 1, "_on_close");
    return 0;
}

/* Pushes a new comm table and records it as open. */
static void new_comm(lua_State *L, const char *id, const char *target)
{
    lua_newtable(L);
    lua_pushstring(L, id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, target);
    lua_setfield(L, -2, "target");
    luaL_setmetatable(L, "loupe.Comm");
    push_registry_table(L, COMMS_KEY);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, id);
    lua_pop(L, 1);
}

static int l_comm_target(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    if (!lua_isnil(L, 2))
        luaL_checktype(L, 2, LUA_TFUNCTION);
    push_registry_table(L, TARGETS_KEY);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, name);
    return 0;
}

static int l_comm_open(lua_State *L)
{
    const char *target = luaL_checkstring(L, 1);
    char id[37];
    lp_uuid(id);
    json_t *data = data_arg(L, 2);
    new_comm(L, id, target);
    const lp_io *io = io_of(L);
    io->comm(io->ud, "comm_open", json_pack("{s:s, s:s, s:o}", "comm_id", id, "target_name", target, "data", data));
    return 1;
}

void lp_lua_open_comm(lua_State *L)
{
    luaL_newmetatable(L, "loupe.Comm");
    lua_newtable(L);
    lp_lua_setfunc(L, -1, "send", c_send, "comm:send(data)\nSends a comm_msg with data (a table) to the frontend.");
    lp_lua_setfunc(L, -1, "close", c_close, "comm:close([data])\nCloses the comm.");
    lp_lua_setfunc(L, -1, "on_msg", c_on_msg, "comm:on_msg(function(data) ... end)\nHandles messages from the frontend.");
    lp_lua_setfunc(L, -1, "on_close", c_on_close, "comm:on_close(function(data) ... end)\nRuns when the frontend closes the comm.");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lp_lua_setfunc(L, -1, "comm_target", l_comm_target,
                   "loupe.comm_target(name, function(comm, data) ... end)\n"
                   "Registers a comm target: the function runs when a frontend opens a comm to it.");
    lp_lua_setfunc(L, -1, "comm_open", l_comm_open,
                   "loupe.comm_open(target [, data]) -> comm\nOpens a comm to a target in the frontend.");
}

/* ---- called by the kernel for frontend comm messages --------------------------------- */

static void call_handler(lp_interp *I, int nargs)
{
    lua_State *L = lp_interp_lua(I);
    lp_interp_set_user_mode(I, 1);
    if (lua_pcall(L, nargs, 0, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        const lp_io *io = lp_interp_io(I);
        char line[1200];
        snprintf(line, sizeof line, "comm handler failed: %s\n", msg ? msg : "error");
        io->write(io->ud, 2, line, strlen(line));
        lua_pop(L, 1);
    }
    lp_interp_set_user_mode(I, 0);
}

typedef struct comm_args {
    lp_interp *I;
    json_t *content;
    const char *field;
    int closing, found;
    json_t *result;
} comm_args;

static void comm_open_p(lua_State *L, void *arg)
{
    comm_args *a = arg;
    lp_interp *I = a->I;
    json_t *content = a->content;
    a->found = 0;
    const char *id = json_string_value(json_object_get(content, "comm_id"));
    const char *target = json_string_value(json_object_get(content, "target_name"));
    if (!id || !target)
        return;
    int top = lua_gettop(L);
    push_registry_table(L, TARGETS_KEY);
    if (lua_getfield(L, -1, target) != LUA_TFUNCTION) {
        lua_settop(L, top);
        return;
    }
    a->found = 1;
    new_comm(L, id, target);
    json_t *data = json_object_get(content, "data");
    if (data)
        lp_lua_push_json(L, data);
    else
        lua_newtable(L);
    call_handler(I, 2);
    lua_settop(L, top);
}

int lp_interp_comm_open(lp_interp *I, json_t *content)
{
    comm_args a = {I, content, NULL, 0, 0, NULL};
    lp_interp_protect(I, comm_open_p, &a);
    return a.found ? 0 : -1;
}

static void dispatch_p(lua_State *L, void *arg)
{
    comm_args *a = arg;
    lp_interp *I = a->I;
    json_t *content = a->content;
    const char *field = a->field;
    int closing = a->closing;
    const char *id = json_string_value(json_object_get(content, "comm_id"));
    if (!id)
        return;
    int top = lua_gettop(L);
    push_registry_table(L, COMMS_KEY);
    if (lua_getfield(L, -1, id) == LUA_TTABLE) {
        if (lua_getfield(L, -1, field) == LUA_TFUNCTION) {
            json_t *data = json_object_get(content, "data");
            if (data)
                lp_lua_push_json(L, data);
            else
                lua_newtable(L);
            call_handler(I, 1);
        }
    } else {
        lp_log("comm message for an unknown comm %s", id);
    }
    lua_settop(L, top);
    if (closing)
        forget(L, id);
}

static void dispatch(lp_interp *I, json_t *content, const char *field, int closing)
{
    comm_args a = {I, content, field, closing, 0, NULL};
    lp_interp_protect(I, dispatch_p, &a);
}

void lp_interp_comm_msg(lp_interp *I, json_t *content) { dispatch(I, content, "_on_msg", 0); }
void lp_interp_comm_close(lp_interp *I, json_t *content) { dispatch(I, content, "_on_close", 1); }

static void comm_info_p(lua_State *L, void *arg)
{
    comm_args *a = arg;
    const char *target = a->field;
    json_t *out = a->result;
    int top = lua_gettop(L);
    push_registry_table(L, COMMS_KEY);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
            lua_getfield(L, -1, "target");
            const char *t = lua_tostring(L, -1);
            if (t && (!target || strcmp(t, target) == 0))
                json_object_set_new(out, lua_tostring(L, -3), json_pack("{s:s}", "target_name", t));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_settop(L, top);
}

json_t *lp_interp_comm_info(lp_interp *I, const char *target)
{
    comm_args a = {I, NULL, target, 0, 0, json_object()};
    lp_interp_protect(I, comm_info_p, &a);
    return a.result;
}
