/* Attribution through a cross-layer transcoder (backend/attrib/, lp_replacement_build_clt) on a
 * tiny random GPT-2 and a Llama with a random JumpReLU CLT:
 * - every edge into a target equals the change of the target's pre-activation (or logit
 *   direction) when the source is added once more (a feature's a_s W_dec into every layer it
 *   writes, an error vector, a token's embedding) with every layer constrained: norm scales
 *   and attention patterns patched to their clean values and every MLP output frozen at its
 *   clean value, through the forward's hooks;
 * - completeness: the nodes account for every MLP output (error + b_dec + the decoders of the
 *   active features = the true MLP output) and each target row sums to the change when every
 *   source is added at once;
 * - the feature nodes are the CLT's non-zero activations; influence-ordered rows
 *   (max_feature_nodes) equal the full matrix on what they keep; the graph and its pruning
 *   work unchanged, with no active feature too; lp_intervene_clt with every layer constrained
 *   reproduces the edges; a CLT that does not fit the model is an error naming what is wrong. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/graph.h"
#include "attrib/replace.h"
#include "core/error.h"
#include "device.h"
#include "dict/clt_ops.h"
#include "dict/intervene.h"
#include "../model/random_model.h"

enum { L_ = 3, D_ = 16, V_ = 29, F_ = 24, T_ = 7 };

static lp_clt *random_clt(int L, int D, uint64_t seed)
{
    lp_clt *c = lp_clt_new(L, D, F_, 1);
    cr_assert_not_null(c, "%s", lp_last_error());
    strcpy(c->feature_input_hook, "mlp.hook_in");
    strcpy(c->feature_output_hook, "mlp.hook_out");
    lp_rng g;
    lp_rng_seed(&g, seed);
    for (int l = 0; l < L; l++) {
        rm_jitter(c->W_enc[l], &g, 0.4f, 0);
        rm_jitter(c->b_enc[l], &g, 0.3f, 0);
        rm_jitter(c->W_dec[l], &g, 0.3f, 0);
        rm_jitter(c->b_dec[l], &g, 0.1f, 0);
        rm_jitter(c->threshold[l], &g, 0.0f, 0.2f);
    }
    return c;
}

/* ---- the oracle: a constrained forward through hooks ---- */

typedef struct oracle {
    const lp_model *m;
    const lp_run *clean;
    const int32_t *tokens;
    int T;
    float *in[L_];    /* mlp.hook_in of the patched run, per layer */
    const float *add; /* L x T x D added to the frozen MLP outputs, or NULL */
} oracle;

static const float *clean_at(const oracle *o, const char *fmt, int l)
{
    char name[96];
    snprintf(name, sizeof name, fmt, l);
    lp_tensor *t = lp_run_get(o->clean, name);
    cr_assert_not_null(t, "%s not cached", name);
    return t->data;
}

static int layer_of(const char *name)
{
    return atoi(name + strlen("blocks."));
}

static int keep_in(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    oracle *o = ud;
    (void)out;
    memcpy(o->in[layer_of(name)], act->data, (size_t)lp_tensor_numel(act) * sizeof(float));
    return 0;
}

/* the MLP output frozen at its clean value (a CLT has no skip: nothing of it is linear), plus
 * the injected sources */
static int frozen_out(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    oracle *o = ud;
    int l = layer_of(name), D = o->m->cfg.d_model;
    lp_tensor *r = lp_tensor_from_data(act->ndim, act->shape, clean_at(o, "blocks.%d.mlp.hook_out", l), LP_DEVICE_CPU);
    cr_assert_not_null(r);
    if (o->add)
        for (int i = 0; i < o->T * D; i++)
            r->data[i] += o->add[(size_t)l * o->T * D + i];
    *out = r;
    return 0;
}

/* runs the constrained model; d_in[l] (T x D) the change of every mlp.hook_in, d_logits (V)
 * the change of the last position's logits */
