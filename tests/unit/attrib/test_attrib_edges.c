/* Attribution edges (backend/attrib/) on a tiny random GPT-2 and a Llama with random
 * per-layer transcoders (some with a skip): every edge into a target equals the change of
 * the target's pre-activation (or logit direction) when the source is added once more
 * (a feature's a_s W_dec, an error vector, a token's embedding) with every layer
 * constrained: norm scales and attention patterns patched to their clean values and every
 * MLP output frozen at its clean value plus the skip's response, through the forward's
 * hooks. Plus the nodes' bookkeeping and bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/replace.h"
#include "core/error.h"
#include "device.h"
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

/* ---- the oracle: a constrained forward through hooks ---- */

typedef struct oracle {
    const lp_model *m;
    const lp_transcoder_set *tcs;
    const lp_run *clean;
    const int32_t *tokens;
    int T;
    float *in[8];     /* mlp.hook_in of the patched run, per layer */
    int src_layer;    /* the layer whose MLP output gets `add` at src_pos, or -1 */
    int src_pos;
    const float *add; /* D */
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

/* the MLP output frozen at its clean value, plus the skip's (linear) response to the change
 * of its input, plus the injected source */
static int frozen_out(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    oracle *o = ud;
    int l = layer_of(name), D = o->m->cfg.d_model, T = o->T;
    const float *y = clean_at(o, "blocks.%d.mlp.hook_out", l), *x = clean_at(o, "blocks.%d.mlp.hook_in", l);
    lp_tensor *r = lp_tensor_from_data(act->ndim, act->shape, y, LP_DEVICE_CPU);
    const lp_sae *s = o->tcs->layers[l];
    for (int p = 0; p < T; p++)
        for (int od = 0; od < D; od++) {
            float v = 0;
            if (s->W_skip)
                for (int i = 0; i < D; i++)
                    v += (o->in[l][p * D + i] - x[p * D + i]) * s->W_skip->data[od * D + i];
            if (l == o->src_layer && p == o->src_pos)
                v += o->add[od];
            r->data[p * D + od] += v;
        }
    *out = r;
    return 0;
}

/* runs the constrained model with one source added; d_in[l] (T x D) the change of every
 * mlp.hook_in, d_logits (V) the change of the last position's logits */
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
        const lp_sae *s = rp->tcs->layers[f->layer];
        double v = 0;
        for (int d = 0; d < D; d++)
            v += (double)d_in[f->layer][f->pos * D + d] * s->W_enc->data[d * s->cfg.d_sae + f->feature];
        out[i] = v;
    }
    for (int k = 0; k < rp->n_logits; k++) {
        double mean = 0;
        for (int v = 0; v < V; v++)
            mean += d_logits[v];
        out[rp->n_features + k] = d_logits[rp->logit_tokens[k]] - mean / V;
    }
}

static int row_node(const lp_replacement *rp, int i)
{
    return i < rp->n_features ? i : lp_replacement_logit_node(rp, i - rp->n_features);
}

