/* loupe.sae.train{...}: SAEs and transcoders trained in the notebook on an activation
 * stream (backend/dict/sae_run.h), with a live figure and a progress bar.
 *
 * The loop is the backend's (lp_sae_run_go): this file reads the options, makes the stream
 * (through loupe.activations, so its checks and messages are those of the stream), the SAEs
 * and their trainers; lua_sae_live.c runs the loop and turns its reports into the live
 * figures and the progress bar. A training keeps its state (the run: trainers with their Adam moments, the
 * history; the stream where it was) in a loupe.SAETraining userdata stored in a weak-keyed
 * registry table under its first SAE (and the last one started under its own key), so that
 * loupe.sae.train{resume = true [, sae = s]} continues an interrupted one; every SAE is always as of its last finished step. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "dict/clt_ops.h"
#include "lua_acts.h"
#include "lua_api.h"
#include "lua_dict.h"
#include "lua_model_impl.h"
#include "lua_sae_train.h"

static int training_gc(lua_State *L)
{
    sae_training *tr = luaL_checkudata(L, 1, SAE_TRAINING_MT);
    lp_sae_run_free(tr->run);
    tr->run = NULL;
    return 0;
}

/* ---- options ---------------------------------------------------------------------------- */

static lua_Integer opt_int(lua_State *L, int t, const char *key, lua_Integer def, lua_Integer lo, lua_Integer hi)
{
    lua_getfield(L, t, key);
    lua_Integer v = def;
    if (!lua_isnil(L, -1)) {
        int ok;
        v = lua_tointegerx(L, -1, &ok);
        if (!ok)
            luaL_error(L, "loupe.sae.train: %s must be an integer", key);
        if (v < lo || v > hi)
            luaL_error(L, "loupe.sae.train: %s = %I is out of range (%I..%I)", key, v, lo, hi);
    }
    lua_pop(L, 1);
    return v;
}

static double opt_num(lua_State *L, int t, const char *key, double def)
{
    lua_getfield(L, t, key);
    double v = def;
    if (!lua_isnil(L, -1)) {
        int ok;
        v = lua_tonumberx(L, -1, &ok);
        if (!ok || !isfinite(v))
            luaL_error(L, "loupe.sae.train: %s must be a finite number", key);
    }
    lua_pop(L, 1);
    return v;
}

static lp_sae_arch check_arch(lua_State *L, int t)
{
    lua_getfield(L, t, "arch");
    const char *a = luaL_optstring(L, -1, "topk");
    int v = !strcmp(a, "matryoshka") ? LP_SAE_MATRYOSHKA : lp_sae_arch_parse(a);
    if (v < 0)
        luaL_error(L, "loupe.sae.train: unknown arch '%s' (topk, standard, batchtopk, jumprelu, matryoshka)", a);
    lua_pop(L, 1);
    return (lp_sae_arch)v;
}

