/* Influence, thresholds, pruning and graph scores (prune.h), as circuit-tracer computes them,
 * in double precision. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/prune.h"
#include "core/error.h"

int lp_graph_shape_nodes(const lp_graph_shape *s)
{
    return s->n_features + (s->n_layers + 1) * s->n_tokens + s->n_logits;
}

/* Ahat (n x n) of the matrix A with the rows / columns outside keep zeroed (keep NULL: all) */
static double *normalized(const float *A, int n, const uint8_t *keep)
{
    double *h = lp_malloc((size_t)n * n * sizeof(double), "the normalised adjacency matrix");
    if (!h)
        return NULL;
    for (int i = 0; i < n; i++) {
        double sum = 0, *hr = h + (size_t)i * n;
        const float *ar = A + (size_t)i * n;
        for (int j = 0; j < n; j++) {
            hr[j] = keep && (!keep[i] || !keep[j]) ? 0.0 : fabs((double)ar[j]);
            sum += hr[j];
        }
        sum = sum < 1e-10 ? 1e-10 : sum;
        for (int j = 0; j < n; j++)
            hr[j] /= sum;
    }
    return h;
}

static void logit_weights(const lp_graph_shape *s, int n, double *w)
{
    memset(w, 0, (size_t)n * sizeof(double));
    for (int i = 0; i < s->n_logits; i++)
        w[n - s->n_logits + i] = s->logit_probs[i];
}

/* I = sum_{k>=1} w^T H^k */
static int influence_of(const double *H, int n, const double *w, double *I)
{
    double *cur = lp_malloc((size_t)n * sizeof(double), "influence"), *nxt = lp_malloc((size_t)n * sizeof(double), "influence");
    if (!cur || !nxt) {
        free(cur);
        free(nxt);
        return -1;
    }
    memcpy(cur, w, (size_t)n * sizeof(double));
    memset(I, 0, (size_t)n * sizeof(double));
    int rc = -1;
    for (int it = 0; it <= 1000; it++) {
        memset(nxt, 0, (size_t)n * sizeof(double));
        int any = 0;
        for (int i = 0; i < n; i++) {
            if (cur[i] == 0.0)
                continue;
            const double *hr = H + (size_t)i * n;
            for (int j = 0; j < n; j++)
                nxt[j] += cur[i] * hr[j];
        }
        for (int j = 0; j < n; j++) {
            I[j] += nxt[j];
            any |= nxt[j] != 0.0;
        }
        if (!any) {
            rc = 0;
            break;
        }
        double *t = cur;
        cur = nxt;
        nxt = t;
    }
    if (rc < 0)
        lp_set_error("attribution: the influence did not converge in 1000 steps (is the graph cyclic?)");
    free(cur);
    free(nxt);
    return rc;
}

int lp_attrib_influence(const float *A, const lp_graph_shape *s, double *out)
{
    int n = lp_graph_shape_nodes(s);
    double *H = normalized(A, n, NULL), *w = lp_malloc((size_t)n * sizeof(double), "logit weights");
    int rc = -1;
    if (H && w) {
        logit_weights(s, n, w);
        rc = influence_of(H, n, w, out);
    }
    free(H);
    free(w);
    return rc;
}

static int desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int lp_attrib_find_threshold(const double *x, int64_t n, double tau, double *out)
{
    double *v = lp_malloc((size_t)n * sizeof(double), "threshold");
    if (!v)
        return -1;
    memcpy(v, x, (size_t)n * sizeof(double));
    qsort(v, (size_t)n, sizeof(double), desc);
    double total = 0, cum = 0;
    for (int64_t i = 0; i < n; i++)
        total += v[i];
    int64_t k = n - 1;
    for (int64_t i = 0; i < n; i++) { /* the first rank where the share reaches tau */
        cum += v[i];
        if (cum / total >= tau) {
            k = i;
            break;
        }
    }
    *out = v[k];
    free(v);
    return 0;
}

void lp_attrib_pruned_clear(lp_attrib_pruned *p)
{
    free(p->node_mask);
    free(p->edge_mask);
    free(p->cumulative);
    memset(p, 0, sizeof *p);
}

typedef struct rank_item {
    double v;
    int i;
} rank_item;

static int rank_desc(const void *a, const void *b)
{
    const rank_item *x = a, *y = b;
    return x->v < y->v ? 1 : x->v > y->v ? -1 : x->i - y->i;
}

static int cumulative_shares(const double *I, int n, double *out)
{
    rank_item *r = lp_malloc((size_t)n * sizeof *r, "influence ranks");
    if (!r)
        return -1;
    double total = 0, cum = 0;
    for (int i = 0; i < n; i++)
        r[i] = (rank_item){I[i], i}, total += I[i];
    qsort(r, (size_t)n, sizeof *r, rank_desc);
    for (int k = 0; k < n; k++) {
        cum += r[k].v;
        out[r[k].i] = cum / total;
    }
    free(r);
    return 0;
}

