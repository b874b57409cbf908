/* loupe.Tensor as Lua values and text: t:totable(), the text form (__tostring, as numpy prints),
 * the rich display (a compact table for 1-D and 2-D tensors) and t:heatmap(). */
#include "lua_tensor_show.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

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

/* The text form, as a numeric library prints an array: a header with the shape and dtype,
 * then the values in nested brackets, aligned on the decimal point. A large tensor shows the
 * first and last EDGE entries of each long dim around "...", and a row too wide for LINE
 * characters is shortened the same way, so a line never wraps (let alone mid-number).
 * Numbers: integers as "3.", else fixed with up to 4 decimals, trailing zeros dropped ("0.5",
 * exact zeros "0."; a non-zero that rounds to zero keeps "0.0000"), or scientific with 4
 * decimals when the largest magnitude is >= 1e6 or < 1e-4. */
#define EDGE 3        /* entries shown at each end of a summarised dim */
#define ELIDE_AT 200  /* summarise every long dim when the tensor has more elements than this */
#define LINE 96       /* summarise the last dim when a full row is longer than this */

enum { FMT_INT, FMT_FIXED, FMT_SCI };

typedef struct text_form {
    const lp_tensor *t;
    const float *h;
    int elide[LP_MAX_DIMS];
    int mode;
    int lw, rw; /* widths of the parts before and from the decimal point */
} text_form;

static int dim_shown(const text_form *f, int d, int64_t i, int64_t *pos)
{
    int64_t n = f->t->shape[d];
    if (!f->elide[d]) {
        *pos = i;
        return i < n;
    }
    if (i >= 2 * EDGE)
        return 0;
    *pos = i < EDGE ? i : n - 2 * EDGE + i;
    return 1;
}

/* Calls fn on every shown element (row-major). */
static void each_shown(text_form *f, int d, int64_t off, void (*fn)(text_form *, float, void *), void *arg)
{
    if (d == f->t->ndim) {
        fn(f, f->h[off], arg);
        return;
    }
    int64_t stride = 1, pos;
    for (int k = d + 1; k < f->t->ndim; k++)
        stride *= f->t->shape[k];
    for (int64_t i = 0; dim_shown(f, d, i, &pos); i++)
        each_shown(f, d + 1, off + pos * stride, fn, arg);
}

typedef struct range {
    float amax;
    int all_int, any;
} range;

static void gather_range(text_form *f, float v, void *arg)
{
    (void)f;
    range *r = arg;
    if (!isfinite(v))
        return;
    r->any = 1;
    if (fabsf(v) > r->amax)
        r->amax = fabsf(v);
    if (v != floorf(v) || fabsf(v) >= 1e16f)
        r->all_int = 0;
}

/* The text of v; *left is the length of the part before the decimal point. */
static int fmt_value(const text_form *f, float v, char *out, size_t cap, int *left)
{
    int n;
    if (isnan(v) || isinf(v))
        n = snprintf(out, cap, "%s", isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
    else if (v == 0)
        n = snprintf(out, cap, "0.");
    else if (f->mode == FMT_INT)
        n = snprintf(out, cap, "%.0f.", (double)v);
    else if (f->mode == FMT_SCI)
        n = snprintf(out, cap, "%.4e", (double)v);
    else {
        n = snprintf(out, cap, "%.4f", (double)v);
        int zero = 1;
        for (int i = 0; i < n; i++)
            if (out[i] >= '1' && out[i] <= '9')
                zero = 0;
        while (!zero && n > 0 && out[n - 1] == '0')
            out[--n] = 0;
    }
    const char *dot = strchr(out, '.');
    *left = dot ? (int)(dot - out) : n;
    return n;
}

static void gather_widths(text_form *f, float v, void *arg)
{
    (void)arg;
    char s[48];
    int left, n = fmt_value(f, v, s, sizeof s, &left);
    if (left > f->lw)
        f->lw = left;
    if (n - left > f->rw)
        f->rw = n - left;
}

static void measure(text_form *f)
{
    range r = {0, 1, 0};
    each_shown(f, 0, 0, gather_range, &r);
    f->mode = r.all_int ? FMT_INT : (r.any && (r.amax >= 1e6f || r.amax < 1e-4f) && r.amax > 0) ? FMT_SCI
                                                                                                  : FMT_FIXED;
    f->lw = f->rw = 0;
    each_shown(f, 0, 0, gather_widths, NULL);
}

static void put_value(lp_buf *b, const text_form *f, float v)
{
    char s[48];
    int left, n = fmt_value(f, v, s, sizeof s, &left);
    lp_buf_printf(b, "%*s%s%*s", f->lw - left, "", s, f->rw - (n - left), "");
}

static void put_level(lp_buf *b, const text_form *f, int d, int64_t off)
{
    const lp_tensor *t = f->t;
    int64_t stride = 1, pos;
    for (int k = d + 1; k < t->ndim; k++)
        stride *= t->shape[k];
    lp_buf_putc(b, '[');
    for (int64_t i = 0; dim_shown(f, d, i, &pos); i++) {
        if (i > 0) {
            if (d == t->ndim - 1)
                lp_buf_putc(b, ' ');
            else
                lp_buf_printf(b, "%.*s%*s", t->ndim - d - 1, "\n\n\n\n\n\n\n\n", d + 1, "");
        }
        if (f->elide[d] && i == EDGE) {
            lp_buf_puts(b, "...");
            if (d == t->ndim - 1)
                lp_buf_putc(b, ' ');
            else
                lp_buf_printf(b, "%.*s%*s", t->ndim - d - 1, "\n\n\n\n\n\n\n\n", d + 1, "");
        }
        if (d == t->ndim - 1)
            put_value(b, f, f->h[off + pos]);
        else
            put_level(b, f, d + 1, off + pos * stride);
    }
    lp_buf_putc(b, ']');
}

int lp_lua_tensor_tostring(lua_State *L)
{
    lp_tensor *t = lp_lua_check_tensor(L, 1);
    const float *h = host_elements(L, t);
    int64_t n = lp_tensor_numel(t);
    text_form f = {.t = t, .h = h};
    for (int d = 0; d < t->ndim; d++)
        f.elide[d] = n > ELIDE_AT && t->shape[d] > 2 * EDGE;
    if (n > 0)
        measure(&f);
    int last = t->ndim - 1;
    if (last >= 0 && !f.elide[last] && t->shape[last] > 2 * EDGE &&
        t->shape[last] * (f.lw + f.rw + 1) + t->ndim > LINE) {
        f.elide[last] = 1;
        measure(&f);
    }
    lp_buf b = LP_BUF_INIT;
    char sh[160];
    lp_buf_printf(&b, "Tensor %s f32", lp_tensor_shape_str(t, sh, sizeof sh));
    if (t->device != LP_DEVICE_CPU)
        lp_buf_printf(&b, " on %s", lp_device_name(t->device));
    lp_buf_putc(&b, '\n');
    if (t->ndim == 0)
        put_value(&b, &f, h[0]);
    else if (n == 0)
        lp_buf_puts(&b, "(no elements)");
    else
        put_level(&b, &f, 0, 0);
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
    snprintf(title, sizeof title, "Tensor %s f32%s", lp_tensor_shape_str(t, sh, sizeof sh),
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