/* The sweep: n values of "k" or "l1" (*what), or n = 1 and no sweep. */
static int read_sweep(lua_State *L, int t, const char **what, double *vals)
{
    *what = NULL;
    if (lua_getfield(L, t, "sweep") == LUA_TNIL) {
        lua_pop(L, 1);
        return 1;
    }
    luaL_checktype(L, -1, LUA_TTABLE);
    int n = 0;
    for (int w = 0; w < 2; w++) {
        const char *key = w ? "l1" : "k";
        if (lua_getfield(L, -1, key) == LUA_TTABLE) {
            if (*what)
                luaL_error(L, "loupe.sae.train: sweep over k or l1, not both");
            *what = key;
            n = (int)lua_rawlen(L, -1);
            if (n < 1 || n > MAX_SWEEP)
                luaL_error(L, "loupe.sae.train: sweep.%s must list 1 to %d values", key, MAX_SWEEP);
            for (int i = 0; i < n; i++) {
                lua_rawgeti(L, -1, i + 1);
                int ok;
                vals[i] = lua_tonumberx(L, -1, &ok);
                if (!ok || !isfinite(vals[i]) || vals[i] < 0)
                    luaL_error(L, "loupe.sae.train: sweep.%s[%d] is not a non-negative number", key, i + 1);
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    if (!*what)
        luaL_error(L, "loupe.sae.train: sweep = {k = {...}} or {l1 = {...}}");
    lua_pop(L, 1);
    return n;
}

/* Refuses an SAE the machine cannot hold before anything is allocated: weights, gradients,
 * two Adam moments (5 copies) and a batch's z and f. */
static void check_memory(lua_State *L, int d_in, int d_out, long width, int batch, int n)
{
    double bytes = 4.0 * n * (5.0 * (double)width * (d_in + d_out) + 3.0 * (double)batch * width);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double have = pages > 0 && page > 0 ? (double)pages * page : 0;
    if (width > 1L << 30 || (have > 0 && bytes > have)) {
        char msg[256]; /* lua_pushfstring has no %.1f */
        snprintf(msg, sizeof msg, "cannot allocate %.1f GB for %d SAE%s of width %ld at batch %d (this machine "
                 "has %.1f GB)", bytes / 1e9, n, n > 1 ? "s" : "", width, batch, have / 1e9);
        lp_lua_raise(L, LP_ERR_NOMEM, "loupe.sae.train: %s", msg);
    }
}

/* A CLT's extra fields: layer_explained_variance and layer_l0 of the last step (1-based lists). */
static void clt_layer_stats(lua_State *L, sae_training *tr)
{
    lp_sae_trainer *t = lp_sae_run_trainer(tr->run, 0);
    int nl = lp_sae_trainer_layers(t);
    if (nl < 1 || lp_sae_run_steps(tr->run) < 1)
        return;
    if (lua_getfield(L, LUA_REGISTRYINDEX, LP_LUA_SAE_EXTRA) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    lua_pushvalue(L, -2); /* the CLT */
    if (lua_rawget(L, -2) != LUA_TTABLE) {
        lua_pop(L, 2);
        return;
    }
    for (int w = 0; w < 2; w++) {
        lua_createtable(L, nl, 0);
        for (int l = 0; l < nl; l++) {
            double ev, l0;
            lp_clt_trainer_layer_stats(t, l, &ev, &l0);
            lua_pushnumber(L, w ? l0 : ev);
            lua_rawseti(L, -2, l + 1);
        }
        lua_setfield(L, -2, w ? "layer_l0" : "layer_explained_variance");
    }
    lua_pop(L, 2);
}

static int push_result(lua_State *L, int ti)
{
    sae_training *tr = luaL_checkudata(L, ti, SAE_TRAINING_MT);
    lua_getiuservalue(L, ti, UV_SAES);
    if (lp_sae_trainer_layers(lp_sae_run_trainer(tr->run, 0)) > 0) {
        lua_rawgeti(L, -1, 1);
        clt_layer_stats(L, tr);
        return 1;
    }
    if (lp_sae_run_count(tr->run) == 1)
        lua_rawgeti(L, -1, 1);
    return 1;
}

static long total_steps(lua_State *L, int t, int batch, long def)
{
    long steps = (long)opt_int(L, t, "steps", 0, 0, 1L << 40);
    long long tokens = opt_int(L, t, "tokens", 0, 0, (lua_Integer)1 << 60);
    if (steps && tokens)
        luaL_error(L, "loupe.sae.train: give steps or tokens, not both");
    if (tokens)
        steps = (long)((tokens + batch - 1) / batch);
    return steps ? steps : def;
}

/* loupe.sae.train{[sae = s,] resume = true [, steps | tokens, live]}: the training of s, or
 * the last one started (whose call, interrupted, returned nothing) */
static int resume_training(lua_State *L)
{
    if (lua_getfield(L, 1, "sae") == LUA_TNIL) {
        if (lua_getfield(L, LUA_REGISTRYINDEX, LAST_KEY) == LUA_TNIL)
            return luaL_error(L, "loupe.sae.train: no SAE training to resume");
    } else {
        if (!luaL_testudata(L, -1, LP_LUA_TRANSCODERS_MT))
            lp_lua_check_sae(L, -1);
        lua_getfield(L, LUA_REGISTRYINDEX, REGISTRY_KEY);
        lua_pushvalue(L, -2);
        if (!lua_istable(L, -2) || lua_rawget(L, -2) == LUA_TNIL)
            return luaL_error(L, "loupe.sae.train: this SAE has no training to resume (give sae = the first SAE a "
                                 "loupe.sae.train returned)");
    }
    int ti = lua_gettop(L);
    sae_training *tr = luaL_checkudata(L, ti, SAE_TRAINING_MT);
    if (tr->running)
        return luaL_error(L, "loupe.sae.train: this training is running");
    tr->total = total_steps(L, 1, tr->batch, tr->total);
    if (tr->total < lp_sae_run_steps(tr->run))
        return luaL_error(L, "loupe.sae.train: %d steps are already done", (int)lp_sae_run_steps(tr->run));
    lp_lua_sae_training_run(L, ti, lp_lua_opt_bool(L, 1, "live", 1));
    return push_result(L, ti);
}

/* Pushes loupe.activations{model, hook | hooks, data, ctx, batch, seed, normalize, buffer};
 * hooks: a list of nhooks names (a CLT's), or NULL for hook_in [and hook_out]. */
static void push_stream_of(lua_State *L, const char *hook_in, const char *hook_out, char (*hooks)[96], int nhooks,
                           int batch, int normalize)
{
    lua_getglobal(L, "loupe");
    lua_getfield(L, -1, "activations");
    lua_remove(L, -2);
    lua_createtable(L, 0, 8);
    static const char *const pass[] = {"model", "data", "ctx", "seed", "buffer", "prepend_bos", NULL};
    for (int i = 0; pass[i]; i++)
        lua_getfield(L, 1, pass[i]), lua_setfield(L, -2, pass[i]);
    if (hooks) {
        lua_createtable(L, nhooks, 0);
        for (int h = 0; h < nhooks; h++)
            lua_pushstring(L, hooks[h]), lua_rawseti(L, -2, h + 1);
        lua_setfield(L, -2, "hooks");
    } else if (hook_out) {
        lua_createtable(L, 2, 0);
        lua_pushstring(L, hook_in), lua_rawseti(L, -2, 1);
        lua_pushstring(L, hook_out), lua_rawseti(L, -2, 2);
        lua_setfield(L, -2, "hooks");
    } else {
        lua_pushstring(L, hook_in), lua_setfield(L, -2, "hook");
    }
    lua_pushinteger(L, batch), lua_setfield(L, -2, "batch");
    lua_pushboolean(L, normalize), lua_setfield(L, -2, "normalize");
    lua_call(L, 1, 1);
}

static void push_stream(lua_State *L, const char *hook_in, const char *hook_out, int batch, int normalize)
{
    push_stream_of(L, hook_in, hook_out, NULL, 0, batch, normalize);
}

/* "blocks.L...." -> L, else -1 */
static int hook_layer(const char *h)
{
    int l;
    return sscanf(h, "blocks.%d.", &l) == 1 ? l : -1;
}

static void copy_name(lua_State *L, char *dst, const char *src)
{
    if (strlen(src) >= 96)
        luaL_error(L, "loupe.sae.train: hook name '%s' is too long", src);
    snprintf(dst, 96, "%s", src);
}

/* hook_in and hook_out of the options (hook_out "" for an SAE). */
static void read_hooks(lua_State *L, int transcoder, int layer, char *hin, char *hout)
{
    lua_getfield(L, 1, "hook");
    lua_getfield(L, 1, "hook_in");
    lua_getfield(L, 1, "hook_out");
    const char *h = luaL_optstring(L, -3, NULL), *in = luaL_optstring(L, -2, NULL), *out = luaL_optstring(L, -1, NULL);
    hout[0] = 0;
    if (!transcoder) {
        if ((h != NULL) == (in != NULL) || out)
            luaL_error(L, "loupe.sae.train: give hook = \"name\" (a transcoder: transcoder = true with hook_in and "
                          "hook_out, or layer)");
        copy_name(L, hin, h ? h : in);
    } else {
        char def[96];
        if (!in || !out) {
            if (layer < 0)
                luaL_error(L, "loupe.sae.train: a transcoder needs hook_in and hook_out, or layer = L (the MLP's "
                              "blocks.L.mlp.hook_in -> blocks.L.mlp.hook_out)");
        }
        snprintf(def, sizeof def, "blocks.%d.mlp.hook_in", layer);
        copy_name(L, hin, in ? in : def);
        snprintf(def, sizeof def, "blocks.%d.mlp.hook_out", layer);
        copy_name(L, hout, out ? out : def);
    }
    lua_pop(L, 3);
}

/* The trainer options of SAE i of a sweep. *theta0 gets jumprelu's initial threshold. */
static lp_sae_train_opts read_train_opts(lua_State *L, const lp_sae_config *c, long steps, int batch,
                                         const char *what, double val, float *theta0)
{
    lp_sae_train_opts o = lp_sae_train_defaults(c);
    o.lr = (float)opt_num(L, 1, "lr", o.lr);
    o.steps = steps, o.batch = batch;
    o.warmup = (long)opt_int(L, 1, "warmup", 0, 0, steps);
    o.decay = lp_lua_opt_bool(L, 1, "decay", 0);
    o.l1_warmup = (long)opt_int(L, 1, "l1_warmup", steps / 20, 0, steps);
    o.seed = (uint64_t)opt_int(L, 1, "seed", 1, 0, LUA_MAXINTEGER);
    double l1 = opt_num(L, 1, "l1", NAN), l0 = opt_num(L, 1, "l0", NAN);
    if (what && !strcmp(what, "l1"))
        l1 = val;
    *theta0 = 0;
    if (c->arch == LP_SAE_JUMPRELU) {
        *theta0 = 0.01f;
        if (!isnan(l1) && isnan(l0)) { /* Anthropic's tanh penalty */
            o.loss.sparsity = LP_SPARSITY_TANH, o.loss.bandwidth = 2.0f, o.loss.l1 = (float)l1;
            *theta0 = 0.1f;
        } else if (!isnan(l0)) { /* DeepMind's L0 (step) penalty */
            o.loss.sparsity = LP_SPARSITY_STEP, o.loss.l1 = (float)l0;
        }
    } else if (!isnan(l1)) {
        o.loss.l1 = (float)l1;
    }
    if (o.loss.l1 < 0)
        luaL_error(L, "loupe.sae.train: the sparsity coefficient must be non-negative");
    return o;
}

/* loupe.sae.train{model, hook | hook_in, hook_out | transcoder = true, layer, skip, data, arch,
 * width | expansion, k, l1, l0, steps | tokens, batch, lr, warmup, decay, ctx, seed,
 * normalize, sweep, live} */
static int start_training(lua_State *L, int live);
static int train_clt(lua_State *L);

static int l_train(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (lp_lua_opt_bool(L, 1, "resume", 0))
        return resume_training(L);
    lua_getfield(L, 1, "model");
    if (lua_isnil(L, -1))
        return luaL_error(L, "loupe.sae.train: no model (model = m)");
    check_model(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "arch");
    int clt = lua_type(L, -1) == LUA_TSTRING && !strcmp(lua_tostring(L, -1), "clt");
    lua_pop(L, 1);
    if (clt)
        return train_clt(L);
    int transcoder = lp_lua_opt_bool(L, 1, "transcoder", 0);
    int layer = (int)opt_int(L, 1, "layer", -1, -1, 1 << 20);
    char hin[96], hout[96];
    read_hooks(L, transcoder, layer, hin, hout);
    lp_sae_arch arch = check_arch(L, 1);
    if (transcoder && arch != LP_SAE_STANDARD && arch != LP_SAE_TOPK && arch != LP_SAE_JUMPRELU)
        return luaL_error(L, "loupe.sae.train: a transcoder is standard (ReLU), topk or jumprelu");
    int batch = (int)opt_int(L, 1, "batch", 4096, 1, 1 << 24);
    int normalize = lp_lua_opt_bool(L, 1, "normalize", 0);
    int skip = lp_lua_opt_bool(L, 1, "skip", 0);
    if (skip && !transcoder)
        return luaL_error(L, "loupe.sae.train: skip (a W_skip connection) is for transcoders (transcoder = true)");
    if (transcoder && normalize)
        return luaL_error(L, "loupe.sae.train: normalize is for SAEs (a transcoder's input and output scale apart)");
    const char *what;
    double vals[MAX_SWEEP];
    int n = read_sweep(L, 1, &what, vals);
    long steps = total_steps(L, 1, batch, 1000);
    int live = lp_lua_opt_bool(L, 1, "live", 1);
    push_stream(L, hin, transcoder ? hout : NULL, batch, normalize); /* index 2 */
    lp_act_stream *stream = lp_lua_check_act_stream(L, 2);
    int d_in = (int)lp_act_stream_dim(stream, 0), d_out = transcoder ? (int)lp_act_stream_dim(stream, 1) : d_in;
    long width = (long)opt_int(L, 1, "width", 0, 0, LUA_MAXINTEGER);
    if (!width)
        width = (long)(opt_num(L, 1, "expansion", 16) * d_in + 0.5);
    if (width < 1)
        return luaL_error(L, "loupe.sae.train: width must be at least 1");
    check_memory(L, d_in, d_out, width, batch, n);
    int k = (int)opt_int(L, 1, "k", width < 32 ? width : 32, 1, width);

    lua_createtable(L, n, 0); /* 3: the SAEs */
    lp_sae_config c = {.arch = arch, .d_in = d_in, .d_sae = (int)width, .d_out = d_out, .k = k,
                       .transcoder = transcoder, .skip = skip, .apply_b_dec_to_input = !transcoder};
    copy_name(L, c.hook_in, hin);
    copy_name(L, c.hook_out, transcoder ? hout : hin);
    c.layer = layer >= 0 ? layer : hook_layer(hin);
    lp_sae_train_opts opts[MAX_SWEEP];
    for (int i = 0; i < n; i++) {
        float theta0;
        lp_sae_config ci = c;
        if (what && !strcmp(what, "k")) {
            ci.k = (int)vals[i];
            if (ci.k < 1 || ci.k > width || ci.k != vals[i])
                return luaL_error(L, "loupe.sae.train: sweep.k[%d] = %g is not an integer in 1..%d", i + 1, vals[i],
                                  (int)width);
        }
        opts[i] = read_train_opts(L, &ci, steps, batch, what, what ? vals[i] : 0, &theta0);
        lp_sae *s = lp_sae_new(&ci);
        if (!s || lp_sae_init_random(s, (uint64_t)opt_int(L, 1, "seed", 1, 0, LUA_MAXINTEGER), 0.1f, theta0) < 0) {
            lp_sae_free(s);
            return lp_lua_backend_error(L, "loupe.sae.train");
        }
        s->scale = lp_act_stream_scale(stream, 0);
        lp_lua_push_sae(L, s);
        lua_rawseti(L, 3, i + 1);
    }
    sae_training *tr = lua_newuserdatauv(L, sizeof *tr, UV_N); /* 4 */
    memset(tr, 0, sizeof *tr);
    luaL_setmetatable(L, SAE_TRAINING_MT);
    tr->total = steps, tr->batch = batch;
    for (int i = 0; i < n; i++)
        if (what)
            snprintf(tr->labels[i], sizeof tr->labels[i], "%s=%g", what, vals[i]);
    lua_pushvalue(L, 3), lua_setiuservalue(L, 4, UV_SAES);
    lua_pushvalue(L, 2), lua_setiuservalue(L, 4, UV_STREAM);
    lp_sae_trainer *ts[MAX_SWEEP];
    for (int i = 0; i < n; i++) { /* nothing here raises until the run owns the trainers */
        lua_rawgeti(L, 3, i + 1);
        ts[i] = lp_sae_trainer_new(lp_lua_check_sae(L, -1), &opts[i]);
        lua_pop(L, 1);
        if (!ts[i]) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", lp_last_error());
            lp_err code = lp_last_error_code();
            for (int j = 0; j < i; j++)
                lp_sae_trainer_free(ts[j]);
            return lp_lua_raise(L, code, "loupe.sae.train: %s", msg);
        }
    }
    lp_sae_run_opts ro = {.stream = stream, .batch = batch, .d_in = d_in, .d_out = transcoder ? d_out : 0};
    if (!(tr->run = lp_sae_run_new(ts, n, &ro)))
        return lp_lua_backend_error(L, "loupe.sae.train");
    return start_training(L, live);
}

/* With the options at 1, the stream at 2, the dictionaries at 3 and the training at 4 (its
 * run made): registers it for resume, runs it, pushes the result. */
static int start_training(lua_State *L, int live)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, REGISTRY_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushstring(L, "k"), lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, REGISTRY_KEY);
    }
    lua_rawgeti(L, 3, 1);
    lua_pushvalue(L, 4);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_pushvalue(L, 4);
    lua_setfield(L, LUA_REGISTRYINDEX, LAST_KEY);
    lp_lua_sae_training_run(L, 4, live);
    return push_result(L, 4);
}

