/* The cell language: one Lua 5.4 state per kernel, with the `loupe` module preloaded.
 * The interpreter never touches a socket: it talks to the outside world through lp_io
 * (the kernel publishes on iopub; `loupe run` prints to the terminal), as xeus separates
 * its interpreter from its server. */
#ifndef LP_INTERP_H
#define LP_INTERP_H

#include <jansson.h>
#include <lua.h>
#include <stddef.h>

#include "core/buf.h"

typedef struct lp_io {
    /* which: 1 stdout, 2 stderr. */
    void (*write)(void *ud, int which, const char *s, size_t n);
    /* bundle stolen. display_id may be NULL; update selects update_display_data. */
    void (*display)(void *ud, json_t *bundle, const char *display_id, int update);
    void (*clear)(void *ud, int wait);
    /* Returns 0 with the line in out, or -1 with lp_last_error() set. */
    int (*input)(void *ud, const char *prompt, int password, lp_buf *out);
    /* msg_type: comm_open, comm_msg or comm_close; content stolen. */
    void (*comm)(void *ud, const char *msg_type, json_t *content);
    /* Text for the pager (help()): bundle stolen. May be NULL: then it is displayed. */
    void (*page)(void *ud, json_t *bundle);
    void *ud;
} lp_io;

typedef struct lp_interp lp_interp;

/* The name of an error (ename), told by how it was raised, never by its text's wording:
 *   SyntaxError        the cell does not compile
 *   MemoryError        Lua's values reached their limit (LUA_ERRMEM), or a backend error with
 *                      code LP_ERR_NOMEM (host or GPU memory)
 *   KeyboardInterrupt  the interrupt flag is up, or LP_ERR_INTERRUPTED
 *   OSError            LP_ERR_IO: a file or folder could not be opened, read or written
 *   ValueError         LP_ERR_FORMAT: a corrupt or unsupported file (a bad safetensors header,
 *                      config.json, tokenizer or token file), as Python's parsers name it
 *   RuntimeError       LP_ERR_DEVICE (CUDA, cuBLAS, no GPU) and LP_ERR_INTERNAL, as PyTorch
 *                      names CUDA failures
 *   RecursionError     Lua's own "stack overflow" (the one error told by its text: Lua gives no
 *                      other sign of it)
 *   LuaError           any other error: error(...) in a cell, a binding's argument check, and a
 *                      backend error with LP_ERR_INPUT (a bad argument, shape or name: the
 *                      backend's default code), which is the same kind of mistake whichever
 *                      layer caught it
 * A backend code reaches the interpreter through lp_lua_backend_error / lp_lua_raise
 * (lua/lua_api.h). */
typedef struct lp_exec_result {
    int ok;              /* 1 = success */
    json_t *result;      /* the displayed value as a MIME bundle, or NULL (owned) */
    char ename[64];
    char *evalue;        /* owned, on error */
    json_t *traceback;   /* owned array of strings, on error */
} lp_exec_result;

/* Creates the Lua state. memory_limit 0 = LOUPE_LUA_MEMORY_LIMIT or half the RAM. */
lp_interp *lp_interp_new(const lp_io *io, size_t memory_limit);
void lp_interp_free(lp_interp *I);
lua_State *lp_interp_lua(lp_interp *I);
lp_interp *lp_interp_from_lua(lua_State *L);
const lp_io *lp_interp_io(lp_interp *I);

/* Runs a cell. count names the chunk ("In [count]") for error messages; want_result asks
 * for the value of the last expression. Fills res (caller calls lp_exec_result_clear). */
void lp_interp_execute(lp_interp *I, const char *code, int count, int want_result, lp_exec_result *res);
void lp_exec_result_clear(lp_exec_result *res);
/* user_expressions: a new JSON object name -> {status, data, metadata} or error fields. */
json_t *lp_interp_user_expressions(lp_interp *I, json_t *exprs);

/* is_complete: "complete", "incomplete" (indent set, owned), "invalid". */
const char *lp_interp_is_complete(lp_interp *I, const char *code, char **indent);

/* Completion at byte offset pos: a new JSON array of matches; *start / *end are byte
 * offsets of the replaced text; *meta (new) carries types for JupyterLab. */
json_t *lp_interp_complete(lp_interp *I, const char *code, size_t pos, size_t *start, size_t *end, json_t **meta);
/* Inspection at byte offset pos: a new MIME bundle, or NULL when nothing is found. */
json_t *lp_interp_inspect(lp_interp *I, const char *code, size_t pos, int detail);

/* Comms opened by the frontend: return 0 when the target exists (handler ran), -1 if not. */
int lp_interp_comm_open(lp_interp *I, json_t *content);
void lp_interp_comm_msg(lp_interp *I, json_t *content);
void lp_interp_comm_close(lp_interp *I, json_t *content);
/* A new object {comm_id: {target_name}} of open comms, filtered by target when not NULL. */
json_t *lp_interp_comm_info(lp_interp *I, const char *target);

/* ---- shared between the interp modules (kernel/interp*.c, repr.c, complete.c, lua_*.c) */

/* The MIME bundle for the values at stack indices [first, first+n). New reference. */
json_t *lp_repr_bundle(lua_State *L, int first, int n);
/* Appends the readable text form of the value at idx (tables pretty-printed). */
void lp_repr_text(lua_State *L, int idx, lp_buf *out);
/* The docstring recorded for the value at idx, or NULL (borrowed from the Lua state). */
const char *lp_doc_lookup(lua_State *L, int idx);
/* Converts between JSON and Lua values. lp_lua_push_json pushes one value;
 * lp_lua_to_json returns a new reference (tables with 1..n keys become arrays). */
void lp_lua_push_json(lua_State *L, json_t *v);
json_t *lp_lua_to_json(lua_State *L, int idx);
/* Calls the loaders of every binding module: base, tensor, plot, ... */
void lp_lua_open_all(lua_State *L);
/* Runs fn(L, arg) in protected mode, so that a Lua error in the kernel's own work
 * (completion, comms: out of memory, a stack overflow) is logged instead of aborting.
 * Returns 0, or -1 when fn raised an error. */
int lp_interp_protect(lp_interp *I, void (*fn)(lua_State *L, void *arg), void *arg);
/* Run Lua code from the kernel (not the user): the memory reserve applies. */
void lp_interp_set_user_mode(lp_interp *I, int on);

#endif
