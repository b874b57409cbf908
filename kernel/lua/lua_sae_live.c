/* The run of loupe.sae.train (lua_sae_train.h): lp_sae_run_go with its reports turned into
 * live figures and a progress bar (as loupe.train shows a model's), and the history each SAE
 * carries afterwards (sae.history, through lua_dict's extra fields). */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "lua_api.h"
#include "lua_dict.h"
#include "lua_sae_train.h"
#include "progress.h"
#include "util.h"

/* ---- the live figure and the progress bar ----------------------------------------------- */

static const char *const PLOTS[4][2] = {
    {"SAE loss", "loss"}, {"L0 (features per token)", "L0"},
    {"explained variance", "explained variance"}, {"dead features", "dead"}};

typedef struct {
    lua_State *L;
    sae_training *tr;
    int live, plots; /* plots: stack index of the first of 4 live figures */
    char bar_id[48];
    double t0, last;
    int bar_started;
    double loss;
    const lp_sae_progress *p;
    int failed;
    char err[600];
    lp_err code;
} progress_ctx;

static void bar_publish(lua_State *L, progress_ctx *c, long step, int final)
{
    char label[96];
    snprintf(label, sizeof label, "sae · loss %.4g", c->loss);
    json_t *bundle = lp_display_progress(label, (double)step, (double)c->tr->total, lp_now_s() - c->t0, final);
    if (!bundle)
        return;
    lp_lua_publish(L, bundle, c->bar_id, c->bar_started);
    c->bar_started = 1;
    c->last = lp_now_s();
}

static void plot_add(lua_State *L, int plot, double x, double y, const char *series)
{
    lua_getfield(L, plot, "add");
    lua_pushvalue(L, plot);
    lua_pushnumber(L, x);
    lua_pushnumber(L, y);
    lua_pushstring(L, series[0] ? series : "value");
    lua_call(L, 4, 0);
}

static void plot_step(lua_State *L, int plots, const char *label, double tokens, double loss, double l0, double ev,
                      double dead)
{
    double v[4] = {loss, l0, ev, dead};
    for (int i = 0; i < 4; i++)
        plot_add(L, plots + i, tokens, v[i], label);
}

/* progress_body(ctx, plot1, .., plot4), under lua_pcall: every SAE's step on the live
 * figures, then the bar a few times a second. */
static int progress_body(lua_State *L)
{
    progress_ctx *c = lua_touserdata(L, 1);
    const lp_sae_progress *p = c->p;
    c->loss = p->stats[0].loss.total;
    for (int i = 0; i < p->n; i++) {
        const lp_sae_step_stats *s = &p->stats[i];
        plot_step(L, 2, c->tr->labels[i], (double)p->tokens, s->loss.total, s->loss.l0,
                  s->explained_variance, s->dead);
    }
    if (lp_now_s() - c->last >= 0.25)
        bar_publish(L, c, p->step, 0);
    return 0;
}