/* every edge of A against the oracle: one constrained run per source column */
static void check_edges(int llama, uint64_t seed)
{
    lp_model *m = rm_model(llama, L_, D_, 4, 2, V_, seed);
    lp_transcoder_set *tcs = transcoders(L_, D_, seed + 7);
    int32_t toks[T_];
    for (int t = 0; t < T_; t++)
        toks[t] = (int32_t)((t * 11 + 3 + seed) % V_);
    lp_attrib_opts ao = lp_attrib_defaults();
    ao.max_n_logits = 4;
    lp_replacement *rp = lp_replacement_build(m, tcs, toks, T_, &ao);
    cr_assert_not_null(rp, "%s", lp_last_error());
    cr_assert_gt(rp->n_features, 20, "too few active features (%d) for a meaningful test", rp->n_features);
    float *A = NULL;
    cr_assert_eq(lp_attrib_edges(rp, 5, &A), 0, "%s", lp_last_error());
    int N = lp_replacement_n_nodes(rp), R = rp->n_features + rp->n_logits, D = D_;

    lp_run clean = {0};
    lp_run_opts co = {.cache_all = 1};
    cr_assert_eq(lp_model_run(m, toks, 1, T_, &co, &clean), 0, "%s", lp_last_error());
    oracle o = {.m = m, .tcs = tcs, .clean = &clean, .T = T_, .tokens = toks, .src_layer = -1};
    float *d_in[L_];
    for (int l = 0; l < L_; l++) {
        o.in[l] = malloc(sizeof(float) * T_ * D);
        d_in[l] = malloc(sizeof(float) * T_ * D);
    }
    double d_logits[V_], *ch = malloc(sizeof(double) * R), amax = 0;
    for (int i = 0; i < N * N; i++)
        amax = fmax(amax, fabs(A[i]));
    cr_assert_gt(amax, 0);
    float vec[D_];
    int checked = 0, nonzero = 0;
    for (int s = 0; s < lp_replacement_logit_node(rp, 0); s++) {
        lp_hook emb;
        const lp_hook *extra = NULL;
        lp_tensor *e = NULL;
        o.src_layer = -1;
        if (s < rp->n_features) { /* a_s W_dec added once more: the activation doubled */
            const lp_attrib_feature *f = &rp->features[s];
            const lp_sae *sae = tcs->layers[f->layer];
            for (int d = 0; d < D; d++)
                vec[d] = f->act * sae->W_dec->data[(size_t)f->feature * D + d];
            o.src_layer = f->layer, o.src_pos = f->pos, o.add = vec;
        } else if (s < lp_replacement_embed_node(rp, 0)) { /* the error vector once more */
            int l = (s - rp->n_features) / T_, p = (s - rp->n_features) % T_;
            o.src_layer = l, o.src_pos = p, o.add = rp->errors + ((size_t)l * T_ + p) * D;
        } else { /* the token's embedding once more */
            int p = s - lp_replacement_embed_node(rp, 0);
            int64_t sh[1] = {D};
            e = lp_tensor_from_data(1, sh, m->wte->data + (size_t)toks[p] * D, LP_DEVICE_CPU);
            emb = (lp_hook){.name = "hook_embed", .kind = LP_HOOK_ADD, .value = e, .scale = 1, .head = -1, .pos = p};
            extra = &emb;
        }
        constrained(&o, extra, d_in, d_logits);
        lp_tensor_free(e);
        target_changes(rp, d_in, d_logits, ch);
        for (int i = 0; i < R; i++) {
            double a = A[(size_t)row_node(rp, i) * N + s], ref = ch[i];
            /* the oracle is a difference of two float forwards: its rounding is the floor */
            cr_assert_leq(fabs(a - ref), 1e-4 * fabs(ref) + 2e-6 * amax,
                          "A[%d,%d] = %.8g, constrained patching gives %.8g (max |A| %.4g)", row_node(rp, i), s, a,
                          ref, amax);
            checked++;
            nonzero += fabs(ref) > 1e-3 * amax;
        }
    }
    cr_assert_gt(nonzero, checked / 10, "only %d of %d edges are non-zero", nonzero, checked);
    /* error and embedding nodes are sources only */
    for (int t = rp->n_features; t < lp_replacement_logit_node(rp, 0); t++)
        for (int s = 0; s < N; s++)
            cr_assert_eq(A[(size_t)t * N + s], 0.0f);
    for (int l = 0; l < L_; l++)
        free(o.in[l]), free(d_in[l]);
    free(ch);
    free(A);
    lp_run_clear(&clean);
    lp_replacement_free(rp);
    lp_transcoder_set_free(tcs);
    lp_model_free(m);
}

