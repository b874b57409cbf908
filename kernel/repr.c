/* How Lua values look in the notebook: a readable text form (tables pretty-printed, with
 * depth, size and cycle limits) and the MIME bundle of a cell's value (objects with a
 * __display metamethod give their rich form). */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "html.h"
#include "interp.h"

#define MAX_DEPTH 4
#define MAX_ITEMS 100
#define MAX_STR_IN_TABLE 200
#define MAX_STR_TOP 100000
#define LINE_WIDTH 80

static void quote(lp_buf *out, const char *s, size_t n, size_t max)
{
    lp_buf_putc(out, '"');
    size_t shown = n > max ? max : n;
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': lp_buf_puts(out, "\\\""); break;
        case '\\': lp_buf_puts(out, "\\\\"); break;
        case '\n': lp_buf_puts(out, "\\n"); break;
        case '\t': lp_buf_puts(out, "\\t"); break;
        case '\r': lp_buf_puts(out, "\\r"); break;
        default:
            if (c < 0x20 || c == 0x7F)
                lp_buf_printf(out, "\\%d", c);
            else
                lp_buf_putc(out, (char)c);
        }
    }
    lp_buf_putc(out, '"');
    if (shown < n)
        lp_buf_printf(out, "..(%zu bytes)", n);
}

static int is_identifier(const char *s, size_t n)
{
    static const char *kw[] = {"and", "break", "do", "else", "elseif", "end", "false", "for", "function",
                               "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
                               "true", "until", "while"};
    if (n == 0 || !(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return 0;
    }
    for (size_t i = 0; i < sizeof kw / sizeof *kw; i++)
        if (strlen(kw[i]) == n && memcmp(kw[i], s, n) == 0)
            return 0;
    return 1;
}

static void repr(lua_State *L, int idx, lp_buf *out, int depth, int indent, int seen);

/* Sort helper: keys of a table other than 1..n, as a Lua array at the top of the stack. */
static int key_less(lua_State *L)
{
    int ta = lua_type(L, 1), tb = lua_type(L, 2);
    if (ta != tb)
        return lua_pushboolean(L, ta < tb), 1;
    if (ta == LUA_TNUMBER || ta == LUA_TSTRING)
        return lua_pushboolean(L, lua_compare(L, 1, 2, LUA_OPLT)), 1;
    return lua_pushboolean(L, lua_topointer(L, 1) < lua_topointer(L, 2)), 1;
}

static void repr_table(lua_State *L, int idx, lp_buf *out, int depth, int indent, int seen)
{
    if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) {
        lua_pop(L, 1);
        size_t n;
        const char *s = luaL_tolstring(L, idx, &n);
        lp_buf_append(out, s, n);
        lua_pop(L, 1);
        return;
    }
    /* Cycle check: `seen` is a table of tables being printed. */
    lua_pushvalue(L, idx);
    if (lua_rawget(L, seen) != LUA_TNIL) {
        lua_pop(L, 1);
        lp_buf_puts(out, "<cycle>");
        return;
    }
    lua_pop(L, 1);
    if (depth >= MAX_DEPTH) {
        lp_buf_puts(out, "{...}");
        return;
    }
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, seen);

    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    /* Gather the other keys and sort them so output is deterministic. */
    lua_newtable(L);
    int keys = lua_gettop(L);
    lua_Integer nk = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_isinteger(L, -1)) {
            lua_Integer k = lua_tointeger(L, -1);
            if (k >= 1 && k <= n)
                continue;
        }
        lua_pushvalue(L, -1);
        lua_rawseti(L, keys, ++nk);
        if (nk > 10000)
            break;
    }
    if (nk > 1 && nk <= 10000) {
        lua_getglobal(L, "table");
        lua_getfield(L, -1, "sort");
        lua_pushvalue(L, keys);
        lua_pushcfunction(L, key_less);
        if (lua_pcall(L, 2, 0, 0) != LUA_OK)
            lua_pop(L, 1);
        lua_pop(L, 1);
    }
    /* Render each item on its own, then choose one line or several. */
    lp_buf items = LP_BUF_INIT; /* items separated by '\0' */
    size_t count = 0, total = 0;
    int multiline = 0;
    lua_Integer shown = 0, all = n + nk;
    for (lua_Integer i = 1; i <= all && shown < MAX_ITEMS; i++, shown++) {
        lp_buf item = LP_BUF_INIT;
        if (i <= n) {
            lua_rawgeti(L, idx, i);
        } else {
            lua_rawgeti(L, keys, i - n);
            if (lua_type(L, -1) == LUA_TSTRING && is_identifier(lua_tostring(L, -1), lua_rawlen(L, -1))) {
                lp_buf_puts(&item, lua_tostring(L, -1));
            } else {
                lp_buf_putc(&item, '[');
                repr(L, lua_gettop(L), &item, depth + 1, indent + 2, seen);
                lp_buf_putc(&item, ']');
            }
            lp_buf_puts(&item, " = ");
            lua_rawget(L, idx);
        }
        repr(L, lua_gettop(L), &item, depth + 1, indent + 2, seen);
        lua_pop(L, 1);
        if (memchr(lp_buf_str(&item), '\n', item.len))
            multiline = 1;
        total += item.len + 2;
        lp_buf_append(&items, lp_buf_str(&item), item.len + 1);
        lp_buf_free(&item);
        count++;
    }
    char more[64] = "";
    if (shown < all)
        snprintf(more, sizeof more, "... (%lld more)", (long long)(all - shown));
    if ((size_t)indent + total + 2 > LINE_WIDTH)
        multiline = 1;
    lp_buf_putc(out, '{');
    const char *p = lp_buf_str(&items);
    for (size_t i = 0; i < count; i++) {
        if (multiline)
            lp_buf_printf(out, "\n%*s", indent + 2, "");
        lp_buf_puts(out, p);
        if (i + 1 < count || *more)
            lp_buf_puts(out, multiline ? "," : ", ");
        p += strlen(p) + 1;
    }
    if (*more) {
        if (multiline)
            lp_buf_printf(out, "\n%*s", indent + 2, "");
        lp_buf_puts(out, more);
    }
    if (multiline && count)
        lp_buf_printf(out, "\n%*s", indent, "");
    lp_buf_putc(out, '}');
    lp_buf_free(&items);
    lua_pop(L, 1); /* keys */
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, seen);
}

