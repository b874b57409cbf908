/* loupe.Run: what m:run returns. r.logits, r["<hook>"] (the cached activations), r.tokens,
 * r:names(), and r:top(k), the next-token table with its display. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "core/buf.h"
#include "core/error.h"
#include "figures.h"
#include "text.h"
#include "lua_analysis.h"
#include "lua_api.h"
#include "lua_model_impl.h"
#include "lua_tensor.h"
#include "model/analysis.h"
#include "ops/ops.h"

#define FIGURE_MT "loupe.RunFigure"
#define TOKENS_MT "loupe.TokenList"


static int run_gc(lua_State *L)
{
    run_ud *r = luaL_checkudata(L, 1, RUN_MT);
    lp_run_clear(&r->run);
    free(r->tokens);
    r->tokens = NULL;
    return 0;
}

static model_ud *run_model(lua_State *L, int idx)
{
    lua_getiuservalue(L, idx, 1);
    model_ud *u = luaL_checkudata(L, -1, MODEL_MT);
    lua_pop(L, 1); /* still referenced by the run */
    return u;
}

static const char *token_str(model_ud *u, int32_t id, char *buf, size_t cap)
{
    const char *s = u->tok ? lp_tokenizer_token(u->tok, id) : NULL;
    if (s)
        return s;
    snprintf(buf, cap, "#%d", (int)id);
    return buf;
}

