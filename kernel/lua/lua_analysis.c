/* r:dla and m:composition (see lua_analysis.h), the helpers lua_patch.c shares, and the
 * registration of the analysis methods on loupe.Run and loupe.Model. */
#include "lua_analysis.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "core/buf.h"
#include "core/error.h"
#include "figures.h"
#include "lua_api.h"
#include "lua_tensor.h"
#include "model/analysis.h"

#define FIGURE_MT "loupe.RunFigure" /* made by lua_run.c */

/* ---- shared helpers ---- */

const char *lp_lua_analysis_token_str(model_ud *u, int32_t id, char *buf, size_t cap)
{
    const char *s = u->tok ? lp_tokenizer_token(u->tok, id) : NULL;
    if (s)
        return s;
    snprintf(buf, cap, "#%d", (int)id);
    return buf;
}

int32_t lp_lua_analysis_token(lua_State *L, model_ud *u, int idx, const char *what)
{
    idx = lua_absindex(L, idx);
    int V = u->m->cfg.d_vocab;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        int ok;
        lua_Integer id = lua_tointegerx(L, idx, &ok);
        if (!ok || id < 0 || id >= V)
            luaL_error(L, "%s: token %s is not an id in 0..%d", what, lua_tostring(L, idx), V - 1);
        return (int32_t)id;
    }
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "%s: a token must be a string or an id, not a %s", what, luaL_typename(L, idx));
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (!u->tok)
        luaL_error(L, "%s: this model has no tokenizer (%s); give the token as an id", what, u->tokerr);
    int id = lp_tokenizer_lookup(u->tok, s);
    if (id >= 0 && id < V)
        return id;
    int32_t *ids = NULL;
    size_t n = 0;
    if (lp_tokenizer_encode(u->tok, s, len, 0, &ids, &n) < 0)
        lp_lua_backend_error(L, what);
    int32_t one = n == 1 ? ids[0] : -1;
    free(ids);
    if (one < 0 || one >= V)
        luaL_error(L, "%s: \"%s\" is %d tokens, not one; give a single token (e.g. with its leading space, "
                      "\" Paris\") or an id", what, s, (int)n);
    return one;
}

void lp_lua_analysis_figure(lua_State *L, json_t *bundle, const char *what)
{
    if (!bundle)
        lp_lua_backend_error(L, what);
    lua_newtable(L);
    lua_newtable(L);
    const char *mime;
    json_t *val;
    json_object_foreach(bundle, mime, val)
    {
        if (json_is_string(val)) {
            lua_pushstring(L, json_string_value(val));
            lua_setfield(L, -2, mime);
        }
    }
    json_decref(bundle);
    lua_setfield(L, -2, "bundle");
    luaL_setmetatable(L, FIGURE_MT);
}

static model_ud *run_model(lua_State *L, int idx)
{
    lua_getiuservalue(L, idx, 1);
    model_ud *u = luaL_checkudata(L, -1, MODEL_MT);
    lua_pop(L, 1); /* still referenced by the run */
    return u;
}

