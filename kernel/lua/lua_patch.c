/* m:patch_sweep: activation patching over every layer and position (or head), as
 * TransformerLens' patching utilities do it: the clean prompt runs once with the hook point
 * cached, the corrupt prompt runs once (cached too) for its baseline, then the corrupt prompt
 * runs again with one region of one layer's activation taken from the clean cache, for every
 * region where the clean and corrupt values differ (elsewhere the patch changes nothing and
 * the result is the corrupt run's, exactly: e.g. every position before the first token that
 * differs). Regions are batched: one forward pass patches a different region in each row.
 *
 * Nothing the C code owns is alive while Lua code runs (the metric function) or while an
 * error can be raised: the clean run sits in a loupe.Run userdata, buffers in userdata, and
 * each patched run's logits are handed to Lua before the run is cleared. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bundle.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "figures.h"
#include "lua_analysis.h"
#include "lua_api.h"
#include "lua_tensor.h"
#include "progress.h"
#include "util.h"

typedef struct {
    const char *key, *fmt;
    int headdim, posdim; /* in the activation; -1: none */
} hook_kind;

static const hook_kind KINDS[] = {
    {"resid_pre", "blocks.%d.hook_resid_pre", -1, 1}, {"resid_mid", "blocks.%d.hook_resid_mid", -1, 1},
    {"resid_post", "blocks.%d.hook_resid_post", -1, 1}, {"attn_out", "blocks.%d.hook_attn_out", -1, 1},
    {"mlp_out", "blocks.%d.hook_mlp_out", -1, 1}, {"z", "blocks.%d.attn.hook_z", 2, 1},
    {"q", "blocks.%d.attn.hook_q", 2, 1}, {"k", "blocks.%d.attn.hook_k", 2, 1},
    {"v", "blocks.%d.attn.hook_v", 2, 1}, {"pattern", "blocks.%d.attn.hook_pattern", 1, 2},
};

/* The regions one forward pass patches: batch row r takes (head[r], pos[r]) (-1: all). */
typedef struct {
    const lp_tensor *clean; /* the clean activation of this layer, batch 1 */
    const int *head, *pos;
    int n, headdim, posdim;
} patch_job;

static lp_tensor *narrow(lp_tensor *t, int dim, int at)
{
    if (!t || at < 0)
        return t;
    lp_tensor *s = lp_tensor_slice(t, dim, at, at + 1, 1);
    lp_tensor_free(t);
    return s;
}

static int patch_rows(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    (void)name;
    patch_job *j = ud;
    lp_tensor *o = lp_tensor_clone(act);
    if (!o)
        return -1;
    for (int r = 0; r < j->n; r++) {
        lp_tensor *dst = narrow(lp_tensor_slice(o, 0, r, r + 1, 1), j->headdim, j->head[r]);
        dst = narrow(dst, j->posdim, j->pos[r]);
        lp_tensor *src = narrow(lp_tensor_alias(j->clean), j->headdim, j->head[r]);
        src = narrow(src, j->posdim, j->pos[r]);
        int rc = dst && src ? lp_tensor_copy_(dst, src) : -1;
        lp_tensor_free(dst);
        lp_tensor_free(src);
        if (rc < 0) {
            lp_tensor_free(o);
            return -1;
        }
    }
    *out = o;
    return 0;
}

/* Whether the (head, pos) region of a and b (same shape, batch 1) holds equal values: 1, 0,
 * or -1 with the error set (allocation). */
static int same_region(const lp_tensor *a, const lp_tensor *b, int headdim, int posdim, int head, int pos)
{
    lp_tensor *va = narrow(narrow(lp_tensor_alias(a), headdim, head), posdim, pos);
    lp_tensor *vb = narrow(narrow(lp_tensor_alias(b), headdim, head), posdim, pos);
    lp_tensor *ca = va ? lp_tensor_contiguous(va) : NULL, *cb = vb ? lp_tensor_contiguous(vb) : NULL;
    int rc = -1;
    if (ca && cb && lp_tensor_same_shape(ca, cb))
        rc = memcmp(ca->data, cb->data, (size_t)lp_tensor_numel(ca) * sizeof(float)) == 0;
    lp_tensor_free(va), lp_tensor_free(vb), lp_tensor_free(ca), lp_tensor_free(cb);
    return rc;
}

static int keep_kind(void *ud, const char *name)
{
    const char *suffix = ud;
    size_t n = strlen(name), k = strlen(suffix);
    return n > k && strcmp(name + n - k, suffix) == 0 && !strncmp(name, "blocks.", 7);
}

/* ---- the metric ---- */

