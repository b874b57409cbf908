/* loupe.Tensor as Lua values and text: t:totable(), the torch-like text form (__tostring),
 * the rich display (a compact table for 1-D and 2-D tensors) and t:heatmap(). */
#include "lua_tensor_show.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>

#include "core/buf.h"
#include "figures.h"
#include "lua_api.h"
#include "lua_tensor.h"
#include "tensor_ops.h"

/* ---- conversion to Lua values and text ---- */

/* A host copy of the elements (row-major), owned by a Lua userdata left on the stack. */
static float *host_elements(lua_State *L, const lp_tensor *t)
{
    int64_t n = lp_tensor_numel(t);
    float *h = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(float), 0);
    if (lp_tensor_to_host(t, h) < 0)
        lp_lua_backend_error(L, NULL);
    return h;
}

static void push_nested(lua_State *L, const lp_tensor *t, const float *h, int level, int64_t *pos)
{
    if (level == t->ndim) {
        lua_pushnumber(L, h[(*pos)++]);
        return;
    }
    lua_createtable(L, (int)t->shape[level], 0);
    for (int64_t i = 0; i < t->shape[level]; i++) {
        push_nested(L, t, h, level + 1, pos);
        lua_rawseti(L, -2, i + 1);
    }
}

int lp_lua_tensor_totable(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    const float *h = host_elements(L, t);
    int64_t pos = 0;
    push_nested(L, t, h, 0, &pos);
    return 1;
}

#define EDGE 3        /* items shown at each end of an elided dim */
#define ELIDE_AT 1000 /* elide when the tensor has more elements than this */

static void fmt_value(lp_buf *b, float v, int sci)
{
    if (isnan(v) || isinf(v))
        lp_buf_puts(b, isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
    else
        lp_buf_printf(b, sci ? "%.4e" : "%.4f", (double)v);
}

static void fmt_level(lp_buf *b, const lp_tensor *t, const float *h, int level, int64_t off, int elide, int sci)
{
    if (level == t->ndim) {
        fmt_value(b, h[off], sci);
        return;
    }
    int64_t n = t->shape[level], stride = 1;
    for (int i = level + 1; i < t->ndim; i++)
        stride *= t->shape[i];
    lp_buf_putc(b, '[');
    for (int64_t i = 0; i < n; i++) {
        if (elide && n > 2 * EDGE && i == EDGE) {
            lp_buf_puts(b, level == t->ndim - 1 ? "..., " : "...,\n");
            for (int k = 0; k <= level + 7; k++)
                if (level < t->ndim - 1)
                    lp_buf_putc(b, ' ');
            i = n - EDGE - 1;
            continue;
        }
        fmt_level(b, t, h, level + 1, off + i * stride, elide, sci);
        if (i + 1 < n) {
            lp_buf_putc(b, ',');
            if (level < t->ndim - 1) {
                lp_buf_putc(b, '\n');
                for (int k = 0; k <= level + 7; k++)
                    lp_buf_putc(b, ' ');
            } else {
                lp_buf_putc(b, ' ');
            }
        }
    }
    lp_buf_putc(b, ']');
}

int lp_lua_tensor_tostring(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    const float *h = host_elements(L, t);
    int64_t n = lp_tensor_numel(t);
    float amax = 0, amin = INFINITY;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(h[i]);
        if (isfinite(a) && a > amax)
            amax = a;
        if (isfinite(a) && a > 0 && a < amin)
            amin = a;
    }
    int sci = amax >= 1e5f || (amin < 1e-4f && amax > 0);
    lp_buf b = LP_BUF_INIT;
    char sh[160];
    lp_buf_puts(&b, "tensor(");
    fmt_level(&b, t, h, 0, 0, n > ELIDE_AT, sci);
    lp_buf_printf(&b, ", shape=%s", lp_tensor_shape_str(t, sh, sizeof sh));
    if (t->device != LP_DEVICE_CPU)
        lp_buf_printf(&b, ", device=%s", lp_device_name(t->device));
    lp_buf_putc(&b, ')');
    if (b.oom) {
        lp_buf_free(&b);
        return lp_lua_raise(L, LP_ERR_NOMEM, "cannot allocate the text of a tensor");
    }
    lua_pushlstring(L, lp_buf_str(&b), b.len);
    lp_buf_free(&b);
    return 1;
}

