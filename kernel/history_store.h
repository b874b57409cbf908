/* Inside the history module (history.c, history_query.c, history_import.c): the handle and
 * the statements shared by its files. Not for other modules: they use history.h. */
#ifndef LP_HISTORY_STORE_H
#define LP_HISTORY_STORE_H

#include <sqlite3.h>

#include "history.h"

struct lp_history {
    sqlite3 *db;   /* the database, or an in-memory one (path NULL); NULL if even that failed */
    char *path;    /* the database file; NULL = in memory */
    int session;
    size_t max_entry, max_bytes;
    int busy_ms;
    int warned;    /* a failure to record was logged */
    sqlite3_stmt *add_session, *add_entry; /* prepared at the first insert */
};

/* Inserts one entry (cut to max_entry, then the marker) and its session's row if missing, in
 * the caller's transaction. Returns an SQLite result code. */
int lp_history_insert(lp_history *h, int session, int line, const char *input, size_t len);

/* Drops the oldest sessions other than the current one while the database holds more than
 * max_bytes (in memory, where there is no other, the oldest entries but the newest), in the
 * caller's transaction. Returns an SQLite result code. */
int lp_history_trim(lp_history *h);

/* Imports the JSON-lines history at jsonl into the caller's transaction and renames the file
 * to <jsonl>.imported (*renamed_to gets that name, to be undone if the transaction fails;
 * free it). A missing file imports nothing. Returns an SQLite result code. */
int lp_history_import_jsonl(lp_history *h, const char *jsonl, char **renamed_to);

/* Runs sql (no rows wanted); an SQLite result code. */
int lp_history_exec(sqlite3 *db, const char *sql);

#endif
