/* History: where the database lives, opening it (or the in-memory fallback), recording
 * entries and keeping the database under its size limit. Queries: history_query.c; the
 * one-time import of history.jsonl: history_import.c. */
#include "history.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "history_store.h"
#include "util.h"

#define DEFAULT_MAX_ENTRY ((size_t)1 << 20)
#define DEFAULT_MAX_BYTES ((size_t)256 << 20)
#define DEFAULT_BUSY_MS 2000

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS sessions (session INTEGER PRIMARY KEY AUTOINCREMENT, start TEXT);"
    "CREATE TABLE IF NOT EXISTS history (id INTEGER PRIMARY KEY, session INTEGER NOT NULL,"
    " line INTEGER NOT NULL, input TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS history_session_line ON history (session, line);"
    "PRAGMA user_version = 1;";

int lp_history_exec(sqlite3 *db, const char *sql) { return sqlite3_exec(db, sql, NULL, NULL, NULL); }

/* ---- where, and how much ------------------------------------------------------------------ */

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
    int n;
    if (xdg && *xdg)
        n = snprintf(buf, sizeof buf, "%s/loupe/history.sqlite", xdg);
    else if (home && *home)
        n = snprintf(buf, sizeof buf, "%s/.local/share/loupe/history.sqlite", home);
    else
        return NULL;
    return n > 0 && (size_t)n < sizeof buf ? strdup(buf) : NULL;
}

/* A byte count from the environment: "1048576", "512k", "1M", "2G". Anything else, or less
 * than min, is logged and gives dflt. */
static size_t env_size(const char *name, size_t dflt, size_t min)
{
    const char *e = getenv(name);
    if (!e || !*e)
        return dflt;
    char *end;
    double v = strtod(e, &end);
    switch (*end) {
    case 'k': case 'K': v *= 1024.0; end++; break;
    case 'm': case 'M': v *= 1024.0 * 1024; end++; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end || !(v >= (double)min) || v > 1e15) {
        lp_log("history: ignoring %s=%s (a size of at least %zu bytes, e.g. 1M)", name, e, min);
        return dflt;
    }
    return (size_t)v;
}

/* ---- recording ---------------------------------------------------------------------------- */

static int prepare(sqlite3 *db, sqlite3_stmt **st, const char *sql)
{
    return *st ? SQLITE_OK : sqlite3_prepare_v2(db, sql, -1, st, NULL);
}

static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int lp_history_insert(lp_history *h, int session, int line, const char *input, size_t len)
{
    char *cut = NULL;
    if (len > h->max_entry) { /* keep max_entry bytes, ending on a whole UTF-8 sequence */
        size_t keep = h->max_entry;
        while (keep > 0 && ((unsigned char)input[keep] & 0xC0) == 0x80)
            keep--;
        size_t cap = keep + sizeof HISTORY_TRUNCATED_MARK + 32;
        cut = malloc(cap);
        if (!cut)
            return SQLITE_NOMEM;
        memcpy(cut, input, keep);
        int m = snprintf(cut + keep, cap - keep, "%s%zu bytes]", HISTORY_TRUNCATED_MARK, len);
        input = cut;
        len = keep + (size_t)(m > 0 ? m : 0);
    }
    int rc = prepare(h->db, &h->add_session, "INSERT OR IGNORE INTO sessions (session) VALUES (?1)");
    if (rc == SQLITE_OK)
        rc = prepare(h->db, &h->add_entry, "INSERT INTO history (session, line, input) VALUES (?1, ?2, ?3)");
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(h->add_session, 1, session);
        rc = step_done(h->add_session);
    }
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(h->add_entry, 1, session);
        sqlite3_bind_int(h->add_entry, 2, line);
        sqlite3_bind_text64(h->add_entry, 3, input, len, SQLITE_STATIC, SQLITE_UTF8);
        rc = step_done(h->add_entry);
    }
    free(cut);
    return rc;
}

static int pragma_int(sqlite3 *db, const char *sql, sqlite3_int64 *out)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        *out = 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static int used_bytes(sqlite3 *db, sqlite3_int64 *out)
{
    sqlite3_int64 pages, freed, psize;
    int rc = pragma_int(db, "PRAGMA page_count", &pages);
    if (rc == SQLITE_OK)
        rc = pragma_int(db, "PRAGMA freelist_count", &freed);
    if (rc == SQLITE_OK)
        rc = pragma_int(db, "PRAGMA page_size", &psize);
    *out = rc == SQLITE_OK ? (pages - freed) * psize : 0;
    return rc;
}

