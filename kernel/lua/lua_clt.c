/* clt:encode(x), clt:forward(x): a cross-layer transcoder (loupe.Transcoders holding an
 * lp_clt; backend/dict/clt_ops.h) applied to every layer's MLP inputs at once. x is a
 * Tensor (n_layers, N, d_model) or a list of n_layers Tensors (N, d_model) (what an
 * activation stream over the blocks.L.mlp.hook_in gives); the result has the same form:
 * features (n_layers, N, d_transcoder), or predictions of every MLP output (n_layers, N,
 * d_model). */
#include <lauxlib.h>
#include <string.h>

#include "core/error.h"
#include "dict/clt_ops.h"
#include "lua_api.h"
#include "lua_dict.h"
#include "lua_tensor.h"

/* Pushes x at idx gathered into a new contiguous Tensor (L, N, d) and returns it; *list: x
 * was a list. */
static lp_tensor *push_inputs(lua_State *L, int idx, const lp_clt *c, int *N, int *list, const char *what)
{
    const int nl = c->n_layers, d = c->d_model;
    *list = lua_istable(L, idx);
    if (*list && (int)lua_rawlen(L, idx) != nl)
        luaL_error(L, "%s: expected a list of %d Tensors (one per layer), got %d", what, nl, (int)lua_rawlen(L, idx));
    int64_t n = -1;
    for (int l = 0; l < (*list ? nl : 1); l++) { /* shapes first: nothing allocated on a bad one */
        if (*list)
            lua_rawgeti(L, idx, l + 1);
        lp_tensor *x = lp_lua_check_tensor(L, *list ? -1 : idx);
        if (x->device != LP_DEVICE_CPU)
            luaL_error(L, "%s: the tensor is on a GPU; :cpu() it first", what);
        int ok = *list ? x->ndim == 2 && x->shape[1] == d : x->ndim == 3 && x->shape[0] == nl && x->shape[2] == d;
        if (!ok)
            luaL_error(L, *list ? "%s: layer %d: expected a Tensor (N, %d)" : "%s: expected a Tensor (%d, N, %d) or a "
                                                                              "list of %d Tensors (N, %d)",
                       what, *list ? l + 1 : nl, d, nl, d);
        int64_t m = x->shape[x->ndim - 2];
        if (n >= 0 && m != n)
            luaL_error(L, "%s: layer %d has %d rows, layer 1 %d", what, l + 1, (int)m, (int)n);
        n = m;
        if (*list)
            lua_pop(L, 1);
    }
    if (n < 1 || n > 1 << 28)
        luaL_error(L, "%s: %d rows (1..2^28)", what, (int)n);
    *N = (int)n;
    int64_t shape[3] = {nl, n, d};
    lp_tensor *out = lp_tensor_empty_for(what, 3, shape, LP_DEVICE_CPU);
    if (!out)
        lp_lua_backend_error(L, what);
    lp_lua_push_tensor(L, out);
    for (int l = 0; l < (*list ? nl : 1); l++) {
        if (*list)
            lua_rawgeti(L, idx, l + 1);
        lp_tensor *src = lp_tensor_contiguous(lp_lua_check_tensor(L, *list ? -1 : idx));
        if (!src)
            lp_lua_backend_error(L, what);
        memcpy(out->data + (size_t)l * n * d * (*list ? 1 : 0), src->data,
               (size_t)lp_tensor_numel(src) * sizeof(float));
        lp_tensor_free(src);
        if (*list)
            lua_pop(L, 1);
    }
    return out;
}

