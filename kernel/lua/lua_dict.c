/* loupe.sae / loupe.transcoders: dictionaries loaded and saved in SAELens' and
 * circuit-tracer's layouts (see lua_dict.h). Thin: read arguments, call one backend function. */
#include "lua_dict.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/error.h"
#include "dict/sae_io.h"
#include "html.h"
#include "lua_api.h"
#include "lua_model_impl.h"
#include "lua_tensor.h"
#include "rng.h"

typedef struct {
    lp_sae *s;
} sae_ud;

typedef struct {
    lp_transcoder_set *set; /* exactly one of set and clt */
    lp_clt *clt;
} tc_ud;

void lp_lua_push_sae(lua_State *L, lp_sae *s)
{
    if (!s)
        lp_lua_backend_error(L, NULL);
    sae_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->s = s;
    luaL_setmetatable(L, LP_LUA_SAE_MT);
}

lp_sae *lp_lua_check_sae(lua_State *L, int idx)
{
    lp_sae *s = ((sae_ud *)luaL_checkudata(L, idx, LP_LUA_SAE_MT))->s;
    if (!s)
        luaL_error(L, "the SAE has been freed");
    return s;
}

static int sae_gc(lua_State *L)
{
    sae_ud *u = luaL_checkudata(L, 1, LP_LUA_SAE_MT);
    lp_sae_free(u->s);
    u->s = NULL;
    return 0;
}

/* SAELens' name of the architecture, as cfg.json says it. */
static const char *arch_label(const lp_sae_config *c)
{
    return c->transcoder ? (c->arch == LP_SAE_JUMPRELU ? (c->skip ? "jumprelu_skip_transcoder" : "jumprelu_transcoder")
                            : c->arch == LP_SAE_TOPK ? "topk_transcoder" : c->skip ? "skip_transcoder" : "transcoder")
                         : lp_sae_arch_name(c->arch);
}

static void push_cfg(lua_State *L, const lp_sae_config *c)
{
    lua_createtable(L, 0, 12);
    lua_pushstring(L, arch_label(c)), lua_setfield(L, -2, "architecture");
    lua_pushinteger(L, c->d_in), lua_setfield(L, -2, "d_in");
    lua_pushinteger(L, c->d_sae), lua_setfield(L, -2, "d_sae");
    lua_pushinteger(L, c->d_out), lua_setfield(L, -2, "d_out");
    if (c->k)
        lua_pushinteger(L, c->k), lua_setfield(L, -2, "k");
    lua_pushboolean(L, c->apply_b_dec_to_input), lua_setfield(L, -2, "apply_b_dec_to_input");
    lua_pushboolean(L, c->rescale_acts_by_decoder_norm), lua_setfield(L, -2, "rescale_acts_by_decoder_norm");
    lua_pushboolean(L, c->transcoder), lua_setfield(L, -2, "transcoder");
    lua_pushboolean(L, c->skip), lua_setfield(L, -2, "skip");
    lua_pushstring(L, c->hook_in), lua_setfield(L, -2, "hook_name");
    lua_pushstring(L, c->hook_out), lua_setfield(L, -2, "hook_name_out");
    lua_pushinteger(L, c->layer), lua_setfield(L, -2, "layer");
}

static void push_copy(lua_State *L, const lp_tensor *t)
{
    if (t)
        lp_lua_push_tensor(L, lp_tensor_clone(t));
    else
        lua_pushnil(L);
}