static int drop_session(sqlite3 *db, sqlite3_int64 oldest, int current)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "DELETE FROM history WHERE session = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_int64(st, 1, oldest);
    rc = step_done(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_prepare_v2(db, "DELETE FROM sessions WHERE session <= ?1 AND session <> ?2", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_int64(st, 1, oldest);
    sqlite3_bind_int(st, 2, current);
    rc = step_done(st);
    sqlite3_finalize(st);
    return rc;
}

int lp_history_trim(lp_history *h)
{
    int dropped = 0, rc;
    for (;;) {
        sqlite3_int64 used, oldest;
        rc = used_bytes(h->db, &used);
        if (rc != SQLITE_OK || used <= (sqlite3_int64)h->max_bytes)
            break;
        char sql[96];
        snprintf(sql, sizeof sql, "SELECT min(session) FROM history WHERE session <> %d", h->session);
        rc = pragma_int(h->db, sql, &oldest);
        if (rc == SQLITE_OK && oldest > 0) {
            rc = drop_session(h->db, oldest, h->session);
        } else if (rc == SQLITE_OK && !h->path) { /* in memory: the session's oldest entries go */
            rc = lp_history_exec(h->db, "DELETE FROM history WHERE id = (SELECT min(id) FROM history)"
                                        " AND (SELECT count(*) FROM history) > 1");
            if (rc == SQLITE_OK && sqlite3_changes(h->db) == 0)
                break; /* only the newest entry is left */
        } else {
            break; /* on disk only the current session is left: it is kept whole */
        }
        if (rc != SQLITE_OK)
            break;
        dropped++;
    }
    if (rc == SQLITE_OK && dropped > 0 && h->path)
        rc = lp_history_exec(h->db, "PRAGMA incremental_vacuum");
    return rc;
}

/* ---- opening -------------------------------------------------------------------------------- */

static void close_db(lp_history *h)
{
    sqlite3_finalize(h->add_session);
    sqlite3_finalize(h->add_entry);
    h->add_session = h->add_entry = NULL;
    sqlite3_close(h->db);
    h->db = NULL;
}

/* history.jsonl in the database's folder. */
static char *legacy_path(const char *db_path)
{
    const char *slash = strrchr(db_path, '/');
    size_t dir = slash ? (size_t)(slash - db_path) + 1 : 0;
    char *p = malloc(dir + sizeof "history.jsonl");
    if (p) {
        memcpy(p, db_path, dir);
        memcpy(p + dir, "history.jsonl", sizeof "history.jsonl");
    }
    return p;
}

/* Opens the file, imports history.jsonl if there is one, and starts a new session. Returns an
 * SQLite result code; *why gets the reason of a failure (free it). */
static int open_file(lp_history *h, char **why)
{
    if (mkdirs(h->path) < 0) {
        *why = strdup(strerror(errno));
        return SQLITE_CANTOPEN;
    }
    int rc = sqlite3_open_v2(h->path, &h->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(h->db, h->busy_ms);
        /* auto_vacuum only takes effect before the first table: a new file shrinks when
         * sessions are dropped. The log is cut back to 4 MiB after a checkpoint. */
        rc = lp_history_exec(h->db, "PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL;"
                                    "PRAGMA synchronous = NORMAL; PRAGMA journal_size_limit = 4194304");
    }
    if (rc == SQLITE_OK)
        rc = lp_history_exec(h->db, "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK) {
        *why = strdup(h->db ? sqlite3_errmsg(h->db) : sqlite3_errstr(rc));
        close_db(h);
        return rc;
    }
    char *renamed = NULL, *legacy = legacy_path(h->path);
    rc = legacy ? lp_history_exec(h->db, SCHEMA) : SQLITE_NOMEM;
    if (rc == SQLITE_OK)
        rc = lp_history_import_jsonl(h, legacy, &renamed);
    if (rc == SQLITE_OK)
        rc = lp_history_exec(h->db, "INSERT INTO sessions (start) VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))");
    if (rc == SQLITE_OK) {
        h->session = (int)sqlite3_last_insert_rowid(h->db);
        rc = lp_history_trim(h);
    }
    if (rc == SQLITE_OK)
        rc = lp_history_exec(h->db, "COMMIT");
    if (rc != SQLITE_OK) {
        *why = strdup(sqlite3_errmsg(h->db));
        lp_history_exec(h->db, "ROLLBACK");
        if (renamed && legacy && rename(renamed, legacy) < 0)
            lp_log("history: cannot rename %s back to %s: %s", renamed, legacy, strerror(errno));
        close_db(h);
    }
    free(renamed);
    free(legacy);
    return rc;
}

static sqlite3_int64 max_session(const char *name, int flags)
{
    sqlite3 *db = NULL;
    sqlite3_int64 max = 0;
    if (sqlite3_open_v2(name, &db, flags, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 100);
        if (pragma_int(db, "SELECT max(session) FROM sessions", &max) != SQLITE_OK)
            max = 0;
    }
    sqlite3_close(db);
    return max;
}

/* The session after the newest in the file, read without writing (0 when unreadable). On a
 * read-only disk a WAL database opens only as immutable (it cannot make its -shm file); a
 * session number read so is a guess, which is all a memory history needs. */
static int next_session_readonly(const char *path)
{
    if (!path)
        return 0;
    sqlite3_int64 max = max_session(path, SQLITE_OPEN_READONLY);
    char *uri = max > 0 ? NULL : malloc(3 * strlen(path) + sizeof "file:?immutable=1");
    if (uri) {
        char *w = uri + sprintf(uri, "file:");
        for (const char *p = path; *p; p++)
            w += (*p == '%' || *p == '?' || *p == '#') ? sprintf(w, "%%%02X", (unsigned char)*p) : (*w = *p, 1);
        strcpy(w, "?immutable=1");
        max = max_session(uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI);
        free(uri);
    }
    return max > 0 && max < 0x7fffffff ? (int)max + 1 : 0;
}

/* The in-memory history: the same tables in an SQLite memory database. */
static void open_memory(lp_history *h)
{
    free(h->path);
    h->path = NULL;
    if (sqlite3_open(":memory:", &h->db) != SQLITE_OK || lp_history_exec(h->db, SCHEMA) != SQLITE_OK) {
        lp_log("history: cannot keep even an in-memory history (out of memory)");
        close_db(h);
        return;
    }
    char sql[96];
    snprintf(sql, sizeof sql, "INSERT INTO sessions (session, start) VALUES (%d, NULL)", h->session);
    lp_history_exec(h->db, sql);
}

lp_history *lp_history_open(const char *path, const lp_history_opts *opts)
{
    lp_history *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    lp_history_opts o = opts ? *opts : (lp_history_opts){0};
    h->max_entry = o.max_entry ? o.max_entry : env_size("LOUPE_HISTORY_MAX_ENTRY", DEFAULT_MAX_ENTRY, 1024);
    h->max_bytes = o.max_bytes ? o.max_bytes : env_size("LOUPE_HISTORY_MAX_BYTES", DEFAULT_MAX_BYTES, 64 << 10);
    h->busy_ms = o.busy_ms > 0 ? o.busy_ms : DEFAULT_BUSY_MS;
    h->path = path ? strdup(path) : default_path();
    char *why = NULL;
    if (h->path && open_file(h, &why) == SQLITE_OK)
        return h;
    int next = next_session_readonly(h->path);
    h->session = next > 0 ? next : 1;
    lp_log("history: %s: %s; keeping this session's history in memory", h->path ? h->path : "(no HOME)",
           why ? why : "no location");
    free(why);
    open_memory(h);
    return h;
}

void lp_history_free(lp_history *h)
{
    if (!h)
        return;
    close_db(h);
    free(h->path);
    free(h);
}

int lp_history_session(const lp_history *h) { return h->session; }

int lp_history_persistent(const lp_history *h) { return h->path != NULL && h->db != NULL; }

int lp_history_add(lp_history *h, int line, const char *input)
{
    if (!h->db)
        return -1;
    int rc = lp_history_exec(h->db, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK)
        rc = lp_history_insert(h, h->session, line, input, strlen(input));
    if (rc == SQLITE_OK)
        rc = lp_history_trim(h);
    if (rc == SQLITE_OK)
        rc = lp_history_exec(h->db, "COMMIT");
    if (rc == SQLITE_OK)
        return 0;
    char why[256];
    snprintf(why, sizeof why, "%s", sqlite3_errmsg(h->db));
    lp_history_exec(h->db, "ROLLBACK");
    int primary = rc & 0xff;
    if (!h->path || primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
        if (!h->warned)
            lp_log("history: line %d not recorded: %s%s", line, why, h->path ? " (later lines are tried again)" : "");
        h->warned = 1;
        return -1;
    }
    lp_log("history: %s: %s; keeping the rest of this session's history in memory", h->path, why);
    close_db(h);
    open_memory(h);
    return h->db ? lp_history_add(h, line, input) : -1;
}
