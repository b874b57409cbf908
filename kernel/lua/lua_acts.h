/* Lua binding of the activation stream (backend/dict/activations.h):
 *
 *   s = loupe.activations{model = m, hook = "blocks.0.hook_resid_post", data = ds, ctx = 64,
 *                         batch = 4096, buffer = 16, seed = 1, normalize = false}
 *   x = s:next()                     -- batch x d Tensor; with hooks = {a, b}: one per hook
 *   s.d, s.hooks, s.tokens_seen, s.scale, s.batch, s.epoch
 *
 * Follows the contract in lua_api.h. */
#ifndef LP_LUA_ACTS_H
#define LP_LUA_ACTS_H

#include <lua.h>

#include "dict/activations.h"

/* The stream of model runs at idx (borrowed, alive as long as the userdata), or a Lua error
 * (not a stream, freed, or shards read back). */
lp_act_stream *lp_lua_check_act_stream(lua_State *L, int idx);

/* Adds loupe.activations to the table on top of the stack (the global `loupe`). */
void lp_lua_open_acts(lua_State *L);

#endif