Test(attrib_edges, gpt2_edges_equal_constrained_patching) { check_edges(0, 5); }
Test(attrib_edges, llama_edges_equal_constrained_patching) { check_edges(1, 9); }

Test(attrib_edges, nodes_follow_the_order_and_bos_rule)
{
    lp_model *m = rm_model(0, L_, D_, 4, 4, V_, 3);
    lp_transcoder_set *tcs = transcoders(L_, D_, 4);
    int32_t toks[T_] = {0, 5, 9, 2, 7, 1, 3};
    lp_attrib_opts ao = lp_attrib_defaults();
    ao.max_n_logits = 5;
    ao.desired_logit_prob = 0.3f;
    lp_replacement *rp = lp_replacement_build(m, tcs, toks, T_, &ao);
    cr_assert_not_null(rp, "%s", lp_last_error());
    for (int i = 0; i < rp->n_features; i++) {
        const lp_attrib_feature *f = &rp->features[i];
        cr_assert_gt(f->pos, 0, "a feature at the BOS position");
        cr_assert_neq(f->act, 0.0f);
        if (i) {
            const lp_attrib_feature *e = &rp->features[i - 1];
            long a = ((long)e->layer * T_ + e->pos) * F_ + e->feature, b = ((long)f->layer * T_ + f->pos) * F_ + f->feature;
            cr_assert_lt(a, b, "features out of (layer, pos, feature) order at %d", i);
        }
    }
    for (int l = 0; l < L_; l++)
        for (int d = 0; d < D_; d++)
            cr_assert_eq(rp->errors[(size_t)l * T_ * D_ + d], 0.0f, "an error vector at the BOS position");
    /* logits: probability descending, cut where the cumulative probability reaches 0.3 */
    double cum = 0;
    for (int k = 0; k < rp->n_logits; k++) {
        if (k)
            cr_assert_geq(rp->logit_probs[k - 1], rp->logit_probs[k]);
        cr_assert(cum < 0.3, "a logit node past the cut");
        cum += rp->logit_probs[k];
    }
    cr_assert(cum >= 0.3 || rp->n_logits == 5);
    cr_assert_eq(lp_replacement_n_nodes(rp), rp->n_features + L_ * T_ + T_ + rp->n_logits);
    lp_replacement_free(rp);
    lp_transcoder_set_free(tcs);
    lp_model_free(m);
}

Test(attrib_edges, a_mismatched_set_is_an_error)
{
    lp_model *m = rm_model(0, L_, D_, 4, 4, V_, 3);
    lp_transcoder_set *tcs = transcoders(L_ - 1, D_, 4);
    int32_t toks[3] = {0, 1, 2};
    cr_assert_null(lp_replacement_build(m, tcs, toks, 3, NULL));
    cr_assert(strstr(lp_last_error(), "layers"), "%s", lp_last_error());
    strcpy(tcs->feature_input_hook, "hook_resid_mid");
    tcs->n_layers = L_ - 1;
    cr_assert_null(lp_replacement_build(m, tcs, toks, 0, NULL));
    lp_transcoder_set_free(tcs);
    lp_model_free(m);
}

/* ---- lp_attrib_edges_rows: max_feature_nodes, storage ---- */

/* circuit-tracer's selection on a known matrix: the logit rows, then rounds of the q most
 * influential unvisited features (partial influence over the rows so far), q = interval x
 * batch; returns the visited mask */
