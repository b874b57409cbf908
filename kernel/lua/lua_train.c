/* loupe.model{...} (a model of a given shape with random weights) and loupe.train{...}
 * (backend/train/train.h) with a live loss curve and a progress bar.
 *
 * The loop is the backend's (lp_training_run): this file reads the options, runs it, and
 * turns its progress reports into the live figure, the progress bar, the user's callbacks
 * and checkpoints. A training keeps its state (the backend's lp_training: the trainer with
 * its AdamW moments and step count, the history; here the data, the callback and the
 * options) in a loupe.Training userdata stored in a weak-keyed registry table under the
 * model it trains, so that an interrupted training can be resumed with
 * loupe.train{model = m, resume = true} and the model is always as of its last finished
 * step (the trainer never applies half an update). */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "lua_api.h"
#include "lua_data.h"
#include "lua_model_impl.h"
#include "lua_train.h"
#include "ops/ops.h"
#include "progress.h"
#include "train/train.h"
#include "util.h"

#define TRAINING_MT "loupe.Training"
#define REGISTRY_KEY "loupe.trainings" /* weak-keyed: model userdata -> Training */

/* uservalues of a Training: 1 the data, 2 the validation data (or nil), 3 the callback (or
 * nil); the datasets' generators are lent to the backend's training */
enum { UV_DATA = 1, UV_VAL, UV_CB, UV_N = UV_CB };

typedef struct training {
    lp_training *run; /* owns the trainer */
    int total, cb_every, save_every;
    char save[1024]; /* checkpoint folder, or "" */
    int running;     /* in run_training (a callback may start another training) */
} training;

static int training_gc(lua_State *L)
{
    training *tr = luaL_checkudata(L, 1, TRAINING_MT);
    lp_training_free(tr->run);
    tr->run = NULL;
    return 0;
}

/* Frees the trainer of this model's earlier training now and forgets that training (it
 * can no longer be resumed). Lua would free it only when it collects the small userdata,
 * which it sees no reason to hurry: on a GPU, weights, gradients, both moments and the
 * activations of every earlier run would pile up. One still running (this call comes from
 * its callback) is only forgotten: collection frees it once that run has returned. */
static void release_training(lua_State *L, int reg, int model)
{
    lua_pushvalue(L, model);
    if (lua_rawget(L, reg) != LUA_TNIL) {
        training *old = luaL_testudata(L, -1, TRAINING_MT);
        if (old && !old->running) {
            lp_training_free(old->run);
            old->run = NULL;
        }
    }
    lua_pop(L, 1);
    lua_pushvalue(L, model);
    lua_pushnil(L);
    lua_rawset(L, reg);
}

/* ---- loupe.model{...} -------------------------------------------------------------------- */

static int opt_int(lua_State *L, int t, const char *key, int def, int lo, int hi)
{
    lua_getfield(L, t, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        if (def == INT32_MIN)
            return luaL_error(L, "%s = ... is required", key);
        return def;
    }
    int isnum = 0;
    lua_Integer v = lua_tointegerx(L, -1, &isnum);
    if (!isnum || v < lo || v > hi)
        return luaL_error(L, "%s must be an integer in [%d, %d] (got %s)", key, lo, hi, luaL_tolstring(L, -1, NULL));
    lua_pop(L, 1);
    return (int)v;
}

static double opt_num(lua_State *L, int t, const char *key, double def)
{
    lua_getfield(L, t, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return def;
    }
    int isnum = 0;
    double v = lua_tonumberx(L, -1, &isnum);
    if (!isnum)
        return luaL_error(L, "%s must be a number (got %s)", key, luaL_tolstring(L, -1, NULL));
    lua_pop(L, 1);
    return v;
}

