/* The Lua state, running cells, errors, is_complete, user_expressions. */
#include "interp.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "lua/lua_api.h"
#include "util.h"

#define KERNEL_RESERVE ((size_t)64 << 20) /* memory the kernel may use past the user limit */

struct lp_interp {
    lua_State *L;
    lp_io io;
    size_t used, limit;
    int user_mode; /* 1 while user code runs: the limit is strict */
};

/* ---- memory ---------------------------------------------------------------------------- */

static void *lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lp_interp *I = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        I->used -= old;
        return NULL;
    }
    if (nsize > old) {
        size_t cap = I->limit + (I->user_mode ? 0 : KERNEL_RESERVE);
        if (I->used - old + nsize > cap)
            return NULL; /* Lua raises "not enough memory" */
    }
    void *p = realloc(ptr, nsize);
    if (p)
        I->used = I->used - old + nsize;
    return p;
}

static size_t parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    while (*end == ' ')
        end++;
    switch (*end) {
    case 'k': case 'K': v *= 1024.0; break;
    case 'm': case 'M': v *= 1024.0 * 1024; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; break;
    case 't': case 'T': v *= 1024.0 * 1024 * 1024 * 1024; break;
    default: break;
    }
    return v > 0 ? (size_t)v : 0;
}

static size_t default_limit(void)
{
    const char *e = getenv("LOUPE_LUA_MEMORY_LIMIT");
    if (e && *e) {
        size_t v = parse_size(e);
        if (v >= ((size_t)16 << 20))
            return v;
        lp_log("ignoring LOUPE_LUA_MEMORY_LIMIT=%s (at least 16MB)", e);
    }
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psize > 0)
        return (size_t)pages * (size_t)psize / 2;
    return (size_t)4 << 30;
}

void lp_interp_set_user_mode(lp_interp *I, int on) { I->user_mode = on; }

/* ---- interrupts ------------------------------------------------------------------------- */

static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if (lp_interrupted())
        lp_lua_raise(L, LP_ERR_INTERRUPTED, "interrupted");
}

/* ---- set-up ----------------------------------------------------------------------------- */

lp_interp *lp_interp_new(const lp_io *io, size_t memory_limit)
{
    lp_interp *I = calloc(1, sizeof *I);
    if (!I) {
        lp_set_error_code(LP_ERR_NOMEM, "out of memory");
        return NULL;
    }
    I->io = *io;
    I->limit = memory_limit ? memory_limit : default_limit();
    I->L = lua_newstate(lua_alloc, I);
    if (!I->L) {
        free(I);
        lp_set_error("cannot create the Lua state");
        return NULL;
    }
    *(lp_interp **)lua_getextraspace(I->L) = I;
    luaL_openlibs(I->L);
    lp_lua_open_all(I->L);
    lua_sethook(I->L, interrupt_hook, LUA_MASKCOUNT, 1000);
    return I;
}

void lp_interp_free(lp_interp *I)
{
    if (!I)
        return;
    lua_close(I->L);
    free(I);
}

lua_State *lp_interp_lua(lp_interp *I) { return I->L; }
lp_interp *lp_interp_from_lua(lua_State *L) { return *(lp_interp **)lua_getextraspace(L); }
const lp_io *lp_interp_io(lp_interp *I) { return &I->io; }

/* ---- protected calls for the kernel's own Lua work ----------------------------------- */

typedef struct protect_call {
    void (*fn)(lua_State *L, void *arg);
    void *arg;
} protect_call;

static int protect_trampoline(lua_State *L)
{
    protect_call *pc = lua_touserdata(L, 1);
    lua_settop(L, 0);
    pc->fn(L, pc->arg);
    return 0;
}

int lp_interp_protect(lp_interp *I, void (*fn)(lua_State *L, void *arg), void *arg)
{
    lua_State *L = I->L;
    int top = lua_gettop(L);
    protect_call pc = {fn, arg};
    lua_pushcfunction(L, protect_trampoline);
    lua_pushlightuserdata(L, &pc);
    int st = lua_pcall(L, 1, 0, 0);
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        lp_log("lua: %s", msg ? msg : "error");
    }
    lua_settop(L, top);
    return st == LUA_OK ? 0 : -1;
}

/* ---- errors ----------------------------------------------------------------------------- */

/* Message handler: returns {message, traceback, code}; code is the lp_err of an error a
 * binding raised (lua_api.h), read here before anything else can raise another. */
