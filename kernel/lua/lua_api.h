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
 *   __methods  the table of methods (each set with lp_lua_setfunc, so it has a docstring),
 *              when __index is a function (fields computed on access) rather than that table,
 *   __display  optional: function(self) -> table {["text/plain"]=..., ["text/html"]=...,
 *              ["application/vnd.loupe.<thing>+json"]=...}: the rich form shown when the
 *              object is a cell's value or passed to display(). Strings only.
 *
 * Errors: never abort. A backend function that failed is reported with lp_lua_backend_error,
 * which raises its message and carries its code (core/error.h) to the interpreter, which names
 * the error by the code: out of memory is a MemoryError, an interrupted loop a
 * KeyboardInterrupt (interp.h lists them all). An error of the binding's own (a bad argument)
 * is raised with luaL_error (a LuaError), or with lp_lua_raise when it has a code of its own.
 * Never raise lp_last_error() with luaL_error: the code would be lost. A binding that catches
 * an error (lua_pcall) and raises it again with more words in front keeps its code when the
 * new message ends with ": " and the old one (lp_lua_error_code finds it).
 */
#ifndef LP_LUA_API_H
#define LP_LUA_API_H

#include <jansson.h>
#include <lua.h>

#include "core/error.h"

/* Sets t[name] = f for the table at stack index t, and records `doc` as its docstring
 * (shown by inspect, Shift+Tab in JupyterLab). doc is copied. The first line of doc is the
 * signature, e.g. "loupe.zeros(d1, d2, ...) -> Tensor". */
void lp_lua_setfunc(lua_State *L, int t, const char *name, lua_CFunction f, const char *doc);
/* Records a docstring for the value at stack index idx (a table, function or metatable). */
void lp_lua_setdoc(lua_State *L, int idx, const char *doc);
/* A field of an object type: obj.<name>, and a one-line doc ("Tensor (B, T, vocab): the logits"). */
typedef struct lp_lua_field {
    const char *name, *doc;
} lp_lua_field;
#define LP_LUA_TYPES_KEY "loupe.types"     /* registry: type name ("Run") -> metatable */
#define LP_LUA_TYPE_OF_KEY "loupe.type_of" /* registry: metatable -> true, for registered types */
/* Describes the object type whose metatable (made by luaL_newmetatable("loupe.<Type>")) is at
 * stack index mt, for help(), completion after `obj:` and `obj.`, and inspection (Shift+Tab):
 * doc says what it is (first line: a summary that help(loupe) lists); fields (ended by a NULL
 * name; may be NULL) are what obj.<name> reads. Its methods are the functions of the
 * metatable's __methods table (or of __index when that is a table), with the docstrings
 * lp_lua_setfunc gave them. A binding calls it when it makes the metatable: a new type gets
 * help and completion by registering. */
void lp_lua_settype(lua_State *L, int mt, const char *doc, const lp_lua_field *fields);
/* Raises a Lua error with lp_last_error() as the message, prefixed by `what: ` when
 * what is not NULL, and lp_last_error_code() as its code. Does not return. */
int lp_lua_backend_error(lua_State *L, const char *what);
/* Raises a Lua error with the message (lua_pushfstring's formats, with the position in front
 * as luaL_error puts it) and code. Does not return. */
int lp_lua_raise(lua_State *L, lp_err code, const char *fmt, ...);
/* The code of the error value at idx: that of the last error raised by lp_lua_raise or
 * lp_lua_backend_error when the value is its message (or ends with ": " and its message), else
 * LP_ERR_NONE (a plain Lua error). */
lp_err lp_lua_error_code(lua_State *L, int idx);
/* The code of an error that lua_pcall returned with status, its value at idx: LP_ERR_NOMEM for
 * LUA_ERRMEM, LP_ERR_INTERRUPTED while the interrupt flag is up, else lp_lua_error_code. For a
 * binding that passes a Lua callback's error on (lp_set_error_code, or lp_lua_raise). */
lp_err lp_lua_caught_code(lua_State *L, int status, int idx);
/* Forgets the last raised error (the interpreter calls it before each cell). */
void lp_lua_error_forget(lua_State *L);
/* Publishes a MIME bundle (a JSON object of mime -> string; stolen) as display_data, or as
 * update_display_data when display_id is not NULL and update is non-zero. Works in the
 * kernel and in `loupe run` (text/plain printed). Returns 0, or raises on a bad bundle. */
int lp_lua_publish(lua_State *L, json_t *bundle, const char *display_id, int update);

/* Options tables (lua_opts.c): t[key] as a boolean (Lua truth), def when nil. */
int lp_lua_opt_bool(lua_State *L, int t, const char *key, int def);

#endif
