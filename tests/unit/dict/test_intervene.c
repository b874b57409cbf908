/* Interventions on transcoder features (backend/dict/intervene.h) on tiny random GPT-2 and
 * Llama models with random per-layer transcoders (odd layers with a skip):
 * - with every layer constrained and attention frozen, doubling a feature changes every
 *   logit direction and every feature pre-activation by the attribution graph's edge
 *   (lp_attrib_edges), within 1e-4 relative;
 * - setting a feature to its own value changes nothing; no edits changes nothing;
 * - adding s to a feature (free layers) gives the logits of a plain hook adding s * W_dec,i
 *   at the transcoder's output;
 * - the feature hook of m:run / m:generate edits the positions it should;
 * - bad input (layer, feature, position, range, a set that does not fit) is an error. */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/replace.h"
#include "core/error.h"
#include "dict/intervene.h"
#include "../model/random_model.h"

enum { L_ = 3, D_ = 16, V_ = 29, F_ = 40, T_ = 7 };

static lp_transcoder_set *transcoders(int L, int D, uint64_t seed)
{
    lp_transcoder_set *t = calloc(1, sizeof *t);
    t->n_layers = L;
    t->layers = calloc((size_t)L, sizeof *t->layers);
    strcpy(t->feature_input_hook, "mlp.hook_in");
    strcpy(t->feature_output_hook, "mlp.hook_out");
    lp_rng g;
    lp_rng_seed(&g, seed);
    for (int l = 0; l < L; l++) {
        lp_sae_config c = {.arch = LP_SAE_JUMPRELU, .d_in = D, .d_sae = F_, .d_out = D, .transcoder = 1,
                           .skip = l % 2 == 1, .layer = l};
        snprintf(c.hook_in, sizeof c.hook_in, "blocks.%d.mlp.hook_in", l);
        snprintf(c.hook_out, sizeof c.hook_out, "blocks.%d.mlp.hook_out", l);
        lp_sae *s = lp_sae_new(&c);
        cr_assert_not_null(s, "%s", lp_last_error());
        rm_jitter(s->W_enc, &g, 0.4f, 0);
        rm_jitter(s->b_enc, &g, 0.3f, 0);
        rm_jitter(s->W_dec, &g, 0.3f, 0);
        rm_jitter(s->b_dec, &g, 0.1f, 0);
        rm_jitter(s->threshold, &g, 0.0f, 0.2f);
        rm_jitter(s->W_skip, &g, 0.1f, 0);
        t->layers[l] = s;
    }
    return t;
}

static void tokens(int32_t *toks, uint64_t seed)
{
    for (int t = 0; t < T_; t++)
        toks[t] = (int32_t)((t * 11 + 3 + seed) % V_);
}

static double logit_dir_change(const lp_intervention *r, int32_t tok)
{
    const float *a = r->logits->data + (size_t)(T_ - 1) * V_, *b = r->clean_logits->data + (size_t)(T_ - 1) * V_;
    double mean = 0;
    for (int v = 0; v < V_; v++)
        mean += (double)a[v] - b[v];
    return (double)a[tok] - b[tok] - mean / V_;
}