static void reference_selection(const float *A, const lp_replacement *rp, int K, int q, unsigned char *visited)
{
    int N = lp_replacement_n_nodes(rp), nf = rp->n_features;
    int *rows = malloc(sizeof(int) * (size_t)(K + rp->n_logits)), n_rows = 0, n_visited = 0;
    double *infl = malloc(sizeof(double) * N), *prod = malloc(sizeof(double) * N), *next = malloc(sizeof(double) * N);
    for (int i = 0; i < rp->n_logits; i++)
        rows[n_rows++] = lp_replacement_logit_node(rp, i);
    memset(visited, 0, (size_t)nf);
    while (n_visited < K) {
        memset(infl, 0, sizeof(double) * N);
        memset(prod, 0, sizeof(double) * N);
        for (int i = 0; i < rp->n_logits; i++)
            prod[lp_replacement_logit_node(rp, i)] = rp->logit_probs[i];
        for (int it = 0; it < 128; it++) {
            int any = 0;
            memset(next, 0, sizeof(double) * N);
            for (int k = 0; k < n_rows; k++) {
                const float *row = A + (size_t)rows[k] * N;
                double s = 0;
                for (int j = 0; j < N; j++)
                    s += fabs(row[j]);
                for (int j = 0; j < N; j++)
                    next[j] += prod[rows[k]] * fabs(row[j]) / fmax(s, 1e-8);
            }
            for (int j = 0; j < N; j++)
                infl[j] += next[j], any |= next[j] != 0;
            memcpy(prod, next, sizeof(double) * N);
            if (!any)
                break;
        }
        int take = q < K - n_visited ? q : K - n_visited;
        for (int t = 0; t < take; t++) {
            int best = -1;
            for (int s = 0; s < nf; s++)
                if (!visited[s] && (best < 0 || infl[s] > infl[best]))
                    best = s;
            visited[best] = 1;
            rows[n_rows++] = best;
        }
        n_visited += take;
    }
    free(rows);
    free(infl);
    free(prod);
    free(next);
}

static void matrix_row(const lp_attrib_matrix *a, int i, float *out)
{
    if (a->dense) {
        memcpy(out, a->dense + (size_t)i * a->n_nodes, sizeof(float) * a->n_nodes);
        return;
    }
    memset(out, 0, sizeof(float) * a->n_nodes);
    for (int64_t k = a->row_ptr[i]; k < a->row_ptr[i + 1]; k++) {
        if (k > a->row_ptr[i])
            cr_assert_lt(a->col[k - 1], a->col[k], "sparse columns out of order");
        out[a->col[k]] = a->val[k];
    }
}