/* Pushes a new Model with random weights for the config table at idx. */
static int push_random_model(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lp_model_config c;
    memset(&c, 0, sizeof c);
    lua_getfield(L, idx, "arch");
    const char *arch = luaL_optstring(L, -1, "gpt2");
    if (strcmp(arch, "gpt2") == 0)
        c.arch = LP_ARCH_GPT2;
    else if (strcmp(arch, "llama") == 0)
        c.arch = LP_ARCH_LLAMA;
    else
        return luaL_error(L, "loupe.model: arch must be \"gpt2\" or \"llama\" (got \"%s\")", arch);
    lua_pop(L, 1);
    lp_tokenizer *tok = NULL;
    lua_getfield(L, idx, "tokenizer");
    if (!lua_isnil(L, -1)) {
        const char *folder = lua_tostring(L, -1);
        if (!folder || lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "loupe.model: tokenizer must be the folder of a tokenizer (tokenizer.json), e.g. "
                                 "the save = folder of loupe.tokenizer_train");
        if (!(tok = lp_tokenizer_load(folder)))
            return lp_lua_backend_error(L, "loupe.model");
    }
    lua_pop(L, 1);
    /* the model userdata owns tok from here on, even when the checks below raise */
    model_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    memset(u, 0, sizeof *u);
    u->tok = tok;
    luaL_setmetatable(L, MODEL_MT);
    if (!tok)
        snprintf(u->tokerr, sizeof u->tokerr, "made by loupe.model without tokenizer = folder");
    int vdef = tok ? (int)lp_tokenizer_vocab_size(tok) : INT32_MIN;
    c.n_layers = opt_int(L, idx, "n_layers", INT32_MIN, 1, 1024);
    c.d_model = opt_int(L, idx, "d_model", INT32_MIN, 1, 1 << 16);
    c.n_heads = opt_int(L, idx, "n_heads", INT32_MIN, 1, 1024);
    c.n_kv_heads = opt_int(L, idx, "n_kv_heads", c.n_heads, 1, c.n_heads);
    if (c.n_heads % c.n_kv_heads)
        return luaL_error(L, "loupe.model: n_heads (%d) must be a multiple of n_kv_heads (%d)", c.n_heads, c.n_kv_heads);
    int has_dhead = lua_getfield(L, idx, "d_head") != LUA_TNIL;
    lua_pop(L, 1);
    if (c.d_model % c.n_heads && !has_dhead)
        return luaL_error(L, "loupe.model: d_model (%d) is not a multiple of n_heads (%d); give d_head", c.d_model,
                          c.n_heads);
    c.d_head = opt_int(L, idx, "d_head", c.d_model / c.n_heads, 1, 1 << 14);
    if (c.arch == LP_ARCH_LLAMA && c.d_head % 2)
        return luaL_error(L, "loupe.model: rotary embeddings need an even d_head (got %d)", c.d_head);
    if (c.arch == LP_ARCH_GPT2 && c.d_head * c.n_heads != c.d_model)
        return luaL_error(L, "loupe.model: GPT-2 needs d_head * n_heads = d_model");
    c.d_mlp = opt_int(L, idx, "d_mlp", 4 * c.d_model, 1, 1 << 20);
    c.d_vocab = opt_int(L, idx, "d_vocab", vdef, 2, 1 << 24);
    if (tok && c.d_vocab < (int)lp_tokenizer_vocab_size(tok))
        return luaL_error(L, "loupe.model: d_vocab %d is smaller than the tokenizer's vocabulary (%d)", c.d_vocab,
                          (int)lp_tokenizer_vocab_size(tok));
    c.n_ctx = opt_int(L, idx, "n_ctx", INT32_MIN, 1, 1 << 20);
    c.eps = (float)opt_num(L, idx, "eps", 1e-5);
    c.attn_only = lp_lua_opt_bool(L, idx, "attn_only", 0);
    if (c.attn_only && c.arch != LP_ARCH_GPT2)
        return luaL_error(L, "loupe.model: attn_only is a GPT-2-family option");
    c.tied = lp_lua_opt_bool(L, idx, "tied", 1);
    if (c.arch == LP_ARCH_GPT2 && !c.tied)
        return luaL_error(L, "loupe.model: GPT-2 models tie the unembedding to the embedding");
    lua_getfield(L, idx, "act");
    const char *act = luaL_optstring(L, -1, "gelu_new");
    if (strcmp(act, "gelu_new") == 0)
        c.act = LP_GELU_TANH;
    else if (strcmp(act, "gelu") == 0)
        c.act = LP_GELU_ERF;
    else
        return luaL_error(L, "loupe.model: act must be \"gelu_new\" (tanh form) or \"gelu\" (got \"%s\")", act);
    lua_pop(L, 1);
    c.rope_theta = opt_num(L, idx, "rope_theta", 10000.0);
    c.rope = LP_ROPE_DEFAULT;
    c.rope_factor = 1.0;
    c.rope_orig_ctx = c.n_ctx;
    c.bos = tok ? lp_tokenizer_bos(tok) : -1;
    c.eos = tok ? lp_tokenizer_eos(tok) : -1;
    lua_Integer seed = (lua_Integer)opt_num(L, idx, "seed", 0);
    if (!(u->m = lp_model_random(&c, (uint64_t)seed)))
        return lp_lua_backend_error(L, "loupe.model");
    return 1;
}

