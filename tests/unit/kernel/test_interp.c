/* The cell language without sockets: values, errors, limits, interrupts, is_complete,
 * completion, inspection and displays, through an lp_io that records what it is given. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "interp.h"

static lp_buf out;
static int n_display, n_update, n_clear;
static json_t *last_bundle;

static void w(void *ud, int which, const char *s, size_t n) { (void)ud; (void)which; lp_buf_append(&out, s, n); }
static void d(void *ud, json_t *b, const char *id, int update)
{
    (void)ud; (void)id;
    n_display += !update;
    n_update += update;
    json_decref(last_bundle);
    last_bundle = b;
}
static void c(void *ud, int wait) { (void)ud; (void)wait; n_clear++; }
static int in(void *ud, const char *p, int pw, lp_buf *o) { (void)ud; (void)p; (void)pw; lp_buf_puts(o, "typed"); return 0; }
static void cm(void *ud, const char *t, json_t *content) { (void)ud; (void)t; json_decref(content); }

static lp_interp *I;

static void setup(void)
{
    lp_io io = {w, d, c, in, cm, NULL, NULL};
    I = lp_interp_new(&io, 256u << 20);
    lp_buf_reset(&out);
    n_display = n_update = n_clear = 0;
}

static void teardown(void)
{
    lp_interp_free(I);
    json_decref(last_bundle);
    last_bundle = NULL;
    lp_buf_free(&out);
}

TestSuite(interp, .init = setup, .fini = teardown);

static const char *text_of(json_t *bundle) { return json_string_value(json_object_get(bundle, "text/plain")); }

/* Runs code, asserts success, returns the displayed text (or NULL). Result kept until next run. */
static lp_exec_result R;
static const char *value(const char *code)
{
    lp_exec_result_clear(&R);
    lp_interp_execute(I, code, 1, 1, &R);
    cr_assert(R.ok, "%s failed: %s %s", code, R.ename, R.evalue ? R.evalue : "");
    return R.result ? text_of(R.result) : NULL;
}

static void fails(const char *code, const char *ename, const char *needle)
{
    lp_exec_result_clear(&R);
    lp_interp_execute(I, code, 7, 1, &R);
    cr_assert(!R.ok, "%s succeeded", code);
    cr_assert_str_eq(R.ename, ename, "%s: %s", code, R.evalue);
    cr_assert(strstr(R.evalue, needle) != NULL, "%s: evalue \"%s\" lacks \"%s\"", code, R.evalue, needle);
}

Test(interp, last_expression_is_the_value)
{
    cr_assert_str_eq(value("6*7"), "42");
    cr_assert_str_eq(value("x = 1\ny = 2\nx + y"), "3");
    cr_assert_null(value("z = 5"));
    cr_assert_null(value("z"  ";")); /* a trailing ';' hides it */
    cr_assert_str_eq(value("local t = {\n  1,\n  2,\n}\nt"), "{1, 2}");
    cr_assert_str_eq(value("string.format(\n  '%d-%d',\n  1, 2)"), "\"1-2\"");
    cr_assert_str_eq(value("1, 'a'"), "1\t\"a\"");
    cr_assert_null(value("for i = 1, 2 do\n  x = i\nend"));
    cr_assert_null(value("nil"));
    cr_assert_str_eq(value("x -- a comment\n-- another"), "2");
    cr_assert_str_eq(value("z"), "5"); /* globals persist */
}

Test(interp, tables_are_readable)
{
    cr_assert_str_eq(value("{1, 2, 3, name = 'x', sub = {ok = true}, [10] = 1.5}"),
                     "{1, 2, 3, [10] = 1.5, name = \"x\", sub = {ok = true}}");
    cr_assert_str_eq(value("t = {}; t.self = t; t"), "{self = <cycle>}");
    const char *big = value("local t = {} for i = 1, 150 do t[i] = i end return t");
    cr_assert(strstr(big, "... (50 more)") != NULL, "%s", big);
    const char *wide = value("{alpha = 'aaaaaaaaaaaaaaaaaaaa', beta = 'bbbbbbbbbbbbbbbbbbbbbbbbb', gamma = 'ccccccccccccccccccc'}");
    cr_assert(strchr(wide, '\n') != NULL, "long tables wrap: %s", wide);
    cr_assert_str_eq(value("{['a key'] = 1}"), "{[\"a key\"] = 1}");
    cr_assert_str_eq(value("setmetatable({}, {__tostring = function() return 'custom' end})"), "custom");
    cr_assert_str_eq(value("'tab\\tnew\\nline'"), "\"tab\\tnew\\nline\"");
}

