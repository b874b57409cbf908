/* Lua bindings for training (backend/train/train.h): loupe.model{...} makes a model of a
 * given shape with random weights; loupe.train{...} trains one in place with a live loss
 * curve and a progress bar, and can resume after an interrupt. Follows lua_api.h. */
#ifndef LP_LUA_TRAIN_H
#define LP_LUA_TRAIN_H

#include <lua.h>

/* Adds loupe.model and loupe.train to the table on top of the stack (the global `loupe`);
 * leaves the stack as it found it. */
void lp_lua_open_train(lua_State *L);

#endif
