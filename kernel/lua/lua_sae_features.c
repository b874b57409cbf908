/* Features of a dictionary you can see: sae:harvest{...} (backend/dict/harvest.h) with a
 * progress bar, sae:feature(i) (display/dashboard.h) and sae:label(i [, text]); the harvest
 * and the labels ride with the SAE (lua_dict's extra fields "harvest", read back with
 * sae:harvest(), and "labels", read as sae.labels: feature index -> label) and
 * are saved and loaded with it through lua_dict's file hooks (loupe_harvest.safetensors,
 * loupe_labels.json beside sae_weights.safetensors). Feature indices count from 0, as
 * SAELens, Neuronpedia and circuit-tracer count them. Follows the contract in lua_api.h. */
#include <jansson.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "browser.h"
#include "dashboard.h"
#include "dict/sae_ops.h"
#include "prompt_features.h"
#include "dict/harvest.h"
#include "dict/harvest_export.h"
#include "dict/io_impl.h"
#include "lua_api.h"
#include "lua_data.h"
#include "lua_dict.h"
#include "lua_model_impl.h"
#include "progress.h"
#include "svg.h"
#include "text.h"
#include "util.h"

#define HARVEST_MT "loupe.Harvest"
#define DASH_MT "loupe.FeatureDashboard"
#define LABELS_FILE "loupe_labels.json"
enum { LABEL_MAX = 200 };

typedef struct {
    lp_harvest *h;
} harvest_ud;

typedef struct {
    json_t *bundle;
} dash_ud;

/* ---- the SAE's extra fields ---------------------------------------------------------------- */

/* Pushes extra[sae] (made when missing) for the SAE at idx. */
static void push_extra(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_getfield(L, LUA_REGISTRYINDEX, LP_LUA_SAE_EXTRA) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushstring(L, "k"), lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, LP_LUA_SAE_EXTRA);
    }
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, idx);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
    }
    lua_remove(L, -2);
}

/* The SAE's harvest (borrowed) or NULL; leaves the stack as it was. */
static lp_harvest *sae_harvest(lua_State *L, int idx)
{
    push_extra(L, idx);
    lua_getfield(L, -1, "harvest");
    harvest_ud *u = luaL_testudata(L, -1, HARVEST_MT);
    lua_pop(L, 2);
    return u ? u->h : NULL;
}

/* The model for a feature's logits: opts.model, else the one the harvest ran; NULL when
 * neither. Leaves the stack as it was. */
static model_ud *feature_model(lua_State *L, int sae, int opts)
{
    model_ud *mu = NULL;
    if (opts && lua_istable(L, opts)) {
        lua_getfield(L, opts, "model");
        if (!lua_isnil(L, -1))
            mu = check_model(L, -1);
        lua_pop(L, 1);
    }
    if (!mu) {
        push_extra(L, sae);
        lua_getfield(L, -1, "model");
        mu = luaL_testudata(L, -1, MODEL_MT);
        lua_pop(L, 2);
    }
    return mu && mu->m ? mu : NULL;
}

static const char *tok_text(void *ud, int32_t id)
{
    model_ud *mu = ud;
    return mu && mu->tok ? lp_tokenizer_token(mu->tok, id) : NULL;
}

static int check_feature(lua_State *L, const lp_sae *s, int idx, const char *what)
{
    int ok;
    lua_Integer i = lua_tointegerx(L, idx, &ok);
    if (!ok)
        return luaL_error(L, "%s: the feature must be an integer index (0..%d), got %s", what, s->cfg.d_sae - 1,
                          luaL_typename(L, idx));
    if (i < 0 || i >= s->cfg.d_sae)
        return luaL_error(L, "%s: feature %I is out of range: the dictionary has %d features, 0..%d", what, i,
                          s->cfg.d_sae, s->cfg.d_sae - 1);
    return (int)i;
}

/* extra[field][i] as a string into buf: 1 when there is one. Leaves the stack as it was. */
static int extra_label(lua_State *L, int sae, const char *field, int i, char *buf, size_t cap)
{
    int top = lua_gettop(L), found = 0;
    push_extra(L, sae);
    if (lua_getfield(L, -1, field) == LUA_TTABLE && lua_rawgeti(L, -1, i) == LUA_TSTRING) {
        snprintf(buf, cap, "%s", lua_tostring(L, -1));
        found = 1;
    }
    lua_settop(L, top);
    return found;
}

/* Feature i's label into buf: the user's; else the automatic one, computed when a model is
 * known (its tokens and the promoted token), else the one saved with the dictionary, else
 * computed from the harvest alone (tokens as #id). */
static void auto_label(lua_State *L, int sae, const lp_sae *s, int i, model_ud *mu, char *buf, size_t cap)
{
    if (!mu && extra_label(L, sae, "auto_labels", i, buf, cap))
        return;
    const char *promoted = NULL;
    if (mu && mu->tok && s->cfg.d_out == mu->m->cfg.d_model) {
        float *lg = malloc((size_t)mu->m->cfg.d_vocab * sizeof *lg);
        if (lg && lp_feature_logits(mu->m, s, i, lg) == 0) {
            int best = 0;
            for (int v = 1; v < mu->m->cfg.d_vocab; v++)
                if (lg[v] > lg[best])
                    best = v;
            promoted = lp_tokenizer_token(mu->tok, best);
        }
        free(lg);
    }
    lp_harvest_label(buf, cap, sae_harvest(L, sae), i, promoted, tok_text, mu);
}

static void label_of(lua_State *L, int sae, const lp_sae *s, int i, model_ud *mu, char *buf, size_t cap)
{
    if (!extra_label(L, sae, "labels", i, buf, cap))
        auto_label(L, sae, s, i, mu, buf, cap);
}

/* ---- sae:harvest ---------------------------------------------------------------------------- */

typedef struct {
    lua_State *L;
    char id[48];
    double t0, last;
    int started, quiet;
    const char *label;
} bar;

static void bar_show(bar *b, double done, double total, int final)
{
    json_t *j = lp_display_progress(b->label, done, total, lp_now_s() - b->t0, final);
    if (!j)
        return;
    lp_lua_publish(b->L, j, b->id, b->started);
    b->started = 1;
    b->last = lp_now_s();
}

static int on_progress(void *ud, int64_t done, int64_t total)
{
    bar *b = ud;
    if (!b->quiet && lp_now_s() - b->last >= 0.25)
        bar_show(b, (double)done, (double)total, 0);
    return 0;
}

static int harvest_gc(lua_State *L)
{
    harvest_ud *u = luaL_checkudata(L, 1, HARVEST_MT);
    lp_harvest_free(u->h);
    u->h = NULL;
    return 0;
}

static int harvest_tostring(lua_State *L)
{
    harvest_ud *u = luaL_checkudata(L, 1, HARVEST_MT);
    const lp_harvest *h = u->h;
    int dead = 0;
    double dens = 0;
    for (int i = 0; i < h->d_sae; i++) {
        dead += h->count[i] == 0;
        dens += h->count[i] / (double)h->n_tokens;
    }
    char line[400];
    snprintf(line, sizeof line, "harvest of %lld tokens (%lld windows of %d) at %s: %d features, %d live, %d dead, "
             "mean density %.3g%%", (long long)h->n_tokens, (long long)h->windows, h->ctx, h->hook, h->d_sae,
             h->d_sae - dead, dead, 100 * dens / h->d_sae);
    lua_pushstring(L, line);
    return 1;
}

static int harvest_index(lua_State *L)
{
    harvest_ud *u = luaL_checkudata(L, 1, HARVEST_MT);
    const char *k = luaL_checkstring(L, 2);
    const lp_harvest *h = u->h;
    if (!strcmp(k, "n_tokens"))
        lua_pushinteger(L, h->n_tokens);
    else if (!strcmp(k, "d_sae"))
        lua_pushinteger(L, h->d_sae);
    else if (!strcmp(k, "density") || !strcmp(k, "max")) {
        lua_createtable(L, h->d_sae, 0);
        for (int i = 0; i < h->d_sae; i++) {
            lua_pushnumber(L, k[0] == 'd' ? h->count[i] / (double)h->n_tokens : h->max[i]);
            lua_rawseti(L, -2, i + 1);
        }
    } else
        lua_pushnil(L);
    return 1;
}

