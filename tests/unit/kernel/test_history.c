/* History in SQLite: persisted across sessions, tail / range / search, the truncation marker,
 * the size limit, the import of history.jsonl, and the in-memory fallback for a database that
 * is corrupt, locked or cannot be created. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "history.h"

static char dir[64], path[96], legacy[96];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/loupe-hist-%d/sub", getpid());
    snprintf(path, sizeof path, "%s/history.sqlite", dir);
    snprintf(legacy, sizeof legacy, "%s/history.jsonl", dir);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf /tmp/loupe-hist-%d", getpid());
    if (system(cmd) != 0) {}
}

static const char *input_at(json_t *arr, size_t i) { return json_string_value(json_array_get(json_array_get(arr, i), 2)); }
static int int_at(json_t *arr, size_t i, size_t k) { return (int)json_integer_value(json_array_get(json_array_get(arr, i), k)); }

static size_t count_all(lp_history *h)
{
    json_t *t = lp_history_tail(h, 0, 0);
    cr_assert(t, "tail failed");
    size_t n = json_array_size(t);
    json_decref(t);
    return n;
}

static off_t file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? st.st_size : -1;
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

Test(history, persists_across_sessions, .init = setup, .fini = teardown)
{
    lp_history *h = lp_history_open(path, NULL);
    cr_assert(lp_history_persistent(h));
    cr_assert_eq(lp_history_session(h), 1);
    cr_assert_eq(lp_history_add(h, 1, "x = 1"), 0);
    cr_assert_eq(lp_history_add(h, 2, "print(x)"), 0);
    lp_history_free(h);

    h = lp_history_open(path, NULL);
    cr_assert_eq(lp_history_session(h), 2);
    lp_history_add(h, 1, "y = 2");
    json_t *t = lp_history_tail(h, 2, 0);
    cr_assert_eq(json_array_size(t), 2);
    cr_assert_str_eq(input_at(t, 0), "print(x)");
    cr_assert_str_eq(input_at(t, 1), "y = 2");
    cr_assert_eq(int_at(t, 0, 0), 1);
    cr_assert_eq(int_at(t, 0, 1), 2);
    cr_assert_eq(int_at(t, 1, 0), 2);
    json_decref(t);
    cr_assert_eq(count_all(h), 3);

    json_t *r = lp_history_range(h, -1, 1, 0, 0); /* the previous session, all lines */
    cr_assert_eq(json_array_size(r), 2);
    cr_assert_str_eq(input_at(r, 0), "x = 1");
    cr_assert_str_eq(input_at(r, 1), "print(x)");
    json_decref(r);
    r = lp_history_range(h, 1, 2, 3, 1); /* absolute session 1, line 2, with output */
    cr_assert_eq(json_array_size(r), 1);
    json_t *pair = json_array_get(json_array_get(r, 0), 2);
    cr_assert(json_is_array(pair) && json_is_null(json_array_get(pair, 1)));
    cr_assert_str_eq(json_string_value(json_array_get(pair, 0)), "print(x)");
    json_decref(r);
    r = lp_history_range(h, 0, 1, 0, 0); /* current session */
    cr_assert_eq(json_array_size(r), 1);
    cr_assert_str_eq(input_at(r, 0), "y = 2");
    json_decref(r);
    r = lp_history_range(h, 1, 1, 2, 0); /* stop is exclusive */
    cr_assert_eq(json_array_size(r), 1);
    cr_assert_str_eq(input_at(r, 0), "x = 1");
    json_decref(r);
    r = lp_history_range(h, 9, 0, 0, 0);
    cr_assert_eq(json_array_size(r), 0);
    json_decref(r);
    lp_history_free(h);
}

Test(history, search_with_glob_and_unique, .init = setup, .fini = teardown)
{
    lp_history *h = lp_history_open(path, NULL);
    lp_history_add(h, 1, "print(1)");
    lp_history_add(h, 2, "x = 2");
    lp_history_add(h, 3, "print(1)");
    lp_history_add(h, 4, "print(2)");
    lp_history_add(h, 5, "Print(3)");
    json_t *s = lp_history_search(h, "print*", 0, 0, 0);
    cr_assert_eq(json_array_size(s), 3); /* GLOB is case-sensitive */
    cr_assert_str_eq(input_at(s, 0), "print(1)");
    cr_assert_eq(int_at(s, 0, 1), 1);
    json_decref(s);
    s = lp_history_search(h, "print*", 0, 1, 0);
    cr_assert_eq(json_array_size(s), 2);
    cr_assert_str_eq(input_at(s, 0), "print(1)");
    cr_assert_eq(int_at(s, 0, 1), 3); /* the newest of the repeated input */
    cr_assert_str_eq(input_at(s, 1), "print(2)");
    json_decref(s);
    s = lp_history_search(h, "print*", 1, 0, 0); /* the newest one */
    cr_assert_eq(json_array_size(s), 1);
    cr_assert_str_eq(input_at(s, 0), "print(2)");
    json_decref(s);
    s = lp_history_search(h, "[pP]rint(?)", 2, 0, 0);
    cr_assert_eq(json_array_size(s), 2);
    cr_assert_str_eq(input_at(s, 0), "print(2)");
    cr_assert_str_eq(input_at(s, 1), "Print(3)");
    json_decref(s);
    s = lp_history_search(h, "?", 0, 0, 0);
    cr_assert_eq(json_array_size(s), 0);
    json_decref(s);
    s = lp_history_search(h, NULL, 0, 1, 0); /* no pattern: everything, unique */
    cr_assert_eq(json_array_size(s), 4);
    json_decref(s);
    lp_history_free(h);
}

