/* Lua bindings for tokenizers: loupe.tokenizer(folder) -> loupe.Tokenizer with
 * :encode(text [, {special = true}]) -> {ids}, :decode(ids) -> string, :tokens(text) ->
 * {display strings}, :token(id), :lookup(str), :vocab_size(), :bos(), :eos().
 * Token ids are the tokenizer's own (0-based), not Lua indices. */
#ifndef LP_LUA_TOKENIZER_H
#define LP_LUA_TOKENIZER_H

#include <lua.h>

#include "tokenizer/tokenizer.h"

/* Adds loupe.tokenizer to the table on top of the stack (the global `loupe`); leaves the
 * stack as it found it. */
void lp_lua_open_tokenizer(lua_State *L);

/* Pushes t as a loupe.Tokenizer, taking ownership (freed by __gc). */
void lp_lua_push_tokenizer(lua_State *L, lp_tokenizer *t);
/* The tokenizer at idx (borrowed), or a Lua error naming the argument. */
lp_tokenizer *lp_lua_check_tokenizer(lua_State *L, int idx);

#endif
