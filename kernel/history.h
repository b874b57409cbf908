/* Input history, persisted across kernel restarts in an SQLite database that every kernel of
 * a user shares (WAL mode, so several kernels append at once):
 *   sessions(session INTEGER PRIMARY KEY AUTOINCREMENT, start TEXT)
 *   history(id INTEGER PRIMARY KEY, session, line, input), indexed on (session, line)
 * Each kernel process is a new session, numbered by the database. Opening reads nothing but
 * that number: tail, range and search are queries (tail by id, range by the (session, line)
 * index, search by GLOB newest first, stopping at n matches).
 *
 * Limits: an input longer than max_entry bytes is stored cut (at a UTF-8 boundary) and
 * followed by a marker line, HISTORY_TRUNCATED_MARK; when the database holds more than
 * max_bytes, its oldest sessions are dropped (never the current one) and the file shrinks.
 *
 * A history.jsonl beside the database (the format before SQLite: one
 * {"session": S, "line": L, "input": "..."} per line) is imported once, in the transaction
 * that opens the first session after it, and renamed history.jsonl.imported.
 *
 * A database that cannot be created, opened or written (locked past busy_ms, corrupt, on a
 * read-only disk) gives an in-memory history for this session, said once in the log; never
 * an error. Only the main thread may use an lp_history. */
#ifndef LP_HISTORY_H
#define LP_HISTORY_H

#include <jansson.h>
#include <stddef.h>

/* What follows the kept part of a truncated input (then the input's full size in bytes, "]"). */
#define HISTORY_TRUNCATED_MARK "\n-- [loupe history: input truncated; it had "

typedef struct lp_history lp_history;

typedef struct lp_history_opts {
    size_t max_entry; /* bytes of one input kept; 0 = $LOUPE_HISTORY_MAX_ENTRY, else 1 MiB */
    size_t max_bytes; /* size of the database; 0 = $LOUPE_HISTORY_MAX_BYTES, else 256 MiB */
    int busy_ms;      /* wait for another kernel's lock; 0 = 2000 ms */
} lp_history_opts;

/* Opens the database at path (creating it and its folders as needed); NULL path = default:
 * $LOUPE_HISTORY_FILE, else ${XDG_DATA_HOME:-~/.local/share}/loupe/history.sqlite.
 * opts NULL = every default. Never NULL except when out of memory. Free with lp_history_free. */
lp_history *lp_history_open(const char *path, const lp_history_opts *opts);
void lp_history_free(lp_history *h);
int lp_history_session(const lp_history *h);
/* 1 when entries go to the database, 0 when they stay in memory. */
int lp_history_persistent(const lp_history *h);
/* Records input as line `line` of the current session. Returns 0, or -1 when it could not be
 * recorded (logged once per kernel; a database that fails other than by a lock is replaced
 * by the in-memory history for the rest of the session). */
int lp_history_add(lp_history *h, int line, const char *input);

/* Each returns a new JSON array of [session, line, input] triples (or
 * [session, line, [input, null]] when output is set), oldest first; NULL with
 * lp_last_error() set when the database fails (a page found corrupt, say). */
json_t *lp_history_tail(lp_history *h, int n, int output); /* n <= 0: all */
/* session: 0 = current, negative = relative to current, positive = absolute.
 * Lines start..stop-1 (stop <= 0 means to the end). */
json_t *lp_history_range(lp_history *h, int session, int start, int stop, int output);
/* SQLite GLOB pattern ('*', '?', '[...]'; case-sensitive; NULL or "" = '*'); the newest n
 * matches (n <= 0: all); unique keeps only the newest entry of each distinct input. */
json_t *lp_history_search(lp_history *h, const char *pattern, int n, int unique, int output);

#endif