Test(interp, errors_carry_the_line)
{
    fails("x = 1\nerror('boom')", "LuaError", "In [7]:2: boom");
    fails("local a = nil\nreturn a.b", "LuaError", "In [7]:2: attempt to index a nil value");
    fails("x = = 1", "SyntaxError", "In [7]:1:");
    fails("error({code = 3})", "LuaError", "{code = 3}");
    fails("error(nil)", "LuaError", "nil");
    fails("error(setmetatable({}, {__tostring = function() return 'mine' end}))", "LuaError", "mine");
    fails("local function f() return 1 + f() end\nreturn f()", "RecursionError", "stack overflow");
    cr_assert(json_array_size(R.traceback) >= 2);
    cr_assert_str_eq(value("1 + 1"), "2"); /* still alive */
}

Test(interp, memory_limit_is_an_error_not_a_crash)
{
    fails("t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1000) .. i end", "MemoryError", "not enough memory");
    cr_assert_str_eq(value("1 + 1"), "2");
    value("t = nil; collectgarbage()");
    fails("s = string.rep('x', 1 << 30)", "MemoryError", "");
    cr_assert_str_eq(value("'alive'"), "\"alive\"");
}

static void *interrupt_later(void *arg)
{
    (void)arg;
    usleep(200000);
    lp_interrupt_request();
    return NULL;
}

Test(interp, interrupt_stops_lua_and_c_loops)
{
    const char *loops[] = {"x = 5\nwhile true do end", "loupe.sleep(30)",
                           "while true do pcall(function() while true do end end) end"};
    for (int i = 0; i < 3; i++) {
        pthread_t th;
        pthread_create(&th, NULL, interrupt_later, NULL);
        fails(loops[i], "KeyboardInterrupt", "interrupted");
        pthread_join(th, NULL);
    }
    cr_assert_str_eq(value("x"), "5");
}

/* Runs code with its n-th checked allocation failing, for n = 0, 1, ... until it succeeds
 * without the failure: each failure must be a MemoryError whose message holds needle.
 * Returns how many there were. */
static int memory_errors(const char *code, const char *needle)
{
    int errors = 0;
    for (long n = 0; n < 1000; n++) {
        lp_exec_result_clear(&R);
        lp_alloc_fail_after(n);
        lp_interp_execute(I, code, 1, 1, &R);
        int fired = lp_alloc_fail_fired();
        lp_alloc_fail_after(-1);
        if (R.ok && !fired)
            return errors;
        if (!R.ok) {
            cr_assert(fired, "%s: %s: %s", code, R.ename, R.evalue);
            cr_assert_str_eq(R.ename, "MemoryError", "%s, allocation %ld: %s", code, n, R.evalue);
            cr_assert(strstr(R.evalue, needle), "%s: evalue \"%s\" lacks \"%s\"", code, R.evalue, needle);
            errors++;
        }
    }
    cr_assert_fail("%s never succeeded", code);
    return errors;
}

/* Errors are named by their code, never by their words. */
Test(interp, backend_errors_are_named_by_their_code)
{
    /* the backend's memory runs out */
    cr_assert_gt(memory_errors("x = loupe.zeros(3, 4)", "cannot allocate"), 0);
    /* caught and raised again, as it is or with more words in front: still out of memory */
    cr_assert_gt(memory_errors("local ok, e = pcall(loupe.zeros, 3, 4)\nif not ok then error(e, 0) end", "cannot allocate"),
                 0);
    cr_assert_gt(memory_errors("local ok, e = pcall(loupe.zeros, 3, 4)\nif not ok then error('making x: ' .. e) end",
                               "making x: "),
                 0);
    cr_assert_str_eq(value("loupe.zeros(2):shape()[1]"), "2");
    /* the words alone name nothing */
    fails("error('cannot allocate 6 GiB: out of memory')", "LuaError", "out of memory");
    fails("error('interrupted')", "LuaError", "interrupted");
    /* a missing folder is an OSError, a corrupt file a ValueError, a bad argument a LuaError */
    fails("loupe.load('/nonexistent/loupe-model')", "OSError", "config.json");
    char dir[] = "/tmp/loupe-interp-XXXXXX", path[64], code[160];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("{\"model_type\": \"gpt2\", \"n_embd\": ", f);
    fclose(f);
    snprintf(code, sizeof code, "loupe.load('%s')", dir);
    fails(code, "ValueError", "not valid JSON");
    unlink(path);
    rmdir(dir);
    fails("loupe.zeros(2, 3):reshape(4)", "LuaError", "");
}

