/* Attribution graphs (graph.h): made from a replacement model, pruned into new graphs, and
 * the dense adjacency behind small accessors. Queries are in graph_query.c, files in
 * graph_json.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/graph.h"
#include "attrib/prune.h"
#include "core/error.h"
#include "core/interrupt.h"

const char *lp_node_kind_name(lp_node_kind k)
{
    static const char *const names[] = {"feature", "error", "embedding", "logit"};
    return k >= LP_NODE_FEATURE && k <= LP_NODE_LOGIT ? names[k] : "?";
}

lp_graph *lp_graph_alloc(int n, int T)
{
    if (n < 0 || T < 0)
        return lp_set_error("graph: negative size"), NULL;
    lp_graph *g = lp_calloc(1, sizeof *g, "graph");
    if (!g)
        return NULL;
    g->n_nodes = n;
    g->n_tokens = T;
    g->replacement = g->completeness = NAN;
    g->node_threshold = g->edge_threshold = NAN;
    g->nodes = lp_calloc(n ? (size_t)n : 1, sizeof *g->nodes, "graph nodes");
    g->tokens = lp_malloc((T ? (size_t)T : 1) * sizeof(int32_t), "graph tokens");
    g->token_text = lp_calloc(T ? (size_t)T : 1, sizeof(char *), "graph tokens");
    g->adj_ = lp_calloc(n ? (size_t)n * n : 1, sizeof(float), "graph adjacency");
    if (!g->nodes || !g->tokens || !g->token_text || !g->adj_) {
        lp_graph_free(g);
        return NULL;
    }
    for (int i = 0; i < T; i++)
        g->tokens[i] = -1;
    for (int i = 0; i < n; i++)
        g->nodes[i] = (lp_graph_node){.feature = -1, .token = -1, .layer = -1, .activation = NAN, .influence = NAN};
    return g;
}

void lp_graph_free(lp_graph *g)
{
    if (!g)
        return;
    for (int i = 0; g->nodes && i < g->n_nodes; i++)
        free(g->nodes[i].text), free(g->nodes[i].label);
    for (int i = 0; g->token_text && i < g->n_tokens; i++)
        free(g->token_text[i]);
    free(g->nodes);
    free(g->tokens);
    free(g->token_text);
    free(g->prompt);
    free(g->model), free(g->scan), free(g->slug), free(g->generator), free(g->generator_version);
    free(g->adj_);
    free(g->pinned);
    for (int i = 0; g->groups && i < g->n_groups; i++)
        free(g->groups[i].name), free(g->groups[i].ids);
    free(g->groups);
    free(g->qk_tracing), free(g->qparams_supernodes);
    free(g);
}

/* ---- the diagram's view: pins and supernodes ---- */

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* ids[0..n) checked, sorted and deduplicated into a new array (*out, *nout); -1 with an
 * error. */
static int node_set(const lp_graph *g, const int *ids, int n, const char *what, int **out, int *nout)
{
    *out = NULL, *nout = 0;
    if (n < 0 || (n > 0 && !ids)) {
        lp_set_error("graph: %s: no node list", what);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= g->n_nodes) {
            lp_set_error("graph: %s: node %d out of range (1..%d)", what, ids[i] + 1, g->n_nodes);
            return -1;
        }
    int *a = lp_malloc((size_t)(n ? n : 1) * sizeof *a, "a node list");
    if (!a)
        return -1;
    if (n)
        memcpy(a, ids, (size_t)n * sizeof *a);
    qsort(a, (size_t)n, sizeof *a, cmp_int);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (m == 0 || a[m - 1] != a[i])
            a[m++] = a[i];
    *out = a, *nout = m;
    return 0;
}

int lp_graph_set_pinned(lp_graph *g, const int *ids, int n)
{
    int *a, m;
    if (node_set(g, ids, n, "pinned nodes", &a, &m) != 0)
        return -1;
    free(g->pinned);
    g->pinned = a, g->n_pinned = m;
    return 0;
}