int lp_attrib_prune(const float *A, const lp_graph_shape *s, double node_threshold, double edge_threshold,
                    lp_attrib_pruned *out)
{
    memset(out, 0, sizeof *out);
    if (!(node_threshold >= 0 && node_threshold <= 1) || !(edge_threshold >= 0 && edge_threshold <= 1))
        return lp_set_error("attribution: node_threshold and edge_threshold must be in [0, 1] (got %g, %g)",
                            node_threshold, edge_threshold);
    int n = lp_graph_shape_nodes(s), fixed = n - s->n_logits - s->n_tokens;
    size_t nn = (size_t)n * n;
    double *w = lp_malloc((size_t)n * sizeof(double), "logit weights"), *I = lp_malloc((size_t)n * sizeof(double), "influence"),
           *H = NULL, *score = NULL, thr;
    out->node_mask = lp_malloc((size_t)n, "node mask");
    out->edge_mask = lp_calloc(nn, 1, "edge mask");
    out->cumulative = lp_malloc((size_t)n * sizeof(double), "cumulative influence");
    int rc = -1;
    if (!w || !I || !out->node_mask || !out->edge_mask || !out->cumulative)
        goto done;
    logit_weights(s, n, w);
    if (lp_attrib_influence(A, s, I) < 0 || lp_attrib_find_threshold(I, n, node_threshold, &thr) < 0)
        goto done;
    uint8_t *keep = out->node_mask, *edge = out->edge_mask;
    for (int i = 0; i < n; i++)
        keep[i] = i >= fixed || I[i] >= thr;
    /* edges: Ahat of the pruned matrix times the pruned influence (+ w) of their target */
    if (!(H = normalized(A, n, keep)) || !(score = lp_malloc((size_t)n * sizeof(double), "pruned influence")) ||
        influence_of(H, n, w, score) < 0)
        goto done;
    for (int i = 0; i < n; i++) {
        double t = score[i] + w[i];
        for (int j = 0; j < n; j++)
            H[(size_t)i * n + j] *= t;
    }
    if (lp_attrib_find_threshold(H, (int64_t)nn, edge_threshold, &thr) < 0)
        goto done;
    for (size_t k = 0; k < nn; k++)
        edge[k] = H[k] >= thr;
    /* features and errors need a kept outgoing edge, features a kept incoming one */
    for (int changed = 1, first = 1; changed; first = 0) {
        changed = 0;
        if (!first)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    if (!keep[i] || !keep[j])
                        edge[(size_t)i * n + j] = 0;
        uint8_t *next = lp_malloc((size_t)n, "node mask");
        if (!next)
            goto done;
        memcpy(next, keep, (size_t)n);
        for (int j = 0; j < fixed; j++) {
            int any = 0;
            for (int i = 0; i < n && !any; i++)
                any = edge[(size_t)i * n + j];
            next[j] &= any;
        }
        for (int i = 0; i < s->n_features; i++) {
            int any = 0;
            for (int j = 0; j < n && !any; j++)
                any = edge[(size_t)i * n + j];
            next[i] &= any;
        }
        changed = memcmp(next, keep, (size_t)n) != 0;
        memcpy(keep, next, (size_t)n);
        free(next);
    }
    if (cumulative_shares(I, n, out->cumulative) < 0)
        goto done;
    rc = 0;
done:
    free(w);
    free(I);
    free(H);
    free(score);
    if (rc < 0)
        lp_attrib_pruned_clear(out);
    return rc;
}

int lp_attrib_scores(const float *A, const lp_graph_shape *s, double *replacement, double *completeness)
{
    int n = lp_graph_shape_nodes(s), e0 = s->n_features, e1 = e0 + s->n_layers * s->n_tokens, t1 = e1 + s->n_tokens;
    double *H = normalized(A, n, NULL), *w = lp_malloc((size_t)n * sizeof(double), "logit weights"),
           *I = lp_malloc((size_t)n * sizeof(double), "influence");
    int rc = -1;
    if (!H || !w || !I)
        goto done;
    logit_weights(s, n, w);
    if (influence_of(H, n, w, I) < 0)
        goto done;
    double tok = 0, err = 0, num = 0, den = 0;
    for (int i = e0; i < e1; i++)
        err += I[i];
    for (int i = e1; i < t1; i++)
        tok += I[i];
    for (int i = 0; i < n; i++) {
        double fe = 0;
        for (int j = e0; j < e1; j++)
            fe += H[(size_t)i * n + j];
        num += (1 - fe) * (I[i] + w[i]);
        den += I[i] + w[i];
    }
    *replacement = tok / (tok + err);
    *completeness = num / den;
    rc = 0;
done:
    free(H);
    free(w);
    free(I);
    return rc;
}
