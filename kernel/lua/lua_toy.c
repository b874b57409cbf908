/* loupe.toy and the loupe.ToyModel userdata (see lua_toy.h): training with a live display,
 * metrics as Lua values, and the figures of display/toy.h. */
#include "lua_toy.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "color.h"
#include "core/error.h"
#include "figures.h"
#include "html.h"
#include "lua_api.h"
#include "progress.h"
#include "svg.h"
#include "toy.h"
#include "toy/superposition.h"
#include "util.h"

#define MT "loupe.ToyModel"
#define FIG "loupe.ToyFigure"
#define PUBLISH_INTERVAL 0.25 /* seconds: at most 4 updates a second */
#define MAX_HISTORY 2000      /* loss points kept per instance */

typedef struct toy_ud {
    lp_toy_model *t;
    double *hx; /* loss history: steps (nh) */
    float *hy;  /* nh x instances: loss averaged since the previous point */
    size_t nh, cap;
} toy_ud;


static toy_ud *check_toy(lua_State *L, int idx)
{
    toy_ud *u = luaL_checkudata(L, idx, MT);
    if (!u->t)
        luaL_error(L, "the toy model has been freed");
    return u;
}

/* The 1-based instance at argument idx, returned 0-based. */
static int check_instance(lua_State *L, toy_ud *u, int idx)
{
    lua_Integer i = luaL_checkinteger(L, idx);
    if (i < 1 || i > u->t->instances)
        luaL_error(L, "instance %d out of range (the model has %d: one per sparsity)", (int)i,
                   u->t->instances);
    return (int)i - 1;
}

/* A float scratch array owned by the Lua stack (freed by the GC even after an error). */
static float *scratch(lua_State *L, size_t count)
{
    return lua_newuserdatauv(L, (count ? count : 1) * sizeof(float), 0);
}

static void push_floats(lua_State *L, const float *v, size_t n)
{
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushnumber(L, v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

static const char *bundle_str(json_t *b, const char *mime)
{
    const char *s = json_string_value(json_object_get(b, mime));
    return s ? s : "";
}

/* Pushes a figure (a table {bundle = {mime = string}} with the FIG metatable), taking b. */
static void push_figure(lua_State *L, json_t *b)
{
    if (!b)
        lp_lua_backend_error(L, "loupe.toy");
    lua_createtable(L, 0, 1);
    lua_createtable(L, 0, 3);
    const char *mime;
    json_t *v;
    json_object_foreach(b, mime, v) {
        lua_pushstring(L, json_string_value(v) ? json_string_value(v) : "");
        lua_setfield(L, -2, mime);
    }
    json_decref(b);
    lua_setfield(L, -2, "bundle");
    luaL_setmetatable(L, FIG);
}

static int fig_display(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "bundle");
    return 1;
}

static int fig_tostring(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "bundle");
    if (lua_istable(L, -1))
        lua_getfield(L, -1, "text/plain");
    if (!lua_isstring(L, -1))
        lua_pushliteral(L, "<toy figure>");
    return 1;
}

/* Concatenates the text/plain and text/html of bundle part into plain and html (part freed). */
static int append_bundle(lp_buf *plain, lp_buf *html, json_t *part)
{
    if (!part)
        return -1;
    lp_buf_puts(plain, bundle_str(part, "text/plain"));
    lp_buf_puts(plain, "\n");
    lp_buf_puts(html, bundle_str(part, "text/html"));
    json_decref(part);
    return 0;
}

static json_t *loss_plot(toy_ud *u, const char *title)
{
    lp_toy_model *t = u->t;
    int I = t->instances;
    lp_series *s = calloc((size_t)I, sizeof *s);
    double *y = calloc(u->nh * (size_t)I + 1, sizeof *y);
    char(*names)[32] = calloc((size_t)I, sizeof *names);
    json_t *b = NULL;
    if (!s || !y || !names) {
        lp_set_error_code(LP_ERR_NOMEM, "cannot allocate the loss plot");
        goto done;
    }
    for (int k = 0; k < I; k++) {
        lp_toy_sparsity_label(names[k], sizeof names[k], t->sparsity[k]);
        for (size_t j = 0; j < u->nh; j++) {
            double v = u->hy[j * I + k];
            y[(size_t)k * u->nh + j] = v > 0 ? log10(v) : NAN;
        }
        s[k] = (lp_series){names[k], u->hx, y + (size_t)k * u->nh, u->nh};
    }
    lp_plot_opts o = {title, "step", "log10 loss"};
    b = lp_display_line(s, (size_t)I, &o);
done:
    free(s);
    free(y);
    free(names);
    return b;
}