static int sae_index(lua_State *L)
{
    lp_sae *s = ((sae_ud *)luaL_checkudata(L, 1, LP_LUA_SAE_MT))->s;
    const char *k = luaL_checkstring(L, 2);
    luaL_getmetatable(L, LP_LUA_SAE_MT);
    lua_getfield(L, -1, "__methods");
    if (lua_getfield(L, -1, k) != LUA_TNIL)
        return 1;
    if (!s)
        return luaL_error(L, "the SAE has been freed");
    const lp_sae_config *c = &s->cfg;
    if (!strcmp(k, "cfg"))
        push_cfg(L, c);
    else if (!strcmp(k, "d_in"))
        lua_pushinteger(L, c->d_in);
    else if (!strcmp(k, "d_sae"))
        lua_pushinteger(L, c->d_sae);
    else if (!strcmp(k, "d_out"))
        lua_pushinteger(L, c->d_out);
    else if (!strcmp(k, "arch"))
        lua_pushstring(L, arch_label(c));
    else if (!strcmp(k, "k"))
        c->k ? lua_pushinteger(L, c->k) : lua_pushnil(L);
    else if (!strcmp(k, "hook_in") || !strcmp(k, "hook"))
        lua_pushstring(L, c->hook_in);
    else if (!strcmp(k, "hook_out"))
        lua_pushstring(L, c->hook_out);
    else if (!strcmp(k, "layer"))
        lua_pushinteger(L, c->layer);
    else if (!strcmp(k, "W_enc"))
        push_copy(L, s->W_enc);
    else if (!strcmp(k, "W_dec"))
        push_copy(L, s->W_dec);
    else if (!strcmp(k, "b_enc"))
        push_copy(L, s->b_enc);
    else if (!strcmp(k, "b_dec"))
        push_copy(L, s->b_dec);
    else if (!strcmp(k, "threshold"))
        push_copy(L, s->threshold);
    else if (!strcmp(k, "W_skip"))
        push_copy(L, s->W_skip);
    else if (!strcmp(k, "sparsity"))
        push_copy(L, s->log_density);
    else if (!strcmp(k, "scale"))
        lua_pushnumber(L, s->scale);
    else if (lua_getfield(L, LUA_REGISTRYINDEX, LP_LUA_SAE_EXTRA) == LUA_TTABLE) {
        lua_pushvalue(L, 1); /* a field another binding attached to this SAE (sae.history) */
        if (lua_rawget(L, -2) == LUA_TTABLE)
            lua_getfield(L, -1, k);
        else
            lua_pushnil(L);
    } else
        lua_pushnil(L);
    return 1;
}

static void sae_summary(lp_buf *b, const lp_sae *s)
{
    const lp_sae_config *c = &s->cfg;
    lp_buf_printf(b, "SAE %s: d_in %d, d_sae %d", arch_label(c), c->d_in, c->d_sae);
    if (c->transcoder)
        lp_buf_printf(b, ", d_out %d", c->d_out);
    if (c->k)
        lp_buf_printf(b, ", k %d", c->k);
    if (c->hook_in[0])
        lp_buf_printf(b, c->transcoder ? ", %s -> %s" : ", %s", c->hook_in, c->hook_out);
    lp_buf_printf(b, "\n  W_enc [%d, %d]  b_enc [%d]  W_dec [%d, %d]  b_dec [%d]", c->d_in, c->d_sae, c->d_sae, c->d_sae,
                  c->d_out, c->d_out);
    if (s->threshold)
        lp_buf_printf(b, "  threshold [%d]", c->d_sae);
    if (s->W_skip)
        lp_buf_printf(b, "  W_skip [%d, %d]", c->d_out, c->d_in);
}

/* Pushes the text/plain string and, when html, a bundle table {text/plain, text/html}. */
static int push_text(lua_State *L, lp_buf *b, int html)
{
    char *txt = lp_buf_finish(b);
    if (!txt)
        return lp_lua_backend_error(L, NULL);
    if (!html) {
        lua_pushstring(L, txt);
        free(txt);
        return 1;
    }
    lp_buf h = LP_BUF_INIT;
    lp_buf_puts(&h, "<pre style=\"margin:0\">");
    lp_html_escape(&h, txt, strlen(txt));
    lp_buf_puts(&h, "</pre>");
    char *hs = lp_buf_finish(&h);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, txt), lua_setfield(L, -2, "text/plain");
    lua_pushstring(L, hs ? hs : ""), lua_setfield(L, -2, "text/html");
    free(txt), free(hs);
    return 1;
}