/* ---- cross-layer transcoders ------------------------------------------------------------ */

/* loupe.sae.train{model, arch = "clt", activation = "jumprelu" | "relu", data, width |
 * expansion, l1, pre_act, steps | tokens, batch, lr, warmup, decay, l1_warmup, ctx, seed,
 * buffer, live}: every layer's blocks.L.mlp.hook_in and hook_out harvested at once. */
static int train_clt(lua_State *L)
{
    lua_getfield(L, 1, "model");
    const lp_model *m = check_model(L, -1)->m;
    lua_pop(L, 1);
    const int nl = m->cfg.n_layers;
    static const char *const refused[] = {"sweep", "normalize", "transcoder", "hook", "hook_in", "hook_out", "k",
                                          "l0", NULL};
    for (int i = 0; refused[i]; i++) {
        if (lua_getfield(L, 1, refused[i]) != LUA_TNIL && !(lua_isboolean(L, -1) && !lua_toboolean(L, -1)))
            return luaL_error(L, "loupe.sae.train: %s is not an option of a CLT (arch = \"clt\" reads every layer's "
                                 "blocks.L.mlp.hook_in and predicts every hook_out)", refused[i]);
        lua_pop(L, 1);
    }
    if (nl < 1 || nl > 256)
        return luaL_error(L, "loupe.sae.train: a CLT over %d layers (1..256)", nl);
    lua_getfield(L, 1, "activation");
    const char *act = luaL_optstring(L, -1, "jumprelu");
    int jump = !strcmp(act, "jumprelu");
    if (!jump && strcmp(act, "relu"))
        return luaL_error(L, "loupe.sae.train: a CLT's activation is jumprelu or relu (got '%s')", act);
    lua_pop(L, 1);
    int batch = (int)opt_int(L, 1, "batch", 4096, 1, 1 << 24);
    long steps = total_steps(L, 1, batch, 1000);
    int live = lp_lua_opt_bool(L, 1, "live", 1);
    char(*hooks)[96] = lua_newuserdatauv(L, (size_t)2 * nl * 96, 0);
    for (int l = 0; l < nl; l++) {
        snprintf(hooks[l], 96, "blocks.%d.mlp.hook_in", l);
        snprintf(hooks[nl + l], 96, "blocks.%d.mlp.hook_out", l);
    }
    push_stream_of(L, NULL, NULL, hooks, 2 * nl, batch, 0);
    lua_remove(L, -2);
    lp_act_stream *stream = lp_lua_check_act_stream(L, 2);
    int d = (int)lp_act_stream_dim(stream, 0);
    long width = (long)opt_int(L, 1, "width", 0, 0, LUA_MAXINTEGER);
    if (!width)
        width = (long)(opt_num(L, 1, "expansion", 4) * d + 0.5);
    if (width < 1 || width > 1L << 28)
        return luaL_error(L, "loupe.sae.train: width must be in 1..2^28 (features per layer)");
    /* weights, gradients, two moments: every layer's encoder and decoders; a batch's z, f,
     * and predictions per layer (as check_memory for one transcoder) */
    double tri = (double)nl * (nl + 1) / 2;
    double bytes = 4.0 * (5.0 * (double)width * d * (nl + tri) + 3.0 * batch * (double)width * nl +
                          3.0 * batch * (double)d * tri);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double have = pages > 0 && page > 0 ? (double)pages * page : 0;
    if (have > 0 && bytes > have) {
        char msg[256];
        snprintf(msg, sizeof msg, "cannot allocate %.1f GB for a CLT of %d layers x %ld features at batch %d (this "
                 "machine has %.1f GB)", bytes / 1e9, nl, width, batch, have / 1e9);
        return lp_lua_raise(L, LP_ERR_NOMEM, "loupe.sae.train: %s", msg);
    }
    lp_sae_config sc = {.arch = jump ? LP_SAE_JUMPRELU : LP_SAE_STANDARD, .d_in = d, .d_sae = (int)width, .d_out = d,
                        .transcoder = 1};
    lp_sae_train_opts o = lp_sae_train_defaults(&sc);
    o.lr = (float)opt_num(L, 1, "lr", 3e-4);
    o.steps = steps, o.batch = batch;
    o.warmup = (long)opt_int(L, 1, "warmup", 0, 0, steps);
    o.decay = lp_lua_opt_bool(L, 1, "decay", 0);
    o.l1_warmup = (long)opt_int(L, 1, "l1_warmup", steps / 20, 0, steps);
    o.seed = (uint64_t)opt_int(L, 1, "seed", 1, 0, LUA_MAXINTEGER);
    o.loss.sparsity = LP_SPARSITY_TANH, o.loss.tanh_c = 4.0f;
    o.loss.l1 = (float)opt_num(L, 1, "l1", 1e-3);
    o.loss.bandwidth = (float)opt_num(L, 1, "bandwidth", 2.0);
    o.loss.pre_act = (float)opt_num(L, 1, "pre_act", 0);
    if (o.loss.l1 < 0 || o.loss.pre_act < 0 || !(o.loss.bandwidth > 0))
        return luaL_error(L, "loupe.sae.train: l1 and pre_act must be non-negative, bandwidth positive");
    if (o.loss.pre_act > 0 && !jump)
        return luaL_error(L, "loupe.sae.train: pre_act is for a jumprelu CLT");
    float theta0 = (float)opt_num(L, 1, "threshold", 0.1);
    lua_createtable(L, 1, 0); /* 3: the CLT */
    lp_clt *c = lp_clt_new(nl, d, (int)width, jump);
    if (!c || lp_clt_init_random(c, o.seed, 0.1f, theta0) < 0) {
        lp_clt_free(c);
        return lp_lua_backend_error(L, "loupe.sae.train");
    }
    snprintf(c->feature_input_hook, sizeof c->feature_input_hook, "mlp.hook_in");
    snprintf(c->feature_output_hook, sizeof c->feature_output_hook, "mlp.hook_out");
    lp_lua_push_clt(L, c);
    lua_rawseti(L, 3, 1);
    sae_training *tr = lua_newuserdatauv(L, sizeof *tr, UV_N); /* 4 */
    memset(tr, 0, sizeof *tr);
    luaL_setmetatable(L, SAE_TRAINING_MT);
    tr->total = steps, tr->batch = batch;
    lua_pushvalue(L, 3), lua_setiuservalue(L, 4, UV_SAES);
    lua_pushvalue(L, 2), lua_setiuservalue(L, 4, UV_STREAM);
    lp_sae_trainer *t = lp_clt_trainer_new(c, &o);
    if (!t)
        return lp_lua_backend_error(L, "loupe.sae.train");
    lp_sae_run_opts ro = {.stream = stream, .batch = batch, .d_in = d, .d_out = d, .layers = nl};
    if (!(tr->run = lp_sae_run_new(&t, 1, &ro)))
        return lp_lua_backend_error(L, "loupe.sae.train");
    return start_training(L, live);
}