int lp_graph_add_group(lp_graph *g, const char *name, const int *ids, int n)
{
    if (!name || !*name) {
        lp_set_error("graph: a supernode needs a name");
        return -1;
    }
    if (n < 1) {
        lp_set_error("graph: supernode '%s' has no nodes", name);
        return -1;
    }
    int *a, m;
    if (node_set(g, ids, n, "supernode", &a, &m) != 0)
        return -1;
    char *nm = lp_strdup(name, "a supernode name");
    if (!nm) {
        free(a);
        return -1;
    }
    for (int i = 0; i < g->n_groups; i++)
        if (!strcmp(g->groups[i].name, name)) {
            free(g->groups[i].name), free(g->groups[i].ids);
            g->groups[i] = (lp_graph_group){nm, m, a};
            return 0;
        }
    lp_graph_group *gs = realloc(g->groups, (size_t)(g->n_groups + 1) * sizeof *gs);
    if (!gs) {
        free(nm), free(a);
        lp_set_error_code(LP_ERR_NOMEM, "graph: cannot allocate a supernode");
        return -1;
    }
    g->groups = gs;
    g->groups[g->n_groups++] = (lp_graph_group){nm, m, a};
    return 0;
}

/* ---- edges: the only code that knows the storage ---- */

float lp_graph_edge(const lp_graph *g, int target, int source)
{
    return g->adj_[(size_t)target * g->n_nodes + source];
}

void lp_graph_set_edge(lp_graph *g, int target, int source, float w)
{
    g->adj_[(size_t)target * g->n_nodes + source] = w;
}

int64_t lp_graph_n_edges(const lp_graph *g)
{
    int64_t k = 0;
    size_t nn = (size_t)g->n_nodes * g->n_nodes;
    for (size_t i = 0; i < nn; i++)
        k += g->adj_[i] != 0.0f;
    return k;
}

void lp_graph_dense(const lp_graph *g, float *out)
{
    memcpy(out, g->adj_, (size_t)g->n_nodes * g->n_nodes * sizeof(float));
}

/* ---- node ids: circuit-tracer's forms (frontend/graph_models.py) ---- */

static void node_id(lp_graph_node *d, int n_layers)
{
    switch (d->kind) {
    case LP_NODE_FEATURE:
        snprintf(d->id, sizeof d->id, "%d_%d_%d", d->layer, d->feature, d->pos);
        break;
    case LP_NODE_ERROR: /* sic: circuit-tracer 0.5 writes "0_{layer}_{pos}" */
        snprintf(d->id, sizeof d->id, "0_%d_%d", d->layer, d->pos);
        break;
    case LP_NODE_EMBEDDING:
        snprintf(d->id, sizeof d->id, "E_%d_%d", (int)d->token, d->pos);
        break;
    case LP_NODE_LOGIT:
        snprintf(d->id, sizeof d->id, "%d_%d_%d", n_layers + 1, (int)d->token, d->pos);
        break;
    }
}

void lp_graph_node_id(lp_graph_node *d, int n_layers)
{
    node_id(d, n_layers);
}

static char *token_name(const lp_tokenizer *tok, int32_t id)
{
    const char *s = tok ? lp_tokenizer_token(tok, id) : NULL;
    char buf[24];
    if (!s) {
        snprintf(buf, sizeof buf, "%d", (int)id);
        s = buf;
    }
    return lp_strdup(s, "token text");
}

static char *dup_or_null(const char *s, int *fail)
{
    if (!s)
        return NULL;
    char *d = lp_strdup(s, "graph metadata");
    if (!d)
        *fail = 1;
    return d;
}

/* the cumulative influence share at each node's rank (descending; ties by index), as prune.c */
typedef struct rank_item {
    double v;
    int i;
} rank_item;

static int rank_desc(const void *a, const void *b)
{
    const rank_item *x = a, *y = b;
    return x->v < y->v ? 1 : x->v > y->v ? -1 : x->i - y->i;
}

static int cumulative(const double *I, int n, lp_graph_node *nodes)
{
    rank_item *r = lp_malloc((n ? (size_t)n : 1) * sizeof *r, "influence ranks");
    if (!r)
        return -1;
    double total = 0, cum = 0;
    for (int i = 0; i < n; i++)
        r[i] = (rank_item){I[i], i}, total += I[i];
    qsort(r, (size_t)n, sizeof *r, rank_desc);
    for (int k = 0; k < n; k++) {
        cum += r[k].v;
        nodes[r[k].i].influence = (float)(cum / total);
    }
    free(r);
    return 0;
}