/* ---- training ----------------------------------------------------------------------------- */

typedef struct train_ctx {
    lua_State *L;
    toy_ud *u;
    long start, steps;
    double t0, last;
    int published;
    char id[64];
} train_ctx;

static json_t *train_bundle(train_ctx *c, int finished)
{
    json_t *p = lp_display_progress("superposition", (double)(c->u->t->step - c->start),
                                    (double)c->steps, lp_now_s() - c->t0, finished);
    if (!p)
        return NULL;
    lp_buf plain = LP_BUF_INIT, html = LP_BUF_INIT;
    append_bundle(&plain, &html, p);
    if (c->u->nh > 0 && append_bundle(&plain, &html, loss_plot(c->u, "training loss")) < 0) {
        lp_buf_free(&plain);
        lp_buf_free(&html);
        return NULL;
    }
    return lp_bundle_from_bufs(&plain, &html);
}

static void train_publish(train_ctx *c, int finished)
{
    json_t *b = train_bundle(c, finished);
    if (!b)
        lp_lua_backend_error(c->L, "loupe.toy");
    lp_lua_publish(c->L, b, c->id, c->published);
    c->published = 1;
    c->last = lp_now_s();
}

static int on_progress(void *ud, long step, long target, const float *loss, int instances)
{
    train_ctx *c = ud;
    toy_ud *u = c->u;
    if (u->nh == u->cap) {
        if (u->cap >= MAX_HISTORY) { /* keep every other point */
            for (size_t j = 0; j < u->nh / 2; j++) {
                u->hx[j] = u->hx[2 * j + 1];
                memcpy(u->hy + j * instances, u->hy + (2 * j + 1) * instances,
                       (size_t)instances * sizeof(float));
            }
            u->nh /= 2;
        } else {
            size_t cap = u->cap ? 2 * u->cap : 64;
            double *hx = realloc(u->hx, cap * sizeof *hx);
            if (hx)
                u->hx = hx;
            float *hy = hx ? realloc(u->hy, cap * (size_t)instances * sizeof *hy) : NULL;
            if (!hx || !hy) {
                lp_set_error_code(LP_ERR_NOMEM, "cannot allocate the loss history");
                return 1;
            }
            u->hy = hy;
            u->cap = cap;
        }
    }
    u->hx[u->nh] = (double)step;
    memcpy(u->hy + u->nh * instances, loss, (size_t)instances * sizeof(float));
    u->nh++;
    if (c->L && (!c->published || lp_now_s() - c->last >= PUBLISH_INTERVAL))
        train_publish(c, 0); /* a Lua error here unwinds through lp_toy_train: it holds nothing */
    return 0;
}

/* Trains the model at idx for steps; publishes the progress display when show. */
static void train(lua_State *L, int idx, long steps, int show)
{
    static unsigned long counter;
    toy_ud *u = check_toy(L, idx);
    train_ctx c = {show ? L : NULL, u, u->t->step, steps, lp_now_s(), 0, 0, ""};
    snprintf(c.id, sizeof c.id, "loupe-toy-%ld-%lu", (long)getpid(), ++counter);
    int rc = lp_toy_train(u->t, steps, on_progress, &c);
    if (show && (c.published || rc == 0))
        train_publish(&c, rc == 0); /* the final state, also after an interrupt */
    if (rc < 0)
        lp_lua_backend_error(L, NULL);
}

/* ---- loupe.toy.superposition ------------------------------------------------------------- */

