/* Private to kernel/lua/lua_model.c and kernel/lua/lua_run.c: the userdata behind loupe.Model and
 * loupe.Run. */
#ifndef LP_LUA_MODEL_IMPL_H
#define LP_LUA_MODEL_IMPL_H

#include <lauxlib.h>
#include <lua.h>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

#define MODEL_MT "loupe.Model"
#define RUN_MT "loupe.Run"
#define TOPK_MT "loupe.TopK"

typedef struct {
    lp_model *m;
    lp_tokenizer *tok;  /* NULL when the folder has none that loads */
    char tokerr[512];   /* why not */
} model_ud;

typedef struct {
    lp_run run;
    int B, T;
    int32_t *tokens; /* B*T */
} run_ud;

static inline model_ud *check_model(lua_State *L, int idx)
{
    model_ud *u = luaL_checkudata(L, idx, MODEL_MT);
    if (!u->m)
        luaL_error(L, "the model has been freed");
    return u;
}

static inline run_ud *check_run(lua_State *L, int idx) { return luaL_checkudata(L, idx, RUN_MT); }

/* The tokens of the argument at idx (text, ids, a batch of ids, or a Tensor) into a buffer
 * owned by a userdata left on the stack; raises on bad input. */
int32_t *lp_lua_model_tokens(lua_State *L, model_ud *u, int idx, int *B, int *T);
/* m:generate (lua_generate.c) and m:head_scores (lua_scores.c). */
int lp_lua_model_generate(lua_State *L);
int lp_lua_model_head_scores(lua_State *L);

/* Creates the metatables of loupe.Run and its top-k table (lua_run.c). */
void lp_lua_open_run(lua_State *L);

#endif
