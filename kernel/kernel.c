#include "kernel.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connection.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "device.h"
#include "streams.h"
#include "util.h"

typedef struct lp_kernel kernel;

struct lp_kernel {
    lp_transport t;
    lp_interp *interp;
    lp_history *history;
    int execution_count;
    const lp_msg *current;   /* the shell request being handled (main thread) */
    int allow_stdin;
    json_t *payload;         /* execute_reply payloads of the current execute */
    lp_msg *held;            /* requests queued when an execute failed (stop_on_error) */
    size_t n_held, cap_held;
};

/* ---- the transport ---------------------------------------------------------------------- */

static int answer(kernel *k, int channel, const lp_msg *req, const char *msg_type, json_t *content)
{
    return k->t.reply(k->t.ud, channel, req, msg_type, content);
}

static int publish(kernel *k, const char *msg_type, json_t *parent, json_t *content)
{
    return k->t.publish(k->t.ud, msg_type, parent, content, NULL);
}

/* busy/idle with req's header as parent. */
static void status(kernel *k, const lp_msg *req, const char *state)
{
    publish(k, "status", req->header, json_pack("{s:s}", "execution_state", state));
}

/* ---- kernel_info -------------------------------------------------------------------------- */

json_t *lp_kernel_info(void)
{
    char banner[256];
    snprintf(banner, sizeof banner,
             "loupe %s: a microscope for transformer language models (%s)\n"
             "Cells are Lua 5.4. help() for an overview; help(f), or Shift+Tab on a name, for its documentation.",
             LOUPE_VERSION, LUA_RELEASE);
    return json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s, s:s}, s:s, s:b, s:[], s:[{s:s, s:s}]}",
                     "status", "ok", "protocol_version", LP_PROTOCOL_VERSION, "implementation", "loupe",
                     "implementation_version", LOUPE_VERSION, "language_info", "name", "lua", "version",
                     LUA_VERSION_MAJOR "." LUA_VERSION_MINOR, "mimetype", "text/x-lua", "file_extension", ".lua",
                     "pygments_lexer", "lua", "codemirror_mode", "lua", "banner", banner, "debugger", 0,
                     "supported_features", "help_links", "text", "Lua 5.4 manual", "url",
                     "https://www.lua.org/manual/5.4/");
}

/* ---- the interpreter's io --------------------------------------------------------------- */

static void io_write(void *ud, int which, const char *s, size_t n)
{
    (void)ud;
    lp_streams_write(which, s, n);
}

static json_t *parent_of(kernel *k) { return k->current ? k->current->header : NULL; }

static void io_display(void *ud, json_t *bundle, const char *display_id, int update)
{
    kernel *k = ud;
    lp_streams_flush(); /* output printed before a display shows before it */
    json_t *content = json_pack("{s:o, s:{}}", "data", bundle, "metadata");
    if (display_id)
        json_object_set_new(content, "transient", json_pack("{s:s}", "display_id", display_id));
    publish(k, update ? "update_display_data" : "display_data", parent_of(k), content);
}

static void io_clear(void *ud, int wait)
{
    kernel *k = ud;
    lp_streams_flush();
    publish(k, "clear_output", parent_of(k), json_pack("{s:b}", "wait", wait));
}

static int io_input(void *ud, const char *prompt, int password, lp_buf *out)
{
    kernel *k = ud;
    if (!k->current || !k->allow_stdin)
        return lp_set_error("input is not available: this frontend does not accept input "
                            "(allow_stdin is false, as in nbclient or papermill runs)");
    lp_streams_flush();
    return k->t.input(k->t.ud, k->current, prompt, password, out);
}

static void io_comm(void *ud, const char *msg_type, json_t *content)
{
    kernel *k = ud;
    lp_streams_flush();
    publish(k, msg_type, parent_of(k), content);
}

static void io_page(void *ud, json_t *bundle)
{
    kernel *k = ud;
    if (!k->payload)
        k->payload = json_array();
    json_array_append_new(k->payload, json_pack("{s:s, s:o, s:i}", "source", "page", "data", bundle, "start", 0));
}

void lp_kernel_stream(void *ud, const char *name, const char *text, json_t *parent)
{
    kernel *k = ud;
    json_t *c = json_pack("{s:s, s:s}", "name", name, "text", text);
    if (!c) { /* not UTF-8: the buffer was cut inside a character, or binary output */
        lp_buf clean = LP_BUF_INIT;
        for (const unsigned char *p = (const unsigned char *)text; *p; p++)
            if (*p < 0x80)
                lp_buf_putc(&clean, (char)*p);
            else
                lp_buf_puts(&clean, "\xEF\xBF\xBD");
        c = json_pack("{s:s, s:s}", "name", name, "text", lp_buf_str(&clean));
        lp_buf_free(&clean);
    }
    publish(k, "stream", parent, c);
}