static void check_rows(int llama, uint64_t seed)
{
    lp_model *m = rm_model(llama, L_, D_, 4, 2, V_, seed);
    lp_transcoder_set *tcs = transcoders(L_, D_, seed + 7);
    int32_t toks[T_];
    for (int t = 0; t < T_; t++)
        toks[t] = (int32_t)((t * 11 + 3 + seed) % V_);
    lp_attrib_opts ao = lp_attrib_defaults();
    ao.max_n_logits = 4;
    ao.batch = 4;
    ao.update_interval = 2;
    lp_replacement *rp = lp_replacement_build(m, tcs, toks, T_, &ao);
    cr_assert_not_null(rp, "%s", lp_last_error());
    float *A = NULL;
    cr_assert_eq(lp_attrib_edges(rp, 4, &A), 0, "%s", lp_last_error());
    int N = lp_replacement_n_nodes(rp), nf = rp->n_features;
    double amax = 0;
    for (int i = 0; i < N * N; i++)
        amax = fmax(amax, fabs(A[i]));
    int limits[2] = {0, nf / 3};
    cr_assert_gt(nf / 3, 2 * ao.batch * ao.update_interval, "too few features (%d) for several re-rankings", nf);
    for (int li = 0; li < 2; li++) {
        int K = limits[li] ? limits[li] : nf;
        unsigned char *want = malloc((size_t)nf);
        reference_selection(A, rp, K, ao.batch * ao.update_interval, want);
        lp_attrib_matrix mats[4];
        int storages[4] = {LP_ATTRIB_DENSE, LP_ATTRIB_SPARSE, LP_ATTRIB_AUTO, LP_ATTRIB_AUTO};
        for (int k = 0; k < 4; k++) {
            ao.max_feature_nodes = limits[li];
            ao.storage = storages[k];
            ao.dense_limit = k == 3 ? 64 : 0; /* k 3: the mixed store (each row dense or sparse) */
            lp_set_threads(k % 2 ? 1 : 2);
            cr_assert_eq(lp_attrib_edges_rows(rp, &ao, &mats[k]), 0, "%s", lp_last_error());
            lp_attrib_matrix *a = &mats[k];
            cr_assert_eq(a->n_kept, K);
            cr_assert_eq(a->n_rows, K + rp->n_logits);
            cr_assert_eq(a->n_nodes, K + N - nf);
            for (int i = 0; i < K; i++) {
                cr_assert(want[a->kept[i]], "feature %d kept, not by circuit-tracer's rule (limit %d)", a->kept[i], K);
                if (i)
                    cr_assert_lt(a->kept[i - 1], a->kept[i]);
            }
        }
        lp_set_threads(0);
        cr_assert_not_null(mats[0].dense);
        cr_assert_null(mats[1].dense);
        float *r0 = malloc(sizeof(float) * N), *r1 = malloc(sizeof(float) * N);
        for (int i = 0; i < mats[0].n_rows; i++) {
            int node = lp_attrib_matrix_row_node(&mats[0], i);
            int full = i < K ? mats[0].kept[i] : lp_replacement_logit_node(rp, i - K);
            for (int k = 1; k < 4; k++) { /* the storages and thread counts agree exactly */
                matrix_row(&mats[0], i, r0);
                matrix_row(&mats[k], i, r1);
                cr_assert_eq(memcmp(r0, r1, sizeof(float) * mats[0].n_nodes), 0, "row %d differs (store %d)", i, k);
            }
            cr_assert_eq(lp_attrib_matrix_row_node(&mats[0], i), node);
            matrix_row(&mats[0], i, r0);
            /* and equal lp_attrib_edges' matrix on the kept rows and columns */
            for (int j = 0; j < mats[0].n_nodes; j++) {
                int col = j < K ? mats[0].kept[j] : j - K + nf;
                float ref = A[(size_t)full * N + col];
                cr_assert_leq(fabs(r0[j] - ref), 1e-5 * fabs(ref) + 1e-6 * amax, "A[%d, %d] = %g, dense %g", i, j, r0[j],
                              ref);
            }
        }
        float *D = NULL;
        cr_assert_eq(lp_attrib_matrix_dense(&mats[1], &D), 0, "%s", lp_last_error());
        for (int t = 0; t < mats[1].n_nodes; t++)
            for (int s = 0; s < mats[1].n_nodes; s++) {
                int is_row = t < K || t >= mats[1].n_nodes - rp->n_logits;
                if (!is_row)
                    cr_assert_eq(D[(size_t)t * mats[1].n_nodes + s], 0.0f);
            }
        free(D);
        free(r0);
        free(r1);
        free(want);
        for (int k = 0; k < 4; k++)
            lp_attrib_matrix_clear(&mats[k]);
    }
    ao.max_feature_nodes = -1;
    lp_attrib_matrix bad;
    cr_assert_eq(lp_attrib_edges_rows(rp, &ao, &bad), -1);
    cr_assert(strstr(lp_last_error(), "max_feature_nodes"), "%s", lp_last_error());
    ao.max_feature_nodes = 3;
    ao.update_interval = 0;
    cr_assert_eq(lp_attrib_edges_rows(rp, &ao, &bad), -1);
    cr_assert(strstr(lp_last_error(), "update_interval"), "%s", lp_last_error());
    cr_assert_null(bad.dense);
    cr_assert_null(bad.kept);
    free(A);
    lp_replacement_free(rp);
    lp_transcoder_set_free(tcs);
    lp_model_free(m);
}

Test(attrib_edges, gpt2_rows_keep_the_influential_features) { check_rows(0, 5); }
Test(attrib_edges, llama_rows_keep_the_influential_features) { check_rows(1, 9); }