/* A backend loop stopped by an interrupt is a KeyboardInterrupt, and the kernel lives on. */
Test(interp, interrupted_backend_loop_is_a_keyboard_interrupt)
{
    pthread_t th;
    pthread_create(&th, NULL, interrupt_later, NULL);
    fails("toy = loupe.toy.superposition{n = 20, m = 5, steps = 1e9, progress = false}", "KeyboardInterrupt",
          "interrupted");
    pthread_join(th, NULL);
    cr_assert_str_eq(value("toy == nil"), "true");
}

Test(interp, print_and_io_write_go_to_the_stream)
{
    value("print('a', 1, nil, true)\nio.write('b', 2.5, '\\n')");
    cr_assert_str_eq(lp_buf_str(&out), "a\t1\tnil\ttrue\nb2.5\n");
}

Test(interp, input_and_io_read)
{
    cr_assert_str_eq(value("input('name? ')"), "\"typed\"");
    cr_assert_str_eq(value("io.read()"), "\"typed\"");
}

Test(interp, display_and_progress)
{
    value("display(1, {2})");
    cr_assert_eq(n_display, 2);
    n_display = 0;
    value("for i in loupe.progress(20, 'work') do end");
    cr_assert_eq(n_display, 1); /* created once, then updated in place */
    cr_assert_geq(n_update, 1);
    cr_assert(strstr(text_of(last_bundle), "100%") != NULL, "%s", text_of(last_bundle));
    value("clear_output()");
    cr_assert_eq(n_clear, 1);
    value("h = loupe.html('<b>x</b>')");
    cr_assert_str_eq(value("h"), "<b>x</b>");
    cr_assert_str_eq(json_string_value(json_object_get(R.result, "text/html")), "<b>x</b>");
}

Test(interp, progress_closes_after_break)
{
    value("for i in loupe.progress(100, 'partial') do if i == 10 then break end end");
    cr_assert(strstr(text_of(last_bundle), "10/100") != NULL, "%s", text_of(last_bundle));
}

Test(interp, is_complete)
{
    char *indent = NULL;
    cr_assert_str_eq(lp_interp_is_complete(I, "x = 1", &indent), "complete");
    cr_assert_str_eq(lp_interp_is_complete(I, "", &indent), "complete");
    cr_assert_str_eq(lp_interp_is_complete(I, "function f()", &indent), "incomplete");
    cr_assert_str_eq(indent, "  ");
    free(indent);
    cr_assert_str_eq(lp_interp_is_complete(I, "for i = 1, 3 do\n  if i then", &indent), "incomplete");
    cr_assert_str_eq(indent, "    ");
    free(indent);
    cr_assert_str_eq(lp_interp_is_complete(I, "x = {", &indent), "incomplete");
    free(indent);
    cr_assert_str_eq(lp_interp_is_complete(I, "s = [[long", &indent), "incomplete");
    free(indent);
    cr_assert_str_eq(lp_interp_is_complete(I, "x = = 1", &indent), "invalid");
    cr_assert_str_eq(lp_interp_is_complete(I, "end", &indent), "invalid");
    cr_assert_str_eq(lp_interp_is_complete(I, "s = 'unterminated", &indent), "invalid");
}

static int has(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (strcmp(json_string_value(v), s) == 0) return 1;
    return 0;
}

