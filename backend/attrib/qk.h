/* QK attribution: one head's pre-softmax attention score at one (query, key) pair of
 * positions, decomposed into contributions of pairs of nodes (the team's ATTRIBUTION.md
 * replacement model: attention patterns and every norm scale frozen at their values in the
 * real forward pass, the MLPs replaced by transcoders plus error vectors).
 *
 *   lp_qk *q = lp_qk_compute(m, tcs, toks, T, layer, head, query, key);
 *   if (!q) report(lp_last_error());
 *   ... q->terms[i], lp_qk_pair(q, i, j), q->q_marg[i], q->k_marg[j] ...
 *   lp_qk_free(q);
 *
 * With the ln1 scale of the head's layer frozen, the head's query at `query` is a sum over
 * terms i of a vector Q_i (d_head), and its key at `key` a sum of K_j: each term's part of
 * the residual stream reaching the attention input, through the frozen linear model (the
 * OV paths of earlier layers with their patterns, the transcoders' skips), then the norm's
 * centring, scale and weight, then W_Q (W_K). The score is
 *   s = sum_{i,j} Q_i . K_j / sqrt(d_head)
 * exactly (up to rounding). Terms: every active transcoder feature (positions >= 1) and
 * error node of the layers before the head's, every token embedding (graph node ids, the
 * forms of graph.h), and three that are no graph node: "pos_embed" (the position
 * embeddings), "bias" (every bias: the norms', b_Q/b_K, b_V, b_O, the transcoders' b_dec)
 * and "bos_mlp" (the MLP outputs at position 0, whose features and errors the graph
 * zeroes). GPT-2-family models (learned positions, no rotary embedding) only.
 */
#ifndef LP_ATTRIB_QK_H
#define LP_ATTRIB_QK_H

#include <stdint.h>

#include "dict/sae.h"
#include "model/model.h"

typedef enum lp_qk_kind {
    LP_QK_FEATURE,
    LP_QK_ERROR,
    LP_QK_EMBEDDING,
    LP_QK_POS_EMBED,
    LP_QK_BIAS,
    LP_QK_BOS_MLP
} lp_qk_kind;

typedef struct lp_qk_term {
    lp_qk_kind kind;
    int layer, pos, feature; /* -1 where not meaningful */
    float act;               /* features: the activation; else 0 */
    char id[64];             /* the graph's node id (lp_graph_node_id) or the name */
} lp_qk_term;

typedef struct lp_qk {
    int layer, head, query, key, d_head; /* positions 0-based */
    int n_terms;
    lp_qk_term *terms;
    float *qv, *kv;         /* n_terms x d_head: Q_i and K_i */
    double score;           /* the model's pre-softmax score (attn.hook_attn_scores) */
    double total;           /* sum of every pair's contribution */
    double *q_marg, *k_marg; /* n_terms: Q_i . sum_j K_j / sqrt(d_head), sum_i Q_i . K_j / sqrt(d_head) */
} lp_qk;

/* The decomposition of head `head` of layer `layer` at (query, key), key <= query < T.
 * tcs: a per-layer set on mlp.hook_in -> mlp.hook_out (as lp_replacement_build). NULL with
 * an error. */
lp_qk *lp_qk_compute(const lp_model *m, const lp_transcoder_set *tcs, const int32_t *tokens, int T, int layer,
                     int head, int query, int key);
void lp_qk_free(lp_qk *q); /* NULL is a no-op */

/* Q_i . K_j / sqrt(d_head) */
double lp_qk_pair(const lp_qk *q, int i, int j);

typedef struct lp_qk_pair_t {
    int q, k; /* term indices */
    double value;
} lp_qk_pair_t;

/* The explanation as one qk_tracing_results entry (graph.h lp_graph_add_qk), k of each;
 * NULL with an error. */
struct json_t;
struct json_t *lp_qk_json(const lp_qk *q, int k);

/* The k pairs of largest |contribution|, descending, into *out (malloc'd); returns how many
 * (k or fewer), -1 with an error. */
int lp_qk_top_pairs(const lp_qk *q, int k, lp_qk_pair_t **out);

#endif
