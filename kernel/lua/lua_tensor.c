/* loupe.Tensor: the Lua face of lp_tensor. Each userdata holds one lp_tensor header (its own
 * view); storage is shared with other views through the backend's refcount, so a tensor
 * stays valid however Lua and C hold it. Errors from the backend become Lua errors. */
#include "lua_tensor.h"
#include "lua_tensor_show.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/error.h"
#include "figures.h"
#include "lua_api.h"
#include "rng.h"
#include "tensor_ops.h"

#define TENSOR_MT "loupe.Tensor"

void lp_lua_push_tensor(lua_State *L, lp_tensor *t)
{
    if (!t)
        lp_lua_backend_error(L, NULL);
    lp_tensor **ud = lua_newuserdatauv(L, sizeof *ud, 0);
    *ud = t;
    luaL_setmetatable(L, TENSOR_MT);
}

lp_tensor *lp_lua_check_tensor(lua_State *L, int idx)
{
    lp_tensor **ud = luaL_checkudata(L, idx, TENSOR_MT);
    if (!*ud)
        luaL_error(L, "tensor has been freed");
    return *ud;
}

static lp_tensor *test_tensor(lua_State *L, int idx)
{
    lp_tensor **ud = luaL_testudata(L, idx, TENSOR_MT);
    return ud ? *ud : NULL;
}

/* A 1-based Lua dim (negative from the end) -> 0-based. */
static int check_dim(lua_State *L, const lp_tensor *t, int arg)
{
    lua_Integer d = luaL_checkinteger(L, arg);
    lua_Integer z = d < 0 ? d + t->ndim : d - 1;
    if (z < 0 || z >= t->ndim)
        luaL_error(L, "dim %d out of range for a tensor with %d dims", (int)d, t->ndim);
    return (int)z;
}

/* Shape from numbers at arg.. or one table; returns ndim. */
static int read_shape(lua_State *L, int arg, int64_t *shape)
{
    int nd = 0;
    if (lua_istable(L, arg)) {
        int n = (int)luaL_len(L, arg);
        for (int i = 1; i <= n; i++) {
            lua_geti(L, arg, i);
            if (nd == LP_MAX_DIMS)
                luaL_error(L, "at most %d dims", LP_MAX_DIMS);
            shape[nd++] = (int64_t)luaL_checkinteger(L, -1);
            lua_pop(L, 1);
        }
        return nd;
    }
    while (lua_type(L, arg + nd) == LUA_TNUMBER) {
        if (nd == LP_MAX_DIMS)
            luaL_error(L, "at most %d dims", LP_MAX_DIMS);
        shape[nd] = (int64_t)luaL_checkinteger(L, arg + nd);
        nd++;
    }
    return nd;
}

/* The last argument when it is an options table {seed=, device=}; else 0. */
static int options_arg(lua_State *L)
{
    int top = lua_gettop(L);
    return top > 0 && lua_istable(L, top) && top > 1 ? top : 0;
}

static lp_device opt_device(lua_State *L, int opts)
{
    lp_device dev = lp_default_device();
    if (opts && lua_getfield(L, opts, "device") == LUA_TSTRING) {
        if (lp_device_parse(lua_tostring(L, -1), &dev) < 0)
            lp_lua_backend_error(L, NULL);
    }
    if (opts)
        lua_pop(L, 1);
    return dev;
}

/* ---- constructors ---- */

static int l_full(lua_State *L, float value)
{
    int64_t shape[LP_MAX_DIMS];
    int nd = read_shape(L, 1, shape);
    lp_lua_push_tensor(L, lp_tensor_full(nd, shape, value, opt_device(L, options_arg(L))));
    return 1;
}
static int l_zeros(lua_State *L) { return l_full(L, 0.0f); }
static int l_ones(lua_State *L) { return l_full(L, 1.0f); }