static int msgh(lua_State *L)
{
    lp_err code = lp_lua_error_code(L, 1);
    lp_buf b = LP_BUF_INIT;
    if (lua_type(L, 1) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, 1, &n);
        lp_buf_append(&b, s, n);
    } else if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
        lp_buf_puts(&b, lua_tostring(L, -1));
        lua_pop(L, 1);
    } else {
        lp_buf_puts(&b, "(error object is a ");
        lp_buf_puts(&b, luaL_typename(L, 1));
        lp_buf_puts(&b, " value) ");
        lp_repr_text(L, 1, &b);
    }
    lua_createtable(L, 2, 0);
    lua_pushstring(L, lp_buf_str(&b));
    lua_rawseti(L, -2, 1);
    luaL_traceback(L, L, NULL, 1);
    lua_rawseti(L, -2, 2);
    lua_pushinteger(L, code);
    lua_rawseti(L, -2, 3);
    lp_buf_free(&b);
    return 1;
}

static void set_error(lp_exec_result *res, const char *ename, const char *evalue, const char *tb)
{
    res->ok = 0;
    snprintf(res->ename, sizeof res->ename, "%s", ename);
    free(res->evalue);
    res->evalue = strdup(evalue ? evalue : "");
    json_decref(res->traceback);
    res->traceback = json_array();
    char head[1024];
    snprintf(head, sizeof head, "\x1b[0;31m%s\x1b[0m: ", ename);
    lp_buf first = LP_BUF_INIT;
    lp_buf_puts(&first, head);
    lp_buf_puts(&first, evalue ? evalue : "");
    json_array_append_new(res->traceback, json_string(lp_buf_str(&first)));
    lp_buf_free(&first);
    if (!tb)
        return;
    /* Keep the frames of user code; drop the kernel's own C frames. */
    const char *p = tb;
    int kept = 0;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)(n < 1000 ? n : 1000), p);
        const char *t = line;
        while (*t == ' ' || *t == '\t')
            t++;
        int skip = strcmp(t, "stack traceback:") == 0 || strncmp(t, "[C]: in ?", 9) == 0 ||
                   strstr(t, "in function 'error'") || strstr(t, "in function <") == t;
        if (!skip && *t) {
            if (!kept++)
                json_array_append_new(res->traceback, json_string("Traceback (most recent call first):"));
            char out[1100];
            snprintf(out, sizeof out, "  %s", t);
            json_array_append_new(res->traceback, json_string(out));
        }
        p += n + (nl ? 1 : 0);
    }
}

/* The name of an error raised while a cell ran, by its code (see interp.h). */
static const char *classify(lp_err code, const char *msg)
{
    if (lp_interrupted())
        return "KeyboardInterrupt";
    switch (code) {
    case LP_ERR_NOMEM: return "MemoryError";
    case LP_ERR_INTERRUPTED: return "KeyboardInterrupt";
    case LP_ERR_IO: return "OSError";
    case LP_ERR_FORMAT: return "ValueError";
    case LP_ERR_DEVICE:
    case LP_ERR_INTERNAL: return "RuntimeError";
    case LP_ERR_INPUT: return "LuaError"; /* as the bindings' own argument checks */
    case LP_ERR_NONE: break;
    }
    /* Lua's own error, a string with no code: its stack overflow is the one told by its text */
    if (strstr(msg, "stack overflow"))
        return "RecursionError";
    return "LuaError";
}

/* Runs the function on top of the stack (nargs args below it? no: none). Results stay on
 * the stack; returns the number of results or -1 with res filled. */
static int run_protected(lp_interp *I, lp_exec_result *res)
{
    lua_State *L = I->L;
    int base = lua_gettop(L); /* the function is at base */
    lua_pushcfunction(L, msgh);
    lua_insert(L, base);
    I->user_mode = 1;
    int st = lua_pcall(L, 0, LUA_MULTRET, base);
    I->user_mode = 0;
    lua_remove(L, base);
    if (st == LUA_OK)
        return lua_gettop(L) - base + 1;
    if (st == LUA_ERRMEM) {
        lua_pop(L, 1);
        lua_gc(L, LUA_GCCOLLECT);
        char msg[256], lim[32];
        snprintf(msg, sizeof msg,
                 "not enough memory: Lua values are limited to %s (LOUPE_LUA_MEMORY_LIMIT); "
                 "free some (x = nil) and run again",
                 lp_format_bytes(I->limit, lim, sizeof lim));
        set_error(res, "MemoryError", msg, NULL);
        return -1;
    }
    const char *msg = "error", *tb = NULL;
    lp_err code = LP_ERR_NONE;
    if (lua_istable(L, -1)) {
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        lua_rawgeti(L, -3, 3);
        code = (lp_err)lua_tointeger(L, -1);
        lua_pop(L, 1);
        msg = lua_tostring(L, -2);
        tb = lua_tostring(L, -1);
    } else if (lua_isstring(L, -1)) {
        msg = lua_tostring(L, -1);
    }
    const char *ename = classify(code, msg ? msg : "");
    if (strcmp(ename, "KeyboardInterrupt") == 0)
        msg = "interrupted";
    set_error(res, ename, msg ? msg : "error", tb);
    lua_settop(L, base - 1);
    return -1;
}

