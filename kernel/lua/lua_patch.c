/* m:patch_sweep: activation patching over every layer and position (or head), computed by
 * lp_patch_sweep (backend/model/patch.h); this file reads the arguments, hands the backend a
 * metric callback that calls the user's Lua function and a progress callback that shows a bar,
 * and builds the figure.
 *
 * Lua errors never cross the backend's frames (a longjmp over them would leak its runs): the
 * callbacks run Lua code only inside lua_pcall, turn a failure into an error code with the
 * message set, and the backend frees what it holds and returns it. The result sits in a
 * userdata that frees it when collected, so an error raised while building the figure leaks
 * nothing either. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "figures.h"
#include "lua_analysis.h"
#include "lua_api.h"
#include "lua_tensor.h"
#include "model/patch.h"
#include "progress.h"
#include "util.h"

#define RESULT_MT "loupe.PatchResult" /* a userdata box that frees an lp_patch_result */

/* ---- the metric: the user's function, called protected ---- */

typedef struct {
    lua_State *L;
    int fn;                 /* stack index of the function in the binding's frame */
    const lp_tensor *logits; /* of the run being measured */
    double value;
    int failed;
} lua_metric;

/* (fn, ctx): calls fn(logits) and stores its number; failures are recorded, not raised. */
static int metric_k(lua_State *L)
{
    lua_metric *c = lua_touserdata(L, 2);
    lua_pushvalue(L, 1);
    lp_lua_push_tensor(L, lp_tensor_alias(c->logits));
    c->failed = 1;
    int st = lua_pcall(L, 1, 1, 0);
    if (st != LUA_OK) { /* the code of what the function raised goes on with its message */
        lp_err code = lp_lua_caught_code(L, st, -1);
        if (code == LP_ERR_INTERRUPTED)
            lp_set_error_code(code, "interrupted");
        else
            lp_set_error_code(code == LP_ERR_NONE ? LP_ERR_INPUT : code, "metric: %s", luaL_tolstring(L, -1, NULL));
        return 0;
    }
    int ok;
    double v = lua_tonumberx(L, -1, &ok);
    if (!ok) {
        lp_set_error("the metric must return a number, not a %s", luaL_typename(L, -1));
        return 0;
    }
    c->value = v;
    c->failed = 0;
    return 0;
}