/* Reads data = dataset | {ids} at opts[key] into o (a scratch copy of a table). */
static void read_tokens(lua_State *L, int opts, const lp_model_config *c, lp_harvest_opts *o)
{
    lua_getfield(L, opts, "data");
    int t = lua_gettop(L);
    if (lua_istable(L, t)) {
        size_t n = lua_rawlen(L, t);
        int32_t *ids = lua_newuserdatauv(L, (n ? n : 1) * sizeof *ids, 0);
        for (size_t i = 0; i < n; i++) {
            int ok;
            lua_rawgeti(L, t, (lua_Integer)i + 1);
            lua_Integer id = lua_tointegerx(L, -1, &ok);
            if (!ok || id < 0 || id >= c->d_vocab)
                luaL_error(L, "sae:harvest: data[%d] is not a token id of this model (0..%d)", (int)i + 1,
                           c->d_vocab - 1);
            ids[i] = (int32_t)id;
            lua_pop(L, 1);
        }
        o->tokens = ids, o->ntokens = n;
    } else if (!lua_isnil(L, t)) {
        lp_dataset *d = lp_lua_check_dataset(L, t, NULL);
        o->tokens = lp_dataset_ids(d), o->ntokens = lp_dataset_size(d);
    } else {
        luaL_error(L, "sae:harvest: no data (data = a loupe.data dataset or a table of token ids)");
    }
    /* the dataset (or the scratch copy) stays on the stack while the harvest runs */
}

static lua_Integer opt_integer(lua_State *L, int t, const char *key, lua_Integer def)
{
    lua_getfield(L, t, key);
    lua_Integer v = lua_isnil(L, -1) ? def : luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Pushes the key under which layer `layer` of the transcoder set at idx keeps its extra
 * fields (a table, made when missing, held by the set's own extra fields). */
static void push_layer_key(lua_State *L, int idx, int layer)
{
    idx = lua_absindex(L, idx);
    push_extra(L, idx);
    if (lua_getfield(L, -1, "layer_keys") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "layer_keys");
    }
    if (lua_rawgeti(L, -1, layer) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, layer);
    }
    lua_replace(L, -3);
    lua_pop(L, 1);
}

/* sae:harvest{...} (layer -1: the SAE at 1) or one layer of tcs:harvest{...} (the set at 1):
 * opts at 2; leaves the harvest on top. */
static int harvest_core(lua_State *L, const lp_sae *s, int layer)
{
    lua_settop(L, 2);
    lua_getfield(L, 2, "model"); /* 4 */
    if (lua_isnil(L, 3))
        return luaL_error(L, "sae:harvest: no model (model = m)");
    model_ud *mu = check_model(L, 3);
    const lp_model_config *c = &mu->m->cfg;
    lp_harvest_opts o = {0};
    read_tokens(L, 2, c, &o); /* 4, 5: data (and its copy) */
    o.ctx = (int)opt_integer(L, 2, "ctx", c->n_ctx > 0 && c->n_ctx < 64 ? c->n_ctx : 64);
    o.want = opt_integer(L, 2, "tokens", 0);
    o.batch = (int)opt_integer(L, 2, "batch", 8);
    o.seed = (uint64_t)opt_integer(L, 2, "seed", 0);
    o.prepend_bos = lp_lua_opt_bool(L, 2, "prepend_bos", c->bos >= 0);
    o.keep_special = lp_lua_opt_bool(L, 2, "keep_special", 0);
    bar b = {.L = L, .quiet = lp_lua_opt_bool(L, 2, "quiet", 0), .label = "harvest"};
    char blabel[48];
    if (layer >= 0) {
        snprintf(blabel, sizeof blabel, "harvest layer %d", layer);
        b.label = blabel;
    }
    char uuid[37];
    lp_uuid(uuid);
    snprintf(b.id, sizeof b.id, "loupe-harvest-%.12s", uuid);
    b.t0 = lp_now_s();
    o.progress = on_progress, o.ud = &b;
    harvest_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->h = NULL;
    luaL_setmetatable(L, HARVEST_MT);
    int hu = lua_gettop(L);
    u->h = lp_harvest_run(mu->m, s, &o);
    if (!u->h) {
        char err[600];
        lp_err code = lp_last_error_code();
        snprintf(err, sizeof err, "%s", lp_last_error());
        if (b.started)
            bar_show(&b, 0, 1, 0);
        return lp_lua_raise(L, lp_interrupted() ? LP_ERR_INTERRUPTED : code, "sae:harvest: %s", err);
    }
    if (!b.quiet)
        bar_show(&b, (double)u->h->n_tokens, (double)u->h->n_tokens, 1);
    if (layer < 0)
        push_extra(L, 1);
    else {
        push_layer_key(L, 1, layer);
        push_extra(L, -1);
        lua_remove(L, -2);
    }
    lua_pushvalue(L, hu), lua_setfield(L, -2, "harvest");
    lua_pushvalue(L, 3), lua_setfield(L, -2, "model");
    lua_pop(L, 1);
    lua_pushvalue(L, hu);
    return 1;
}