Test(history, long_inputs_are_truncated_with_a_marker, .init = setup, .fini = teardown)
{
    lp_history_opts o = {.max_entry = 101}; /* odd: inside a two-byte character below */
    lp_history *h = lp_history_open(path, &o);
    char *big = repeat('a', 5000);
    lp_history_add(h, 1, big);
    /* 60 two-byte characters (120 bytes): the cut moves back to a whole character */
    char utf8[121];
    for (int i = 0; i < 60; i++)
        memcpy(utf8 + 2 * i, "\xc3\xa9", 2);
    utf8[120] = '\0';
    lp_history_add(h, 2, utf8);
    lp_history_add(h, 3, "short");
    json_t *t = lp_history_tail(h, 3, 0);
    cr_assert_eq(json_array_size(t), 3);
    const char *a = input_at(t, 0);
    cr_assert(strncmp(a, big, 101) == 0);
    cr_assert(strncmp(a + 101, HISTORY_TRUNCATED_MARK, strlen(HISTORY_TRUNCATED_MARK)) == 0, "%s", a + 101);
    cr_assert(strstr(a, "5000 bytes]") != NULL, "%s", a);
    cr_assert_lt(strlen(a), 200);
    const char *e = input_at(t, 1);
    cr_assert(e, "a cut inside a character would not be valid UTF-8");
    size_t kept = (size_t)(strstr(e, HISTORY_TRUNCATED_MARK) - e);
    cr_assert_eq(kept, 100);
    cr_assert(strncmp(e, utf8, 100) == 0);
    cr_assert(strstr(e, "120 bytes]") != NULL);
    cr_assert_str_eq(input_at(t, 2), "short");
    json_decref(t);
    /* an input of exactly max_entry bytes is kept whole */
    big[101] = '\0';
    lp_history_add(h, 4, big);
    t = lp_history_tail(h, 1, 0);
    cr_assert_str_eq(input_at(t, 0), big);
    json_decref(t);
    free(big);
    lp_history_free(h);
}

/* Adds n entries of `size` bytes, each naming its session and line. */
static void fill(lp_history *h, int n, size_t size)
{
    char *s = repeat('z', size);
    for (int i = 1; i <= n; i++) {
        int m = snprintf(s, size, "s%d_l%d ", lp_history_session(h), i);
        s[m] = 'z';
        cr_assert_eq(lp_history_add(h, i, s), 0);
    }
    free(s);
}

static size_t session_size(lp_history *h, int session)
{
    json_t *r = lp_history_range(h, session, 0, 0, 0);
    size_t n = json_array_size(r);
    json_decref(r);
    return n;
}

Test(history, oldest_sessions_dropped_past_the_size_limit, .init = setup, .fini = teardown)
{
    lp_history_opts o = {.max_bytes = 512 << 10};
    for (int s = 1; s <= 3; s++) { /* three sessions of about 200 KB */
        lp_history *h = lp_history_open(path, &o);
        cr_assert_eq(lp_history_session(h), s);
        fill(h, 50, 4000);
        lp_history_free(h);
    }
    lp_history *h = lp_history_open(path, &o);
    cr_assert_eq(lp_history_session(h), 4);
    cr_assert_eq(session_size(h, 1), 0, "the oldest session is dropped");
    cr_assert_eq(session_size(h, 2), 50, "sessions that fit are kept whole");
    cr_assert_eq(session_size(h, 3), 50);
    json_t *s = lp_history_search(h, "s3_l50 *", 0, 0, 0);
    cr_assert_eq(json_array_size(s), 1);
    json_decref(s);
    /* the current session alone past the limit keeps all its lines; older ones go */
    fill(h, 200, 4000);
    cr_assert_eq(session_size(h, 2), 0);
    cr_assert_eq(session_size(h, 3), 0);
    cr_assert_eq(session_size(h, 4), 200);
    lp_history_free(h);
    /* the next session drops that one too, and the file shrinks back (pages are freed) */
    h = lp_history_open(path, &o);
    cr_assert_eq(count_all(h), 0);
    lp_history_free(h);
    cr_assert_lt(file_size(path), 512 << 10, "%ld bytes", (long)file_size(path));
}

