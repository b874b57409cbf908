/* help(x) and the descriptions that inspection shows: from the docstrings of functions and
 * tables (lp_lua_setdoc) and from the type registry (lp_lua_settype: a type's doc, its
 * __methods and __fields). Reads raw tables only: describing never runs user code. */
#include "lua_help.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interp.h"
#include "lua_api.h"

#define SUMMARY_MAX 96

/* The end of a docstring's signature: its first line, and the lines after it while its
 * brackets are open (a signature written over two lines). */
static const char *signature_end(const char *doc)
{
    int depth = 0;
    const char *p = doc;
    for (; *p; p++) {
        if (*p == '(' || *p == '[' || *p == '{')
            depth++;
        else if ((*p == ')' || *p == ']' || *p == '}') && depth > 0)
            depth--;
        else if (*p == '\n' && depth == 0)
            break;
    }
    return p;
}

static int sentence_end(const char *p)
{
    if (*p != '.')
        return 0;
    const char *q = p + 1;
    if (!*q)
        return 1;
    if (*q != ' ' && *q != '\n')
        return 0;
    while (*q == ' ' || *q == '\n')
        q++;
    /* "e.g. x", "et al. 2021": a sentence ends before a capital letter or the end */
    return !*q || (*q >= 'A' && *q <= 'Z');
}

/* The first sentence of the text after a docstring's signature, on one line, cut at
 * SUMMARY_MAX bytes (at a UTF-8 boundary). */
static void put_summary(lp_buf *b, const char *doc)
{
    const char *s = signature_end(doc);
    if (!*s)
        return;
    s++;
    size_t n = 0;
    for (const char *p = s; *p; p++) {
        if (sentence_end(p)) {
            lp_buf_putc(b, '.');
            return;
        }
        if (*p == '\n' && p[1] == ' ') /* an indented example follows */
            return;
        lp_buf_putc(b, *p == '\n' ? ' ' : *p);
        if (++n >= SUMMARY_MAX && p[1]) {
            while ((p[1] & 0xC0) == 0x80) /* finish the character */
                lp_buf_putc(b, *++p);
            lp_buf_puts(b, "\u2026");
            return;
        }
    }
}

/* A docstring's signature (its first line, or lines while brackets are open). */
static void put_signature(lp_buf *b, const char *doc)
{
    lp_buf_printf(b, "%.*s", (int)(signature_end(doc) - doc), doc);
}

/* The first line of a docstring, after "name: " when it starts so. */
static void put_first_line(lp_buf *b, const char *name, const char *doc)
{
    size_t n = strlen(name);
    if (strncmp(doc, name, n) == 0 && doc[n] == ':' && doc[n + 1] == ' ')
        doc += n + 2;
    const char *e = strchr(doc, '\n');
    lp_buf_printf(b, "%.*s", (int)(e ? e - doc : (ptrdiff_t)strlen(doc)), doc);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* The string keys of the table at idx whose values have Lua type `type` (-1: any), sorted,
 * as a Lua array left on the stack. Returns its length. */
static int sorted_keys(lua_State *L, int idx, int type)
{
    idx = lua_absindex(L, idx);
    lua_newtable(L);
    int arr = lua_gettop(L), n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) == LUA_TSTRING && (type < 0 || lua_type(L, -1) == type) &&
            strncmp(lua_tostring(L, -2), "__", 2) != 0) {
            lua_pushvalue(L, -2);
            lua_rawseti(L, arr, ++n);
        }
        lua_pop(L, 1);
    }
    const char **names = malloc((size_t)(n ? n : 1) * sizeof *names);
    if (!names)
        return 0;
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, arr, i + 1);
        names[i] = lua_tostring(L, -1);
        lua_pop(L, 1); /* still referenced by the array */
    }
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    lua_newtable(L);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, i + 1);
    }
    free(names);
    lua_remove(L, arr);
    return n;
}

/* "  signature\n      summary\n" for each function of the table at idx. */
static void list_functions(lua_State *L, int idx, const char *heading, lp_buf *b)
{
    idx = lua_absindex(L, idx);
    int n = sorted_keys(L, idx, LUA_TFUNCTION);
    if (n > 0)
        lp_buf_printf(b, "\n%s:\n", heading);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        lua_pushvalue(L, -1);
        lua_rawget(L, idx);
        const char *doc = lp_doc_lookup(L, -1);
        if (doc) {
            lp_buf_puts(b, "  ");
            put_signature(b, doc);
            lp_buf_puts(b, "\n      ");
            put_summary(b, doc);
        } else {
            lp_buf_printf(b, "  %s(...)", lua_tostring(L, -2));
        }
        lp_buf_putc(b, '\n');
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
}

/* Sub-modules (documented tables) and other values of a module table. */
static void list_members(lua_State *L, int idx, const char *modname, lp_buf *b)
{
    idx = lua_absindex(L, idx);
    int n = sorted_keys(L, idx, LUA_TTABLE), shown = 0;
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        lua_rawget(L, idx);
        const char *doc = lp_doc_lookup(L, -1);
        lua_pop(L, 1);
        if (!doc)
            continue;
        if (!shown++)
            lp_buf_puts(b, "\nModules (help(<module>) lists their functions):\n");
        lua_rawgeti(L, -1, i);
        char full[128];
        snprintf(full, sizeof full, "%s%s%s", modname, *modname ? "." : "", lua_tostring(L, -1));
        lua_pop(L, 1);
        lp_buf_printf(b, "  %s: ", full);
        put_first_line(b, full, doc);
        lp_buf_putc(b, '\n');
    }
    lua_pop(L, 1);
}