static int sae_tostring(lua_State *L)
{
    lp_buf b = LP_BUF_INIT;
    sae_summary(&b, lp_lua_check_sae(L, 1));
    return push_text(L, &b, 0);
}

static int sae_display(lua_State *L)
{
    lp_buf b = LP_BUF_INIT;
    sae_summary(&b, lp_lua_check_sae(L, 1));
    return push_text(L, &b, 1);
}

static void opt_str(lua_State *L, int t, const char *key, char *dst, size_t cap)
{
    if (lua_getfield(L, t, key) == LUA_TSTRING)
        snprintf(dst, cap, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
}

static int opt_int(lua_State *L, int t, const char *key, int def)
{
    int v = def;
    if (lua_getfield(L, t, key) != LUA_TNIL)
        v = (int)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Calls every function of the registry's file hooks list `which` ("save" or "load") with
 * (the SAE at idx, dir): other binding files keep their own files beside the weights. */
static void run_file_hooks(lua_State *L, const char *which, int idx, const char *dir)
{
    idx = lua_absindex(L, idx);
    int top = lua_gettop(L);
    if (lua_getfield(L, LUA_REGISTRYINDEX, LP_LUA_SAE_FILE_HOOKS) == LUA_TTABLE &&
        lua_getfield(L, -1, which) == LUA_TTABLE) {
        for (lua_Integer k = 1; lua_rawgeti(L, -1, k) == LUA_TFUNCTION; k++) {
            lua_pushvalue(L, idx);
            lua_pushstring(L, dir);
            lua_call(L, 2, 0);
        }
    }
    lua_settop(L, top);
}

static int sae_save(lua_State *L)
{
    lp_sae *s = lp_lua_check_sae(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    lp_sae_meta m = {.prepend_bos = 1, .hook_head_index = -1};
    if (lua_istable(L, 3)) {
        opt_str(L, 3, "model_name", m.model_name, sizeof m.model_name);
        opt_str(L, 3, "dataset_path", m.dataset_path, sizeof m.dataset_path);
        m.context_size = opt_int(L, 3, "context_size", 0);
        m.prepend_bos = lp_lua_opt_bool(L, 3, "prepend_bos", 1);
    }
    if (lp_sae_save(s, dir, &m) < 0)
        return lp_lua_backend_error(L, "sae:save");
    run_file_hooks(L, "save", 1, dir);
    lua_settop(L, 1);
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int sae_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int d_model = 0, transcoder = 0;
    if (lua_istable(L, 2)) {
        d_model = opt_int(L, 2, "d_model", 0);
        transcoder = lp_lua_opt_bool(L, 2, "transcoder", 0);
        lua_getfield(L, 2, "model");
        model_ud *mu = luaL_testudata(L, -1, MODEL_MT);
        if (mu && mu->m)
            d_model = mu->m->cfg.d_model;
        else if (!lua_isnil(L, -1))
            return luaL_error(L, "loupe.sae.load: 'model' must be a model from loupe.load");
        lua_pop(L, 1);
    }
    lp_sae *s = ends_with(path, ".npz") ? lp_sae_load_npz(path, transcoder) : lp_sae_load_for(path, d_model, NULL);
    if (s && d_model > 0 && s->cfg.d_in != d_model) {
        lp_sae_free(s);
        return lp_lua_raise(L, LP_ERR_INPUT, "%s: d_in is %d but the model's d_model is %d", path, s->cfg.d_in, d_model);
    }
    if (!s)
        return lp_lua_backend_error(L, "loupe.sae.load");
    lp_lua_push_sae(L, s);
    if (!ends_with(path, ".npz"))
        run_file_hooks(L, "load", -1, path);
    return 1;
}

/* Parses {arch, d_in, d_sae, d_out, k, transcoder, skip, hook, hook_out} into c. */
static void read_config(lua_State *L, int t, lp_sae_config *c)
{
    memset(c, 0, sizeof *c);
    lua_getfield(L, t, "arch");
    const char *a = luaL_optstring(L, -1, "standard");
    int arch = lp_sae_arch_parse(a);
    if (arch < 0)
        luaL_error(L, "unknown arch '%s' (standard, topk, batchtopk, jumprelu, matryoshka_batchtopk)", a);
    lua_pop(L, 1);
    c->arch = (lp_sae_arch)arch;
    c->d_in = opt_int(L, t, "d_in", 0);
    c->d_sae = opt_int(L, t, "d_sae", 0);
    c->transcoder = lp_lua_opt_bool(L, t, "transcoder", 0);
    c->skip = lp_lua_opt_bool(L, t, "skip", 0);
    c->d_out = opt_int(L, t, "d_out", c->d_in);
    c->k = opt_int(L, t, "k", 0);
    c->apply_b_dec_to_input = lp_lua_opt_bool(L, t, "apply_b_dec_to_input", !c->transcoder);
    c->rescale_acts_by_decoder_norm = lp_lua_opt_bool(L, t, "rescale_acts_by_decoder_norm", 0);
    opt_str(L, t, "hook", c->hook_in, sizeof c->hook_in);
    snprintf(c->hook_out, sizeof c->hook_out, "%s", c->hook_in);
    opt_str(L, t, "hook_out", c->hook_out, sizeof c->hook_out);
    int layer = -1;
    c->layer = sscanf(c->hook_in, "blocks.%d.", &layer) == 1 ? layer : -1;
}

/* Fills every tensor with seeded normal values times `scale` (thresholds: uniform [0, 0.2)). */
static void fill_random(lp_tensor *t, lp_rng *g, float scale, int uniform)
{
    for (int64_t i = 0; t && i < lp_tensor_numel(t); i++)
        t->data[i] = uniform ? 0.2f * lp_rng_uniform(g) : scale * (float)lp_rng_normal(g);
}

static void randomise(lp_sae *s, lp_rng *g)
{
    const lp_sae_config *c = &s->cfg;
    fill_random(s->W_enc, g, 1.0f / sqrtf((float)c->d_in), 0);
    fill_random(s->W_dec, g, 0.1f / sqrtf((float)c->d_in), 0);
    fill_random(s->b_enc, g, 0.1f, 0);
    fill_random(s->b_dec, g, 0.05f, 0);
    fill_random(s->W_skip, g, 0.05f, 0);
    fill_random(s->threshold, g, 0, 1);
}

static int sae_random(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lp_sae_config c;
    read_config(L, 1, &c);
    lp_rng g;
    lp_rng_seed(&g, (uint64_t)opt_int(L, 1, "seed", 0));
    lp_sae *s = lp_sae_new(&c);
    if (!s)
        return lp_lua_backend_error(L, "loupe.sae.random");
    randomise(s, &g);
    lp_lua_push_sae(L, s);
    return 1;
}

/* ---- transcoders ------------------------------------------------------------------------ */

static tc_ud *check_tc(lua_State *L, int idx)
{
    tc_ud *u = luaL_checkudata(L, idx, LP_LUA_TRANSCODERS_MT);
    if (!u->set && !u->clt)
        luaL_error(L, "the transcoders have been freed");
    return u;
}

lp_transcoder_set *lp_lua_test_transcoder_set(lua_State *L, int idx)
{
    tc_ud *u = luaL_testudata(L, idx, LP_LUA_TRANSCODERS_MT);
    return u ? u->set : NULL;
}

lp_clt *lp_lua_test_clt(lua_State *L, int idx)
{
    tc_ud *u = luaL_testudata(L, idx, LP_LUA_TRANSCODERS_MT);
    return u ? u->clt : NULL;
}

void lp_lua_check_transcoders(lua_State *L, int idx, lp_transcoder_set **set, lp_clt **clt)
{
    tc_ud *u = check_tc(L, idx);
    *set = u->set, *clt = u->clt;
}

static int tc_gc(lua_State *L)
{
    tc_ud *u = luaL_checkudata(L, 1, LP_LUA_TRANSCODERS_MT);
    lp_transcoder_set_free(u->set), lp_clt_free(u->clt);
    u->set = NULL, u->clt = NULL;
    return 0;
}

static void push_tc(lua_State *L, lp_transcoder_set *set, lp_clt *clt)
{
    if (!set && !clt)
        lp_lua_backend_error(L, "loupe.transcoders");
    tc_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->set = set, u->clt = clt;
    luaL_setmetatable(L, LP_LUA_TRANSCODERS_MT);
}

void lp_lua_push_clt(lua_State *L, lp_clt *c)
{
    if (!c)
        lp_lua_backend_error(L, NULL);
    push_tc(L, NULL, c);
}

lp_clt *lp_lua_check_clt(lua_State *L, int idx)
{
    tc_ud *u = check_tc(L, idx);
    if (!u->clt)
        luaL_error(L, "a cross-layer transcoder is needed here (this is a transcoder set)");
    return u->clt;
}

static void tc_summary(lp_buf *b, const tc_ud *u)
{
    if (u->set) {
        const lp_sae_config *c = &u->set->layers[0]->cfg;
        lp_buf_printf(b, "transcoder set: %d layers, d_model %d, d_transcoder %d, %s%s%s, %s -> %s", u->set->n_layers,
                      c->d_in, c->d_sae, c->arch == LP_SAE_TOPK ? "topk" : c->arch == LP_SAE_STANDARD ? "relu" : "jumprelu",
                      c->skip ? ", skip" : "", "", u->set->feature_input_hook, u->set->feature_output_hook);
        if (c->k && c->arch == LP_SAE_TOPK) /* a trained jumprelu or relu keeps the option's k: not shown */
            lp_buf_printf(b, ", k %d", c->k);
    } else {
        lp_buf_printf(b, "cross-layer transcoder: %d layers, d_model %d, d_transcoder %d per layer, %s, %s -> %s",
                      u->clt->n_layers, u->clt->d_model, u->clt->d_tc, u->clt->threshold ? "jumprelu" : "relu",
                      u->clt->feature_input_hook, u->clt->feature_output_hook);
    }
}

static int tc_tostring(lua_State *L)
{
    lp_buf b = LP_BUF_INIT;
    tc_summary(&b, check_tc(L, 1));
    return push_text(L, &b, 0);
}

static int tc_display(lua_State *L)
{
    lp_buf b = LP_BUF_INIT;
    tc_summary(&b, check_tc(L, 1));
    return push_text(L, &b, 1);
}

static int tc_index(lua_State *L)
{
    tc_ud *u = check_tc(L, 1);
    if (lua_isinteger(L, 2) && u->set) { /* t[l]: layer l (1-based) as a copy */
        lua_Integer l = lua_tointeger(L, 2);
        if (l < 1 || l > u->set->n_layers)
            return luaL_error(L, "layer %d out of range (1..%d)", (int)l, u->set->n_layers);
        lp_lua_push_sae(L, lp_sae_clone(u->set->layers[l - 1]));
        return 1;
    }
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    luaL_getmetatable(L, LP_LUA_TRANSCODERS_MT);
    lua_getfield(L, -1, "__methods");
    if (k && lua_getfield(L, -1, k) != LUA_TNIL)
        return 1;
    if (!k)
        lua_pushnil(L);
    else if (!strcmp(k, "kind"))
        lua_pushstring(L, u->set ? "transcoder_set" : "cross_layer_transcoder");
    else if (!strcmp(k, "n_layers"))
        lua_pushinteger(L, u->set ? u->set->n_layers : u->clt->n_layers);
    else if (!strcmp(k, "d_model"))
        lua_pushinteger(L, u->set ? u->set->layers[0]->cfg.d_in : u->clt->d_model);
    else if (!strcmp(k, "d_transcoder"))
        lua_pushinteger(L, u->set ? u->set->layers[0]->cfg.d_sae : u->clt->d_tc);
    else if (!strcmp(k, "feature_input_hook"))
        lua_pushstring(L, u->set ? u->set->feature_input_hook : u->clt->feature_input_hook);
    else if (!strcmp(k, "feature_output_hook"))
        lua_pushstring(L, u->set ? u->set->feature_output_hook : u->clt->feature_output_hook);
    else if (lua_getfield(L, LUA_REGISTRYINDEX, LP_LUA_SAE_EXTRA) == LUA_TTABLE) { /* history, ... */
        lua_pushvalue(L, 1);
        if (lua_rawget(L, -2) == LUA_TTABLE)
            lua_getfield(L, -1, k);
        else
            lua_pushnil(L);
    } else
        lua_pushnil(L);
    return 1;
}

static int tc_len(lua_State *L)
{
    tc_ud *u = check_tc(L, 1);
    lua_pushinteger(L, u->set ? u->set->n_layers : u->clt->n_layers);
    return 1;
}

static int tc_save(lua_State *L)
{
    tc_ud *u = check_tc(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    if ((u->set ? lp_transcoder_set_save(u->set, dir) : lp_clt_save(u->clt, dir)) < 0)
        return lp_lua_backend_error(L, "transcoders:save");
    if (u->set)
        run_file_hooks(L, "set_save", 1, dir);
    lua_settop(L, 1);
    return 1;
}

static int tc_load(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    int kind = lp_dict_dir_kind(dir);
    if (kind < 0)
        return lp_lua_backend_error(L, "loupe.transcoders.load");
    if (kind == 1) {
        lp_transcoder_set *t = lp_transcoder_set_load(dir);
        if (!t)
            return lp_lua_backend_error(L, "loupe.transcoders.load");
        push_tc(L, t, NULL);
        run_file_hooks(L, "set_load", -1, dir);
    } else {
        lp_clt *c = lp_clt_load(dir);
        if (!c)
            return lp_lua_backend_error(L, "loupe.transcoders.load");
        push_tc(L, NULL, c);
    }
    return 1;
}

static int tc_random(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = opt_int(L, 1, "n_layers", 0), dm = opt_int(L, 1, "d_model", 0), dtc = opt_int(L, 1, "d_transcoder", 0);
    lp_rng g;
    lp_rng_seed(&g, (uint64_t)opt_int(L, 1, "seed", 0));
    lua_getfield(L, 1, "activation");
    const char *act = luaL_optstring(L, -1, "relu");
    int jump = !strcmp(act, "jumprelu"), topk = !strcmp(act, "topk");
    if (!jump && !topk && strcmp(act, "relu"))
        return luaL_error(L, "activation must be relu, jumprelu or topk (got '%s')", act);
    lua_pop(L, 1);
    char in[96] = "mlp.hook_in", out[96] = "mlp.hook_out";
    opt_str(L, 1, "feature_input_hook", in, sizeof in);
    opt_str(L, 1, "feature_output_hook", out, sizeof out);
    if (lp_lua_opt_bool(L, 1, "clt", 0)) {
        if (topk)
            return luaL_error(L, "a CLT is relu or jumprelu");
        lp_clt *c = lp_clt_new(n, dm, dtc, jump);
        if (!c)
            return lp_lua_backend_error(L, "loupe.transcoders.random");
        snprintf(c->feature_input_hook, sizeof c->feature_input_hook, "%s", in);
        snprintf(c->feature_output_hook, sizeof c->feature_output_hook, "%s", out);
        for (int l = 0; l < n; l++) {
            fill_random(c->W_enc[l], &g, 1.0f / sqrtf((float)dm), 0);
            fill_random(c->b_enc[l], &g, 0.1f, 0);
            fill_random(c->b_dec[l], &g, 0.05f, 0);
            fill_random(c->W_dec[l], &g, 0.1f / sqrtf((float)dm), 0);
            if (jump)
                fill_random(c->threshold[l], &g, 0, 1);
        }
        push_tc(L, NULL, c);
        return 1;
    }
    lp_sae_config c = {.arch = jump ? LP_SAE_JUMPRELU : topk ? LP_SAE_TOPK : LP_SAE_STANDARD, .d_in = dm,
                       .d_sae = dtc, .d_out = dm, .k = opt_int(L, 1, "k", 0), .skip = lp_lua_opt_bool(L, 1, "skip", 0)};
    lp_transcoder_set *t = lp_transcoder_set_new(n, &c, in, out);
    if (!t)
        return lp_lua_backend_error(L, "loupe.transcoders.random");
    for (int l = 0; l < n; l++)
        randomise(t->layers[l], &g);
    push_tc(L, t, NULL);
    return 1;
}

/* "blocks.L.rest" -> rest when L == layer, else NULL */
static const char *layer_suffix(const char *hook, int layer)
{
    int l, n = 0;
    if (sscanf(hook, "blocks.%d.%n", &l, &n) != 1 || n == 0 || l != layer)
        return NULL;
    return hook + n;
}

/* loupe.transcoders.save({tc_0, tc_1, ...}, dir) -> Transcoders: per-layer transcoders (SAEs
 * trained with transcoder = true, in layer order) made into a transcoder set (copies) and
 * written in circuit-tracer's layout. Layer l must read blocks.l.<in> and write blocks.l.<out>,
 * the same <in> and <out> for every layer. */
static int tc_save_list(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *dir = luaL_checkstring(L, 2);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    if (n < 1)
        return luaL_error(L, "loupe.transcoders.save: give a list of transcoders, one per layer from layer 0");
    char in[96] = "", out[96] = "";
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        if (!luaL_testudata(L, -1, LP_LUA_SAE_MT))
            return luaL_error(L, "loupe.transcoders.save: [%d] is not a transcoder (%s)", (int)i, luaL_typename(L, -1));
        const lp_sae_config *c = &lp_lua_check_sae(L, -1)->cfg;
        const char *a = layer_suffix(c->hook_in, (int)i - 1), *b = layer_suffix(c->hook_out, (int)i - 1);
        if (!c->transcoder || !a || !b)
            return luaL_error(L, "loupe.transcoders.save: [%d] must be a transcoder of layer %d (blocks.%d.* -> "
                                 "blocks.%d.*), not %s -> %s", (int)i, (int)i - 1, (int)i - 1, (int)i - 1,
                              c->hook_in, c->hook_out);
        if (i == 1) {
            snprintf(in, sizeof in, "%s", a);
            snprintf(out, sizeof out, "%s", b);
        } else if (strcmp(in, a) || strcmp(out, b)) {
            return luaL_error(L, "loupe.transcoders.save: [%d] reads %s and writes %s; layer 0's read %s and "
                                 "wrote %s (a set has the same hooks on every layer)", (int)i, a, b, in, out);
        }
        lua_pop(L, 1);
    }
    lp_transcoder_set *t = lp_calloc(1, sizeof *t, "a transcoder set");
    if (t && !(t->layers = lp_calloc((size_t)n, sizeof *t->layers, "a transcoder set")))
        free(t), t = NULL;
    if (!t)
        return lp_lua_backend_error(L, "loupe.transcoders.save");
    push_tc(L, t, NULL); /* owns the layers as they come: the collector frees a half-made set */
    snprintf(t->feature_input_hook, sizeof t->feature_input_hook, "%s", in);
    snprintf(t->feature_output_hook, sizeof t->feature_output_hook, "%s", out);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        lp_sae *c = lp_sae_clone(lp_lua_check_sae(L, -1));
        lua_pop(L, 1);
        if (!c)
            return lp_lua_backend_error(L, "loupe.transcoders.save");
        c->cfg.layer = (int)i - 1;
        t->layers[t->n_layers++] = c;
    }
    if (lp_transcoder_set_save(t, dir) < 0)
        return lp_lua_backend_error(L, "loupe.transcoders.save");
    return 1;
}

/* ---- registration ----------------------------------------------------------------------- */

static void metatable(lua_State *L, const char *name, lua_CFunction index, lua_CFunction gc, lua_CFunction tostring,
                      lua_CFunction display, lua_CFunction save, const char *save_doc)
{
    luaL_newmetatable(L, name);
    lua_pushcfunction(L, index), lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc), lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, tostring), lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, display), lua_setfield(L, -2, "__display");
    lua_newtable(L);
    lp_lua_setfunc(L, -1, "save", save, save_doc);
    lua_setfield(L, -2, "__methods");
}

