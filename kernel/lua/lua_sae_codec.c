/* sae:encode(x), sae:decode(f [, x]), sae:forward(x): an SAE or transcoder applied to a
 * Tensor (backend/dict/sae_ops.h, inference: batchtopk and matryoshka through their
 * threshold). Inputs are raw activations: an SAE trained with normalisation (sae.scale != 1)
 * reads scale * x and its outputs are divided by scale, as its saved (folded) weights do. */
#include <lauxlib.h>
#include <string.h>

#include "core/error.h"
#include "dict/sae_ops.h"
#include "lua_api.h"
#include "lua_dict.h"
#include "lua_tensor.h"

/* Pushes x (N, d) or (d) at idx as a new contiguous CPU Tensor (N, d) times `scale`, which it
 * returns (owned by Lua, so that a later error frees it); *N rows, *vec for a vector. */
static lp_tensor *push_rows(lua_State *L, int idx, int d, float scale, int *N, int *vec, const char *what)
{
    lp_tensor *x = lp_lua_check_tensor(L, idx);
    if (x->device != LP_DEVICE_CPU)
        luaL_error(L, "%s: the tensor is on a GPU; :cpu() it first", what);
    if (!(x->ndim == 1 && x->shape[0] == d) && !(x->ndim == 2 && x->shape[1] == d))
        luaL_error(L, "%s: expected a Tensor (N, %d) or (%d), got %d dimension(s) of last size %d", what, d, d,
                   x->ndim, x->ndim ? (int)x->shape[x->ndim - 1] : 0);
    *vec = x->ndim == 1;
    int64_t n = *vec ? 1 : x->shape[0];
    if (n < 1 || n > 1 << 30)
        luaL_error(L, "%s: %d rows (1..2^30)", what, (int)n);
    *N = (int)n;
    lp_tensor *src = lp_tensor_contiguous(x);
    if (!src)
        lp_lua_backend_error(L, what);
    int64_t shape[2] = {n, d};
    lp_tensor *c = lp_tensor_empty_for(what, 2, shape, LP_DEVICE_CPU);
    if (c)
        for (int64_t i = 0; i < n * d; i++)
            c->data[i] = src->data[i] * scale;
    lp_tensor_free(src);
    if (!c)
        lp_lua_backend_error(L, what);
    lp_lua_push_tensor(L, c);
    return c;
}

/* Pushes a new zero Tensor (N, d) and returns it (owned by Lua). */
static lp_tensor *push_zeros(lua_State *L, int N, int d, const char *what)
{
    int64_t shape[2] = {N, d};
    lp_tensor *t = lp_tensor_zeros(2, shape, LP_DEVICE_CPU);
    if (!t)
        lp_lua_backend_error(L, what);
    lp_lua_push_tensor(L, t);
    return t;
}

/* Pushes the tensor at idx, or its first row as a vector when vec. */
static void push_result(lua_State *L, int idx, const lp_tensor *t, int vec, const char *what)
{
    if (!vec) {
        lua_pushvalue(L, idx);
        return;
    }
    lp_tensor *v = lp_tensor_select(t, 0, 0);
    if (!v)
        lp_lua_backend_error(L, what);
    lp_lua_push_tensor(L, v);
}

static void encode(lua_State *L, lp_tensor *f, const lp_sae *s, const lp_tensor *x, int N, const char *what)
{
    if (lp_sae_encode(NULL, f->data, s, x->data, N, 0) < 0)
        lp_lua_backend_error(L, what);
}

static void decode(lua_State *L, lp_tensor *y, const lp_sae *s, const lp_tensor *f, const lp_tensor *x, int N,
                   const char *what)
{
    if (lp_sae_decode(y->data, s, f->data, x ? x->data : NULL, N) < 0)
        lp_lua_backend_error(L, what);
    if (s->scale != 1.0f)
        for (int64_t i = 0; i < (int64_t)N * s->cfg.d_out; i++)
            y->data[i] /= s->scale;
}

/* sae:encode(x) -> features (N, d_sae) or (d_sae) */
static int l_encode(lua_State *L)
{
    const char *what = "sae:encode";
    lp_sae *s = lp_lua_check_sae(L, 1);
    int N, vec;
    lp_tensor *x = push_rows(L, 2, s->cfg.d_in, s->scale, &N, &vec, what);
    lp_tensor *f = push_zeros(L, N, s->cfg.d_sae, what);
    int fi = lua_gettop(L);
    encode(L, f, s, x, N, what);
    push_result(L, fi, f, vec, what);
    return 1;
}

/* sae:decode(f [, x]) -> x_hat (N, d_out) or (d_out); x for a skip transcoder's W_skip */
static int l_decode(lua_State *L)
{
    const char *what = "sae:decode";
    lp_sae *s = lp_lua_check_sae(L, 1);
    if (s->W_skip && lua_isnoneornil(L, 3))
        return luaL_error(L, "%s: a skip transcoder needs its input too: sae:decode(f, x)", what);
    lua_settop(L, 3);
    int N, vec, Nx = 0, vx;
    lp_tensor *f = push_rows(L, 2, s->cfg.d_sae, 1.0f, &N, &vec, what);
    lp_tensor *x = s->W_skip ? push_rows(L, 3, s->cfg.d_in, s->scale, &Nx, &vx, what) : NULL;
    if (x && Nx != N)
        return luaL_error(L, "%s: f has %d rows and x %d", what, N, Nx);
    lp_tensor *y = push_zeros(L, N, s->cfg.d_out, what);
    int yi = lua_gettop(L);
    decode(L, y, s, f, x, N, what);
    push_result(L, yi, y, vec, what);
    return 1;
}

/* sae:forward(x) -> x_hat (N, d_out) or (d_out), and the features */
static int l_forward(lua_State *L)
{
    const char *what = "sae:forward";
    lp_sae *s = lp_lua_check_sae(L, 1);
    int N, vec;
    lp_tensor *x = push_rows(L, 2, s->cfg.d_in, s->scale, &N, &vec, what);
    lp_tensor *f = push_zeros(L, N, s->cfg.d_sae, what);
    int fi = lua_gettop(L);
    lp_tensor *y = push_zeros(L, N, s->cfg.d_out, what);
    int yi = lua_gettop(L);
    encode(L, f, s, x, N, what);
    decode(L, y, s, f, x, N, what);
    push_result(L, yi, y, vec, what);
    push_result(L, fi, f, vec, what);
    return 2;
}

void lp_lua_open_sae_codec(lua_State *L)
{
    luaL_getmetatable(L, LP_LUA_SAE_MT);
    lua_getfield(L, -1, "__methods");
    lp_lua_setfunc(L, -1, "encode", l_encode,
                   "sae:encode(x) -> Tensor (N, d_sae)\nThe features of x (N, d_in) or (d_in): act(x' W_enc + b_enc) "
                   "(batchtopk and matryoshka by their threshold). x is a raw activation (sae.scale is applied).");
    lp_lua_setfunc(L, -1, "decode", l_decode,
                   "sae:decode(f [, x]) -> Tensor (N, d_out)\nThe reconstruction f W_dec + b_dec of features f "
                   "(N, d_sae) or (d_sae); a skip transcoder also takes its input x.");
    lp_lua_setfunc(L, -1, "forward", l_forward,
                   "sae:forward(x) -> x_hat, f\nencode then decode: the reconstruction (or a transcoder's "
                   "prediction) of x and its features.");
    lua_pop(L, 2);
}
