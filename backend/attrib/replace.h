/* The local replacement model of one prompt and its exact attribution edges (the team's
 * ATTRIBUTION.md): per-layer transcoders or a cross-layer transcoder (CLT) replace the MLPs;
 * attention patterns and every
 * norm scale are frozen at their values in the real forward pass; what remains between
 * nodes is linear (residual stream, attention's OV path, the transcoders' skip).
 *
 *   lp_attrib_opts o = lp_attrib_defaults();
 *   lp_replacement *r = lp_replacement_build(m, tcs, toks, T, &o);   // one forward
 *   float *A = NULL;
 *   if (!r || lp_attrib_edges(r, &A) < 0) report(lp_last_error());
 *   ... A is n_nodes x n_nodes, rows targets, columns sources ...
 *   free(A); lp_replacement_free(r);
 *
 * Node order: [features (layer, pos, feature ascending)][errors (layer, pos)]
 * [embeddings (pos)][logits (probability descending)]. Features and errors at position 0
 * (the BOS the caller prepends) are zeroed: no feature nodes there, zero error vectors.
 * An embedding node's vector is its token's row of W_E (GPT-2's position embedding is not
 * part of it). Rows of error and embedding nodes are zero (sources only).
 *
 * With a CLT (lp_replacement_build_clt): each layer's MLP output is replaced by b_dec plus the
 * decoders into that layer of every earlier-or-same layer's active features; a feature node
 * is (its encoder's layer, position, feature), its encoder row is read at that layer's
 * mlp.hook_in, and its edges reach targets through its decoders into every layer >= its
 * own (circuit-tracer's CrossLayerTranscoder semantics); error (l, p) = the true MLP output -
 * that sum. A CLT has no skip: nothing of the MLP path is linear in the replacement.
 *
 * Ownership: the replacement borrows m and tcs (or clt), which must outlive it.
 */
#ifndef LP_ATTRIB_REPLACE_H
#define LP_ATTRIB_REPLACE_H

#include <stdint.h>

#include "dict/sae.h"
#include "model/model.h"

typedef struct lp_attrib_opts {
    int max_n_logits;         /* 10 */
    float desired_logit_prob; /* 0.95 */
    int batch;                /* target rows per backward pass (32) */
    int max_feature_nodes;    /* lp_attrib_edges_rows: feature rows to compute (0: all of them) */
    int update_interval;      /* ... batches between influence re-rankings (4) */
    int storage;              /* lp_attrib_edges_rows: LP_ATTRIB_AUTO, _DENSE or _SPARSE */
    int64_t dense_limit;      /* ... AUTO: bytes above which rows are kept sparse (0: 1 GiB) */
} lp_attrib_opts;

enum { LP_ATTRIB_AUTO = 0, LP_ATTRIB_DENSE = 1, LP_ATTRIB_SPARSE = 2 };

lp_attrib_opts lp_attrib_defaults(void);

typedef struct lp_attrib_feature {
    int layer, pos, feature;
    float act;
} lp_attrib_feature;

typedef struct lp_replacement {
    const lp_model *m;
    const lp_transcoder_set *tcs; /* per-layer transcoders, or NULL with a CLT */
    const lp_clt *clt;            /* a cross-layer transcoder, or NULL with a per-layer set */
    int T, n_layers, d_model;
    int32_t *tokens;            /* T */
    int n_features;
    lp_attrib_feature *features; /* n_features, in node order */
    float *errors;               /* n_layers x T x d_model: true MLP output - transcoder output (CLT: the sum
                                    into that layer) */
    int n_logits;
    int32_t *logit_tokens;       /* n_logits */
    float *logit_probs;          /* n_logits */
    float *logit_dirs;           /* n_logits x d_model: W_U[tok] - mean_v W_U[v] */
    /* the frozen quantities, from the real forward pass */
    float *ln1_scale, *ln2_scale; /* n_layers x T */
    float *lnf_scale;             /* T */
    float *pattern;               /* n_layers x H x T x T */
    float *logits;                /* T x d_vocab */
} lp_replacement;

