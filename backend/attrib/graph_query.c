/* Questions asked of an attribution graph (graph.h): a node by its id, a node's strongest
 * inputs and outputs, and the strongest paths from the prompt's embeddings to the logits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/graph.h"
#include "core/error.h"

int lp_graph_find(const lp_graph *g, const char *id)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (!strcmp(g->nodes[i].id, id))
            return i;
    return -1;
}

static int by_magnitude(const void *a, const void *b)
{
    const lp_graph_link *x = a, *y = b;
    float u = fabsf(x->weight), v = fabsf(y->weight);
    return u < v ? 1 : u > v ? -1 : x->node - y->node;
}

static int links(const lp_graph *g, int i, int k, int inputs, lp_graph_link **out)
{
    *out = NULL;
    if (i < 0 || i >= g->n_nodes)
        return lp_set_error("graph: node %d out of range (%d nodes)", i, g->n_nodes);
    lp_graph_link *l = lp_malloc((g->n_nodes ? (size_t)g->n_nodes : 1) * sizeof *l, "graph links");
    if (!l)
        return -1;
    int n = 0;
    for (int j = 0; j < g->n_nodes; j++) {
        float w = inputs ? lp_graph_edge(g, i, j) : lp_graph_edge(g, j, i);
        if (w != 0.0f)
            l[n++] = (lp_graph_link){j, w};
    }
    qsort(l, (size_t)n, sizeof *l, by_magnitude);
    *out = l;
    return k > 0 && k < n ? k : n;
}

int lp_graph_in(const lp_graph *g, int i, int k, lp_graph_link **out)
{
    return links(g, i, k, 1, out);
}

int lp_graph_out(const lp_graph *g, int i, int k, lp_graph_link **out)
{
    return links(g, i, k, 0, out);
}

/* ---- paths: the k best by product of normalised weights, through the layers in order ---- */

typedef struct entry {
    double score;
    int prev, prev_entry; /* the node before and its entry; -1 at an embedding */
    int sign;
} entry;

/* embeddings, then layers 0.., then logits: every edge goes up this order */
static int rank_of(const lp_graph *g, int i)
{
    const lp_graph_node *d = &g->nodes[i];
    return d->kind == LP_NODE_EMBEDDING ? 0 : d->kind == LP_NODE_LOGIT ? g->n_layers + 1 : d->layer + 1;
}

typedef struct order_item {
    int rank, i;
} order_item;

static int order_cmp(const void *a, const void *b)
{
    const order_item *x = a, *y = b;
    return x->rank != y->rank ? x->rank - y->rank : x->i - y->i;
}

/* inserts e into the sorted (descending) list l of *n entries, at most k */
static void offer(entry *l, int *n, int k, entry e)
{
    if (*n == k && e.score <= l[k - 1].score)
        return;
    int j = *n < k ? (*n)++ : k - 1;
    while (j > 0 && l[j - 1].score < e.score) {
        l[j] = l[j - 1];
        j--;
    }
    l[j] = e;
}

void lp_graph_paths_free(lp_graph_path *p, int n)
{
    for (int i = 0; p && i < n; i++)
        free(p[i].nodes);
    free(p);
}

int lp_graph_paths(const lp_graph *g, int k, int from, int to, lp_graph_path **out)
{
    int n = g->n_nodes, rc = -1, found = 0;
    *out = NULL;
    if (k < 1)
        return lp_set_error("graph: paths: k must be at least 1 (got %d)", k);
    if (from >= n || to >= n)
        return lp_set_error("graph: paths: node %d out of range (%d nodes)", from >= n ? from : to, n);
    if (from >= 0 && g->nodes[from].kind == LP_NODE_LOGIT)
        return lp_set_error("graph: paths: a path cannot start at a logit node ('%s')", g->nodes[from].id);
    if ((size_t)n * k > ((size_t)1 << 31))
        return lp_set_error("graph: paths: k = %d is too many for %d nodes", k, n);
    entry *E = lp_malloc(((size_t)n * k + 1) * sizeof *E, "path table"), *best = NULL;
    int *cnt = lp_calloc((size_t)n + 1, sizeof(int), "path table");
    double *rowsum = lp_calloc((size_t)n + 1, sizeof(double), "path table");
    order_item *ord = lp_malloc(((size_t)n + 1) * sizeof *ord, "path table");
    lp_graph_path *res = NULL;
    if (!E || !cnt || !rowsum || !ord)
        goto done;
    for (int t = 0; t < n; t++) {
        for (int s = 0; s < n; s++)
            rowsum[t] += fabs((double)lp_graph_edge(g, t, s));
        ord[t] = (order_item){rank_of(g, t), t};
    }
    qsort(ord, (size_t)n, sizeof *ord, order_cmp);
    for (int a = 0; a < n; a++) {
        int t = ord[a].i;
        const lp_graph_node *d = &g->nodes[t];
        if (d->kind == LP_NODE_EMBEDDING) {
            if (from < 0 || from == t)
                E[(size_t)t * k] = (entry){1.0, -1, -1, 1}, cnt[t] = 1;
            continue;
        }
        if (rowsum[t] <= 0)
            continue;
        for (int s = 0; s < n; s++) {
            float w = lp_graph_edge(g, t, s);
            if (w == 0.0f || !cnt[s] || rank_of(g, s) >= ord[a].rank)
                continue;
            double f = fabs((double)w) / rowsum[t];
            for (int e = 0; e < cnt[s]; e++) {
                const entry *x = &E[(size_t)s * k + e];
                offer(E + (size_t)t * k, &cnt[t], k, (entry){x->score * f, s, e, x->sign * (w < 0 ? -1 : 1)});
            }
        }
    }
    /* the best k over the logit nodes allowed as ends */
    if (!(best = lp_malloc((size_t)k * sizeof *best, "paths")))
        goto done;
    for (int t = 0; t < n; t++) {
        if (g->nodes[t].kind != LP_NODE_LOGIT || (to >= 0 && t != to))
            continue;
        for (int e = 0; e < cnt[t]; e++) {
            entry x = E[(size_t)t * k + e]; /* a path's end: (node t, its entry e) */
            offer(best, &found, k, (entry){x.score, t, e, x.sign});
        }
    }
    res = lp_calloc((size_t)(found ? found : 1), sizeof *res, "paths");
    if (!res)
        goto done;
    for (int p = 0; p < found; p++) {
        int len = 0;
        for (int t = best[p].prev, e = best[p].prev_entry; t >= 0;) {
            const entry *x = &E[(size_t)t * k + e];
            len++;
            t = x->prev, e = x->prev_entry;
        }
        res[p].nodes = lp_malloc((size_t)len * sizeof(int), "path");
        if (!res[p].nodes) {
            lp_graph_paths_free(res, found);
            res = NULL;
            goto done;
        }
        res[p].n = len, res[p].score = best[p].score, res[p].sign = best[p].sign;
        int j = len;
        for (int t = best[p].prev, e = best[p].prev_entry; t >= 0;) {
            const entry *x = &E[(size_t)t * k + e];
            res[p].nodes[--j] = t;
            t = x->prev, e = x->prev_entry;
        }
    }
    *out = res;
    rc = found;
done:
    free(E), free(cnt), free(rowsum), free(ord), free(best);
    return rc;
}
