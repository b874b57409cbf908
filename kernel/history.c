#include "history.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

#define HISTORY_KEEP 20000

typedef struct entry {
    int session, line;
    char *input;
} entry;

struct lp_history {
    entry *v;
    size_t n, cap, start; /* v[start..n) are live; older ones freed when trimming */
    int session;
    char *path; /* NULL = memory only */
};

static int push(lp_history *h, int session, int line, const char *input)
{
    if (h->n - h->start >= HISTORY_KEEP) { /* drop the oldest */
        free(h->v[h->start].input);
        h->start++;
    }
    if (h->start > 0 && h->n == h->cap) {
        memmove(h->v, h->v + h->start, (h->n - h->start) * sizeof *h->v);
        h->n -= h->start;
        h->start = 0;
    }
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        entry *v = realloc(h->v, cap * sizeof *v);
        if (!v)
            return -1;
        h->v = v;
        h->cap = cap;
    }
    char *copy = strdup(input);
    if (!copy)
        return -1;
    h->v[h->n++] = (entry){session, line, copy};
    return 0;
}

static int mkdirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0700);
        *p = '/';
        if (rc < 0 && errno != EEXIST)
            return -1;
    }
    return 0;
}

static char *default_path(void)
{
    const char *e = getenv("LOUPE_HISTORY_FILE");
    if (e && *e)
        return strdup(e);
    char buf[4096];
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(buf, sizeof buf, "%s/loupe/history.jsonl", xdg);
    else if (home && *home)
        snprintf(buf, sizeof buf, "%s/.local/share/loupe/history.jsonl", home);
    else
        return NULL;
    return strdup(buf);
}

lp_history *lp_history_open(const char *path)
{
    lp_history *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->path = path ? strdup(path) : default_path();
    int max_session = 0;
    FILE *f = h->path ? fopen(h->path, "r") : NULL;
    if (f) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, f)) > 0) {
            json_t *j = json_loadb(line, (size_t)len, 0, NULL);
            json_t *s = json_object_get(j, "session"), *l = json_object_get(j, "line"),
                   *in = json_object_get(j, "input");
            if (json_is_integer(s) && json_is_integer(l) && json_is_string(in)) {
                int session = (int)json_integer_value(s);
                if (session > max_session)
                    max_session = session;
                push(h, session, (int)json_integer_value(l), json_string_value(in));
            }
            json_decref(j);
        }
        free(line);
        fclose(f);
    }
    h->session = max_session + 1;
    if (h->path) {
        if (mkdirs(h->path) < 0) {
            lp_log("history: cannot create the folder of %s (%s); keeping history in memory", h->path, strerror(errno));
            free(h->path);
            h->path = NULL;
        }
    }
    return h;
}

void lp_history_free(lp_history *h)
{
    if (!h)
        return;
    for (size_t i = h->start; i < h->n; i++)
        free(h->v[i].input);
    free(h->v);
    free(h->path);
    free(h);
}

int lp_history_session(const lp_history *h) { return h->session; }

void lp_history_add(lp_history *h, int line, const char *input)
{
    push(h, h->session, line, input);
    if (!h->path)
        return;
    json_t *j = json_pack("{s:i, s:i, s:s}", "session", h->session, "line", line, "input", input);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return;
    FILE *f = fopen(h->path, "a");
    if (!f) {
        lp_log("history: cannot append to %s: %s", h->path, strerror(errno));
    } else {
        /* One write per entry so concurrent kernels never interleave inside a line. */
        size_t n = strlen(text);
        text[n] = '\n';
        fwrite(text, 1, n + 1, f);
        text[n] = '\0';
        fclose(f);
    }
    free(text);
}

static json_t *item(const entry *e, int output)
{
    if (output)
        return json_pack("[i, i, [s, n]]", e->session, e->line, e->input);
    return json_pack("[i, i, s]", e->session, e->line, e->input);
}

json_t *lp_history_tail(const lp_history *h, int n, int output)
{
    json_t *out = json_array();
    size_t count = h->n - h->start;
    size_t from = (n > 0 && (size_t)n < count) ? h->n - (size_t)n : h->start;
    for (size_t i = from; i < h->n; i++)
        json_array_append_new(out, item(&h->v[i], output));
    return out;
}

json_t *lp_history_range(const lp_history *h, int session, int start, int stop, int output)
{
    if (session <= 0)
        session = h->session + session;
    json_t *out = json_array();
    for (size_t i = h->start; i < h->n; i++) {
        const entry *e = &h->v[i];
        if (e->session == session && e->line >= start && (stop <= 0 || e->line < stop))
            json_array_append_new(out, item(e, output));
    }
    return out;
}

json_t *lp_history_search(const lp_history *h, const char *pattern, int n, int unique, int output)
{
    json_t *rev = json_array(); /* newest first while collecting */
    for (size_t i = h->n; i-- > h->start;) {
        const entry *e = &h->v[i];
        if (fnmatch(pattern && *pattern ? pattern : "*", e->input, 0) != 0)
            continue;
        if (unique) {
            int seen = 0;
            size_t k;
            json_t *v;
            json_array_foreach(rev, k, v)
            {
                json_t *in = json_array_get(v, 2);
                const char *s = json_is_array(in) ? json_string_value(json_array_get(in, 0)) : json_string_value(in);
                if (s && strcmp(s, e->input) == 0) {
                    seen = 1;
                    break;
                }
            }
            if (seen)
                continue;
        }
        json_array_append_new(rev, item(e, output));
        if (n > 0 && json_array_size(rev) >= (size_t)n)
            break;
    }
    json_t *out = json_array();
    for (size_t i = json_array_size(rev); i-- > 0;)
        json_array_append(out, json_array_get(rev, i));
    json_decref(rev);
    return out;
}
