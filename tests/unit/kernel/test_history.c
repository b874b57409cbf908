/* History: persisted across sessions, tail/range/search, corrupt lines skipped. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "history.h"

static char path[64];

static void setup(void)
{
    snprintf(path, sizeof path, "/tmp/loupe-hist-%d/sub/history.jsonl", getpid());
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf /tmp/loupe-hist-%d", getpid());
    if (system(cmd) != 0) {}
}

static const char *input_at(json_t *arr, size_t i) { return json_string_value(json_array_get(json_array_get(arr, i), 2)); }

Test(history, persists_across_sessions, .init = setup, .fini = teardown)
{
    lp_history *h = lp_history_open(path);
    cr_assert_eq(lp_history_session(h), 1);
    lp_history_add(h, 1, "x = 1");
    lp_history_add(h, 2, "print(x)");
    lp_history_free(h);

    h = lp_history_open(path);
    cr_assert_eq(lp_history_session(h), 2);
    lp_history_add(h, 1, "y = 2");
    json_t *t = lp_history_tail(h, 2, 0);
    cr_assert_eq(json_array_size(t), 2);
    cr_assert_str_eq(input_at(t, 0), "print(x)");
    cr_assert_str_eq(input_at(t, 1), "y = 2");
    cr_assert_eq(json_integer_value(json_array_get(json_array_get(t, 1), 0)), 2);
    json_decref(t);

    json_t *r = lp_history_range(h, -1, 1, 0, 0); /* the previous session, all lines */
    cr_assert_eq(json_array_size(r), 2);
    cr_assert_str_eq(input_at(r, 0), "x = 1");
    json_decref(r);
    r = lp_history_range(h, 1, 2, 3, 1); /* absolute session 1, line 2, with output */
    cr_assert_eq(json_array_size(r), 1);
    cr_assert(json_is_array(json_array_get(json_array_get(r, 0), 2)));
    json_decref(r);
    r = lp_history_range(h, 0, 1, 0, 0); /* current session */
    cr_assert_eq(json_array_size(r), 1);
    json_decref(r);
    lp_history_free(h);
}

Test(history, search_with_glob_and_unique, .init = setup, .fini = teardown)
{
    lp_history *h = lp_history_open(path);
    lp_history_add(h, 1, "print(1)");
    lp_history_add(h, 2, "x = 2");
    lp_history_add(h, 3, "print(1)");
    lp_history_add(h, 4, "print(2)");
    json_t *s = lp_history_search(h, "print*", 0, 0, 0);
    cr_assert_eq(json_array_size(s), 3);
    json_decref(s);
    s = lp_history_search(h, "print*", 0, 1, 0);
    cr_assert_eq(json_array_size(s), 2);
    cr_assert_str_eq(input_at(s, 0), "print(1)");
    cr_assert_str_eq(input_at(s, 1), "print(2)");
    json_decref(s);
    s = lp_history_search(h, "print*", 1, 0, 0); /* newest one */
    cr_assert_eq(json_array_size(s), 1);
    cr_assert_str_eq(input_at(s, 0), "print(2)");
    json_decref(s);
    s = lp_history_search(h, "?", 0, 0, 0);
    cr_assert_eq(json_array_size(s), 0);
    json_decref(s);
    lp_history_free(h);
}

Test(history, corrupt_lines_are_skipped, .init = setup, .fini = teardown)
{
    lp_history *h = lp_history_open(path);
    lp_history_add(h, 1, "ok");
    lp_history_free(h);
    FILE *f = fopen(path, "a");
    fputs("garbage\n{\"session\": \"x\"}\n\n{\"session\": 7, \"line\": 1, \"input\": \"later\"}\n", f);
    fclose(f);
    h = lp_history_open(path);
    cr_assert_eq(lp_history_session(h), 8);
    json_t *t = lp_history_tail(h, 10, 0);
    cr_assert_eq(json_array_size(t), 2);
    json_decref(t);
    lp_history_free(h);
}

Test(history, unwritable_location_keeps_memory_history)
{
    lp_history *h = lp_history_open("/proc/loupe-cannot/history.jsonl");
    lp_history_add(h, 1, "a");
    json_t *t = lp_history_tail(h, 5, 0);
    cr_assert_eq(json_array_size(t), 1);
    json_decref(t);
    lp_history_free(h);
}
