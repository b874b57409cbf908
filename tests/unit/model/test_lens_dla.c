/* backend/model/lens.c and dla.c: the logit lens (its last layer is the model's own softmax; a
 * middle layer's is the prediction of a run whose later layers write nothing) and direct
 * logit attribution (each head's part is z_h W_O^h read through the frozen final norm,
 * computed here from the head's weight matrix; the parts and the constant add up to the
 * logit), on random GPT-2 and Llama models. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/analysis.h"
#include "random_model.h"

enum { T = 7, V = 37 };
static const int32_t TOKS[2 * T] = {3, 1, 4, 1, 5, 9, 2, 8, 30, 0, 12, 12, 7, 36};

/* The softmax of logits[row, pos] of a run, in double. */
static void softmax_at(const lp_run *r, int row, int pos, double *p)
{
    const float *z = r->logits->data + ((size_t)row * T + pos) * V;
    double mx = -INFINITY, sum = 0;
    for (int v = 0; v < V; v++)
        mx = fmax(mx, z[v]);
    for (int v = 0; v < V; v++)
        sum += p[v] = exp(z[v] - mx);
    for (int v = 0; v < V; v++)
        p[v] /= sum;
}

/* One layer of a lens against a distribution p: the top k are the k most likely, in order,
 * with their probabilities; p(next) is p[next]. */
static void check_layer(const lp_lens *ls, int l, const double *p, int32_t next, const char *what)
{
    int k = ls->k;
    const int32_t *ids = ls->top + (size_t)l * k;
    const double *pr = ls->top_prob + (size_t)l * k;
    char seen[V] = {0};
    for (int j = 0; j < k; j++) {
        cr_assert(ids[j] >= 0 && ids[j] < V && !seen[ids[j]], "%s: id %d at %d", what, ids[j], j);
        seen[ids[j]] = 1;
        cr_assert(fabs(pr[j] - p[ids[j]]) < 2e-5, "%s layer %d: p(%d) %g vs %g", what, l, ids[j], pr[j], p[ids[j]]);
        if (j)
            cr_assert(pr[j] <= pr[j - 1], "%s: most likely first", what);
    }
    for (int v = 0; v < V; v++) /* nothing left out is more likely than the last one taken */
        if (!seen[v])
            cr_assert(p[v] <= pr[k - 1] + 2e-5, "%s: token %d (%g) beats the top %d", what, v, p[v], k);
    if (next >= 0)
        cr_assert(fabs(ls->next_prob[l] - p[next]) < 2e-5, "%s: p(next) %g vs %g", what, ls->next_prob[l], p[next]);
    else
        cr_assert_null(ls->next_prob);
}

Test(lens, last_layer_is_the_models_softmax)
{
    for (int llama = 0; llama < 2; llama++) {
        lp_model *m = rm_model(llama, 3, 16, 4, 2, V, 41 + llama);
        lp_run r = {0};
        lp_run_opts o = {.cache_all = 1};
        cr_assert_eq(lp_model_run(m, TOKS, 2, T, &o, &r), 0, "%s", lp_last_error());
        double p[V];
        int ks[] = {V, 5, 1};
        for (size_t i = 0; i < sizeof ks / sizeof *ks; i++)
            for (int pos = 0; pos < T; pos += 3) {
                int32_t next = pos + 1 < T ? TOKS[T + pos + 1] : -1;
                lp_lens ls;
                cr_assert_eq(lp_logit_lens(m, &r, 1, pos, ks[i], next, &ls), 0, "%s", lp_last_error());
                cr_assert_eq(ls.n_layers, 3);
                cr_assert_eq(ls.k, ks[i]);
                softmax_at(&r, 1, pos, p);
                check_layer(&ls, 2, p, next, llama ? "llama" : "gpt2");
                if (ks[i] == V) { /* every token: the probabilities of each layer sum to 1 */
                    for (int l = 0; l < 3; l++) {
                        double s = 0;
                        for (int j = 0; j < V; j++)
                            s += ls.top_prob[l * V + j];
                        cr_assert(fabs(s - 1) < 1e-9, "layer %d sums to %g", l, s);
                    }
                }
                lp_lens_free(&ls);
                cr_assert_null(ls.top);
            }
        lp_run_clear(&r);
        lp_model_free(m);
    }
}

/* The lens at layer l reads resid_post of layer l as if the model ended there: a run whose
 * later layers add nothing to the residual stream (their attn_out and mlp_out zeroed) ends
 * with the same residual stream, and its logits are that prediction. */