static int l_random(lua_State *L, int normal)
{
    int64_t shape[LP_MAX_DIMS];
    int nd = read_shape(L, 1, shape), opts = options_arg(L);
    lp_rng local, *g = NULL;
    if (opts && lua_getfield(L, opts, "seed") != LUA_TNIL) {
        lp_rng_seed(&local, (uint64_t)luaL_checkinteger(L, -1));
        g = &local;
    }
    if (opts)
        lua_pop(L, 1);
    lp_device dev = opt_device(L, opts);
    lp_lua_push_tensor(L, normal ? lp_tensor_randn(nd, shape, g, 0.0f, 1.0f, dev)
                                 : lp_tensor_rand(nd, shape, g, 0.0f, 1.0f, dev));
    return 1;
}
static int l_randn(lua_State *L) { return l_random(L, 1); }
static int l_rand(lua_State *L) { return l_random(L, 0); }

static int l_manual_seed(lua_State *L)
{
    lp_rng_seed(lp_rng_default(), (uint64_t)luaL_checkinteger(L, 1));
    return 0;
}

static int l_arange(lua_State *L)
{
    double a = luaL_checknumber(L, 1), b = luaL_optnumber(L, 2, NAN), step = luaL_optnumber(L, 3, 1.0);
    double start = isnan(b) ? 0.0 : a, stop = isnan(b) ? a : b;
    if (step == 0)
        return luaL_error(L, "arange: step must not be 0");
    double n = ceil((stop - start) / step);
    lp_lua_push_tensor(L, lp_tensor_arange(n > 0 ? (int64_t)n : 0, (float)start, (float)step, lp_default_device()));
    return 1;
}

/* Shape of a nested table, following first elements. */
static int nested_shape(lua_State *L, int idx, int64_t *shape)
{
    int nd = 0;
    lua_pushvalue(L, idx);
    while (lua_istable(L, -1)) {
        if (nd == LP_MAX_DIMS)
            luaL_error(L, "tensor: more than %d levels of nesting", LP_MAX_DIMS);
        shape[nd++] = (int64_t)luaL_len(L, -1);
        lua_geti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);
    return nd;
}

static void nested_fill(lua_State *L, int nd, const int64_t *shape, int level, float *out, int64_t *pos)
{
    if (level == nd) {
        int ok;
        lua_Number v = lua_tonumberx(L, -1, &ok);
        if (!ok)
            luaL_error(L, "tensor: element %d is a %s, not a number", (int)*pos + 1, luaL_typename(L, -1));
        out[(*pos)++] = (float)v;
        return;
    }
    if (!lua_istable(L, -1) || luaL_len(L, -1) != shape[level])
        luaL_error(L, "tensor: ragged nested table (level %d should have %d entries)", level + 1, (int)shape[level]);
    for (int64_t i = 1; i <= shape[level]; i++) {
        lua_geti(L, -1, i);
        nested_fill(L, nd, shape, level + 1, out, pos);
        lua_pop(L, 1);
    }
}

static int l_tensor(lua_State *L)
{
    int64_t shape[LP_MAX_DIMS];
    if (lua_type(L, 1) == LUA_TNUMBER) {
        float v = (float)lua_tonumber(L, 1);
        lp_lua_push_tensor(L, lp_tensor_from_data(0, NULL, &v, lp_default_device()));
        return 1;
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    int nd = nested_shape(L, 1, shape);
    int64_t n = 1, pos = 0;
    for (int i = 0; i < nd; i++)
        n *= shape[i];
    /* a Lua-owned buffer, so that a raised error cannot leak it */
    float *h = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(float), 0);
    lua_pushvalue(L, 1);
    nested_fill(L, nd, shape, 0, h, &pos);
    lua_pop(L, 1);
    lp_lua_push_tensor(L, lp_tensor_from_data(nd, shape, h, opt_device(L, options_arg(L))));
    return 1;
}

static int l_set_device(lua_State *L)
{
    lp_device dev;
    if (lp_device_parse(luaL_checkstring(L, 1), &dev) < 0 || lp_set_default_device(dev) < 0)
        return lp_lua_backend_error(L, NULL);
    return 0;
}

