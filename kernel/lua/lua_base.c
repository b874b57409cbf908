/* The base of the cell language: print/io.write/io.read routed to the notebook, display(),
 * clear_output(), input(), the docstring registry (help() is lua_help.c's), and loupe.sleep /
 * loupe.progress / loupe.html / loupe.markdown / loupe.memory. Comms live in lua_comm.c. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "interp.h"
#include "lua_api.h"
#include "lua_plot.h"
#include "lua_tensor.h"
#include "lua_data.h"
#include "lua_help.h"
#include "lua_model.h"
#include "lua_tokenizer.h"
#include "lua_acts.h"
#include "lua_toy.h"
#include "lua_train.h"
#include "progress.h"
#include "util.h"

#define DOCS_KEY "loupe.docs"

static const lp_io *io_of(lua_State *L) { return lp_interp_io(lp_interp_from_lua(L)); }


/* ---- the lua_api.h contract -------------------------------------------------------------- */

static void push_docs(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, DOCS_KEY) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
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

const char *lp_doc_lookup(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    push_docs(L);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    const char *doc = lua_tostring(L, -1); /* kept alive by the registry table */
    lua_pop(L, 2);
    return doc;
}

int lp_lua_publish(lua_State *L, json_t *bundle, const char *display_id, int update)
{
    if (!json_is_object(bundle)) {
        json_decref(bundle);
        return luaL_error(L, "display: a bundle must be an object of mime type -> data");
    }
    const lp_io *io = io_of(L);
    io->display(io->ud, bundle, display_id, update);
    return 0;
}

/* ---- output and input ------------------------------------------------------------------- */

static int l_print(lua_State *L)
{
    const lp_io *io = io_of(L);
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_addchar(&b, '\n');
    luaL_pushresult(&b);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    io->write(io->ud, 1, s, len);
    return 0;
}

static int l_io_write(lua_State *L)
{
    const lp_io *io = io_of(L);
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s;
        if (lua_type(L, i) == LUA_TNUMBER)
            s = luaL_tolstring(L, i, &len);
        else
            s = luaL_checklstring(L, i, &len);
        io->write(io->ud, 1, s, len);
        if (lua_type(L, i) == LUA_TNUMBER)
            lua_pop(L, 1);
    }
    lua_getglobal(L, "io");
    lua_getfield(L, -1, "stdout");
    return 1;
}

static int read_line(lua_State *L, const char *prompt, int password)
{
    const lp_io *io = io_of(L);
    lp_buf b = LP_BUF_INIT;
    if (io->input(io->ud, prompt, password, &b) < 0) {
        lp_buf_free(&b);
        return lp_lua_backend_error(L, NULL);
    }
    lua_pushlstring(L, lp_buf_str(&b), b.len);
    lp_buf_free(&b);
    return 1;
}

static int l_input(lua_State *L)
{
    const char *prompt = luaL_optstring(L, 1, "");
    int password = 0;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "password");
        password = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    return read_line(L, prompt, password);
}

/* io.read(fmt...): each format asks the frontend for one line. */
static int l_io_read(lua_State *L)
{
    int n = lua_gettop(L);
    if (n == 0) {
        lua_pushliteral(L, "l");
        n = 1;
    }
    for (int i = 1; i <= n; i++) {
        const char *fmt = lua_type(L, i) == LUA_TNUMBER ? "l" : luaL_checkstring(L, i);
        if (*fmt == '*')
            fmt++;
        read_line(L, "", 0);
        if (*fmt == 'n') {
            lua_Number v;
            if (lua_stringtonumber(L, lua_tostring(L, -1)) == 0) {
                lua_pop(L, 1);
                lua_pushnil(L);
            } else {
                v = lua_tonumber(L, -1);
                lua_pop(L, 2);
                lua_pushnumber(L, v);
            }
        } else if (*fmt == 'L') {
            lua_pushliteral(L, "\n");
            lua_concat(L, 2);
        }
    }
    return n;
}