Test(interp, completion)
{
    size_t s, e;
    json_t *meta;
    json_t *m = lp_interp_complete(I, "string.fo", 9, &s, &e, &meta);
    cr_assert(has(m, "format"));
    cr_assert_eq(s, 7);
    cr_assert_eq(e, 9);
    json_decref(m);
    json_decref(meta);
    value("model = {layers = 2, run = function() end}");
    m = lp_interp_complete(I, "x = mod", 7, &s, &e, &meta);
    cr_assert(has(m, "model"));
    cr_assert_eq(s, 4);
    json_decref(m);
    json_decref(meta);
    m = lp_interp_complete(I, "model.", 6, &s, &e, &meta);
    cr_assert(has(m, "layers") && has(m, "run"));
    json_decref(m);
    json_decref(meta);
    m = lp_interp_complete(I, "model:", 6, &s, &e, &meta); /* methods only */
    cr_assert(has(m, "run") && !has(m, "layers"));
    json_decref(m);
    json_decref(meta);
    m = lp_interp_complete(I, "s = 'x'; s:up", 13, &s, &e, &meta);
    json_decref(m);
    json_decref(meta);
    value("str = 'abc'");
    m = lp_interp_complete(I, "str:up", 6, &s, &e, &meta); /* string methods */
    cr_assert(has(m, "upper"));
    json_decref(m);
    json_decref(meta);
    m = lp_interp_complete(I, "fun", 3, &s, &e, &meta); /* keywords */
    cr_assert(has(m, "function"));
    json_decref(m);
    json_decref(meta);
    m = lp_interp_complete(I, "loupe.pro", 9, &s, &e, &meta);
    cr_assert(has(m, "progress"));
    json_decref(m);
    json_decref(meta);
}

Test(interp, inspection)
{
    json_t *b = lp_interp_inspect(I, "loupe.progress", 10, 0);
    cr_assert_not_null(b);
    cr_assert(strstr(text_of(b), "progress bar") != NULL, "%s", text_of(b));
    json_decref(b);
    b = lp_interp_inspect(I, "print(", 6, 0);
    cr_assert_not_null(b);
    cr_assert(strstr(text_of(b), "print(...)") != NULL);
    json_decref(b);
    value("answer = 42");
    b = lp_interp_inspect(I, "answer", 6, 0);
    cr_assert(strstr(text_of(b), "42") != NULL);
    json_decref(b);
    cr_assert_null(lp_interp_inspect(I, "nothing_here", 5, 0));
}

Test(interp, user_expressions)
{
    json_t *ex = json_pack("{s:s, s:s}", "a", "1 + 2", "b", "error('no')");
    json_t *r = lp_interp_user_expressions(I, ex);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "a"), "status")), "ok");
    cr_assert_str_eq(text_of(json_object_get(json_object_get(r, "a"), "data")), "3");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "b"), "status")), "error");
    json_decref(ex);
    json_decref(r);
}

Test(interp, json_round_trip)
{
    lua_State *L = lp_interp_lua(I);
    json_t *j = json_loads("{\"a\": [1, 2.5, \"x\", true], \"b\": {\"c\": null}}", 0, NULL);
    lp_lua_push_json(L, j);
    json_t *back = lp_lua_to_json(L, -1);
    lua_pop(L, 1);
    cr_assert(json_equal(json_object_get(j, "a"), json_object_get(back, "a")));
    json_decref(j);
    json_decref(back);
}

Test(interp, tensors_display_as_tables_and_heatmaps)
{
    cr_assert_str_eq(value("loupe.tensor{{1, 2}, {3, 4}}"), "Tensor [2, 2] f32\n[[1. 2.]\n [3. 4.]]");
    const char *html = json_string_value(json_object_get(R.result, "text/html"));
    cr_assert_not_null(html);
    cr_assert(strstr(html, "<table") != NULL && strstr(html, "[2, 2]") != NULL, "%s", html);
    value("big = loupe.randn(40, 30, {seed = 1})");
    value("big");
    html = json_string_value(json_object_get(R.result, "text/html"));
    cr_assert(strstr(html, "\u2026") != NULL, "large tensors are elided");
    value("big:heatmap{title = 'weights'}");
    html = json_string_value(json_object_get(R.result, "text/html"));
    cr_assert(strstr(html, "data:image/svg+xml;base64,") != NULL);
    /* figures take tensors wherever they take arrays */
    value("loupe.plot.line{y = loupe.arange(10)}");
    cr_assert(strstr(text_of(R.result), "10 points") != NULL, "%s", text_of(R.result));
    value("loupe.plot.hist{loupe.randn(100, {seed = 3})}");
    cr_assert(strstr(text_of(R.result), "100") != NULL, "%s", text_of(R.result));
    value("loupe.tokens({'a', 'b'}, loupe.tensor{0.5, -1})");
    cr_assert_not_null(json_object_get(R.result, "text/html"));
}