Test(lens, middle_layer_is_a_run_without_the_later_layers)
{
    for (int llama = 0; llama < 2; llama++) {
        lp_model *m = rm_model(llama, 3, 16, 4, 2, V, 51 + llama);
        lp_run full = {0};
        lp_run_opts o = {.cache_all = 1};
        cr_assert_eq(lp_model_run(m, TOKS, 2, T, &o, &full), 0, "%s", lp_last_error());
        for (int l = 0; l < 2; l++) {
            char names[4][64];
            lp_hook hooks[4];
            int nh = 0;
            for (int later = l + 1; later < 3; later++) {
                snprintf(names[nh], 64, "blocks.%d.hook_attn_out", later);
                hooks[nh] = (lp_hook){.name = names[nh], .kind = LP_HOOK_ZERO, .head = -1, .pos = -1};
                nh++;
                snprintf(names[nh], 64, "blocks.%d.hook_mlp_out", later);
                hooks[nh] = (lp_hook){.name = names[nh], .kind = LP_HOOK_ZERO, .head = -1, .pos = -1};
                nh++;
            }
            lp_run cut = {0};
            lp_run_opts co = {hooks, (size_t)nh, 0, NULL, NULL};
            cr_assert_eq(lp_model_run(m, TOKS, 2, T, &co, &cut), 0, "%s", lp_last_error());
            double p[V];
            for (int pos = 0; pos < T; pos += 2) {
                lp_lens ls;
                cr_assert_eq(lp_logit_lens(m, &full, 0, pos, 10, TOKS[pos], &ls), 0, "%s", lp_last_error());
                softmax_at(&cut, 0, pos, p);
                check_layer(&ls, l, p, TOKS[pos], "a shorter model");
                /* and not the final layer's */
                softmax_at(&full, 0, pos, p);
                double d = 0;
                for (int j = 0; j < 10; j++)
                    d = fmax(d, fabs(ls.top_prob[l * 10 + j] - p[ls.top[l * 10 + j]]));
                cr_assert(d > 1e-3, "layer %d differs from the model's output (%g)", l, d);
                lp_lens_free(&ls);
            }
            lp_run_clear(&cut);
        }
        lp_run_clear(&full);
        lp_model_free(m);
    }
}

Test(lens, errors)
{
    lp_model *m = rm_model(0, 2, 16, 4, 4, V, 3);
    lp_run r = {0};
    lp_run_opts o = {.cache_all = 1};
    cr_assert_eq(lp_model_run(m, TOKS, 1, T, &o, &r), 0);
    lp_lens ls = {.n_layers = -7};
    cr_assert_eq(lp_logit_lens(m, &r, 0, T, 5, -1, &ls), -1);
    cr_assert(strstr(lp_last_error(), "outside the run"), "%s", lp_last_error());
    cr_assert_eq(lp_logit_lens(m, &r, 1, 0, 5, -1, &ls), -1);
    cr_assert_eq(lp_logit_lens(m, &r, 0, 0, 0, -1, &ls), -1);
    cr_assert_eq(lp_logit_lens(m, &r, 0, 0, 51, -1, &ls), -1);
    cr_assert_eq(lp_logit_lens(m, &r, 0, 0, 5, V, &ls), -1);
    cr_assert_eq(ls.n_layers, -7, "left alone");
    lp_run_clear(&r);
    lp_run_opts none = {0};
    cr_assert_eq(lp_model_run(m, TOKS, 1, T, &none, &r), 0);
    cr_assert_eq(lp_logit_lens(m, &r, 0, 0, 5, -1, &ls), -1);
    cr_assert(strstr(lp_last_error(), "did not cache blocks.0.hook_resid_post"), "%s", lp_last_error());
    lp_run_clear(&r);
    lp_lens_free(NULL);
    lp_model_free(m);
}

/* ---- direct logit attribution ---- */

static float at3(const lp_run *r, const char *name, int row, int pos, int i)
{
    const lp_tensor *t = lp_run_get(r, name);
    cr_assert_not_null(t, "%s", name);
    cr_assert(lp_tensor_is_contiguous(t));
    int64_t inner = lp_tensor_numel(t) / (t->shape[0] * t->shape[1]);
    return t->data[((size_t)row * t->shape[1] + pos) * inner + i];
}

/* v . (w_lnf * u) / scale with v centred first for LayerNorm: how the frozen final norm and the
 * unembedding read a vector v written into the residual stream. */
static double through_norm(const lp_model *m, const double *v, const double *u, double scale)
{
    int D = m->cfg.d_model;
    double mean = 0, s = 0;
    for (int k = 0; k < D; k++)
        mean += v[k] / D;
    for (int k = 0; k < D; k++)
        s += (v[k] - (m->lnf_b ? mean : 0)) * m->lnf_w->data[k] * u[k];
    return s / scale;
}

