/* The kernel's message dispatch (kernel/kernel.c) without sockets: each test hands
 * lp_kernel_shell or lp_kernel_control a request through the mock transport of
 * tests/unit/support/mock_io.h and checks, in order, what would have gone out on shell,
 * control, stdin and iopub. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "connection.h"
#include "core/interrupt.h"
#include "kernel.h"
#include "mock_io.h"
#include "streams.h"

static t_mock *m;
static lp_kernel *k;
static lp_history *hist;
static char hist_path[64];

static void setup(void)
{
    m = t_mock_new();
    cr_assert_not_null(m);
    snprintf(hist_path, sizeof hist_path, "/tmp/lp_dispatch_XXXXXX");
    int fd = mkstemp(hist_path);
    cr_assert_geq(fd, 0);
    close(fd);
    hist = lp_history_open(hist_path, NULL); /* an empty file: a new SQLite database */
    k = lp_kernel_new(t_mock_transport(m), hist);
    cr_assert_not_null(k);
    cr_assert_geq(lp_streams_start(lp_kernel_stream, k, 0), 0); /* no fd capture: output of print only */
}

static void teardown(void)
{
    lp_streams_stop();
    lp_kernel_free(k);
    lp_history_free(hist);
    unlink(hist_path);
    char side[80];
    snprintf(side, sizeof side, "%s-wal", hist_path), unlink(side);
    snprintf(side, sizeof side, "%s-shm", hist_path), unlink(side);
    t_mock_free(m);
    lp_interrupt_clear();
}

TestSuite(dispatch, .init = setup, .fini = teardown, .timeout = 60);

static int same_id(json_t *a, json_t *b)
{
    const char *x = json_string_value(json_object_get(a, "msg_id")), *y = json_string_value(json_object_get(b, "msg_id"));
    return x && y && strcmp(x, y) == 0;
}

/* The messages sent for req (its msg_id as parent's) since index from: each valid (the mock
 * decoded it), with req's header copied verbatim as parent (extra keys such as subshell_id
 * kept), a fresh msg_id and the kernel's session; busy first, idle last; replies go back to
 * the requester's identity. Returns how many there were. */
static size_t check_framing(const lp_msg *req, size_t from)
{
    cr_assert_null(t_mock_error(m), "mock: %s", t_mock_error(m));
    size_t n = t_mock_count(m), count = 0;
    const t_sent *first = NULL, *last = NULL;
    for (size_t i = from; i < n; i++) {
        const t_sent *s = t_mock_at(m, i);
        if (!same_id(s->msg.parent, req->header))
            continue;
        count++;
        first = first ? first : s;
        last = s;
        char *want = json_dumps(req->header, JSON_SORT_KEYS), *got = json_dumps(s->msg.parent, JSON_SORT_KEYS);
        cr_assert(json_equal(s->msg.parent, req->header), "%s: parent %s, not the request's header %s",
                  lp_msg_type(&s->msg), got, want);
        free(want);
        free(got);
        cr_assert_str_eq(json_string_value(json_object_get(s->msg.header, "session")), T_MOCK_SESSION);
        cr_assert_str_eq(json_string_value(json_object_get(s->msg.header, "version")), "5.5");
        for (size_t j = from; j < i; j++)
            cr_assert(!same_id(s->msg.header, t_mock_at(m, j)->msg.header), "two messages share a msg_id");
        if (s->channel != LP_CH_IOPUB) {
            cr_assert_eq(s->msg.ids.n, 1);
            cr_assert(s->msg.ids.v[0].len == strlen(T_MOCK_CLIENT) &&
                          memcmp(s->msg.ids.v[0].data, T_MOCK_CLIENT, strlen(T_MOCK_CLIENT)) == 0,
                      "%s not sent back to the requester", lp_msg_type(&s->msg));
        }
    }
    cr_assert_geq(count, 2, "nothing sent for %s", lp_msg_type(req));
    cr_assert_str_eq(lp_msg_type(&first->msg), "status");
    cr_assert_str_eq(json_string_value(json_object_get(first->msg.content, "execution_state")), "busy");
    cr_assert_str_eq(lp_msg_type(&last->msg), "status");
    cr_assert_str_eq(json_string_value(json_object_get(last->msg.content, "execution_state")), "idle");
    return count;
}

/* Serves a request on shell (or control) and checks its framing: everything sent meanwhile
 * has it as parent. req stays for reading. */