/* ---- shell handlers ---------------------------------------------------------------------- */

static int get_bool(json_t *o, const char *key, int dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static void hold_queued(kernel *k);

static void do_execute(kernel *k, lp_msg *req)
{
    json_t *c = req->content;
    const char *code = json_string_value(json_object_get(c, "code"));
    int silent = get_bool(c, "silent", 0);
    int store = get_bool(c, "store_history", !silent) && !silent;
    int stop_on_error = get_bool(c, "stop_on_error", 1);
    k->allow_stdin = get_bool(c, "allow_stdin", 0);
    if (!code) {
        answer(k, LP_CH_SHELL, req, "execute_reply",
                        json_pack("{s:s, s:s, s:s, s:[], s:i}", "status", "error", "ename", "BadRequest",
                                  "evalue", "execute_request without a code string", "traceback",
                                  "execution_count", k->execution_count));
        return;
    }
    if (store)
        k->execution_count++;
    int count = k->execution_count;
    if (!silent)
        publish(k, "execute_input", req->header,
                          json_pack("{s:s, s:i}", "code", code, "execution_count", count));
    if (store && k->history)
        lp_history_add(k->history, count, code);

    lp_exec_result res;
    json_decref(k->payload);
    k->payload = json_array();
    lp_interp_execute(k->interp, code, store ? count : 0, 1, &res); /* silent: value computed, not shown */
    lp_streams_end();

    json_t *reply;
    if (res.ok) {
        if (res.result && !silent)
            publish(k, "execute_result", req->header,
                    json_pack("{s:i, s:O, s:{}}", "execution_count", count, "data", res.result, "metadata"));
        json_t *ue = json_object_get(c, "user_expressions");
        json_t *ue_out = json_is_object(ue) && json_object_size(ue) ? lp_interp_user_expressions(k->interp, ue) : json_object();
        lp_streams_flush();
        reply = json_pack("{s:s, s:i, s:o, s:O}", "status", "ok", "execution_count", count,
                          "user_expressions", ue_out, "payload", k->payload);
    } else {
        publish(k, "error", req->header,
                json_pack("{s:s, s:s, s:O}", "ename", res.ename, "evalue", res.evalue, "traceback", res.traceback));
        reply = json_pack("{s:s, s:i, s:s, s:s, s:O, s:{}, s:[]}", "status", "error", "execution_count", count,
                          "ename", res.ename, "evalue", res.evalue, "traceback", res.traceback,
                          "user_expressions", "payload");
    }
    int failed = !res.ok;
    if (failed && stop_on_error)
        hold_queued(k); /* before the reply: what the client sends after it must run */
    answer(k, LP_CH_SHELL, req, "execute_reply", reply);
    lp_exec_result_clear(&res);
}

static void do_kernel_info(kernel *k, lp_msg *req, int channel)
{
    answer(k, channel, req, "kernel_info_reply", lp_kernel_info());
}

static void do_complete(kernel *k, lp_msg *req)
{
    const char *code = json_string_value(json_object_get(req->content, "code"));
    json_t *cp = json_object_get(req->content, "cursor_pos");
    if (!code)
        code = "";
    size_t len = strlen(code);
    size_t pos = json_is_integer(cp) && json_integer_value(cp) >= 0
                     ? lp_utf8_offset(code, len, (size_t)json_integer_value(cp))
                     : len;
    size_t start, end;
    json_t *meta = NULL;
    json_t *matches = lp_interp_complete(k->interp, code, pos, &start, &end, &meta);
    /* cursor positions are in code points, as the spec says */
    size_t cs = lp_utf8_codepoints(code, start), ce = lp_utf8_codepoints(code, end);
    size_t i;
    json_t *m;
    json_array_foreach(meta, i, m)
    {
        json_object_set_new(m, "start", json_integer((json_int_t)cs));
        json_object_set_new(m, "end", json_integer((json_int_t)ce));
    }
    answer(k, LP_CH_SHELL, req, "complete_reply",
                    json_pack("{s:s, s:o, s:I, s:I, s:{s:o}}", "status", "ok", "matches", matches, "cursor_start",
                              (json_int_t)cs, "cursor_end", (json_int_t)ce, "metadata",
                              "_jupyter_types_experimental", meta));
}

static void do_inspect(kernel *k, lp_msg *req)
{
    const char *code = json_string_value(json_object_get(req->content, "code"));
    json_t *cp = json_object_get(req->content, "cursor_pos");
    json_t *dl = json_object_get(req->content, "detail_level");
    if (!code)
        code = "";
    size_t len = strlen(code);
    size_t pos = json_is_integer(cp) ? lp_utf8_offset(code, len, (size_t)json_integer_value(cp)) : len;
    json_t *data = lp_interp_inspect(k->interp, code, pos, json_is_integer(dl) ? (int)json_integer_value(dl) : 0);
    answer(k, LP_CH_SHELL, req, "inspect_reply",
                    json_pack("{s:s, s:b, s:o, s:{}}", "status", "ok", "found", data != NULL, "data",
                              data ? data : json_object(), "metadata"));
}

static void do_is_complete(kernel *k, lp_msg *req)
{
    const char *code = json_string_value(json_object_get(req->content, "code"));
    char *indent = NULL;
    const char *status = lp_interp_is_complete(k->interp, code ? code : "", &indent);
    json_t *c = json_pack("{s:s}", "status", status);
    if (indent)
        json_object_set_new(c, "indent", json_string(indent));
    free(indent);
    answer(k, LP_CH_SHELL, req, "is_complete_reply", c);
}

static int get_int(json_t *o, const char *key, int dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int)json_integer_value(v) : dflt;
}

