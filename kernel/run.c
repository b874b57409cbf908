/* `loupe run FILE.lua`: runs a script's cells headless, for scripts and batch jobs. Cells
 * are separated by lines that start with "-- %%" (the percent format editors know); each
 * cell's last value is printed as text, displays print their text/plain form, progress
 * bars print their final line. Stops at the first error (exit status 1). */
#include "run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/error.h"
#include "interp.h"

static void run_write(void *ud, int which, const char *s, size_t n)
{
    (void)ud;
    fwrite(s, 1, n, which == 2 ? stderr : stdout);
    if (which == 1 && memchr(s, '\n', n))
        fflush(stdout);
}

static void print_bundle(json_t *bundle)
{
    const char *text = json_string_value(json_object_get(bundle, "text/plain"));
    if (text) {
        fputs(text, stdout);
        if (*text && text[strlen(text) - 1] != '\n')
            fputc('\n', stdout);
        fflush(stdout);
    }
}

static void run_display(void *ud, json_t *bundle, const char *display_id, int update)
{
    (void)ud;
    /* Live updates (progress bars) print only when they are new or final, not each tick. */
    json_t *fin = json_object_get(bundle, "application/vnd.loupe.progress+json");
    int final = fin ? json_is_true(json_object_get(fin, "finished")) : 1;
    if (!display_id || !update || final)
        print_bundle(bundle);
    json_decref(bundle);
}

static void run_clear(void *ud, int wait) { (void)ud; (void)wait; }

static int run_input(void *ud, const char *prompt, int password, lp_buf *out)
{
    (void)ud; (void)password;
    fputs(prompt, stdout);
    fflush(stdout);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return lp_set_error("input: end of standard input");
    }
    if (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    lp_buf_reset(out);
    lp_buf_append(out, line, (size_t)n);
    free(line);
    return 0;
}

static void run_comm(void *ud, const char *msg_type, json_t *content)
{
    (void)ud; (void)msg_type;
    json_decref(content); /* no frontend: comms go nowhere */
}

static char *read_all(const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        lp_set_error_code(LP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    lp_buf b = LP_BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        lp_buf_append(&b, chunk, n);
    if (f != stdin)
        fclose(f);
    char *s = lp_buf_finish(&b);
    if (s && strlen(s) != 0 && memchr(s, '\0', strlen(s)) == NULL)
        return s;
    if (!s)
        lp_set_error_code(LP_ERR_NOMEM, "out of memory reading %s", path);
    return s;
}

int lp_run_file(const char *path)
{
    char *src = read_all(path);
    if (!src) {
        fprintf(stderr, "loupe: %s\n", lp_last_error());
        return 2;
    }
    lp_io io = {run_write, run_display, run_clear, run_input, run_comm, NULL, NULL};
    lp_interp *I = lp_interp_new(&io, 0);
    if (!I) {
        fprintf(stderr, "loupe: %s\n", lp_last_error());
        free(src);
        return 2;
    }
    int status = 0, cell = 0;
    char *p = src;
    while (*p && status == 0) {
        /* the cell runs to the next "-- %%" line */
        char *end = p;
        for (;;) {
            char *nl = strchr(end, '\n');
            if (!nl) {
                end += strlen(end);
                break;
            }
            if (strncmp(nl + 1, "-- %%", 5) == 0) {
                end = nl + 1;
                break;
            }
            end = nl + 1;
        }
        char saved = *end;
        *end = '\0';
        cell++;
        lp_exec_result res;
        lp_interp_execute(I, p, cell, 1, &res);
        fflush(stdout);
        if (res.ok) {
            if (res.result)
                print_bundle(res.result);
        } else {
            size_t i;
            json_t *line;
            json_array_foreach(res.traceback, i, line) fprintf(stderr, "%s\n", json_string_value(line));
            status = 1;
        }
        lp_exec_result_clear(&res);
        *end = saved;
        p = end;
    }
    lp_interp_free(I);
    free(src);
    return status;
}