static void shell(lp_msg *req)
{
    size_t from = t_mock_count(m);
    lp_kernel_shell(k, req);
    cr_assert_eq(check_framing(req, from), t_mock_count(m) - from, "a message without %s as parent: %s",
                 lp_msg_type(req), t_mock_trace(m, req));
}

static void control(lp_msg *req)
{
    size_t from = t_mock_count(m);
    lp_kernel_control(k, req);
    cr_assert_eq(check_framing(req, from), t_mock_count(m) - from, "a message without %s as parent: %s",
                 lp_msg_type(req), t_mock_trace(m, req));
}

static json_t *content_of(const lp_msg *req, const char *msg_type)
{
    const t_sent *s = t_mock_find(m, req, msg_type);
    cr_assert_not_null(s, "no %s in: %s", msg_type, t_mock_trace(m, req));
    return s->msg.content;
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    cr_assert_not_null(s, "no string %s", key);
    return s;
}

static json_int_t num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_integer(v), "no integer %s", key);
    return json_integer_value(v);
}

/* An execute_request with the given code and extra content fields (a JSON object text). */
static void execute(lp_msg *req, const char *code, const char *extra)
{
    json_t *c = extra ? json_loads(extra, 0, NULL) : json_object();
    cr_assert_not_null(c);
    json_object_set_new(c, "code", json_string(code));
    t_mock_request(req, "execute_request", c);
    shell(req);
}

Test(dispatch, kernel_info_on_shell_and_control)
{
    lp_msg req;
    t_mock_request(&req, "kernel_info_request", NULL);
    shell(&req);
    cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) shell:kernel_info_reply iopub:status(idle)");
    json_t *c = content_of(&req, "kernel_info_reply");
    cr_assert_str_eq(str(c, "status"), "ok");
    cr_assert_str_eq(str(c, "protocol_version"), "5.5");
    cr_assert_str_eq(str(c, "implementation"), "loupe");
    json_t *li = json_object_get(c, "language_info");
    cr_assert_str_eq(str(li, "name"), "lua");
    cr_assert_str_eq(str(li, "file_extension"), ".lua");
    cr_assert_str_eq(str(li, "mimetype"), "text/x-lua");
    cr_assert(strncmp(str(li, "version"), "5.4", 3) == 0);
    lp_msg_clear(&req);

    t_mock_request(&req, "kernel_info_request", NULL);
    control(&req);
    cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) control:kernel_info_reply iopub:status(idle)");
    cr_assert_str_eq(str(content_of(&req, "kernel_info_reply"), "protocol_version"), "5.5");
    lp_msg_clear(&req);
}

Test(dispatch, execute_output_result_and_count)
{
    lp_msg req;
    execute(&req, "print('hi')\n6 * 7", NULL);
    cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) iopub:execute_input iopub:stream "
                                            "iopub:execute_result shell:execute_reply iopub:status(idle)");
    json_t *in = content_of(&req, "execute_input");
    cr_assert_str_eq(str(in, "code"), "print('hi')\n6 * 7");
    cr_assert_eq(num(in, "execution_count"), 1);
    json_t *st = content_of(&req, "stream");
    cr_assert_str_eq(str(st, "name"), "stdout");
    cr_assert_str_eq(str(st, "text"), "hi\n");
    json_t *res = content_of(&req, "execute_result");
    cr_assert_eq(num(res, "execution_count"), 1);
    cr_assert_str_eq(str(json_object_get(res, "data"), "text/plain"), "42");
    json_t *rep = content_of(&req, "execute_reply");
    cr_assert_str_eq(str(rep, "status"), "ok");
    cr_assert_eq(num(rep, "execution_count"), 1);
    cr_assert(json_is_object(json_object_get(rep, "user_expressions")));
    cr_assert(json_is_array(json_object_get(rep, "payload")));
    lp_msg_clear(&req);

    /* state is kept between cells, and the count goes on */
    execute(&req, "x = 5", NULL);
    cr_assert_str_eq(t_mock_trace(m, &req),
                     "iopub:status(busy) iopub:execute_input shell:execute_reply iopub:status(idle)");
    cr_assert_eq(num(content_of(&req, "execute_reply"), "execution_count"), 2);
    lp_msg_clear(&req);
    execute(&req, "x + 1", NULL);
    cr_assert_str_eq(str(json_object_get(content_of(&req, "execute_result"), "data"), "text/plain"), "6");
    cr_assert_eq(num(content_of(&req, "execute_reply"), "execution_count"), 3);
    lp_msg_clear(&req);
}

