/* Interventions on dictionary features from Lua (lua_steer.h): the feature edits of m:run and
 * m:generate, m:intervene{...} and loupe.compare(a, b). */
#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "core/buf.h"
#include "figures.h"
#include "html.h"
#include "text.h"
#include "lua_analysis.h"
#include "lua_api.h"
#include "lua_dict.h"
#include "lua_model_impl.h"
#include "lua_steer.h"
#include "lua_tensor.h"

#define INTERVENTION_MT "loupe.Intervention"
#define COMPARISON_MT "loupe.Comparison"

/* ---- dictionaries and feature edits ---- */

void lp_lua_read_dicts(lua_State *L, int opts, lp_splice_opts *so)
{
    static const char *const keys[] = {"saes", "transcoders"};
    lua_getfield(L, opts, "error_term");
    so->error_term = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_newtable(L); /* every lp_sae, kept alive */
    int all = lua_gettop(L), n = 0;
    for (int k = 0; k < 2; k++) {
        if (lua_getfield(L, opts, keys[k]) == LUA_TNIL) {
            lua_pop(L, 1);
            continue;
        }
        int t = lua_gettop(L);
        if (luaL_testudata(L, t, LP_LUA_SAE_MT) || luaL_testudata(L, t, LP_LUA_TRANSCODERS_MT)) {
            lua_newtable(L); /* a single dictionary: a list of one */
            lua_pushvalue(L, t);
            lua_rawseti(L, -2, 1);
            lua_replace(L, t);
        }
        if (!lua_istable(L, t))
            luaL_error(L, "%s: a list of SAEs and transcoders", keys[k]);
        for (lua_Integer i = 1; lua_rawgeti(L, t, i) != LUA_TNIL; i++) {
            int v = lua_gettop(L);
            if (luaL_testudata(L, v, LP_LUA_TRANSCODERS_MT)) {
                if (!lp_lua_test_transcoder_set(L, v))
                    luaL_error(L, "%s[%d]: only a transcoder set splices in (not a cross-layer transcoder)", keys[k],
                               (int)i);
                lua_Integer nl = luaL_len(L, v);
                for (lua_Integer l = 1; l <= nl; l++) {
                    lua_geti(L, v, l);
                    lua_rawseti(L, all, ++n);
                }
            } else if (luaL_testudata(L, v, LP_LUA_SAE_MT)) {
                lua_pushvalue(L, v);
                lua_rawseti(L, all, ++n);
            } else {
                luaL_error(L, "%s[%d] is not an SAE or transcoders (%s)", keys[k], (int)i, luaL_typename(L, v));
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    const lp_sae **list = lua_newuserdatauv(L, (n ? n : 1) * sizeof *list, 0);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, all, i + 1);
        list[i] = lp_lua_check_sae(L, -1);
        lua_pop(L, 1);
    }
    so->saes = list, so->n = n;
}

/* t[name], or t[idx] when that is nil and idx > 0; pushed */
static int field(lua_State *L, int t, const char *name, int idx)
{
    int ty = lua_getfield(L, t, name);
    if (ty == LUA_TNIL && idx > 0) {
        lua_pop(L, 1);
        ty = lua_rawgeti(L, t, idx);
    }
    return ty;
}

static lua_Integer int_field(lua_State *L, int t, const char *name, int idx, const char *where, int *present)
{
    field(L, t, name, idx);
    *present = !lua_isnil(L, -1);
    int ok = 1;
    lua_Integer v = *present ? lua_tointegerx(L, -1, &ok) : 0;
    if (!ok)
        luaL_error(L, "%s: %s must be an integer, not %s", where, name, luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

/* The spliced dictionary an edit names: an SAE of so, or layer `layer` of a transcoder set
 * whose layer so splices (a copy of it: same hook and width). */
static const lp_sae *resolve(lua_State *L, int sae, int has_layer, lua_Integer layer, const lp_splice_opts *so,
                             const char *where)
{
    if (luaL_testudata(L, sae, LP_LUA_SAE_MT)) {
        const lp_sae *s = lp_lua_check_sae(L, sae);
        for (int j = 0; j < so->n; j++)
            if (so->saes[j] == s)
                return s;
        luaL_error(L, "%s: this SAE (on '%s') is not spliced into the run (give it in saes)", where, s->cfg.hook_out);
    }
    if (luaL_testudata(L, sae, LP_LUA_TRANSCODERS_MT)) {
        const lp_transcoder_set *set = lp_lua_test_transcoder_set(L, sae);
        if (!set)
            luaL_error(L, "%s: only a per-layer transcoder set (not a cross-layer transcoder)", where);
        if (!has_layer)
            luaL_error(L, "%s: transcoders need layer = l (0..%d)", where, set->n_layers - 1);
        if (layer < 0 || layer >= set->n_layers)
            luaL_error(L, "%s: unknown layer %d (the transcoders have layers 0..%d)", where, (int)layer,
                       set->n_layers - 1);
        const lp_sae *t = set->layers[layer];
        for (int j = 0; j < so->n; j++)
            if (!strcmp(so->saes[j]->cfg.hook_out, t->cfg.hook_out) && so->saes[j]->cfg.d_sae == t->cfg.d_sae)
                return so->saes[j];
        luaL_error(L, "%s: the transcoders (layer %d, on '%s') are not spliced into the run (give them in %s)", where,
                   (int)layer, t->cfg.hook_out, "saes = {...} or transcoders = ...");
    }
    luaL_error(L, "%s: sae must be an SAE or transcoders (with layer = l), not %s", where, luaL_typename(L, sae));
    return NULL;
}

enum { SPEC_FEATURES, SPEC_STEER, SPEC_SET };

/* one edit at stack index e into fh and name (160 chars) */
static void parse_edit(lua_State *L, int e, int kind, int tcs, const char *where, int T, int from,
                       const lp_splice_opts *so, lp_feature_hook *fh, char *name)
{
    if (!lua_istable(L, e))
        luaL_error(L, "%s: a table, not %s", where, luaL_typename(L, e));
    int has_layer, has_feature, has_pos;
    lua_Integer layer = int_field(L, e, "layer", kind == SPEC_SET ? 1 : 0, where, &has_layer);
    lua_Integer feature = int_field(L, e, "feature", kind == SPEC_SET ? 3 : kind == SPEC_STEER ? 2 : 0, where,
                                    &has_feature);
    lua_Integer pos = int_field(L, e, "pos", kind == SPEC_SET ? 2 : 0, where, &has_pos);
    if (kind == SPEC_SET)
        lua_pushvalue(L, tcs);
    else
        field(L, e, "sae", kind == SPEC_STEER ? 1 : 0);
    const lp_sae *s = resolve(L, lua_gettop(L), has_layer, layer, so, where);
    lua_pop(L, 1);
    if (!has_feature)
        luaL_error(L, "%s: no feature", where);
    if (feature < 0 || feature >= s->cfg.d_sae)
        luaL_error(L, "%s: feature %d is out of range (0..%d)", where, (int)feature, s->cfg.d_sae - 1);
    if (has_pos && (pos < 1 || pos > T))
        luaL_error(L, "%s: position %d is beyond the prompt (positions 1..%d, from 1 as r.tokens)", where, (int)pos, T);
    *fh = (lp_feature_hook){.feature = (int)feature, .pos = has_pos ? (int)pos - 1 : -1, .from = from};
    if (kind == SPEC_STEER) {
        field(L, e, "scale", 3);
        if (!lua_isnumber(L, -1))
            luaL_error(L, "%s: scale must be a number", where);
        fh->kind = LP_FEAT_ADD, fh->value = (float)lua_tonumber(L, -1);
        lua_pop(L, 1);
    } else if (kind == SPEC_SET) {
        field(L, e, "value", 4);
        if (!lua_isnumber(L, -1))
            luaL_error(L, "%s: value must be a number", where);
        fh->kind = LP_FEAT_SET, fh->value = (float)lua_tonumber(L, -1);
        lua_pop(L, 1);
    } else {
        static const char *const ks[] = {"set", "add", "ablate"};
        int found = -1;
        for (int k = 0; k < 3; k++) {
            lua_getfield(L, e, ks[k]);
            if (!lua_isnil(L, -1) && !(k == 2 && !lua_toboolean(L, -1))) {
                if (found >= 0)
                    luaL_error(L, "%s: one of set, add and ablate (not %s and %s)", where, ks[found], ks[k]);
                if (k < 2 && !lua_isnumber(L, -1))
                    luaL_error(L, "%s: %s must be a number", where, ks[k]);
                found = k;
                fh->value = k < 2 ? (float)lua_tonumber(L, -1) : 0.0f;
            }
            lua_pop(L, 1);
        }
        if (found < 0)
            luaL_error(L, "%s: say what to do: set = v, add = v or ablate = true", where);
        fh->kind = found == 0 ? LP_FEAT_SET : found == 1 ? LP_FEAT_ADD : LP_FEAT_ABLATE;
    }
    snprintf(name, 160, "%s.hook_sae_acts_post", s->cfg.hook_out);
}

lp_feature_hook *lp_lua_read_features(lua_State *L, int opts, int T, int from, lp_splice_opts *so, lp_run_opts *o,
                                      int *n)
{
    static const char *const keys[] = {"features", "steer", "set"};
    *n = 0;
    int lists[3], total = 0, tcs = 0;
    for (int k = 0; k < 3; k++) {
        lua_getfield(L, opts, keys[k]);
        lists[k] = lua_gettop(L);
        if (lua_isnil(L, -1))
            continue;
        if (!lua_istable(L, -1))
            luaL_error(L, "%s: a list of edits, not %s", keys[k], luaL_typename(L, -1));
        total += (int)lua_rawlen(L, -1);
    }
    if (!lua_isnil(L, lists[2])) {
        lua_getfield(L, opts, "transcoders");
        tcs = lua_gettop(L);
        if (!lp_lua_test_transcoder_set(L, tcs))
            luaL_error(L, "set: needs transcoders = a transcoder set (set = {{layer, pos, feature, value}, ...})");
    }
    if (!total)
        return NULL;
    if (so->n == 0)
        luaL_error(L, "%s: no dictionary is spliced into the run (give saes = {...}%s)",
                   !lua_isnil(L, lists[0]) ? "features" : !lua_isnil(L, lists[1]) ? "steer" : "set",
                   " or transcoders = ...");
    lua_getfield(L, opts, "error_term");
    if (lua_isnil(L, -1))
        so->error_term = 1;
    lua_pop(L, 1);
    lp_feature_hook *fh = lua_newuserdatauv(L, (size_t)total * sizeof *fh, 0);
    char(*names)[160] = lua_newuserdatauv(L, (size_t)total * sizeof *names, 0);
    lp_hook *h = lua_newuserdatauv(L, (o->nhooks + (size_t)total) * sizeof *h, 0);
    if (o->nhooks)
        memcpy(h, o->hooks, o->nhooks * sizeof *h);
    size_t nh = o->nhooks;
    int m = 0;
    for (int k = 0; k < 3; k++) {
        if (lua_isnil(L, lists[k]))
            continue;
        for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, lists[k]); i++) {
            char where[48];
            snprintf(where, sizeof where, "%s[%d]", keys[k], (int)i);
            lua_rawgeti(L, lists[k], i);
            parse_edit(L, lua_gettop(L), k, tcs, where, T, from, so, &fh[m], names[m]);
            lua_pop(L, 1);
            h[nh++] = (lp_hook){.name = names[m], .kind = LP_HOOK_FN, .fn = lp_feature_hook_fn, .ud = &fh[m],
                                .head = -1, .pos = -1};
            m++;
        }
    }
    o->hooks = h, o->nhooks = nh;
    *n = m;
    return fh;
}

/* ---- comparisons ---- */

typedef struct side {
    const char *text;    /* or NULL */
    const float *logits; /* V, or NULL */
} side;

static void token_label(model_ud *u, int32_t id, char *buf, size_t cap)
{
    if (u)
        lp_lua_token_show(u, id, buf, cap);
    else
        snprintf(buf, cap, "#%d", (int)id);
}

/* the k largest of v (n) into idx, descending */
static void top_k(const double *v, int n, int k, int *idx)
{
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            int taken = 0;
            for (int q = 0; q < j && !taken; q++)
                taken = idx[q] == i;
            if (!taken && (best < 0 || v[i] > v[best]))
                best = i;
        }
        idx[j] = best;
    }
}