static void check_edges(int llama, uint64_t seed)
{
    lp_model *m = rm_model(llama, L_, D_, 4, 2, V_, seed);
    lp_transcoder_set *tcs = transcoders(L_, D_, seed + 7);
    int32_t toks[T_];
    tokens(toks, seed);
    lp_attrib_opts ao = lp_attrib_defaults();
    ao.max_n_logits = 4;
    lp_replacement *rp = lp_replacement_build(m, tcs, toks, T_, &ao);
    cr_assert_not_null(rp, "%s", lp_last_error());
    cr_assert_gt(rp->n_features, 20, "too few active features (%d)", rp->n_features);
    float *A = NULL;
    cr_assert_eq(lp_attrib_edges(rp, 8, &A), 0, "%s", lp_last_error());
    int N = lp_replacement_n_nodes(rp);
    double amax = 0;
    for (int i = 0; i < N * N; i++)
        amax = fmax(amax, fabs(A[i]));
    /* the clean pre-activations: a run without edits */
    lp_intervention c0 = {0};
    lp_intervene_opts none = {.freeze_attention = 1, .constrained = 1, .c_first = 0, .c_last = L_ - 1};
    cr_assert_eq(lp_intervene(m, tcs, toks, T_, &none, &c0), 0, "%s", lp_last_error());
    for (int i = 0; i < T_ * V_; i++)
        cr_assert_eq(c0.logits->data[i], c0.clean_logits->data[i], "no edits changed logit %d", i);
    int checked = 0, nonzero = 0;
    for (int s = 0; s < rp->n_features; s += 1 + rp->n_features / 25) {
        const lp_attrib_feature *f = &rp->features[s];
        lp_feature_edit e = {.layer = f->layer, .pos = f->pos, .feature = f->feature, .kind = LP_FEAT_SET,
                             .value = 2 * f->act};
        lp_intervene_opts o = none;
        o.edits = &e, o.n_edits = 1;
        lp_intervention r = {0};
        cr_assert_eq(lp_intervene(m, tcs, toks, T_, &o, &r), 0, "%s", lp_last_error());
        cr_assert_float_eq(r.acts[f->layer]->data[f->pos * F_ + f->feature], 2 * f->act, 1e-6);
        for (int k = 0; k < rp->n_logits; k++) {
            double a = A[(size_t)lp_replacement_logit_node(rp, k) * N + s], ref = logit_dir_change(&r, rp->logit_tokens[k]);
            cr_assert_leq(fabs(a - ref), 1e-4 * fabs(ref) + 2e-6 * amax,
                          "logit %d, feature node %d: edge %.8g, intervention %.8g", k, s, a, ref);
            checked++, nonzero += fabs(ref) > 1e-3 * amax;
        }
        for (int t = 0; t < rp->n_features; t++) {
            const lp_attrib_feature *g = &rp->features[t];
            size_t at = (size_t)g->pos * F_ + g->feature;
            double a = A[(size_t)t * N + s], ref = (double)r.pre[g->layer]->data[at] - c0.pre[g->layer]->data[at];
            cr_assert_leq(fabs(a - ref), 1e-4 * fabs(ref) + 2e-6 * amax,
                          "feature node %d <- %d: edge %.8g, intervention %.8g", t, s, a, ref);
            checked++, nonzero += fabs(ref) > 1e-3 * amax;
        }
        lp_intervention_clear(&r);
    }
    cr_assert_gt(nonzero, checked / 20, "only %d of %d changes are non-zero", nonzero, checked);
    lp_intervention_clear(&c0);
    free(A);
    lp_replacement_free(rp);
    lp_transcoder_set_free(tcs);
    lp_model_free(m);
}

Test(intervene, gpt2_constrained_doubling_equals_the_edges) { check_edges(0, 5); }
Test(intervene, llama_constrained_doubling_equals_the_edges) { check_edges(1, 9); }

/* the feature with the largest clean activation at (layer, pos) */
static int top_feature(const lp_intervention *r, int l, int p)
{
    int best = 0;
    for (int i = 0; i < F_; i++)
        if (r->clean_acts[l]->data[p * F_ + i] > r->clean_acts[l]->data[p * F_ + best])
            best = i;
    return best;
}