lp_graph *lp_graph_from_replacement(const lp_replacement *r, float *A, const lp_graph_meta *meta,
                                    const lp_attrib_opts *o)
{
    lp_graph_meta none = {0};
    lp_attrib_opts def = lp_attrib_defaults();
    meta = meta ? meta : &none;
    o = o ? o : &def;
    int n = lp_replacement_n_nodes(r), T = r->T, L = r->n_layers, fail = 0;
    lp_graph *g = lp_calloc(1, sizeof *g, "graph");
    if (!g) {
        free(A);
        return NULL;
    }
    g->n_nodes = n, g->n_tokens = T, g->n_layers = L;
    g->adj_ = A; /* taken */
    g->replacement = g->completeness = NAN;
    g->node_threshold = g->edge_threshold = NAN;
    g->nodes = lp_calloc((size_t)n, sizeof *g->nodes, "graph nodes");
    g->tokens = lp_malloc((size_t)T * sizeof(int32_t), "graph tokens");
    g->token_text = lp_calloc((size_t)T, sizeof(char *), "graph tokens");
    double *I = lp_malloc((size_t)n * sizeof(double), "influence");
    if (!g->nodes || !g->tokens || !g->token_text || !I)
        goto fail;
    memcpy(g->tokens, r->tokens, (size_t)T * sizeof(int32_t));
    for (int t = 0; t < T; t++)
        if (!(g->token_text[t] = token_name(meta->tok, r->tokens[t])))
            goto fail;
    for (int i = 0; i < r->n_features; i++) {
        const lp_attrib_feature *f = &r->features[i];
        g->nodes[i] = (lp_graph_node){.kind = LP_NODE_FEATURE, .layer = f->layer, .pos = f->pos, .feature = f->feature,
                                      .token = -1, .activation = f->act};
    }
    for (int l = 0; l < L; l++)
        for (int t = 0; t < T; t++)
            g->nodes[lp_replacement_error_node(r, l, t)] =
                (lp_graph_node){.kind = LP_NODE_ERROR, .layer = l, .pos = t, .feature = -1, .token = -1,
                                .activation = NAN};
    for (int t = 0; t < T; t++) {
        lp_graph_node *d = &g->nodes[lp_replacement_embed_node(r, t)];
        *d = (lp_graph_node){.kind = LP_NODE_EMBEDDING, .layer = -1, .pos = t, .feature = -1, .token = r->tokens[t],
                             .activation = NAN};
        if (!(d->text = lp_strdup(g->token_text[t], "token text")))
            goto fail;
    }
    for (int i = 0; i < r->n_logits; i++) {
        lp_graph_node *d = &g->nodes[lp_replacement_logit_node(r, i)];
        *d = (lp_graph_node){.kind = LP_NODE_LOGIT, .layer = L, .pos = T - 1, .feature = -1,
                             .token = r->logit_tokens[i], .activation = NAN, .prob = r->logit_probs[i],
                             .is_target = i == 0};
        if (!(d->text = token_name(meta->tok, r->logit_tokens[i])))
            goto fail;
    }
    for (int i = 0; i < n; i++)
        node_id(&g->nodes[i], L);
    /* circuit-tracer's error id "0_{layer}_{pos}" is also the id of feature {layer} of layer 0
     * at pos: where both exist the error node takes the form "{layer}_-1_{pos}" */
    for (int i = 0; i < r->n_features; i++) {
        const lp_attrib_feature *f = &r->features[i];
        if (f->layer == 0 && f->feature < L) {
            lp_graph_node *e = &g->nodes[lp_replacement_error_node(r, f->feature, f->pos)];
            snprintf(e->id, sizeof e->id, "%d_-1_%d", e->layer, e->pos);
        }
    }
    lp_graph_shape sh = {r->n_features, L, T, r->n_logits, r->logit_probs};
    if (lp_attrib_influence(A, &sh, I) < 0 || cumulative(I, n, g->nodes) < 0 ||
        lp_attrib_scores(A, &sh, &g->replacement, &g->completeness) < 0)
        goto fail;
    g->model = dup_or_null(meta->model, &fail);
    g->scan = dup_or_null(meta->scan, &fail);
    g->slug = dup_or_null(meta->slug, &fail);
    g->prompt = dup_or_null(meta->prompt, &fail);
    g->generator = dup_or_null("loupe", &fail);
    g->generator_version = dup_or_null(LOUPE_VERSION, &fail);
    if (fail)
        goto fail;
    g->max_n_logits = o->max_n_logits;
    g->desired_logit_prob = o->desired_logit_prob;
    g->batch = o->batch;
    free(I);
    return g;
fail:
    free(I);
    lp_graph_free(g);
    return NULL;
}