Test(history, jsonl_imported_once_then_renamed, .init = setup, .fini = teardown)
{
    lp_history *h = lp_history_open(path, NULL); /* creates the folder */
    lp_history_free(h);
    remove(path);
    FILE *f = fopen(legacy, "w");
    cr_assert(f);
    fputs("{\"session\": 1, \"line\": 1, \"input\": \"a = 1\"}\n"
          "garbage\n{\"session\": \"x\"}\n\n"
          "{\"session\": 1, \"line\": 2, \"input\": \"b = \\u00e9\"}\n"
          "{\"session\": 1, \"line\": 2, \"input\": \"same line, second kernel\"}\n"
          "{\"session\": 7, \"line\": 1, \"input\": \"later\"}\n"
          "{\"session\": 0, \"line\": 1, \"input\": \"no session 0\"}\n"
          "{\"session\": 7, \"line\": 2, \"input\": \"",
          f);
    for (int i = 0; i < 3000; i++)
        fputc('q', f);
    fputs("\"}\n", f);
    fclose(f);

    lp_history_opts o = {.max_entry = 1000};
    h = lp_history_open(path, &o);
    cr_assert(lp_history_persistent(h));
    cr_assert_eq(lp_history_session(h), 8, "numbered after the imported sessions");
    cr_assert_eq(count_all(h), 5);
    json_t *r = lp_history_range(h, 1, 0, 0, 0);
    cr_assert_eq(json_array_size(r), 3, "both entries of line 2 are kept");
    cr_assert_str_eq(input_at(r, 1), "b = \xc3\xa9");
    json_decref(r);
    r = lp_history_range(h, 7, 2, 3, 0);
    cr_assert(strstr(input_at(r, 0), HISTORY_TRUNCATED_MARK), "long imported inputs are truncated too");
    json_decref(r);
    lp_history_free(h);

    cr_assert_eq(access(legacy, F_OK), -1, "renamed");
    char done[128];
    snprintf(done, sizeof done, "%s.imported", legacy);
    cr_assert_eq(access(done, F_OK), 0);
    h = lp_history_open(path, &o);
    cr_assert_eq(lp_history_session(h), 9);
    cr_assert_eq(count_all(h), 5, "imported once");
    lp_history_free(h);
}

Test(history, corrupt_database_keeps_memory_history, .init = setup, .fini = teardown)
{
    lp_history *h = lp_history_open(path, NULL);
    lp_history_free(h);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 1000; i++)
        fputs("not a database ", f);
    fclose(f);
    off_t before = file_size(path);
    h = lp_history_open(path, NULL);
    cr_assert_not(lp_history_persistent(h));
    cr_assert_eq(lp_history_session(h), 1);
    cr_assert_eq(lp_history_add(h, 1, "kept in memory"), 0);
    json_t *t = lp_history_tail(h, 5, 0);
    cr_assert_eq(json_array_size(t), 1);
    cr_assert_str_eq(input_at(t, 0), "kept in memory");
    json_decref(t);
    t = lp_history_search(h, "kept*", 0, 0, 1);
    cr_assert_eq(json_array_size(t), 1);
    json_decref(t);
    lp_history_free(h);
    cr_assert_eq(file_size(path), before, "the damaged file is left as it was");
}