static int l_device(lua_State *L)
{
    lua_pushstring(L, lp_device_name(lp_default_device()));
    return 1;
}

/* ---- methods ---- */

static int m_shape(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, (lua_Integer)t->shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int m_numel(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)lp_tensor_numel(lp_lua_check_tensor(L, 1)));
    return 1;
}

static int m_dim(lua_State *L)
{
    lua_pushinteger(L, lp_lua_check_tensor(L, 1)->ndim);
    return 1;
}

static int m_device(lua_State *L)
{
    lua_pushstring(L, lp_device_name(lp_lua_check_tensor(L, 1)->device));
    return 1;
}

static int m_item(lua_State *L)
{
    float v;
    if (lp_tensor_item(lp_lua_check_tensor(L, 1), &v) < 0)
        return lp_lua_backend_error(L, NULL);
    lua_pushnumber(L, v);
    return 1;
}

/* t[i]: a number for a 1-D tensor, else a view without dim 1. */
static int index_tensor(lua_State *L, lp_tensor *t, lua_Integer i)
{
    if (t->ndim == 0)
        return luaL_error(L, "cannot index a 0-d tensor (use t:item())");
    lua_Integer z = i < 0 ? i + t->shape[0] : i - 1;
    if (z < 0 || z >= t->shape[0])
        return luaL_error(L, "index %d out of range for dim 1 of size %d", (int)i, (int)t->shape[0]);
    if (t->ndim == 1) {
        int64_t idx[1] = {z};
        float v;
        if (lp_tensor_get(t, idx, &v) < 0)
            return lp_lua_backend_error(L, NULL);
        lua_pushnumber(L, v);
        return 1;
    }
    lp_lua_push_tensor(L, lp_tensor_select(t, 0, z));
    return 1;
}

static int mt_index(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        int ok;
        lua_Integer i = lua_tointegerx(L, 2, &ok);
        if (!ok)
            return luaL_error(L, "tensor index must be an integer");
        return index_tensor(L, t, i);
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1)); /* methods */
    return 1;
}

static int mt_newindex(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2);
    float v = (float)luaL_checknumber(L, 3);
    if (t->ndim == 0)
        return luaL_error(L, "cannot index a 0-d tensor");
    lua_Integer z = i < 0 ? i + t->shape[0] : i - 1;
    if (z < 0 || z >= t->shape[0])
        return luaL_error(L, "index %d out of range for dim 1 of size %d", (int)i, (int)t->shape[0]);
    lp_tensor *row = lp_tensor_select(t, 0, z);
    int rc = row ? lp_tensor_fill_(row, v) : -1;
    lp_tensor_free(row);
    if (rc < 0)
        return lp_lua_backend_error(L, NULL);
    return 0;
}

static int m_slice(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    int d = check_dim(L, t, 2);
    int64_t n = t->shape[d];
    lua_Integer a = luaL_optinteger(L, 3, 1), b = luaL_optinteger(L, 4, -1), step = luaL_optinteger(L, 5, 1);
    a = a < 0 ? a + n + 1 : a;
    b = b < 0 ? b + n + 1 : b;
    if (a < 1 || b > n || a > b + 1 || step < 1)
        return luaL_error(L, "slice %d..%d (step %d) out of range for dim %d of size %d", (int)a, (int)b, (int)step,
                          d + 1, (int)n);
    lp_lua_push_tensor(L, lp_tensor_slice(t, d, a - 1, b, step));
    return 1;
}

static int m_T(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    lp_lua_push_tensor(L, t->ndim < 2 ? lp_tensor_alias(t) : lp_tensor_transpose(t, t->ndim - 2, t->ndim - 1));
    return 1;
}

static int m_transpose(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    int a = check_dim(L, t, 2), b = check_dim(L, t, 3);
    lp_lua_push_tensor(L, lp_tensor_transpose(t, a, b));
    return 1;
}

