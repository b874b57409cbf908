/* kernel/lua/lua_plot.c: the Lua side of the figures, run in a bare Lua state (the harness
 * of tests/unit/support, which records what is published in t_pub). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "lua_harness.h"
#include "lua_plot.h"
#include "util.h"

static lua_State *L;

static void setup(void)
{
    L = t_lua_new(T_PUBLISH_RECORD, lp_lua_open_plot);
    /* display(x) in tests: the bundle table of x's __display. */
    t_lua_run(L, "function bundle(x) return getmetatable(x).__display(x) end");
}

static void teardown(void) { t_lua_close(L); }

/* Runs code that returns one string; returns it (valid until the next call). */
static const char *run(const char *code)
{
    const char *s = t_lua_string(L, code);
    cr_assert(t_utf8_valid(s, strlen(s)), "invalid UTF-8 from: %s", code);
    return s;
}

/* Runs code that must fail; returns the message. */
static const char *fails(const char *code) { return t_lua_fails(L, code); }

TestSuite(lua_plot, .init = setup, .fini = teardown);

Test(lua_plot, every_figure_has_text_and_html)
{
    static const char *figs[] = {
        "loupe.plot.line{1, 2, 3, title = 'loss'}",
        "loupe.plot.line{{1, 2, 3}, {3, 2, 1}, names = {'a', 'b'}, x = {10, 20, 30}}",
        "loupe.plot.line{{y = {1, 2}, x = {0, 1}, name = 'train'}, {y = {2, 1}, name = 'val'}}",
        "loupe.plot.line{y = {1, 0 / 0, 3}}",
        "loupe.plot.hist{{1, 2, 2, 3, 3, 3}, bins = 3}",
        "loupe.plot.hist{1, 2, 3}",
        "loupe.plot.hist{values = {1, 2, 3}, title = 'acts'}",
        "loupe.plot.scatter{{1, 2, 3}, {3, 1, 2}, {'a', 'b', 'c'}}",
        "loupe.plot.scatter{x = {1, 2}, y = {2, 1}, labels = {'p', 'q'}}",
        "loupe.plot.bar{{1, -2, 3}, {'x', 'y', 'z'}}",
        "loupe.plot.bar{values = {1, 2}}",
        "loupe.plot.heatmap{{{1, 2}, {3, 4}}, row_labels = {'a', 'b'}, col_labels = {'c', 'd'}}",
        "loupe.plot.heatmap{{0.1, 0.9}, {0.5, 0.5}}",
        "loupe.plot.heatmap{data = {{-1, 1}}, scale = 'diverging', rows = 'query', cols = 'key'}",
        "loupe.plot.heatmap{{{{1, 2}, {3, 4}}, {{5, 6}, {7, 8}}}, titles = {'h0', 'h1'}}",
        "loupe.tokens({'The', ' cat'}, {0.5, -0.5})",
        "loupe.tokens({'The', ' cat'})",
        "loupe.table({{'Paris', 0.9}, {'Rome', 1}}, {header = {'token', 'p'}, title = 'top'})",
        "loupe.table{{'a'}, {'b', 'c'}}",
    };
    for (size_t i = 0; i < sizeof figs / sizeof *figs; i++) {
        char code[512];
        snprintf(code, sizeof code, "local f = %s; local b = bundle(f); "
                                    "assert(b['text/plain'] == tostring(f)); return b['text/html']", figs[i]);
        const char *html = run(code);
        cr_assert(strstr(html, "<div class=\"lp-fig") != NULL, "%s: %s", figs[i], html);
    }
    cr_assert(strstr(run("return tostring(loupe.plot.hist{1, 2, 3})"), "histogram of 3 values") != NULL);
    cr_assert(strstr(run("return tostring(loupe.plot.line{y = {1, 0/0, 3}})"), "1 value missing (NaN/Inf)") != NULL);
    cr_assert(strstr(run("return tostring(loupe.plot.heatmap{{{{1,2}}}, {{{3,4}}}})"), "") != NULL);
}