const char *lp_lua_token_show(model_ud *u, int32_t id, char *buf, size_t cap)
{
    char raw[32];
    const char *s = token_str(u, id, raw, sizeof raw);
    lp_buf b = LP_BUF_INIT;
    lp_token_show(&b, s, strlen(s));
    const char *t = lp_buf_str(&b);
    size_t n = strlen(t);
    if (n >= cap) { /* cut on a code point boundary */
        n = cap - 1;
        while (n > 0 && ((unsigned char)t[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(buf, t, n);
    buf[n] = 0;
    lp_buf_free(&b);
    return buf;
}

/* r:loss([{per_token = true}]): next-token cross-entropy of the run's own tokens. */
static int run_loss(lua_State *L)
{
    run_ud *r = check_run(L, 1);
    model_ud *u = run_model(L, 1);
    int per_token = 0;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "per_token");
        per_token = lua_toboolean(L, -1);
        lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, 2)) {
        return luaL_error(L, "loss: the argument is an options table, e.g. r:loss{per_token = true}");
    }
    if (r->T < 2)
        return luaL_error(L, "loss: the run has %d token%s per row; the loss needs at least 2", r->T,
                          r->T == 1 ? "" : "s");
    if (!r->run.logits)
        return luaL_error(L, "loss: the run kept no logits");
    int V = u->m->cfg.d_vocab;
    int64_t shape[2] = {r->B, r->T - 1};
    float *nlls = per_token ? lua_newuserdatauv(L, (size_t)r->B * (size_t)(r->T - 1) * sizeof(float), 0) : NULL;
    double total = 0;
    for (int b = 0; b < r->B; b++)
        for (int t = 0; t + 1 < r->T; t++) {
            const float *lg = r->run.logits->data + ((size_t)b * r->T + (size_t)t) * V;
            int32_t next = r->tokens[(size_t)b * r->T + t + 1];
            double mx = -INFINITY, z = 0;
            for (int i = 0; i < V; i++)
                mx = fmax(mx, lg[i]);
            for (int i = 0; i < V; i++)
                z += exp(lg[i] - mx);
            double nll = mx + log(z) - lg[next];
            total += nll;
            if (nlls)
                nlls[(size_t)b * (r->T - 1) + t] = (float)nll;
        }
    if (nlls) {
        lp_lua_push_tensor(L, lp_tensor_from_data(2, shape, nlls, LP_DEVICE_CPU));
        return 1;
    }
    lua_pushnumber(L, total / ((double)r->B * (r->T - 1)));
    return 1;
}

static int run_top(lua_State *L)
{
    run_ud *r = check_run(L, 1);
    model_ud *u = run_model(L, 1);
    lua_Integer k = luaL_optinteger(L, 2, 10), pos = luaL_optinteger(L, 3, r->T), b = luaL_optinteger(L, 4, 1);
    if (pos < 0)
        pos += r->T + 1;
    if (pos < 1 || pos > r->T)
        return luaL_error(L, "top: position %d is outside 1..%d", (int)pos, r->T);
    if (b < 1 || b > r->B)
        return luaL_error(L, "top: batch row %d is outside 1..%d", (int)b, r->B);
    int V = u->m->cfg.d_vocab;
    if (k < 1)
        k = 1;
    if (k > V)
        k = V;
    const float *lg = r->run.logits->data + ((size_t)(b - 1) * r->T + (size_t)(pos - 1)) * V;
    double mx = -INFINITY, z = 0;
    for (int i = 0; i < V; i++)
        mx = fmax(mx, lg[i]);
    for (int i = 0; i < V; i++)
        z += exp(lg[i] - mx);
    int32_t *idx = lua_newuserdatauv(L, (size_t)k * sizeof *idx, 0);
    float *vals = lua_newuserdatauv(L, (size_t)k * sizeof *vals, 0);
    if (lp_cpu_ops()->topk_forward(vals, idx, lg, 1, V, k) < 0)
        return lp_lua_backend_error(L, "top");
    char buf[32];
    lua_createtable(L, (int)k, 2);
    for (int j = 0; j < k; j++) {
        lua_createtable(L, 0, 4);
        lua_pushstring(L, token_str(u, idx[j], buf, sizeof buf));
        lua_setfield(L, -2, "token");
        lua_pushinteger(L, idx[j]);
        lua_setfield(L, -2, "id");
        lua_pushnumber(L, lg[idx[j]]);
        lua_setfield(L, -2, "logit");
        lua_pushnumber(L, exp(lg[idx[j]] - mx) / z);
        lua_setfield(L, -2, "prob");
        lua_rawseti(L, -2, j + 1);
    }
    char shown[64];
    lua_pushfstring(L, "Next token after %s (position %d)",
                    lp_lua_token_show(u, r->tokens[(size_t)(b - 1) * r->T + (size_t)(pos - 1)], shown, sizeof shown),
                    (int)pos);
    lua_setfield(L, -2, "title");
    luaL_setmetatable(L, TOPK_MT);
    return 1;
}

/* The top-k table's bundle: rank, token, id, probability, logit. */
static json_t *topk_bundle(lua_State *L, int idx)
{
    size_t n = lua_rawlen(L, idx);
    const char *header[] = {"#", "token", "id", "prob", "logit"};
    char(*cells)[5][64] = lua_newuserdatauv(L, (n ? n : 1) * sizeof *cells, 0);
    const char **ptrs = lua_newuserdatauv(L, (n ? n : 1) * 5 * sizeof *ptrs, 0);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        snprintf(cells[i][0], 64, "%zu", i + 1);
        lua_getfield(L, -1, "token");
        char *shown = lp_token_show_dup(lua_tostring(L, -1));
        if (!shown) {
            lua_pop(L, 2);
            return NULL;
        }
        snprintf(cells[i][1], 64, "%s", shown);
        free(shown);
        lua_getfield(L, -2, "id");
        snprintf(cells[i][2], 64, "%lld", (long long)lua_tointeger(L, -1));
        lua_getfield(L, -3, "prob");
        snprintf(cells[i][3], 64, "%.4f", lua_tonumber(L, -1));
        lua_getfield(L, -4, "logit");
        snprintf(cells[i][4], 64, "%.3f", lua_tonumber(L, -1));
        lua_pop(L, 5);
        for (int c = 0; c < 5; c++)
            ptrs[i * 5 + c] = cells[i][c];
    }
    lua_getfield(L, idx, "title");
    json_t *b = lp_display_table(lua_tostring(L, -1), header, ptrs, n, 5);
    lua_pop(L, 3);
    return b;
}