Test(dispatch, error_cell_gives_error_reply_and_message)
{
    lp_msg req;
    execute(&req, "local a = 1\nerror('boom')", NULL);
    cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) iopub:execute_input iopub:error "
                                            "shell:execute_reply iopub:status(idle)");
    json_t *err = content_of(&req, "error"), *rep = content_of(&req, "execute_reply");
    cr_assert_str_eq(str(rep, "status"), "error");
    cr_assert_eq(num(rep, "execution_count"), 1);
    cr_assert(strstr(str(err, "evalue"), "boom") != NULL, "%s", str(err, "evalue"));
    cr_assert_str_eq(str(rep, "ename"), str(err, "ename"));
    cr_assert_str_eq(str(rep, "evalue"), str(err, "evalue"));
    json_t *tb = json_object_get(err, "traceback");
    cr_assert(json_is_array(tb) && json_array_size(tb) >= 1);
    cr_assert(json_equal(tb, json_object_get(rep, "traceback")));
    lp_msg_clear(&req);

    /* the kernel goes on */
    execute(&req, "1 + 1", NULL);
    cr_assert_str_eq(str(content_of(&req, "execute_reply"), "status"), "ok");
    cr_assert_eq(num(content_of(&req, "execute_reply"), "execution_count"), 2);
    lp_msg_clear(&req);
}

Test(dispatch, os_exit_is_refused)
{
    lp_msg req;
    execute(&req, "os.exit(3)", NULL);
    json_t *rep = content_of(&req, "execute_reply");
    cr_assert_str_eq(str(rep, "status"), "error");
    cr_assert(strstr(str(rep, "evalue"), "os.exit would end the kernel") != NULL, "%s", str(rep, "evalue"));
    lp_msg_clear(&req);
}

Test(dispatch, store_history_false_and_silent_do_not_count)
{
    lp_msg req;
    execute(&req, "y = 1", NULL);
    cr_assert_eq(num(content_of(&req, "execute_reply"), "execution_count"), 1);
    lp_msg_clear(&req);

    execute(&req, "y + 1", "{\"store_history\": false}");
    cr_assert_eq(num(content_of(&req, "execute_reply"), "execution_count"), 1);
    cr_assert_str_eq(str(json_object_get(content_of(&req, "execute_result"), "data"), "text/plain"), "2");
    lp_msg_clear(&req);

    execute(&req, "y + 2", "{\"silent\": true}");
    cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) shell:execute_reply iopub:status(idle)");
    cr_assert_eq(num(content_of(&req, "execute_reply"), "execution_count"), 1);
    lp_msg_clear(&req);

    execute(&req, "y", NULL);
    cr_assert_eq(num(content_of(&req, "execute_reply"), "execution_count"), 2);
    cr_assert_eq(num(content_of(&req, "execute_input"), "execution_count"), 2);
    lp_msg_clear(&req);
}

Test(dispatch, stop_on_error_aborts_queued_executes_only)
{
    lp_msg failing, queued_exec, queued_info;
    t_mock_request(&queued_exec, "execute_request", json_pack("{s:s}", "code", "z = 1"));
    t_mock_request(&queued_info, "kernel_info_request", NULL);
    json_t *exec_header = json_incref(queued_exec.header), *info_header = json_incref(queued_info.header);
    t_mock_queue(m, &queued_exec); /* what arrived while the failing cell ran */
    t_mock_queue(m, &queued_info);
    t_mock_request(&failing, "execute_request", json_pack("{s:s}", "code", "error('first')"));
    lp_kernel_shell(k, &failing);
    cr_assert_str_eq(t_mock_trace(m, &failing), "iopub:status(busy) iopub:execute_input iopub:error "
                                                "shell:execute_reply iopub:status(idle)");
    lp_msg probe = {.header = exec_header};
    size_t n = check_framing(&failing, 0) + check_framing(&probe, 0);
    cr_assert_str_eq(t_mock_trace(m, &probe), "iopub:status(busy) shell:execute_reply iopub:status(idle)");
    json_t *rep = content_of(&probe, "execute_reply");
    cr_assert_str_eq(str(rep, "status"), "error");
    cr_assert_str_eq(str(rep, "ename"), "ExecutionAborted");
    probe.header = info_header;
    cr_assert_str_eq(t_mock_trace(m, &probe), "iopub:status(busy) shell:kernel_info_reply iopub:status(idle)");
    n += check_framing(&probe, 0);
    cr_assert_eq(n, t_mock_count(m), "a message with none of the three requests as parent");
    json_decref(exec_header);
    json_decref(info_header);
    lp_msg_clear(&failing);

    lp_msg req; /* the aborted cell never ran */
    execute(&req, "z == nil", NULL);
    cr_assert_str_eq(str(json_object_get(content_of(&req, "execute_result"), "data"), "text/plain"), "true");
    lp_msg_clear(&req);
}