static int m_reshape(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    int64_t shape[LP_MAX_DIMS];
    int nd = read_shape(L, 2, shape);
    lp_lua_push_tensor(L, lp_tensor_reshape(t, nd, shape));
    return 1;
}

static int m_clone(lua_State *L)
{
    lp_lua_push_tensor(L, lp_tensor_clone(lp_lua_check_tensor(L, 1)));
    return 1;
}

static int m_contiguous(lua_State *L)
{
    lp_lua_push_tensor(L, lp_tensor_contiguous(lp_lua_check_tensor(L, 1)));
    return 1;
}

static int m_to(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    lp_device dev;
    if (lp_device_parse(luaL_checkstring(L, 2), &dev) < 0)
        return lp_lua_backend_error(L, NULL);
    lp_lua_push_tensor(L, lp_tensor_to(t, dev));
    return 1;
}

/* ---- arithmetic ---- */

static int arith(lua_State *L, int op)
{
    lp_tensor *a = test_tensor(L, 1), *b = test_tensor(L, 2), *r;
    if (a && b)
        r = lp_tensor_binary(a, b, op);
    else if (a)
        r = lp_tensor_binary_scalar(a, (float)luaL_checknumber(L, 2), op, 0);
    else
        r = lp_tensor_binary_scalar(lp_lua_check_tensor(L, 2), (float)luaL_checknumber(L, 1), op, 1);
    lp_lua_push_tensor(L, r);
    return 1;
}
static int mt_add(lua_State *L) { return arith(L, LP_BIN_ADD); }
static int mt_sub(lua_State *L) { return arith(L, LP_BIN_SUB); }
static int mt_mul(lua_State *L) { return arith(L, LP_BIN_MUL); }
static int mt_div(lua_State *L) { return arith(L, LP_BIN_DIV); }
static int mt_unm(lua_State *L)
{
    lp_lua_push_tensor(L, lp_tensor_binary_scalar(lp_lua_check_tensor(L, 1), -1.0f, LP_BIN_MUL, 0));
    return 1;
}

static int m_matmul(lua_State *L)
{
    lp_lua_push_tensor(L, lp_tensor_matmul(lp_lua_check_tensor(L, 1), lp_lua_check_tensor(L, 2)));
    return 1;
}

/* Reductions: without a dim, a number; with one, a tensor (keepdim as 3rd argument). */
static int reduce(lua_State *L, int op)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2)) {
        lp_tensor *r = lp_tensor_reduce(t, LP_ALL_DIMS, op, 0);
        float v;
        int rc = r ? lp_tensor_item(r, &v) : -1;
        lp_tensor_free(r);
        if (rc < 0)
            return lp_lua_backend_error(L, NULL);
        lua_pushnumber(L, v);
        return 1;
    }
    int d = check_dim(L, t, 2);
    lp_lua_push_tensor(L, lp_tensor_reduce(t, d, op, lua_toboolean(L, 3)));
    return 1;
}
static int m_sum(lua_State *L) { return reduce(L, LP_REDUCE_SUM); }
static int m_mean(lua_State *L) { return reduce(L, LP_REDUCE_MEAN); }
static int m_max(lua_State *L) { return reduce(L, LP_REDUCE_MAX); }
static int m_min(lua_State *L) { return reduce(L, LP_REDUCE_MIN); }
static int m_norm(lua_State *L) { return reduce(L, LP_REDUCE_NORM); }

/* 0-based f32 indices -> 1-based, in a new tensor. */
static lp_tensor *one_based(lp_tensor *idx)
{
    lp_tensor *r = idx ? lp_tensor_binary_scalar(idx, 1.0f, LP_BIN_ADD, 0) : NULL;
    lp_tensor_free(idx);
    return r;
}