static int topk_display(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    json_t *b = topk_bundle(L, 1);
    if (!b)
        return lp_lua_backend_error(L, "top");
    lua_newtable(L);
    const char *mime;
    json_t *v;
    json_object_foreach(b, mime, v) {
        lua_pushstring(L, json_string_value(v));
        lua_setfield(L, -2, mime);
    }
    json_decref(b);
    return 1;
}

static int topk_tostring(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    json_t *b = topk_bundle(L, 1);
    if (!b)
        return lp_lua_backend_error(L, "top");
    lua_pushstring(L, json_string_value(json_object_get(b, "text/plain")));
    json_decref(b);
    return 1;
}

/* r:attention(layer [, {head = h, row = b}]): the attention patterns of a layer (0-based, as
 * in the hook names) as a grid of every head, or one head's heatmap, with token labels. */
static int run_attention(lua_State *L)
{
    run_ud *r = check_run(L, 1);
    model_ud *u = run_model(L, 1);
    lua_Integer layer = luaL_checkinteger(L, 2);
    lua_Integer head = 0, row = 1;
    int one = 0; /* one head, or the grid of all */
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "head");
        one = !lua_isnil(L, -1);
        head = luaL_optinteger(L, -1, 0);
        lua_getfield(L, 3, "row");
        row = luaL_optinteger(L, -1, 1);
        lua_pop(L, 2);
    }
    char name[96];
    snprintf(name, sizeof name, "blocks.%lld.attn.hook_pattern", (long long)layer);
    const lp_tensor *p = lp_run_get(&r->run, name);
    if (!p) {
        if (!lp_model_has_hook(u->m, name))
            return luaL_error(L, "attention: the model has no layer %d (layers 0..%d)", (int)layer,
                              u->m->cfg.n_layers - 1);
        return luaL_error(L, "attention: this run did not cache %s; run with {cache = true} or "
                             "{cache = \"hook_pattern\"}", name);
    }
    if (p->ndim != 4)
        return luaL_error(L, "attention: %s is not (batch, heads, query, key)", name);
    int64_t B = p->shape[0], H = p->shape[1], T = p->shape[2];
    if (row < 1 || row > B)
        return luaL_error(L, "attention: row %d out of range 1..%d", (int)row, (int)B);
    if (one && (head < 0 || head >= H))
        return luaL_error(L, "attention: head %d out of range 0..%d (heads count from 0, as in the hook names)",
                          (int)head, (int)H - 1);
    size_t n = (size_t)lp_tensor_numel(p);
    float *all = lua_newuserdatauv(L, n * sizeof *all, 0);
    if (lp_tensor_to_host(p, all) < 0)
        return lp_lua_backend_error(L, "attention");
    const float *v = all + (size_t)(row - 1) * H * T * T;
    /* token labels, kept alive by a table on the stack */
    const char **labels = lua_newuserdatauv(L, (size_t)T * sizeof *labels, 0);
    lua_createtable(L, (int)T, 0);
    for (int64_t t = 0; t < T; t++) {
        char buf[96];
        lua_pushstring(L, lp_lua_token_show(u, r->tokens[(size_t)(row - 1) * r->T + (size_t)t], buf, sizeof buf));
        labels[t] = lua_tostring(L, -1);
        lua_rawseti(L, -2, t + 1);
    }
    char title[128];
    lp_heatmap_opts o = {title, labels, labels, "query", "key", LP_SCALE_SEQUENTIAL};
    json_t *b;
    if (one) {
        snprintf(title, sizeof title, "Attention pattern, layer %lld, head %lld", (long long)layer, (long long)head);
        b = lp_display_heatmap(v + (size_t)head * T * T, (size_t)T, (size_t)T, &o);
    } else {
        snprintf(title, sizeof title, "Attention patterns, layer %lld, %lld heads", (long long)layer, (long long)H);
        char(*titles)[24] = lua_newuserdatauv(L, (size_t)H * sizeof *titles, 0);
        const char **tp = lua_newuserdatauv(L, (size_t)H * sizeof *tp, 0);
        for (int64_t h = 0; h < H; h++) {
            snprintf(titles[h], sizeof titles[h], "head %d", (int)h);
            tp[h] = titles[h];
        }
        b = lp_display_heatmap_grid(v, (size_t)H, (size_t)T, (size_t)T, tp, &o);
    }
    if (!b)
        return lp_lua_backend_error(L, "attention");
    /* a figure: {bundle = {mime = text}} with __display and __tostring */
    lua_newtable(L);
    lua_newtable(L);
    const char *mime;
    json_t *val;
    json_object_foreach(b, mime, val)
    {
        if (json_is_string(val)) {
            lua_pushstring(L, json_string_value(val));
            lua_setfield(L, -2, mime);
        }
    }
    json_decref(b);
    lua_setfield(L, -2, "bundle");
    luaL_setmetatable(L, FIGURE_MT);
    return 1;
}