static int l_display(lua_State *L)
{
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++)
        lp_lua_publish(L, lp_repr_bundle(L, i, 1), NULL, 0);
    return 0;
}

static int l_clear_output(lua_State *L)
{
    const lp_io *io = io_of(L);
    io->clear(io->ud, lua_toboolean(L, 1));
    return 0;
}

/* ---- rich text objects: loupe.html, loupe.markdown ------------------------------------ */

static int rich_display(lua_State *L)
{
    lua_getfield(L, 1, "bundle");
    return 1;
}

static int rich_tostring(lua_State *L)
{
    lua_getfield(L, 1, "bundle");
    lua_getfield(L, -1, "text/plain");
    return 1;
}

static int make_rich(lua_State *L, const char *mime)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *plain = luaL_optstring(L, 2, n > 200 ? "<rich text>" : s);
    lua_newtable(L);
    lua_newtable(L);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, mime);
    lua_pushstring(L, plain);
    lua_setfield(L, -2, "text/plain");
    lua_setfield(L, -2, "bundle");
    luaL_setmetatable(L, "loupe.Rich");
    return 1;
}

static int l_html(lua_State *L) { return make_rich(L, "text/html"); }
static int l_markdown(lua_State *L) { return make_rich(L, "text/markdown"); }

/* ---- time ------------------------------------------------------------------------------- */

static int l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    double end = lp_now_s() + (s > 0 ? s : 0);
    for (;;) {
        if (lp_interrupted())
            return lp_lua_raise(L, LP_ERR_INTERRUPTED, "interrupted");
        double left = end - lp_now_s();
        if (left <= 0)
            break;
        struct timespec ts = {0, (long)((left < 0.01 ? left : 0.01) * 1e9)};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int l_clock(lua_State *L)
{
    lua_pushnumber(L, lp_now_s());
    return 1;
}

static int l_memory(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + lua_gc(L, LUA_GCCOUNTB, 0));
    return 1;
}

/* ---- progress bars ---------------------------------------------------------------------- */

typedef struct progress {
    lua_Integer i, n;
    double t0, last;
    int started, finished;
    char id[48];
    char label[200];
    int over_table; /* iterate the table at upvalue 2 */
} progress;

#define PROGRESS_INTERVAL 0.25

static void progress_publish(lua_State *L, progress *p, int final)
{
    double t = lp_now_s();
    json_t *b = lp_display_progress(p->label, (double)p->i, (double)p->n, t - p->t0, final);
    if (!b)
        return;
    lp_lua_publish(L, b, p->id, p->started);
    p->started = 1;
    p->last = t;
}

static int progress_next(lua_State *L)
{
    progress *p = luaL_checkudata(L, lua_upvalueindex(1), "loupe.Progress");
    if (p->finished)
        return 0;
    if (!p->started)
        progress_publish(L, p, 0);
    else if (lp_now_s() - p->last >= PROGRESS_INTERVAL)
        progress_publish(L, p, 0);
    if (p->i >= p->n) {
        p->finished = 1;
        progress_publish(L, p, 1);
        return 0;
    }
    p->i++;
    lua_pushinteger(L, p->i);
    if (p->over_table) {
        lua_geti(L, lua_upvalueindex(2), p->i);
        return 2;
    }
    return 1;
}

/* The loop's closing value: shows the final state even after break or an error. */
static int progress_close(lua_State *L)
{
    progress *p = luaL_checkudata(L, 1, "loupe.Progress");
    if (!p->finished) { /* left early: break, error or interrupt; not "done" */
        p->finished = 1;
        progress_publish(L, p, 0);
    }
    return 0;
}

