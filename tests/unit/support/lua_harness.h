/* The test harness of the Lua bindings (kernel/lua/lua_*.c) run without the kernel: a bare
 * Lua state with the `loupe` module parts a test needs, stand-ins for the kernel's helpers
 * of kernel/lua/lua_api.h (lp_lua_setfunc, lp_lua_setdoc, lp_lua_backend_error,
 * lp_lua_publish), and helpers that run a chunk and read its result or error. Built once as
 * the library loupe_test_lua; a test links it instead of loupe_kernel (it defines the same
 * lp_lua_* symbols as kernel/lua/lua_base.c).
 *
 *   static lua_State *L;
 *   static void setup(void) { L = t_lua_new(T_PUBLISH_REFUSE, lp_lua_open_tensor); }
 *   static void teardown(void) { t_lua_close(L); }
 *   Test(lua_tensor, adds) { t_lua_run(L, "assert((loupe.ones(2) + 1):sum() == 4)"); }
 *
 * Failures are Criterion assertions that quote Lua's message and the chunk. */
#ifndef LP_TEST_LUA_HARNESS_H
#define LP_TEST_LUA_HARNESS_H

#include <jansson.h>
#include <lua.h>

/* What the stand-in lp_lua_publish does with a bundle (one mode per process). */
enum {
    /* Raises "publish is not available in tests": bindings whose progress display must
     * switch itself off rather than fail the work (training, data) are tested so. */
    T_PUBLISH_REFUSE,
    /* Checks the bundle (an object with text/plain, or a Lua error), counts it in t_pub and
     * appends {id =, update =, plain =, html =} to the global Lua table `published`
     * (created on first use; a test may reset it with `published = {}`). */
    T_PUBLISH_RECORD,
};

/* What T_PUBLISH_RECORD has seen since t_lua_new. */
typedef struct t_publish_log {
    int count;
    int last_update;      /* -1 before the first publish */
    char last_id[64];     /* "" when published without a display id */
    json_t *last_bundle;  /* the last bundle (owned by the harness), or NULL */
} t_publish_log;
extern t_publish_log t_pub;

typedef void (*t_lua_opener)(lua_State *L);

/* A new Lua state with the standard libraries and a global table `loupe`, filled by each
 * lp_lua_open_<part> given, in order (each must leave the stack as it found it: asserted).
 * Resets t_pub and sets the publish mode.
 *   L = t_lua_new(T_PUBLISH_REFUSE, lp_lua_open_tensor, lp_lua_open_model); */
#define t_lua_new(publish, ...) t_lua_new_list((publish), (const t_lua_opener[]){__VA_ARGS__, NULL})
lua_State *t_lua_new_list(int publish, const t_lua_opener *openers);
/* Closes the state (every __gc runs: leaks show under the sanitizer build) and frees what
 * t_pub holds. NULL is a no-op. */
void t_lua_close(lua_State *L);

/* Runs a chunk that must succeed; its results are dropped. */
void t_lua_run(lua_State *L, const char *code);
/* Runs a chunk that must return a string (numbers are converted); returns it, valid until
 * the next t_lua_string or t_lua_fails on L. */
const char *t_lua_string(lua_State *L, const char *code);
/* Runs a chunk that must fail; returns the error message, valid until the next
 * t_lua_string or t_lua_fails on L. */
const char *t_lua_fails(lua_State *L, const char *code);

/* Sets the global `name` to the string value (a folder the test made, say). */
void t_lua_set_string(lua_State *L, const char *name, const char *value);
/* The docstring the bindings recorded for the value the chunk returns, or NULL. */
const char *t_lua_doc(lua_State *L, const char *code);

#endif