static int m_argmax(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2)) {
        lp_tensor *r = lp_tensor_argmax(t, LP_ALL_DIMS);
        float v;
        int rc = r ? lp_tensor_item(r, &v) : -1;
        lp_tensor_free(r);
        if (rc < 0)
            return lp_lua_backend_error(L, NULL);
        lua_pushinteger(L, (lua_Integer)v + 1);
        return 1;
    }
    lp_lua_push_tensor(L, one_based(lp_tensor_argmax(t, check_dim(L, t, 2))));
    return 1;
}

static int m_topk(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1), *vals, *idx;
    lua_Integer k = luaL_checkinteger(L, 2);
    if (lp_tensor_topk(t, k, &vals, &idx) < 0)
        return lp_lua_backend_error(L, NULL);
    lp_tensor *idx1 = one_based(idx);
    if (!idx1) {
        lp_tensor_free(vals);
        return lp_lua_backend_error(L, NULL);
    }
    lp_lua_push_tensor(L, vals);
    lp_lua_push_tensor(L, idx1);
    return 2;
}

static int m_softmax(lua_State *L)
{
    lp_lua_push_tensor(L, lp_tensor_softmax(lp_lua_check_tensor(L, 1)));
    return 1;
}

static int m_cos(lua_State *L)
{
    lp_lua_push_tensor(L, lp_tensor_cosine(lp_lua_check_tensor(L, 1), lp_lua_check_tensor(L, 2)));
    return 1;
}

static int mt_len(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    lua_pushinteger(L, t->ndim ? (lua_Integer)t->shape[0] : 0);
    return 1;
}

static int mt_gc(lua_State *L)
{
    lp_tensor **ud = luaL_checkudata(L, 1, TENSOR_MT);
    lp_tensor_free(*ud);
    *ud = NULL;
    return 0;
}

typedef struct {
    const char *name;
    lua_CFunction f;
    const char *doc;
} entry;

static const entry methods[] = {
    {"heatmap", lp_lua_tensor_heatmap,
     "t:heatmap([{title=, rows=, cols=, scale=}]) -> figure\nA 2-D tensor as a heatmap (loupe.plot.heatmap)."},
    {"shape", m_shape, "t:shape() -> table\nThe sizes of the dims, e.g. {2, 3}."},
    {"numel", m_numel, "t:numel() -> integer\nThe number of elements."},
    {"dim", m_dim, "t:dim() -> integer\nThe number of dims."},
    {"device", m_device, "t:device() -> string\n\"cpu\" or \"cuda\"."},
    {"item", m_item, "t:item() -> number\nThe value of a tensor with one element."},
    {"slice", m_slice,
     "t:slice(dim, first, last [, step]) -> Tensor\nA view of elements first..last (inclusive, 1-based; "
     "negative counts from the end) along dim, without copying."},
    {"T", m_T, "t:T() -> Tensor\nThe view with the last two dims swapped."},
    {"transpose", m_transpose, "t:transpose(d1, d2) -> Tensor\nThe view with dims d1 and d2 swapped."},
    {"reshape", m_reshape,
     "t:reshape(d1, d2, ...) -> Tensor\nThe same elements in a new shape (one size may be -1); a view when "
     "t is contiguous."},
    {"clone", m_clone, "t:clone() -> Tensor\nA copy with its own storage."},
    {"contiguous", m_contiguous, "t:contiguous() -> Tensor\nt, or a row-major copy when t is a strided view."},
    {"to", m_to, "t:to(device) -> Tensor\nA copy on \"cpu\" or \"cuda\" (t itself when already there)."},
    {"matmul", m_matmul, "t:matmul(u) -> Tensor\nThe matrix product (torch.matmul rules; batched)."},
    {"sum", m_sum, "t:sum([dim [, keepdim]]) -> number | Tensor\nSum of all elements, or along dim."},
    {"mean", m_mean, "t:mean([dim [, keepdim]]) -> number | Tensor\nMean of all elements, or along dim."},
    {"max", m_max, "t:max([dim [, keepdim]]) -> number | Tensor\nMaximum of all elements, or along dim."},
    {"min", m_min, "t:min([dim [, keepdim]]) -> number | Tensor\nMinimum of all elements, or along dim."},
    {"norm", m_norm, "t:norm([dim [, keepdim]]) -> number | Tensor\nL2 norm of all elements, or along dim."},
    {"argmax", m_argmax,
     "t:argmax([dim]) -> integer | Tensor\n1-based position of the maximum (flat), or along dim."},
    {"topk", m_topk,
     "t:topk(k) -> values, indices\nThe k largest along the last dim, descending, with their 1-based indices."},
    {"softmax", m_softmax, "t:softmax() -> Tensor\nSoftmax along the last dim."},
    {"cos", m_cos, "t:cos(u) -> Tensor\nCosine similarity of t and u along the last dim."},
    {"totable", lp_lua_tensor_totable, "t:totable() -> table\nThe elements as nested Lua tables."},
    {NULL, NULL, NULL},
};

