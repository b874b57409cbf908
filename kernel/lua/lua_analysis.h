/* Lua bindings of the TransformerLens-style analyses (backend/model/analysis.h, patch.h):
 *
 *   r:dla{token = " Paris", baseline_token = " Rome", pos = -1}   -- direct logit attribution
 *   m:composition{kind = "k"}                                     -- Q/K/V composition scores
 *   m:patch_sweep{clean = "...", corrupt = "...", hook = "resid_pre",
 *                 metric = {token = " Paris", baseline = " Rome"}}  -- activation patching sweep
 *
 * (m:head_scores, with previous-token, induction and prefix-matching scores, is in
 * lua_scores.c.) Each returns a figure (loupe.RunFigure: a rich display and a text/plain
 * summary) that also holds the numbers. Follows the contract in lua_api.h. */
#ifndef LP_LUA_ANALYSIS_H
#define LP_LUA_ANALYSIS_H

#include <jansson.h>
#include <lua.h>

#include "lua_model_impl.h"

/* Adds dla to the Run methods and composition, patch_sweep to the Model methods (the
 * "__methods" tables of the loupe.Run and loupe.Model metatables, which lp_lua_open_model
 * must have made first). Called with the global `loupe` on top; leaves the stack as it was. */
void lp_lua_open_analysis(lua_State *L);

/* Private to lua_analysis.c and lua_patch.c. */
/* The token id of the value at idx: an id, or a string that is one token (as the vocabulary
 * writes it, "ĠParis", or as text, " Paris"); raises "<what>: ..." otherwise. */
int32_t lp_lua_analysis_token(lua_State *L, model_ud *u, int idx, const char *what);
/* A token's display string, or "#id" (into buf) without a tokenizer. */
const char *lp_lua_analysis_token_str(model_ud *u, int32_t id, char *buf, size_t cap);
/* (lua_run.c) The token as every display shows it (display/text.h's lp_token_show: "␣in", "\n"), in buf
 * (cut on a code point boundary to cap - 1 bytes); returns buf. */
const char *lp_lua_token_show(model_ud *u, int32_t id, char *buf, size_t cap);
/* Pushes a figure table {bundle = {mime = text}} with the loupe.RunFigure metatable; the
 * bundle is stolen. Raises lp_last_error() (prefixed by what) when bundle is NULL. */
void lp_lua_analysis_figure(lua_State *L, json_t *bundle, const char *what);
int lp_lua_model_patch_sweep(lua_State *L);

#endif
