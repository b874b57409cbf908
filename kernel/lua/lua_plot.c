/* Lua bindings of display/ figures. Arguments are read from Lua tables into scratch
 * userdata (collected by Lua), so a Lua error at any point leaks nothing. */
#include "lua_plot.h"

#include <jansson.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "core/error.h"
#include "figures.h"
#include "html.h"
#include "lua_api.h"
#include "util.h"

#define FIGURE "loupe.Figure"
#define LIVE "loupe.LivePlot"

/* ---- figure objects ----------------------------------------------------------------------- */

typedef struct figure {
    json_t *bundle; /* owned */
} figure;

/* Wraps a bundle (stolen) as a figure object; raises on NULL (the error of lp_last_error). */
static int push_figure(lua_State *L, json_t *bundle, const char *what)
{
    if (!bundle)
        return lp_lua_backend_error(L, what);
    figure *f = lua_newuserdatauv(L, sizeof *f, 0);
    f->bundle = bundle;
    luaL_setmetatable(L, FIGURE);
    return 1;
}

int lp_lua_push_figure(lua_State *L, json_t *bundle, const char *what)
{
    return push_figure(L, bundle, what);
}

static void push_bundle_table(lua_State *L, const json_t *b)
{
    lua_newtable(L);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)b, k, v) {
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        lua_setfield(L, -2, k);
    }
}

static int figure_display(lua_State *L)
{
    figure *f = luaL_checkudata(L, 1, FIGURE);
    push_bundle_table(L, f->bundle);
    return 1;
}

static int figure_tostring(lua_State *L)
{
    figure *f = luaL_checkudata(L, 1, FIGURE);
    lua_pushstring(L, json_string_value(json_object_get(f->bundle, "text/plain")));
    return 1;
}

static int figure_gc(lua_State *L)
{
    figure *f = luaL_checkudata(L, 1, FIGURE);
    json_decref(f->bundle);
    f->bundle = NULL;
    return 0;
}

/* ---- reading arguments -------------------------------------------------------------------- */

static void *scratch(lua_State *L, size_t n)
{
    void *p = lua_newuserdatauv(L, n ? n : 1, 0); /* raises "not enough memory" on failure */
    return p;
}

/* A loupe.Tensor given where an array is expected is read through its :totable() (1-D: an
 * array of numbers, 2-D: an array of rows); the stack slot is replaced by that table. */
static void tensor_to_table(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (!luaL_testudata(L, idx, "loupe.Tensor"))
        return;
    lua_getfield(L, idx, "totable");
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    lua_replace(L, idx);
}

/* The argument table of loupe.plot.*{...}: checked, and when any of its values is a tensor,
 * replaced by a shallow copy with those tensors read as tables, so that every figure takes
 * tensors wherever it takes arrays (the caller's table is not modified). */
static void args_table(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int any = 0;
    lua_pushnil(L);
    while (!any && lua_next(L, 1)) {
        any = luaL_testudata(L, -1, "loupe.Tensor") != NULL;
        lua_pop(L, 1);
    }
    if (!any)
        return;
    lua_newtable(L);
    int copy = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        tensor_to_table(L, -1);
        lua_rawset(L, copy);
    }
    lua_replace(L, 1);
}

static size_t array_len(lua_State *L, int idx, const char *what)
{
    tensor_to_table(L, idx);
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: expected an array (a Lua table), got %s", what, luaL_typename(L, idx));
    lua_Integer n = luaL_len(L, idx);
    return n > 0 ? (size_t)n : 0;
}

/* Reads the array at idx as doubles (nil and non-numbers are errors; NaN is kept). Pushes
 * the scratch userdata holding them. */