/* Runs m on tokens (batch 1, T of them) with the caches it needs, encodes every layer's
 * transcoder on its mlp.hook_in and builds the nodes. tcs must be a per-layer set reading
 * mlp.hook_in and writing mlp.hook_out, one transcoder per layer of m, d_in = d_out =
 * d_model. NULL with an error on a mismatch, no memory, or a failed run. */
lp_replacement *lp_replacement_build(const lp_model *m, const lp_transcoder_set *tcs, const int32_t *tokens, int T,
                                     const lp_attrib_opts *o);
/* The same with a cross-layer transcoder: clt must read mlp.hook_in and write mlp.hook_out of
 * every layer of m at d_model. NULL with an error naming the mismatch. */
lp_replacement *lp_replacement_build_clt(const lp_model *m, const lp_clt *clt, const int32_t *tokens, int T,
                                         const lp_attrib_opts *o);
void lp_replacement_free(lp_replacement *r); /* NULL is a no-op */

/* Node counts and offsets in the order above. */
int lp_replacement_n_nodes(const lp_replacement *r);
int lp_replacement_error_node(const lp_replacement *r, int layer, int pos);
int lp_replacement_embed_node(const lp_replacement *r, int pos);
int lp_replacement_logit_node(const lp_replacement *r, int i);

/* The dense adjacency matrix (n_nodes x n_nodes, row-major, *out allocated here and freed
 * by the caller with free): A[t, s] = a_s w_{s->t}, by batched backward passes through the
 * frozen linear model, batch rows at a time, rows in parallel. 0, or -1 with an error. */
int lp_attrib_edges(const lp_replacement *r, int batch, float **out);

/* The edges of the graph that keeps at most o->max_feature_nodes feature nodes, processed
 * as circuit-tracer's attribute() does: the logit rows first, then feature rows in order of
 * their partial influence on the logits (re-ranked every update_interval batches of `batch`
 * rows, on the rows computed so far: w^T sum_k Ahat^k with Ahat = |rows| normalised by
 * each row's sum over all sources, at least 1e-8), until max_feature_nodes rows are done.
 * The graph's nodes are the processed ("kept") features, in node order, then every error,
 * embedding and logit node: n_nodes = n_kept + (n_layers + 1) T + n_logits. Only target
 * rows are stored (error and embedding rows are zero): n_rows = n_kept + n_logits, row i <
 * n_kept the kept feature i, then the logits; columns are the graph's nodes; edges from
 * features that were not kept are dropped. Stored dense (rows x n_nodes f32) when that is
 * small (or o->storage says so), else as sparse rows without their exact zeros (CSR). With
 * max_feature_nodes 0 (or at least n_features) every feature is kept and the matrix is
 * lp_attrib_edges' without its zero rows. While it runs, the rows computed so far are kept
 * over all sources; when a dense store would pass dense_limit, each row is kept sparse
 * (without its exact zeros: the sources after its position and at or above its layer) or
 * dense, whichever is smaller (LP_ATTRIB_SPARSE: always sparse). */
typedef struct lp_attrib_matrix {
    int n_nodes, n_rows, n_kept;
    int *kept;         /* n_kept: indices into r->features, ascending */
    float *dense;      /* n_rows x n_nodes, or NULL when sparse */
    int64_t *row_ptr;  /* n_rows + 1 (sparse) */
    int32_t *col;      /* row_ptr[n_rows]: ascending within a row */
    float *val;
} lp_attrib_matrix;

int lp_attrib_edges_rows(const lp_replacement *r, const lp_attrib_opts *o, lp_attrib_matrix *out);
void lp_attrib_matrix_clear(lp_attrib_matrix *a); /* frees and zeroes; a zeroed one is a no-op */
/* The graph's node index of row i (a kept feature's or a logit's). */
int lp_attrib_matrix_row_node(const lp_attrib_matrix *a, int i);
/* The n_nodes x n_nodes dense matrix of the graph (error and embedding rows zero), as
 * circuit-tracer's Graph holds it; *out allocated here, freed by the caller. */
int lp_attrib_matrix_dense(const lp_attrib_matrix *a, float **out);

#endif