static int l_harvest(lua_State *L)
{
    lp_sae *s = lp_lua_check_sae(L, 1);
    if (lua_isnoneornil(L, 2)) { /* the harvest the SAE holds, or nil */
        push_extra(L, 1);
        lua_getfield(L, -1, "harvest");
        return 1;
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    return harvest_core(L, s, -1);
}

/* ---- sae:feature and sae:label ------------------------------------------------------------ */

static int dash_gc(lua_State *L)
{
    dash_ud *u = luaL_checkudata(L, 1, DASH_MT);
    json_decref(u->bundle);
    u->bundle = NULL;
    return 0;
}

static int dash_display_of(lua_State *L, json_t *bundle)
{
    lua_newtable(L);
    const char *k;
    json_t *v;
    json_object_foreach(bundle, k, v) {
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        lua_setfield(L, -2, k);
    }
    return 1;
}

static int dash_display(lua_State *L)
{
    dash_ud *u = luaL_checkudata(L, 1, DASH_MT);
    lua_newtable(L);
    const char *k;
    json_t *v;
    json_object_foreach(u->bundle, k, v) {
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        lua_setfield(L, -2, k);
    }
    return 1;
}

static int dash_tostring(lua_State *L)
{
    dash_ud *u = luaL_checkudata(L, 1, DASH_MT);
    lua_pushstring(L, json_string_value(json_object_get(u->bundle, "text/plain")));
    return 1;
}

/* The dashboard bundle of feature i of the SAE at index sae (new), or NULL with an error. */
static json_t *make_dashboard(lua_State *L, int sae, const lp_sae *s, int i, model_ud *mu)
{
    lp_harvest *h = sae_harvest(L, sae);
    char label[LABEL_MAX + 64], what[256];
    char corr[LP_HARVEST_CORR][LABEL_MAX + 64];
    const char *corr_p[LP_HARVEST_CORR] = {0};
    label_of(L, sae, s, i, mu, label, sizeof label);
    for (int k = 0; h && k < LP_HARVEST_CORR; k++) {
        int j = h->corr[(size_t)i * LP_HARVEST_CORR + k];
        if (j < 0)
            break;
        label_of(L, sae, s, j, mu, corr[k], sizeof corr[k]);
        corr_p[k] = corr[k];
    }
    const lp_sae_config *c = &s->cfg;
    snprintf(what, sizeof what, "%s %s on %s (%d features)%s", lp_sae_arch_name(c->arch),
             c->transcoder ? "transcoder" : "SAE", c->hook_in, c->d_sae,
             mu ? "" : " · no model: sae:feature(i, {model = m}) shows the logits");
    float *lg = NULL;
    if (mu && c->d_out == mu->m->cfg.d_model) {
        lg = malloc((size_t)mu->m->cfg.d_vocab * sizeof *lg);
        if (!lg) {
            lp_set_error_code(LP_ERR_NOMEM, "no memory for the logits of feature %d", i);
            return NULL;
        }
        if (lp_feature_logits(mu->m, s, i, lg) < 0) {
            free(lg);
            return NULL;
        }
    }
    const char *hook = c->hook_out;
    int nid[8];
    float ndot[8];
    int nn = mu ? lp_feature_neurons(mu->m, s, i, c->layer, 8, nid, ndot) : 0;
    lp_dashboard d = {.feature = i, .d_sae = c->d_sae, .label = label, .what = what, .h = h,
                      .how = "No harvest yet: sae:harvest{model = m, data = corpus} runs the corpus once and keeps "
                             "what this dashboard shows (top examples, interval samples, density, correlated "
                             "features); sae:save(dir) keeps it with the dictionary.",
                      .logits = lg, .n_vocab = lg ? mu->m->cfg.d_vocab : 0,
                      .dec = s->W_dec->data + (size_t)i * c->d_out, .d_out = c->d_out,
                      .dim_name = strstr(hook, "hook_post") || strstr(hook, "hook_pre") ? "neuron" : "dimension",
                      .tok_text = tok_text, .ud = mu, .corr_labels = h ? corr_p : NULL,
                      .neuron = nn ? nid : NULL, .neuron_dot = ndot, .n_neuron = nn, .neuron_layer = c->layer};
    json_t *b = lp_display_dashboard(&d);
    free(lg);
    return b;
}

static int l_feature(lua_State *L)
{
    lp_sae *s = lp_lua_check_sae(L, 1);
    int i = check_feature(L, s, 2, "sae:feature");
    lua_settop(L, 3);
    model_ud *mu = feature_model(L, 1, 3);
    dash_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->bundle = NULL;
    luaL_setmetatable(L, DASH_MT);
    if (!(u->bundle = make_dashboard(L, 1, s, i, mu)))
        return lp_lua_backend_error(L, "sae:feature");
    return 1;
}

/* ---- sae:features: the browser ------------------------------------------------------------- */

#define BROWSER_MT "loupe.FeatureBrowser"
enum { TOP_SHOWN = 4, TOP_TEXT = 200, BROWSER_MAX_ROWS = 1000, BROWSER_MAX_DASH = 50, SEARCH_MAX = 200 };

/* The distinct tokens the top examples of feature i fire on, most frequent first (at most
 * TOP_SHOWN ids into ids); returns how many. */
static int top_tokens(const lp_harvest *h, int i, int32_t *ids)
{
    int32_t seen[LP_HARVEST_TOP];
    int cnt[LP_HARVEST_TOP], m = 0;
    for (int k = 0; k < h->n_top[i]; k++) {
        int32_t t = lp_harvest_top(h, i)[k].tok[LP_HARVEST_CTX];
        int j = 0;
        while (j < m && seen[j] != t)
            j++;
        if (j == m)
            seen[m] = t, cnt[m++] = 0;
        cnt[j]++;
    }
    int n = 0;
    for (; n < TOP_SHOWN && n < m; n++) { /* selection: the most frequent, first seen on ties */
        int b = n;
        for (int j = n + 1; j < m; j++)
            if (cnt[j] > cnt[b])
                b = j;
        int32_t ts = seen[b];
        int tc = cnt[b];
        memmove(seen + n + 1, seen + n, (size_t)(b - n) * sizeof *seen);
        memmove(cnt + n + 1, cnt + n, (size_t)(b - n) * sizeof *cnt);
        seen[n] = ts, cnt[n] = tc;
        ids[n] = ts;
    }
    return n;
}

/* The top tokens of feature i as one line ("␣Oslo  ␣Paris"), as the figures show tokens. */
static void top_line(const lp_harvest *h, int i, model_ud *mu, char *buf, size_t cap)
{
    int32_t ids[TOP_SHOWN];
    int n = top_tokens(h, i, ids);
    lp_buf b = LP_BUF_INIT;
    for (int k = 0; k < n; k++) {
        char num[24];
        const char *t = tok_text(mu, ids[k]);
        if (!t) {
            snprintf(num, sizeof num, "#%d", (int)ids[k]);
            t = num;
        }
        if (k)
            lp_buf_puts(&b, "  ");
        lp_token_show(&b, t, strlen(t));
    }
    lp_buf tmp = LP_BUF_INIT;
    lp_utf8_truncate(&tmp, lp_buf_str(&b), 60);
    snprintf(buf, cap, "%s", lp_buf_str(&tmp));
    /* snprintf may cut inside a UTF-8 sequence at cap; the 60 code points fit TOP_TEXT */
    lp_buf_free(&b), lp_buf_free(&tmp);
}

/* Whether text holds every space-separated word of q, ASCII letters compared without case. */
static int search_matches(const char *text, const char *q)
{
    while (*q) {
        while (*q == ' ')
            q++;
        size_t n = strcspn(q, " ");
        if (!n)
            break;
        int found = 0;
        for (const char *t = text; *t && !found; t++) {
            size_t k = 0;
            while (k < n && t[k]) {
                char a = t[k], b = q[k];
                a = a >= 'A' && a <= 'Z' ? (char)(a - 'A' + 'a') : a;
                b = b >= 'A' && b <= 'Z' ? (char)(b - 'A' + 'a') : b;
                if (a != b)
                    break;
                k++;
            }
            found = k == n;
        }
        if (!found)
            return 0;
        q += n;
    }
    return 1;
}

typedef struct {
    int i;
    double key;
} sort_item;

static int by_key(const void *a, const void *b)
{
    const sort_item *x = a, *y = b;
    if (x->key != y->key)
        return x->key > y->key ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static int browser_gc(lua_State *L)
{
    dash_ud *u = luaL_checkudata(L, 1, BROWSER_MT);
    json_decref(u->bundle);
    u->bundle = NULL;
    return 0;
}

static int browser_display(lua_State *L)
{
    luaL_checkudata(L, 1, BROWSER_MT);
    lua_settop(L, 1);
    return dash_display_of(L, ((dash_ud *)lua_touserdata(L, 1))->bundle);
}

static int browser_tostring(lua_State *L)
{
    dash_ud *u = luaL_checkudata(L, 1, BROWSER_MT);
    lua_pushstring(L, json_string_value(json_object_get(u->bundle, "text/plain")));
    return 1;
}

static int browser_index(lua_State *L)
{
    luaL_checkudata(L, 1, BROWSER_MT);
    const char *k = luaL_checkstring(L, 2);
    if (!strcmp(k, "rows")) {
        lua_getiuservalue(L, 1, 1);
        return 1;
    }
    if (!strcmp(k, "n")) {
        lua_getiuservalue(L, 1, 1);
        lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

static int l_features(lua_State *L)
{
    lp_sae *s = lp_lua_check_sae(L, 1);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    else {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    lua_settop(L, 2);
    lp_harvest *h = sae_harvest(L, 1);
    if (!h)
        return luaL_error(L, "sae:features: this dictionary has no harvest: sae:harvest{model = m, data = corpus} "
                             "runs the corpus once and keeps what the browser lists (sae:save keeps it)");
    lua_getfield(L, 2, "sort");
    const char *sort = lua_isnil(L, -1) ? "density" : lua_tostring(L, -1);
    if (!sort || (strcmp(sort, "density") && strcmp(sort, "max") && strcmp(sort, "index")))
        return luaL_error(L, "sae:features: sort must be \"density\", \"max\" or \"index\", got %s",
                          sort ? sort : luaL_typename(L, -1));
    lua_pop(L, 1);
    const char *search = NULL;
    lua_getfield(L, 2, "search");
    if (!lua_isnil(L, -1)) {
        size_t n;
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "sae:features: search must be a string, got %s", luaL_typename(L, -1));
        search = lua_tolstring(L, -1, &n);
        if (n > SEARCH_MAX || strlen(search) != n)
            return luaL_error(L, "sae:features: search must be a string of at most %d bytes without NUL",
                              SEARCH_MAX);
    }
    /* 3: the search string (or nil) stays on the stack */
    lua_Integer nrow = opt_integer(L, 2, "n", 50), ndash = opt_integer(L, 2, "dashboards", 5);
    if (nrow < 1 || nrow > BROWSER_MAX_ROWS)
        return luaL_error(L, "sae:features: n must be 1..%d, got %I", BROWSER_MAX_ROWS, nrow);
    if (ndash < 0 || ndash > BROWSER_MAX_DASH)
        return luaL_error(L, "sae:features: dashboards must be 0..%d, got %I", BROWSER_MAX_DASH, ndash);
    model_ud *mu = feature_model(L, 1, 2);
    int d = s->cfg.d_sae;
    sort_item *items = lua_newuserdatauv(L, (size_t)d * sizeof *items, 0); /* 4 */
    int m = 0;
    char label[LABEL_MAX + 64], top[TOP_TEXT], key[LABEL_MAX + 64 + TOP_TEXT + 48];
    for (int i = 0; i < d; i++) {
        if (search) {
            if (!extra_label(L, 1, "labels", i, label, sizeof label) &&
                !extra_label(L, 1, "auto_labels", i, label, sizeof label))
                lp_harvest_label(label, sizeof label, h, i, NULL, tok_text, mu);
            top_line(h, i, mu, top, sizeof top);
            snprintf(key, sizeof key, "%d %s %s", i, label, top);
            if (!search_matches(key, search))
                continue;
        }
        double dens = h->n_tokens > 0 ? h->count[i] / (double)h->n_tokens : 0;
        items[m].i = i;
        items[m].key = sort[0] == 'd' ? dens : sort[0] == 'm' ? h->max[i] : -(double)i;
        m++;
    }
    qsort(items, (size_t)m, sizeof *items, by_key);
    int n = m < nrow ? m : (int)nrow;
    lp_browser_row *rows = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof *rows, 0); /* 5 */
    char (*labels)[LABEL_MAX + 64] = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof *labels, 0); /* 6 */
    char (*tops)[TOP_TEXT] = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof *tops, 0);           /* 7 */
    json_t **dash = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof *dash, 0);                   /* 8 */
    lua_createtable(L, n, 0); /* 9: the rows for Lua */
    int failed = 0;
    for (int r = 0; r < n; r++) {
        int i = items[r].i;
        dash[r] = NULL;
        label_of(L, 1, s, i, mu, labels[r], sizeof labels[r]);
        top_line(h, i, mu, tops[r], sizeof tops[r]);
        if (r < ndash && !failed && !(dash[r] = make_dashboard(L, 1, s, i, mu)))
            failed = 1;
        rows[r] = (lp_browser_row){.index = i, .label = labels[r], .top = tops[r],
                                   .density = h->n_tokens > 0 ? h->count[i] / (double)h->n_tokens : 0,
                                   .max = h->max[i],
                                   .dash = dash[r] ? json_string_value(json_object_get(dash[r], "text/html")) : NULL};
        lua_createtable(L, 0, 5);
        lua_pushinteger(L, i), lua_setfield(L, -2, "index");
        lua_pushstring(L, labels[r]), lua_setfield(L, -2, "label");
        lua_pushnumber(L, rows[r].density), lua_setfield(L, -2, "density");
        lua_pushnumber(L, rows[r].max), lua_setfield(L, -2, "max");
        int32_t ids[TOP_SHOWN];
        int nt = top_tokens(h, i, ids);
        lua_createtable(L, nt, 0);
        for (int k = 0; k < nt; k++) {
            const char *t = tok_text(mu, ids[k]);
            if (t)
                lua_pushstring(L, t);
            else
                lua_pushfstring(L, "#%d", (int)ids[k]);
            lua_rawseti(L, -2, k + 1);
        }
        lua_setfield(L, -2, "top");
        lua_rawseti(L, -2, r + 1);
    }
    char title[300], note[200];
    snprintf(title, sizeof title, "Features of the %s on %s, by %s", s->cfg.transcoder ? "transcoder" : "SAE",
             s->cfg.hook_in, sort);
    snprintf(note, sizeof note, "%d of %d features%s%s; harvest of %lld tokens", m, d,
             search ? " match the search" : "", m > n ? " (the first shown)" : "", (long long)h->n_tokens);
    json_t *b = failed ? NULL : lp_display_browser(title, rows, n, note);
    for (int r = 0; r < n; r++)
        json_decref(dash[r]);
    if (!b)
        return lp_lua_backend_error(L, "sae:features");
    dash_ud *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->bundle = b;
    luaL_setmetatable(L, BROWSER_MT);
    lua_pushvalue(L, 9);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

/* ---- r:features(sae): the prompt view --------------------------------------------------- */

#define PROMPT_MT "loupe.PromptFeatures"
enum { PROMPT_MAX_K = 20, PROMPT_MAX_N = 100 };

/* The activations (T, d_sae) of batch row b of the run for s: the spliced features when the
 * run has them, else s encoding the cached hook_in (into a userdata left on the stack). */
static const float *run_feature_acts(lua_State *L, run_ud *ru, const lp_sae *s, int b)
{
    const lp_sae_config *c = &s->cfg;
    int T = ru->T, d = c->d_sae;
    char name[160];
    const lp_tensor *t = NULL;
    const char *hooks[2] = {c->hook_out, c->hook_in};
    for (int k = 0; k < 2 && !t; k++) {
        snprintf(name, sizeof name, "%s.hook_sae_acts_post", hooks[k]);
        t = lp_run_get(&ru->run, name);
    }
    if (t) {
        if (t->device != LP_DEVICE_CPU || !lp_tensor_is_contiguous(t) ||
            lp_tensor_numel(t) != (int64_t)ru->B * T * d)
            luaL_error(L, "r:features: %s does not hold %d features per token of this run (another dictionary "
                          "spliced at the same hook?)", name, d);
        return t->data + (size_t)b * T * d;
    }
    const lp_tensor *x = lp_run_get(&ru->run, c->hook_in);
    if (!x)
        luaL_error(L, "r:features: the run has neither the dictionary's features (%s.hook_sae_acts_post: "
                      "m:run(prompt, {saes = {sae}})) nor its input %s in its cache (m:run(prompt) caches every "
                      "hook point)", c->transcoder ? c->hook_out : c->hook_in, c->hook_in);
    if (x->device != LP_DEVICE_CPU || !lp_tensor_is_contiguous(x) || lp_tensor_numel(x) != (int64_t)ru->B * T * c->d_in)
        luaL_error(L, "r:features: %s does not have the dictionary's %d dimensions per token", c->hook_in, c->d_in);
    float *xs = lua_newuserdatauv(L, (size_t)T * c->d_in * sizeof *xs, 0);
    float *f = lua_newuserdatauv(L, (size_t)T * d * sizeof *f, 0);
    const float *src = x->data + (size_t)b * T * c->d_in;
    for (size_t i = 0; i < (size_t)T * c->d_in; i++)
        xs[i] = src[i] * s->scale;
    if (lp_sae_encode(NULL, f, s, xs, T, 0) < 0)
        lp_lua_backend_error(L, "r:features");
    lua_remove(L, -2);
    return f;
}

/* Label of feature i from a small cache (feat/text, n entries, cap of them); stores it. */
static const char *cached_label(lua_State *L, int sae, const lp_sae *s, model_ud *mu, int i, int *feat,
                                char (*text)[LABEL_MAX + 64], int *n, int cap)
{
    for (int k = 0; k < *n; k++)
        if (feat[k] == i)
            return text[k];
    if (*n >= cap)
        return NULL;
    label_of(L, sae, s, i, mu, text[*n], sizeof text[*n]);
    feat[*n] = i;
    return text[(*n)++];
}

static int prompt_index(lua_State *L)
{
    luaL_checkudata(L, 1, PROMPT_MT);
    const char *k = luaL_checkstring(L, 2);
    if (!strcmp(k, "tokens") || !strcmp(k, "strongest")) {
        lua_getiuservalue(L, 1, 1);
        lua_getfield(L, -1, k);
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

static int prompt_gc(lua_State *L)
{
    dash_ud *u = luaL_checkudata(L, 1, PROMPT_MT);
    json_decref(u->bundle);
    u->bundle = NULL;
    return 0;
}

static int prompt_display(lua_State *L)
{
    dash_ud *u = luaL_checkudata(L, 1, PROMPT_MT);
    return dash_display_of(L, u->bundle);
}

static int prompt_tostring(lua_State *L)
{
    dash_ud *u = luaL_checkudata(L, 1, PROMPT_MT);
    lua_pushstring(L, json_string_value(json_object_get(u->bundle, "text/plain")));
    return 1;
}

static int l_run_features(lua_State *L)
{
    run_ud *ru = check_run(L, 1);
    lp_sae *s = lp_lua_check_sae(L, 2);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    else {
        lua_settop(L, 2);
        lua_newtable(L);
    }
    lua_settop(L, 3);
    if (!ru->tokens || ru->T < 1)
        return luaL_error(L, "r:features: the run has no tokens");
    lua_Integer K = opt_integer(L, 3, "k", 5), N = opt_integer(L, 3, "n", 20), b = opt_integer(L, 3, "batch", 1);
    if (K < 1 || K > PROMPT_MAX_K)
        return luaL_error(L, "r:features: k must be 1..%d, got %I", PROMPT_MAX_K, K);
    if (N < 1 || N > PROMPT_MAX_N)
        return luaL_error(L, "r:features: n must be 1..%d, got %I", PROMPT_MAX_N, N);
    if (b < 1 || b > ru->B)
        return luaL_error(L, "r:features: batch must be 1..%d (the run's rows), got %I", ru->B, b);
    model_ud *mu = feature_model(L, 2, 3);
    int T = ru->T, d = s->cfg.d_sae;
    const float *f = run_feature_acts(L, ru, s, (int)b - 1); /* 4 (when encoded) */
    lua_settop(L, 4);
    lp_prompt_feat *per = lua_newuserdatauv(L, (size_t)T * K * sizeof *per, 0);               /* 5 */
    lp_prompt_strong *strong = lua_newuserdatauv(L, (size_t)N * sizeof *strong, 0);          /* 6 */
    int cap = (int)(T * K + N);
    int *lfeat = lua_newuserdatauv(L, (size_t)cap * sizeof *lfeat, 0);                       /* 7 */
    char (*ltext)[LABEL_MAX + 64] = lua_newuserdatauv(L, (size_t)cap * sizeof *ltext, 0);     /* 8 */
    const char **toks = lua_newuserdatauv(L, (size_t)T * sizeof *toks, 0);                  /* 9 */
    int nl = 0;
    for (int t = 0; t < T; t++) {
        const float *row = f + (size_t)t * d;
        lp_prompt_feat *o = per + (size_t)t * K;
        int m = 0;
        for (int i = 0; i < d; i++) {
            float v = row[i];
            if (!(v > 0) || !isfinite(v) || (m == K && v <= o[m - 1].act))
                continue;
            int at = m < K ? m++ : (int)K - 1;
            while (at > 0 && o[at - 1].act < v) {
                o[at] = o[at - 1];
                at--;
            }
            o[at] = (lp_prompt_feat){.feature = i, .act = v};
        }
        for (int k = m; k < K; k++)
            o[k] = (lp_prompt_feat){.feature = -1};
        toks[t] = tok_text(mu, ru->tokens[((size_t)b - 1) * T + t]);
    }
    int ns = 0;
    for (int i = 0; i < d; i++) {
        float mx = 0;
        int pos = -1, fired = 0;
        for (int t = 0; t < T; t++) {
            float v = f[(size_t)t * d + i];
            if (v > 0 && isfinite(v)) {
                fired++;
                if (v > mx)
                    mx = v, pos = t;
            }
        }
        if (!fired || (ns == N && mx <= strong[ns - 1].max))
            continue;
        int at = ns < N ? ns++ : (int)N - 1;
        while (at > 0 && strong[at - 1].max < mx) {
            strong[at] = strong[at - 1];
            at--;
        }
        strong[at] = (lp_prompt_strong){.feature = i, .max = mx, .pos = pos, .fired = fired};
    }
    lua_createtable(L, 0, 2); /* 10: what Lua reads */
    lua_createtable(L, T, 0);
    for (int t = 0; t < T; t++) {
        lp_prompt_feat *o = per + (size_t)t * K;
        lua_createtable(L, (int)K, 0);
        for (int k = 0; k < K && o[k].feature >= 0; k++) {
            o[k].label = cached_label(L, 2, s, mu, o[k].feature, lfeat, ltext, &nl, cap);
            lua_createtable(L, 0, 3);
            lua_pushinteger(L, o[k].feature), lua_setfield(L, -2, "feature");
            lua_pushnumber(L, o[k].act), lua_setfield(L, -2, "act");
            lua_pushstring(L, o[k].label ? o[k].label : ""), lua_setfield(L, -2, "label");
            lua_rawseti(L, -2, k + 1);
        }
        lua_rawseti(L, -2, t + 1);
    }
    lua_setfield(L, -2, "tokens");
    lua_createtable(L, ns, 0);
    for (int k = 0; k < ns; k++) {
        strong[k].label = cached_label(L, 2, s, mu, strong[k].feature, lfeat, ltext, &nl, cap);
        lua_createtable(L, 0, 5);
        lua_pushinteger(L, strong[k].feature), lua_setfield(L, -2, "feature");
        lua_pushstring(L, strong[k].label ? strong[k].label : ""), lua_setfield(L, -2, "label");
        lua_pushnumber(L, strong[k].max), lua_setfield(L, -2, "max");
        lua_pushinteger(L, strong[k].pos + 1), lua_setfield(L, -2, "pos");
        lua_pushinteger(L, strong[k].fired), lua_setfield(L, -2, "positions");
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "strongest");
    char what[300];
    snprintf(what, sizeof what, "%s %s on %s (%d features)%s", lp_sae_arch_name(s->cfg.arch),
             s->cfg.transcoder ? "transcoder" : "SAE", s->cfg.hook_in, d,
             mu ? "" : " · no model: r:features(sae, {model = m}) names the tokens");
    lp_prompt_view v = {.what = what, .T = T, .tokens = toks, .K = (int)K, .per_token = per, .n_strong = ns,
                        .strong = strong};
    json_t *bundle = lp_display_prompt_features(&v);
    if (!bundle)
        return lp_lua_backend_error(L, "r:features");
    dash_ud *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->bundle = bundle;
    luaL_setmetatable(L, PROMPT_MT);
    lua_pushvalue(L, 10);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

/* ---- sae:export: Neuronpedia and circuit-tracer feature JSON ------------------------------ */

static int l_export(lua_State *L)
{
    lp_sae *s = lp_lua_check_sae(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lp_harvest *h = sae_harvest(L, 1);
    if (!h)
        return luaL_error(L, "sae:export: this dictionary has no harvest: sae:harvest{model = m, data = corpus} "
                             "collects what the feature files hold");
    lua_getfield(L, 2, "format"); /* 3 */
    const char *fmt = lua_tostring(L, 3);
    int np = fmt && !strcmp(fmt, "neuronpedia"), ct = fmt && !strcmp(fmt, "circuit-tracer");
    if (!np && !ct)
        return luaL_error(L, "sae:export: format must be \"neuronpedia\" or \"circuit-tracer\", got %s",
                          fmt ? fmt : luaL_typename(L, 3));
    lua_getfield(L, 2, "dir"); /* 4 */
    const char *dir = lua_tostring(L, 4);
    if (lua_type(L, 4) != LUA_TSTRING || !*dir)
        return luaL_error(L, "sae:export: dir must be a folder name (the files are dir/<feature>.json)");
    int d = s->cfg.d_sae;
    lua_getfield(L, 2, "features"); /* 5 */
    int n = d;
    int *list = NULL;
    if (!lua_isnil(L, 5)) {
        if (!lua_istable(L, 5))
            return luaL_error(L, "sae:export: features must be a list of feature indices (0..%d)", d - 1);
        n = (int)lua_rawlen(L, 5);
        list = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof *list, 0);
        for (int k = 0; k < n; k++) {
            lua_rawgeti(L, 5, k + 1);
            int ok;
            lua_Integer i = lua_tointegerx(L, -1, &ok);
            if (!ok || i < 0 || i >= d)
                return luaL_error(L, "sae:export: features[%d] is not a feature index of this dictionary (0..%d)",
                                  k + 1, d - 1);
            list[k] = (int)i;
            lua_pop(L, 1);
        }
    }
    lua_settop(L, 6);
    model_ud *mu = feature_model(L, 1, 2);
    lua_getfield(L, 2, "id"); /* 7 */
    const char *id = lua_tostring(L, 7);
    char def_id[160];
    snprintf(def_id, sizeof def_id, "%s", s->cfg.hook_in);
    if (!id)
        id = def_id;
    char layer[32];
    snprintf(layer, sizeof layer, "%d-loupe", s->cfg.layer);
    if (lp_dict_mkdir(dir) < 0)
        return lp_lua_backend_error(L, "sae:export");
    float *lg = NULL;
    int nv = 0;
    if (mu && s->cfg.d_out == mu->m->cfg.d_model) {
        nv = mu->m->cfg.d_vocab;
        lg = lua_newuserdatauv(L, (size_t)nv * sizeof *lg, 0);
    }
    size_t dl = strlen(dir);
    char *path = lua_newuserdatauv(L, dl + 32, 0);
    int written = 0;
    for (int k = 0; k < n; k++) {
        int i = list ? list[k] : k;
        if (lp_interrupted())
            return lp_lua_raise(L, LP_ERR_INTERRUPTED, "sae:export: interrupted after %d files", written);
        if (lg && lp_feature_logits(mu->m, s, i, lg) < 0)
            return lp_lua_backend_error(L, "sae:export");
        json_t *j = np ? lp_feature_json_neuronpedia(h, i, lg, nv, tok_text, mu, id, layer)
                       : lp_feature_json_circuit_tracer(h, i, lg, nv, tok_text, mu, id);
        if (!j)
            return lp_lua_backend_error(L, "sae:export");
        snprintf(path, dl + 32, "%s/%d.json", dir, i);
        int rc = json_dump_file(j, path, JSON_COMPACT);
        json_decref(j);
        if (rc != 0)
            return lp_lua_raise(L, LP_ERR_IO, "sae:export: cannot write %s", path);
        written++;
    }
    lua_pushinteger(L, written);
    return 1;
}

/* Refuses a label that cannot be one: not a string, NUL bytes, too long. */
static const char *check_label(lua_State *L, int idx)
{
    size_t n;
    const char *t = lua_tolstring(L, idx, &n);
    if (!t)
        luaL_error(L, "sae:label: the label must be a string (or false to forget it), got %s", luaL_typename(L, idx));
    if (strlen(t) != n)
        luaL_error(L, "sae:label: the label holds a NUL byte");
    if (n > LABEL_MAX)
        luaL_error(L, "sae:label: the label has %d bytes, at most %d", (int)n, LABEL_MAX);
    json_t *j = json_stringn(t, n); /* NULL for text that is not UTF-8 */
    if (!j)
        luaL_error(L, "sae:label: the label is not valid UTF-8");
    json_decref(j);
    return t;
}

static int l_label(lua_State *L)
{
    lp_sae *s = lp_lua_check_sae(L, 1);
    int i = check_feature(L, s, 2, "sae:label");
    if (lua_gettop(L) >= 3 && !lua_istable(L, 3)) {
        int forget = lua_isboolean(L, 3) && !lua_toboolean(L, 3);
        if (!forget)
            check_label(L, 3);
        push_extra(L, 1);
        if (lua_getfield(L, -1, "labels") != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, "labels");
        }
        if (forget)
            lua_pushnil(L);
        else
            lua_pushvalue(L, 3);
        lua_rawseti(L, -2, i);
        lua_pop(L, 2);
        lua_settop(L, 2);
    }
    lua_settop(L, 3);
    char label[LABEL_MAX + 64];
    label_of(L, 1, s, i, feature_model(L, 1, 3), label, sizeof label);
    lua_pushstring(L, label);
    return 1;
}

/* ---- transcoder sets: tcs:harvest, tcs:feature, tcs:label -------------------------------- */

static lp_transcoder_set *check_set(lua_State *L, const char *what)
{
    lp_transcoder_set *t = lp_lua_test_transcoder_set(L, 1);
    if (!t)
        luaL_error(L, "%s: only a per-layer transcoder set has per-layer harvests (not a cross-layer transcoder)",
                   what);
    return t;
}

static int check_layer(lua_State *L, const lp_transcoder_set *t, int idx, const char *what)
{
    int ok;
    lua_Integer l = lua_tointegerx(L, idx, &ok);
    if (!ok || l < 0 || l >= t->n_layers)
        return luaL_error(L, "%s: the layer must be an integer 0..%d (the set's layers), got %s", what,
                          t->n_layers - 1, ok ? lua_tostring(L, idx) : luaL_typename(L, idx));
    return (int)l;
}

/* Pushes layer l's harvest or nil. */
static void push_layer_harvest(lua_State *L, int l)
{
    push_layer_key(L, 1, l);
    push_extra(L, -1);
    lua_getfield(L, -1, "harvest");
    lua_replace(L, -3);
    lua_pop(L, 1);
}

static int l_tcs_harvest(lua_State *L)
{
    lp_transcoder_set *t = check_set(L, "tcs:harvest");
    if (lua_isnoneornil(L, 2)) { /* {[layer + 1] = Harvest} of those harvested */
        lua_settop(L, 1);
        lua_newtable(L);
        for (int l = 0; l < t->n_layers; l++) {
            push_layer_harvest(L, l);
            lua_rawseti(L, 2, l + 1);
        }
        return 1;
    }
    if (lua_isinteger(L, 2)) {
        int l = check_layer(L, t, 2, "tcs:harvest");
        push_layer_harvest(L, l);
        return 1;
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    for (int l = 0; l < t->n_layers; l++) {
        if (lp_interrupted())
            return lp_lua_raise(L, LP_ERR_INTERRUPTED, "tcs:harvest: interrupted before layer %d", l);
        harvest_core(L, t->layers[l], l);
    }
    lua_settop(L, 1);
    lua_newtable(L);
    for (int l = 0; l < t->n_layers; l++) {
        push_layer_harvest(L, l);
        lua_rawseti(L, 2, l + 1);
    }
    return 1;
}

static int l_tcs_feature(lua_State *L)
{
    lp_transcoder_set *t = check_set(L, "tcs:feature");
    int l = check_layer(L, t, 2, "tcs:feature");
    const lp_sae *s = t->layers[l];
    int i = check_feature(L, s, 3, "tcs:feature");
    lua_settop(L, 4);
    push_layer_key(L, 1, l); /* 5 */
    model_ud *mu = feature_model(L, 5, 4);
    dash_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->bundle = NULL;
    luaL_setmetatable(L, DASH_MT);
    if (!(u->bundle = make_dashboard(L, 5, s, i, mu)))
        return lp_lua_backend_error(L, "tcs:feature");
    return 1;
}

static int l_tcs_label(lua_State *L)
{
    lp_transcoder_set *t = check_set(L, "tcs:label");
    int l = check_layer(L, t, 2, "tcs:label");
    const lp_sae *s = t->layers[l];
    int i = check_feature(L, s, 3, "tcs:label");
    lua_settop(L, 4);
    push_layer_key(L, 1, l); /* 5 */
    if (!lua_isnil(L, 4) && !lua_istable(L, 4)) {
        int forget = lua_isboolean(L, 4) && !lua_toboolean(L, 4);
        if (!forget)
            check_label(L, 4);
        push_extra(L, 5);
        if (lua_getfield(L, -1, "labels") != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, "labels");
        }
        if (forget)
            lua_pushnil(L);
        else
            lua_pushvalue(L, 4);
        lua_rawseti(L, -2, i);
        lua_pop(L, 2);
    }
    char label[LABEL_MAX + 64];
    label_of(L, 5, s, i, feature_model(L, 5, lua_istable(L, 4) ? 4 : 0), label, sizeof label);
    lua_pushstring(L, label);
    return 1;
}

/* ---- files: lua_dict's save and load hooks ------------------------------------------------- */

/* Writes the harvest of the SAE (or the set's layer key) at key to hp and its labels to lpth,
 * removing either file when there is nothing to keep; frees hp and lpth. */
static int write_extras(lua_State *L, int owner, const lp_sae *s, char *hp, char *lpth, const char *what)
{
    owner = lua_absindex(L, owner);
    lp_harvest *h = sae_harvest(L, owner);
    if (!hp || !lpth) {
        free(hp), free(lpth);
        return lp_lua_backend_error(L, what);
    }
    if (h) {
        if (lp_harvest_save_file(h, hp) < 0) {
            free(hp), free(lpth);
            return lp_lua_backend_error(L, what);
        }
    } else {
        remove(hp);
    }
    json_t *labels = json_object();
    push_extra(L, owner);
    if (lua_getfield(L, -1, "labels") == LUA_TTABLE) {
        for (int i = 0; i < s->cfg.d_sae; i++) {
            if (lua_rawgeti(L, -1, i) == LUA_TSTRING) {
                char key[16];
                snprintf(key, sizeof key, "%d", i);
                json_object_set_new(labels, key, json_string(lua_tostring(L, -1)));
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 2);
    json_t *autos = json_object();
    model_ud *mu = feature_model(L, owner, 0);
    if (h && mu && autos) { /* the automatic labels, for a later session without the model */
        for (int i = 0; i < s->cfg.d_sae; i++) {
            char key[16], buf[LABEL_MAX + 64];
            auto_label(L, owner, s, i, mu, buf, sizeof buf);
            snprintf(key, sizeof key, "%d", i);
            json_object_set_new(autos, key, json_string(buf));
        }
    }
    int rc = 0;
    if ((labels && json_object_size(labels) > 0) || (autos && json_object_size(autos) > 0)) {
        json_t *doc = json_pack("{s:o,s:o}", "labels", labels, "auto", autos);
        labels = autos = NULL;
        rc = doc ? json_dump_file(doc, lpth, JSON_INDENT(1) | JSON_SORT_KEYS) : -1;
        json_decref(doc);
    } else {
        remove(lpth);
    }
    json_decref(labels);
    json_decref(autos);
    free(hp);
    if (rc != 0) {
        lua_pushfstring(L, "%s: cannot write %s", what, lpth);
        free(lpth);
        return lua_error(L);
    }
    free(lpth);
    return 0;
}

/* hook(sae, dir) after sae:save: the harvest and the labels beside the weights (older files
 * of the folder that no longer belong to this SAE are removed). */
static int save_extras(lua_State *L)
{
    lp_sae *s = lp_lua_check_sae(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    if (lp_dict_mkdir(dir) < 0)
        return lp_lua_backend_error(L, "sae:save");
    return write_extras(L, 1, s, lp_dict_join(dir, "loupe_harvest.safetensors"), lp_dict_join(dir, LABELS_FILE),
                        "sae:save");
}

/* Reads the harvest file hp and the labels file path into the extras of the SAE (or the set's
 * layer key) at owner when they exist; frees hp and path. */
static int read_extras(lua_State *L, int owner, const lp_sae *s, char *hp, char *path, const char *what)
{
    owner = lua_absindex(L, owner);
    if (!hp || !path) {
        free(hp), free(path);
        return lp_lua_backend_error(L, what);
    }
    if (access(hp, F_OK) == 0) {
        harvest_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
        u->h = NULL;
        luaL_setmetatable(L, HARVEST_MT);
        if (!(u->h = lp_harvest_load_file(hp, s->cfg.d_sae))) {
            free(hp), free(path);
            return lp_lua_raise(L, lp_last_error_code(), "%s: %s (remove the file to load the dictionary "
                                "without its harvest)", what, lp_last_error());
        }
        push_extra(L, owner);
        lua_pushvalue(L, -2), lua_setfield(L, -2, "harvest");
        lua_pop(L, 2);
    }
    free(hp);
    json_error_t je;
    FILE *f = fopen(path, "rb");
    if (!f) {
        free(path);
        return 0;
    }
    json_t *doc = json_loadf(f, 0, &je);
    fclose(f);
    json_t *labels = doc ? json_object_get(doc, "labels") : NULL;
    json_t *autos = doc ? json_object_get(doc, "auto") : NULL;
    if (!json_is_object(labels) || (autos && !json_is_object(autos))) {
        json_decref(doc);
        lua_pushfstring(L, "%s: %s: not a JSON object {\"labels\": {\"<feature>\": \"<label>\"}}", what, path);
        free(path);
        return lua_error(L);
    }
    push_extra(L, owner);
    for (int part = 0; part < 2; part++) {
        json_t *obj = part ? autos : labels;
        if (!obj)
            continue;
        lua_newtable(L);
        const char *k;
        json_t *v;
        json_object_foreach(obj, k, v) {
            char *end;
            long i = strtol(k, &end, 10);
            size_t n = json_is_string(v) ? json_string_length(v) : 0;
            if (end == k || *end || i < 0 || i >= s->cfg.d_sae || !json_is_string(v) || n > LABEL_MAX + 64 ||
                strlen(json_string_value(v)) != n) {
                lua_pushfstring(L, "%s: %s: label \"%s\" is not a feature index (0..%d) with a string "
                                   "of at most %d bytes", what, path, k, s->cfg.d_sae - 1, LABEL_MAX);
                json_decref(doc);
                free(path);
                return lua_error(L);
            }
            lua_pushstring(L, json_string_value(v));
            lua_rawseti(L, -2, i);
        }
        lua_setfield(L, -2, part ? "auto_labels" : "labels");
    }
    lua_pop(L, 1);
    json_decref(doc);
    free(path);
    return 0;
}

/* hook(sae, dir) after loupe.sae.load: the harvest and labels when the folder has them. */
static int load_extras(lua_State *L)
{
    lp_sae *s = lp_lua_check_sae(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    return read_extras(L, 1, s, lp_dict_join(dir, "loupe_harvest.safetensors"), lp_dict_join(dir, LABELS_FILE),
                       "loupe.sae.load");
}

/* A set's layer file name: dir/loupe_<what>_layer_<l>.<ext> (not layer_*: circuit-tracer
 * reads every layer_*.safetensors of the folder as a transcoder). */
static char *layer_file(const char *dir, const char *what, int l, const char *ext)
{
    char name[64];
    snprintf(name, sizeof name, "loupe_%s_layer_%d.%s", what, l, ext);
    return lp_dict_join(dir, name);
}

/* hook(tcs, dir) after tcs:save: each layer's harvest and labels beside the layer files. */
static int tcs_save_extras(lua_State *L)
{
    lp_transcoder_set *t = lp_lua_test_transcoder_set(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    if (!t)
        return 0;
    for (int l = 0; l < t->n_layers; l++) {
        push_layer_key(L, 1, l);
        write_extras(L, -1, t->layers[l], layer_file(dir, "harvest", l, "safetensors"),
                     layer_file(dir, "labels", l, "json"), "tcs:save");
        lua_pop(L, 1);
    }
    return 0;
}

/* hook(tcs, dir) after loupe.transcoders.load: each layer's harvest and labels when present. */
static int tcs_load_extras(lua_State *L)
{
    lp_transcoder_set *t = lp_lua_test_transcoder_set(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    if (!t)
        return 0;
    for (int l = 0; l < t->n_layers; l++) {
        push_layer_key(L, 1, l);
        read_extras(L, -1, t->layers[l], layer_file(dir, "harvest", l, "safetensors"),
                    layer_file(dir, "labels", l, "json"), "loupe.transcoders.load");
        lua_pop(L, 1);
    }
    return 0;
}

int lp_lua_tcs_feature_label(lua_State *L, int idx, int layer, int feature, char *buf, size_t cap)
{
    idx = lua_absindex(L, idx);
    int top = lua_gettop(L);
    lp_transcoder_set *t = lp_lua_test_transcoder_set(L, idx);
    if (!t || layer < 0 || layer >= t->n_layers || feature < 0 || feature >= t->layers[layer]->cfg.d_sae)
        return 0;
    push_layer_key(L, idx, layer);
    int key = lua_gettop(L), found = extra_label(L, key, "labels", feature, buf, cap);
    if (!found && (sae_harvest(L, key) || extra_label(L, key, "auto_labels", feature, buf, cap))) {
        label_of(L, key, t->layers[layer], feature, feature_model(L, key, 0), buf, cap);
        found = 1;
    }
    lua_settop(L, top);
    return found;
}

static void add_file_hook(lua_State *L, const char *which, lua_CFunction f)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, LP_LUA_SAE_FILE_HOOKS) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, LP_LUA_SAE_FILE_HOOKS);
    }
    if (lua_getfield(L, -1, which) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, which);
    }
    lua_pushcfunction(L, f);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 2);
}

void lp_lua_open_sae_features(lua_State *L)
{
    if (luaL_newmetatable(L, HARVEST_MT)) {
        lua_pushcfunction(L, harvest_gc), lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, harvest_tostring), lua_setfield(L, -2, "__tostring");
        lua_pushcfunction(L, harvest_index), lua_setfield(L, -2, "__index");
        static const lp_lua_field fields[] = {
            {"n_tokens", "integer: the positions harvested"},
            {"d_sae", "integer: features"},
            {"density", "{number}: the fraction of tokens where each feature fired (index i+1 for feature i)"},
            {"max", "{number}: each feature's largest activation"},
            {NULL, NULL}};
        lp_lua_settype(L, lua_gettop(L), "Harvest: what sae:harvest kept per feature for dashboards and labels",
                       fields);
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, DASH_MT)) {
        lua_pushcfunction(L, dash_gc), lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, dash_display), lua_setfield(L, -2, "__display");
        lua_pushcfunction(L, dash_tostring), lua_setfield(L, -2, "__tostring");
        lp_lua_settype(L, lua_gettop(L), "FeatureDashboard: sae:feature(i), shown inline", NULL);
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, BROWSER_MT)) {
        lua_pushcfunction(L, browser_gc), lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, browser_display), lua_setfield(L, -2, "__display");
        lua_pushcfunction(L, browser_tostring), lua_setfield(L, -2, "__tostring");
        lua_pushcfunction(L, browser_index), lua_setfield(L, -2, "__index");
        static const lp_lua_field bfields[] = {
            {"rows", "{{index, label, density, max, top = {token texts}}}: the rows shown, in order"},
            {"n", "integer: the rows shown"},
            {NULL, NULL}};
        lp_lua_settype(L, lua_gettop(L), "FeatureBrowser: sae:features{...}, a table of features shown inline",
                       bfields);
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, PROMPT_MT)) {
        lua_pushcfunction(L, prompt_gc), lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, prompt_display), lua_setfield(L, -2, "__display");
        lua_pushcfunction(L, prompt_tostring), lua_setfield(L, -2, "__tostring");
        lua_pushcfunction(L, prompt_index), lua_setfield(L, -2, "__index");
        static const lp_lua_field pfields[] = {
            {"tokens", "{{{feature, act, label}}}: per position (from 1), its top features by activation"},
            {"strongest", "{{feature, label, max, pos, positions}}: the prompt's strongest features by max"},
            {NULL, NULL}};
        lp_lua_settype(L, lua_gettop(L), "PromptFeatures: r:features(sae), the features on each token", pfields);
    }
    lua_pop(L, 1);
    int run_top = lua_gettop(L);
    if (luaL_getmetatable(L, RUN_MT) == LUA_TTABLE && lua_getfield(L, -1, "__methods") == LUA_TTABLE)
        lp_lua_setfunc(L, -1, "features", l_run_features,
                       "r:features(sae [, {k = 5, n = 20, batch = 1, model = m}]) -> PromptFeatures\n"
                       "The features of sae on each token of the run: spliced ones (m:run(prompt, {saes = {sae}}))\n"
                       "or, without, sae encoding its input hook from the run's cache. Shows the tokens shaded by\n"
                       "their strongest feature (hover or click one where scripts run: its top k features with\n"
                       "labels and activations; without scripts the same as tooltips), a table of each token's\n"
                       "features and the prompt's n strongest features. .tokens and .strongest hold the numbers.");
    lua_settop(L, run_top);
    if (luaL_getmetatable(L, LP_LUA_TRANSCODERS_MT) == LUA_TTABLE && lua_getfield(L, -1, "__methods") == LUA_TTABLE) {
        lp_lua_setfunc(L, -1, "harvest", l_tcs_harvest,
                       "tcs:harvest{model = m, data = ... (as sae:harvest)} -> {[layer + 1] = Harvest}\n"
                       "Harvests every layer's transcoder of a per-layer set on its hook_in (one pass of the corpus\n"
                       "per layer), so that dashboards, labels and graph nodes can show them. tcs:harvest() -> the\n"
                       "harvests so far; tcs:harvest(layer) -> that layer's, or nil. tcs:save(dir) keeps them and the\n"
                       "labels (loupe_harvest_layer_{l}.safetensors, loupe_labels_layer_{l}.json); loupe.transcoders.load\n"
                       "reads them back.");
        lp_lua_setfunc(L, -1, "feature", l_tcs_feature,
                       "tcs:feature(layer, i [, {model = m}]) -> FeatureDashboard\n"
                       "The dashboard of feature i (from 0) of layer's transcoder (from 0), as sae:feature's.");
        lp_lua_setfunc(L, -1, "label", l_tcs_label,
                       "tcs:label(layer, i [, text | false | {model = m}]) -> string\n"
                       "The label of feature i of layer's transcoder, as sae:label's (given, else automatic).");
    }
    lua_settop(L, run_top);
    add_file_hook(L, "save", save_extras);
    add_file_hook(L, "load", load_extras);
    add_file_hook(L, "set_save", tcs_save_extras);
    add_file_hook(L, "set_load", tcs_load_extras);
    if (!luaL_getmetatable(L, LP_LUA_SAE_MT)) {
        lua_pop(L, 1);
        return;
    }
    if (lua_getfield(L, -1, "__methods") != LUA_TTABLE) {
        lua_pop(L, 2);
        return;
    }
    lp_lua_setfunc(L, -1, "harvest", l_harvest,
                   "sae:harvest{model = m, data = dataset | {ids} [, tokens = all, ctx = 64, batch = 8, seed = 0,\n"
                   "            prepend_bos, keep_special, quiet]} -> Harvest;  sae:harvest() -> the SAE's, or nil\n"
                   "Runs the corpus once through the model and the dictionary (an SAE on its hook, a transcoder\n"
                   "on its hook_in) and keeps per feature: the 20 top activating examples with 5 tokens of\n"
                   "context each side, 5 uniform samples of each of 10 equal-width activation intervals, the\n"
                   "density, a log10 activation histogram and the most co-occurring features. Memory grows\n"
                   "with the features, not the corpus; interruptible; a progress bar. The SAE keeps it\n"
                   "(sae.harvest), sae:save writes it beside the weights and loupe.sae.load reads it back.");
    lp_lua_setfunc(L, -1, "feature", l_feature,
                   "sae:feature(i [, {model = m}]) -> FeatureDashboard\n"
                   "The dashboard of feature i (0-based): density and activation histogram, top 10 positive\n"
                   "and negative logits of its direct effect (W_dec,i through W_U) with their histogram, top\n"
                   "activating examples and interval samples as highlighted tokens, the largest decoder\n"
                   "entries and the most correlated features. The model is the harvest's unless given.");
    lp_lua_setfunc(L, -1, "features", l_features,
                   "sae:features{[sort = \"density\" | \"max\" | \"index\", search = text, n = 50, dashboards = 5,\n"
                   "              model = m]} -> FeatureBrowser (.rows: {{index, label, density, max, top}})\n"
                   "A table of the dictionary's features from its harvest: index, label, density, max activation\n"
                   "and the tokens its top examples fire on, sorted (largest first; index ascending) after the\n"
                   "search (every word, in the index, label or top tokens, case-insensitive), the first n shown.\n"
                   "Where scripts run the table is searchable and sortable and a click on a row opens that\n"
                   "feature's dashboard below it: the dashboards of the first `dashboards` rows are embedded\n"
                   "(at most 600 KB of them); others say to run sae:feature(i). Without scripts: the table.");
    lp_lua_setfunc(L, -1, "export", l_export,
                   "sae:export{format = \"neuronpedia\" | \"circuit-tracer\", dir = path\n"
                   "           [, features = {i, ...}, model = m, id = name]} -> files written\n"
                   "Writes each feature (all without features) as dir/<feature>.json: Neuronpedia's feature JSON\n"
                   "(pos_str/pos_values, neg_str/neg_values, frac_nonzero, the activation and logit histograms,\n"
                   "activations with their bins) or circuit-tracer's (examples_quantiles, top_logits,\n"
                   "bottom_logits, act_min, act_max, quantile_values, histogram, activation_frequency; its\n"
                   "viewer reads features/<scan>/<feature>.json). From the harvest; the logits need the model\n"
                   "(the harvest's unless given). id: Neuronpedia's modelId / circuit-tracer's transcoder_id.");
    lp_lua_setfunc(L, -1, "label", l_label,
                   "sae:label(i [, text | false]) -> string\n"
                   "Feature i's label: the one given with sae:label(i, text) (false forgets it), else an\n"
                   "automatic one from the harvest: '\" Oslo\"' when most top examples fire on that token,\n"
                   "'after \" in\"' when most follow it, then '-> \"t\"' for the token it promotes most.\n"
                   "sae:label(i, {model = m}) names the tokens with m's tokenizer (an SAE that ran sae:harvest\n"
                   "knows its model). Labels are saved with the dictionary (loupe_labels.json: the user's\n"
                   "and the automatic ones, so that a later session shows them without the model).");
    lua_pop(L, 2);
}