static int on_progress(void *ud, const lp_sae_progress *p)
{
    progress_ctx *c = ud;
    c->p = p;
    if (!c->live)
        return 0;
    lua_State *L = c->L;
    lua_pushcfunction(L, progress_body);
    lua_pushlightuserdata(L, c);
    for (int i = 0; i < 4; i++)
        lua_pushvalue(L, c->plots + i);
    int st = lua_pcall(L, 5, 0, 0);
    if (st != LUA_OK) {
        c->code = lp_lua_caught_code(L, st, -1);
        snprintf(c->err, sizeof c->err, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error in the display");
        lua_pop(L, 1);
        c->failed = 1;
    }
    return c->failed;
}

/* Four live figures (loss, L0, explained variance, dead features against tokens) with the
 * history so far; the first at the returned index. */
static int push_plots(lua_State *L, sae_training *tr)
{
    int first = lua_gettop(L) + 1;
    for (int i = 0; i < 4; i++) {
        lua_getglobal(L, "loupe");
        lua_getfield(L, -1, "plot");
        lua_getfield(L, -1, "live");
        lua_createtable(L, 0, 3);
        lua_pushstring(L, PLOTS[i][0]), lua_setfield(L, -2, "title");
        lua_pushstring(L, "tokens"), lua_setfield(L, -2, "xlabel");
        lua_pushstring(L, PLOTS[i][1]), lua_setfield(L, -2, "ylabel");
        lua_call(L, 1, 1);
        lua_replace(L, -3);
        lua_pop(L, 1);
    }
    for (int k = 0; k < lp_sae_run_count(tr->run); k++) {
        lp_sae_history h = lp_sae_run_history(tr->run, k);
        for (size_t i = 0; i < h.n; i++)
            plot_step(L, first, tr->labels[k], (double)h.tokens[i], h.loss[i], h.l0[i], h.explained_variance[i],
                      h.dead[i]);
    }
    return first;
}

/* ---- the history ------------------------------------------------------------------------ */

static void set_list(lua_State *L, const char *key, size_t n, const long *l, const int64_t *t, const int *d,
                     const double *v)
{
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        if (l)
            lua_pushinteger(L, l[i]);
        else if (t)
            lua_pushinteger(L, t[i]);
        else if (d)
            lua_pushinteger(L, d[i]);
        else
            lua_pushnumber(L, v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, key);
}

/* sae.history = {step, tokens, loss, mse, sparsity, l0, explained_variance, dead} for each
 * SAE of the training at ti (through lua_dict's extra fields). */
static void attach_history(lua_State *L, int ti)
{
    sae_training *tr = luaL_checkudata(L, ti, SAE_TRAINING_MT);
    if (lua_getfield(L, LUA_REGISTRYINDEX, LP_LUA_SAE_EXTRA) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushstring(L, "k"), lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, LP_LUA_SAE_EXTRA);
    }
    int extra = lua_gettop(L);
    lua_getiuservalue(L, ti, UV_SAES);
    for (int k = 0; k < lp_sae_run_count(tr->run); k++) {
        lp_sae_history h = lp_sae_run_history(tr->run, k);
        lua_rawgeti(L, -1, k + 1); /* the SAE */
        lua_pushvalue(L, -1);
        if (lua_rawget(L, extra) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -2);
            lua_pushvalue(L, -2);
            lua_rawset(L, extra);
        }
        lua_createtable(L, 0, 8);
        set_list(L, "step", h.n, h.step, NULL, NULL, NULL);
        set_list(L, "tokens", h.n, NULL, h.tokens, NULL, NULL);
        set_list(L, "loss", h.n, NULL, NULL, NULL, h.loss);
        set_list(L, "mse", h.n, NULL, NULL, NULL, h.mse);
        set_list(L, "sparsity", h.n, NULL, NULL, NULL, h.sparsity);
        set_list(L, "l0", h.n, NULL, NULL, NULL, h.l0);
        set_list(L, "explained_variance", h.n, NULL, NULL, NULL, h.explained_variance);
        set_list(L, "dead", h.n, NULL, NULL, h.dead, NULL);
        lua_setfield(L, -2, "history");
        lua_pop(L, 2);
    }
    lua_settop(L, extra - 1);
}

/* ---- the run ---------------------------------------------------------------------------- */

/* Runs the training at ti to tr->total, showing the figures and the bar; sets the history.
 * Raises on error (the state stays consistent for resume). */
void lp_lua_sae_training_run(lua_State *L, int ti, int live)
{
    int top = lua_gettop(L);
    progress_ctx c = {.L = L, .tr = luaL_checkudata(L, ti, SAE_TRAINING_MT), .live = live, .loss = NAN};
    sae_training *tr = c.tr;
    c.t0 = lp_now_s();
    char uuid[37];
    lp_uuid(uuid);
    snprintf(c.bar_id, sizeof c.bar_id, "loupe-sae-train-%.12s", uuid);
    if (live) {
        c.plots = push_plots(L, tr);
        bar_publish(L, &c, lp_sae_run_steps(tr->run), 0);
    }
    tr->running = 1;
    int rc = lp_sae_run_go(tr->run, tr->total, on_progress, &c);
    tr->running = 0;
    if (rc < 0)
        snprintf(c.err, sizeof c.err, "%s", lp_last_error()), c.code = lp_last_error_code();
    int failed = rc != 0, interrupted = failed && (lp_interrupted() || c.code == LP_ERR_INTERRUPTED);
    long done = lp_sae_run_steps(tr->run);
    attach_history(L, ti);
    if (live) { /* the final state of every display stays in the notebook */
        bar_publish(L, &c, done, !failed);
        for (int i = 0; i < 4; i++) {
            lua_getfield(L, c.plots + i, "done");
            lua_pushvalue(L, c.plots + i);
            lua_call(L, 1, 0);
        }
    }
    lua_settop(L, top);
    if (interrupted) {
        lua_getglobal(L, "print");
        lua_pushfstring(L, "SAE training interrupted at step %d of %d: the SAE keeps the weights of step %d; "
                           "s = loupe.sae.train{resume = true} continues it (or returns it as it is with steps = %d)",
                        (int)done, (int)tr->total, (int)done, (int)done);
        lua_call(L, 1, 0);
        lp_lua_raise(L, LP_ERR_INTERRUPTED, "interrupted");
    }
    if (failed)
        lp_lua_raise(L, c.code, "loupe.sae.train: %s", c.err);
}

/* Pushes what loupe.sae.train returns: the SAE, or the list of a sweep's. */
