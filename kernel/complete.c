/* Completion and inspection from the live Lua state: globals, table fields, methods of
 * objects (their metatable's __index table, or the __methods and __fields that
 * lp_lua_settype registered), string methods, keywords; inspection shows what lua_help.c's
 * lp_lua_describe says (docstrings, an object's methods and fields). Lookups use raw access
 * and __index tables only; a field of a registered type is read through that type's own (C)
 * __index, and only of a metatable a binding registered: completing never runs user code. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "interp.h"
#include "lua_api.h"
#include "lua_help.h"

static const char *const keywords[] = {"and", "break", "do", "else", "elseif", "end", "false", "for",
                                       "function", "goto", "if", "in", "local", "nil", "not", "or",
                                       "repeat", "return", "then", "true", "until", "while", NULL};

static int ident_char(char c)
{
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (unsigned char)c >= 0x80;
}

/* Whether the metatable at idx was registered by a binding (lp_lua_settype). */
static int registered_type(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_getfield(L, LUA_REGISTRYINDEX, LP_LUA_TYPE_OF_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pushvalue(L, idx);
    int yes = lua_rawget(L, -2) == LUA_TBOOLEAN;
    lua_pop(L, 2);
    return yes;
}

/* With [obj, key, metatable of obj] on top: when the metatable lists key in __methods,
 * replaces the three with the method; when it lists key in __fields (a type registered with
 * lp_lua_settype, whose __index is the binding's C function), with obj[key]. Returns 1 then;
 * else 0, with the stack as it was. */
static int registered_member(lua_State *L)
{
    if (lua_getfield(L, -1, "__methods") == LUA_TTABLE) {
        lua_pushvalue(L, -3);
        if (lua_rawget(L, -2) != LUA_TNIL) {
            lua_replace(L, -5);
            lua_pop(L, 3);
            return 1;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "__fields") == LUA_TTABLE && registered_type(L, -2)) {
        lua_pushvalue(L, -3);
        if (lua_rawget(L, -2) != LUA_TNIL) {
            lua_pop(L, 3);
            lua_gettable(L, -2); /* the binding's __index: [obj, value] */
            lua_replace(L, -2);
            return 1;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

/* Resolves a.b.c (n bytes) starting from the globals. Pushes the value (maybe nil). */
static void resolve(lua_State *L, const char *path, size_t n)
{
    lua_pushglobaltable(L);
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && path[j] != '.' && path[j] != ':')
            j++;
        if (j == i) { /* empty segment */
            lua_pop(L, 1);
            lua_pushnil(L);
            return;
        }
        /* raw lookup, then follow __index tables (no functions: never run user code) */
        lua_pushlstring(L, path + i, j - i);
        int guard = 0;
        for (;;) {
            if (lua_istable(L, -2)) {
                lua_pushvalue(L, -1);
                if (lua_rawget(L, -3) != LUA_TNIL) {
                    lua_replace(L, -3);
                    lua_pop(L, 1);
                    break;
                }
                lua_pop(L, 1);
            } else if (lua_type(L, -2) == LUA_TSTRING) {
                lua_getglobal(L, "string");
                lua_replace(L, -3);
                continue;
            }
            if (++guard > 8 || !lua_getmetatable(L, -2)) {
                lua_pop(L, 2);
                lua_pushnil(L);
                return;
            }
            if (registered_member(L)) { /* [obj, key] -> [value] */
                break;
            }
            lua_getfield(L, -1, "__index");
            lua_remove(L, -2);      /* metatable */
            if (!lua_istable(L, -1)) {
                lua_pop(L, 3);
                lua_pushnil(L);
                return;
            }
            lua_replace(L, -3);     /* search the __index table next */
        }
        i = j + 1;
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Adds the identifier keys of the table at idx that start with prefix, of the given kind
 * (functions only when functions_only). */
static void add_keys(lua_State *L, int idx, const char *prefix, size_t plen, json_t *seen, int functions_only,
                     const char *kind)
{
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t kl;
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kl) : NULL;
        int ok = k && kl >= plen && strncmp(k, prefix, plen) == 0 && (!functions_only || lua_isfunction(L, -1));
        for (size_t c = 0; ok && c < kl; c++)
            ok = ident_char(k[c]) && !(c == 0 && k[0] >= '0' && k[0] <= '9');
        if (ok && !json_object_get(seen, k))
            json_object_set_new(seen, k, json_string(kind));
        lua_pop(L, 1);
    }
}

/* Adds the string keys of the table at idx (and its __index chain) that start with prefix. */
static void collect(lua_State *L, int idx, const char *prefix, size_t plen, json_t *seen, int methods_only)
{
    idx = lua_absindex(L, idx);
    for (int depth = 0; depth < 8; depth++) {
        if (lua_istable(L, idx)) {
            lua_pushnil(L);
            while (lua_next(L, idx)) {
                if (lua_type(L, -2) == LUA_TSTRING) {
                    size_t kl;
                    const char *k = lua_tolstring(L, -2, &kl);
                    int ok = kl >= plen && strncmp(k, prefix, plen) == 0 && ident_char(k[0]) &&
                             !(k[0] == '_' && k[1] == '_' && plen < 2);
                    if (ok && methods_only && !lua_isfunction(L, -1))
                        ok = 0;
                    for (size_t c = 0; ok && c < kl; c++)
                        if (!ident_char(k[c]))
                            ok = 0;
                    if (ok && !json_object_get(seen, k))
                        json_object_set_new(seen, k, json_string(lua_isfunction(L, -1) ? "function"
                                                                  : lua_istable(L, -1)  ? "module"
                                                                                        : "instance"));
                }
                lua_pop(L, 1);
            }
        }
        int mt_type;
        if (lua_type(L, idx) == LUA_TSTRING) {
            lua_getglobal(L, "string");
            mt_type = LUA_TTABLE;
        } else {
            if (!lua_getmetatable(L, idx))
                return;
            if (lua_getfield(L, -1, "__methods") == LUA_TTABLE)
                add_keys(L, -1, prefix, plen, seen, 1, "method");
            lua_pop(L, 1);
            if (!methods_only && lua_getfield(L, -1, "__fields") == LUA_TTABLE)
                add_keys(L, -1, prefix, plen, seen, 0, "instance");
            lua_pop(L, 1);
            mt_type = lua_getfield(L, -1, "__index");
            lua_remove(L, -2);
        }
        if (mt_type != LUA_TTABLE) {
            lua_pop(L, 1);
            return;
        }
        lua_replace(L, idx); /* walk into the __index table (idx is our own copy) */
    }
}

static json_t *complete(lua_State *L, const char *code, size_t pos, size_t *start, size_t *end, json_t **meta)
{
    size_t len = strlen(code);
    if (pos > len)
        pos = len;
    size_t s = pos;
    while (s > 0 && (ident_char(code[s - 1]) || code[s - 1] == '.' || code[s - 1] == ':'))
        s--;
    /* don't start an expression with a digit or a separator */
    while (s < pos && (code[s] == '.' || code[s] == ':' || (code[s] >= '0' && code[s] <= '9')))
        s++;
    size_t e = pos;
    while (e < len && ident_char(code[e]))
        e++;
    const char *expr = code + s;
    size_t elen = pos - s;
    size_t last = elen;
    while (last > 0 && expr[last - 1] != '.' && expr[last - 1] != ':')
        last--;
    const char *prefix = expr + last;
    size_t plen = elen - last;
    int methods_only = last > 0 && expr[last - 1] == ':';
    json_t *seen = json_object();
    int top = lua_gettop(L);
    if (last == 0) {
        lua_pushglobaltable(L);
        collect(L, -1, prefix, plen, seen, 0);
        for (int i = 0; keywords[i]; i++)
            if (strncmp(keywords[i], prefix, plen) == 0 && plen > 0 && !json_object_get(seen, keywords[i]))
                json_object_set_new(seen, keywords[i], json_string("keyword"));
    } else {
        resolve(L, expr, last - 1);
        if (!lua_isnil(L, -1))
            collect(L, -1, prefix, plen, seen, methods_only);
    }
    lua_settop(L, top);
    size_t n = json_object_size(seen);
    const char **names = malloc((n ? n : 1) * sizeof *names);
    size_t k = 0;
    const char *key;
    json_t *v;
    json_object_foreach(seen, key, v) names[k++] = key;
    qsort(names, k, sizeof *names, cmp_str);
    json_t *matches = json_array(), *types = json_array();
    for (size_t i = 0; i < k; i++) {
        json_array_append_new(matches, json_string(names[i]));
        json_array_append_new(types, json_pack("{s:s, s:s}", "text", names[i], "type",
                                               json_string_value(json_object_get(seen, names[i]))));
    }
    free(names);
    json_decref(seen);
    *start = s + last;
    *end = e;
    *meta = types;
    return matches;
}

static json_t *inspect(lua_State *L, const char *code, size_t pos, int detail)
{
    size_t len = strlen(code);
    if (pos > len)
        pos = len;
    /* The name under or just before the cursor; for `f(` the function's name. */
    size_t e = pos;
    while (e < len && ident_char(code[e]))
        e++;
    size_t s = e;
    while (s > 0 && (ident_char(code[s - 1]) || code[s - 1] == '.' || code[s - 1] == ':'))
        s--;
    if (s == e && e > 0 && code[e - 1] == '(') {
        e--;
        s = e;
        while (s > 0 && (ident_char(code[s - 1]) || code[s - 1] == '.' || code[s - 1] == ':'))
            s--;
    }
    if (s == e)
        return NULL;
    int top = lua_gettop(L);
    resolve(L, code + s, e - s);
    if (lua_isnil(L, -1)) {
        lua_settop(L, top);
        return NULL;
    }
    lp_buf b = LP_BUF_INIT;
    lp_buf_printf(&b, "%.*s: %s\n", (int)(e - s), code + s, luaL_typename(L, -1));
    (void)detail; /* the description is short enough for both levels */
    lp_lua_describe(L, -1, &b);
    lua_settop(L, top);
    json_t *bundle = json_pack("{s:s}", "text/plain", lp_buf_str(&b));
    lp_buf_free(&b);
    return bundle;
}

/* ---- the protected entry points -------------------------------------------------------- */

typedef struct complete_args {
    const char *code;
    size_t pos, *start, *end;
    json_t **meta, *result;
    int detail;
} complete_args;

static void complete_p(lua_State *L, void *arg)
{
    complete_args *a = arg;
    a->result = complete(L, a->code, a->pos, a->start, a->end, a->meta);
}

static void inspect_p(lua_State *L, void *arg)
{
    complete_args *a = arg;
    a->result = inspect(L, a->code, a->pos, a->detail);
}

json_t *lp_interp_complete(lp_interp *I, const char *code, size_t pos, size_t *start, size_t *end, json_t **meta)
{
    complete_args a = {code, pos, start, end, meta, NULL, 0};
    *start = *end = pos;
    *meta = NULL;
    if (lp_interp_protect(I, complete_p, &a) < 0 || !a.result) {
        json_decref(a.result);
        json_decref(*meta);
        *meta = json_array();
        return json_array();
    }
    return a.result;
}

json_t *lp_interp_inspect(lp_interp *I, const char *code, size_t pos, int detail)
{
    complete_args a = {code, pos, NULL, NULL, NULL, NULL, detail};
    if (lp_interp_protect(I, inspect_p, &a) < 0) {
        json_decref(a.result);
        return NULL;
    }
    return a.result;
}
