/* Automatic supernodes: features of an attribution graph that play the same role, grouped,
 * and the graph coarsened over the groups.
 *
 *   lp_supernode_opts o = lp_supernode_defaults();
 *   int *group = malloc(g->n_nodes * sizeof *group);
 *   int ng = lp_graph_supernodes(g, &o, group);        // group[i]: 0..ng-1, every node in one
 *   lp_graph *c = ng < 0 ? NULL : lp_graph_coarsen(g, group, ng);
 *
 * Two features are linked when they sit at the same position, their layers differ by at most
 * o->layer_gap, the cosine of their edge profiles (the node's row of the adjacency, its
 * inputs, followed by its column, its outputs) is at least o->threshold, and, when both have
 * labels and o->labels is set, their labels share at least half their words. Groups are the
 * connected components of the links (single linkage, pairs taken in node order), with the
 * layers of a group at most layer_gap apart (a link that would widen a group beyond that is
 * not made); every other node is a group of its own.
 * Groups are numbered by their first member in g's order.
 */
#ifndef LP_ATTRIB_SUPERNODES_H
#define LP_ATTRIB_SUPERNODES_H

#include "attrib/graph.h"

typedef struct lp_supernode_opts {
    double threshold; /* 0.9 */
    int layer_gap;    /* 1 */
    int labels;       /* 1: labels must agree when both nodes have one */
} lp_supernode_opts;

lp_supernode_opts lp_supernode_defaults(void);

/* group (n_nodes, the caller's) as above; returns the number of groups, -1 with an error. */
int lp_graph_supernodes(const lp_graph *g, const lp_supernode_opts *o, int *group);

/* The name of group k of g: the label most of its members carry, else "L{layer} P{pos} ×n"
 * ("L{a}-{b}" when it spans layers); a single node keeps its label (may be NULL). malloc'd. */
char *lp_graph_group_name(const lp_graph *g, const int *group, int k);

/* The graph of the groups: one node per group (in group order; a group of several features is
 * a feature node with its first member's id, layer, position and feature, the sum of the
 * activations, the lowest influence and the group's name as label), edges the sums of the
 * members' edges between two groups (edges inside a group dropped). Records the groups of
 * several members as qParams supernodes ([[name, member ids...]]) for g:save. NULL with an
 * error. */
lp_graph *lp_graph_coarsen(const lp_graph *g, const int *group, int n_groups);

#endif