static void softmax(const float *lg, int V, double *p)
{
    double mx = -INFINITY, z = 0;
    for (int i = 0; i < V; i++)
        mx = fmax(mx, lg[i]);
    for (int i = 0; i < V; i++)
        z += (p[i] = exp(lg[i] - mx));
    for (int i = 0; i < V; i++)
        p[i] /= z;
}

/* appends a table bundle's text and html to plain and html; 0 or -1 */
static int append_table(lp_buf *plain, lp_buf *html, const char *title, const char *const *header,
                        const char *const *cells, size_t rows, size_t cols)
{
    json_t *b = lp_display_table(title, header, cells, rows, cols);
    if (!b)
        return -1;
    const char *t = json_string_value(json_object_get(b, "text/plain")), *h = json_string_value(json_object_get(b, "text/html"));
    if (plain->len)
        lp_buf_puts(plain, "\n");
    lp_buf_puts(plain, t ? t : "");
    lp_buf_puts(html, h ? h : "");
    json_decref(b);
    return 0;
}

/* Pushes a Comparison of a and b: fields top_a, top_b ({token, id, prob, logit}), changes
 * ({token, id, change}), text_a, text_b, bundle. V the vocabulary (logits sides). */
static void push_comparison(lua_State *L, model_ud *u, int V, const side *a, const side *b, const char *la,
                            const char *lb, int k, const char *title)
{
    lua_newtable(L);
    int res = lua_gettop(L);
    lp_buf plain = LP_BUF_INIT, html = LP_BUF_INIT;
    lp_buf_printf(&html, "<div class=\"loupe-compare\"><b>");
    lp_html_escape(&html, title, strlen(title));
    lp_buf_puts(&html, "</b>");
    lp_buf_puts(&plain, title);
    lp_buf_puts(&plain, "\n");
    char label[128];
    int rc = 0;
    if (a->text && b->text) { /* whole texts, escaped, side by side */
        const char *lab[2] = {la, lb}, *txt[2] = {a->text, b->text};
        lp_buf_puts(&html, "<table class=\"loupe-compare-text\"><tr>");
        for (int i = 0; i < 2; i++) {
            lp_buf_puts(&html, "<th style=\"text-align:left\">");
            lp_html_escape(&html, lab[i], strlen(lab[i]));
            lp_buf_puts(&html, "</th>");
        }
        lp_buf_puts(&html, "</tr><tr>");
        for (int i = 0; i < 2; i++) {
            lp_buf_puts(&html, "<td style=\"white-space:pre-wrap;vertical-align:top;text-align:left\">");
            lp_html_escape(&html, txt[i], strlen(txt[i]));
            lp_buf_puts(&html, "</td>");
            lp_buf_printf(&plain, "%s: ", lab[i]);
            lp_utf8_sanitize(&plain, txt[i], strlen(txt[i]));
            lp_buf_puts(&plain, "\n");
        }
        lp_buf_puts(&html, "</tr></table>");
        lua_pushstring(L, a->text);
        lua_setfield(L, res, "text_a");
        lua_pushstring(L, b->text);
        lua_setfield(L, res, "text_b");
    }
    if (a->logits && b->logits && V > 0) {
        if (k > V)
            k = V;
        double *pa = lua_newuserdatauv(L, 3 * (size_t)V * sizeof *pa, 0), *pb = pa + V, *d = pb + V;
        int *ia = lua_newuserdatauv(L, 4 * (size_t)k * sizeof *ia, 0), *ib = ia + k, *up = ib + k, *down = up + k;
        softmax(a->logits, V, pa);
        softmax(b->logits, V, pb);
        top_k(pa, V, k, ia);
        top_k(pb, V, k, ib);
        for (int i = 0; i < V; i++)
            d[i] = (double)b->logits[i] - a->logits[i];
        top_k(d, V, k, up);
        for (int i = 0; i < V; i++)
            d[i] = -d[i];
        top_k(d, V, k, down);
        for (int i = 0; i < V; i++)
            d[i] = -d[i];
        /* the cells, kept alive by a table */
        lua_createtable(L, 16 * k, 0);
        int keep = lua_gettop(L), nk = 0;
        const char **cells = lua_newuserdatauv(L, (size_t)(5 * 2 * k + 1) * sizeof *cells, 0);
#define CELL(i, ...)                                                                                                   \
    do {                                                                                                               \
        lua_pushfstring(L, __VA_ARGS__);                                                                               \
        cells[i] = lua_tostring(L, -1);                                                                                \
        lua_rawseti(L, keep, ++nk);                                                                                    \
    } while (0)
        char num[3][32];
        const int *tops[2] = {ia, ib};
        const double *ps[2] = {pa, pb};
        const float *ls[2] = {a->logits, b->logits};
        for (int s = 0; s < 2; s++) {
            lua_createtable(L, k, 0);
            for (int j = 0; j < k; j++) {
                int id = tops[s][j];
                token_label(u, id, label, sizeof label);
                lua_createtable(L, 0, 4);
                lua_pushstring(L, label);
                lua_setfield(L, -2, "token");
                lua_pushinteger(L, id);
                lua_setfield(L, -2, "id");
                lua_pushnumber(L, ps[s][id]);
                lua_setfield(L, -2, "prob");
                lua_pushnumber(L, ls[s][id]);
                lua_setfield(L, -2, "logit");
                lua_rawseti(L, -2, j + 1);
            }
            lua_setfield(L, res, s ? "top_b" : "top_a");
        }
        for (int j = 0; j < k; j++) {
            CELL(5 * j, "%d", j + 1);
            token_label(u, ia[j], label, sizeof label);
            CELL(5 * j + 1, "%s", label);
            snprintf(num[0], 32, "%.4f", pa[ia[j]]);
            CELL(5 * j + 2, "%s", num[0]);
            token_label(u, ib[j], label, sizeof label);
            CELL(5 * j + 3, "%s", label);
            snprintf(num[0], 32, "%.4f", pb[ib[j]]);
            CELL(5 * j + 4, "%s", num[0]);
        }
        char ha[80], hb[80];
        snprintf(ha, sizeof ha, "%s", la);
        snprintf(hb, sizeof hb, "%s", lb);
        const char *h1[5] = {"#", ha, "prob", hb, "prob"};
        rc |= append_table(&plain, &html, "Top next tokens", h1, cells, (size_t)k, 5);
        nk = 0;
        lua_createtable(L, 2 * k, 0);
        int changes = lua_gettop(L);
        for (int j = 0; j < 2 * k; j++) {
            int id = j < k ? up[j] : down[j - k];
            token_label(u, id, label, sizeof label);
            CELL(5 * j, "%s", label);
            snprintf(num[0], 32, "%+.4f", d[id]);
            snprintf(num[1], 32, "%.4f", (double)a->logits[id]);
            snprintf(num[2], 32, "%.4f", (double)b->logits[id]);
            CELL(5 * j + 1, "%s", num[0]);
            CELL(5 * j + 2, "%s", num[1]);
            CELL(5 * j + 3, "%s", num[2]);
            CELL(5 * j + 4, "%s", j < k ? "up" : "down");
            lua_createtable(L, 0, 3);
            lua_pushstring(L, label);
            lua_setfield(L, -2, "token");
            lua_pushinteger(L, id);
            lua_setfield(L, -2, "id");
            lua_pushnumber(L, d[id]);
            lua_setfield(L, -2, "change");
            lua_rawseti(L, changes, j + 1);
        }
#undef CELL
        lua_setfield(L, res, "changes");
        char hd[96];
        snprintf(hd, sizeof hd, "logit change (%s - %s)", lb, la);
        const char *h2[5] = {"token", hd, la, lb, ""};
        rc |= append_table(&plain, &html, "Largest logit changes", h2, cells, (size_t)(2 * k), 5);
        lua_pop(L, 4); /* pa, ia, keep, cells */
    }
    lp_buf_puts(&html, "</div>");
    json_t *bundle = rc ? NULL : lp_bundle_from_bufs(&plain, &html);
    if (rc) {
        lp_buf_free(&plain);
        lp_buf_free(&html);
    }
    if (!bundle)
        lp_lua_backend_error(L, "compare");
    lua_newtable(L);
    const char *mime;
    json_t *val;
    json_object_foreach(bundle, mime, val) {
        if (json_is_string(val)) {
            lua_pushstring(L, json_string_value(val));
            lua_setfield(L, -2, mime);
        }
    }
    json_decref(bundle);
    lua_setfield(L, res, "bundle");
    luaL_setmetatable(L, COMPARISON_MT);
}

