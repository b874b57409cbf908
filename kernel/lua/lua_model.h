/* Lua bindings for models (backend/model): loupe.load, the loupe.Model and loupe.Run
 * userdata, and the hook constructors loupe.ablate, loupe.patch, loupe.steer.
 *
 *   m = loupe.load("models/gpt2")                 -- config.json + safetensors (+ tokenizer)
 *   r = m:run("The capital of France is")         -- text, {ids}, {{ids}, {ids}} or a Tensor
 *   r = m:run(ids, {cache = {"blocks.0.hook_resid_post"},
 *                   hooks = {["blocks.0.attn.hook_z"] = loupe.ablate{head = 3}  -- heads count from 0}})
 *   r.logits, r["blocks.0.hook_resid_post"], r:top(5)
 *
 * Conventions: token ids are the model's (0-based); heads and positions in hook specs are
 * 1-based like every index in Lua; layer numbers in hook names are TransformerLens' (0-based).
 * Follows the contract in lua_api.h. */
#ifndef LP_LUA_MODEL_H
#define LP_LUA_MODEL_H

#include <lua.h>

/* Adds load, ablate, patch, steer to the table on top of the stack (the global `loupe`);
 * leaves the stack as it found it. */
void lp_lua_open_model(lua_State *L);

#endif