/* ---- registration ----------------------------------------------------------------------- */

static const lp_lua_field SAE_FIELDS[] = {
    {"cfg", "table: the configuration (SAELens' cfg.json names)"},
    {"d_in", "integer: the input dimension"},
    {"d_sae", "integer: the number of features"},
    {"d_out", "integer: the output dimension (d_in for an SAE)"},
    {"arch", "string: standard, topk, batchtopk, jumprelu, matryoshka_batchtopk (transcoder_ in front for one)"},
    {"k", "integer: features kept per token (topk, batchtopk), or nil"},
    {"hook_in", "string: the hook point read"},
    {"hook_out", "string: the hook point predicted (hook_in for an SAE)"},
    {"layer", "integer: the layer of the hook, or -1"},
    {"W_enc", "Tensor (d_in, d_sae): a copy of the encoder"},
    {"W_dec", "Tensor (d_sae, d_out): a copy of the decoder (row i is feature i's direction)"},
    {"b_enc", "Tensor (d_sae): a copy of the encoder bias"},
    {"b_dec", "Tensor (d_out): a copy of the decoder bias"},
    {"threshold", "Tensor (d_sae): JumpReLU thresholds, or nil"},
    {"W_skip", "Tensor (d_out, d_in): a skip transcoder's skip weights, or nil"},
    {"sparsity", "Tensor (d_sae): log10 firing fraction, when known"},
    {"scale", "number: the input normalisation factor of training (folded into the weights on save)"},
    {"history", "table of lists after loupe.sae.train: step, tokens, loss, mse, sparsity, l0, "
                "explained_variance, dead"},
    {NULL, NULL}};

