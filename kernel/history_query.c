/* History queries (history_request's tail, range and search) as SQL, rows to JSON. */
#include <sqlite3.h>

#include "core/error.h"
#include "history.h"
#include "history_store.h"

/* The parameters of a query: ?1.. the integers, then the text when not NULL. */
typedef struct args {
    sqlite3_int64 i[3];
    int ni;
    const char *text; /* bound after the integers */
} args;

/* Runs sql, whose rows are (session, line, input) oldest first, into a new JSON array. */
static json_t *query(lp_history *h, const char *sql, const args *a, int output)
{
    json_t *out = json_array();
    if (!out) {
        lp_set_error("history: out of memory");
        return NULL;
    }
    if (!h->db)
        return out; /* not even an in-memory history: nothing recorded */
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(h->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        lp_set_error("history: %s", sqlite3_errmsg(h->db));
        json_decref(out);
        return NULL;
    }
    int k = 1;
    for (int i = 0; i < a->ni; i++)
        sqlite3_bind_int64(st, k++, a->i[i]);
    if (a->text)
        sqlite3_bind_text(st, k, a->text, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *in = (const char *)sqlite3_column_text(st, 2);
        json_t *s = json_stringn(in ? in : "", in ? (size_t)sqlite3_column_bytes(st, 2) : 0);
        if (!s)
            continue; /* not UTF-8: cannot be in a reply (inputs come from JSON, so never) */
        json_t *item = output ? json_pack("[I, I, [o, n]]", sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), s)
                              : json_pack("[I, I, o]", sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), s);
        if (!item || json_array_append_new(out, item) < 0) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    if (rc != SQLITE_DONE) {
        lp_set_error("history: %s", rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(h->db));
        json_decref(out);
        out = NULL;
    }
    sqlite3_finalize(st);
    return out;
}

json_t *lp_history_tail(lp_history *h, int n, int output)
{
    args a = {{n > 0 ? n : -1}, 1, NULL};
    return query(h,
                 "SELECT session, line, input FROM"
                 " (SELECT id, session, line, input FROM history ORDER BY id DESC LIMIT ?1) ORDER BY id",
                 &a, output);
}

json_t *lp_history_range(lp_history *h, int session, int start, int stop, int output)
{
    sqlite3_int64 s = session > 0 ? session : (sqlite3_int64)h->session + session;
    args a = {{s, start, stop > 0 ? stop : (sqlite3_int64)1 << 62}, 3, NULL};
    return query(h,
                 "SELECT session, line, input FROM history WHERE session = ?1 AND line >= ?2 AND line < ?3"
                 " ORDER BY line, id",
                 &a, output);
}

json_t *lp_history_search(lp_history *h, const char *pattern, int n, int unique, int output)
{
    args a = {{n > 0 ? n : -1}, 1, pattern && *pattern ? pattern : "*"};
    if (unique) /* max(id) makes session and line those of the newest row of each input */
        return query(h,
                     "SELECT session, line, input FROM"
                     " (SELECT max(id) AS id, session, line, input FROM history WHERE input GLOB ?2"
                     "  GROUP BY input ORDER BY id DESC LIMIT ?1) ORDER BY id",
                     &a, output);
    return query(h,
                 "SELECT session, line, input FROM"
                 " (SELECT id, session, line, input FROM history WHERE input GLOB ?2 ORDER BY id DESC LIMIT ?1)"
                 " ORDER BY id",
                 &a, output);
}