/* ---- explicit targets ---- */

static float unembed_at(const lp_model *m, int v, int d)
{
    const lp_linear *u = &m->unembed; /* out V, in D */
    return u->trans ? u->w->data[(size_t)v * u->in + d] : u->w->data[(size_t)d * u->out + v];
}

int lp_replacement_set_target(lp_replacement *r, const lp_graph_target *t)
{
    const lp_model *m = r->m;
    int V = m->cfg.d_vocab, D = r->d_model;
    if (t->token < 0 || t->token >= V || t->minus_token >= V)
        return lp_set_error("attribution: the target token %d is not in the vocabulary (0..%d)",
                            t->token < 0 || t->token >= V ? t->token : t->minus_token, V - 1);
    const float *lg = r->logits + (size_t)(r->T - 1) * V;
    double mx = -INFINITY, z = 0;
    for (int v = 0; v < V; v++)
        mx = lg[v] > mx ? lg[v] : mx;
    for (int v = 0; v < V; v++)
        z += exp(lg[v] - mx);
    int32_t *tok = lp_malloc(sizeof *tok, "logit nodes");
    float *p = lp_malloc(sizeof *p, "logit nodes"), *dir = lp_malloc((size_t)D * sizeof *dir, "logit directions");
    double *mean = lp_calloc((size_t)D, sizeof(double), "mean unembedding");
    if (!tok || !p || !dir || !mean) {
        free(tok), free(p), free(dir), free(mean);
        return -1;
    }
    if (t->minus_token >= 0) {
        for (int d = 0; d < D; d++)
            dir[d] = unembed_at(m, t->token, d) - unembed_at(m, t->minus_token, d);
    } else {
        for (int v = 0; v < V; v++)
            for (int d = 0; d < D; d++)
                mean[d] += unembed_at(m, v, d);
        for (int d = 0; d < D; d++)
            dir[d] = (float)(unembed_at(m, t->token, d) - mean[d] / V);
    }
    free(mean);
    *tok = t->token;
    *p = (float)(exp(lg[t->token] - mx) / z); /* the influence weight: the target's probability */
    free(r->logit_tokens), free(r->logit_probs), free(r->logit_dirs);
    r->logit_tokens = tok, r->logit_probs = p, r->logit_dirs = dir;
    r->n_logits = 1;
    return 0;
}

/* The edges with at most o->max_feature_nodes features, processed in influence order
 * (lp_attrib_edges_rows): r's feature list is cut to the kept ones (so that the node order
 * is the graph's) and *A is the dense square matrix over the remaining nodes. */
static int kept_edges(lp_replacement *r, const lp_attrib_opts *o, float **A)
{
    lp_attrib_matrix M = {0};
    if (lp_attrib_edges_rows(r, o, &M) < 0 || lp_attrib_matrix_dense(&M, A) < 0) {
        lp_attrib_matrix_clear(&M);
        return -1;
    }
    for (int k = 0; k < M.n_kept; k++)
        r->features[k] = r->features[M.kept[k]];
    r->n_features = M.n_kept;
    lp_attrib_matrix_clear(&M);
    return 0;
}

static lp_graph *attribute(const lp_model *m, const lp_transcoder_set *tcs, const lp_clt *clt, const int32_t *tokens,
                           int T, const lp_attrib_opts *o, const lp_graph_target *target, const lp_graph_meta *meta)
{
    lp_attrib_opts def = lp_attrib_defaults();
    o = o ? o : &def;
    if (T < 1)
        return lp_set_error("attribution: the prompt has no tokens"), NULL;
    if (m->cfg.n_ctx > 0 && T > m->cfg.n_ctx)
        return lp_set_error("attribution: the prompt has %d tokens, more than the model's context (%d)", T,
                            m->cfg.n_ctx),
               NULL;
    if (o->batch < 1)
        return lp_set_error("attribution: batch must be at least 1 (got %d)", o->batch), NULL;
    for (int t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= m->cfg.d_vocab)
            return lp_set_error("attribution: token %d (position %d) is not in the vocabulary", (int)tokens[t], t),
                   NULL;
    lp_replacement *r = clt ? lp_replacement_build_clt(m, clt, tokens, T, o) : lp_replacement_build(m, tcs, tokens, T, o);
    if (!r)
        return NULL;
    if (target && target->set && lp_replacement_set_target(r, target) < 0) {
        lp_replacement_free(r);
        return NULL;
    }
    float *A = NULL;
    if ((o->max_feature_nodes > 0 && o->max_feature_nodes < r->n_features ? kept_edges(r, o, &A)
                                                                          : lp_attrib_edges(r, o->batch, &A)) < 0) {
        lp_replacement_free(r);
        return NULL;
    }
    lp_graph *g = lp_graph_from_replacement(r, A, meta, o);
    if (g)
        g->max_feature_nodes = o->max_feature_nodes;
    lp_replacement_free(r);
    if (g && target && target->set && (target->minus_token >= 0 || target->text)) {
        lp_graph_node *d = &g->nodes[g->n_nodes - 1];
        if (target->minus_token >= 0) { /* circuit-tracer's virtual index for a custom target */
            d->token = m->cfg.d_vocab;
            node_id(d, g->n_layers);
        }
        if (target->text) {
            char *s = lp_strdup(target->text, "target text");
            if (!s) {
                lp_graph_free(g);
                return NULL;
            }
            free(d->text);
            d->text = s;
        }
    }
    return g;
}

