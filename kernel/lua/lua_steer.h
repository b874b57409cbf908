/* Interventions on dictionary features from Lua (lua_steer.c): m:run's and m:generate's
 * `features` / `steer` / `set`, m:intervene (backend/dict/intervene.h) and loupe.compare.
 * Positions count from 1 (as r.tokens and loupe.patch's pos), layers and features from 0 (as
 * the hook names and the dictionaries' indices). */
#ifndef LP_LUA_STEER_H
#define LP_LUA_STEER_H

#include <lua.h>

#include "dict/intervene.h"
#include "dict/splice.h"

/* opts.saes and opts.transcoders (either a dictionary or a list of them) into so, the
 * dictionaries kept alive on the stack. Raises on bad input. */
void lp_lua_read_dicts(lua_State *L, int opts, lp_splice_opts *so);

/* opts.features ({sae = s [, layer = l], feature = i, set = v | add = v | ablate = true
 * [, pos = p]}), opts.steer ({sae, feature, scale [, pos = p, layer = l]}) and, with
 * opts.transcoders, opts.set ({layer, pos, feature, value}): one callback hook each on the
 * spliced dictionary's <hook>.hook_sae_acts_post, appended to o's hooks (a new array, kept
 * on the stack with everything it points to). T: the prompt's length (pos in 1..T); from:
 * positions >= from (0-based) are edited too (generated tokens; INT_MAX for none). When
 * there are edits and opts.error_term is nil, so->error_term becomes 1. Returns the hooks'
 * states (their offsets move during generation) and their number in *n (0: none, and NULL).
 * Raises on bad input: a dictionary that is not spliced, a feature, layer or position out of
 * range. */
lp_feature_hook *lp_lua_read_features(lua_State *L, int opts, int T, int from, lp_splice_opts *so, lp_run_opts *o,
                                      int *n);

/* Adds m:intervene and loupe.compare; the `loupe` table on top (after lp_lua_open_model). */
void lp_lua_open_steer(lua_State *L);

#endif