static void push_darray(lua_State *L, const double *v, int n)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushnumber(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

/* The html of a bundle (borrowed), or "". */
static const char *html_of(json_t *b)
{
    const char *s = b ? json_string_value(json_object_get(b, "text/html")) : NULL;
    return s ? s : "";
}

/* ---- r:dla ---- */

static int dla_gc(lua_State *L)
{
    lp_dla_free(lua_touserdata(L, 1));
    return 0;
}

static int run_dla(lua_State *L)
{
    run_ud *r = check_run(L, 1);
    model_ud *u = run_model(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    const lp_model_config *c = &u->m->cfg;
    int NL = c->n_layers, H = c->n_heads, gpt2 = c->arch == LP_ARCH_GPT2;
    if (lua_getfield(L, 2, "token") == LUA_TNIL)
        return luaL_error(L, "dla: token = <a token string or id> is required");
    int32_t tok = lp_lua_analysis_token(L, u, -1, "dla");
    int32_t base = -1;
    if (lua_getfield(L, 2, "baseline_token") == LUA_TNIL) {
        lua_pop(L, 1);
        lua_getfield(L, 2, "baseline");
    }
    if (!lua_isnil(L, -1))
        base = lp_lua_analysis_token(L, u, -1, "dla");
    lua_getfield(L, 2, "pos");
    lua_Integer pos = luaL_optinteger(L, -1, -1);
    lua_getfield(L, 2, "row");
    lua_Integer row = luaL_optinteger(L, -1, 1);
    lua_settop(L, 2);
    if (pos < 0)
        pos += r->T + 1;
    if (pos < 1 || pos > r->T || row < 1 || row > r->B)
        return luaL_error(L, "dla: pos must be in 1..%d (or -1 for the last) and row in 1..%d", r->T, r->B);
    /* the attribution, in a box that frees it (nothing C owns is alive when Lua raises) */
    lp_dla *box = lua_newuserdatauv(L, sizeof *box, 0);
    memset(box, 0, sizeof *box);
    if (luaL_newmetatable(L, "loupe.DLAResult")) {
        lua_pushcfunction(L, dla_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if (lp_dla_compute(u->m, &r->run, (int)row - 1, (int)pos - 1, tok, base, box) < 0)
        return lp_lua_backend_error(L, "dla");
    lp_dla d = *box;
    size_t nh = (size_t)NL * H;
    double *attn = d.attn, *mlp = d.mlp, *abias = d.attn_bias, *heads = d.heads;
    /* the parts, in residual-stream order, then the constant */
    int n = 0, cap = 3 + 2 * NL;
    double *vals = lua_newuserdatauv(L, (size_t)cap * sizeof *vals, 0);
    char(*names)[24] = lua_newuserdatauv(L, (size_t)cap * sizeof *names, 0);
    const char **lab = lua_newuserdatauv(L, (size_t)cap * sizeof *lab, 0);
    snprintf(names[n], 24, "embed"), vals[n++] = d.embed;
    if (gpt2)
        snprintf(names[n], 24, "pos_embed"), vals[n++] = d.pos_embed;
    for (int l = 0; l < NL; l++) {
        snprintf(names[n], 24, "L%d attn", l), vals[n++] = attn[l];
        snprintf(names[n], 24, "L%d mlp", l), vals[n++] = mlp[l];
    }
    snprintf(names[n], 24, "bias"), vals[n++] = d.bias;
    for (int i = 0; i < n; i++)
        lab[i] = names[i];
    /* the display */
    char tb[3][64], title[320], what[200];
    const char *ts = lp_lua_token_show(u, tok, tb[0], sizeof tb[0]);
    if (base >= 0)
        snprintf(what, sizeof what, "logit(%s) - logit(%s)", ts,
                 lp_lua_token_show(u, base, tb[1], sizeof tb[1]));
    else
        snprintf(what, sizeof what, "logit(%s)", ts);
    snprintf(title, sizeof title, "Direct logit attribution of %s at position %d (%s)", what, (int)pos,
             lp_lua_token_show(u, r->tokens[(size_t)(row - 1) * r->T + (size_t)(pos - 1)], tb[2],
                               sizeof tb[2]));
    lp_plot_opts po = {title, "contribution (final norm's scale frozen)", NULL};
    float *hv = lua_newuserdatauv(L, (nh ? nh : 1) * sizeof *hv, 0);
    for (size_t i = 0; i < nh; i++)
        hv[i] = (float)heads[i];
    char(*hl)[12] = lua_newuserdatauv(L, (size_t)(NL + H) * sizeof *hl, 0);
    const char **hp = lua_newuserdatauv(L, (size_t)(NL + H) * sizeof *hp, 0);
    for (int l = 0; l < NL; l++)
        snprintf(hl[l], 12, "%d", l), hp[l] = hl[l];
    for (int h = 0; h < H; h++)
        snprintf(hl[NL + h], 12, "%d", h), hp[NL + h] = hl[NL + h];
    char *taken = lua_newuserdatauv(L, nh ? nh : 1, 0); /* the last Lua allocation before the displays */
    memset(taken, 0, nh ? nh : 1);
    json_t *bar = lp_display_bar(lab, vals, (size_t)n, &po);
    lp_heatmap_opts ho = {"Per head: z W_O through the frozen final norm (the layer's attn part = its heads + b_O)",
                          hp, hp + NL, "layer", "head", LP_SCALE_DIVERGING};
    json_t *hm = lp_display_heatmap(hv, (size_t)NL, (size_t)H, &ho);
    lp_buf plain = LP_BUF_INIT, html = LP_BUF_INIT;
    lp_buf_printf(&plain, "%s, batch row %d\n%s: %.6g in the run; the parts below + bias add up to %.6g "
                          "(final norm scale %.5g, frozen)\n",
                  title, (int)row, what, d.actual, d.total, d.scale);
    for (int i = 0; i < n; i++)
        lp_buf_printf(&plain, "  %-10s %+.5g\n", names[i], vals[i]);
    /* the heads that matter most */
    lp_buf_puts(&plain, "top heads (L<layer>H<head>, counted from 0 as in the hook names):");
    for (int k = 0; k < 6 && (size_t)k < nh; k++) {
        size_t best = nh;
        for (size_t i = 0; i < nh; i++)
            if (!taken[i] && (best == nh || fabs(heads[i]) > fabs(heads[best])))
                best = i;
        taken[best] = 1;
        lp_buf_printf(&plain, " L%dH%d %+.4g", (int)(best / H), (int)(best % H), heads[best]);
    }
    lp_buf_putc(&plain, '\n');
    lp_buf_puts(&html, "<div class=\"lp-dla\">");
    lp_buf_puts(&html, html_of(bar));
    lp_buf_puts(&html, html_of(hm));
    lp_buf_puts(&html, "</div>");
    int ok = bar && hm;
    json_decref(bar);
    json_decref(hm);
    json_t *bundle = ok ? lp_bundle_from_bufs(&plain, &html) : NULL;
    if (!ok) {
        lp_buf_free(&plain);
        lp_buf_free(&html);
    }
    lp_lua_analysis_figure(L, bundle, "dla");
    int fig = lua_gettop(L);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, names[i]);
        lua_setfield(L, -2, "name");
        lua_pushnumber(L, vals[i]);
        lua_setfield(L, -2, "value");
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, fig, "components");
    struct { const char *k; double v; } nums[] = {{"logit", d.actual}, {"total", d.total}, {"bias", d.bias},
                                                  {"scale", d.scale}, {"embed", d.embed}, {"pos_embed", d.pos_embed}};
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++) {
        lua_pushnumber(L, nums[i].v);
        lua_setfield(L, fig, nums[i].k);
    }
    push_darray(L, attn, NL);
    lua_setfield(L, fig, "attn");
    push_darray(L, mlp, NL);
    lua_setfield(L, fig, "mlp");
    push_darray(L, abias, NL);
    lua_setfield(L, fig, "attn_bias");
    lp_lua_push_tensor(L, lp_tensor_from_data(2, (int64_t[]){NL, H}, hv, LP_DEVICE_CPU));
    lua_setfield(L, fig, "heads");
    lua_pushinteger(L, tok);
    lua_setfield(L, fig, "token");
    if (base >= 0) {
        lua_pushinteger(L, base);
        lua_setfield(L, fig, "baseline");
    }
    lua_pushinteger(L, pos);
    lua_setfield(L, fig, "pos");
    lua_settop(L, fig);
    return 1;
}

/* ---- m:composition ---- */

static int model_composition(lua_State *L)
{
    model_ud *u = check_model(L, 1);
    int has = lua_istable(L, 2);
    if (!has && !lua_isnoneornil(L, 2))
        return luaL_error(L, "composition: expected a table of options ({kind = \"q\" | \"k\" | \"v\"})");
    const lp_model_config *c = &u->m->cfg;
    int NL = c->n_layers, H = c->n_heads;
    const char *ks = "";
    if (has) {
        lua_getfield(L, 2, "kind");
        ks = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
    }
    lp_compose_kind kind;
    if (!strcmp(ks, "q") || !strcmp(ks, "Q"))
        kind = LP_COMPOSE_Q;
    else if (!strcmp(ks, "k") || !strcmp(ks, "K"))
        kind = LP_COMPOSE_K;
    else if (!strcmp(ks, "v") || !strcmp(ks, "V"))
        kind = LP_COMPOSE_V;
    else
        return luaL_error(L, "composition: kind must be \"q\", \"k\" or \"v\"");
    int fold = 0, l1 = -1, l2 = -1;
    if (has) {
        lua_getfield(L, 2, "fold_ln");
        fold = lua_toboolean(L, -1);
        if (lua_getfield(L, 2, "layers") != LUA_TNIL) {
            luaL_checktype(L, -1, LUA_TTABLE);
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            l1 = (int)luaL_checkinteger(L, -2), l2 = (int)luaL_checkinteger(L, -1);
            if (l1 < 0 || l2 >= NL || l1 >= l2)
                return luaL_error(L, "composition: layers = {l1, l2} needs 0 <= l1 < l2 <= %d (layers are 0-based, "
                                     "as in hook names)", NL - 1);
        }
    }
    lua_settop(L, 2);
    size_t LH = (size_t)NL * H, side = l1 >= 0 ? (size_t)H : LH;
    float *s = lua_newuserdatauv(L, side * side * sizeof *s, 0);
    if (lp_composition_scores(u->m, kind, fold, l1, l2, s) < 0)
        return lp_lua_backend_error(L, "composition");
    /* labels: L<layer>H<head>, heads 0-based as in the hook names */
    char(*names)[24] = lua_newuserdatauv(L, side * 2 * sizeof *names, 0);
    const char **lab = lua_newuserdatauv(L, side * 2 * sizeof *lab, 0);
    for (size_t i = 0; i < side; i++) {
        int la = l1 >= 0 ? l1 : (int)(i / H), lb = l1 >= 0 ? l2 : (int)(i / H);
        snprintf(names[i], 24, "L%dH%d", la, (int)(i % H));
        snprintf(names[side + i], 24, "L%dH%d", lb, (int)(i % H));
        lab[i] = names[i], lab[side + i] = names[side + i];
    }
    const char *kn = kind == LP_COMPOSE_Q ? "Q" : kind == LP_COMPOSE_K ? "K" : "V";
    char title[200];
    if (l1 >= 0)
        snprintf(title, sizeof title, "%s-composition, layer %d heads (rows) into layer %d heads (columns)%s", kn, l1,
                 l2, fold ? ", ln folded" : "");
    else
        snprintf(title, sizeof title, "%s-composition of every earlier head (rows) into every later head (columns)%s",
                 kn, fold ? ", ln folded" : "");
    lp_heatmap_opts o = {title, lab, lab + side, "earlier head", "later head", LP_SCALE_SEQUENTIAL};
    json_t *hm = lp_display_heatmap(s, side, side, &o);
    lp_buf plain = LP_BUF_INIT, html = LP_BUF_INIT;
    lp_buf_printf(&plain, "%s\n||W_A W_B||_F / (||W_A||_F ||W_B||_F), W_A = W_V W_O of the earlier head, W_B = %s of "
                          "the later head (TransformerLens' composition_scores)\nstrongest:",
                  title, kind == LP_COMPOSE_Q ? "W_Q W_K^T" : kind == LP_COMPOSE_K ? "W_K W_Q^T" : "W_V W_O");
    char *taken = lua_newuserdatauv(L, side * side, 0);
    memset(taken, 0, side * side);
    for (int k = 0; k < 8; k++) {
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < side * side; i++)
            if (!taken[i] && isfinite(s[i]) && s[i] > 0 && (best == SIZE_MAX || s[i] > s[best]))
                best = i;
        if (best == SIZE_MAX)
            break;
        taken[best] = 1;
        lp_buf_printf(&plain, " %s->%s %.3f", names[best / side], names[side + best % side], (double)s[best]);
    }
    lp_buf_putc(&plain, '\n');
    lp_buf_puts(&html, html_of(hm));
    json_t *bundle = hm ? lp_bundle_from_bufs(&plain, &html) : NULL;
    if (!hm) {
        lp_buf_free(&plain);
        lp_buf_free(&html);
    }
    json_decref(hm);
    lp_lua_analysis_figure(L, bundle, "composition");
    int fig = lua_gettop(L);
    lp_tensor *t = l1 >= 0 ? lp_tensor_from_data(2, (int64_t[]){H, H}, s, LP_DEVICE_CPU)
                           : lp_tensor_from_data(4, (int64_t[]){NL, H, NL, H}, s, LP_DEVICE_CPU);
    lp_lua_push_tensor(L, t);
    lua_setfield(L, fig, "scores");
    lua_pushstring(L, kn);
    lua_setfield(L, fig, "kind");
    return 1;
}