static int l_progress(lua_State *L)
{
    progress *p = lua_newuserdatauv(L, sizeof *p, 0);
    memset(p, 0, sizeof *p);
    luaL_setmetatable(L, "loupe.Progress");
    int ud = lua_gettop(L);
    if (lua_istable(L, 1)) {
        p->over_table = 1;
        p->n = (lua_Integer)luaL_len(L, 1);
    } else {
        p->n = luaL_checkinteger(L, 1);
    }
    snprintf(p->label, sizeof p->label, "%s", luaL_optstring(L, 2, ""));
    p->t0 = lp_now_s();
    char uuid[37];
    lp_uuid(uuid);
    snprintf(p->id, sizeof p->id, "loupe-progress-%.12s", uuid);
    lua_pushvalue(L, ud);
    if (p->over_table)
        lua_pushvalue(L, 1);
    lua_pushcclosure(L, progress_next, p->over_table ? 2 : 1);
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushvalue(L, ud); /* closing value */
    return 4;
}

/* ---- interrupts cannot be caught --------------------------------------------------------
 * An interrupt raises "interrupted" from the count hook; a pcall in a loop would swallow it
 * and the loop would go on. These wrappers re-raise when the interrupt flag is up. */

static int reraise_if_interrupted(lua_State *L, int status_ok)
{
    if (!status_ok && lp_interrupted())
        return lp_lua_raise(L, LP_ERR_INTERRUPTED, "interrupted");
    return 0;
}

static int l_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    int n = lua_gettop(L);
    int st = lua_pcall(L, n - 1, LUA_MULTRET, 0);
    reraise_if_interrupted(L, st == LUA_OK);
    lua_pushboolean(L, st == LUA_OK);
    lua_insert(L, 1);
    return lua_gettop(L);
}

static int l_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 1); /* f */
    lua_copy(L, 2, 1);   /* the handler where f was */
    lua_replace(L, 2);   /* f where the handler was */
    int st = lua_pcall(L, n - 2, LUA_MULTRET, 1);
    reraise_if_interrupted(L, st == LUA_OK);
    lua_pushboolean(L, st == LUA_OK);
    lua_replace(L, 1);
    return lua_gettop(L);
}

static int l_resume(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1)); /* the original coroutine.resume */
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    reraise_if_interrupted(L, lua_toboolean(L, 1));
    return lua_gettop(L);
}

/* ---- registration ----------------------------------------------------------------------- */

void lp_lua_open_comm(lua_State *L);
void lp_lua_open_dict(lua_State *L); /* lua_dict.h */
void lp_lua_open_sae_eval(lua_State *L); /* lua_sae_eval.c: sae:evaluate, after lp_lua_open_dict */
void lp_lua_open_sae_codec(lua_State *L); /* lua_sae_codec.c: after lp_lua_open_dict */
void lp_lua_open_sae_train(lua_State *L); /* lua_sae_train.c: after lp_lua_open_dict */
void lp_lua_open_clt(lua_State *L);       /* lua_clt.c: clt:encode, clt:forward, after lp_lua_open_dict */
void lp_lua_open_sae_features(lua_State *L); /* lua_sae_features.c: after lp_lua_open_dict */
void lp_lua_open_analysis(lua_State *L); /* lua_analysis.h: after lp_lua_open_model */
void lp_lua_open_steer(lua_State *L);    /* lua_steer.h: m:intervene, loupe.compare; after lp_lua_open_model */
void lp_lua_open_graph(lua_State *L);    /* lua_graph.c: loupe.attribute, loupe.graph */