static double *read_numbers(lua_State *L, int idx, const char *what, size_t *n)
{
    idx = lua_absindex(L, idx);
    *n = array_len(L, idx, what);
    double *v = scratch(L, *n * sizeof *v);
    for (size_t i = 0; i < *n; i++) {
        lua_geti(L, idx, (lua_Integer)i + 1);
        int ok;
        v[i] = lua_tonumberx(L, -1, &ok);
        if (!ok)
            luaL_error(L, "%s[%d]: expected a number, got %s", what, (int)i + 1, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    return v;
}

/* Reads an array of strings (numbers converted; NUL bytes made visible) into a scratch
 * array of pointers. The strings are kept alive by an anchor table pushed with it: pushes
 * two values. */
static const char **read_strings(lua_State *L, int idx, const char *what, size_t *n)
{
    idx = lua_absindex(L, idx);
    *n = array_len(L, idx, what);
    lua_createtable(L, (int)*n, 0); /* anchor */
    const char **s = scratch(L, *n * sizeof *s);
    for (size_t i = 0; i < *n; i++) {
        lua_geti(L, idx, (lua_Integer)i + 1);
        size_t len;
        const char *str = luaL_tolstring(L, -1, &len); /* also converts numbers, booleans */
        if (memchr(str, '\0', len)) {
            lp_buf b = LP_BUF_INIT;
            lp_utf8_sanitize(&b, str, len);
            lua_pushstring(L, lp_buf_str(&b));
            lp_buf_free(&b);
            lua_replace(L, -2);
        }
        s[i] = lua_tostring(L, -1);
        lua_rawseti(L, -4, (lua_Integer)i + 1); /* anchor[i+1] = string */
        lua_pop(L, 1); /* the element */
    }
    return s;
}

/* opts.key as a string or NULL (the string stays valid while the options table lives). */
static const char *opt_str(lua_State *L, int t, const char *key)
{
    if (lua_type(L, t) != LUA_TTABLE)
        return NULL;
    lua_getfield(L, t, key);
    const char *s = NULL;
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
        s = lua_tostring(L, -1);
    else if (!lua_isnil(L, -1))
        luaL_error(L, "option %s: expected a string, got %s", key, luaL_typename(L, -1));
    lua_pop(L, 1); /* still referenced by the table */
    return s;
}

static lp_plot_opts plot_opts(lua_State *L, int t)
{
    lp_plot_opts o = {opt_str(L, t, "title"), opt_str(L, t, "xlabel"), opt_str(L, t, "ylabel")};
    return o;
}

/* The data of a figure: t[key] when it is a table, else t[pos] when that is a table, else
 * the positional numbers of t itself (loupe.plot.hist{1, 2, 3}). Pushes t's value read. */
static int data_arg(lua_State *L, int t, const char *key, int pos)
{
    lua_getfield(L, t, key);
    if (lua_istable(L, -1))
        return lua_gettop(L);
    lua_pop(L, 1);
    lua_geti(L, t, pos);
    if (lua_istable(L, -1))
        return lua_gettop(L);
    lua_pop(L, 1);
    lua_pushvalue(L, t);
    return lua_gettop(L);
}

/* ---- loupe.plot.* ------------------------------------------------------------------------- */

static int l_line(lua_State *L)
{
    args_table(L);
    lp_plot_opts o = plot_opts(L, 1);
    lua_geti(L, 1, 1);
    int positional_numbers = lua_type(L, -1) == LUA_TNUMBER;
    lua_pop(L, 1);
    size_t ns = positional_numbers ? 1 : array_len(L, 1, "loupe.plot.line");
    lua_getfield(L, 1, "y");
    if (lua_istable(L, -1)) { /* line{y = {...}, x = {...}} */
        positional_numbers = 0;
        ns = 1;
    }
    int y_field = lua_gettop(L);
    lp_series *s = scratch(L, ns * sizeof *s);
    const char *name = opt_str(L, 1, "name");
    lua_getfield(L, 1, "x");
    size_t nx = 0;
    const double *shared_x = lua_istable(L, -1) ? read_numbers(L, -1, "x", &nx) : NULL;
    for (size_t k = 0; k < ns; k++) {
        luaL_checkstack(L, 12, "too many series");
        int src;
        if (lua_istable(L, y_field)) {
            src = y_field;
        } else if (positional_numbers) {
            src = 1;
        } else {
            lua_geti(L, 1, (lua_Integer)k + 1);
            src = lua_gettop(L);
            if (!lua_istable(L, src))
                return luaL_error(L, "loupe.plot.line: series %d is not an array", (int)k + 1);
        }
        s[k] = (lp_series){name, shared_x, NULL, 0};
        lua_getfield(L, src, "y");
        if (lua_istable(L, -1)) { /* a series given as {y = ..., x = ..., name = ...} */
            int ys = lua_gettop(L);
            s[k].y = read_numbers(L, ys, "y", &s[k].n);
            s[k].name = opt_str(L, src, "name");
            lua_getfield(L, src, "x");
            if (lua_istable(L, -1)) {
                s[k].x = read_numbers(L, -1, "x", &nx);
                if (nx != s[k].n)
                    return luaL_error(L, "loupe.plot.line: x has %d values, y has %d", (int)nx, (int)s[k].n);
            }
        } else {
            s[k].y = read_numbers(L, src, "y", &s[k].n);
            if (ns > 1) { /* names = {...} for several series */
                lua_getfield(L, 1, "names");
                if (lua_istable(L, -1)) {
                    lua_geti(L, -1, (lua_Integer)k + 1);
                    s[k].name = lua_tostring(L, -1); /* anchored by the names table */
                }
            }
        }
        if (s[k].x == shared_x && shared_x && nx != s[k].n)
            return luaL_error(L, "loupe.plot.line: x has %d values, y has %d", (int)nx, (int)s[k].n);
    }
    return push_figure(L, lp_display_line(s, ns, &o), "loupe.plot.line");
}

static int l_hist(lua_State *L)
{
    args_table(L);
    lp_plot_opts o = plot_opts(L, 1);
    lua_getfield(L, 1, "bins");
    int bins = (int)luaL_optinteger(L, -1, 0);
    size_t n;
    const double *v = read_numbers(L, data_arg(L, 1, "values", 1), "values", &n);
    return push_figure(L, lp_display_hist(v, n, bins, &o), "loupe.plot.hist");
}

static int l_scatter(lua_State *L)
{
    args_table(L);
    lp_plot_opts o = plot_opts(L, 1);
    size_t nx, ny, nl = 0;
    const double *x = read_numbers(L, data_arg(L, 1, "x", 1), "x", &nx);
    lua_getfield(L, 1, "y");
    if (!lua_istable(L, -1))
        lua_geti(L, 1, 2);
    const double *y = read_numbers(L, -1, "y", &ny);
    if (nx != ny)
        return luaL_error(L, "loupe.plot.scatter: x has %d values, y has %d", (int)nx, (int)ny);
    lua_getfield(L, 1, "labels");
    if (!lua_istable(L, -1))
        lua_geti(L, 1, 3);
    const char **labels = lua_istable(L, -1) ? read_strings(L, -1, "labels", &nl) : NULL;
    if (labels && nl != nx)
        return luaL_error(L, "loupe.plot.scatter: %d labels for %d points", (int)nl, (int)nx);
    return push_figure(L, lp_display_scatter(x, y, nx, labels, &o), "loupe.plot.scatter");
}

static int l_bar(lua_State *L)
{
    args_table(L);
    lp_plot_opts o = plot_opts(L, 1);
    size_t n, nl = 0;
    const double *v = read_numbers(L, data_arg(L, 1, "values", 1), "values", &n);
    lua_getfield(L, 1, "labels");
    if (!lua_istable(L, -1))
        lua_geti(L, 1, 2);
    const char **labels = lua_istable(L, -1) ? read_strings(L, -1, "labels", &nl) : NULL;
    if (labels && nl != n)
        return luaL_error(L, "loupe.plot.bar: %d labels for %d values", (int)nl, (int)n);
    return push_figure(L, lp_display_bar(labels, v, n, &o), "loupe.plot.bar");
}

/* Reads a matrix (array of equal-length rows) into dst at offset, or counts its shape. */
static float *read_matrix(lua_State *L, int idx, size_t *rows, size_t *cols, float *dst, const char *what)
{
    idx = lua_absindex(L, idx);
    size_t r = array_len(L, idx, what), c = 0;
    for (size_t i = 0; i < r; i++) {
        lua_geti(L, idx, (lua_Integer)i + 1);
        size_t n = array_len(L, -1, what);
        if (i == 0)
            c = n;
        else if (n != c)
            luaL_error(L, "%s: row %d has %d values, row 1 has %d", what, (int)i + 1, (int)n, (int)c);
        for (size_t j = 0; dst && j < n; j++) {
            lua_geti(L, -1, (lua_Integer)j + 1);
            int ok;
            dst[i * c + j] = (float)lua_tonumberx(L, -1, &ok);
            if (!ok)
                luaL_error(L, "%s[%d][%d]: expected a number, got %s", what, (int)i + 1, (int)j + 1,
                           luaL_typename(L, -1));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    *rows = r;
    *cols = c;
    return dst;
}

static int l_heatmap(lua_State *L)
{
    args_table(L);
    /* data = t.data, or t itself when its entries are rows of numbers, or t[1]; tensors too */
    lua_getfield(L, 1, "data");
    tensor_to_table(L, -1);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_geti(L, 1, 1);
        int rows_inline = lua_istable(L, -1) && lua_geti(L, -1, 1) == LUA_TNUMBER;
        lua_settop(L, 1);
        if (rows_inline)
            lua_pushvalue(L, 1);
        else
            lua_geti(L, 1, 1);
        tensor_to_table(L, -1);
    }
    int m = lua_gettop(L);
    if (!lua_istable(L, m))
        return luaL_error(L, "loupe.plot.heatmap: expected a matrix (an array of rows)");
    lp_heatmap_opts o = {opt_str(L, 1, "title"), NULL, NULL, opt_str(L, 1, "rows"), opt_str(L, 1, "cols"),
                         LP_SCALE_AUTO};
    const char *scale = opt_str(L, 1, "scale");
    if (scale && strcmp(scale, "diverging") == 0)
        o.scale = LP_SCALE_DIVERGING;
    else if (scale && strcmp(scale, "sequential") == 0)
        o.scale = LP_SCALE_SEQUENTIAL;
    else if (scale && strcmp(scale, "auto") != 0)
        return luaL_error(L, "loupe.plot.heatmap: scale must be \"auto\", \"diverging\" or \"sequential\"");
    size_t n = 1, rows = 0, cols = 0, nl;
    /* A 3-D array (data[1][1] is a table) is a grid of heatmaps. */
    int grid = 0;
    lua_geti(L, m, 1);
    if (lua_istable(L, -1)) {
        lua_geti(L, -1, 1);
        grid = lua_istable(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (grid) {
        n = array_len(L, m, "data");
        lua_geti(L, m, 1);
        read_matrix(L, -1, &rows, &cols, NULL, "data[1]");
        lua_pop(L, 1);
    } else {
        read_matrix(L, m, &rows, &cols, NULL, "data");
    }
    if ((double)n * rows * cols > 64.0 * 1024 * 1024)
        return luaL_error(L, "loupe.plot.heatmap: %d x %d x %d values is too many", (int)n, (int)rows, (int)cols);
    float *v = scratch(L, n * rows * cols * sizeof *v);
    for (size_t k = 0; k < n; k++) {
        size_t r, c;
        if (grid) {
            lua_geti(L, m, (lua_Integer)k + 1);
            read_matrix(L, -1, &r, &c, v + k * rows * cols, "data[k]");
            lua_pop(L, 1);
            if (r != rows || c != cols)
                return luaL_error(L, "loupe.plot.heatmap: heatmap %d is %dx%d, heatmap 1 is %dx%d",
                                  (int)k + 1, (int)r, (int)c, (int)rows, (int)cols);
        } else {
            read_matrix(L, m, &r, &c, v, "data");
        }
    }
    lua_getfield(L, 1, "row_labels");
    if (lua_istable(L, -1)) {
        o.row_labels = read_strings(L, -1, "row_labels", &nl);
        if (nl != rows)
            return luaL_error(L, "loupe.plot.heatmap: %d row labels for %d rows", (int)nl, (int)rows);
    }
    lua_getfield(L, 1, "col_labels");
    if (lua_istable(L, -1)) {
        o.col_labels = read_strings(L, -1, "col_labels", &nl);
        if (nl != cols)
            return luaL_error(L, "loupe.plot.heatmap: %d column labels for %d columns", (int)nl, (int)cols);
    }
    const char **titles = NULL;
    lua_getfield(L, 1, "titles");
    if (lua_istable(L, -1)) {
        titles = read_strings(L, -1, "titles", &nl);
        if (nl != n)
            return luaL_error(L, "loupe.plot.heatmap: %d titles for %d heatmaps", (int)nl, (int)n);
    }
    json_t *b = grid ? lp_display_heatmap_grid(v, n, rows, cols, titles, &o)
                     : lp_display_heatmap(v, rows, cols, &o);
    return push_figure(L, b, "loupe.plot.heatmap");
}

/* ---- loupe.tokens, loupe.table ------------------------------------------------------------ */

static int l_tokens(lua_State *L)
{
    lua_settop(L, 3);
    const char *title = luaL_optstring(L, 3, NULL);
    size_t n, nv = 0;
    const char **tok = read_strings(L, 1, "tokens", &n);
    const float *fv = NULL;
    if (!lua_isnoneornil(L, 2)) {
        const double *v = read_numbers(L, 2, "values", &nv);
        if (nv != n)
            return luaL_error(L, "loupe.tokens: %d values for %d tokens", (int)nv, (int)n);
        float *f = scratch(L, n * sizeof *f);
        for (size_t i = 0; i < n; i++)
            f[i] = (float)v[i];
        fv = f;
    }
    return push_figure(L, lp_display_tokens(tok, fv, n, title), "loupe.tokens");
}

/* A cell as text: numbers as integers or %.4g, strings as they are, nil as "". */
static const char *cell_text(lua_State *L, int idx, char *buf, size_t cap)
{
    if (lua_isnil(L, idx))
        return "";
    if (lua_isinteger(L, idx)) {
        snprintf(buf, cap, "%lld", (long long)lua_tointeger(L, idx));
        return buf;
    }
    if (lua_type(L, idx) == LUA_TNUMBER)
        return lp_fmt_num(lua_tonumber(L, idx), buf, cap);
    return NULL;
}

static int l_table(lua_State *L)
{
    lua_settop(L, 2);
    size_t rows = array_len(L, 1, "loupe.table");
    int opts = lua_istable(L, 2) ? 2 : 1;
    const char *title = opt_str(L, opts, "title");
    size_t cols = 0, nh = 0;
    const char **header = NULL;
    lua_getfield(L, opts, "header");
    if (lua_istable(L, -1)) {
        header = read_strings(L, -1, "header", &nh);
        cols = nh;
    }
    for (size_t i = 0; i < rows; i++) {
        lua_geti(L, 1, (lua_Integer)i + 1);
        size_t c = array_len(L, -1, "loupe.table row");
        if (c > cols)
            cols = c;
        lua_pop(L, 1);
    }
    if (header && nh < cols)
        return luaL_error(L, "loupe.table: %d header names for %d columns", (int)nh, (int)cols);
    if ((double)rows * cols > 1e7)
        return luaL_error(L, "loupe.table: too many cells");
    lua_createtable(L, 0, 0); /* anchor of converted cells */
    int anchor = lua_gettop(L);
    const char **cells = scratch(L, rows * cols * sizeof *cells);
    int k = 0;
    for (size_t i = 0; i < rows; i++) {
        lua_geti(L, 1, (lua_Integer)i + 1);
        for (size_t j = 0; j < cols; j++) {
            lua_geti(L, -1, (lua_Integer)j + 1);
            char buf[64];
            const char *s = cell_text(L, -1, buf, sizeof buf);
            if (s) {
                lua_pushstring(L, s);
            } else {
                size_t len;
                const char *t = luaL_tolstring(L, -1, &len);
                if (memchr(t, '\0', len)) {
                    lp_buf b = LP_BUF_INIT;
                    lp_utf8_sanitize(&b, t, len);
                    lua_pushstring(L, lp_buf_str(&b));
                    lp_buf_free(&b);
                    lua_replace(L, -2);
                }
            }
            cells[i * cols + j] = lua_tostring(L, -1);
            lua_rawseti(L, anchor, ++k);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return push_figure(L, lp_display_table(title, header, cells, rows, cols), "loupe.table");
}

/* ---- live plots --------------------------------------------------------------------------- */

/* A live line plot: points are kept in Lua tables in the object's uservalue (series name ->
 * {x = {...}, y = {...}}), and the output is republished at most every 0.25 s. */
typedef struct live {
    char id[64];
    double last; /* monotonic time of the last publish, or -1 */
    int published, done;
} live;


/* Builds the bundle of the live plot at idx (a new reference). */
static json_t *live_bundle(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    int top = lua_gettop(L);
    lua_getiuservalue(L, idx, 1); /* state: {opts = {...}, order = {names}, data = {name -> {x,y}}} */
    int st = lua_gettop(L);
    lua_getfield(L, st, "opts");
    lp_plot_opts o = plot_opts(L, lua_gettop(L));
    lua_getfield(L, st, "order");
    int order = lua_gettop(L);
    lua_getfield(L, st, "data");
    int data = lua_gettop(L);
    size_t ns = (size_t)luaL_len(L, order);
    lp_series *s = scratch(L, (ns ? ns : 1) * sizeof *s);
    for (size_t k = 0; k < ns; k++) {
        luaL_checkstack(L, 8, "too many series");
        lua_geti(L, order, (lua_Integer)k + 1);
        const char *name = lua_tostring(L, -1);
        lua_gettable(L, data); /* anchored: order[k] stays in the table */
        int ser = lua_gettop(L);
        size_t nx, ny;
        lua_getfield(L, ser, "x");
        const double *x = read_numbers(L, -1, "x", &nx);
        lua_getfield(L, ser, "y");
        const double *y = read_numbers(L, -1, "y", &ny);
        s[k] = (lp_series){name, x, y, nx < ny ? nx : ny};
    }
    json_t *b = lp_display_line(s, ns, &o);
    lua_settop(L, top);
    return b;
}

static void live_publish(lua_State *L, int idx, live *p)
{
    json_t *b = live_bundle(L, idx);
    if (!b)
        lp_lua_backend_error(L, "loupe.plot.live");
    lp_lua_publish(L, b, p->id, p->published);
    p->published = 1;
    p->last = lp_now_s();
}

static int live_add(lua_State *L)
{
    live *p = luaL_checkudata(L, 1, LIVE);
    double x = luaL_checknumber(L, 2), y = luaL_checknumber(L, 3);
    const char *name = luaL_optstring(L, 4, "value");
    lua_getiuservalue(L, 1, 1);
    lua_getfield(L, -1, "data");
    lua_getfield(L, -1, name);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_newtable(L);
        lua_setfield(L, -2, "x");
        lua_newtable(L);
        lua_setfield(L, -2, "y");
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);
        lua_getfield(L, -3, "order");
        lua_pushstring(L, name);
        lua_rawseti(L, -2, luaL_len(L, -2) + 1);
        lua_pop(L, 1);
    }
    lua_getfield(L, -1, "x");
    lua_pushnumber(L, x);
    lua_rawseti(L, -2, luaL_len(L, -2) + 1);
    lua_getfield(L, -2, "y");
    lua_pushnumber(L, y);
    lua_rawseti(L, -2, luaL_len(L, -2) + 1);
    lua_settop(L, 1);
    if (!p->published || lp_now_s() - p->last >= 0.25)
        live_publish(L, 1, p);
    return 0;
}

static int live_done(lua_State *L)
{
    live *p = luaL_checkudata(L, 1, LIVE);
    if (!p->done)
        live_publish(L, 1, p);
    p->done = 1;
    return 0;
}

static int live_display(lua_State *L)
{
    luaL_checkudata(L, 1, LIVE);
    json_t *b = live_bundle(L, 1);
    if (!b)
        return lp_lua_backend_error(L, "loupe.plot.live");
    push_bundle_table(L, b);
    json_decref(b);
    return 1;
}

static int live_tostring(lua_State *L)
{
    luaL_checkudata(L, 1, LIVE);
    json_t *b = live_bundle(L, 1);
    if (!b)
        return lp_lua_backend_error(L, "loupe.plot.live");
    lua_pushstring(L, json_string_value(json_object_get(b, "text/plain")));
    json_decref(b);
    return 1;
}

static int l_live(lua_State *L)
{
    static unsigned long counter;
    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TTABLE);
    live *p = lua_newuserdatauv(L, sizeof *p, 1);
    snprintf(p->id, sizeof p->id, "loupe-live-%ld-%lu", (long)getpid(), ++counter);
    p->last = -1;
    p->published = p->done = 0;
    luaL_setmetatable(L, LIVE);
    lua_createtable(L, 0, 3);
    if (lua_istable(L, 1))
        lua_pushvalue(L, 1);
    else
        lua_newtable(L);
    lua_setfield(L, -2, "opts");
    lua_newtable(L);
    lua_setfield(L, -2, "order");
    lua_newtable(L);
    lua_setfield(L, -2, "data");
    lua_setiuservalue(L, -2, 1);
    return 1;
}

/* ---- registration ------------------------------------------------------------------------- */

void lp_lua_open_plot(lua_State *L)
{
    int loupe = lua_gettop(L);
    luaL_newmetatable(L, FIGURE);
    lua_pushcfunction(L, figure_display);
    lua_setfield(L, -2, "__display");
    lua_pushcfunction(L, figure_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, figure_gc);
    lua_setfield(L, -2, "__gc");
    lp_lua_setdoc(L, -1, "Figure: shows itself as a picture; tostring(fig) is its text summary.");
    lua_pop(L, 1);

    luaL_newmetatable(L, LIVE);
    lua_newtable(L);
    lp_lua_setfunc(L, -1, "add", live_add,
                   "p:add(x, y [, series])\nAppends a point (series defaults to \"value\"); the plot is "
                   "redrawn in place at most 4 times a second.");
    lp_lua_setfunc(L, -1, "done", live_done, "p:done()\nPublishes the final state of the plot.");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, live_display);
    lua_setfield(L, -2, "__display");
    lua_pushcfunction(L, live_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    lua_newtable(L); /* loupe.plot */
    lp_lua_setdoc(L, -1, "loupe.plot: line, hist, scatter, bar, heatmap, live.\n"
                         "Data are Lua arrays of numbers (tensors to come). Options: title, xlabel, ylabel.");
    lp_lua_setfunc(L, -1, "line", l_line,
                   "loupe.plot.line{ys | y1, y2, ... [, x = xs, names = {...}, name = s, title =, xlabel =, ylabel =]} -> Figure\n"
                   "A line plot. {1, 2, 3}: one series; {{...}, {...}}: several; a series may also be "
                   "{y = ..., x = ..., name = ...}. NaN breaks a line and is counted as missing.");
    lp_lua_setfunc(L, -1, "hist", l_hist,
                   "loupe.plot.hist{values [, bins = 30, title =, xlabel =]} -> Figure\n"
                   "A histogram; values is an array (or values = ..., or the numbers themselves).");
    lp_lua_setfunc(L, -1, "scatter", l_scatter,
                   "loupe.plot.scatter{xs, ys [, labels] [, title =, xlabel =, ylabel =]} -> Figure\n"
                   "A scatter plot; also x = ..., y = ..., labels = ... (the first 40 labels are drawn).");
    lp_lua_setfunc(L, -1, "bar", l_bar,
                   "loupe.plot.bar{values [, labels] [, title =, xlabel =]} -> Figure\n"
                   "Horizontal bars (negative values to the left); also values = ..., labels = ....");
    lp_lua_setfunc(L, -1, "heatmap", l_heatmap,
                   "loupe.plot.heatmap{matrix [, row_labels =, col_labels =, rows = name, cols = name, "
                   "title =, titles =, scale = \"auto\"|\"diverging\"|\"sequential\"]} -> Figure\n"
                   "matrix: an array of rows. An array of matrices gives a grid with one shared scale "
                   "(titles = one per heatmap), e.g. every head of a layer. Hover shows values.");
    lp_lua_setfunc(L, -1, "live", l_live,
                   "loupe.plot.live{[title =, xlabel =, ylabel =]} -> LivePlot\n"
                   "A line plot that updates in place: p:add(step, value [, series]); p:done() at the end.");
    lua_setfield(L, loupe, "plot");
    lp_lua_setfunc(L, loupe, "tokens", l_tokens,
                   "loupe.tokens(strs [, values [, title]]) -> Figure\n"
                   "Tokens highlighted by value (blue negative, red positive); hover shows the value.");
    lp_lua_setfunc(L, loupe, "table", l_table,
                   "loupe.table(rows [, {header = {...}, title = s}]) -> Figure\n"
                   "A table from an array of rows (arrays of strings or numbers).");
    lua_settop(L, loupe);
}