/* ---- the value of the last expression --------------------------------------------------- */

/* True when s holds only whitespace and comments ("-- ..." and "--[[ ... ]]"). */
static int blank_or_comment(const char *s)
{
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            s++;
        if (s[0] != '-' || s[1] != '-')
            return *s == '\0';
        s += 2;
        if (*s == '[') { /* a long comment: --[==[ ... ]==] */
            const char *p = s + 1;
            size_t level = 0;
            while (*p == '=')
                p++, level++;
            if (*p == '[') {
                char close[72];
                if (level > 64)
                    return 0;
                close[0] = ']';
                memset(close + 1, '=', level);
                close[level + 1] = ']';
                close[level + 2] = '\0';
                const char *end = strstr(p + 1, close);
                if (!end)
                    return 0;
                s = end + level + 2;
                continue;
            }
        }
        while (*s && *s != '\n')
            s++;
    }
}

/* Loads code so that its last statement, when it is an expression, is returned. Tries the
 * split at each line start from the bottom: `prefix .. "return " .. suffix` must compile
 * and so must the suffix alone as an expression list. Pushes the chunk and returns 1 when
 * it returns a value, 0 when it is plain statements, -1 on a syntax error, -2 when memory ran out
 * (message pushed). */
static int load_cell(lua_State *L, const char *code, const char *chunkname, int want_result)
{
    size_t len = strlen(code);
    if (want_result) {
        lp_buf b = LP_BUF_INIT;
        int tries = 0;
        /* split points: line starts and just after a ';' (`t = {}; t`) */
        for (size_t i = len; tries < 400; i--) {
            if (i == 0 || code[i - 1] == '\n' || code[i - 1] == ';') {
                tries++;
                const char *suffix = code + i;
                if (!blank_or_comment(suffix)) {
                    lp_buf_reset(&b);
                    lp_buf_puts(&b, "return ");
                    lp_buf_puts(&b, suffix);
                    if (luaL_loadbufferx(L, lp_buf_str(&b), b.len, "=expr", "t") == LUA_OK) {
                        lua_pop(L, 1);
                        lp_buf_reset(&b);
                        lp_buf_append(&b, code, i);
                        lp_buf_puts(&b, "return ");
                        lp_buf_puts(&b, suffix);
                        if (luaL_loadbufferx(L, lp_buf_str(&b), b.len, chunkname, "t") == LUA_OK) {
                            lp_buf_free(&b);
                            return 1;
                        }
                        lua_pop(L, 1);
                        break; /* the suffix is an expression but the rest is not complete */
                    }
                    lua_pop(L, 1);
                }
            }
            if (i == 0)
                break;
        }
        lp_buf_free(&b);
    }
    int st = luaL_loadbufferx(L, code, len, chunkname, "t");
    if (st != LUA_OK)
        return st == LUA_ERRMEM ? -2 : -1;
    return 0;
}

/* A trailing ';' hides the value, as in IPython ("x;" is not Lua, so it is dropped). */
static char *strip_hiding_semicolon(const char *code)
{
    size_t e = strlen(code);
    while (e > 0 && (code[e - 1] == ' ' || code[e - 1] == '\n' || code[e - 1] == '\t' || code[e - 1] == '\r'))
        e--;
    if (e == 0 || code[e - 1] != ';')
        return NULL;
    char *c = strdup(code);
    if (c)
        c[e - 1] = ' ';
    return c;
}