static void lp_lua_open_base(lua_State *L)
{
    lua_pushglobaltable(L);
    lp_lua_setfunc(L, -1, "print", l_print, "print(...)\nWrites its arguments, separated by tabs, to the cell's output.");
    lp_lua_setfunc(L, -1, "display", l_display,
                   "display(value, ...)\nShows each value as an output of the cell now: figures, tables, "
                   "loupe.html(...), or any Lua value as text.");
    lp_lua_setfunc(L, -1, "clear_output", l_clear_output,
                   "clear_output([wait])\nClears the cell's output; with wait = true, when the next output arrives.");
    lp_lua_setfunc(L, -1, "input", l_input,
                   "input([prompt [, {password = true}]]) -> string\nAsks the person at the notebook for a line of text.");
    lp_lua_setfunc(L, -1, "help", lp_lua_help,
                   "help([value])\nShows what a function, module or object is and does (an object's methods "
                   "and fields) in the pager.");
    lp_lua_setfunc(L, -1, "pcall", l_pcall, "pcall(f, ...) -> ok, ...\nCalls f in protected mode (interrupts still stop the cell).");
    lp_lua_setfunc(L, -1, "xpcall", l_xpcall, "xpcall(f, handler, ...) -> ok, ...\nLike pcall, with a message handler.");
    lua_getfield(L, -1, "coroutine");
    lua_getfield(L, -1, "resume");
    lua_pushcclosure(L, l_resume, 1);
    lua_setfield(L, -2, "resume");
    lua_pop(L, 1);
    lua_getfield(L, -1, "io");
    lp_lua_setfunc(L, -1, "write", l_io_write, "io.write(...)\nWrites strings or numbers to the cell's output.");
    lp_lua_setfunc(L, -1, "read", l_io_read, "io.read([fmt])\nReads a line typed at the notebook (\"l\", \"L\", \"n\").");
    lua_pop(L, 2); /* io, the globals */

    luaL_newmetatable(L, "loupe.Rich");
    lua_pushcfunction(L, rich_display);
    lua_setfield(L, -2, "__display");
    lua_pushcfunction(L, rich_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    luaL_newmetatable(L, "loupe.Progress");
    lua_pushcfunction(L, progress_close);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);

    lua_newtable(L); /* loupe */
    lp_lua_setdoc(L, -1, "loupe: a microscope for transformer language models.\n"
                          "  m = loupe.load(\"models/default\")   -- a model (help(m): its methods)\n"
                          "  r = m:run(\"The capital of France is\")   -- a run with every hook point cached\n"
                          "  r:top(5); r:attention(0); r[\"blocks.0.attn.hook_pattern\"]");
    lua_pushstring(L, LOUPE_VERSION);
    lua_setfield(L, -2, "version");
    lp_lua_setfunc(L, -1, "sleep", l_sleep, "loupe.sleep(seconds)\nWaits; an interrupt stops it at once.");
    lp_lua_setfunc(L, -1, "clock", l_clock, "loupe.clock() -> seconds\nA monotonic clock, for timing.");
    lp_lua_setfunc(L, -1, "memory", l_memory, "loupe.memory() -> bytes\nMemory held by Lua values now.");
    lp_lua_setfunc(L, -1, "html", l_html, "loupe.html(str [, text]) -> object\nShows str as HTML (sanitized in untrusted notebooks).");
    lp_lua_setfunc(L, -1, "markdown", l_markdown, "loupe.markdown(str) -> object\nShows str as Markdown.");
    lp_lua_setfunc(L, -1, "progress", l_progress,
                   "loupe.progress(n | array [, label])\nA progress bar for a loop, updated in place a few times a second:\n"
                   "  for i in loupe.progress(100, \"training\") do ... end\n"
                   "  for i, x in loupe.progress(items) do ... end");
    lua_setglobal(L, "loupe");
}

void lp_lua_open_all(lua_State *L)
{
    lp_lua_open_base(L);
    lua_getglobal(L, "loupe");
    lp_lua_open_comm(L);
    lp_lua_open_tensor(L);
    lp_lua_open_tokenizer(L);
    lp_lua_open_data(L);
    lp_lua_open_model(L);
    lp_lua_open_analysis(L);
    lp_lua_open_plot(L);
    lp_lua_open_circuit(L); /* lua_plot.h: loupe.display.circuit */
    lp_lua_open_toy(L);
    lp_lua_open_train(L);
    lp_lua_open_acts(L);
    lp_lua_open_dict(L);
    lp_lua_open_sae_eval(L);
    lp_lua_open_sae_codec(L);
    lp_lua_open_sae_train(L);
    lp_lua_open_steer(L);
    lp_lua_open_graph(L);
    lp_lua_open_clt(L);
    lp_lua_open_sae_features(L);
    lua_pop(L, 1);
}