typedef struct {
    int fn;              /* stack index of the function, or 0 */
    int32_t tok, base;   /* the logit-difference form */
    int pos;             /* 0-based, for the logit-difference form */
} metric;

/* The metric of batch row `row` of logits, which is the Tensor at stack index lt. */
static double eval_metric(lua_State *L, const metric *mt, int lt, int row)
{
    lp_tensor *lg = lp_lua_check_tensor(L, lt);
    if (!mt->fn) {
        int64_t at[3] = {row, mt->pos, mt->tok};
        float a, b = 0;
        if (lp_tensor_get(lg, at, &a) < 0)
            lp_lua_backend_error(L, "patch_sweep");
        at[2] = mt->base;
        if (mt->base >= 0 && lp_tensor_get(lg, at, &b) < 0)
            lp_lua_backend_error(L, "patch_sweep");
        return (double)a - b;
    }
    lua_pushvalue(L, mt->fn);
    lp_lua_push_tensor(L, lg->shape[0] == 1 ? lp_tensor_alias(lg) : lp_tensor_slice(lg, 0, row, row + 1, 1));
    int st = lua_pcall(L, 1, 1, 0);
    if (st != LUA_OK) {
        if (lp_interrupted())
            lp_lua_raise(L, LP_ERR_INTERRUPTED, "interrupted");
        lp_err code = lp_lua_caught_code(L, st, -1);
        const char *msg = luaL_tolstring(L, -1, NULL);
        lp_lua_raise(L, code, "patch_sweep: metric: %s", msg);
    }
    int ok;
    double v = lua_tonumberx(L, -1, &ok);
    if (!ok)
        luaL_error(L, "patch_sweep: the metric must return a number, not a %s", luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

/* ---- progress: shown when the sweep takes more than a moment ---- */

typedef struct {
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
 * half second, at most every quarter second; final > 0 finished, < 0 stopped. */
static void progress(lua_State *L, sweep_progress *p, double done, double total, int final)
{
    double t = lp_now_s();
    int due = final > 0 ? p->started                      /* the last state of a bar shown */
              : final < 0 ? p->started || t - p->t0 >= 0.5 /* stopped: where, once it was long */
                          : t - p->t0 >= 0.5 && (!p->started || t - p->last >= 0.25);
    if (!due)
        return;
    lua_pushcfunction(L, publish_k);
    lua_pushlightuserdata(L, p);
    lua_pushnumber(L, done);
    lua_pushnumber(L, total);
    lua_pushboolean(L, final > 0);
    if (lua_pcall(L, 4, 0, 0) != LUA_OK)
        lua_pop(L, 1);
    p->started = 1;
    p->last = t;
}

static void check_interrupt(lua_State *L, sweep_progress *p, double done, double total)
{
    if (lp_interrupted()) {
        progress(L, p, done, total, -1); /* the state it stopped at, not finished */
        lp_lua_raise(L, LP_ERR_INTERRUPTED, "interrupted");
    }
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

int lp_lua_model_patch_sweep(lua_State *L)
{
    model_ud *u = check_model(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    const lp_model_config *c = &u->m->cfg;
    int NL = c->n_layers;
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
    lua_getfield(L, 2, "hook");
    const char *hk = luaL_optstring(L, -1, "resid_pre");
    if (!strncmp(hk, "hook_", 5))
        hk += 5;
    const hook_kind *kind = NULL;
    for (size_t i = 0; i < sizeof KINDS / sizeof *KINDS; i++)
        if (!strcmp(hk, KINDS[i].key))
            kind = &KINDS[i];
    if (!kind)
        return luaL_error(L, "patch_sweep: hook must be one of resid_pre, resid_mid, resid_post, attn_out, mlp_out, "
                             "z, q, k, v, pattern (got '%s')", hk);
    int per_head = kind->headdim >= 0;
    int positions = opt_bool(L, 2, "positions", NULL, !per_head);
    int normalize = opt_bool(L, 2, "normalize", "normalise", 1);
    /* metric */
    metric mt = {0, -1, -1, T - 1};
    lua_getfield(L, 2, "metric");
    int mi = lua_gettop(L);
    if (lua_isfunction(L, mi)) {
        mt.fn = mi;
    } else if (lua_istable(L, mi)) {
        if (lua_getfield(L, mi, "token") == LUA_TNIL)
            return luaL_error(L, "patch_sweep: metric = {token = ..., baseline = ...} needs a token");
        mt.tok = lp_lua_analysis_token(L, u, -1, "patch_sweep");
        if (lua_getfield(L, mi, "baseline") != LUA_TNIL)
            mt.base = lp_lua_analysis_token(L, u, -1, "patch_sweep");
        lua_getfield(L, mi, "pos");
        lua_Integer p = luaL_optinteger(L, -1, -1);
        if (p < 0)
            p += T + 1;
        if (p < 1 || p > T)
            return luaL_error(L, "patch_sweep: metric pos must be in 1..%d (or negative from the end)", T);
        mt.pos = (int)p - 1;
        lua_pop(L, 3);
    } else {
        return luaL_error(L, "patch_sweep: metric = function(logits) -> number, or {token = ..., baseline = ...}, "
                             "is required");
    }
    /* the clean run, cached (for the patches), in a Run userdata that frees it */
    char suffix[64];
    snprintf(suffix, sizeof suffix, "%s", strchr(kind->fmt + 7, '.') + 1);
    run_ud *cr = lua_newuserdatauv(L, sizeof *cr, 1);
    memset(cr, 0, sizeof *cr);
    luaL_setmetatable(L, RUN_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    lp_run_opts copts = {NULL, 0, 0, keep_kind, suffix};
    if (lp_model_run(u->m, clean, 1, T, &copts, &cr->run) < 0)
        return lp_interrupted() ? lp_lua_raise(L, LP_ERR_INTERRUPTED, "interrupted")
                                : lp_lua_backend_error(L, "patch_sweep");
    cr->B = 1, cr->T = T;
    lp_lua_push_tensor(L, lp_tensor_alias(cr->run.logits));
    double m_clean = eval_metric(L, &mt, lua_gettop(L), 0);
    lua_pop(L, 1);
    /* the corrupt run, cached too: a region whose clean and corrupt values are equal needs no run */
    run_ud *xr = lua_newuserdatauv(L, sizeof *xr, 1);
    memset(xr, 0, sizeof *xr);
    luaL_setmetatable(L, RUN_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    if (lp_model_run(u->m, corrupt, 1, T, &copts, &xr->run) < 0)
        return lp_interrupted() ? lp_lua_raise(L, LP_ERR_INTERRUPTED, "interrupted")
                                : lp_lua_backend_error(L, "patch_sweep");
    xr->B = 1, xr->T = T;
    lp_lua_push_tensor(L, lp_tensor_alias(xr->run.logits));
    double m_corrupt = eval_metric(L, &mt, lua_gettop(L), 0);
    lua_pop(L, 1);
    lp_run rr = {0};
    lp_tensor *lg;
    /* the regions of one layer */
    char name[96];
    snprintf(name, sizeof name, kind->fmt, 0);
    const lp_tensor *c0 = lp_run_get(&cr->run, name);
    if (!c0)
        return luaL_error(L, "patch_sweep: the clean run did not cache %s", name);
    int NH = per_head ? (int)c0->shape[kind->headdim] : 1;
    int nreg = per_head ? (positions ? NH * T : NH) : (positions ? T : 1);
    int *rhead = lua_newuserdatauv(L, (size_t)nreg * sizeof *rhead, 0);
    int *rpos = lua_newuserdatauv(L, (size_t)nreg * sizeof *rpos, 0);
    for (int i = 0; i < nreg; i++) {
        rhead[i] = per_head ? (positions ? i / T : i) : -1;
        rpos[i] = positions ? i % T : -1;
    }
    int rows = per_head && positions ? NL * NH : NL, cols = per_head && positions ? T : nreg;
    double *raw = lua_newuserdatauv(L, (size_t)NL * nreg * sizeof *raw, 0);
    int chunk = 2048 / T;
    chunk = chunk < 1 ? 1 : chunk > 64 ? 64 : chunk;
    if (chunk > nreg)
        chunk = nreg;
    int32_t *toks = lua_newuserdatauv(L, (size_t)chunk * T * sizeof *toks, 0);
    for (int r = 0; r < chunk; r++)
        memcpy(toks + (size_t)r * T, corrupt, (size_t)T * sizeof *toks);
    sweep_progress pg = {.t0 = lp_now_s()};
    snprintf(pg.label, sizeof pg.label, "patch_sweep %s", kind->key);
    char uuid[37];
    lp_uuid(uuid);
    snprintf(pg.id, sizeof pg.id, "loupe-sweep-%.12s", uuid);
    double total = (double)NL * nreg, done = 0;
    long nruns = 0; /* patched runs (batch rows) actually made */
    int *todo = lua_newuserdatauv(L, (size_t)nreg * sizeof *todo, 0);
    int *th = lua_newuserdatauv(L, (size_t)chunk * 2 * sizeof *th, 0), *tp = th + chunk;
    for (int l = 0; l < NL; l++) {
        snprintf(name, sizeof name, kind->fmt, l);
        const lp_tensor *cl = lp_run_get(&cr->run, name), *xl = lp_run_get(&xr->run, name);
        if (!cl || !xl)
            return luaL_error(L, "patch_sweep: the runs did not cache %s", name);
        int nt = 0;
        for (int i = 0; i < nreg; i++) {
            int same = same_region(cl, xl, kind->headdim, kind->posdim, rhead[i], rpos[i]);
            if (same < 0)
                return lp_lua_backend_error(L, "patch_sweep");
            if (same) /* patching in what is already there: the corrupt run itself */
                raw[(size_t)l * nreg + i] = m_corrupt;
            else
                todo[nt++] = i;
        }
        done += nreg - nt;
        nruns += nt;
        for (int r0 = 0; r0 < nt; r0 += chunk) {
            check_interrupt(L, &pg, done, total);
            int n = nt - r0 < chunk ? nt - r0 : chunk;
            for (int r = 0; r < n; r++)
                th[r] = rhead[todo[r0 + r]], tp[r] = rpos[todo[r0 + r]];
            patch_job job = {cl, th, tp, n, kind->headdim, kind->posdim};
            lp_hook h = {.name = name, .kind = LP_HOOK_FN, .head = -1, .pos = -1, .fn = patch_rows, .ud = &job};
            lp_run_opts o = {&h, 1, 0, NULL, NULL};
            if (lp_model_run(u->m, toks, n, T, &o, &rr) < 0) {
                check_interrupt(L, &pg, done, total);
                return lp_lua_backend_error(L, "patch_sweep");
            }
            lg = lp_tensor_alias(rr.logits);
            lp_run_clear(&rr);
            lp_lua_push_tensor(L, lg);
            int lt = lua_gettop(L);
            for (int r = 0; r < n; r++)
                raw[(size_t)l * nreg + todo[r0 + r]] = eval_metric(L, &mt, lt, r);
            lua_settop(L, lt - 1);
            done += n;
            progress(L, &pg, done, total, 0);
        }
    }
    progress(L, &pg, done, total, 1);
    /* results: raw and normalised, (rows x cols) */
    double span = m_clean - m_corrupt;
    size_t N = (size_t)NL * nreg;
    float *fraw = lua_newuserdatauv(L, N * sizeof *fraw, 0);
    float *fval = lua_newuserdatauv(L, N * sizeof *fval, 0);
    for (size_t i = 0; i < N; i++) {
        fraw[i] = (float)raw[i];
        fval[i] = !normalize ? (float)raw[i] : span != 0 ? (float)((raw[i] - m_corrupt) / span) : NAN;
    }
    /* labels: positions as tokens (clean, and "clean→corrupt" where they differ) */
    lua_createtable(L, cols, 0);
    int labt = lua_gettop(L);
    const char **clab = lua_newuserdatauv(L, (size_t)cols * sizeof *clab, 0);
    for (int i = 0; i < cols; i++) {
        char b1[32], b2[32];
        if (per_head && !positions) {
            lua_pushfstring(L, "H%d", i + 1);
        } else if (!positions) {
            lua_pushliteral(L, "all positions");
        } else if (clean[i] == corrupt[i]) {
            lua_pushstring(L, lp_lua_analysis_token_str(u, clean[i], b1, sizeof b1));
        } else {
            lua_pushfstring(L, "%s\xe2\x86\x92%s", lp_lua_analysis_token_str(u, clean[i], b1, sizeof b1),
                            lp_lua_analysis_token_str(u, corrupt[i], b2, sizeof b2));
        }
        clab[i] = lua_tostring(L, -1);
        lua_rawseti(L, labt, i + 1);
    }
    lua_createtable(L, rows, 0);
    int rowt = lua_gettop(L);
    const char **rlab = lua_newuserdatauv(L, (size_t)rows * sizeof *rlab, 0);
    for (int i = 0; i < rows; i++) {
        if (per_head && positions)
            lua_pushfstring(L, "L%dH%d", i / NH, i % NH + 1);
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
    json_t *hm = lp_display_heatmap(fval, (size_t)rows, (size_t)cols, &ho);
    lp_buf plain = LP_BUF_INIT, html = LP_BUF_INIT;
    lp_buf_printf(&plain, "%s\n%d x %d patches (%ld needed a run; the rest patch in equal values); metric: clean %.6g, "
                          "corrupt %.6g%s\nlargest:", title, rows, cols, nruns, m_clean, m_corrupt,
                  normalize && span == 0 ? " (equal: the normalised values are NaN)" : "");
    char *taken = lua_newuserdatauv(L, N, 0);
    memset(taken, 0, N);
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