static int figure_display(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "bundle");
    return 1;
}

static int figure_tostring(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "bundle");
    if (lua_istable(L, -1))
        lua_getfield(L, -1, "text/plain");
    if (!lua_isstring(L, -1))
        lua_pushliteral(L, "<figure>");
    return 1;
}

static int lens_gc(lua_State *L)
{
    lp_lens_free(lua_touserdata(L, 1));
    return 0;
}

/* r:logit_lens([{pos = p, row = b, k = 5}]): what each layer's residual stream predicts at
 * one position, read through the final norm and the unembedding (nostalgebraist's logit
 * lens), computed by lp_logit_lens (backend/model/analysis.h). A table figure; its field
 * `layers` holds {layer, top = {{id, token, prob}...}, next_prob} per layer. */
static int run_logit_lens(lua_State *L)
{
    run_ud *r = check_run(L, 1);
    model_ud *u = run_model(L, 1);
    lua_Integer pos = r->T, row = 1, k = 5;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "pos");
        pos = luaL_optinteger(L, -1, r->T);
        lua_getfield(L, 2, "row");
        row = luaL_optinteger(L, -1, 1);
        lua_getfield(L, 2, "k");
        k = luaL_optinteger(L, -1, 5);
        lua_pop(L, 3);
    }
    if (pos < 0)
        pos += r->T + 1;
    if (pos < 1 || pos > r->T || row < 1 || row > r->B || k < 1 || k > 50)
        return luaL_error(L, "logit_lens: pos must be in 1..%d, row in 1..%d, k in 1..50", r->T, r->B);
    int32_t next = pos < r->T ? r->tokens[(size_t)(row - 1) * r->T + (size_t)pos] : -1;
    /* the lens, in a box that frees it */
    lp_lens *ls = lua_newuserdatauv(L, sizeof *ls, 0);
    memset(ls, 0, sizeof *ls);
    if (luaL_newmetatable(L, "loupe.LensResult")) {
        lua_pushcfunction(L, lens_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if (lp_logit_lens(u->m, &r->run, (int)row - 1, (int)pos - 1, (int)k, next, ls) < 0)
        return lp_lua_backend_error(L, "logit_lens");
    int NL = ls->n_layers;
    /* per layer: the top k and the probability of the actual next token */
    size_t cols = next >= 0 ? 3 : 2;
    const char **cells = lua_newuserdatauv(L, (size_t)NL * cols * sizeof *cells, 0);
    lua_createtable(L, NL * (int)cols, 0); /* keeps the cell strings */
    int anchor = lua_gettop(L), na = 0;
    lua_createtable(L, NL, 0); /* layers */
    int layers = lua_gettop(L);
    for (int l = 0; l < NL; l++) {
        const int32_t *ids = ls->top + (size_t)l * k;
        const double *probs = ls->top_prob + (size_t)l * k;
        char buf[32], num[48];
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, l);
        lua_setfield(L, -2, "layer");
        lua_createtable(L, (int)k, 0);
        for (int j = 0; j < k && ids[j] >= 0; j++) {
            lua_createtable(L, 0, 3);
            lua_pushinteger(L, ids[j]);
            lua_setfield(L, -2, "id");
            lua_pushstring(L, token_str(u, ids[j], buf, sizeof buf));
            lua_setfield(L, -2, "token");
            lua_pushnumber(L, probs[j]);
            lua_setfield(L, -2, "prob");
            lua_rawseti(L, -2, j + 1);
        }
        lua_setfield(L, -2, "top");
        luaL_Buffer tops;
        luaL_buffinit(L, &tops);
        for (int j = 0; j < k && ids[j] >= 0; j++) {
            char item[96];
            snprintf(item, sizeof item, "%s%s (%.3f)", j ? ", " : "", token_str(u, ids[j], buf, sizeof buf), probs[j]);
            luaL_addstring(&tops, item);
        }
        luaL_pushresult(&tops);
        cells[(size_t)l * cols + 1] = lua_tostring(L, -1);
        lua_rawseti(L, anchor, ++na);
        snprintf(num, sizeof num, "%d", l);
        lua_pushstring(L, num);
        cells[(size_t)l * cols] = lua_tostring(L, -1);
        lua_rawseti(L, anchor, ++na);
        if (next >= 0) {
            lua_pushnumber(L, ls->next_prob[l]);
            lua_setfield(L, -2, "next_prob");
            snprintf(num, sizeof num, "%.4f", ls->next_prob[l]);
            lua_pushstring(L, num);
            cells[(size_t)l * cols + 2] = lua_tostring(L, -1);
            lua_rawseti(L, anchor, ++na);
        }
        lua_rawseti(L, layers, l + 1);
    }
    char title[160], buf[32];
    snprintf(title, sizeof title, "Logit lens at position %d (%s)%s%s", (int)pos,
             token_str(u, r->tokens[(size_t)(row - 1) * r->T + (size_t)(pos - 1)], buf, sizeof buf),
             next >= 0 ? ", next token " : "", "");
    const char *header[3] = {"layer", "top tokens (probability)", "p(next)"};
    json_t *b = lp_display_table(title, header, cells, (size_t)NL, cols);
    if (!b)
        return lp_lua_backend_error(L, "logit_lens");
    lua_newtable(L);
    lua_newtable(L);
    const char *mime;
    json_t *val;
    json_object_foreach(b, mime, val)
    {
        if (json_is_string(val)) {
            lua_pushstring(L, json_string_value(val));
            lua_setfield(L, -2, mime);
        }
    }
    json_decref(b);
    lua_setfield(L, -2, "bundle");
    lua_pushvalue(L, layers);
    lua_setfield(L, -2, "layers");
    luaL_setmetatable(L, FIGURE_MT);
    return 1;
}