lp_graph *lp_graph_attribute(const lp_model *m, const lp_transcoder_set *tcs, const int32_t *tokens, int T,
                             const lp_attrib_opts *o, const lp_graph_target *target, const lp_graph_meta *meta)
{
    return attribute(m, tcs, NULL, tokens, T, o, target, meta);
}

lp_graph *lp_graph_attribute_clt(const lp_model *m, const lp_clt *clt, const int32_t *tokens, int T,
                                 const lp_attrib_opts *o, const lp_graph_target *target, const lp_graph_meta *meta)
{
    if (!clt)
        return lp_set_error("attribution: no cross-layer transcoder"), NULL;
    return attribute(m, NULL, clt, tokens, T, o, target, meta);
}

/* ---- pruning ---- */

/* A graph with g's metadata and copies of the nodes idx[0..n) (no edges). */
static lp_graph *subgraph(const lp_graph *g, const int *idx, int n)
{
    lp_graph *h = lp_graph_alloc(n, g->n_tokens);
    int fail = 0;
    if (!h)
        return NULL;
    h->n_layers = g->n_layers;
    memcpy(h->tokens, g->tokens, (size_t)g->n_tokens * sizeof(int32_t));
    for (int t = 0; t < g->n_tokens; t++)
        h->token_text[t] = dup_or_null(g->token_text[t], &fail);
    for (int i = 0; i < n; i++) {
        h->nodes[i] = g->nodes[idx[i]];
        h->nodes[i].text = dup_or_null(g->nodes[idx[i]].text, &fail);
        h->nodes[i].label = dup_or_null(g->nodes[idx[i]].label, &fail);
    }
    h->prompt = dup_or_null(g->prompt, &fail);
    h->model = dup_or_null(g->model, &fail);
    h->scan = dup_or_null(g->scan, &fail);
    h->slug = dup_or_null(g->slug, &fail);
    h->generator = dup_or_null(g->generator, &fail);
    h->generator_version = dup_or_null(g->generator_version, &fail);
    h->qk_tracing = dup_or_null(g->qk_tracing, &fail);
    h->qparams_supernodes = dup_or_null(g->qparams_supernodes, &fail);
    h->replacement = g->replacement, h->completeness = g->completeness;
    h->node_threshold = g->node_threshold, h->edge_threshold = g->edge_threshold;
    h->max_n_logits = g->max_n_logits, h->batch = g->batch, h->max_feature_nodes = g->max_feature_nodes;
    h->desired_logit_prob = g->desired_logit_prob;
    if (fail) {
        lp_graph_free(h);
        return NULL;
    }
    return h;
}

/* Each node's index in the full layout [features][errors (layer, pos)][embeddings][logits]
 * that prune.h expects; *F and *K the feature and logit counts. */
