/* Lua bindings for tensors: loupe.Tensor userdata (shape, indexing, slicing, arithmetic,
 * products, reductions, top-k, devices, a torch-like text form) and the constructors
 * loupe.tensor, zeros, ones, rand, randn, arange, manual_seed, set_device, device.
 * Indices and dims are 1-based in Lua; slices include both ends (like string.sub). */
#ifndef LP_LUA_TENSOR_H
#define LP_LUA_TENSOR_H

#include <lua.h>

#include "tensor.h"

/* Adds the tensor functions to the table on top of the stack (the global `loupe`); leaves
 * the stack as it found it. */
void lp_lua_open_tensor(lua_State *L);

/* Pushes t as a loupe.Tensor, taking ownership of the header (it is freed by __gc). When t is
 * NULL, raises lp_last_error() as a Lua error instead. */
void lp_lua_push_tensor(lua_State *L, lp_tensor *t);
/* The tensor at idx (borrowed), or a Lua error naming the argument. */
lp_tensor *lp_lua_check_tensor(lua_State *L, int idx);

#endif