static const entry functions[] = {
    {"tensor", l_tensor,
     "loupe.tensor(values [, {device=}]) -> Tensor\nA tensor from a number or nested tables, e.g. "
     "loupe.tensor{{1, 2}, {3, 4}}."},
    {"zeros", l_zeros, "loupe.zeros(d1, d2, ... [, {device=}]) -> Tensor\nA tensor of zeros."},
    {"ones", l_ones, "loupe.ones(d1, d2, ... [, {device=}]) -> Tensor\nA tensor of ones."},
    {"randn", l_randn,
     "loupe.randn(d1, d2, ... [, {seed=, device=}]) -> Tensor\nStandard normal samples; from the generator of "
     "loupe.manual_seed, or from a fresh one seeded with `seed`."},
    {"rand", l_rand, "loupe.rand(d1, d2, ... [, {seed=, device=}]) -> Tensor\nUniform samples in [0, 1)."},
    {"arange", l_arange,
     "loupe.arange([start,] stop [, step]) -> Tensor\nstart, start+step, ... below stop (start 0 by default)."},
    {"manual_seed", l_manual_seed, "loupe.manual_seed(n)\nSeeds the generator used by rand and randn."},
    {"set_device", l_set_device,
     "loupe.set_device(name)\nMakes \"cpu\" or \"cuda\" the device of new tensors (an error when unavailable)."},
    {"device", l_device, "loupe.device() -> string\nThe device of new tensors."},
    {NULL, NULL, NULL},
};

void lp_lua_open_tensor(lua_State *L)
{
    int loupe = lua_gettop(L);
    luaL_newmetatable(L, TENSOR_MT);
    int mt = lua_gettop(L);
    lua_newtable(L); /* methods */
    int mtab = lua_gettop(L);
    for (const entry *e = methods; e->name; e++)
        lp_lua_setfunc(L, mtab, e->name, e->f, e->doc);
    lua_pushvalue(L, mtab);
    lua_setfield(L, mt, "__methods"); /* for help and completion */
    lua_pushcclosure(L, mt_index, 1); /* pops methods */
    lua_setfield(L, mt, "__index");
    static const luaL_Reg meta[] = {{"__newindex", mt_newindex}, {"__add", mt_add}, {"__sub", mt_sub},
                                    {"__mul", mt_mul},           {"__div", mt_div}, {"__unm", mt_unm},
                                    {"__tostring", lp_lua_tensor_tostring}, {"__len", mt_len}, {"__gc", mt_gc},
                                    {"__display", lp_lua_tensor_display},
                                    {NULL, NULL}};
    luaL_setfuncs(L, meta, 0);
    lp_lua_settype(L, mt,
                  "Tensor: an n-dimensional array of f32 on the CPU or a GPU.\n"
                  "t[i] (1-based) is a number for 1-D tensors, else a view; + - * / take tensors or numbers "
                  "(broadcasting).", NULL);
    lua_pop(L, 1);
    for (const entry *e = functions; e->name; e++)
        lp_lua_setfunc(L, loupe, e->name, e->f, e->doc);
    lua_settop(L, loupe);
}