static void constrained(oracle *o, const lp_hook *extra, float **d_in, double *d_logits)
{
    const lp_model *m = o->m;
    int L = m->cfg.n_layers, n = 0;
    lp_hook h[64];
    char names[64][96];
    static const char *const pats[] = {"blocks.%d.ln1.hook_scale", "blocks.%d.ln2.hook_scale",
                                       "blocks.%d.attn.hook_pattern"};
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < 3; k++) {
            snprintf(names[n], 96, pats[k], l);
            h[n] = (lp_hook){.name = names[n], .kind = LP_HOOK_PATCH, .value = lp_run_get(o->clean, names[n]),
                             .head = -1, .pos = -1};
            n++;
        }
        snprintf(names[n], 96, "blocks.%d.mlp.hook_in", l);
        h[n++] = (lp_hook){.name = names[n - 1], .kind = LP_HOOK_FN, .fn = keep_in, .ud = o, .head = -1, .pos = -1};
        snprintf(names[n], 96, "blocks.%d.mlp.hook_out", l);
        h[n++] = (lp_hook){.name = names[n - 1], .kind = LP_HOOK_FN, .fn = frozen_out, .ud = o, .head = -1, .pos = -1};
    }
    h[n++] = (lp_hook){.name = "ln_final.hook_scale", .kind = LP_HOOK_PATCH,
                       .value = lp_run_get(o->clean, "ln_final.hook_scale"), .head = -1, .pos = -1};
    if (extra)
        h[n++] = *extra;
    lp_run r = {0};
    lp_run_opts ro = {.hooks = h, .nhooks = (size_t)n};
    cr_assert_eq(lp_model_run(m, o->tokens, 1, o->T, &ro, &r), 0, "%s", lp_last_error());
    int D = m->cfg.d_model, V = m->cfg.d_vocab;
    for (int l = 0; l < L; l++) {
        const float *x = clean_at(o, "blocks.%d.mlp.hook_in", l);
        for (int i = 0; i < o->T * D; i++)
            d_in[l][i] = o->in[l][i] - x[i];
    }
    const float *lg = r.logits->data + (size_t)(o->T - 1) * V, *lc = o->clean->logits->data + (size_t)(o->T - 1) * V;
    for (int v = 0; v < V; v++)
        d_logits[v] = (double)lg[v] - lc[v];
    lp_run_clear(&r);
}

/* the change of every target row (features, then logits) for one constrained run */
static void target_changes(const lp_replacement *rp, float **d_in, const double *d_logits, double *out)
{
    int D = rp->d_model, V = rp->m->cfg.d_vocab;
    for (int i = 0; i < rp->n_features; i++) {
        const lp_attrib_feature *f = &rp->features[i];
        const float *W = rp->clt->W_enc[f->layer]->data;
        double v = 0;
        for (int d = 0; d < D; d++)
            v += (double)d_in[f->layer][f->pos * D + d] * W[d * rp->clt->d_tc + f->feature];
        out[i] = v;
    }
    double mean = 0;
    for (int v = 0; v < V; v++)
        mean += d_logits[v];
    for (int k = 0; k < rp->n_logits; k++)
        out[rp->n_features + k] = d_logits[rp->logit_tokens[k]] - mean / V;
}

static int row_node(const lp_replacement *rp, int i)
{
    return i < rp->n_features ? i : lp_replacement_logit_node(rp, i - rp->n_features);
}

typedef struct fixture {
    lp_model *m;
    lp_clt *clt;
    int32_t toks[T_];
    lp_replacement *rp;
    float *A;
    int N, R;
    double amax;
    lp_run clean;
    oracle o;
    float *d_in[L_];
    float *add; /* L x T x D */
    double *ch; /* R */
} fixture;