Test(intervene, setting_a_feature_to_its_own_value_changes_nothing)
{
    lp_model *m = rm_model(0, L_, D_, 4, 4, V_, 11);
    lp_transcoder_set *tcs = transcoders(L_, D_, 12);
    int32_t toks[T_];
    tokens(toks, 2);
    lp_intervention c0 = {0};
    cr_assert_eq(lp_intervene(m, tcs, toks, T_, NULL, &c0), 0, "%s", lp_last_error());
    int l = 1, p = 4, i = top_feature(&c0, l, p);
    float a = c0.clean_acts[l]->data[p * F_ + i];
    cr_assert_gt(a, 0.0f);
    for (int mode = 0; mode < 3; mode++) {
        lp_feature_edit e = {.layer = l, .pos = p, .feature = i, .kind = LP_FEAT_SET, .value = a};
        lp_intervene_opts o = {.edits = &e, .n_edits = 1, .freeze_attention = mode > 0, .constrained = mode == 2,
                               .c_first = 0, .c_last = L_ - 1};
        lp_intervention r = {0};
        cr_assert_eq(lp_intervene(m, tcs, toks, T_, &o, &r), 0, "%s", lp_last_error());
        for (int k = 0; k < T_ * V_; k++)
            cr_assert_leq(fabsf(r.logits->data[k] - r.clean_logits->data[k]), 1e-6f, "mode %d", mode);
        /* and doubling it does change them: the check can fail */
        e.value = 2 * a + 1;
        lp_intervention_clear(&r);
        cr_assert_eq(lp_intervene(m, tcs, toks, T_, &o, &r), 0, "%s", lp_last_error());
        double d = 0;
        for (int k = 0; k < T_ * V_; k++)
            d = fmax(d, fabsf(r.logits->data[k] - r.clean_logits->data[k]));
        cr_assert_gt(d, 1e-4, "mode %d: doubling changed nothing", mode);
        lp_intervention_clear(&r);
    }
    lp_intervention_clear(&c0);
    lp_transcoder_set_free(tcs);
    lp_model_free(m);
}

Test(intervene, adding_to_a_feature_is_adding_its_decoder_row)
{
    lp_model *m = rm_model(0, L_, D_, 4, 4, V_, 21);
    lp_transcoder_set *tcs = transcoders(L_, D_, 22);
    int32_t toks[T_];
    tokens(toks, 4);
    for (int pos = -1; pos < T_; pos += 4) {
        int l = 0, i = 7;
        float s = 3.0f;
        lp_feature_edit e = {.layer = l, .pos = pos, .feature = i, .kind = LP_FEAT_ADD, .value = s};
        lp_intervene_opts o = {.edits = &e, .n_edits = 1};
        lp_intervention r = {0};
        cr_assert_eq(lp_intervene(m, tcs, toks, T_, &o, &r), 0, "%s", lp_last_error());
        int64_t sh[1] = {D_};
        lp_tensor *vec = lp_tensor_from_data(1, sh, tcs->layers[l]->W_dec->data + (size_t)i * D_, LP_DEVICE_CPU);
        lp_hook h = {.name = "blocks.0.mlp.hook_out", .kind = LP_HOOK_ADD, .value = vec, .scale = s, .head = -1,
                     .pos = pos};
        lp_run_opts ro = {.hooks = &h, .nhooks = 1};
        lp_run ref = {0};
        cr_assert_eq(lp_model_run(m, toks, 1, T_, &ro, &ref), 0, "%s", lp_last_error());
        double d = 0, moved = 0;
        for (int k = 0; k < T_ * V_; k++) {
            d = fmax(d, fabsf(r.logits->data[k] - ref.logits->data[k]));
            moved = fmax(moved, fabsf(r.logits->data[k] - r.clean_logits->data[k]));
        }
        cr_assert_leq(d, 1e-5 * moved + 1e-6, "pos %d: %g from the plain hook (moved %g)", pos, d, moved);
        cr_assert_gt(moved, 1e-3);
        lp_run_clear(&ref);
        lp_tensor_free(vec);
        lp_intervention_clear(&r);
    }
    lp_transcoder_set_free(tcs);
    lp_model_free(m);
}

