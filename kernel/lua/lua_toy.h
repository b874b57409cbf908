/* Lua bindings of the toy models of superposition (backend/toy/superposition.h):
 * loupe.toy.superposition{...} trains a sparsity sweep with a progress bar and a live loss
 * plot and returns a loupe.ToyModel (methods train, wtw, geometry, norms, superposition,
 * dimensionality, dims_per_feature, dims_plot, weights, bias, loss); its __display shows
 * W^T W, the bias and the feature norms coloured by superposition for every instance.
 * Follows the contract in lua_api.h. */
#ifndef LP_LUA_TOY_H
#define LP_LUA_TOY_H

#include <lua.h>

/* Called with the `loupe` table on top of the stack; adds loupe.toy and leaves the stack as
 * it found it. */
void lp_lua_open_toy(lua_State *L);

#endif