static void do_history(kernel *k, lp_msg *req)
{
    json_t *c = req->content;
    const char *type = json_string_value(json_object_get(c, "hist_access_type"));
    int output = get_bool(c, "output", 0);
    json_t *h;
    if (!k->history || !type)
        h = json_array();
    else if (strcmp(type, "tail") == 0)
        h = lp_history_tail(k->history, get_int(c, "n", 10), output);
    else if (strcmp(type, "range") == 0)
        h = lp_history_range(k->history, get_int(c, "session", 0), get_int(c, "start", 0), get_int(c, "stop", 0), output);
    else if (strcmp(type, "search") == 0)
        h = lp_history_search(k->history, json_string_value(json_object_get(c, "pattern")), get_int(c, "n", 0),
                              get_bool(c, "unique", 0), output);
    else
        h = json_array();
    if (!h) { /* the database failed (a damaged page, say) */
        answer(k, LP_CH_SHELL, req, "history_reply",
               json_pack("{s:s, s:s, s:s, s:[], s:[]}", "status", "error", "ename", "HistoryError", "evalue",
                         lp_last_error(), "traceback", "history"));
        return;
    }
    answer(k, LP_CH_SHELL, req, "history_reply", json_pack("{s:s, s:o}", "status", "ok", "history", h));
}

static void do_comm_info(kernel *k, lp_msg *req)
{
    const char *target = json_string_value(json_object_get(req->content, "target_name"));
    answer(k, LP_CH_SHELL, req, "comm_info_reply",
                    json_pack("{s:s, s:o}", "status", "ok", "comms", lp_interp_comm_info(k->interp, target)));
}

static void do_comm_open(kernel *k, lp_msg *req)
{
    if (lp_interp_comm_open(k->interp, req->content) < 0) {
        const char *id = json_string_value(json_object_get(req->content, "comm_id"));
        const char *target = json_string_value(json_object_get(req->content, "target_name"));
        lp_log("comm_open for unknown target '%s': closing it", target ? target : "");
        if (id)
            publish(k, "comm_close", req->header, json_pack("{s:s, s:{}}", "comm_id", id, "data"));
    }
}

static void do_shutdown(kernel *k, lp_msg *req, int channel)
{
    int restart = get_bool(req->content, "restart", 0);
    answer(k, channel, req, "shutdown_reply", json_pack("{s:s, s:b}", "status", "ok", "restart", restart));
    k->t.stop(k->t.ud);
    lp_interrupt_request(); /* end a running cell */
}

/* The handler of each shell request type; framing is done by the caller. */
static void dispatch_shell(kernel *k, lp_msg *req)
{
    const char *t = lp_msg_type(req);
    if (strcmp(t, "execute_request") == 0) do_execute(k, req);
    else if (strcmp(t, "kernel_info_request") == 0) do_kernel_info(k, req, LP_CH_SHELL);
    else if (strcmp(t, "complete_request") == 0) do_complete(k, req);
    else if (strcmp(t, "inspect_request") == 0) do_inspect(k, req);
    else if (strcmp(t, "is_complete_request") == 0) do_is_complete(k, req);
    else if (strcmp(t, "history_request") == 0) do_history(k, req);
    else if (strcmp(t, "comm_info_request") == 0) do_comm_info(k, req);
    else if (strcmp(t, "comm_open") == 0) do_comm_open(k, req);
    else if (strcmp(t, "comm_msg") == 0) lp_interp_comm_msg(k->interp, req->content);
    else if (strcmp(t, "comm_close") == 0) lp_interp_comm_close(k->interp, req->content);
    else if (strcmp(t, "shutdown_request") == 0) do_shutdown(k, req, LP_CH_SHELL);
    else lp_log("shell: ignored a message of unknown type '%s'", t);
}