static lua_Number opt_number(lua_State *L, int t, const char *k, lua_Number def)
{
    lua_getfield(L, t, k);
    lua_Number v = lua_isnil(L, -1) ? def : lua_tonumber(L, -1);
    if (!lua_isnil(L, -1) && !lua_isnumber(L, -1))
        luaL_error(L, "loupe.toy.superposition: %s must be a number", k);
    lua_pop(L, 1);
    return v;
}

/* Reads field k of table t: a number (filled into all count entries, or expanded as
 * ratio^(i-1) when ratio) or an array of count numbers; *count = its length when 0. */
static float *opt_array(lua_State *L, int t, const char *k, int *count, int ratio, float def)
{
    lua_getfield(L, t, k);
    int v = lua_gettop(L);
    if (lua_istable(L, v) && *count == 0)
        *count = (int)luaL_len(L, v);
    if (*count < 1 || *count > 100000)
        luaL_error(L, "loupe.toy.superposition: %s needs 1 to 100000 entries", k);
    float *out = scratch(L, (size_t)*count);
    lua_replace(L, v); /* the scratch array takes the field's place on the stack */
    lua_getfield(L, t, k);
    if (lua_istable(L, -1)) {
        if (luaL_len(L, -1) != *count)
            luaL_error(L, "loupe.toy.superposition: %s has %d entries, expected %d", k,
                       (int)luaL_len(L, -1), *count);
        for (int i = 0; i < *count; i++) {
            lua_geti(L, -1, i + 1);
            if (!lua_isnumber(L, -1))
                luaL_error(L, "loupe.toy.superposition: %s[%d] is not a number", k, i + 1);
            out[i] = (float)lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    } else {
        float x = lua_isnil(L, -1) ? def : (float)lua_tonumber(L, -1);
        if (!lua_isnil(L, -1) && !lua_isnumber(L, -1))
            luaL_error(L, "loupe.toy.superposition: %s must be a number or an array", k);
        for (int i = 0; i < *count; i++)
            out[i] = ratio ? powf(x, (float)i) : x;
    }
    lua_pop(L, 1);
    return out; /* anchored on the stack at v */
}

static int l_superposition(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lp_toy_config c = lp_toy_defaults((int)opt_number(L, 1, "n", 5), (int)opt_number(L, 1, "m", 2));
    c.batch = (int)opt_number(L, 1, "batch", 1024);
    c.lr = (float)opt_number(L, 1, "lr", 1e-2);
    c.weight_decay = (float)opt_number(L, 1, "weight_decay", 0);
    c.seed = (uint64_t)opt_number(L, 1, "seed", 0);
    lua_Number steps = opt_number(L, 1, "steps", 3000);
    if (!(steps >= 0 && steps <= 1e9))
        return luaL_error(L, "loupe.toy.superposition: steps must be in 0..1e9");
    lua_getfield(L, 1, "progress");
    int show = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    int I = 0, n = c.n;
    lua_getfield(L, 1, "sparsity");
    if (!lua_istable(L, -1))
        I = 1; /* one instance */
    lua_pop(L, 1);
    if (n < 1)
        return luaL_error(L, "loupe.toy.superposition: n must be >= 1");
    c.sparsity = opt_array(L, 1, "sparsity", &I, 0, 0);
    c.importance = opt_array(L, 1, "importance", &n, 1, 0.9f);
    c.instances = I;
    c.report_every = steps > 400 ? (int)ceil(steps / 400) : 1;
    toy_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, MT);
    u->t = lp_toy_new(&c);
    if (!u->t)
        return lp_lua_backend_error(L, "loupe.toy.superposition");
    int ud = lua_gettop(L);
    lua_getglobal(L, "loupe"); /* loupe.toy.last: the model survives an interrupt */
    if (lua_istable(L, -1) && lua_getfield(L, -1, "toy") == LUA_TTABLE) {
        lua_pushvalue(L, ud);
        lua_setfield(L, -2, "last");
    }
    lua_settop(L, ud);
    train(L, ud, (long)steps, show);
    return 1;
}

/* ---- methods ------------------------------------------------------------------------------- */