static void repr(lua_State *L, int idx, lp_buf *out, int depth, int indent, int seen)
{
    idx = lua_absindex(L, idx);
    if (!lua_checkstack(L, 8)) {
        lp_buf_puts(out, "...");
        return;
    }
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        quote(out, s, n, depth == 0 ? MAX_STR_TOP : MAX_STR_IN_TABLE);
        return;
    }
    case LUA_TTABLE:
        repr_table(L, idx, out, depth, indent, seen);
        return;
    default: {
        size_t n;
        const char *s = luaL_tolstring(L, idx, &n); /* numbers, booleans, __tostring */
        lp_buf_append(out, s, n);
        lua_pop(L, 1);
    }
    }
}

static int repr_protected(lua_State *L)
{
    lp_buf *out = lua_touserdata(L, 2);
    lua_newtable(L);
    repr(L, 1, out, 0, 0, lua_gettop(L));
    return 0;
}

void lp_repr_text(lua_State *L, int idx, lp_buf *out)
{
    idx = lua_absindex(L, idx);
    lp_buf tmp = LP_BUF_INIT;
    lua_pushcfunction(L, repr_protected);
    lua_pushvalue(L, idx);
    lua_pushlightuserdata(L, &tmp);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) { /* __tostring failed, or memory */
        lp_buf_printf(out, "<%s: cannot show it: %s>", luaL_typename(L, idx),
                      lua_isstring(L, -1) ? lua_tostring(L, -1) : "error");
        lua_pop(L, 1);
    } else {
        lp_utf8_sanitize(out, lp_buf_str(&tmp), tmp.len);
    }
    lp_buf_free(&tmp);
}

/* The rich form: __display(self) -> {mime = string}. Returns a new bundle or NULL. */
static json_t *rich(lua_State *L, int idx)
{
    if (luaL_getmetafield(L, idx, "__display") == LUA_TNIL)
        return NULL;
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
        lp_buf b = LP_BUF_INIT;
        lp_buf_printf(&b, "<%s: its display failed: %s>", luaL_typename(L, idx),
                      lua_isstring(L, -1) ? lua_tostring(L, -1) : "it did not return a table");
        lua_pop(L, 1);
        json_t *j = json_pack("{s:s}", "text/plain", lp_buf_str(&b));
        lp_buf_free(&b);
        return j;
    }
    json_t *bundle = json_object();
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            const char *mime = lua_tostring(L, -2);
            json_t *v = NULL;
            if (strstr(mime, "json")) /* JSON mime types carry structured data */
                v = json_loadb(s, n, 0, NULL);
            if (!v) {
                lp_buf clean = LP_BUF_INIT;
                lp_utf8_sanitize(&clean, s, n);
                v = json_stringn(lp_buf_str(&clean), clean.len);
                lp_buf_free(&clean);
            }
            if (v)
                json_object_set_new(bundle, mime, v);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (!json_object_get(bundle, "text/plain")) {
        lp_buf b = LP_BUF_INIT;
        lp_repr_text(L, idx, &b);
        json_object_set_new(bundle, "text/plain", json_string(lp_buf_str(&b)));
        lp_buf_free(&b);
    }
    return bundle;
}

json_t *lp_repr_bundle(lua_State *L, int first, int n)
{
    first = lua_absindex(L, first);
    if (n == 1) {
        json_t *r = rich(L, first);
        if (r)
            return r;
    }
    lp_buf b = LP_BUF_INIT;
    for (int i = 0; i < n; i++) {
        if (i)
            lp_buf_putc(&b, '\t');
        lp_repr_text(L, first + i, &b);
    }
    json_t *j = json_pack("{s:s}", "text/plain", b.oom ? "<out of memory>" : lp_buf_str(&b));
    lp_buf_free(&b);
    return j;
}