Test(intervene, the_feature_hook_edits_its_positions)
{
    int64_t sh[3] = {1, 5, 3};
    lp_tensor *t = lp_tensor_empty_for("test", 3, sh, LP_DEVICE_CPU);
    for (int i = 0; i < 15; i++)
        t->data[i] = 1.0f;
    /* position 1 of the prompt, and positions >= 3 (generated); the run starts at 0 */
    lp_feature_hook h = {.feature = 2, .pos = 1, .kind = LP_FEAT_ADD, .value = 5, .offset = 0, .from = 3};
    lp_tensor *out = NULL;
    cr_assert_eq(lp_feature_hook_fn(&h, "x", t, &out), 0);
    float want[5] = {1, 6, 1, 6, 6};
    for (int p = 0; p < 5; p++) {
        cr_assert_eq(out->data[p * 3 + 2], want[p], "pos %d", p);
        cr_assert_eq(out->data[p * 3 + 0], 1.0f);
    }
    lp_tensor_free(out);
    /* a later step of generation: rows at 7.. are all generated */
    h.offset = 7, h.kind = LP_FEAT_ABLATE;
    cr_assert_eq(lp_feature_hook_fn(&h, "x", t, &out), 0);
    for (int p = 0; p < 5; p++)
        cr_assert_eq(out->data[p * 3 + 2], 0.0f);
    lp_tensor_free(out);
    h.from = INT_MAX, h.kind = LP_FEAT_SET;
    cr_assert_eq(lp_feature_hook_fn(&h, "x", t, &out), 0);
    for (int p = 0; p < 5; p++)
        cr_assert_eq(out->data[p * 3 + 2], 1.0f, "pos %d edited", p);
    lp_tensor_free(out);
    h.feature = 3;
    cr_assert_eq(lp_feature_hook_fn(&h, "x", t, &out), -1);
    cr_assert(strstr(lp_last_error(), "out of range"), "%s", lp_last_error());
    lp_tensor_free(t);
}