Test(dispatch, input_asks_on_stdin_only_when_allowed)
{
    lp_msg req;
    t_mock_answer(m, "Ada");
    execute(&req, "print('hello ' .. input('name? '))", "{\"allow_stdin\": true}");
    cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) iopub:execute_input stdin:input_request "
                                            "iopub:stream shell:execute_reply iopub:status(idle)");
    json_t *ask = content_of(&req, "input_request");
    cr_assert_str_eq(str(ask, "prompt"), "name? ");
    cr_assert(json_is_false(json_object_get(ask, "password")));
    cr_assert_str_eq(str(content_of(&req, "stream"), "text"), "hello Ada\n");
    lp_msg_clear(&req);

    execute(&req, "input('name? ')", NULL); /* allow_stdin is false by default */
    cr_assert_null(t_mock_find(m, &req, "input_request"));
    json_t *rep = content_of(&req, "execute_reply");
    cr_assert_str_eq(str(rep, "status"), "error");
    cr_assert(strstr(str(rep, "evalue"), "allow_stdin is false") != NULL, "%s", str(rep, "evalue"));
    lp_msg_clear(&req);
}

Test(dispatch, complete_counts_code_points)
{
    lp_msg req;
    /* "-- é\n" is 6 bytes but 5 code points: the cursor and the replaced range are in code points */
    const char *code = "-- \xC3\xA9\nstring.fo";
    t_mock_request(&req, "complete_request", json_pack("{s:s, s:i}", "code", code, "cursor_pos", 14));
    shell(&req);
    cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) shell:complete_reply iopub:status(idle)");
    json_t *c = content_of(&req, "complete_reply");
    cr_assert_str_eq(str(c, "status"), "ok");
    cr_assert_eq(num(c, "cursor_end"), 14);
    json_int_t start = num(c, "cursor_start");
    cr_assert(start == 5 || start == 12, "cursor_start %lld", (long long)start);
    json_t *matches = json_object_get(c, "matches");
    int found = 0;
    size_t i;
    json_t *v;
    json_array_foreach(matches, i, v) found |= strcmp(json_string_value(v), start == 5 ? "string.format" : "format") == 0;
    cr_assert(found, "no format among the matches");
    cr_assert(json_is_object(json_object_get(c, "metadata")));
    lp_msg_clear(&req);
}

Test(dispatch, inspect_finds_documented_names)
{
    lp_msg req;
    t_mock_request(&req, "inspect_request", json_pack("{s:s, s:i, s:i}", "code", "display", "cursor_pos", 7,
                                                      "detail_level", 0));
    shell(&req);
    cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) shell:inspect_reply iopub:status(idle)");
    json_t *c = content_of(&req, "inspect_reply");
    cr_assert_str_eq(str(c, "status"), "ok");
    cr_assert(json_is_true(json_object_get(c, "found")));
    cr_assert(strstr(str(json_object_get(c, "data"), "text/plain"), "display") != NULL);
    lp_msg_clear(&req);

    t_mock_request(&req, "inspect_request", json_pack("{s:s, s:i}", "code", "no_such_name_here", "cursor_pos", 17));
    shell(&req);
    c = content_of(&req, "inspect_reply");
    cr_assert_str_eq(str(c, "status"), "ok");
    cr_assert(json_is_false(json_object_get(c, "found")));
    lp_msg_clear(&req);
}

Test(dispatch, is_complete)
{
    static const struct { const char *code, *status; } cases[] = {
        {"x = 1", "complete"}, {"for i = 1, 3 do", "incomplete"}, {"x = = 1", "invalid"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lp_msg req;
        t_mock_request(&req, "is_complete_request", json_pack("{s:s}", "code", cases[i].code));
        shell(&req);
        cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) shell:is_complete_reply iopub:status(idle)");
        json_t *c = content_of(&req, "is_complete_reply");
        cr_assert_str_eq(str(c, "status"), cases[i].status, "%s", cases[i].code);
        if (strcmp(cases[i].status, "incomplete") == 0)
            cr_assert(json_is_string(json_object_get(c, "indent")));
        lp_msg_clear(&req);
    }
}