static int m_train(lua_State *L)
{
    check_toy(L, 1);
    lua_Integer steps = luaL_checkinteger(L, 2);
    if (steps < 0 || steps > 1000000000)
        return luaL_error(L, "train: steps must be in 0..1e9");
    int show = lua_isnoneornil(L, 3) || lua_toboolean(L, 3);
    train(L, 1, (long)steps, show);
    lua_settop(L, 1);
    return 1;
}

typedef void (*metric_fn)(float *out, const float *W, int m, int n);

static int push_metric(lua_State *L, metric_fn f)
{
    toy_ud *u = check_toy(L, 1);
    int k = check_instance(L, u, 2);
    float *v = scratch(L, (size_t)u->t->n);
    f(v, lp_toy_weights(u->t, k), u->t->m, u->t->n);
    push_floats(L, v, (size_t)u->t->n);
    return 1;
}

static int m_norms(lua_State *L) { return push_metric(L, lp_toy_feature_norms); }
static int m_superposition(lua_State *L) { return push_metric(L, lp_toy_superposition); }
static int m_dimensionality(lua_State *L) { return push_metric(L, lp_toy_dimensionality); }

static int m_dims_per_feature(lua_State *L)
{
    toy_ud *u = check_toy(L, 1);
    lp_toy_model *t = u->t;
    if (!lua_isnoneornil(L, 2)) {
        int k = check_instance(L, u, 2);
        lua_pushnumber(L, lp_toy_dims_per_feature(lp_toy_weights(t, k), t->m, t->n));
        return 1;
    }
    lua_createtable(L, t->instances, 0);
    for (int k = 0; k < t->instances; k++) {
        lua_pushnumber(L, lp_toy_dims_per_feature(lp_toy_weights(t, k), t->m, t->n));
        lua_rawseti(L, -2, k + 1);
    }
    return 1;
}

static int m_weights(lua_State *L)
{
    toy_ud *u = check_toy(L, 1);
    int k = check_instance(L, u, 2);
    lp_toy_model *t = u->t;
    lua_createtable(L, t->m, 0);
    for (int r = 0; r < t->m; r++) {
        push_floats(L, lp_toy_weights(t, k) + (size_t)r * t->n, (size_t)t->n);
        lua_rawseti(L, -2, r + 1);
    }
    return 1;
}

static int m_bias(lua_State *L)
{
    toy_ud *u = check_toy(L, 1);
    int k = check_instance(L, u, 2);
    push_floats(L, lp_toy_bias(u->t, k), (size_t)u->t->n);
    return 1;
}

static int m_loss(lua_State *L)
{
    toy_ud *u = check_toy(L, 1);
    int k = check_instance(L, u, 2);
    lua_pushnumber(L, u->nh ? u->hy[(u->nh - 1) * u->t->instances + k] : NAN);
    return 1;
}

static int m_wtw(lua_State *L)
{
    toy_ud *u = check_toy(L, 1);
    int k = check_instance(L, u, 2);
    lp_toy_model *t = u->t;
    float *v = scratch(L, (size_t)t->n * t->n);
    lp_toy_wtw(v, lp_toy_weights(t, k), t->m, t->n);
    char title[64];
    snprintf(title, sizeof title, "W^T W, instance %d (S = %.3g)", k + 1, (double)t->sparsity[k]);
    lp_heatmap_opts o = {title, NULL, NULL, "feature", "feature", LP_SCALE_DIVERGING};
    push_figure(L, lp_display_heatmap(v, (size_t)t->n, (size_t)t->n, &o));
    return 1;
}

static int m_geometry(lua_State *L)
{
    toy_ud *u = check_toy(L, 1);
    int k = check_instance(L, u, 2);
    if (u->t->m != 2)
        return luaL_error(L, "geometry: the picture needs m = 2 hidden dimensions (this model "
                             "has %d); see r:wtw(i) and r:dimensionality(i)", u->t->m);
    push_figure(L, lp_display_toy_geometry(u->t, k));
    return 1;
}

/* Dimensions per feature (a line over the sweep) and each feature's dimensionality (a
 * scatter), against 1/(1-S) on a log scale, as in the paper's figure. */