void lp_interp_execute(lp_interp *I, const char *code, int count, int want_result, lp_exec_result *res)
{
    lua_State *L = I->L;
    memset(res, 0, sizeof *res);
    res->ok = 1;
    lp_interrupt_clear();
    lp_lua_error_forget(L);
    char chunk[64];
    if (count > 0)
        snprintf(chunk, sizeof chunk, "=In [%d]", count);
    else
        snprintf(chunk, sizeof chunk, "=In [ ]");
    int top = lua_gettop(L);
    char *stripped = want_result ? strip_hiding_semicolon(code) : NULL;
    int kind = load_cell(L, stripped ? stripped : code, chunk, want_result);
    if (stripped && kind == 1)
        kind = 2; /* run as an expression, show nothing */
    free(stripped);
    if (kind < 0) {
        const char *msg = lua_tostring(L, -1);
        set_error(res, kind == -2 ? "MemoryError" : "SyntaxError", msg ? msg : "syntax error", NULL);
        lua_settop(L, top);
        return;
    }
    int n = run_protected(I, res);
    if (n >= 0) {
        int first = lua_gettop(L) - n + 1;
        /* kind 0 shows what an explicit `return` gives */
        int show = want_result && kind != 2 && n > 0 && !(n == 1 && lua_isnil(L, first));
        if (show) {
            res->result = lp_repr_bundle(L, first, n);
        }
    }
    lua_settop(L, top);
    lua_gc(L, LUA_GCSTEP, 0);
    lp_interrupt_clear();
}

void lp_exec_result_clear(lp_exec_result *res)
{
    json_decref(res->result);
    json_decref(res->traceback);
    free(res->evalue);
    memset(res, 0, sizeof *res);
}

json_t *lp_interp_user_expressions(lp_interp *I, json_t *exprs)
{
    json_t *out = json_object();
    const char *name;
    json_t *v;
    json_object_foreach(exprs, name, v)
    {
        const char *src = json_string_value(v);
        lp_exec_result r;
        memset(&r, 0, sizeof r);
        lua_State *L = I->L;
        int top = lua_gettop(L);
        lp_buf b = LP_BUF_INIT;
        lp_buf_puts(&b, "return ");
        lp_buf_puts(&b, src ? src : "nil");
        if (luaL_loadbufferx(L, lp_buf_str(&b), b.len, "=user_expression", "t") != LUA_OK) {
            set_error(&r, "SyntaxError", lua_tostring(L, -1), NULL);
        } else {
            int n = run_protected(I, &r);
            if (n >= 0) {
                json_object_set_new(out, name, json_pack("{s:s, s:o, s:{}}", "status", "ok", "data",
                                                         lp_repr_bundle(L, lua_gettop(L) - n + 1, n), "metadata"));
                r.ok = 1;
            }
        }
        if (!r.ok && r.evalue)
            json_object_set_new(out, name, json_pack("{s:s, s:s, s:s, s:O}", "status", "error", "ename", r.ename,
                                                     "evalue", r.evalue, "traceback", r.traceback));
        lp_exec_result_clear(&r);
        lp_buf_free(&b);
        lua_settop(L, top);
    }
    return out;
}

/* ---- is_complete ------------------------------------------------------------------------ */

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

const char *lp_interp_is_complete(lp_interp *I, const char *code, char **indent)
{
    lua_State *L = I->L;
    *indent = NULL;
    if (blank_or_comment(code))
        return "complete";
    int st = luaL_loadbufferx(L, code, strlen(code), "=cell", "t");
    if (st == LUA_OK) {
        lua_pop(L, 1);
        return "complete";
    }
    const char *msg = lua_tostring(L, -1);
    int incomplete = msg && (ends_with(msg, "near <eof>") || ends_with(msg, "near '<eof>'")) &&
                     !strstr(msg, "unfinished string"); /* a quoted string cannot span lines */
    lua_pop(L, 1);
    if (!incomplete)
        return "invalid";
    /* Indent: that of the last non-blank line, one level deeper after a block opener. */
    const char *last = code, *p = code;
    for (; *p; p++)
        if (*p == '\n' && !blank_or_comment(p + 1))
            last = p + 1;
    size_t ws = strspn(last, " \t");
    size_t ln = strcspn(last, "\n");
    char line[512];
    snprintf(line, sizeof line, "%.*s", (int)(ln < 500 ? ln : 500), last);
    size_t e = strlen(line);
    while (e && (line[e - 1] == ' ' || line[e - 1] == '\r' || line[e - 1] == '\t'))
        line[--e] = '\0';
    int opens = ends_with(line, "do") || ends_with(line, "then") || ends_with(line, "else") ||
                ends_with(line, "{") || ends_with(line, "(") || ends_with(line, "repeat") ||
                ends_with(line, ")") || ends_with(line, "=") || strstr(line, "function") != NULL;
    char *ind = malloc(ws + 3);
    if (ind) {
        memcpy(ind, last, ws);
        ind[ws] = '\0';
        if (opens)
            strcat(ind, "  ");
    }
    *indent = ind;
    return "incomplete";
}