/* loupe[name], made when missing; left on the stack. */
static void subtable(lua_State *L, const char *name, const char *doc)
{
    if (lua_getfield(L, -1, name) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lp_lua_setdoc(L, -1, doc);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);
    }
}

void lp_lua_open_dict(lua_State *L)
{
    metatable(L, LP_LUA_SAE_MT, sae_index, sae_gc, sae_tostring, sae_display, sae_save,
              "sae:save(dir [, {model_name, dataset_path, context_size, prepend_bos}]) -> sae\n"
              "Writes the SAE in SAELens' layout (cfg.json, sae_weights.safetensors, sparsity.safetensors); "
              "SAE.load_from_disk(dir) reads it.");
    lua_pop(L, 1);
    metatable(L, LP_LUA_TRANSCODERS_MT, tc_index, tc_gc, tc_tostring, tc_display, tc_save,
              "t:save(dir) -> t\nWrites the transcoders in circuit-tracer's layout (config.yaml and per-layer "
              "safetensors); a set's harvests and labels go beside them (loupe_harvest_layer_{l}.safetensors, "
              "loupe_labels_layer_{l}.json), which circuit-tracer ignores.");
    lua_pushcfunction(L, tc_len), lua_setfield(L, -2, "__len");
    lua_pop(L, 1);

    subtable(L, "sae", "loupe.sae: sparse autoencoders and transcoders (SAELens' files).");
    lp_lua_setfunc(L, -1, "load", sae_load,
                   "loupe.sae.load(dir | file.npz [, {model = m | d_model = n, transcoder = false}]) -> SAE\n"
                   "Reads an SAE from an SAELens folder (cfg.json, sae_weights.safetensors) or Gemma Scope's "
                   "params.npz. With a model, d_in must be its d_model. Fields: cfg, d_in, d_sae, d_out, arch, k, "
                   "hook_in, hook_out, layer, and copies of W_enc, W_dec, b_enc, b_dec, threshold, W_skip.");
    lp_lua_setfunc(L, -1, "random", sae_random,
                   "loupe.sae.random{arch, d_in, d_sae [, d_out, k, transcoder, skip, hook, hook_out, seed]} -> SAE\n"
                   "An SAE with seeded random weights, FOR TESTS ONLY (file round trips, peer checks): it is "
                   "not an initialisation for training.");
    lua_pop(L, 1);
    subtable(L, "transcoders", "loupe.transcoders: per-layer transcoder sets and cross-layer transcoders "
                               "(circuit-tracer's files).");
    lp_lua_setfunc(L, -1, "load", tc_load,
                   "loupe.transcoders.load(dir) -> Transcoders\nReads a transcoder set (config.yaml, "
                   "layer_{i}.safetensors) or a CLT (W_enc_{i}, W_dec_{i}.safetensors) in circuit-tracer's layout. "
                   "Fields: kind, n_layers, d_model, d_transcoder, feature_input_hook, feature_output_hook; t[l] "
                   "is layer l's transcoder (a copy, 1-based).");
    lp_lua_setfunc(L, -1, "save", tc_save_list,
                   "loupe.transcoders.save({tc_0, tc_1, ...}, dir) -> Transcoders\nMakes per-layer transcoders "
                   "(loupe.sae.train{transcoder = true, layer = l, ...}, one per layer from layer 0, the same "
                   "activation, width and skip) into a transcoder set and writes it in circuit-tracer's layout "
                   "(config.yaml, layer_{i}.safetensors); loupe.transcoders.load(dir) and circuit-tracer read it.");
    lp_lua_setfunc(L, -1, "random", tc_random,
                   "loupe.transcoders.random{n_layers, d_model, d_transcoder [, activation = 'relu' | 'jumprelu' | "
                   "'topk', k, skip, clt, seed]} -> Transcoders\nSeeded random weights, FOR TESTS ONLY.");
    lua_pop(L, 1);
}