Test(history, locked_database_keeps_memory_history, .init = setup, .fini = teardown)
{
    lp_history *h = lp_history_open(path, NULL);
    lp_history_add(h, 1, "on disk");
    lp_history_free(h);
    sqlite3 *other;
    cr_assert_eq(sqlite3_open(path, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);

    lp_history_opts o = {.busy_ms = 50};
    h = lp_history_open(path, &o);
    cr_assert_not(lp_history_persistent(h));
    cr_assert_eq(lp_history_session(h), 2, "numbered after the sessions it could read");
    cr_assert_eq(lp_history_add(h, 1, "in memory"), 0);
    json_t *t = lp_history_tail(h, 0, 0);
    cr_assert_eq(json_array_size(t), 1);
    cr_assert_str_eq(input_at(t, 0), "in memory");
    json_decref(t);
    lp_history_free(h);

    sqlite3_exec(other, "COMMIT", NULL, NULL, NULL);
    h = lp_history_open(path, &o);
    cr_assert(lp_history_persistent(h));
    t = lp_history_tail(h, 0, 0);
    cr_assert_eq(json_array_size(t), 1);
    cr_assert_str_eq(input_at(t, 0), "on disk");
    json_decref(t);

    /* locked while a session runs: that line is not recorded, the next ones are */
    cr_assert_eq(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    cr_assert_eq(lp_history_add(h, 1, "while locked"), -1);
    cr_assert(lp_history_persistent(h));
    sqlite3_exec(other, "COMMIT", NULL, NULL, NULL);
    cr_assert_eq(lp_history_add(h, 2, "after"), 0);
    t = lp_history_range(h, 0, 0, 0, 0);
    cr_assert_eq(json_array_size(t), 1);
    cr_assert_str_eq(input_at(t, 0), "after");
    json_decref(t);
    lp_history_free(h);
    sqlite3_close(other);
}

/* In a child that cannot write (root can write anywhere: the child becomes nobody): 0 when
 * the read-only database gives a memory history numbered after the sessions it holds. */
static int open_read_only_child(void)
{
    if (getuid() == 0 && setuid(65534) != 0)
        return 2;
    lp_history *h = lp_history_open(path, NULL);
    if (lp_history_persistent(h))
        return fprintf(stderr, "persistent on a read-only disk\n"), 1;
    if (lp_history_session(h) != 2)
        return fprintf(stderr, "session %d, not 2\n", lp_history_session(h)), 1;
    if (lp_history_add(h, 1, "in memory") != 0)
        return fprintf(stderr, "add failed\n"), 1;
    json_t *t = lp_history_tail(h, 0, 0);
    int n = (int)json_array_size(t);
    json_decref(t);
    lp_history_free(h);
    return n == 1 ? 0 : (fprintf(stderr, "%d entries\n", n), 1);
}

Test(history, read_only_database_keeps_memory_history, .init = setup, .fini = teardown)
{
    lp_history *h = lp_history_open(path, NULL);
    lp_history_add(h, 1, "on disk");
    lp_history_free(h);
    off_t before = file_size(path);
    char parent[64];
    snprintf(parent, sizeof parent, "/tmp/loupe-hist-%d", getpid());
    cr_assert_eq(chmod(parent, 0755) | chmod(dir, 0555) | chmod(path, 0444), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(open_read_only_child());
    int status = -1;
    waitpid(pid, &status, 0);
    chmod(dir, 0700);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    cr_assert_eq(file_size(path), before);
    h = lp_history_open(path, NULL);
    cr_assert_eq(count_all(h), 1, "the memory entry did not reach the file");
    lp_history_free(h);
}

Test(history, two_handles_append_to_one_database, .init = setup, .fini = teardown)
{
    lp_history *a = lp_history_open(path, NULL), *b = lp_history_open(path, NULL);
    cr_assert_neq(lp_history_session(a), lp_history_session(b));
    for (int i = 1; i <= 20; i++) {
        char s[32];
        snprintf(s, sizeof s, "a%d", i);
        cr_assert_eq(lp_history_add(a, i, s), 0);
        snprintf(s, sizeof s, "b%d", i);
        cr_assert_eq(lp_history_add(b, i, s), 0);
    }
    cr_assert_eq(session_size(a, lp_history_session(b)), 20);
    cr_assert_eq(session_size(b, lp_history_session(a)), 20);
    lp_history_free(a);
    lp_history_free(b);
}

Test(history, unwritable_location_keeps_memory_history)
{
    lp_history *h = lp_history_open("/proc/loupe-cannot/history.sqlite", NULL);
    cr_assert_not(lp_history_persistent(h));
    cr_assert_eq(lp_history_add(h, 1, "a"), 0);
    json_t *t = lp_history_tail(h, 5, 0);
    cr_assert_eq(json_array_size(t), 1);
    json_decref(t);
    t = lp_history_range(h, 0, 1, 2, 0);
    cr_assert_eq(json_array_size(t), 1);
    json_decref(t);
    lp_history_free(h);

    /* the memory history has the same size limit: the oldest entries go */
    lp_history_opts o = {.max_bytes = 256 << 10};
    h = lp_history_open("/proc/loupe-cannot/history.sqlite", &o);
    fill(h, 200, 4000);
    size_t n = count_all(h);
    cr_assert(n > 20 && n < 100, "%zu entries of 4000 bytes under 256 KiB", n);
    t = lp_history_tail(h, 1, 0);
    cr_assert(strncmp(input_at(t, 0), "s1_l200 ", 8) == 0);
    json_decref(t);
    lp_history_free(h);
}
