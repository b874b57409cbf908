/* Lua bindings for training data: loupe.tokenizer_train{...} (a byte-level BPE trainer,
 * backend/tokenizer/train.h) and loupe.data.load{...} -> loupe.Dataset with :batch(B, ctx)
 * -> inputs, targets (B x ctx tensors of token ids), :size(), :split(fraction),
 * :save(path [, format]), :seed(n) (backend/data/dataset.h). */
#ifndef LP_LUA_DATA_H
#define LP_LUA_DATA_H

#include <lua.h>

/* Adds loupe.tokenizer_train and loupe.data to the table on top of the stack (the global
 * `loupe`); leaves the stack as it found it. */
void lp_lua_open_data(lua_State *L);

#endif