static void setup(fixture *f, int llama, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    f->m = rm_model(llama, L_, D_, 4, 2, V_, seed);
    f->clt = random_clt(L_, D_, seed + 7);
    for (int t = 0; t < T_; t++)
        f->toks[t] = (int32_t)((t * 11 + 3 + seed) % V_);
    lp_attrib_opts ao = lp_attrib_defaults();
    ao.max_n_logits = 4;
    f->rp = lp_replacement_build_clt(f->m, f->clt, f->toks, T_, &ao);
    cr_assert_not_null(f->rp, "%s", lp_last_error());
    cr_assert_null(f->rp->tcs);
    cr_assert_eq(f->rp->clt, f->clt);
    cr_assert_eq(lp_attrib_edges(f->rp, 5, &f->A), 0, "%s", lp_last_error());
    f->N = lp_replacement_n_nodes(f->rp);
    f->R = f->rp->n_features + f->rp->n_logits;
    for (int i = 0; i < f->N * f->N; i++)
        f->amax = fmax(f->amax, fabs(f->A[i]));
    cr_assert_gt(f->amax, 0);
    lp_run_opts co = {.cache_all = 1};
    cr_assert_eq(lp_model_run(f->m, f->toks, 1, T_, &co, &f->clean), 0, "%s", lp_last_error());
    f->o = (oracle){.m = f->m, .clean = &f->clean, .T = T_, .tokens = f->toks};
    for (int l = 0; l < L_; l++) {
        f->o.in[l] = malloc(sizeof(float) * T_ * D_);
        f->d_in[l] = malloc(sizeof(float) * T_ * D_);
    }
    f->add = calloc((size_t)L_ * T_ * D_, sizeof(float));
    f->ch = malloc(sizeof(double) * (size_t)f->R);
}

static void teardown(fixture *f)
{
    for (int l = 0; l < L_; l++)
        free(f->o.in[l]), free(f->d_in[l]);
    free(f->add);
    free(f->ch);
    free(f->A);
    lp_run_clear(&f->clean);
    lp_replacement_free(f->rp);
    lp_clt_free(f->clt);
    lp_model_free(f->m);
}

/* every edge of A against the oracle: one constrained run per source column */
static void check_edges(int llama, uint64_t seed)
{
    fixture f;
    setup(&f, llama, seed);
    lp_replacement *rp = f.rp;
    int D = D_, N = f.N;
    cr_assert_gt(rp->n_features, 20, "too few active features (%d) for a meaningful test", rp->n_features);
    int layers[L_] = {0};
    for (int i = 0; i < rp->n_features; i++)
        layers[rp->features[i].layer]++;
    for (int l = 0; l < L_; l++)
        cr_assert_gt(layers[l], 2, "layer %d has %d active features", l, layers[l]);
    int checked = 0, nonzero = 0, cross = 0;
    for (int s = 0; s < lp_replacement_logit_node(rp, 0); s++) {
        lp_hook emb;
        const lp_hook *extra = NULL;
        lp_tensor *e = NULL;
        memset(f.add, 0, sizeof(float) * L_ * T_ * D_);
        f.o.add = f.add;
        if (s < rp->n_features) { /* a_s times its decoders into every layer >= its own, once more */
            const lp_attrib_feature *ft = &rp->features[s];
            const float *w = f.clt->W_dec[ft->layer]->data + (size_t)ft->feature * (L_ - ft->layer) * D;
            for (int l = ft->layer; l < L_; l++)
                for (int d = 0; d < D; d++)
                    f.add[((size_t)l * T_ + ft->pos) * D + d] = ft->act * w[(size_t)(l - ft->layer) * D + d];
        } else if (s < lp_replacement_embed_node(rp, 0)) { /* the error vector once more */
            int l = (s - rp->n_features) / T_, p = (s - rp->n_features) % T_;
            memcpy(f.add + ((size_t)l * T_ + p) * D, rp->errors + ((size_t)l * T_ + p) * D, sizeof(float) * D);
        } else { /* the token's embedding once more */
            int p = s - lp_replacement_embed_node(rp, 0);
            int64_t sh[1] = {D};
            e = lp_tensor_from_data(1, sh, f.m->wte->data + (size_t)f.toks[p] * D, LP_DEVICE_CPU);
            emb = (lp_hook){.name = "hook_embed", .kind = LP_HOOK_ADD, .value = e, .scale = 1, .head = -1, .pos = p};
            extra = &emb;
        }
        double d_logits[V_];
        constrained(&f.o, extra, f.d_in, d_logits);
        lp_tensor_free(e);
        target_changes(rp, f.d_in, d_logits, f.ch);
        for (int i = 0; i < f.R; i++) {
            double a = f.A[(size_t)row_node(rp, i) * N + s], ref = f.ch[i];
            /* the oracle is a difference of two float forwards: its rounding is the floor */
            cr_assert_leq(fabs(a - ref), 1e-4 * fabs(ref) + 2e-6 * f.amax,
                          "A[%d,%d] = %.8g, constrained patching gives %.8g (max |A| %.4g)", row_node(rp, i), s, a,
                          ref, f.amax);
            checked++;
            int big = fabs(ref) > 1e-3 * f.amax;
            nonzero += big;
            /* a feature reaching a later feature target through a decoder past its own layer */
            if (big && s < rp->n_features && i < rp->n_features &&
                rp->features[i].layer > rp->features[s].layer + 1)
                cross++;
        }
    }
    cr_assert_gt(nonzero, checked / 10, "only %d of %d edges are non-zero", nonzero, checked);
    cr_assert_gt(cross, 0, "no edge from a feature to a target two layers up");
    /* error and embedding nodes are sources only */
    for (int t = rp->n_features; t < lp_replacement_logit_node(rp, 0); t++)
        for (int s = 0; s < N; s++)
            cr_assert_eq(f.A[(size_t)t * N + s], 0.0f);
    teardown(&f);
}

