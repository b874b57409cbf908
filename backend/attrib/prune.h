/* Pruning and scores of an attribution graph (the team's ATTRIBUTION.md, "Pruning and
 * scores"; circuit-tracer's prune_graph and compute_graph_scores): on a dense adjacency
 * matrix A (n x n, rows targets, columns sources, node order [features][errors]
 * [embeddings][logits]), in double precision.
 *
 *   w = 0 except the logit nodes (their probabilities); Ahat = |A| with each row divided by
 *   its sum (at least 1e-10); influence I = sum_{k>=1} w^T Ahat^k (iterated: acyclic).
 */
#ifndef LP_ATTRIB_PRUNE_H
#define LP_ATTRIB_PRUNE_H

#include <stdint.h>

typedef struct lp_graph_shape {
    int n_features, n_layers, n_tokens, n_logits; /* n = n_features + (n_layers + 1) n_tokens + n_logits */
    const float *logit_probs;                     /* n_logits */
} lp_graph_shape;

int lp_graph_shape_nodes(const lp_graph_shape *s);

/* The influence I of every node (out: n). 0, or -1 with an error (no memory; no
 * convergence in 1000 steps, which only a cyclic matrix gives). */
int lp_attrib_influence(const float *A, const lp_graph_shape *s, double *out);

/* The value of x (n of them) where the cumulative share of x sorted descending reaches tau
 * (the last one when it never does). -1 with an error only on no memory (*out untouched). */
int lp_attrib_find_threshold(const double *x, int64_t n, double tau, double *out);

typedef struct lp_attrib_pruned {
    uint8_t *node_mask;  /* n: kept nodes */
    uint8_t *edge_mask;  /* n x n: kept edges */
    double *cumulative;  /* n: the node's cumulative influence share at its rank (lower = more important) */
} lp_attrib_pruned;

/* Node pruning at node_threshold (embeddings and logits always kept), edge pruning at
 * edge_threshold on the pruned matrix, then dropping features and errors without a kept
 * outgoing edge and features without a kept incoming one until nothing changes. Thresholds
 * in [0, 1] (an error otherwise). out's arrays are allocated here; free with
 * lp_attrib_pruned_clear. */
int lp_attrib_prune(const float *A, const lp_graph_shape *s, double node_threshold, double edge_threshold,
                    lp_attrib_pruned *out);
void lp_attrib_pruned_clear(lp_attrib_pruned *p);

/* replacement = I(embeddings) / (I(embeddings) + I(errors)); completeness = sum_i (1 -
 * sum_{e in errors} Ahat[i,e]) (I_i + w_i) / sum_i (I_i + w_i). */
int lp_attrib_scores(const float *A, const lp_graph_shape *s, double *replacement, double *completeness);

#endif