static int l_model(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    return push_random_model(L, 1);
}

/* ---- loupe.train{...} ---------------------------------------------------------------------- */

typedef struct {
    char id[48];
    double t0, last;
    int started;
} bar;

static void bar_publish(lua_State *L, bar *b, training *tr, int step, double loss, int final)
{
    char label[96];
    snprintf(label, sizeof label, "train · loss %.4f", loss);
    json_t *bundle = lp_display_progress(label, step, tr->total, lp_now_s() - b->t0, final);
    if (!bundle)
        return;
    lp_lua_publish(L, bundle, b->id, b->started);
    b->started = 1;
    b->last = lp_now_s();
}

/* Calls plot:method(args...) for the live plot at index plot (nil: nothing). */
static void plot_call(lua_State *L, int plot, const char *method, int nargs)
{
    if (lua_isnil(L, plot)) {
        lua_pop(L, nargs);
        return;
    }
    lua_getfield(L, plot, method);
    lua_pushvalue(L, plot);
    lua_rotate(L, -2 - nargs, 2); /* method, self before the args */
    lua_call(L, nargs + 1, 0);
}

static void plot_point(lua_State *L, int plot, int step, double v, const char *series)
{
    lua_pushinteger(L, step);
    lua_pushnumber(L, v);
    lua_pushstring(L, series);
    plot_call(L, plot, "add", 3);
}

/* What the backend's progress callback needs to reach the Lua side. */
typedef struct {
    lua_State *L;
    training *tr;
    model_ud *u;
    const lp_train_progress *p;
    bar b;
    int live;
    double loss;     /* the last step's */
    int failed;      /* a callback, a checkpoint or the display failed: err and code say how */
    char err[600];
    lp_err code;
} progress_ctx;

/* progress_body(ctx, plot, callback, model), under lua_pcall: the step on the live figure,
 * then the user's callback and the checkpoint when due (with the weights pulled from a GPU
 * first), then the progress bar, a few times a second. */
static int progress_body(lua_State *L)
{
    progress_ctx *c = lua_touserdata(L, 1);
    const lp_train_progress *p = c->p;
    training *tr = c->tr;
    lp_trainer *t = lp_training_trainer(tr->run);
    int last = p->step == p->total;
    c->loss = p->loss;
    if (c->live) {
        plot_point(L, 2, p->step, p->loss, "train");
        if (p->validated)
            plot_point(L, 2, p->step, p->val_loss, "validation");
    }
    if (!lua_isnil(L, 3) && (p->step % tr->cb_every == 0 || last)) {
        if (lp_trainer_pull(t) < 0) {
            snprintf(c->err, sizeof c->err, "%s", lp_last_error()), c->code = lp_last_error_code();
            c->failed = 1;
            return 0;
        }
        lua_pushvalue(L, 3);
        lua_pushinteger(L, p->step);
        lua_pushnumber(L, p->loss);
        lua_pushvalue(L, 4);
        int st = lua_pcall(L, 3, 0, 0);
        if (st != LUA_OK) {
            c->code = lp_lua_caught_code(L, st, -1);
            snprintf(c->err, sizeof c->err, "callback at step %d: %s", p->step, lua_tostring(L, -1));
            c->failed = 1;
            return 0;
        }
    }
    if (tr->save[0] && (p->step % tr->save_every == 0 || last) &&
        (lp_trainer_pull(t) < 0 || lp_model_save(c->u->m, tr->save, c->u->tok) < 0)) {
        snprintf(c->err, sizeof c->err, "%s", lp_last_error()), c->code = lp_last_error_code();
        c->failed = 1;
        return 0;
    }
    if (c->live && lp_now_s() - c->b.last >= 0.25)
        bar_publish(L, &c->b, tr, p->step, p->loss, 0);
    return 0;
}

