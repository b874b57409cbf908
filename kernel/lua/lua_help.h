/* help(x), and the text that help and inspection (Shift+Tab) show of a value (lua_help.c). */
#ifndef LP_LUA_HELP_H
#define LP_LUA_HELP_H

#include <lua.h>

#include "core/buf.h"

/* Appends what the value at idx is: its docstring; for a module (a documented table) its
 * functions, sub-modules and object types with one-line docs; for an object of a registered
 * type (lp_lua_settype) the type's doc, methods and fields; else its text form. */
void lp_lua_describe(lua_State *L, int idx, lp_buf *out);
/* help([value]): lp_lua_describe's text in the pager. */
int lp_lua_help(lua_State *L);

#endif