Test(dla, each_head_is_z_times_w_o_through_the_frozen_norm)
{
    for (int llama = 0; llama < 2; llama++) {
        enum { L = 3, D = 32, H = 4, S = D / H };
        lp_model *m = rm_model(llama, L, D, H, 2, V, 61 + llama);
        lp_run r = {0};
        lp_run_opts o = {.cache_all = 1};
        cr_assert_eq(lp_model_run(m, TOKS, 2, T, &o, &r), 0, "%s", lp_last_error());
        cr_assert(m->unembed.trans, "the unembedding is (vocab, d_model)");
        const float *wu = m->unembed.w->data;
        int32_t tok = 17, base = 8;
        double u[D], v[D], wo[S * D];
        float wof[S * D];
        for (int pos = 1; pos < T; pos += 2) {
            lp_dla d;
            cr_assert_eq(lp_dla_compute(m, &r, 1, pos, tok, base, &d), 0, "%s", lp_last_error());
            for (int k = 0; k < D; k++)
                u[k] = (double)wu[(size_t)tok * D + k] - wu[(size_t)base * D + k];
            double scale = at3(&r, "ln_final.hook_scale", 1, pos, 0);
            cr_assert(fabs(d.scale - scale) < 1e-12);
            double sum = d.bias, biggest = 0;
            for (int l = 0; l < L; l++) {
                char name[64];
                snprintf(name, sizeof name, "blocks.%d.attn.hook_z", l);
                for (int h = 0; h < H; h++) {
                    cr_assert_eq(lp_head_weights(m, l, h, 0, NULL, NULL, NULL, wof), 0);
                    for (int i = 0; i < S * D; i++)
                        wo[i] = wof[i];
                    for (int k = 0; k < D; k++) { /* v = z_h W_O^h */
                        v[k] = 0;
                        for (int j = 0; j < S; j++)
                            v[k] += at3(&r, name, 1, pos, h * S + j) * wo[j * D + k];
                    }
                    double want = through_norm(m, v, u, scale), got = d.heads[l * H + h];
                    cr_assert(fabs(got - want) < 1e-4 * (1 + fabs(want)), "llama %d L%dH%d pos %d: %g vs %g", llama, l,
                              h, pos, got, want);
                    biggest = fmax(biggest, fabs(want));
                }
                snprintf(name, sizeof name, "blocks.%d.hook_mlp_out", l);
                for (int k = 0; k < D; k++)
                    v[k] = at3(&r, name, 1, pos, k);
                cr_assert(fabs(d.mlp[l] - through_norm(m, v, u, scale)) < 1e-4 * (1 + fabs(d.mlp[l])), "mlp %d", l);
                sum += d.attn[l] + d.mlp[l];
            }
            for (int k = 0; k < D; k++)
                v[k] = at3(&r, "hook_embed", 1, pos, k);
            cr_assert(fabs(d.embed - through_norm(m, v, u, scale)) < 1e-4 * (1 + fabs(d.embed)), "embed");
            if (!llama) {
                for (int k = 0; k < D; k++)
                    v[k] = at3(&r, "hook_pos_embed", 1, pos, k);
                cr_assert(fabs(d.pos_embed - through_norm(m, v, u, scale)) < 1e-4 * (1 + fabs(d.pos_embed)));
            }
            sum += d.embed + d.pos_embed;
            /* the constant: the final norm's bias and the unembedding's bias read along u */
            double bias = 0;
            for (int k = 0; m->lnf_b && k < D; k++)
                bias += m->lnf_b->data[k] * u[k];
            if (m->unembed.b)
                bias += m->unembed.b->data[tok] - m->unembed.b->data[base];
            cr_assert(fabs(d.bias - bias) < 1e-5 * (1 + fabs(bias)), "bias %g vs %g", d.bias, bias);
            /* the parts and the constant add up to the logit difference the run gave */
            const float *z = r.logits->data + ((size_t)T + pos) * V;
            double logit = (double)z[tok] - z[base];
            cr_assert(fabs(sum - logit) < 1e-3 * (1 + fabs(logit)), "sum %g vs logit %g", sum, logit);
            cr_assert(fabs(d.total - logit) < 1e-3 * (1 + fabs(logit)) && fabs(d.actual - logit) < 1e-6);
            cr_assert(biggest > 0.05, "heads that matter: %g", biggest);
            lp_dla_free(&d);
        }
        lp_run_clear(&r);
        lp_model_free(m);
    }
}