static int run_names(lua_State *L)
{
    run_ud *r = check_run(L, 1);
    lua_createtable(L, (int)r->run.n, 0);
    for (size_t i = 0; i < r->run.n; i++) {
        lua_pushstring(L, r->run.names[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int run_index(lua_State *L)
{
    run_ud *r = check_run(L, 1);
    const char *key = luaL_checkstring(L, 2);
    if (luaL_getmetafield(L, 1, "__methods") != LUA_TNIL) {
        if (lua_getfield(L, -1, key) != LUA_TNIL)
            return 1;
        lua_pop(L, 2);
    }
    if (!strcmp(key, "logits")) {
        lp_lua_push_tensor(L, lp_tensor_alias(r->run.logits));
        return 1;
    }
    if (!strcmp(key, "tokens")) {
        lua_createtable(L, r->B, 0);
        for (int b = 0; b < r->B; b++) {
            lua_createtable(L, r->T, 0);
            for (int t = 0; t < r->T; t++) {
                lua_pushinteger(L, r->tokens[(size_t)b * r->T + t]);
                lua_rawseti(L, -2, t + 1);
            }
            lua_rawseti(L, -2, b + 1);
        }
        if (r->B == 1)
            lua_rawgeti(L, -1, 1);
        luaL_setmetatable(L, TOKENS_MT); /* r:tokens() returns the list too */
        return 1;
    }
    lp_tensor *t = lp_run_get(&r->run, key);
    if (t) {
        lp_lua_push_tensor(L, lp_tensor_alias(t));
        return 1;
    }
    model_ud *u = run_model(L, 1);
    if (lp_model_has_hook(u->m, key))
        return luaL_error(L, "'%s' was not cached by this run (run with cache = true, or a filter that keeps it)", key);
    lua_pushnil(L);
    return 1;
}

/* r.tokens is a field; r:tokens() calls the list with r, and gets the list. */
static int tokens_call(lua_State *L)
{
    lua_settop(L, 1);
    return 1;
}

static int run_tostring(lua_State *L)
{
    run_ud *r = check_run(L, 1);
    lua_pushfstring(L, "Run(batch %d x %d tokens, %d hook points cached; r.logits, r[\"<hook>\"], r:top(k))", r->B,
                    r->T, (int)r->run.n);
    return 1;
}

void lp_lua_open_run(lua_State *L)
{
    luaL_newmetatable(L, FIGURE_MT);
    lua_pushcfunction(L, figure_display);
    lua_setfield(L, -2, "__display");
    lua_pushcfunction(L, figure_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    int mt;
    luaL_newmetatable(L, RUN_MT);
    mt = lua_gettop(L);
    lua_newtable(L);
    lp_lua_setfunc(L, -1, "loss", run_loss,
                   "r:loss([{per_token = true}]) -> number | Tensor\nThe next-token cross-entropy (nats) of the run's\n"
                   "own tokens: the mean over rows and positions 1..T-1, or per token as a [rows, T-1] tensor.");
    lp_lua_setfunc(L, -1, "top", run_top,
                   "r:top([k [, pos [, row]]]) -> table\nThe k (default 10) most likely next tokens after position pos\n"
                   "(default the last; negative counts from the end) of batch row row (default 1): a list of\n"
                   "{token, id, prob, logit}, shown as a table.");
    lp_lua_setfunc(L, -1, "attention", run_attention,
                   "r:attention(layer [, {head = h, row = b}]) -> figure\nThe attention patterns of a layer (0-based,\n"
                   "as in the hook names) for every head, or one head (0-based too: blocks.L.attn.hook_z's head index),\n"
                   "with the tokens (\xE2\x90\xA3 for a space) as labels on both axes.\n"
                   "Needs blocks.<layer>.attn.hook_pattern in the run's cache.");
    lp_lua_setfunc(L, -1, "logit_lens", run_logit_lens,
                   "r:logit_lens([{pos = p, row = b, k = 5}]) -> figure\nWhat each layer's residual stream predicts\n"
                   "at position pos (default the last), through the final norm and the unembedding: the top k\n"
                   "tokens per layer and the probability of the actual next token. .layers holds the numbers.\n"
                   "Needs blocks.L.hook_resid_post cached (the default cache).");
    lp_lua_setfunc(L, -1, "names", run_names, "r:names() -> {names}\nThe hook points this run cached.");
    lua_setfield(L, mt, "__methods");
    lua_pushcfunction(L, run_index);
    lua_setfield(L, mt, "__index");
    lua_pushcfunction(L, run_gc);
    lua_setfield(L, mt, "__gc");
    lua_pushcfunction(L, run_tostring);
    lua_setfield(L, mt, "__tostring");
    static const lp_lua_field run_fields[] = {
        {"logits", "Tensor (B, T, d_vocab): the logits of every position"},
        {"tokens", "{ids}: the token ids of the input (a list of lists for a batch); r:tokens() too"},
        {NULL, NULL}};
    lp_lua_settype(L, mt,
                   "Run: a forward pass of m:run(...), with its activations cached.\n"
                   "r[\"blocks.0.attn.hook_pattern\"] is a cached hook point (r:names() lists them); layers\n"
                   "and heads count from 0, as in the hook names.",
                   run_fields);
    lua_pop(L, 1);

    luaL_newmetatable(L, TOKENS_MT);
    lua_pushcfunction(L, tokens_call);
    lua_setfield(L, -2, "__call");
    lua_pop(L, 1);

    luaL_newmetatable(L, TOPK_MT);
    lua_pushcfunction(L, topk_display);
    lua_setfield(L, -2, "__display");
    lua_pushcfunction(L, topk_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

}