/* The backend's progress callback: progress_body under lua_pcall, so that no Lua error
 * unwinds through lp_training_run; non-zero (stop) when something failed. The arguments of
 * progress_body are on top of the stack (plot, callback, model) and stay there. */
static int on_progress(void *ud, const lp_train_progress *p)
{
    progress_ctx *c = ud;
    lua_State *L = c->L;
    c->p = p;
    lua_pushcfunction(L, progress_body);
    lua_pushlightuserdata(L, c);
    for (int k = 0; k < 3; k++)
        lua_pushvalue(L, -5);
    int st = lua_pcall(L, 4, 0, 0);
    if (st != LUA_OK) {
        c->code = lp_lua_caught_code(L, st, -1);
        snprintf(c->err, sizeof c->err, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error in the display");
        lua_pop(L, 1);
        c->failed = 1;
    }
    return c->failed;
}

/* A new live figure for the Training, with its history so far; returns its index. */
static int push_live_plot(lua_State *L, training *tr)
{
    lua_getglobal(L, "loupe");
    lua_getfield(L, -1, "plot");
    lua_getfield(L, -1, "live");
    lua_createtable(L, 0, 3);
    lua_pushstring(L, "training loss");
    lua_setfield(L, -2, "title");
    lua_pushstring(L, "step");
    lua_setfield(L, -2, "xlabel");
    lua_pushstring(L, "cross-entropy (nats)");
    lua_setfield(L, -2, "ylabel");
    lua_call(L, 1, 1);
    lua_replace(L, -3);
    lua_pop(L, 1);
    int plot = lua_gettop(L);
    lp_train_history h = lp_training_history(tr->run);
    for (size_t i = 0; i < h.n; i++)
        plot_point(L, plot, h.step[i], h.loss[i], "train");
    for (size_t i = 0; i < h.n_val; i++)
        plot_point(L, plot, h.val_step[i], h.val_loss[i], "validation");
    return plot;
}

/* Trains the Training at index ti on the model at index mi up to tr->total steps
 * (lp_training_run), showing the live figure and the progress bar. Leaves the stack as it
 * found it; raises on error (the state stays consistent for resume). */
static void run_training(lua_State *L, int mi, int ti, int live)
{
    int top = lua_gettop(L);
    progress_ctx c = {.L = L, .u = check_model(L, mi), .tr = luaL_checkudata(L, ti, TRAINING_MT), .live = live,
                      .loss = NAN};
    training *tr = c.tr;
    c.b.t0 = lp_now_s();
    char uuid[37];
    lp_uuid(uuid);
    snprintf(c.b.id, sizeof c.b.id, "loupe-train-%.12s", uuid);
    if (live)
        push_live_plot(L, tr);
    else
        lua_pushnil(L);
    int plot = lua_gettop(L);
    lua_getiuservalue(L, ti, UV_CB);
    lua_pushvalue(L, mi);
    if (live)
        bar_publish(L, &c.b, tr, lp_trainer_steps(lp_training_trainer(tr->run)), NAN, 0);
    tr->running = 1;
    int rc = lp_training_run(tr->run, tr->total, on_progress, &c);
    tr->running = 0;
    if (rc < 0)
        snprintf(c.err, sizeof c.err, "%s", lp_last_error()), c.code = lp_last_error_code();
    int failed = rc != 0, interrupted = failed && (lp_interrupted() || c.code == LP_ERR_INTERRUPTED);
    int done = lp_trainer_steps(lp_training_trainer(tr->run));
    if (live) { /* the final state of both displays stays in the notebook */
        bar_publish(L, &c.b, tr, done, c.loss, !failed);
        plot_call(L, plot, "done", 0);
    }
    lua_settop(L, top);
    if (interrupted) {
        lua_getglobal(L, "print");
        lua_pushfstring(L, "training interrupted at step %d of %d: the model keeps the weights of step %d; "
                           "loupe.train{model = m, resume = true} continues", done, tr->total, done);
        lua_call(L, 1, 0);
        lp_lua_raise(L, LP_ERR_INTERRUPTED, "interrupted");
    }
    if (failed)
        lp_lua_raise(L, c.code, "loupe.train: %s (the model keeps the weights of step %d)", c.err, done);
}

/* Sets t[key] to a list of the n values (integers when ints). */
static void set_list(lua_State *L, const char *key, const int *ints, const double *vals, size_t n)
{
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        if (ints)
            lua_pushinteger(L, ints[i]);
        else
            lua_pushnumber(L, vals[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, key);
}

/* Pushes the history table loupe.train returns: the backend's lists and the totals. */
static void push_history(lua_State *L, const lp_training *run)
{
    lp_train_history h = lp_training_history(run);
    double s = lp_training_seconds(run);
    long long tokens = lp_training_tokens(run);
    lua_createtable(L, 0, 10);
    set_list(L, "step", h.step, NULL, h.n);
    set_list(L, "loss", NULL, h.loss, h.n);
    set_list(L, "lr", NULL, h.lr, h.n);
    set_list(L, "grad_norm", NULL, h.grad_norm, h.n);
    set_list(L, "val_step", h.val_step, NULL, h.n_val);
    set_list(L, "val_loss", NULL, h.val_loss, h.n_val);
    lua_pushnumber(L, s);
    lua_setfield(L, -2, "seconds");
    lua_pushinteger(L, (lua_Integer)tokens);
    lua_setfield(L, -2, "tokens");
    lua_pushstring(L, lp_device_name(lp_trainer_device(lp_training_trainer(run))));
    lua_setfield(L, -2, "device");
    lua_pushnumber(L, s > 0 ? (double)tokens / s : 0.0);
    lua_setfield(L, -2, "tokens_per_s");
}

static const char *const SCHEDULES[] = {"constant", "cosine", NULL};

/* The options of the table at idx over the defaults in o. */
static void read_opts(lua_State *L, int idx, lp_train_opts *o)
{
    o->lr = (float)opt_num(L, idx, "lr", o->lr);
    o->beta1 = (float)opt_num(L, idx, "beta1", o->beta1);
    o->beta2 = (float)opt_num(L, idx, "beta2", o->beta2);
    o->eps = (float)opt_num(L, idx, "eps", o->eps);
    o->weight_decay = (float)opt_num(L, idx, "weight_decay", o->weight_decay);
    o->grad_clip = (float)opt_num(L, idx, "clip", o->grad_clip);
    o->warmup_steps = opt_int(L, idx, "warmup", o->warmup_steps, 0, 1 << 30);
    o->min_lr_frac = (float)opt_num(L, idx, "min_lr", o->min_lr_frac);
    o->accum = opt_int(L, idx, "accum", o->accum > 0 ? o->accum : 1, 1, 1 << 16);
    lua_getfield(L, idx, "schedule");
    if (!lua_isnil(L, -1))
        o->schedule = luaL_checkoption(L, -1, NULL, SCHEDULES);
    lua_pop(L, 1);
}

static int l_train(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_getfield(L, 1, "model");
    if (lua_istable(L, 2)) {
        push_random_model(L, 2);
        lua_replace(L, 2);
    } else if (lua_isnil(L, 2)) {
        return luaL_error(L, "loupe.train: model = m (a Model) or model = {arch = \"gpt2\", n_layers = ..., ...} is "
                             "required");
    }
    model_ud *u = check_model(L, 2);
    int live = lp_lua_opt_bool(L, 1, "live", 1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, REGISTRY_KEY);
    if (!lua_getmetatable(L, -1)) {
        lua_createtable(L, 0, 1);
        lua_pushstring(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
    } else {
        lua_pop(L, 1);
    }
    int reg = lua_gettop(L); /* 3 */
    int ti; /* the Training this call runs */
    if (lp_lua_opt_bool(L, 1, "resume", 0)) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, reg) == LUA_TNIL)
            return luaL_error(L, "loupe.train: this model has no training to resume; start one with loupe.train{model "
                                 "= m, data = ..., steps = ...}");
        ti = lua_gettop(L);
        training *tr = luaL_checkudata(L, ti, TRAINING_MT);
        lp_trainer *t = lp_training_trainer(tr->run);
        int steps = opt_int(L, 1, "steps", tr->total, lp_trainer_steps(t), 1 << 30);
        lp_train_opts o = *lp_trainer_opts(t);
        read_opts(L, 1, &o);
        if (steps != tr->total && o.schedule == LP_SCHED_COSINE)
            o.total_steps = steps;
        if (lp_trainer_set_opts(t, &o) < 0)
            return lp_lua_backend_error(L, "loupe.train");
        tr->total = steps;
        run_training(L, 2, ti, live);
    } else {
        lua_getfield(L, 1, "data");
        if (lua_isnil(L, -1))
            return luaL_error(L, "loupe.train: data = ... is required (a Dataset: loupe.data.load{...} or "
                                 "loupe.data.repeated{...})");
        lp_training_opts ro = {0};
        ro.data = lp_lua_check_dataset(L, -1, &ro.data_rng);
        int di = lua_gettop(L);
        lua_getfield(L, 1, "val");
        int vi = lua_gettop(L);
        if (!lua_isnil(L, vi))
            ro.val = lp_lua_check_dataset(L, vi, &ro.val_rng);
        const lp_model_config *c = &u->m->cfg;
        lua_getfield(L, 1, "callback");
        int cbi = lua_gettop(L);
        if (!lua_isnil(L, cbi))
            luaL_checktype(L, cbi, LUA_TFUNCTION);
        int steps = opt_int(L, 1, "steps", INT32_MIN, 1, 1 << 30);
        lp_train_opts o;
        lp_train_opts_default(&o);
        o.schedule = LP_SCHED_COSINE;
        read_opts(L, 1, &o);
        o.total_steps = steps;
        int B = opt_int(L, 1, "batch", 8, 1, 1 << 16);
        int T = opt_int(L, 1, "ctx", c->n_ctx < 128 ? c->n_ctx : 128, 1, 1 << 20);
        training *tr = lua_newuserdatauv(L, sizeof *tr, UV_N);
        memset(tr, 0, sizeof *tr);
        luaL_setmetatable(L, TRAINING_MT);
        ti = lua_gettop(L);
        tr->total = steps;
        ro.eval_every = opt_int(L, 1, "eval_every", steps >= 10 ? steps / 10 : 1, 1, 1 << 30);
        ro.eval_batches = opt_int(L, 1, "eval_batches", 4, 1, 1 << 16);
        tr->cb_every = opt_int(L, 1, "callback_every", ro.eval_every, 1, 1 << 30);
        lua_getfield(L, 1, "save");
        if (!lua_isnil(L, -1)) {
            size_t len;
            const char *folder = luaL_checklstring(L, -1, &len);
            if (len == 0 || len >= sizeof tr->save)
                return luaL_error(L, "loupe.train: save = folder must be a non-empty path shorter than %d bytes",
                                  (int)sizeof tr->save);
            memcpy(tr->save, folder, len + 1);
        }
        lua_pop(L, 1);
        tr->save_every = opt_int(L, 1, "save_every", steps, 1, 1 << 30);
        lp_device dev = lp_default_device();
        lua_getfield(L, 1, "device");
        if (!lua_isnil(L, -1) && lp_device_parse(luaL_checkstring(L, -1), &dev) < 0)
            return lp_lua_backend_error(L, "loupe.train");
        lua_pop(L, 1);
        /* everything but memory is checked before an earlier training is let go */
        if ((dev != LP_DEVICE_CPU && !lp_backend_get(dev)) || lp_trainer_check(u->m, &o, B, T) < 0 ||
            lp_training_check(u->m, T, &ro) < 0)
            return lp_lua_backend_error(L, "loupe.train");
        lp_trainer *t = lp_trainer_new_on(u->m, &o, B, T, dev);
        if (!t) {
            /* out of memory: let go of this model's earlier training and of the
             * unreachable ones (models gone), then try once more */
            release_training(L, reg, 2);
            lua_gc(L, LUA_GCCOLLECT);
            if (!(t = lp_trainer_new_on(u->m, &o, B, T, dev)))
                return lp_lua_backend_error(L, "loupe.train");
        }
        if (!(tr->run = lp_training_new(t, &ro))) /* takes t, also when it fails */
            return lp_lua_backend_error(L, "loupe.train");
        lua_pushvalue(L, di);
        lua_setiuservalue(L, ti, UV_DATA);
        lua_pushvalue(L, vi);
        lua_setiuservalue(L, ti, UV_VAL);
        lua_pushvalue(L, cbi);
        lua_setiuservalue(L, ti, UV_CB);
        release_training(L, reg, 2); /* an earlier training of this model ends here */
        lua_pushvalue(L, 2);
        lua_pushvalue(L, ti);
        lua_rawset(L, reg);
        run_training(L, 2, ti, live);
    }
    /* returns m, history (with the totals) of the training run here (a callback may have
     * started another of this model since) */
    training *tr = luaL_checkudata(L, ti, TRAINING_MT);
    push_history(L, tr->run);
    lua_pushvalue(L, 2);
    lua_insert(L, -2);
    return 2;
}

