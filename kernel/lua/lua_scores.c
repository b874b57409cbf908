/* m:head_scores{...}: per-head attention scores on repeated random tokens, as in the
 * induction-heads work (Olsson et al. 2022) and TransformerLens's tutorials. A batch of
 * sequences [r_1 .. r_S, r_1 .. r_S] (after BOS when the tokenizer has one) runs once with
 * only the attention patterns cached; for every layer and head:
 *   previous_token   mean attention from each position to the one before it
 *   induction        TransformerLens' induction score: the mean, over the query positions of
 *                    the repeated half, of the attention on the seg_len - 1 offset diagonal,
 *                    from r_i to the token after the first r_i (key i - S + 1). (TL's tutorial
 *                    averages the whole diagonal, which adds two query positions of the first
 *                    half that have no earlier copy; they are left out here.)
 *   prefix_matching  Olsson et al.'s prefix-matching score, defined by the tokens rather than by
 *                    the layout: from every position whose token occurred earlier, the summed
 *                    attention to each position right after an earlier occurrence of that token
 *                    (keys j <= i with token[j - 1] == token[i]), averaged over such positions.
 *                    In the repeated half that is exactly the induction diagonal; it differs
 *                    where a token also repeats inside a segment (small vocabularies, long
 *                    segments), which the diagonal ignores and this counts.
 * Shown as three layer x head heatmaps; the numbers come back in .previous_token, .induction
 * and .prefix_matching ([layer + 1][head]) and the tokens used in .tokens. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "core/buf.h"
#include "figures.h"
#include "lua_api.h"
#include "lua_model_impl.h"
#include "rng.h"

static int only_patterns(void *ud, const char *name)
{
    (void)ud;
    size_t n = strlen(name), k = strlen("attn.hook_pattern");
    return n >= k && strcmp(name + n - k, "attn.hook_pattern") == 0;
}

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer def)
{
    if (!lua_istable(L, t))
        return def;
    lua_getfield(L, t, k);
    lua_Integer v = luaL_optinteger(L, -1, def);
    lua_pop(L, 1);
    return v;
}

static void push_matrix(lua_State *L, const float *v, int rows, int cols)
{
    lua_createtable(L, rows, 0);
    for (int r = 0; r < rows; r++) {
        lua_createtable(L, cols, 0);
        for (int c = 0; c < cols; c++) {
            lua_pushnumber(L, v[(size_t)r * cols + c]);
            lua_rawseti(L, -2, c + 1);
        }
        lua_rawseti(L, -2, r + 1);
    }
}

int lp_lua_model_head_scores(lua_State *L)
{
    model_ud *u = check_model(L, 1);
    const lp_model_config *c = &u->m->cfg;
    int S = (int)opt_int(L, 2, "seq_len", 50), B = (int)opt_int(L, 2, "batch", 4);
    uint64_t seed = (uint64_t)opt_int(L, 2, "seed", 0);
    int bos = u->tok ? lp_tokenizer_bos(u->tok) : -1;
    int off = bos >= 0 ? 1 : 0, T = 2 * S + off;
    if (S < 2 || B < 1 || B > 256)
        return luaL_error(L, "head_scores: seq_len must be at least 2 and batch in 1..256");
    if (c->n_ctx > 0 && T > c->n_ctx)
        return luaL_error(L, "head_scores: 2 * seq_len%s = %d tokens is past the context of %d",
                          off ? " + BOS" : "", T, c->n_ctx);
    int32_t *toks = lua_newuserdatauv(L, (size_t)B * T * sizeof *toks, 0);
    lp_rng g;
    lp_rng_seed(&g, seed);
    for (int b = 0; b < B; b++) {
        int32_t *row = toks + (size_t)b * T;
        if (off)
            row[0] = bos;
        for (int i = 0; i < S; i++) {
            int32_t t;
            do
                t = (int32_t)lp_rng_below(&g, (uint64_t)c->d_vocab);
            while (t == bos && c->d_vocab > 1);
            row[off + i] = row[off + S + i] = t;
        }
    }
    lp_run_opts opts = {NULL, 0, 0, only_patterns, NULL};
    lp_run r = {0};
    if (lp_model_run(u->m, toks, B, T, &opts, &r) < 0)
        return lp_lua_backend_error(L, "head_scores");
    int NL = c->n_layers, H = c->n_heads;
    float *scores = lua_newuserdatauv(L, 3 * (size_t)NL * H * sizeof *scores, 0); /* prev, ind, prefix */
    float *prev = scores, *ind = scores + (size_t)NL * H, *pm = ind + (size_t)NL * H;
    /* the (row, query, key) triples of prefix matching, and how many queries have any */
    size_t nm = 0, nq = 0;
    for (int b = 0; b < B; b++)
        for (int i = 1; i < T; i++) {
            const int32_t *row = toks + (size_t)b * T;
            size_t before = nm;
            for (int j = 1; j <= i; j++)
                nm += row[j - 1] == row[i];
            nq += nm > before;
        }
    int32_t *trip = lua_newuserdatauv(L, (nm ? nm : 1) * 3 * sizeof *trip, 0);
    for (int b = 0, k = 0; b < B; b++)
        for (int i = 1; i < T; i++)
            for (int j = 1; j <= i; j++)
                if (toks[(size_t)b * T + j - 1] == toks[(size_t)b * T + i]) {
                    trip[3 * k] = b, trip[3 * k + 1] = i, trip[3 * k + 2] = j;
                    k++;
                }
    for (int l = 0; l < NL; l++) {
        char name[96];
        snprintf(name, sizeof name, "blocks.%d.attn.hook_pattern", l);
        const lp_tensor *p = lp_run_get(&r, name);
        if (!p || p->ndim != 4 || p->shape[1] != H || p->shape[2] != T) {
            lp_run_clear(&r);
            return luaL_error(L, "head_scores: no attention pattern for layer %d", l);
        }
        for (int h = 0; h < H; h++) {
            double sp = 0, si = 0;
            for (int b = 0; b < B; b++)
                for (int i = 1; i < T; i++) {
                    float v;
                    int64_t at[4] = {b, h, i, i - 1};
                    if (lp_tensor_get(p, at, &v) == 0)
                        sp += v;
                    if (i >= off + S) { /* the repeated half */
                        at[3] = i - S + 1;
                        if (lp_tensor_get(p, at, &v) == 0)
                            si += v;
                    }
                }
            prev[(size_t)l * H + h] = (float)(sp / ((double)B * (T - 1)));
            ind[(size_t)l * H + h] = (float)(si / ((double)B * S));
            double sm = 0;
            for (size_t k = 0; k < nm; k++) {
                float v;
                int64_t at[4] = {trip[3 * k], h, trip[3 * k + 1], trip[3 * k + 2]};
                if (lp_tensor_get(p, at, &v) == 0)
                    sm += v;
            }
            pm[(size_t)l * H + h] = nq ? (float)(sm / (double)nq) : NAN;
        }
    }
    lp_run_clear(&r);
    static const char *titles[3] = {"previous-token score", "induction score", "prefix-matching score"};
    char title[128];
    snprintf(title, sizeof title, "Head scores on %d x %d repeated random tokens (rows: layers, columns: heads)",
             B, S);
    lp_heatmap_opts o = {title, NULL, NULL, "layer", "head", LP_SCALE_SEQUENTIAL};
    json_t *bundle = lp_display_heatmap_grid(scores, 3, (size_t)NL, (size_t)H, titles, &o);
    if (!bundle)
        return lp_lua_backend_error(L, "head_scores");
    /* text/plain: the grid's line, then the strongest heads of each score */
    lp_buf plain = LP_BUF_INIT;
    lp_buf_printf(&plain, "%s\n", title);
    for (int k = 0; k < 3; k++) {
        const float *v = scores + (size_t)k * NL * H;
        lp_buf_printf(&plain, "%s, strongest heads (L<layer>H<head>, counted from 0):", titles[k]);
        int best[3] = {-1, -1, -1};
        for (int i = 0; i < NL * H; i++) {
            if (!isfinite(v[i]))
                continue;
            for (int j = 0; j < 3; j++)
                if (best[j] < 0 || v[i] > v[best[j]]) {
                    for (int q = 2; q > j; q--)
                        best[q] = best[q - 1];
                    best[j] = i;
                    break;
                }
        }
        for (int j = 0; j < 3 && best[j] >= 0; j++)
            lp_buf_printf(&plain, " L%dH%d %.3f", best[j] / H, best[j] % H, (double)v[best[j]]);
        lp_buf_putc(&plain, '\n');
    }
    int prc = lp_bundle_set(bundle, "text/plain", lp_buf_str(&plain));
    lp_buf_free(&plain);
    if (prc < 0) {
        json_decref(bundle);
        return lp_lua_backend_error(L, "head_scores");
    }
    lua_newtable(L); /* the figure */
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
    push_matrix(L, prev, NL, H);
    lua_setfield(L, -2, "previous_token");
    push_matrix(L, ind, NL, H);
    lua_setfield(L, -2, "induction");
    push_matrix(L, pm, NL, H);
    lua_setfield(L, -2, "prefix_matching");
    lua_createtable(L, B, 0);
    for (int b = 0; b < B; b++) {
        lua_createtable(L, T, 0);
        for (int t = 0; t < T; t++) {
            lua_pushinteger(L, toks[(size_t)b * T + t]);
            lua_rawseti(L, -2, t + 1);
        }
        lua_rawseti(L, -2, b + 1);
    }
    lua_setfield(L, -2, "tokens");
    luaL_setmetatable(L, "loupe.RunFigure");
    return 1;
}