static int call_metric(void *ud, const lp_tensor *logits, double *value)
{
    lua_metric *c = ud;
    lua_State *L = c->L;
    if (!lua_checkstack(L, 4))
        return lp_set_error("metric: the Lua stack is full");
    int top = lua_gettop(L);
    c->logits = logits;
    c->failed = 1;
    lua_pushcfunction(L, metric_k);
    lua_pushvalue(L, c->fn);
    lua_pushlightuserdata(L, c);
    int st = lua_pcall(L, 2, 0, 0);
    if (st != LUA_OK) { /* raised outside the user's function: memory */
        lp_err code = lp_lua_caught_code(L, st, -1);
        if (code == LP_ERR_INTERRUPTED)
            lp_set_error_code(code, "interrupted");
        else
            lp_set_error_code(code == LP_ERR_NONE ? LP_ERR_INPUT : code, "metric: %s",
                              lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error");
    }
    lua_settop(L, top);
    if (c->failed)
        return -1;
    *value = c->value;
    return 0;
}

/* ---- progress: shown when the sweep takes more than a moment ---- */

typedef struct {
    lua_State *L;
    double t0, last;
    int started;
    char id[48], label[96];
} sweep_progress;

static int publish_k(lua_State *L)
{
    sweep_progress *p = lua_touserdata(L, 1);
    json_t *b = lp_display_progress(p->label, lua_tonumber(L, 2), lua_tonumber(L, 3), lp_now_s() - p->t0,
                                    lua_toboolean(L, 4));
    if (b)
        lp_lua_publish(L, b, p->id, p->started);
    return 0;
}

/* Publishes (protected: a failing display never stops the sweep) when due: after the first
 * half second, at most every quarter second; state > 0 finished, < 0 stopped. */
static void on_progress(void *ud, long done, long total, int state)
{
    sweep_progress *p = ud;
    lua_State *L = p->L;
    double t = lp_now_s();
    int due = state > 0 ? p->started                      /* the last state of a bar shown */
              : state < 0 ? p->started || t - p->t0 >= 0.5 /* stopped: where, once it was long */
                          : t - p->t0 >= 0.5 && (!p->started || t - p->last >= 0.25);
    if (!due || !lua_checkstack(L, 6))
        return;
    lua_pushcfunction(L, publish_k);
    lua_pushlightuserdata(L, p);
    lua_pushnumber(L, (lua_Number)done);
    lua_pushnumber(L, (lua_Number)total);
    lua_pushboolean(L, state > 0);
    if (lua_pcall(L, 4, 0, 0) != LUA_OK)
        lua_pop(L, 1);
    p->started = 1;
    p->last = t;
}

/* ---- the sweep ---- */

static int opt_bool(lua_State *L, int t, const char *k, const char *alt, int def)
{
    lua_getfield(L, t, k);
    if (lua_isnil(L, -1) && alt) {
        lua_pop(L, 1);
        lua_getfield(L, t, alt);
    }
    int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static int result_gc(lua_State *L)
{
    lp_patch_result_free(lua_touserdata(L, 1));
    return 0;
}

int lp_lua_model_patch_sweep(lua_State *L)
{
    model_ud *u = check_model(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    /* prompts */
    lua_getfield(L, 2, "clean");
    lua_getfield(L, 2, "corrupt");
    if (lua_isnil(L, 3) || lua_isnil(L, 4))
        return luaL_error(L, "patch_sweep: clean = ... and corrupt = ... (text or token ids) are required");
    int B1, T, B2, T2;
    int32_t *clean = lp_lua_model_tokens(L, u, 3, &B1, &T);
    int32_t *corrupt = lp_lua_model_tokens(L, u, 4, &B2, &T2);
    if (B1 != 1 || B2 != 1)
        return luaL_error(L, "patch_sweep: one clean and one corrupt prompt (not a batch)");
    if (T != T2)
        return luaL_error(L, "patch_sweep: the clean and corrupt prompts must have the same number of tokens "
                             "(clean %d, corrupt %d)", T, T2);
    /* hook kind */
    lp_patch_opts o = {.token = -1, .baseline = -1, .pos = -1};
    lua_getfield(L, 2, "hook");
    if (!(o.kind = lp_patch_kind_find(luaL_optstring(L, -1, "resid_pre"))))
        return lp_lua_backend_error(L, "patch_sweep");
    o.positions = opt_bool(L, 2, "positions", NULL, -1);
    o.normalize = opt_bool(L, 2, "normalize", "normalise", 1);
    /* metric */
    lua_metric lm = {L, 0, NULL, 0, 0};
    lua_getfield(L, 2, "metric");
    int mi = lua_gettop(L);
    if (lua_isfunction(L, mi)) {
        lm.fn = mi;
        o.metric = call_metric, o.metric_ud = &lm;
    } else if (lua_istable(L, mi)) {
        if (lua_getfield(L, mi, "token") == LUA_TNIL)
            return luaL_error(L, "patch_sweep: metric = {token = ..., baseline = ...} needs a token");
        o.token = lp_lua_analysis_token(L, u, -1, "patch_sweep");
        if (lua_getfield(L, mi, "baseline") != LUA_TNIL)
            o.baseline = lp_lua_analysis_token(L, u, -1, "patch_sweep");
        lua_getfield(L, mi, "pos");
        lua_Integer p = luaL_optinteger(L, -1, -1);
        if (p < 0)
            p += T + 1;
        if (p < 1 || p > T)
            return luaL_error(L, "patch_sweep: metric pos must be in 1..%d (or negative from the end)", T);
        o.pos = (int)p - 1;
        lua_pop(L, 3);
    } else {
        return luaL_error(L, "patch_sweep: metric = function(logits) -> number, or {token = ..., baseline = ...}, "
                             "is required");
    }
    sweep_progress pg = {.L = L, .t0 = lp_now_s()};
    snprintf(pg.label, sizeof pg.label, "patch_sweep %s", o.kind->key);
    char uuid[37];
    lp_uuid(uuid);
    snprintf(pg.id, sizeof pg.id, "loupe-sweep-%.12s", uuid);
    o.progress = on_progress, o.progress_ud = &pg;
    /* the sweep, into a box that frees it */
    lp_patch_result *res = lua_newuserdatauv(L, sizeof *res, 0);
    memset(res, 0, sizeof *res);
    if (luaL_newmetatable(L, RESULT_MT)) {
        lua_pushcfunction(L, result_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if (lp_patch_sweep(u->m, clean, corrupt, T, &o, res) < 0)
        return lp_last_error_code() == LP_ERR_INTERRUPTED || lp_interrupted() ? lp_lua_raise(L, LP_ERR_INTERRUPTED, "interrupted")
                                                                                 : lp_lua_backend_error(L, "patch_sweep");
    const lp_patch_kind *kind = res->kind;
    int per_head = res->per_head, positions = res->positions, NH = res->n_heads;
    int rows = res->rows, cols = res->cols;
    size_t N = (size_t)rows * cols;
    float *fval = res->values, *fraw = res->raw;
    double m_clean = res->clean, m_corrupt = res->corrupt, span = m_clean - m_corrupt;
    int normalize = o.normalize;
    long nruns = res->runs;
    /* labels: positions as tokens (clean, and "clean→corrupt" where they differ) */
    lua_createtable(L, cols, 0);
    int labt = lua_gettop(L);
    const char **clab = lua_newuserdatauv(L, (size_t)cols * sizeof *clab, 0);
    for (int i = 0; i < cols; i++) {
        char b1[64], b2[64];
        if (per_head && !positions) {
            lua_pushfstring(L, "H%d", i);
        } else if (!positions) {
            lua_pushliteral(L, "all positions");
        } else if (clean[i] == corrupt[i]) {
            lua_pushstring(L, lp_lua_token_show(u, clean[i], b1, sizeof b1));
        } else {
            lua_pushfstring(L, "%s\xe2\x86\x92%s", lp_lua_token_show(u, clean[i], b1, sizeof b1),
                            lp_lua_token_show(u, corrupt[i], b2, sizeof b2));
        }
        clab[i] = lua_tostring(L, -1);
        lua_rawseti(L, labt, i + 1);
    }
    lua_createtable(L, rows, 0);
    int rowt = lua_gettop(L);
    const char **rlab = lua_newuserdatauv(L, (size_t)rows * sizeof *rlab, 0);
    for (int i = 0; i < rows; i++) {
        if (per_head && positions)
            lua_pushfstring(L, "L%dH%d", i / NH, i % NH);
        else
            lua_pushfstring(L, "%d", i);
        rlab[i] = lua_tostring(L, -1);
        lua_rawseti(L, rowt, i + 1);
    }
    char title[256];
    snprintf(title, sizeof title, "Activation patching of %s (clean into corrupt)%s", kind->fmt + 10,
             normalize ? ": (metric - corrupt) / (clean - corrupt)" : ": metric");
    lp_heatmap_opts ho = {title, rlab, clab, per_head && positions ? "layer, head" : "layer",
                          per_head && !positions ? "head" : "position", LP_SCALE_AUTO};
    char *taken = lua_newuserdatauv(L, N, 0); /* before anything C owns: nothing raises after */
    memset(taken, 0, N);
    json_t *hm = lp_display_heatmap(fval, (size_t)rows, (size_t)cols, &ho);
    lp_buf plain = LP_BUF_INIT, html = LP_BUF_INIT;
    lp_buf_printf(&plain, "%s\n%d x %d patches (%ld needed a run; the rest patch in equal values); metric: clean %.6g, "
                          "corrupt %.6g%s\nlargest:", title, rows, cols, nruns, m_clean, m_corrupt,
                  normalize && span == 0 ? " (equal: the normalised values are NaN)" : "");
    for (int k = 0; k < 5; k++) { /* the largest |values|, by repeated scans */
        size_t best = N;
        for (size_t i = 0; i < N; i++)
            if (!taken[i] && isfinite(fval[i]) && (best == N || fabsf(fval[i]) > fabsf(fval[best])))
                best = i;
        if (best == N)
            break;
        taken[best] = 1;
        lp_buf_printf(&plain, " [%s%s, %s%s%s] %.4g", per_head && positions ? "" : "layer ", rlab[best / cols],
                      positions ? "'" : "", clab[best % cols], positions ? "'" : "", (double)fval[best]);
    }
    lp_buf_putc(&plain, '\n');
    lp_buf_puts(&html, hm ? json_string_value(json_object_get(hm, "text/html")) : "");
    json_t *bundle = hm ? lp_bundle_from_bufs(&plain, &html) : NULL;
    if (!hm) {
        lp_buf_free(&plain);
        lp_buf_free(&html);
    }
    json_decref(hm);
    lp_lua_analysis_figure(L, bundle, "patch_sweep");
    int fig = lua_gettop(L);
    lp_lua_push_tensor(L, lp_tensor_from_data(2, (int64_t[]){rows, cols}, fval, LP_DEVICE_CPU));
    lua_setfield(L, fig, "values");
    lp_lua_push_tensor(L, lp_tensor_from_data(2, (int64_t[]){rows, cols}, fraw, LP_DEVICE_CPU));
    lua_setfield(L, fig, "raw");
    lua_pushnumber(L, m_clean);
    lua_setfield(L, fig, "clean");
    lua_pushnumber(L, m_corrupt);
    lua_setfield(L, fig, "corrupt");
    lua_pushvalue(L, labt);
    lua_setfield(L, fig, "labels");
    lua_pushvalue(L, rowt);
    lua_setfield(L, fig, "row_labels");
    lua_pushstring(L, kind->key);
    lua_setfield(L, fig, "hook");
    lua_settop(L, fig);
    return 1;
}