void lp_lua_open_train(lua_State *L)
{
    int loupe = lua_gettop(L);
    luaL_newmetatable(L, TRAINING_MT);
    lua_pushcfunction(L, training_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lp_lua_setfunc(L, loupe, "model", l_model,
                   "loupe.model{arch = \"gpt2\" | \"llama\", n_layers, d_model, n_heads, n_ctx, [d_vocab], "
                   "[n_kv_heads], [d_head], [d_mlp = 4 d_model], [attn_only = false], [act = \"gelu_new\"], "
                   "[tied = true], [rope_theta = 10000], [eps = 1e-5], [tokenizer = folder], [seed = 0]} -> Model\n"
                   "A model of that shape with random weights (N(0, 0.02) matrices), to train with loupe.train. "
                   "d_vocab defaults to the tokenizer's vocabulary. attn_only: GPT-2 blocks without MLPs.");
    lp_lua_setfunc(L, loupe, "train", l_train,
                   "loupe.train{model = m | {config}, data = Dataset, steps = N, [batch = 8], [ctx = 128], "
                   "[lr = 3e-4], [warmup = 0], [schedule = \"cosine\" | \"constant\"], [min_lr = 0.1], "
                   "[weight_decay = 0.1], [clip = 1.0], [beta1 = 0.9], [beta2 = 0.95], [accum = 1], [val = Dataset], "
                   "[eval_every = steps / 10], [eval_batches = 4], [callback = function(step, loss, m)], "
                   "[callback_every], [save = folder], [save_every = steps], [live = true], [device = \"cuda\" | \"cpu\"]} -> m, "
                   "history\n"
                   "Trains m in place with AdamW (decay on matrices only, global-norm clipping, linear warm-up, "
                   "cosine decay to min_lr * lr), showing a live loss curve and a progress bar. history holds "
                   "step, loss, lr, grad_norm, val_step, val_loss, seconds, tokens, tokens_per_s, device; with val, "
                   "val_loss is the mean loss of the weights as trained so far on eval_batches batches of val, "
                   "every eval_every steps and at the end. On a GPU "
                   "by default when one is present (device = \"cpu\" to stay on the CPU); the model's weights are "
                   "brought back before each callback and checkpoint and at the end. With save, a Hugging "
                   "Face checkpoint (config.json, model.safetensors, the tokenizer) is written every save_every "
                   "steps and at the end.\n"
                   "An interrupt stops after the last finished step (the model keeps those weights); "
                   "loupe.train{model = m, resume = true [, steps = more]} continues with the same optimizer "
                   "state and data. A loss or gradient that becomes NaN stops with an error naming the step "
                   "and leaves the weights of the step before.");
    lua_settop(L, loupe);
}