static int full_layout(const lp_graph *g, int *p, int *F, int *K, int *N)
{
    int L = g->n_layers, T = g->n_tokens, f = 0, k = 0;
    if ((int64_t)(L + 1) * T + g->n_nodes > (int64_t)1 << 30)
        return lp_set_error("graph: %d layers x %d tokens is too large to prune", L, T);
    for (int i = 0; i < g->n_nodes; i++)
        f += g->nodes[i].kind == LP_NODE_FEATURE, k += g->nodes[i].kind == LP_NODE_LOGIT;
    int base_e = f, base_t = f + L * T, base_l = base_t + T, fi = 0, ki = 0;
    uint8_t *seen = lp_calloc((size_t)(L + 1) * (T ? T : 1), 1, "node layout");
    if (!seen)
        return -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const lp_graph_node *d = &g->nodes[i];
        int slot = -1;
        switch (d->kind) {
        case LP_NODE_FEATURE:
            p[i] = fi++;
            continue;
        case LP_NODE_LOGIT:
            p[i] = base_l + ki++;
            continue;
        case LP_NODE_ERROR:
            if (d->layer < 0 || d->layer >= L || d->pos < 0 || d->pos >= T)
                break;
            slot = d->layer * T + d->pos;
            p[i] = base_e + slot;
            break;
        case LP_NODE_EMBEDDING:
            if (d->pos < 0 || d->pos >= T)
                break;
            slot = L * T + d->pos;
            p[i] = base_t + d->pos;
            break;
        }
        if (slot < 0 || seen[slot]) {
            free(seen);
            return lp_set_error("graph: node '%s' is %s (layer %d, position %d of %d layers and %d tokens)", d->id,
                                slot < 0 ? "out of range" : "a duplicate", d->layer, d->pos, L, T);
        }
        seen[slot] = 1;
    }
    free(seen);
    *F = f, *K = k, *N = base_l + k;
    return 0;
}

lp_graph *lp_graph_prune(const lp_graph *g, double node_threshold, double edge_threshold)
{
    int n = g->n_nodes, F = 0, K = 0, N = 0;
    int *p = lp_malloc((n ? (size_t)n : 1) * sizeof(int), "node layout"), *keep = NULL;
    float *P = NULL, *probs = NULL;
    lp_attrib_pruned pr = {0};
    lp_graph *h = NULL;
    if (!p || full_layout(g, p, &F, &K, &N) < 0)
        goto done;
    P = lp_calloc((size_t)N * N, sizeof(float), "padded adjacency");
    probs = lp_malloc((K ? (size_t)K : 1) * sizeof(float), "logit weights");
    keep = lp_malloc((n ? (size_t)n : 1) * sizeof(int), "kept nodes");
    if (!P || !probs || !keep)
        goto done;
    for (int t = 0; t < n; t++) {
        if (lp_interrupt_check() < 0)
            goto done;
        for (int s = 0; s < n; s++)
            P[(size_t)p[t] * N + p[s]] = lp_graph_edge(g, t, s);
    }
    for (int i = 0; i < n; i++)
        if (g->nodes[i].kind == LP_NODE_LOGIT)
            probs[p[i] - (N - K)] = g->nodes[i].prob;
    lp_graph_shape sh = {F, g->n_layers, g->n_tokens, K, probs};
    if (lp_attrib_prune(P, &sh, node_threshold, edge_threshold, &pr) < 0)
        goto done;
    /* circuit-tracer's selection: kept edges between kept nodes; kept nodes with such an edge,
     * embeddings and logits always */
    uint8_t *used = lp_calloc((n ? (size_t)n : 1), 1, "kept nodes");
    if (!used)
        goto done;
    for (int t = 0; t < n; t++)
        for (int s = 0; s < n; s++) {
            size_t e = (size_t)p[t] * N + p[s];
            if (pr.edge_mask[e] && pr.node_mask[p[t]] && pr.node_mask[p[s]] && lp_graph_edge(g, t, s) != 0.0f)
                used[t] = used[s] = 1;
        }
    int m = 0;
    for (int i = 0; i < n; i++) {
        lp_node_kind k = g->nodes[i].kind;
        if (pr.node_mask[p[i]] && (used[i] || k == LP_NODE_EMBEDDING || k == LP_NODE_LOGIT))
            keep[m++] = i;
    }
    free(used);
    if (!(h = subgraph(g, keep, m)))
        goto done;
    for (int a = 0; a < m; a++) {
        h->nodes[a].influence = (float)pr.cumulative[p[keep[a]]];
        for (int b = 0; b < m; b++)
            if (pr.edge_mask[(size_t)p[keep[a]] * N + p[keep[b]]])
                lp_graph_set_edge(h, a, b, lp_graph_edge(g, keep[a], keep[b]));
    }
    h->node_threshold = node_threshold, h->edge_threshold = edge_threshold;
done:
    lp_attrib_pruned_clear(&pr);
    free(p), free(P), free(probs), free(keep);
    return h;
}