Test(lua_plot, untrusted_strings_are_escaped)
{
    const char *html = run("return bundle(loupe.tokens({'a\\0b', '<script>alert(1)</script>', '\\xff', "
                           "'\\u{202E}x'}, {1, -1, 0, 2}))['text/html']");
    cr_assert(strstr(html, "<script>alert") == NULL, "%s", html);
    cr_assert(strstr(html, "a\\0b") != NULL, "%s", html);
    cr_assert(strstr(html, "\xE2\x80\xAE") == NULL);
    html = run("return bundle(loupe.plot.heatmap{{{1, 2}}, row_labels = {'<img src=x onerror=alert(1)>'}, "
               "col_labels = {'&', '\"'}, title = '<b>t</b>'})['text/html']");
    cr_assert(strstr(html, "<img src=x") == NULL, "%s", html);
    cr_assert(strstr(html, "&lt;b&gt;t&lt;/b&gt;") != NULL);
    char *svg = t_svg_at(html, 0);
    cr_assert(strstr(svg, "&lt;img src=x onerr") != NULL, "%s", svg);
    free(svg);
    html = run("return bundle(loupe.table({{'<td>', 1}}, {header = {'</table>', 'n'}}))['text/html']");
    cr_assert(strstr(html, "&lt;td&gt;") != NULL && strstr(html, "&lt;/table&gt;") != NULL);
}

Test(lua_plot, bad_arguments_raise_clear_errors)
{
    cr_assert(strstr(fails("loupe.plot.line{{1, 'x'}}"), "expected a number") != NULL);
    cr_assert(strstr(fails("loupe.plot.hist(3)"), "table expected") != NULL);
    cr_assert(strstr(fails("loupe.plot.heatmap{{{1, 2}, {3}}}"), "row 2 has 1 values") != NULL);
    cr_assert(strstr(fails("loupe.plot.heatmap{{{1}}, scale = 'rainbow'}"), "scale must be") != NULL);
    cr_assert(strstr(fails("loupe.plot.scatter{{1, 2}, {1}}"), "x has 2 values, y has 1") != NULL);
    cr_assert(strstr(fails("loupe.tokens({'a', 'b'}, {1})"), "1 values for 2 tokens") != NULL);
    cr_assert(strstr(fails("loupe.plot.heatmap{{{1, 2}}, row_labels = {'a', 'b'}}"), "2 row labels for 1 rows") != NULL);
    cr_assert(strstr(fails("loupe.plot.line{title = {}}"), "option title") != NULL);
}

Test(lua_plot, empty_data_says_nothing_to_show)
{
    cr_assert(strstr(run("return tostring(loupe.plot.line{})"), "nothing to show") != NULL);
    cr_assert(strstr(run("return tostring(loupe.plot.hist{{}})"), "nothing to show") != NULL);
    cr_assert(strstr(run("return tostring(loupe.tokens({}))"), "nothing to show") != NULL);
    cr_assert(strstr(run("return tostring(loupe.table({}))"), "nothing to show") != NULL);
}

Test(lua_plot, live_plot_is_throttled_and_ends_with_the_final_state)
{
    run("p = loupe.plot.live{title = 'loss', xlabel = 'step'}\n"
        "for i = 1, 2000 do p:add(i, 1 / i); p:add(i, 2 / i, 'val') end\n"
        "return 'ok'");
    cr_assert_geq(t_pub.count, 1);
    cr_assert_leq(t_pub.count, 4, "published %d times in a tight loop", t_pub.count);
    cr_assert(strncmp(t_pub.last_id, "loupe-live-", 11) == 0);
    int before = t_pub.count;
    run("p:done(); return 'ok'");
    cr_assert_eq(t_pub.count, before + 1);
    cr_assert_eq(t_pub.last_update, 1);
    cr_assert(t_bundle_valid(t_pub.last_bundle));
    const char *plain = t_get(t_pub.last_bundle, "text/plain");
    cr_assert(strstr(plain, "value: 2000 points") != NULL && strstr(plain, "val: 2000 points") != NULL, "%s", plain);
    cr_assert(strstr(run("return tostring(p)"), "loss: line plot, 2 series") != NULL);
    run("p:done(); return 'ok'"); /* twice: nothing more */
    cr_assert_eq(t_pub.count, before + 1);
    /* A second live plot gets its own display id, created with update = 0. */
    char first[64];
    strcpy(first, t_pub.last_id);
    run("q = loupe.plot.live(); q:add(1, 1); return 'ok'");
    cr_assert_eq(t_pub.last_update, 0);
    cr_assert_str_neq(t_pub.last_id, first);
}

Test(lua_plot, functions_have_docstrings)
{
    const char *doc = t_lua_doc(L, "return loupe.plot.heatmap");
    cr_assert(doc && strncmp(doc, "loupe.plot.heatmap{", 19) == 0);
}
