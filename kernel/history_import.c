/* The one-time import of history.jsonl, the history file before SQLite: one
 * {"session": S, "line": L, "input": "..."} per line, appended by every kernel. Lines that
 * are not such an object are skipped (the old reader skipped them too). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "history_store.h"
#include "util.h"

/* <jsonl>.imported, or .imported.1 .. .9 when taken; NULL when all are. */
static char *free_name(const char *jsonl)
{
    size_t n = strlen(jsonl) + sizeof ".imported.9";
    char *p = malloc(n);
    for (int i = 0; p && i < 10; i++) {
        if (i == 0)
            snprintf(p, n, "%s.imported", jsonl);
        else
            snprintf(p, n, "%s.imported.%d", jsonl, i);
        if (access(p, F_OK) != 0 && errno == ENOENT)
            return p;
    }
    free(p);
    return NULL;
}

/* One line into the database: 1 imported, 0 skipped, or a negated SQLite error code. */
static int import_line(lp_history *h, const char *text, size_t len)
{
    json_t *j = json_loadb(text, len, 0, NULL);
    json_t *s = json_object_get(j, "session"), *l = json_object_get(j, "line"), *in = json_object_get(j, "input");
    int done = 0;
    if (json_is_integer(s) && json_is_integer(l) && json_is_string(in) && json_integer_value(s) >= 1 &&
        json_integer_value(s) < INT_MAX && json_integer_value(l) >= 0 && json_integer_value(l) <= INT_MAX) {
        int rc = lp_history_insert(h, (int)json_integer_value(s), (int)json_integer_value(l), json_string_value(in),
                                   json_string_length(in));
        done = rc == SQLITE_OK ? 1 : -rc;
    }
    json_decref(j);
    return done;
}

int lp_history_import_jsonl(lp_history *h, const char *jsonl, char **renamed_to)
{
    *renamed_to = NULL;
    FILE *f = fopen(jsonl, "r");
    if (!f) {
        if (errno != ENOENT)
            lp_log("history: cannot read %s to import it: %s", jsonl, strerror(errno));
        return SQLITE_OK;
    }
    char *line = NULL;
    size_t cap = 0, imported = 0, skipped = 0;
    ssize_t len;
    int rc = SQLITE_OK;
    while ((len = getline(&line, &cap, f)) > 0) {
        int r = import_line(h, line, (size_t)len);
        if (r < 0) {
            rc = -r;
            break;
        }
        imported += (size_t)r;
        skipped += r == 0 && !(len == 1 && line[0] == '\n');
    }
    free(line);
    fclose(f);
    if (rc != SQLITE_OK)
        return rc;
    char *to = free_name(jsonl);
    if (!to || rename(jsonl, to) < 0) {
        /* Imported but still there: the next kernel would import it again. */
        lp_log("history: cannot rename %s after importing it: %s", jsonl, to ? strerror(errno) : "no free name");
        free(to);
        return SQLITE_CANTOPEN;
    }
    lp_log("history: imported %zu entries of %s (%zu lines skipped); it is now %s", imported, jsonl, skipped, to);
    *renamed_to = to;
    return SQLITE_OK;
}