/* One shell request framed by busy and idle, its output streams attached to it. */
static void serve(kernel *k, lp_msg *req)
{
    k->current = req;
    lp_streams_begin(req->header);
    status(k, req, "busy");
    dispatch_shell(k, req);
    lp_streams_flush();
    status(k, req, "idle");
    k->current = NULL;
}

static void abort_held(kernel *k);

void lp_kernel_shell(lp_kernel *k, lp_msg *req)
{
    serve(k, req);
    if (k->n_held)
        abort_held(k); /* after this request's idle, as ipykernel does */
}

/* After an error with stop_on_error, the executes that were queued while the cell ran are
 * answered without running them ("ExecutionAborted"); other queued requests are served as
 * usual. The queue is read before the failed cell's reply goes out, so a client that sends
 * its next cell after reading that reply gets it run. */
static void hold_queued(kernel *k)
{
    lp_msg m;
    while (k->t.next_shell(k->t.ud, &m)) {
        if (k->n_held == k->cap_held) {
            size_t cap = k->cap_held ? k->cap_held * 2 : 8;
            lp_msg *v = realloc(k->held, cap * sizeof *v);
            if (!v) {
                lp_log("out of memory holding queued requests; dropping one");
                lp_msg_clear(&m);
                continue;
            }
            k->held = v;
            k->cap_held = cap;
        }
        k->held[k->n_held++] = m;
    }
}

static void abort_held(kernel *k)
{
    for (size_t i = 0; i < k->n_held; i++) {
        lp_msg *m = &k->held[i];
        if (strcmp(lp_msg_type(m), "execute_request") == 0) {
            status(k, m, "busy");
            answer(k, LP_CH_SHELL, m, "execute_reply",
                   json_pack("{s:s, s:i, s:s, s:s, s:[], s:{}, s:[]}", "status", "error", "execution_count",
                             k->execution_count, "ename", "ExecutionAborted", "evalue",
                             "not run: an earlier cell failed (stop_on_error)", "traceback", "user_expressions",
                             "payload"));
            status(k, m, "idle");
        } else {
            serve(k, m);
        }
        lp_msg_clear(m);
    }
    k->n_held = 0;
}

/* ---- control ----------------------------------------------------------------------------- */

void lp_kernel_control(lp_kernel *k, lp_msg *req)
{
    const char *t = lp_msg_type(req);
    status(k, req, "busy");
    if (strcmp(t, "kernel_info_request") == 0) {
        do_kernel_info(k, req, LP_CH_CONTROL);
    } else if (strcmp(t, "interrupt_request") == 0) {
        lp_interrupt_request();
        answer(k, LP_CH_CONTROL, req, "interrupt_reply", json_pack("{s:s}", "status", "ok"));
    } else if (strcmp(t, "shutdown_request") == 0) {
        do_shutdown(k, req, LP_CH_CONTROL);
    } else {
        lp_log("control: ignored a message of unknown type '%s'", t);
    }
    status(k, req, "idle");
    if (strcmp(t, "shutdown_request") == 0)
        k->t.exit_soon(k->t.ud);
}

/* ---- the session ------------------------------------------------------------------------- */

static int l_exit_disabled(lua_State *L)
{
    return luaL_error(L, "os.exit would end the kernel and lose its state; "
                         "use Kernel > Shut Down (or Restart) in the notebook instead");
}

/* Notes of the backend that are not errors (no GPU: the CPU) go to the kernel's log, not to
 * the cell's stderr, where a notebook would show them as an error. */
static void kernel_note(const char *msg) { lp_log("%s", msg); }

lp_kernel *lp_kernel_new(const lp_transport *t, lp_history *history)
{
    kernel *k = calloc(1, sizeof *k);
    if (!k) {
        lp_set_error_code(LP_ERR_NOMEM, "out of memory");
        return NULL;
    }
    k->t = *t;
    k->history = history;
    lp_io io = {io_write, io_display, io_clear, io_input, io_comm, io_page, k};
    lp_set_note_handler(kernel_note);
    k->interp = lp_interp_new(&io, 0);
    if (!k->interp) {
        free(k);
        return NULL;
    }
    /* os.exit from a cell would end the kernel and lose its state: refused. */
    lua_State *L = lp_interp_lua(k->interp);
    lua_getglobal(L, "os");
    lua_pushcfunction(L, l_exit_disabled);
    lua_setfield(L, -2, "exit");
    lua_pop(L, 1);
    return k;
}

void lp_kernel_free(lp_kernel *k)
{
    if (!k)
        return;
    lp_interp_free(k->interp);
    for (size_t i = 0; i < k->n_held; i++)
        lp_msg_clear(&k->held[i]);
    free(k->held);
    json_decref(k->payload);
    free(k);
}

lp_interp *lp_kernel_interp(lp_kernel *k) { return k->interp; }

