/* An attribution graph that lives on after the model: its nodes, its edges, the prompt,
 * scores, thresholds and where it came from (the team's ATTRIBUTION.md), with the queries
 * people ask of it and its file form, circuit-tracer's graph JSON (schema 1).
 *
 *   lp_attrib_opts o = lp_attrib_defaults();
 *   lp_graph_target tg = {0};                          // the model's top logits
 *   lp_graph *g = lp_graph_attribute(m, tcs, toks, T, &o, &tg, &meta);
 *   lp_graph *p = g ? lp_graph_prune(g, 0.8, 0.98) : NULL;
 *   if (!p || lp_graph_save_json(p, "graph.json") < 0) report(lp_last_error());
 *   lp_graph_free(p); lp_graph_free(g);
 *   lp_graph *h = lp_graph_load_json("graph.json");   // circuit-tracer's and Neuronpedia's too
 *
 * Nodes are kept in the engine's order ([features][errors][embeddings][logits], replace.h)
 * when the graph comes from a replacement model; a loaded graph keeps the file's order.
 * Node kinds are never guessed from an index: each node says what it is.
 *
 * Edges: A[t, s] (target row, source column), read and written only through
 * lp_graph_edge / lp_graph_in / lp_graph_out and friends, so that the storage (dense n x n
 * today) can change without touching callers.
 *
 * Ownership: a graph owns everything it points to; lp_graph_free(NULL) is a no-op.
 */
#ifndef LP_ATTRIB_GRAPH_H
#define LP_ATTRIB_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "attrib/replace.h"
#include "tokenizer/tokenizer.h"

typedef enum lp_node_kind { LP_NODE_FEATURE, LP_NODE_ERROR, LP_NODE_EMBEDDING, LP_NODE_LOGIT } lp_node_kind;

const char *lp_node_kind_name(lp_node_kind k); /* "feature", "error", "embedding", "logit" */

typedef struct lp_graph_node {
    lp_node_kind kind;
    int layer;        /* features and errors: the layer; embeddings -1; logits n_layers */
    int pos;          /* position in the prompt, 0-based (the file's ctx_idx) */
    int feature;      /* features: the transcoder's feature index; others -1 */
    int32_t token;    /* embeddings and logits: the token id (a logit difference: d_vocab + i); else -1 */
    float activation; /* features: the activation; NaN otherwise */
    float prob;       /* logits: the probability (the influence weight); 0 otherwise */
    float influence;  /* the cumulative influence share at the node's rank (lower = more important); NaN unknown */
    int is_target;    /* logits: the first target (circuit-tracer's is_target_logit) */
    char *text;       /* embeddings and logits: the token's text; NULL otherwise */
    char *label;      /* the file's clerp (may be NULL) */
    char id[64];      /* the file's node_id, circuit-tracer's forms (see graph_json.c) */
} lp_graph_node;

/* A supernode made by hand (g:supernode): a name and its member nodes (0-based). */
typedef struct lp_graph_group {
    char *name;
    int n;
    int *ids;
} lp_graph_group;

typedef struct lp_graph {
    int n_nodes, n_layers, n_tokens;
    lp_graph_node *nodes;  /* n_nodes */
    int32_t *tokens;       /* n_tokens, -1 where a file does not say */
    char **token_text;     /* n_tokens: the prompt's tokens as text */
    char *prompt;          /* the prompt as text */
    double replacement, completeness;   /* NaN when unknown */
    double node_threshold, edge_threshold; /* what pruned it; NaN when unpruned */
    int max_n_logits, batch, max_feature_nodes; /* generation settings; 0 when unknown */
    double desired_logit_prob;
    char *model, *scan, *slug, *generator, *generator_version; /* metadata (may be NULL) */
    char *qparams_supernodes; /* qParams supernodes as a JSON array's text ([[name, id...]]), or NULL */
    char *qk_tracing;      /* the QK explanations (qk.h) as a JSON array's text, or NULL: "qk_tracing_results" */
    float *adj_;           /* private: dense n x n, row = target; use the functions below */
    /* the diagram's view (issue 18), the file's qParams pinnedIds and supernodes: */
    int n_pinned;          /* pinned nodes, 0-based, ascending, distinct */
    int *pinned;
    int n_groups;          /* supernodes, in the order made */
    lp_graph_group *groups;
} lp_graph;

/* An explicit target instead of the model's top logits: token (>= 0), minus the logit of
 * minus_token when that is >= 0 (a logit difference, direction W_U[token] - W_U[minus]).
 * token < 0: the top logits chosen by max_n_logits and desired_logit_prob. text names the
 * node (may be NULL). */
typedef struct lp_graph_target {
    int32_t token, minus_token;
    const char *text;
    int set; /* 0: no explicit target (the zero struct) */
} lp_graph_target;

/* What the graph records about where it came from; every field may be NULL (tokens are then
 * named by their ids). Copied. */
typedef struct lp_graph_meta {
    const char *model, *scan, *slug, *prompt;
    const lp_tokenizer *tok; /* names the prompt's and the logits' tokens (lp_tokenizer_token) */
} lp_graph_meta;

/* The graph of a replacement model and its dense adjacency A (n x n, replace.h's node order,
 * from lp_attrib_edges; taken: the graph owns it, or it is freed on failure): every node,
 * influence, scores. NULL with an error. */