/* Pushes the result r (L, N, k) as it is, or as a list of L Tensors (N, k). */
static void push_out(lua_State *L, int ri, const lp_tensor *r, int list, const char *what)
{
    if (!list) {
        lua_pushvalue(L, ri);
        return;
    }
    lua_createtable(L, (int)r->shape[0], 0);
    for (int64_t l = 0; l < r->shape[0]; l++) {
        int64_t shape[2] = {r->shape[1], r->shape[2]};
        lp_tensor *t = lp_tensor_empty_for(what, 2, shape, LP_DEVICE_CPU);
        if (!t)
            lp_lua_backend_error(L, what);
        memcpy(t->data, r->data + l * shape[0] * shape[1], (size_t)(shape[0] * shape[1]) * sizeof(float));
        lp_lua_push_tensor(L, t);
        lua_rawseti(L, -2, l + 1);
    }
}

static int run(lua_State *L, int features, const char *what)
{
    lp_clt *c = lp_lua_check_clt(L, 1);
    int N, list;
    lp_tensor *x = push_inputs(L, 2, c, &N, &list, what);
    int64_t shape[3] = {c->n_layers, N, features ? c->d_tc : c->d_model};
    lp_tensor *r = lp_tensor_empty_for(what, 3, shape, LP_DEVICE_CPU);
    if (!r)
        return lp_lua_backend_error(L, what);
    lp_lua_push_tensor(L, r);
    int ri = lua_gettop(L);
    if (lp_clt_run(features ? r->data : NULL, features ? NULL : r->data, c, x->data, N) < 0)
        return lp_lua_backend_error(L, what);
    push_out(L, ri, r, list, what);
    return 1;
}

static int l_encode(lua_State *L) { return run(L, 1, "clt:encode"); }
static int l_forward(lua_State *L) { return run(L, 0, "clt:forward"); }

static const lp_lua_field TC_FIELDS[] = {
    {"kind", "string: transcoder_set or cross_layer_transcoder"},
    {"n_layers", "integer: the layers (#t too)"},
    {"d_model", "integer: the model's width"},
    {"d_transcoder", "integer: features per layer"},
    {"feature_input_hook", "string: the hook each layer reads (mlp.hook_in)"},
    {"feature_output_hook", "string: the hook each layer predicts (mlp.hook_out)"},
    {"history", "table of lists after loupe.sae.train{arch = \"clt\"}: step, tokens, loss, mse, sparsity, l0 (mean "
                "per layer), explained_variance (pooled over layers), dead"},
    {"layer_explained_variance", "list: after training, the last step's explained variance of each layer's MLP output"},
    {"layer_l0", "list: after training, the last step's active features per token of each layer"},
    {NULL, NULL}};

void lp_lua_open_clt(lua_State *L)
{
    luaL_getmetatable(L, LP_LUA_TRANSCODERS_MT);
    if (lua_getfield(L, -1, "__methods") != LUA_TTABLE)
        luaL_error(L, "lp_lua_open_clt: loupe.Transcoders is missing (open lua_dict first)");
    lp_lua_setfunc(L, -1, "encode", l_encode,
                   "clt:encode(x) -> features\nA cross-layer transcoder's features of every layer: x is a Tensor "
                   "(n_layers, N, d_model) of the layers' MLP inputs (blocks.L.mlp.hook_in), or a list of n_layers "
                   "Tensors (N, d_model); the result (n_layers, N, d_transcoder) in the same form.");
    lp_lua_setfunc(L, -1, "forward", l_forward,
                   "clt:forward(x) -> predictions\nA cross-layer transcoder's predictions of every layer's MLP output "
                   "(blocks.L.mlp.hook_out: the sum of the decoders of layers <= L, plus b_dec): x as for "
                   "clt:encode; the result (n_layers, N, d_model) in the same form.");
    lua_pop(L, 1);
    lp_lua_settype(L, lua_gettop(L),
                   "Transcoders: a per-layer transcoder set or a cross-layer transcoder (loupe.transcoders.load, "
                   "loupe.sae.train{arch = \"clt\"}); t:save(dir), t[l] (a set's layer), clt:encode(x), "
                   "clt:forward(x); m:run(prompt, {saes = {clt}}) splices a CLT in.",
                   TC_FIELDS);
    lua_pop(L, 1);
}