static int m_dims_plot(lua_State *L)
{
    toy_ud *u = check_toy(L, 1);
    lp_toy_model *t = u->t;
    int I = t->instances, n = t->n;
    double *v = lua_newuserdatauv(L, sizeof(double) * ((size_t)I * 2 + (size_t)I * n * 2), 0);
    double *x = v, *y = v + I, *sx = v + 2 * I, *sy = sx + (size_t)I * n;
    float *d = scratch(L, (size_t)n);
    for (int k = 0; k < I; k++) {
        double S = t->sparsity[k];
        x[k] = S < 1 ? log10(1 / (1 - S)) : NAN;
        y[k] = lp_toy_dims_per_feature(lp_toy_weights(t, k), t->m, n);
        lp_toy_dimensionality(d, lp_toy_weights(t, k), t->m, n);
        for (int i = 0; i < n; i++) {
            sx[(size_t)k * n + i] = x[k];
            sy[(size_t)k * n + i] = d[i];
        }
    }
    lp_series s = {"m / ||W||_F^2", x, y, (size_t)I};
    lp_plot_opts o1 = {"dimensions per feature", "log10 1/(1-S)", "dims per feature"};
    lp_plot_opts o2 = {"feature dimensionality D_i", "log10 1/(1-S)", "D_i"};
    lp_buf plain = LP_BUF_INIT, html = LP_BUF_INIT;
    if (append_bundle(&plain, &html, lp_display_line(&s, 1, &o1)) < 0 ||
        append_bundle(&plain, &html, lp_display_scatter(sx, sy, (size_t)I * n, NULL, &o2)) < 0) {
        lp_buf_free(&plain);
        lp_buf_free(&html);
        return lp_lua_backend_error(L, "dims_plot");
    }
    push_figure(L, lp_bundle_from_bufs(&plain, &html));
    return 1;
}

/* ---- the summary: __display and __tostring ----------------------------------------------- */

static json_t *summary_bundle(lua_State *L, toy_ud *u)
{
    lp_toy_model *t = u->t;
    float *loss = scratch(L, (size_t)t->instances);
    for (int k = 0; k < t->instances; k++)
        loss[k] = u->nh ? u->hy[(u->nh - 1) * t->instances + k] : NAN;
    return lp_display_toy_summary(t, loss);
}

static int toy_display(lua_State *L)
{
    toy_ud *u = check_toy(L, 1);
    json_t *b = summary_bundle(L, u);
    push_figure(L, b);
    lua_getfield(L, -1, "bundle");
    return 1;
}

static int toy_tostring(lua_State *L)
{
    toy_ud *u = check_toy(L, 1);
    lua_pushfstring(L, "ToyModel(n = %d, m = %d, %d instances, step %d)", u->t->n, u->t->m,
                    u->t->instances, (int)u->t->step);
    return 1;
}

static int toy_gc(lua_State *L)
{
    toy_ud *u = luaL_checkudata(L, 1, MT);
    lp_toy_free(u->t);
    free(u->hx);
    free(u->hy);
    memset(u, 0, sizeof *u);
    return 0;
}