static int bundle_display(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "bundle");
    return 1;
}

static int bundle_tostring(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "bundle");
    if (lua_istable(L, -1))
        lua_getfield(L, -1, "text/plain");
    if (!lua_isstring(L, -1))
        lua_pushliteral(L, "<comparison>");
    return 1;
}

/* The last row of a logits tensor (its last dim) into a buffer on the stack; V set. */
static const float *last_logits(lua_State *L, int idx, int *V)
{
    lp_tensor *t = lp_lua_check_tensor(L, idx);
    if (t->ndim < 1 || t->shape[t->ndim - 1] < 1)
        luaL_error(L, "compare: logits must have a vocabulary dimension");
    int64_t n = lp_tensor_numel(t), v = t->shape[t->ndim - 1];
    float *all = lua_newuserdatauv(L, (size_t)n * sizeof *all, 0);
    if (lp_tensor_to_host(t, all) < 0)
        lp_lua_backend_error(L, "compare");
    *V = (int)v;
    return all + (n - v);
}

/* One side of a comparison at idx: text, a Run, an Intervention (its new logits), a Tensor
 * of logits, or a table {text = ..., logits = Tensor | run = Run}. *u set from a run when
 * found. Buffers stay on the stack. */
static side read_side(lua_State *L, int idx, int *V, model_ud **u)
{
    side s = {0};
    int v = 0;
    if (lua_type(L, idx) == LUA_TSTRING) {
        s.text = lua_tostring(L, idx);
        return s;
    }
    run_ud *r = luaL_testudata(L, idx, RUN_MT);
    if (r) {
        if (!r->run.logits)
            luaL_error(L, "compare: the run kept no logits");
        lua_getiuservalue(L, idx, 1);
        *u = luaL_testudata(L, -1, MODEL_MT);
        lua_pop(L, 1);
        /* row 1's last position */
        lp_tensor *t = r->run.logits;
        v = (int)t->shape[t->ndim - 1];
        float *all = lua_newuserdatauv(L, (size_t)lp_tensor_numel(t) * sizeof *all, 0);
        if (lp_tensor_to_host(t, all) < 0)
            lp_lua_backend_error(L, "compare");
        s.logits = all + (size_t)(r->T - 1) * v;
    } else if (luaL_testudata(L, idx, "loupe.Tensor")) {
        s.logits = last_logits(L, idx, &v);
    } else if (lua_istable(L, idx)) {
        if (lua_getfield(L, idx, "text") == LUA_TSTRING)
            s.text = lua_tostring(L, -1);
        lua_pop(L, 1); /* the string stays referenced by the table */
        if (lua_getfield(L, idx, "model") != LUA_TNIL && luaL_testudata(L, -1, MODEL_MT))
            *u = luaL_testudata(L, -1, MODEL_MT);
        lua_pop(L, 1);
        if (lua_getfield(L, idx, "run") != LUA_TNIL) {
            side t = read_side(L, lua_gettop(L), &v, u);
            s.logits = t.logits;
        } else if (lua_getfield(L, idx, "logits") != LUA_TNIL) {
            s.logits = last_logits(L, lua_gettop(L), &v);
        }
        if (!s.text && !s.logits)
            luaL_error(L, "compare: a table needs text, logits or run");
    } else {
        luaL_error(L, "compare: expected text, a Run, an intervention, a Tensor of logits or {text =, logits =}, "
                      "got %s", luaL_typename(L, idx));
    }
    if (s.logits) {
        if (*V && v != *V)
            luaL_error(L, "compare: the two sides have %d and %d logits", *V, v);
        *V = v;
    }
    return s;
}