/* ---- registration ---- */

static void add_methods(lua_State *L, const char *mt, const luaL_Reg *fns, const char *const *docs)
{
    int top = lua_gettop(L);
    if (luaL_getmetatable(L, mt) == LUA_TTABLE && lua_getfield(L, -1, "__methods") == LUA_TTABLE)
        for (int i = 0; fns[i].name; i++)
            lp_lua_setfunc(L, -1, fns[i].name, fns[i].func, docs[i]);
    lua_settop(L, top);
}

void lp_lua_open_analysis(lua_State *L)
{
    static const luaL_Reg run_fns[] = {{"dla", run_dla}, {NULL, NULL}};
    static const char *const run_docs[] = {
        "r:dla{token = t [, baseline_token = b] [, pos = -1] [, row = 1]} -> figure\n"
        "Direct logit attribution: how much each part of the residual stream at position pos adds to\n"
        "the logit of token t (or to logit(t) - logit(b)). Tokens are ids or one-token strings (\" Paris\").\n"
        "TransformerLens' convention (apply_ln_to_stack): the final norm's scale is frozen at this run's\n"
        "value (ln_final.hook_scale) and, for LayerNorm, each part is centred; each part is then read\n"
        "along w_lnf * (W_U[:, t] - W_U[:, b]). Parts: embed, pos_embed (GPT-2), every layer's attn and\n"
        "mlp output; per head, z W_O^h (the heads of a layer plus its attn_bias, b_O, make its attn).\n"
        "The constant bias = b_lnf . (W_U[:, t] - W_U[:, b]) + b_U[t] - b_U[b]; the parts plus bias\n"
        ".total equal the run's .logit up to rounding (unless a hook wrote the residual stream).\n"
        "Fields: .components {{name, value}}, .embed, .pos_embed, .attn[l+1], .mlp[l+1], .attn_bias[l+1],\n"
        ".heads (Tensor layers x heads), .bias, .total, .logit, .scale. Needs the default cache."};
    add_methods(L, RUN_MT, run_fns, run_docs);
    static const luaL_Reg model_fns[] = {
        {"composition", model_composition}, {"patch_sweep", lp_lua_model_patch_sweep},
        {"head_scores", lp_lua_model_head_scores}, {NULL, NULL}};
    static const char *const model_docs[] = {
        "m:composition{kind = \"q\" | \"k\" | \"v\" [, fold_ln = false] [, layers = {l1, l2}]} -> figure\n"
        "Composition scores between heads (Elhage et al. 2021), as TransformerLens' all_composition_scores:\n"
        "score = ||W_A W_B||_F / (||W_A||_F ||W_B||_F) with, row-vector convention (x W),\n"
        "W_A = W_V W_O of the earlier head and W_B = W_Q W_K^T (q), W_K W_Q^T (k) or W_V W_O (v) of the\n"
        "later head (all d_model x d_model). Grouped-query models: a query head uses its kv head's W_K, W_V.\n"
        "Raw checkpoint weights by default; fold_ln = true folds the ln1 weights into W_Q, W_K, W_V and\n"
        "centres W_O (LayerNorm models), as TransformerLens' from_pretrained does. .scores is a Tensor\n"
        "(layers, heads, layers, heads), 0 where the later layer is not after the earlier one, or\n"
        "(heads, heads) for one pair of layers (0-based, as in hook names). Heads in labels count from 0 too (L0H0).",
        "m:patch_sweep{clean = prompt, corrupt = prompt, hook = \"resid_pre\", metric = ...\n"
        "              [, positions = true] [, normalize = true]} -> figure\n"
        "Activation patching: runs the corrupt prompt with one piece of one layer's activation replaced\n"
        "by the clean run's, for every layer and position (or head) in turn. hook: resid_pre, resid_mid,\n"
        "resid_post, attn_out, mlp_out (per position; positions = false patches all positions at once),\n"
        "or z, q, k, v, pattern (per head; positions = true: per head and position). metric:\n"
        "function(logits) -> number (logits is the (1, T, vocab) Tensor of one patched run), or\n"
        "{token = t [, baseline = b] [, pos = -1]}: logit(t) - logit(b) at pos. Prompts (text or ids)\n"
        "must have the same number of tokens. normalize: (metric - corrupt) / (clean - corrupt), so 1\n"
        "is the clean result and 0 the corrupt one. Fields: .values (Tensor layers x positions or heads;\n"
        "rows L<layer>H<head> x positions for per-head-and-position), .raw, .clean, .corrupt, .labels.\n"
        "Interruptible; shows a progress bar when it takes more than a moment.",
        /* head_scores is lua_scores.c's; registered here with the other analyses */
        "m:head_scores([{seq_len = 50, batch = 4, seed = 0}]) -> figure\n"
        "Attention scores of every head on repeated random tokens [BOS] r_1..r_S r_1..r_S:\n"
        "previous_token: mean attention to the position before; induction (TransformerLens): mean\n"
        "attention, over the repeated half, to the token after the first copy of the current token\n"
        "(the seg_len - 1 offset diagonal); prefix_matching (Olsson et al. 2022): mean, over positions\n"
        "whose token occurred before, of the attention to every position right after an earlier\n"
        "occurrence (equal to induction unless a token also repeats inside a segment).\n"
        "Layer x head heatmaps; .previous_token, .induction, .prefix_matching [layer + 1][head], .tokens."};
    add_methods(L, MODEL_MT, model_fns, model_docs);
}