Test(attrib_clt, gpt2_edges_equal_constrained_patching) { check_edges(0, 5); }
Test(attrib_clt, llama_edges_equal_constrained_patching) { check_edges(1, 9); }

/* The decoders a CLT feature writes past its own layer matter: the same edges computed as if
 * each feature wrote into its own layer only differ (the check above can fail). */
Test(attrib_clt, later_decoders_carry_edges)
{
    fixture f;
    setup(&f, 0, 5);
    lp_replacement *rp = f.rp;
    int N = f.N, differ = 0;
    /* zero every decoder past the feature's own layer; the feature set does not change */
    lp_clt *own = random_clt(L_, D_, 5 + 7);
    for (int l = 0; l < L_; l++)
        for (int i = 0; i < F_; i++)
            memset(own->W_dec[l]->data + ((size_t)i * (L_ - l) + 1) * D_, 0, sizeof(float) * (L_ - l - 1) * D_);
    lp_attrib_opts ao = lp_attrib_defaults();
    ao.max_n_logits = 4;
    lp_replacement *r2 = lp_replacement_build_clt(f.m, own, f.toks, T_, &ao);
    cr_assert_not_null(r2, "%s", lp_last_error());
    cr_assert_eq(r2->n_features, rp->n_features);
    float *B = NULL;
    cr_assert_eq(lp_attrib_edges(r2, 5, &B), 0, "%s", lp_last_error());
    cr_assert_eq(lp_replacement_n_nodes(r2), N);
    for (int t = 0; t < rp->n_features; t++)
        for (int s = 0; s < rp->n_features; s++)
            differ += fabs(f.A[(size_t)t * N + s] - B[(size_t)t * N + s]) > 1e-4 * f.amax;
    cr_assert_gt(differ, 0, "the decoders into later layers made no difference");
    free(B);
    lp_replacement_free(r2);
    lp_clt_free(own);
    teardown(&f);
}

/* The nodes account for everything: the features are the CLT's non-zero activations (none at
 * the BOS position), error + b_dec + the decoders of the active features = the true MLP output
 * (lp_clt_run's reconstruction), and every target row sums to the change of the target when all
 * sources are added at once (each MLP output once more less its b_dec, each embedding once
 * more). */
