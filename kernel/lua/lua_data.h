/* Lua bindings for training data: loupe.tokenizer_train{...} (a byte-level BPE trainer,
 * backend/tokenizer/train.h) and loupe.data.load{...} -> loupe.Dataset with :batch(B, ctx)
 * -> inputs, targets (B x ctx tensors of token ids), :size(), :split(fraction),
 * :save(path [, format]), :seed(n) (backend/data/dataset.h); loupe.data.repeated{...}: random
 * segments each followed by a copy of itself, for induction heads. */
#ifndef LP_LUA_DATA_H
#define LP_LUA_DATA_H

#include <lua.h>

#include "data/dataset.h"
#include "rng.h"

/* The dataset userdata at idx (raises when it is not one): its tokens and the seeded batch
 * generator that :batch uses (borrowed; they live as long as the userdata). */
lp_dataset *lp_lua_check_dataset(lua_State *L, int idx, lp_rng **g);

/* Adds loupe.tokenizer_train and loupe.data to the table on top of the stack (the global
 * `loupe`); leaves the stack as it found it. */
void lp_lua_open_data(lua_State *L);

#endif
