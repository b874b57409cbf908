/* Lua bindings of dictionaries' files (backend/dict/sae_io.h):
 *   loupe.sae.load(dir | "params.npz" [, {model = m | d_model = n, transcoder = bool}]) -> SAE
 *   sae:save(dir [, {model_name, dataset_path, context_size, prepend_bos}])
 *   loupe.transcoders.load(dir) -> Transcoders (a transcoder set or a CLT), t:save(dir)
 *   loupe.sae.random{...}, loupe.transcoders.random{...}: random weights, for tests only.
 * Objects: "loupe.SAE" holds one lp_sae*, "loupe.Transcoders" an lp_transcoder_set* or an
 * lp_clt*. Fields (cfg, d_in, d_sae, d_out, arch, k, hook_in, hook_out, layer, and copies
 * of the weights as tensors: W_enc, W_dec, b_enc, b_dec, threshold, W_skip) are read
 * through __index; methods live in the metatable's `__methods` table, where other binding
 * files add theirs (sae:encode, ...). Follows the contract in lua_api.h. */
#ifndef LP_LUA_DICT_H
#define LP_LUA_DICT_H

#include <lua.h>

#include "dict/sae.h"

#define LP_LUA_SAE_MT "loupe.SAE"
#define LP_LUA_TRANSCODERS_MT "loupe.Transcoders"
/* registry: a weak-keyed table SAE userdata -> {field = value}: fields other binding files
 * attach to one SAE (loupe.sae.train's `history`), read by sae.<field> after the built-in ones */
#define LP_LUA_SAE_EXTRA "loupe.sae_extra"
/* registry: {save = {fn, ...}, load = {fn, ...}}: functions other binding files add, called
 * as fn(sae, dir) after sae:save wrote the weights and after loupe.sae.load read them
 * (lua_sae_features.c keeps the harvest and the labels beside the weights this way); also
 * {set_save = ..., set_load = ...}: fn(transcoders, dir) after t:save / loupe.transcoders.load of
 * a per-layer set (each layer's harvest and labels beside the layer files) */
#define LP_LUA_SAE_FILE_HOOKS "loupe.sae_file_hooks"

/* Called with the `loupe` table on top of the stack; adds loupe.sae and loupe.transcoders
 * (or adds to them when they exist) and leaves the stack as it found it. */
void lp_lua_open_dict(lua_State *L);

/* Pushes s as a loupe.SAE (taking it; NULL raises lp_last_error()). */
void lp_lua_push_sae(lua_State *L, lp_sae *s);
/* The SAE at idx (borrowed), or a Lua error. */
lp_sae *lp_lua_check_sae(lua_State *L, int idx);
/* The loupe.Transcoders at idx (borrowed): *set or *clt (the other NULL), or a Lua error. */
void lp_lua_check_transcoders(lua_State *L, int idx, lp_transcoder_set **set, lp_clt **clt);

/* The per-layer transcoder set of the loupe.Transcoders at idx (borrowed), or NULL when idx is
 * not one (or holds a CLT, or was freed). */
lp_transcoder_set *lp_lua_test_transcoder_set(lua_State *L, int idx);
/* The cross-layer transcoder of the loupe.Transcoders at idx (borrowed), or NULL. */
lp_clt *lp_lua_test_clt(lua_State *L, int idx);
/* Pushes c as a loupe.Transcoders (taking it; NULL raises lp_last_error()); the CLT of the
 * Transcoders at idx (borrowed), or a Lua error (a transcoder set is not one). */
void lp_lua_push_clt(lua_State *L, lp_clt *c);
lp_clt *lp_lua_check_clt(lua_State *L, int idx);

/* Feature `feature` of layer `layer` of the transcoder set at idx: its label (tcs:label's) into
 * buf and 1 when the layer has a harvest or a label for it (given or saved), else 0 (buf
 * untouched). Leaves the stack as it was (lua_sae_features.c). */
int lp_lua_tcs_feature_label(lua_State *L, int idx, int layer, int feature, char *buf, size_t cap);

#endif
