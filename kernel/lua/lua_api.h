/* The contract between the kernel's Lua state and the binding modules (kernel/lua/lua_*.c).
 * The Lua bindings are the only place that turns backend objects into Lua values.
 *
 * A binding module exposes one function, `void lp_lua_open_<thing>(lua_State *L)`, which the
 * interpreter calls once at start-up with the global table `loupe` on top of the stack; it
 * adds its functions (and sub-tables such as loupe.plot) to that table and leaves the stack
 * as it found it.
 *
 * Objects: userdata with a metatable made by luaL_newmetatable("loupe.<Type>"). Give it
 *   __index    (methods), __tostring (the text/plain form), __gc (release),
 *   __display  optional: function(self) -> table {["text/plain"]=..., ["text/html"]=...,
 *              ["application/vnd.loupe.<thing>+json"]=...}: the rich form shown when the
 *              object is a cell's value or passed to display(). Strings only.
 *
 * Errors: raise with luaL_error / lp_lua_backend_error; never abort. A backend function that
 * returns the error "interrupted" (lp_interrupt_check) is reported to the user as an
 * interrupt (ename "KeyboardInterrupt"). Out-of-memory messages start "cannot allocate".
 */
#ifndef LP_LUA_API_H
#define LP_LUA_API_H

#include <jansson.h>
#include <lua.h>

/* Sets t[name] = f for the table at stack index t, and records `doc` as its docstring
 * (shown by inspect, Shift+Tab in JupyterLab). doc is copied. The first line of doc is the
 * signature, e.g. "loupe.zeros(d1, d2, ...) -> Tensor". */
void lp_lua_setfunc(lua_State *L, int t, const char *name, lua_CFunction f, const char *doc);
/* Records a docstring for the value at stack index idx (a table, function or metatable). */
void lp_lua_setdoc(lua_State *L, int idx, const char *doc);
/* Raises a Lua error with lp_last_error() as the message, prefixed by `what: ` when
 * what is not NULL. Does not return. */
int lp_lua_backend_error(lua_State *L, const char *what);
/* Publishes a MIME bundle (a JSON object of mime -> string; stolen) as display_data, or as
 * update_display_data when display_id is not NULL and update is non-zero. Works in the
 * kernel and in `loupe run` (text/plain printed). Returns 0, or raises on a bad bundle. */
int lp_lua_publish(lua_State *L, json_t *bundle, const char *display_id, int update);

#endif