/* Fields (n, m, instances, step, sparsity) and then methods. */
static int toy_index(lua_State *L)
{
    toy_ud *u = check_toy(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (!strcmp(k, "n"))
        lua_pushinteger(L, u->t->n);
    else if (!strcmp(k, "m"))
        lua_pushinteger(L, u->t->m);
    else if (!strcmp(k, "instances"))
        lua_pushinteger(L, u->t->instances);
    else if (!strcmp(k, "step"))
        lua_pushinteger(L, u->t->step);
    else if (!strcmp(k, "sparsity"))
        push_floats(L, u->t->sparsity, (size_t)u->t->instances);
    else if (!strcmp(k, "importance"))
        push_floats(L, u->t->importance, (size_t)u->t->n);
    else
        lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

void lp_lua_open_toy(lua_State *L)
{
    luaL_newmetatable(L, FIG);
    lua_pushcfunction(L, fig_display);
    lua_setfield(L, -2, "__display");
    lua_pushcfunction(L, fig_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newmetatable(L, MT);
    lp_lua_setdoc(L, -1, "ToyModel: a sweep of toy models of superposition, one instance per "
                         "sparsity.\nFields: n, m, instances, step, sparsity, importance. Shows "
                         "W^T W, the bias and the feature norms of every instance.");
    lua_newtable(L); /* methods */
    lp_lua_setfunc(L, -1, "train", m_train,
                   "r:train(steps [, progress]) -> r\nContinues training for steps more steps "
                   "(with a progress bar unless progress = false).");
    lp_lua_setfunc(L, -1, "wtw", m_wtw,
                   "r:wtw(i) -> Figure\nThe n x n matrix W^T W of instance i as a heatmap: the "
                   "diagonal is ||W_i||^2, off-diagonal entries are interference.");
    lp_lua_setfunc(L, -1, "geometry", m_geometry,
                   "r:geometry(i) -> Figure\nFor m = 2: each feature's column W_i drawn from the "
                   "origin (the pentagon at high sparsity for n = 5).");
    lp_lua_setfunc(L, -1, "norms", m_norms,
                   "r:norms(i) -> array\nThe feature norms ||W_i|| of instance i (1 = represented, "
                   "0 = dropped).");
    lp_lua_setfunc(L, -1, "superposition", m_superposition,
                   "r:superposition(i) -> array\nsum over j != i of (W_i_hat . W_j)^2 per feature: "
                   "0 when feature i has a dimension of its own.");
    lp_lua_setfunc(L, -1, "dimensionality", m_dimensionality,
                   "r:dimensionality(i) -> array\nD_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2: 1 for a "
                   "dimension of its own, 1/2 antipodal pair, 2/5 pentagon, 0 dropped.");
    lp_lua_setfunc(L, -1, "dims_per_feature", m_dims_per_feature,
                   "r:dims_per_feature([i]) -> number | array\nm / ||W||_F^2 of instance i, or of "
                   "every instance when i is omitted.");
    lp_lua_setfunc(L, -1, "dims_plot", m_dims_plot,
                   "r:dims_plot() -> Figure\nDimensions per feature and each feature's "
                   "dimensionality against 1/(1-S) (log scale) over the sweep.");
    lp_lua_setfunc(L, -1, "weights", m_weights,
                   "r:weights(i) -> {{...}, ...}\nW of instance i as m rows of n numbers (column "
                   "j is feature j's direction).");
    lp_lua_setfunc(L, -1, "bias", m_bias, "r:bias(i) -> array\nThe bias b of instance i (n numbers).");
    lp_lua_setfunc(L, -1, "loss", m_loss,
                   "r:loss(i) -> number\nInstance i's loss, averaged over the last reported steps.");
    lua_pushcclosure(L, toy_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, toy_display);
    lua_setfield(L, -2, "__display");
    lua_pushcfunction(L, toy_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, toy_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    lua_newtable(L); /* loupe.toy */
    lp_lua_setdoc(L, -1, "loupe.toy: toy models from the interpretability papers.\n"
                         "loupe.toy.superposition{...}: Elhage et al. 2022, Toy Models of Superposition.");
    lp_lua_setfunc(L, -1, "superposition", l_superposition,
        "loupe.toy.superposition{n = 5, m = 2, sparsity = {0, 0.7, 0.9, 0.97, 0.99}, importance = 0.9,\n"
        "                        steps = 3000, batch = 1024, lr = 1e-2, weight_decay = 0, seed = 0,\n"
        "                        progress = true} -> ToyModel\n"
        "Trains toy models of superposition, one per sparsity S, all at once: x_i = 0 with\n"
        "probability S else U[0,1]; h = W x (W is m x n); x' = ReLU(W^T h + b); loss\n"
        "sum_i I_i (x_i - x'_i)^2 with importance I_i = importance^(i-1) (or an array of n).\n"
        "Shows a progress bar and the loss per instance while it trains. An interrupt stops\n"
        "after the last finished step; the model is kept in loupe.toy.last (r:train(k) goes on).");
    lua_setfield(L, -2, "toy");
}