lp_graph *lp_graph_from_replacement(const lp_replacement *r, float *A, const lp_graph_meta *meta,
                                    const lp_attrib_opts *o);

/* Replaces the logit nodes of r by one explicit target (see lp_graph_target), before
 * lp_attrib_edges. 0, or -1 with an error (a token out of the vocabulary). */
int lp_replacement_set_target(lp_replacement *r, const lp_graph_target *t);

/* All of it: the replacement model, the target, the edges, the graph. NULL with an error. */
lp_graph *lp_graph_attribute(const lp_model *m, const lp_transcoder_set *tcs, const int32_t *tokens, int T,
                             const lp_attrib_opts *o, const lp_graph_target *target, const lp_graph_meta *meta);

/* The same through a cross-layer transcoder (lp_replacement_build_clt): feature nodes are
 * (encoder layer, position, feature), with the same ids as a per-layer set's. */
lp_graph *lp_graph_attribute_clt(const lp_model *m, const lp_clt *clt, const int32_t *tokens, int T,
                                 const lp_attrib_opts *o, const lp_graph_target *target, const lp_graph_meta *meta);

void lp_graph_free(lp_graph *g);

/* The diagram's view: the pinned nodes become ids[0..n) (0-based; sorted, duplicates
 * dropped; n = 0 unpins all); a supernode name of ids[0..n) (n >= 1) is added, replacing a
 * supernode of the same name. 0, or -1 with an error (a node out of range, no name, no
 * memory; the graph is left as it was). Not carried by lp_graph_prune (indices change). */
int lp_graph_set_pinned(lp_graph *g, const int *ids, int n);
int lp_graph_add_group(lp_graph *g, const char *name, const int *ids, int n);

/* A new graph of g pruned as ATTRIBUTION.md says (prune.h), circuit-tracer's file selection:
 * nodes kept by the node mask that have a kept edge (embeddings and logits always), edges
 * kept by the edge mask between kept nodes; influence recomputed as the cumulative share on
 * g. Works on loaded graphs too (missing error and embedding nodes count as silent). NULL
 * with an error (thresholds outside [0, 1], no memory). */
lp_graph *lp_graph_prune(const lp_graph *g, double node_threshold, double edge_threshold);

/* ---- edges ---- */
float lp_graph_edge(const lp_graph *g, int target, int source);
int64_t lp_graph_n_edges(const lp_graph *g); /* non-zero entries */
/* A dense copy (n x n floats, row = target) into out (caller's, n*n of them). */
void lp_graph_dense(const lp_graph *g, float *out);

typedef struct lp_graph_link {
    int node;
    float weight;
} lp_graph_link;

/* The top k (all when k <= 0) inputs (sources) or outputs (targets) of node i by |weight|,
 * signed, into *out (malloc'd, caller frees); returns how many, -1 with an error. */
int lp_graph_in(const lp_graph *g, int i, int k, lp_graph_link **out);
int lp_graph_out(const lp_graph *g, int i, int k, lp_graph_link **out);

/* The node whose id is id, or -1 (the first when a file has duplicates). */
int lp_graph_find(const lp_graph *g, const char *id);

typedef struct lp_graph_path {
    int n;        /* nodes on it, embedding first, logit last */
    int *nodes;
    double score; /* the product of the normalised weights |A[t,s]| / sum_s' |A[t,s']| */
    int sign;     /* the product of the edges' signs */
} lp_graph_path;

/* The k best paths from any embedding to any logit by score (descending); from / to >= 0
 * restrict the start or the end to that node. *out malloc'd (free with lp_graph_paths_free);
 * returns how many (may be fewer than k), -1 with an error. */
int lp_graph_paths(const lp_graph *g, int k, int from, int to, lp_graph_path **out);
void lp_graph_paths_free(lp_graph_path *p, int n);

/* ---- files (graph_json.c) ---- */

/* Writes g as circuit-tracer's graph JSON (schema 1) with loupe's generator info and scores.
 * Deterministic: a file saved, loaded and saved again is the same bytes. 0, or -1 with an
 * error. */
int lp_graph_save_json(const lp_graph *g, const char *path);
/* Reads a graph JSON file (loupe's, circuit-tracer's, Neuronpedia's): unknown fields are
 * ignored; a missing or wrong required field is an error naming it. NULL with an error. */
lp_graph *lp_graph_load_json(const char *path);
/* The same from text[0..len) in memory; label names it in errors. */
lp_graph *lp_graph_parse_json(const char *text, size_t len, const char *label);

/* Records a QK explanation (qk.h) in g, k pairs and k contributors on each side, replacing
 * one of the same head and positions: saved as the file's top-level "qk_tracing_results"
 * (Neuronpedia's field names: pair_wise_contributors [[q_id, k_id, a]],
 * top_q_marginal_contributors [[id, a]], top_k_marginal_contributors [[id, a]]; plus layer,
 * head, query_ctx_idx, key_ctx_idx, score). 0, or -1 with an error. (qk.c) */
struct lp_qk;
int lp_graph_add_qk(lp_graph *g, const struct lp_qk *q, int k);

/* internal: an empty graph of n nodes and T tokens with a zero adjacency (graph.c) */
lp_graph *lp_graph_alloc(int n, int T);
void lp_graph_set_edge(lp_graph *g, int target, int source, float w);
void lp_graph_node_id(lp_graph_node *d, int n_layers); /* d->id from its kind, layer, pos, ... */

#endif