Test(attrib_clt, the_graph_is_complete)
{
    fixture f;
    setup(&f, 1, 9);
    lp_replacement *rp = f.rp;
    int D = D_, N = f.N;
    float *x = malloc(sizeof(float) * L_ * T_ * D), *y = malloc(sizeof(float) * L_ * T_ * D),
          *yh = malloc(sizeof(float) * L_ * T_ * D), *fa = malloc(sizeof(float) * L_ * T_ * F_);
    for (int l = 0; l < L_; l++) {
        memcpy(x + (size_t)l * T_ * D, clean_at(&f.o, "blocks.%d.mlp.hook_in", l), sizeof(float) * T_ * D);
        memcpy(y + (size_t)l * T_ * D, clean_at(&f.o, "blocks.%d.mlp.hook_out", l), sizeof(float) * T_ * D);
    }
    cr_assert_eq(lp_clt_run(fa, yh, f.clt, x, T_), 0, "%s", lp_last_error());
    int k = 0;
    for (int l = 0; l < L_; l++)
        for (int t = 1; t < T_; t++)
            for (int i = 0; i < F_; i++) {
                float a = fa[((size_t)l * T_ + t) * F_ + i];
                if (a == 0.0f)
                    continue;
                cr_assert_lt(k, rp->n_features);
                const lp_attrib_feature *ft = &rp->features[k++];
                cr_assert(ft->layer == l && ft->pos == t && ft->feature == i, "feature node %d is (%d, %d, %d), "
                          "the CLT's next activation (%d, %d, %d)", k - 1, ft->layer, ft->pos, ft->feature, l, t, i);
                cr_assert_float_eq(ft->act, a, 1e-6f * fabsf(a) + 1e-7f);
            }
    cr_assert_eq(k, rp->n_features);
    for (int l = 0; l < L_; l++)
        for (int t = 0; t < T_; t++)
            for (int d = 0; d < D; d++) {
                size_t j = ((size_t)l * T_ + t) * D + d;
                float want = t ? y[j] - yh[j] : 0.0f;
                cr_assert_leq(fabsf(rp->errors[j] - want), 1e-5f * (fabsf(y[j]) + 1), "error (%d, %d)[%d] = %g, "
                              "MLP out - CLT out %g", l, t, d, rp->errors[j], want);
            }
    /* all sources at once */
    for (int l = 0; l < L_; l++)
        for (int t = 1; t < T_; t++)
            for (int d = 0; d < D; d++)
                f.add[((size_t)l * T_ + t) * D + d] = y[((size_t)l * T_ + t) * D + d] - f.clt->b_dec[l]->data[d];
    f.o.add = f.add;
    int64_t sh[2] = {T_, D};
    lp_tensor *e = lp_tensor_empty(2, sh, LP_DEVICE_CPU);
    for (int t = 0; t < T_; t++)
        memcpy(e->data + (size_t)t * D, f.m->wte->data + (size_t)f.toks[t] * D, sizeof(float) * D);
    lp_hook emb = {.name = "hook_embed", .kind = LP_HOOK_ADD, .value = e, .scale = 1, .head = -1, .pos = -1};
    double d_logits[V_];
    constrained(&f.o, &emb, f.d_in, d_logits);
    target_changes(rp, f.d_in, d_logits, f.ch);
    for (int i = 0; i < f.R; i++) {
        double sum = 0, mag = 0;
        for (int s = 0; s < N; s++) {
            sum += f.A[(size_t)row_node(rp, i) * N + s];
            mag += fabs(f.A[(size_t)row_node(rp, i) * N + s]);
        }
        cr_assert_leq(fabs(sum - f.ch[i]), 1e-4 * fabs(f.ch[i]) + 1e-5 * mag + 2e-6 * f.amax,
                      "row %d sums to %.8g, adding every source changes the target by %.8g", i, sum, f.ch[i]);
    }
    lp_tensor_free(e);
    free(x), free(y), free(yh), free(fa);
    teardown(&f);
}