/* The registered object types, for help(loupe) and help(). */
static void list_types(lua_State *L, lp_buf *b)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, LP_LUA_TYPES_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    int types = lua_gettop(L);
    int n = sorted_keys(L, types, LUA_TTABLE);
    if (n > 0)
        lp_buf_puts(b, "\nObjects (help(obj) lists their methods and fields):\n");
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        const char *name = lua_tostring(L, -1);
        lp_buf_printf(b, "  %s: ", name);
        lua_pushvalue(L, -1);
        lua_rawget(L, types);
        const char *doc = lp_doc_lookup(L, -1);
        if (doc)
            put_first_line(b, name, doc);
        lua_pop(L, 2);
        lp_buf_putc(b, '\n');
    }
    lua_pop(L, 2);
}

/* An object of a registered type: the type's doc, its methods and its fields. Returns 0
 * when the value's metatable is not a registered type. */
static int describe_object(lua_State *L, int idx, lp_buf *b)
{
    if (!lua_getmetatable(L, idx))
        return 0;
    int mt = lua_gettop(L);
    if (lua_getfield(L, mt, "__fields") != LUA_TTABLE) {
        lua_settop(L, mt - 1);
        return 0;
    }
    int fields = lua_gettop(L);
    const char *doc = lp_doc_lookup(L, mt);
    if (doc)
        lp_buf_printf(b, "%s\n", doc);
    if (lua_getfield(L, mt, "__methods") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_getfield(L, mt, "__index");
    }
    if (lua_istable(L, -1))
        list_functions(L, -1, "Methods (obj:name(...))", b);
    lua_pop(L, 1);
    int n = sorted_keys(L, fields, LUA_TSTRING);
    if (n > 0)
        lp_buf_puts(b, "\nFields (obj.name):\n");
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        const char *k = lua_tostring(L, -1);
        lua_rawget(L, fields);
        lp_buf_printf(b, "  %s: %s\n", k, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_settop(L, mt - 1);
    return 1;
}

void lp_lua_describe(lua_State *L, int idx, lp_buf *b)
{
    idx = lua_absindex(L, idx);
    int top = lua_gettop(L);
    if (lua_type(L, idx) != LUA_TTABLE && describe_object(L, idx, b)) {
        lp_buf_puts(b, "\nValue: ");
        lp_repr_text(L, idx, b);
        lp_buf_putc(b, '\n');
        lua_settop(L, top);
        return;
    }
    const char *doc = lp_doc_lookup(L, idx);
    if (doc) {
        lp_buf_printf(b, "%s\n", doc);
        if (lua_type(L, idx) == LUA_TTABLE) {
            lua_getglobal(L, "loupe");
            int is_loupe = lua_rawequal(L, -1, idx);
            lua_pop(L, 1);
            list_functions(L, idx, "Functions", b);
            list_members(L, idx, is_loupe ? "loupe" : "", b);
            if (is_loupe)
                list_types(L, b);
        }
    } else if (lua_type(L, idx) == LUA_TTABLE && describe_object(L, idx, b)) {
        ; /* a table object of a registered type */
    } else if (lua_isfunction(L, idx)) {
        lua_Debug ar;
        lua_pushvalue(L, idx);
        lp_buf_puts(b, "(no documentation) a function");
        if (lua_getinfo(L, ">S", &ar))
            lp_buf_printf(b, " defined in %s%s", ar.short_src, ar.what[0] == 'C' ? " (built in)" : "");
        lp_buf_putc(b, '\n');
    } else {
        lp_buf_printf(b, "(no documentation) a %s: ", luaL_typename(L, idx));
        lp_repr_text(L, idx, b);
        lp_buf_putc(b, '\n');
    }
    lua_settop(L, top);
}

int lp_lua_help(lua_State *L)
{
    lp_buf b = LP_BUF_INIT;
    if (lua_isnoneornil(L, 1)) {
        lp_buf_puts(&b, "loupe: cells are Lua 5.4. help(x) shows what x is and does (a function, a module, an\n"
                        "object: its methods and fields); Shift+Tab on a name does too, and Tab after `obj:` or\n"
                        "`obj.` completes its methods and fields. Start with help(loupe), then:\n"
                        "  m = loupe.load(\"models/default\"); r = m:run(\"The capital of France is\"); help(r)\n");
        list_types(L, &b);
    } else {
        lp_lua_describe(L, 1, &b);
    }
    if (b.oom) {
        lp_buf_free(&b);
        return lp_lua_raise(L, LP_ERR_NOMEM, "help: cannot allocate its text");
    }
    json_t *bundle = json_pack("{s:s}", "text/plain", lp_buf_str(&b));
    lp_buf_free(&b);
    const lp_io *io = lp_interp_io(lp_interp_from_lua(L));
    if (io->page)
        io->page(io->ud, bundle);
    else
        io->display(io->ud, bundle, NULL, 0);
    return 0;
}