Test(dispatch, comm_info_and_unknown_comm_targets)
{
    lp_msg req;
    t_mock_request(&req, "comm_info_request", NULL);
    shell(&req);
    cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) shell:comm_info_reply iopub:status(idle)");
    json_t *c = content_of(&req, "comm_info_reply");
    cr_assert_str_eq(str(c, "status"), "ok");
    cr_assert(json_is_object(json_object_get(c, "comms")));
    cr_assert_eq(json_object_size(json_object_get(c, "comms")), 0);
    lp_msg_clear(&req);

    /* a comm to a target nobody registered is closed at once */
    t_mock_request(&req, "comm_open", json_pack("{s:s, s:s, s:{}}", "comm_id", "c-1", "target_name", "nobody", "data"));
    shell(&req);
    cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) iopub:comm_close iopub:status(idle)");
    cr_assert_str_eq(str(content_of(&req, "comm_close"), "comm_id"), "c-1");
    lp_msg_clear(&req);
}

Test(dispatch, history_tail_has_the_stored_cells)
{
    lp_msg req;
    execute(&req, "a = 1", NULL);
    lp_msg_clear(&req);
    execute(&req, "b = 2", "{\"store_history\": false}");
    lp_msg_clear(&req);
    execute(&req, "c = 3", NULL);
    lp_msg_clear(&req);
    t_mock_request(&req, "history_request",
                   json_pack("{s:s, s:i, s:b, s:b}", "hist_access_type", "tail", "n", 10, "output", 0, "raw", 1));
    shell(&req);
    cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) shell:history_reply iopub:status(idle)");
    json_t *c = content_of(&req, "history_reply");
    cr_assert_str_eq(str(c, "status"), "ok");
    json_t *h = json_object_get(c, "history");
    cr_assert_eq(json_array_size(h), 2, "history: %zu entries", json_array_size(h));
    cr_assert_eq(json_integer_value(json_array_get(json_array_get(h, 0), 1)), 1);
    cr_assert_str_eq(json_string_value(json_array_get(json_array_get(h, 0), 2)), "a = 1");
    cr_assert_eq(json_integer_value(json_array_get(json_array_get(h, 1), 1)), 2);
    cr_assert_str_eq(json_string_value(json_array_get(json_array_get(h, 1), 2)), "c = 3");
    lp_msg_clear(&req);
}

Test(dispatch, unknown_message_type_is_framed_and_ignored)
{
    lp_msg req;
    t_mock_request(&req, "frobnicate_request", json_pack("{s:i}", "x", 1));
    shell(&req);
    cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) iopub:status(idle)");
    lp_msg_clear(&req);
    t_mock_request(&req, "frobnicate_request", NULL);
    control(&req);
    cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) iopub:status(idle)");
    lp_msg_clear(&req);
    cr_assert_eq(t_mock_stops(m), 0);
    execute(&req, "1", NULL); /* still serving */
    cr_assert_str_eq(str(content_of(&req, "execute_reply"), "status"), "ok");
    lp_msg_clear(&req);
}

Test(dispatch, shutdown_on_control)
{
    lp_msg req;
    t_mock_request(&req, "shutdown_request", json_pack("{s:b}", "restart", 1));
    control(&req);
    cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) control:shutdown_reply iopub:status(idle)");
    json_t *c = content_of(&req, "shutdown_reply");
    cr_assert_str_eq(str(c, "status"), "ok");
    cr_assert(json_is_true(json_object_get(c, "restart")));
    cr_assert_eq(t_mock_stops(m), 1, "the shell loop was not told to stop");
    cr_assert_eq(t_mock_exits(m), 1, "the process was not told to end");
    cr_assert(lp_interrupted(), "a running cell was not interrupted");
    lp_msg_clear(&req);
}

Test(dispatch, interrupt_on_control)
{
    lp_msg req;
    t_mock_request(&req, "interrupt_request", NULL);
    control(&req);
    cr_assert_str_eq(t_mock_trace(m, &req), "iopub:status(busy) control:interrupt_reply iopub:status(idle)");
    cr_assert_str_eq(str(content_of(&req, "interrupt_reply"), "status"), "ok");
    cr_assert(lp_interrupted());
    cr_assert_eq(t_mock_stops(m), 0);
    lp_msg_clear(&req);
}