/* loupe.compare(a, b [, {labels = {"clean", "steered"}, k = 10, model = m, title = "..."}]) */
static int l_compare(lua_State *L)
{
    int opts = 0;
    if (lua_istable(L, 3) && lua_rawlen(L, 3) == 0) /* not the ids m:generate returns second */
        opts = 3;
    lua_settop(L, 3);
    const char *la = "clean", *lb = "steered", *title = "Comparison";
    int k = 10;
    model_ud *u = NULL;
    if (opts) {
        if (lua_getfield(L, opts, "labels") == LUA_TTABLE) {
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            if (lua_isstring(L, -2))
                la = lua_tostring(L, -2);
            if (lua_isstring(L, -1))
                lb = lua_tostring(L, -1);
        }
        lua_getfield(L, opts, "k");
        k = (int)luaL_optinteger(L, -1, 10);
        if (lua_getfield(L, opts, "title") == LUA_TSTRING)
            title = lua_tostring(L, -1);
        if (lua_getfield(L, opts, "model") != LUA_TNIL)
            u = check_model(L, lua_gettop(L));
    }
    if (k < 1 || k > 100)
        return luaL_error(L, "compare: k must be in 1..100");
    int V = 0;
    model_ud *ua = NULL, *ub = NULL;
    side a = read_side(L, 1, &V, &ua), b = read_side(L, 2, &V, &ub);
    if (!u)
        u = ua ? ua : ub;
    if ((a.text != NULL) != (b.text != NULL) && (!a.logits || !b.logits))
        return luaL_error(L, "compare: one side has text and the other has none");
    if ((a.logits != NULL) != (b.logits != NULL) && (!a.text || !b.text))
        return luaL_error(L, "compare: one side has logits and the other has none");
    push_comparison(L, u, V, &a, &b, la, lb, k, title);
    return 1;
}