/* Influence-ordered rows and the graph work unchanged on a CLT's replacement. */
Test(attrib_clt, rows_graph_and_pruning)
{
    fixture f;
    setup(&f, 0, 5);
    lp_replacement *rp = f.rp;
    int N = f.N, nf = rp->n_features, K = nf / 3;
    lp_attrib_opts ao = lp_attrib_defaults();
    ao.max_n_logits = 4;
    ao.batch = 4;
    ao.update_interval = 2;
    ao.max_feature_nodes = K;
    for (int storage = LP_ATTRIB_DENSE; storage <= LP_ATTRIB_SPARSE; storage++) {
        ao.storage = storage;
        lp_attrib_matrix M;
        cr_assert_eq(lp_attrib_edges_rows(rp, &ao, &M), 0, "%s", lp_last_error());
        cr_assert_eq(M.n_kept, K);
        float *B = NULL;
        cr_assert_eq(lp_attrib_matrix_dense(&M, &B), 0, "%s", lp_last_error());
        for (int i = 0; i < M.n_rows; i++) {
            int t = lp_attrib_matrix_row_node(&M, i), full = i < K ? M.kept[i] : lp_replacement_logit_node(rp, i - K);
            for (int j = 0; j < M.n_nodes; j++) {
                int col = j < K ? M.kept[j] : j - K + nf;
                float ref = f.A[(size_t)full * N + col], v = B[(size_t)t * M.n_nodes + j];
                cr_assert_leq(fabsf(v - ref), 1e-5f * fabsf(ref) + 1e-6f * (float)f.amax, "row %d col %d: %g, full %g",
                              i, j, v, ref);
            }
        }
        free(B);
        lp_attrib_matrix_clear(&M);
    }
    lp_attrib_opts go = lp_attrib_defaults();
    go.max_n_logits = 4;
    lp_graph *g = lp_graph_attribute_clt(f.m, f.clt, f.toks, T_, &go, NULL, NULL);
    cr_assert_not_null(g, "%s", lp_last_error());
    cr_assert_eq(g->n_nodes, N);
    for (int t = 0; t < N; t++)
        for (int s = 0; s < N; s++)
            cr_assert_leq(fabsf(lp_graph_edge(g, t, s) - f.A[(size_t)t * N + s]), 1e-6f * (float)f.amax,
                          "the graph's edge (%d, %d): %g, the engine's %g", t, s, lp_graph_edge(g, t, s),
                          f.A[(size_t)t * N + s]);
    char want[64];
    snprintf(want, sizeof want, "%d_%d_%d", rp->features[0].layer, rp->features[0].feature, rp->features[0].pos);
    cr_assert_str_eq(g->nodes[0].id, want);
    cr_assert(g->completeness > 0 && g->completeness <= 1, "completeness %g", g->completeness);
    lp_graph *p = lp_graph_prune(g, 0.8, 0.98);
    cr_assert_not_null(p, "%s", lp_last_error());
    cr_assert_lt(p->n_nodes, g->n_nodes);
    lp_graph_free(p);
    lp_graph_free(g);
    teardown(&f);
}

Test(attrib_clt, a_mismatched_clt_is_an_error)
{
    lp_model *m = rm_model(0, L_, D_, 4, 4, V_, 3);
    int32_t toks[3] = {0, 1, 2};
    lp_clt *c = random_clt(L_ - 1, D_, 4);
    cr_assert_null(lp_replacement_build_clt(m, c, toks, 3, NULL));
    cr_assert(strstr(lp_last_error(), "cross-layer transcoder has 2 layers"), "%s", lp_last_error());
    lp_clt_free(c);
    c = random_clt(L_, D_ / 2, 4);
    cr_assert_null(lp_graph_attribute_clt(m, c, toks, 3, NULL, NULL, NULL));
    cr_assert(strstr(lp_last_error(), "d_model"), "%s", lp_last_error());
    lp_clt_free(c);
    c = random_clt(L_, D_, 4);
    strcpy(c->feature_input_hook, "hook_resid_mid");
    cr_assert_null(lp_replacement_build_clt(m, c, toks, 3, NULL));
    cr_assert(strstr(lp_last_error(), "hook_resid_mid"), "%s", lp_last_error());
    cr_assert_null(lp_replacement_build_clt(m, NULL, toks, 3, NULL));
    cr_assert_null(lp_graph_attribute_clt(m, NULL, toks, 3, NULL, NULL, NULL));
    lp_clt_free(c);
    lp_model_free(m);
}

