/* Input history, persisted across kernel restarts: a JSON-lines file, one
 * {"session": S, "line": L, "input": "..."} per executed cell, appended as cells run.
 * Each kernel process is a new session (one more than the largest in the file).
 * Queries follow history_request: tail, range and search (glob patterns). */
#ifndef LP_HISTORY_H
#define LP_HISTORY_H

#include <jansson.h>

typedef struct lp_history lp_history;

/* Opens (creating directories as needed) the file at path; NULL path = default location:
 * $LOUPE_HISTORY_FILE, else ${XDG_DATA_HOME:-~/.local/share}/loupe/history.jsonl.
 * A missing or unwritable file gives an in-memory history (logged), never an error.
 * Corrupt lines are skipped. At most the newest `keep` entries are loaded. */
lp_history *lp_history_open(const char *path);
void lp_history_free(lp_history *h);
int lp_history_session(const lp_history *h);
/* Records input as line `line` of the current session. */
void lp_history_add(lp_history *h, int line, const char *input);

/* Each returns a new JSON array of [session, line, input] triples (or
 * [session, line, [input, null]] when output is set), oldest first. */
json_t *lp_history_tail(const lp_history *h, int n, int output);
/* session: 0 = current, negative = relative to current, positive = absolute.
 * Lines start..stop-1 (stop <= 0 means to the end). */
json_t *lp_history_range(const lp_history *h, int session, int start, int stop, int output);
/* Glob pattern (fnmatch, '*' and '?'); the newest n matches (n <= 0: all); unique drops
 * repeated inputs, keeping the newest. */
json_t *lp_history_search(const lp_history *h, const char *pattern, int n, int unique, int output);

#endif