Test(intervene, bad_input_is_an_error)
{
    lp_model *m = rm_model(0, L_, D_, 4, 4, V_, 3);
    lp_transcoder_set *tcs = transcoders(L_, D_, 4);
    int32_t toks[T_];
    tokens(toks, 1);
    struct {
        lp_feature_edit e;
        int constrained, a, b;
        const char *msg;
    } cases[] = {
        {{.layer = 3, .pos = 0, .feature = 0}, 0, 0, 0, "layer 3"},
        {{.layer = -1, .pos = 0, .feature = 0}, 0, 0, 0, "layer -1"},
        {{.layer = 0, .pos = 0, .feature = F_}, 0, 0, 0, "feature 40"},
        {{.layer = 0, .pos = T_, .feature = 0}, 0, 0, 0, "beyond the prompt"},
        {{.layer = 0, .pos = 0, .feature = 0}, 1, 1, 3, "constrained layers"},
        {{.layer = 0, .pos = 0, .feature = 0}, 1, 2, 1, "constrained layers"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        lp_intervene_opts o = {.edits = &cases[k].e, .n_edits = 1, .constrained = cases[k].constrained,
                               .c_first = cases[k].a, .c_last = cases[k].b};
        lp_intervention r = {0};
        cr_assert_eq(lp_intervene(m, tcs, toks, T_, &o, &r), -1, "case %zu", k);
        cr_assert(strstr(lp_last_error(), cases[k].msg), "case %zu: %s", k, lp_last_error());
        cr_assert_null(r.logits);
    }
    lp_intervention r = {0};
    cr_assert_eq(lp_intervene(m, tcs, toks, 0, NULL, &r), -1);
    tcs->n_layers = L_ - 1;
    cr_assert_eq(lp_intervene(m, tcs, toks, T_, NULL, &r), -1);
    cr_assert(strstr(lp_last_error(), "layers"), "%s", lp_last_error());
    tcs->n_layers = L_;
    strcpy(tcs->layers[1]->cfg.hook_out, "blocks.1.mlp.hook_nowhere");
    cr_assert_eq(lp_intervene(m, tcs, toks, T_, NULL, &r), -1);
    cr_assert(strstr(lp_last_error(), "hook_nowhere"), "%s", lp_last_error());
    lp_transcoder_set_free(tcs);
    lp_model_free(m);
}

/* ---- cross-layer transcoders ---- */

/* a CLT whose layer l encodes as tcs's layer l and decodes into l as it does; into later
 * layers with random weights when cross, zero otherwise (then it is the same dictionary) */
static lp_clt *clt_like(const lp_transcoder_set *tcs, int cross, uint64_t seed)
{
    lp_clt *c = lp_clt_new(L_, D_, F_, 1);
    cr_assert_not_null(c, "%s", lp_last_error());
    lp_rng g;
    lp_rng_seed(&g, seed);
    for (int l = 0; l < L_; l++) {
        const lp_sae *s = tcs->layers[l];
        memcpy(c->W_enc[l]->data, s->W_enc->data, sizeof(float) * D_ * F_);
        memcpy(c->b_enc[l]->data, s->b_enc->data, sizeof(float) * F_);
        memcpy(c->threshold[l]->data, s->threshold->data, sizeof(float) * F_);
        memcpy(c->b_dec[l]->data, s->b_dec->data, sizeof(float) * D_);
        if (cross)
            rm_jitter(c->W_dec[l], &g, 0.3f, 0);
        for (int i = 0; i < F_; i++)
            memcpy(c->W_dec[l]->data + (size_t)i * (L_ - l) * D_, s->W_dec->data + (size_t)i * D_, sizeof(float) * D_);
    }
    return c;
}

Test(intervene, a_clt_without_cross_terms_is_its_transcoder_set)
{
    lp_model *m = rm_model(0, L_, D_, 4, 4, V_, 31);
    lp_transcoder_set *tcs = transcoders(L_, D_, 32);
    for (int l = 0; l < L_; l++) { /* no skip: a CLT has none */
        lp_tensor_free(tcs->layers[l]->W_skip);
        tcs->layers[l]->W_skip = NULL;
        tcs->layers[l]->cfg.skip = 0;
    }
    lp_clt *clt = clt_like(tcs, 0, 1);
    int32_t toks[T_];
    tokens(toks, 6);
    lp_feature_edit e[2] = {{.layer = 0, .pos = 3, .feature = 5, .kind = LP_FEAT_ADD, .value = 2.0f},
                            {.layer = 2, .pos = -1, .feature = 9, .kind = LP_FEAT_SET, .value = 1.5f}};
    for (int mode = 0; mode < 3; mode++) {
        lp_intervene_opts o = {.edits = e, .n_edits = 2, .freeze_attention = mode > 0, .constrained = mode == 2,
                               .c_first = 0, .c_last = L_ - 1};
        lp_intervention a = {0}, b = {0};
        cr_assert_eq(lp_intervene(m, tcs, toks, T_, &o, &a), 0, "%s", lp_last_error());
        cr_assert_eq(lp_intervene_clt(m, clt, toks, T_, &o, &b), 0, "%s", lp_last_error());
        double d = 0, moved = 0;
        for (int k = 0; k < T_ * V_; k++) {
            d = fmax(d, fabsf(a.logits->data[k] - b.logits->data[k]));
            moved = fmax(moved, fabsf(a.logits->data[k] - a.clean_logits->data[k]));
        }
        cr_assert_leq(d, 1e-5, "mode %d: the CLT differs from its set by %g", mode, d);
        cr_assert_gt(moved, 1e-4, "mode %d", mode);
        for (int l = 0; l < L_; l++)
            for (int k = 0; k < T_ * F_; k++)
                cr_assert_float_eq(a.acts[l]->data[k], b.acts[l]->data[k], 1e-5, "mode %d layer %d", mode, l);
        lp_intervention_clear(&a);
        lp_intervention_clear(&b);
    }
    lp_clt_free(clt);
    lp_transcoder_set_free(tcs);
    lp_model_free(m);
}

Test(intervene, a_clt_feature_writes_every_later_layer)
{
    lp_model *m = rm_model(0, L_, D_, 4, 4, V_, 41);
    lp_transcoder_set *tcs = transcoders(L_, D_, 42);
    lp_clt *clt = clt_like(tcs, 1, 43);
    int32_t toks[T_];
    tokens(toks, 8);
    int src = 0, i = 11, pos = 4;
    float s = 2.5f;
    lp_feature_edit e = {.layer = src, .pos = pos, .feature = i, .kind = LP_FEAT_ADD, .value = s};
    lp_intervene_opts o = {.edits = &e, .n_edits = 1};
    lp_intervention r = {0};
    cr_assert_eq(lp_intervene_clt(m, clt, toks, T_, &o, &r), 0, "%s", lp_last_error());
    /* the oracle: s * W_dec[src][l - src][i] added at every layer l >= src, at pos */
    lp_hook h[L_];
    lp_tensor *vec[L_];
    char names[L_][64];
    int64_t sh[1] = {D_};
    for (int l = src; l < L_; l++) {
        vec[l] = lp_tensor_from_data(1, sh, clt->W_dec[src]->data + ((size_t)i * (L_ - src) + (l - src)) * D_,
                                     LP_DEVICE_CPU);
        snprintf(names[l], sizeof names[l], "blocks.%d.mlp.hook_out", l);
        h[l - src] = (lp_hook){.name = names[l], .kind = LP_HOOK_ADD, .value = vec[l], .scale = s, .head = -1,
                               .pos = pos};
    }
    lp_run_opts ro = {.hooks = h, .nhooks = (size_t)(L_ - src)};
    lp_run ref = {0};
    cr_assert_eq(lp_model_run(m, toks, 1, T_, &ro, &ref), 0, "%s", lp_last_error());
    double d = 0, moved = 0;
    for (int k = 0; k < T_ * V_; k++) {
        d = fmax(d, fabsf(r.logits->data[k] - ref.logits->data[k]));
        moved = fmax(moved, fabsf(r.logits->data[k] - r.clean_logits->data[k]));
    }
    cr_assert_leq(d, 1e-5 * moved + 1e-6, "%g from the plain hooks (moved %g)", d, moved);
    cr_assert_gt(moved, 1e-3);
    /* and only the later layers: without the cross terms the logits move less */
    lp_run_clear(&ref);
    for (int l = src; l < L_; l++)
        lp_tensor_free(vec[l]);
    lp_intervention_clear(&r);
    /* its own value changes nothing, constrained or not */
    lp_intervention c0 = {0};
    cr_assert_eq(lp_intervene_clt(m, clt, toks, T_, NULL, &c0), 0, "%s", lp_last_error());
    e.kind = LP_FEAT_SET, e.value = c0.clean_acts[src]->data[pos * F_ + i];
    for (int mode = 0; mode < 2; mode++) {
        o.constrained = mode, o.freeze_attention = mode, o.c_first = 0, o.c_last = L_ - 1;
        cr_assert_eq(lp_intervene_clt(m, clt, toks, T_, &o, &r), 0, "%s", lp_last_error());
        for (int k = 0; k < T_ * V_; k++)
            cr_assert_leq(fabsf(r.logits->data[k] - r.clean_logits->data[k]), 1e-6f);
        lp_intervention_clear(&r);
    }
    lp_intervention_clear(&c0);
    /* a CLT that does not fit */
    clt->n_layers = L_ - 1;
    cr_assert_eq(lp_intervene_clt(m, clt, toks, T_, NULL, &r), -1);
    cr_assert(strstr(lp_last_error(), "layers"), "%s", lp_last_error());
    clt->n_layers = L_;
    lp_clt_free(clt);
    lp_transcoder_set_free(tcs);
    lp_model_free(m);
}