/* ---- m:intervene ---- */

static void push_layer_tensors(lua_State *L, lp_tensor **ts, int n)
{
    lua_createtable(L, n, 1);
    for (int l = 0; l < n; l++) {
        lp_lua_push_tensor(L, ts[l]);
        ts[l] = NULL;
        lua_rawseti(L, -2, l); /* keyed by layer, from 0 */
    }
}

static int intervention_display(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "comparison");
    if (lua_istable(L, -1))
        lua_getfield(L, -1, "bundle");
    return 1;
}

static int intervention_tostring(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "comparison");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "bundle");
        if (lua_istable(L, -1))
            lua_getfield(L, -1, "text/plain");
    }
    if (!lua_isstring(L, -1))
        lua_pushliteral(L, "Intervention");
    return 1;
}

/* m:intervene{transcoders = tcs, prompt, set = {{layer, pos, feature, value}, ...},
 *   freeze_attention = true, constrained_layers = {a, b} | true} */
static int model_intervene(lua_State *L)
{
    model_ud *u = check_model(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lua_getfield(L, 2, "transcoders"); /* 3 */
    lp_transcoder_set *tcs = lp_lua_test_transcoder_set(L, 3);
    lp_clt *clt = lp_lua_test_clt(L, 3);
    if (!tcs && !clt)
        return luaL_error(L, "intervene: transcoders must be a transcoder set or a cross-layer transcoder "
                             "(loupe.transcoders.load)");
    if ((tcs ? lp_intervene_check_set(u->m, tcs) : lp_intervene_check_clt(u->m, clt)) < 0)
        return lp_lua_backend_error(L, NULL);
    if (field(L, 2, "prompt", 1) == LUA_TNIL) /* 4 */
        return luaL_error(L, "intervene: no prompt (m:intervene{transcoders = tcs, prompt = \"...\", set = {...}})");
    int B, T;
    int32_t *toks = lp_lua_model_tokens(L, u, 4, &B, &T); /* 5 */
    if (B != 1)
        return luaL_error(L, "intervene: one prompt at a time (got a batch of %d)", B);
    lp_intervene_opts o = {.freeze_attention = 1};
    lua_getfield(L, 2, "freeze_attention");
    if (!lua_isnil(L, -1))
        o.freeze_attention = lua_toboolean(L, -1);
    lua_pop(L, 1);
    int L_ = tcs ? tcs->n_layers : clt->n_layers;
    lua_getfield(L, 2, "constrained_layers");
    if (lua_isboolean(L, -1)) {
        o.constrained = lua_toboolean(L, -1), o.c_first = 0, o.c_last = L_ - 1;
    } else if (lua_istable(L, -1)) {
        int ok1, ok2;
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        lua_Integer a = lua_tointegerx(L, -2, &ok1), b = lua_tointegerx(L, -1, &ok2);
        if (!ok1 || !ok2 || a < 0 || b >= L_ || a > b)
            return luaL_error(L, "intervene: constrained_layers must be {first, last} with 0 <= first <= last <= %d "
                                 "(layers from 0), or true for all", L_ - 1);
        o.constrained = 1, o.c_first = (int)a, o.c_last = (int)b;
        lua_pop(L, 2);
    } else if (!lua_isnil(L, -1)) {
        return luaL_error(L, "intervene: constrained_layers must be {first, last} or true");
    }
    lua_pop(L, 1);
    /* the edits: set = {{layer, pos, feature, value} or {layer =, pos =, feature =, value = | add = | ablate =}} */
    int ne = 0;
    lua_getfield(L, 2, "set");
    int set = lua_gettop(L);
    if (!lua_isnil(L, set) && !lua_istable(L, set))
        return luaL_error(L, "intervene: set must be a list of {layer, pos, feature, value}");
    ne = lua_istable(L, set) ? (int)lua_rawlen(L, set) : 0;
    lp_feature_edit *e = lua_newuserdatauv(L, (ne ? (size_t)ne : 1) * sizeof *e, 0);
    for (int i = 0; i < ne; i++) {
        char where[40];
        snprintf(where, sizeof where, "intervene: set[%d]", i + 1);
        lua_rawgeti(L, set, i + 1);
        int t = lua_gettop(L);
        if (!lua_istable(L, t))
            return luaL_error(L, "%s: {layer, pos, feature, value}, not %s", where, luaL_typename(L, t));
        int hl, hf, hp;
        lua_Integer layer = int_field(L, t, "layer", 1, where, &hl);
        lua_Integer pos = int_field(L, t, "pos", 2, where, &hp);
        lua_Integer feature = int_field(L, t, "feature", 3, where, &hf);
        if (!hl || !hf)
            return luaL_error(L, "%s: needs layer and feature", where);
        if (layer < 0 || layer >= L_)
            return luaL_error(L, "%s: unknown layer %d (the transcoders have layers 0..%d)", where, (int)layer, L_ - 1);
        int F = tcs ? tcs->layers[layer]->cfg.d_sae : clt->d_tc;
        if (feature < 0 || feature >= F)
            return luaL_error(L, "%s: feature %d is out of range (0..%d)", where, (int)feature, F - 1);
        if (hp && (pos < 1 || pos > T))
            return luaL_error(L, "%s: position %d is beyond the prompt (positions 1..%d, from 1 as r.tokens)", where,
                              (int)pos, T);
        e[i] = (lp_feature_edit){.layer = (int)layer, .pos = hp ? (int)pos - 1 : -1, .feature = (int)feature};
        if (field(L, t, "value", 4) != LUA_TNIL) {
            if (!lua_isnumber(L, -1))
                return luaL_error(L, "%s: value must be a number", where);
            e[i].kind = LP_FEAT_SET, e[i].value = (float)lua_tonumber(L, -1);
        } else if (lua_getfield(L, t, "add") != LUA_TNIL) {
            if (!lua_isnumber(L, -1))
                return luaL_error(L, "%s: add must be a number", where);
            e[i].kind = LP_FEAT_ADD, e[i].value = (float)lua_tonumber(L, -1);
        } else if (lua_getfield(L, t, "ablate"), lua_toboolean(L, -1)) {
            e[i].kind = LP_FEAT_ABLATE;
        } else {
            return luaL_error(L, "%s: needs a value (or add = v, ablate = true)", where);
        }
        lua_settop(L, t - 1);
    }
    o.edits = e, o.n_edits = ne;
    lp_intervention r = {0};
    if ((tcs ? lp_intervene(u->m, tcs, toks, T, &o, &r) : lp_intervene_clt(u->m, clt, toks, T, &o, &r)) < 0)
        return lp_lua_backend_error(L, NULL);
    /* the result */
    int V = u->m->cfg.d_vocab;
    float *lg = lua_newuserdatauv(L, 2 * (size_t)V * sizeof *lg, 0);
    memcpy(lg, r.clean_logits->data + (size_t)(T - 1) * V, (size_t)V * sizeof *lg);
    memcpy(lg + V, r.logits->data + (size_t)(T - 1) * V, (size_t)V * sizeof *lg);
    int lgi = lua_gettop(L);
    lua_newtable(L);
    int res = lua_gettop(L);
    lp_lua_push_tensor(L, r.logits);
    r.logits = NULL;
    lua_setfield(L, res, "logits");
    lp_lua_push_tensor(L, r.clean_logits);
    r.clean_logits = NULL;
    lua_setfield(L, res, "clean_logits");
    push_layer_tensors(L, r.acts, r.n_layers);
    lua_setfield(L, res, "acts");
    push_layer_tensors(L, r.pre, r.n_layers);
    lua_setfield(L, res, "pre");
    push_layer_tensors(L, r.clean_acts, r.n_layers);
    lua_setfield(L, res, "clean_acts");
    lp_intervention_clear(&r);
    lua_createtable(L, T, 0);
    for (int t = 0; t < T; t++) {
        lua_pushinteger(L, toks[t]);
        lua_rawseti(L, -2, t + 1);
    }
    lua_setfield(L, res, "tokens");
    lua_pushvalue(L, 1);
    lua_setfield(L, res, "model");
    side a = {.logits = lg}, b = {.logits = lg + V};
    char title[160], tok[64];
    lp_lua_token_show(u, toks[T - 1], tok, sizeof tok);
    snprintf(title, sizeof title, "Intervention on %d feature%s: next token after %s (position %d)%s", ne,
             ne == 1 ? "" : "s", tok, T, o.constrained ? ", constrained" : "");
    push_comparison(L, u, V, &a, &b, "before", "after", 10, title);
    lua_setfield(L, res, "comparison");
    (void)lgi;
    luaL_setmetatable(L, INTERVENTION_MT);
    return 1;
}

void lp_lua_open_steer(lua_State *L)
{
    int loupe = lua_gettop(L);
    luaL_newmetatable(L, COMPARISON_MT);
    lua_pushcfunction(L, bundle_display);
    lua_setfield(L, -2, "__display");
    lua_pushcfunction(L, bundle_tostring);
    lua_setfield(L, -2, "__tostring");
    static const lp_lua_field cmp_fields[] = {
        {"top_a", "{token, id, prob, logit}...: the first side's top next tokens"},
        {"top_b", "the second side's"},
        {"changes", "{token, id, change}...: the largest logit increases, then decreases (b - a)"},
        {"text_a", "the first side's text"},
        {"text_b", "the second side's text"},
        {NULL, NULL}};
    lp_lua_settype(L, lua_gettop(L), "Comparison: two outputs side by side (loupe.compare).", cmp_fields);
    lua_pop(L, 1);
    luaL_newmetatable(L, INTERVENTION_MT);
    lua_pushcfunction(L, intervention_display);
    lua_setfield(L, -2, "__display");
    lua_pushcfunction(L, intervention_tostring);
    lua_setfield(L, -2, "__tostring");
    static const lp_lua_field iv_fields[] = {
        {"logits", "Tensor (1, T, d_vocab): the logits with the features set"},
        {"clean_logits", "Tensor (1, T, d_vocab): without"},
        {"acts", "{[layer] = Tensor (T, d_transcoder)}: feature activations after the intervention (layers from 0)"},
        {"pre", "{[layer] = Tensor (T, d_transcoder)}: their pre-activations"},
        {"clean_acts", "{[layer] = Tensor (T, d_transcoder)}: the clean run's"},
        {"tokens", "{ids}: the prompt"},
        {"comparison", "the top tokens before and after (loupe.compare's table)"},
        {NULL, NULL}};
    lp_lua_settype(L, lua_gettop(L),
                   "Intervention: what m:intervene returns; shown as the top next tokens before and after.",
                   iv_fields);
    lua_pop(L, 1);
    if (luaL_getmetatable(L, MODEL_MT) == LUA_TTABLE && lua_getfield(L, -1, "__methods") == LUA_TTABLE)
        lp_lua_setfunc(
            L, lua_gettop(L), "intervene", model_intervene,
            "m:intervene{transcoders = tcs, prompt, set = {{layer, pos, feature, value}, ...} [, freeze_attention = "
            "true]\n  [, constrained_layers = {first, last} | true]} -> Intervention\n"
            "Sets transcoder features (layer and feature from 0, pos from 1 as r.tokens; pos nil: every position;\n"
            "{layer =, pos =, feature =, add = v | ablate = true} too) and reruns the prompt. freeze_attention\n"
            "(default true) replays the clean attention patterns. Without constrained_layers the model reruns with\n"
            "the transcoders spliced in (error terms kept): later features respond. With them, the MLP outputs of\n"
            "those layers are frozen at their clean values plus the set features' direct effects (and a skip's\n"
            "response), and their norm scales too (ln_final's when the range ends at the last layer): the change\n"
            "propagates linearly, as the attribution graph's edges predict. Returns .logits, .acts[layer],\n"
            ".pre[layer], .clean_logits, .clean_acts, shown as the top tokens before and after.\n"
            "A cross-layer transcoder works too: a layer-l feature writes layer l and every later one.");
    lua_settop(L, loupe);
    lp_lua_setfunc(L, loupe, "compare", l_compare,
                   "loupe.compare(a, b [, {labels = {\"clean\", \"steered\"}, k = 10, model = m, title = s}]) -> "
                   "Comparison\nTwo outputs side by side: a and b are texts (what m:generate returns), Runs (the last\n"
                   "position's next tokens), Tensors of logits, interventions, or {text = ..., logits = ... | run = "
                   "...}.\nShows the texts, the top k next tokens of each, and the largest logit changes (b - a).");
    lua_settop(L, loupe);
}