/* ---- rich display: a compact table for 1-D and 2-D tensors; t:heatmap() on request ---- */

#define SHOW_ROWS 16
#define SHOW_COLS 12

/* Index of the i-th shown position among n (first half, an ellipsis, last half), or -1. */
static int64_t shown_index(int64_t i, int64_t n, int64_t max, int *ellipsis)
{
    *ellipsis = 0;
    if (n <= max)
        return i < n ? i : -2;
    int64_t half = max / 2;
    if (i < half)
        return i;
    if (i == half) {
        *ellipsis = 1;
        return -1;
    }
    return i <= max ? n - (max - i) - 1 : -2;
}

static void push_bundle_as_table(lua_State *L, json_t *bundle)
{
    lua_newtable(L);
    const char *mime;
    json_t *v;
    json_object_foreach(bundle, mime, v)
    {
        if (json_is_string(v)) {
            lua_pushlstring(L, json_string_value(v), json_string_length(v));
            lua_setfield(L, -2, mime);
        }
    }
}

int lp_lua_tensor_display(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    luaL_tolstring(L, 1, NULL); /* the text form */
    int text = lua_gettop(L);
    if (t->ndim < 1 || t->ndim > 2 || lp_tensor_numel(t) == 0) {
        lua_newtable(L);
        lua_pushvalue(L, text);
        lua_setfield(L, -2, "text/plain");
        return 1;
    }
    const float *h = host_elements(L, t);
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->shape[t->ndim - 1];
    int64_t sr = rows > SHOW_ROWS ? SHOW_ROWS + 1 : rows, sc = cols > SHOW_COLS ? SHOW_COLS + 1 : cols;
    /* cells as one Lua table of strings (kept alive on the stack), then pointers into it */
    const char **cells = lua_newuserdatauv(L, (size_t)(sr * sc + sc) * sizeof(char *), 0);
    const char **header = cells + sr * sc;
    lua_createtable(L, (int)(sr * sc + sc), 0);
    int anchor = lua_gettop(L), k = 0;
    char buf[64];
    for (int64_t c = 0; c < sc; c++) {
        int el;
        int64_t cc = shown_index(c, cols, SHOW_COLS, &el);
        snprintf(buf, sizeof buf, "%s", el ? "\u2026" : "");
        if (!el)
            snprintf(buf, sizeof buf, "%lld", (long long)cc + 1);
        lua_pushstring(L, buf);
        header[c] = lua_tostring(L, -1);
        lua_rawseti(L, anchor, ++k);
    }
    for (int64_t r = 0; r < sr; r++) {
        int elr, elc;
        int64_t rr = shown_index(r, rows, SHOW_ROWS, &elr);
        for (int64_t c = 0; c < sc; c++) {
            int64_t cc = shown_index(c, cols, SHOW_COLS, &elc);
            if (elr || elc)
                snprintf(buf, sizeof buf, "\u2026");
            else
                snprintf(buf, sizeof buf, "%.4g", (double)h[rr * cols + cc]);
            lua_pushstring(L, buf);
            cells[r * sc + c] = lua_tostring(L, -1);
            lua_rawseti(L, anchor, ++k);
        }
    }
    char sh[160], title[220];
    snprintf(title, sizeof title, "tensor %s%s", lp_tensor_shape_str(t, sh, sizeof sh),
             t->device != LP_DEVICE_CPU ? " (on the GPU)" : "");
    json_t *bundle = lp_display_table(title, header, cells, (size_t)sr, (size_t)sc);
    if (!bundle)
        return lp_lua_backend_error(L, "tensor display");
    json_object_set_new(bundle, "text/plain", json_string(lua_tostring(L, text)));
    push_bundle_as_table(L, bundle);
    json_decref(bundle);
    return 1;
}

/* t:heatmap([{title=, rows=, cols=, scale=}]) -> figure: loupe.plot.heatmap of a 2-D tensor. */
int lp_lua_tensor_heatmap(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    if (t->ndim != 2)
        return luaL_error(L, "heatmap: needs a 2-D tensor, got %d dimensions", t->ndim);
    lua_getglobal(L, "loupe");
    lua_getfield(L, -1, "plot");
    lua_getfield(L, -1, "heatmap");
    lua_newtable(L);
    if (lua_istable(L, 2)) {
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4);
        }
    }
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "data");
    lua_call(L, 1, 1);
    return 1;
}