void lp_lua_open_sae_train(lua_State *L)
{
    luaL_newmetatable(L, SAE_TRAINING_MT);
    lua_pushcfunction(L, training_gc), lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "sae") != LUA_TTABLE)
        luaL_error(L, "lp_lua_open_sae_train: loupe.sae is missing (open lua_dict first)");
    lp_lua_setfunc(
        L, -1, "train", l_train,
        "loupe.sae.train{model = m, hook = name | transcoder = true, layer = L (or hook_in, hook_out), skip = false, "
        "data = ds, "
        "arch = \"topk\", width | expansion = 16, k = 32, l1, l0, steps = 1000 | tokens, batch = 4096, lr, warmup, "
        "decay, ctx, seed, normalize = false, sweep = {k = {...}} | {l1 = {...}}, live = true} -> SAE (a list for "
        "a sweep)\n"
        "loupe.sae.train{model = m, arch = \"clt\", activation = \"jumprelu\" | \"relu\", data = ds, width | expansion "
        "= 4, l1 = 1e-3, pre_act = 0, threshold = 0.1, bandwidth = 2, steps | tokens, batch, lr, warmup, decay, "
        "l1_warmup, ctx, seed, live} -> Transcoders (a cross-layer transcoder)\n"
        "Trains an SAE (or a transcoder from hook_in to hook_out; by default the MLP's blocks.L.mlp.hook_in -> "
        "hook_out; skip = true adds a trained linear skip connection W_skip, x_hat = f W_dec + b_dec + x W_skip^T) on the model's activations over the data, with live figures of loss, L0, explained variance and "
        "dead features against tokens and a progress bar. arch: topk, standard, batchtopk, jumprelu (l0: the step "
        "penalty, l1: the tanh one), matryoshka. A sweep trains several from one stream. Interrupted, the SAE "
        "keeps its last finished step; loupe.sae.train{resume = true [, sae = s, steps]} continues the last training (or s's). sae.history "
        "holds step, tokens, loss, mse, sparsity, l0, explained_variance, dead.\n"
        "A CLT (arch = \"clt\") reads every layer's blocks.L.mlp.hook_in and predicts every hook_out (features of "
        "layer l decode into every layer from l on), with Anthropic's tanh penalty on the concatenated decoder "
        "norms (coefficient l1, warmed up over l1_warmup steps) and JumpReLU's rectangle-kernel threshold "
        "gradient; its history's l0 is the mean per layer and explained_variance pooled over layers; "
        "clt.layer_explained_variance and clt.layer_l0 hold the last step's per layer.");
    lua_pop(L, 1);
    luaL_getmetatable(L, LP_LUA_SAE_MT);
    lp_lua_settype(L, lua_gettop(L),
                   "SAE: a sparse autoencoder or transcoder (loupe.sae.train, loupe.sae.load); sae:encode(x), "
                   "sae:decode(f), sae:forward(x), sae:save(dir).",
                   SAE_FIELDS);
    lua_pop(L, 1);
}