/* The user's intervention (lp_intervene_clt: a feature set to twice its value, every layer
 * constrained, attention frozen) moves each logit direction and each feature's pre-activation
 * by the graph's edge from that feature. */
Test(attrib_clt, constrained_interventions_equal_the_edges)
{
    fixture f;
    setup(&f, 1, 9);
    lp_replacement *rp = f.rp;
    int N = f.N;
    lp_intervene_opts none = {.freeze_attention = 1, .constrained = 1, .c_first = 0, .c_last = L_ - 1};
    lp_intervention c0 = {0};
    cr_assert_eq(lp_intervene_clt(f.m, f.clt, f.toks, T_, &none, &c0), 0, "%s", lp_last_error());
    int checked = 0, nonzero = 0;
    for (int s = 0; s < rp->n_features; s += 1 + rp->n_features / 25) {
        const lp_attrib_feature *ft = &rp->features[s];
        lp_feature_edit e = {.layer = ft->layer, .pos = ft->pos, .feature = ft->feature, .kind = LP_FEAT_SET,
                             .value = 2 * ft->act};
        lp_intervene_opts o = none;
        o.edits = &e, o.n_edits = 1;
        lp_intervention r = {0};
        cr_assert_eq(lp_intervene_clt(f.m, f.clt, f.toks, T_, &o, &r), 0, "%s", lp_last_error());
        const float *a = r.logits->data + (size_t)(T_ - 1) * V_, *b = r.clean_logits->data + (size_t)(T_ - 1) * V_;
        double mean = 0;
        for (int v = 0; v < V_; v++)
            mean += (double)a[v] - b[v];
        for (int k = 0; k < rp->n_logits; k++) {
            int tok = rp->logit_tokens[k];
            double edge = f.A[(size_t)lp_replacement_logit_node(rp, k) * N + s], ref = (double)a[tok] - b[tok] - mean / V_;
            cr_assert_leq(fabs(edge - ref), 1e-4 * fabs(ref) + 2e-6 * f.amax,
                          "logit %d, feature node %d: edge %.8g, intervention %.8g", k, s, edge, ref);
            checked++, nonzero += fabs(ref) > 1e-3 * f.amax;
        }
        for (int t = 0; t < rp->n_features; t++) {
            const lp_attrib_feature *g = &rp->features[t];
            size_t at = (size_t)g->pos * F_ + g->feature;
            double edge = f.A[(size_t)t * N + s], ref = (double)r.pre[g->layer]->data[at] - c0.pre[g->layer]->data[at];
            cr_assert_leq(fabs(edge - ref), 1e-4 * fabs(ref) + 2e-6 * f.amax,
                          "feature node %d <- %d: edge %.8g, intervention %.8g", t, s, edge, ref);
            checked++, nonzero += fabs(ref) > 1e-3 * f.amax;
        }
        lp_intervention_clear(&r);
    }
    cr_assert_gt(nonzero, checked / 20, "only %d of %d changes are non-zero", nonzero, checked);
    lp_intervention_clear(&c0);
    teardown(&f);
}

/* A CLT none of whose features fire at this prompt: a graph of errors, embeddings and logits. */
Test(attrib_clt, no_active_features)
{
    lp_model *m = rm_model(0, L_, D_, 4, 4, V_, 3);
    lp_clt *c = random_clt(L_, D_, 4);
    for (int l = 0; l < L_; l++)
        for (int i = 0; i < F_; i++)
            c->threshold[l]->data[i] = 1e30f;
    int32_t toks[T_] = {0, 5, 9, 2, 7, 1, 3};
    lp_attrib_opts ao = lp_attrib_defaults();
    ao.max_n_logits = 3;
    ao.max_feature_nodes = 5;
    lp_graph *g = lp_graph_attribute_clt(m, c, toks, T_, &ao, NULL, NULL);
    cr_assert_not_null(g, "%s", lp_last_error());
    cr_assert_eq(g->n_nodes, (L_ + 1) * T_ + 3);
    cr_assert_gt(lp_graph_n_edges(g), 0);
    lp_graph_free(g);
    lp_clt_free(c);
    lp_model_free(m);
}
