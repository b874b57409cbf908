/* The circuit diagram of an attribution graph (../shared/ATTRIBUTION.md, "The diagram"): a
 * static, sanitizer-safe picture of the graph as the circuit-tracing papers draw it, with
 * its scores and tables, as a MIME bundle like every figure of display/ (figures.h).
 *
 * The input is a plain description of the graph (lp_circuit below), independent of the
 * graph object of backend/attrib: whoever holds a graph fills one in (borrowed pointers,
 * nothing is kept after the call).
 *
 * The picture: columns are token positions (the tokens under them, as lp_token_show writes
 * them), rows go from the embeddings (bottom) through layers 0..n_layers-1 to the logits
 * (top). Glyphs by type: features are circles, errors diamonds, embeddings and logits
 * squares (logits with their token and probability above them). The nodes of one (layer,
 * position) cell lie side by side; a column is as wide as its busiest cell, up to
 * max_per_cell glyphs, the rest shown as "+N". Edges are straight lines from source to
 * target, green when positive and purple when negative, their width by their share of the
 * target's input, |w| / sum of the target's incoming |w|; only the max_edges largest
 * shares are drawn (noted). Under the picture: the replacement and completeness scores,
 * the top paths from an embedding to a logit, and the top nodes by influence.
 *
 * The text/html also carries the graph's data for display/js/circuit.js (issue 18) in a
 * <script type="application/json" data-lp-circuit="1"> element inside the figure: column
 * arrays, never one object per node or edge:
 *   {"v": 1, "W": .., "H": .., "L": n_layers, "rowy": [..], "T": n_tokens, "tpos": [..],
 *    "tokens": [..], "rs": .., "cs": ..,
 *    "nodes": {"kind": [..], "layer": [..], "pos": [..], "feature": [..], "act": [..],
 *              "infl": [..], "prob": [..], "label": [..], "x": [..]},
 *    "edges": {"src": [..], "dst": [..], "w": [..], "share": [..]},
 *    "n_nodes": .., "n_edges": .., "drawn_edges": ..,
 *    "state": {"pinned": [..], "supernodes": [[name, i, ..], ..]}}  (only when given)
 * kind is 0 feature, 1 error, 2 embedding, 3 logit; a node's glyph is centred at (x[i],
 * rowy[row]) in the picture's units, row 0 for embeddings, 1 + layer, n_layers + 1 for
 * logits (x null: not drawn); tokens[j] is the text of position tpos[j] (every position,
 * except those narrowed when there are more than 256); node indices are the caller's; labels (cut to 160 code
 * points) only for drawn nodes; edges are the drawn_edges drawn ones, then the next
 * strongest by share, up to max_data_edges; numbers have 4 significant digits, non-finite
 * ones are null. Sizes: 2,000 nodes and 20,000 edges give about 235 KB in all.
 * No script is needed for the picture, the tables or the tooltips; where scripts run,
 * display/js/circuit.js (embedded after the data) makes it interactive: a tooltip for the
 * glyph under the mouse; a click shows the node's inputs and outputs (from the embedded
 * edges) and draws its edges on a canvas over the picture; ctrl/cmd-click pins, pinned
 * nodes are grouped into supernodes, "copy as Lua" gives the view as g:pin/g:supernode;
 * a slider prunes by influence; toggles for edge signs, errors and dense features (when
 * nodes.dens is in the data).
 */
#ifndef LP_DISPLAY_CIRCUIT_H
#define LP_DISPLAY_CIRCUIT_H

#include <jansson.h>

enum {
    LP_CIRCUIT_FEATURE = 0,
    LP_CIRCUIT_ERROR = 1,     /* one per (layer, position): the transcoder's error */
    LP_CIRCUIT_EMBEDDING = 2, /* one per position: layer is ignored */
    LP_CIRCUIT_LOGIT = 3      /* an output token: layer is ignored, pos is where it is read */
};

typedef struct lp_circuit_node {
    int kind;      /* LP_CIRCUIT_* */
    int layer;     /* features and errors: 0..n_layers-1 */
    int pos;       /* token position: 0..n_tokens-1 */
    int feature;   /* feature index; logits and embeddings: the token id; errors: -1 */
    float activation;
    float influence; /* larger = more important (the pruning influence, not the JSON's
                      * cumulative share); orders the node table and crowded cells */
    float prob;    /* logits: the token's probability; others: ignored */
    const char *label; /* untrusted, may be NULL. Features: the feature's description;
                        * logits: the output token's text (shown with lp_token_show) */
} lp_circuit_node;

typedef struct lp_circuit_edge {
    int src, dst;  /* node indices */
    float weight;  /* A[dst, src] */
} lp_circuit_edge;

typedef struct lp_circuit_path {
    int n;            /* nodes on the path, from an embedding to a logit */
    const int *nodes; /* node indices */
    double score;     /* e.g. the product of normalised weights along the path */
} lp_circuit_path;

typedef struct lp_circuit_group {
    const char *name; /* untrusted */
    int n;
    const int *ids;   /* node indices */
} lp_circuit_group;

typedef struct lp_circuit {
    int n_nodes;
    const lp_circuit_node *nodes;
    int n_edges;
    const lp_circuit_edge *edges;
    int n_tokens;
    const char *const *tokens; /* n_tokens strings (untrusted; NULL entries allowed), or NULL */
    int n_layers;
    double replacement_score, completeness_score; /* NaN when unknown */
    /* The top paths; when n_paths is 0 the diagram finds them itself: the paths from an
     * embedding to a logit with the largest |product of shares| (signed share = w / sum
     * of the target's incoming |w|), along edges that go up the rows. */
    int n_paths;
    const lp_circuit_path *paths;
    const char *title; /* untrusted, may be NULL */
    /* The view given from Lua (g:pin, g:supernode), shown by display/js/circuit.js: pinned
     * node indices and named groups of them; out-of-range indices are left out. */
    int n_pinned;
    const int *pinned;
    int n_groups;
    const lp_circuit_group *groups;
} lp_circuit;

typedef struct lp_circuit_opts {
    int max_edges;      /* edges drawn (<= 0: 300) */
    int max_per_cell;   /* glyphs in one (layer, position) cell (<= 0: 8), the rest "+N" */
    int max_paths;      /* rows of the paths table (<= 0: 10) */
    int max_table_nodes;/* rows of the node table (<= 0: 20) */
    int max_data_edges; /* edges in the embedded data (<= 0: 1000) */
} lp_circuit_opts;

/* The diagram of c as a bundle (text/plain, text/html), a NEW reference; NULL with
 * lp_last_error() set only when memory runs out. o may be NULL (defaults). Never fails on
 * the graph's contents: nodes or edges out of range, non-finite numbers, no nodes, no
 * edges, one token, long or hostile labels all give a picture with a note saying what was
 * left out. */
json_t *lp_circuit_display(const lp_circuit *c, const lp_circuit_opts *o);

#endif
