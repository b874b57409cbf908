/* Automatic supernodes (backend/attrib/supernodes.c) on graphs built by hand: two groups of
 * duplicated features (same position, the same inputs and outputs up to scale, one group a
 * layer above the other) and a distinct feature are grouped into exactly those groups; the
 * coarsened graph's edges are the sums of the members' edges; names; labels that disagree
 * keep duplicates apart; the groups are saved as qParams supernodes and read back. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/supernodes.h"
#include "core/error.h"

/* nodes: 0 emb0, 1 emb1, 2..4 A (layer 0, pos 1), 5..6 B (layer 1, pos 1), 7 C (layer 0, pos 1), 8 logit */
static lp_graph *hand_graph(void)
{
    lp_graph *g = lp_graph_alloc(9, 2);
    cr_assert_not_null(g);
    g->n_layers = 2;
    g->tokens[0] = 0, g->tokens[1] = 5;
    for (int t = 0; t < 2; t++)
        g->token_text[t] = strdup(t ? "x" : "<bos>");
    lp_node_kind kinds[9] = {LP_NODE_EMBEDDING, LP_NODE_EMBEDDING, LP_NODE_FEATURE, LP_NODE_FEATURE, LP_NODE_FEATURE,
                             LP_NODE_FEATURE,   LP_NODE_FEATURE,   LP_NODE_FEATURE, LP_NODE_LOGIT};
    int layers[9] = {-1, -1, 0, 0, 0, 1, 1, 0, 2}, pos[9] = {0, 1, 1, 1, 1, 1, 1, 1, 1};
    for (int i = 0; i < 9; i++) {
        lp_graph_node *d = &g->nodes[i];
        d->kind = kinds[i], d->layer = layers[i], d->pos = pos[i];
        d->feature = d->kind == LP_NODE_FEATURE ? 10 + i : -1;
        d->token = d->kind == LP_NODE_EMBEDDING ? g->tokens[d->pos] : d->kind == LP_NODE_LOGIT ? 7 : -1;
        d->activation = d->kind == LP_NODE_FEATURE ? 1.0f + (float)i : NAN;
        d->influence = 0.1f * (float)i;
        lp_graph_node_id(d, g->n_layers);
    }
    float scale[9] = {0, 0, 1.0f, 2.0f, 0.5f, 1.0f, 3.0f, 1.0f, 0};
    for (int a = 2; a <= 4; a++) { /* A: inputs from both embeddings, outputs to B */
        lp_graph_set_edge(g, a, 0, 0.7f * scale[a]);
        lp_graph_set_edge(g, a, 1, -0.2f * scale[a]);
        for (int b = 5; b <= 6; b++)
            lp_graph_set_edge(g, b, a, 0.4f * scale[a] * scale[b]);
    }
    for (int b = 5; b <= 6; b++) /* B: outputs to the logit */
        lp_graph_set_edge(g, 8, b, 0.9f * scale[b]);
    lp_graph_set_edge(g, 7, 1, 1.1f); /* C: its own input, and the logit */
    lp_graph_set_edge(g, 8, 7, -0.3f);
    lp_graph_set_edge(g, 8, 1, 0.05f);
    return g;
}

Test(supernodes, duplicated_features_make_exactly_their_groups)
{
    lp_graph *g = hand_graph();
    int group[9];
    int ng = lp_graph_supernodes(g, NULL, group);
    cr_assert_eq(ng, 6, "%d groups: %s", ng, lp_last_error()); /* emb0, emb1, A, B, C, logit */
    for (int i = 3; i <= 4; i++)
        cr_expect_eq(group[i], group[2], "A member %d", i);
    cr_expect_eq(group[6], group[5], "B");
    cr_expect_neq(group[2], group[5]);
    cr_expect_neq(group[7], group[2]);
    cr_expect_neq(group[7], group[5]);
    int distinct[9] = {0};
    for (int i = 0; i < 9; i++)
        distinct[group[i]]++;
    cr_expect_eq(distinct[group[2]], 3);
    cr_expect_eq(distinct[group[5]], 2);
    cr_expect_eq(distinct[group[7]], 1);
    lp_supernode_opts o = lp_supernode_defaults();
    o.threshold = 1.0 + 1e-9;
    cr_expect_eq(lp_graph_supernodes(g, &o, group), -1); /* not a cosine */
    o.threshold = 0.999999;
    g->nodes[3].label = strdup("capital city");
    g->nodes[2].label = strdup("a river");
    g->nodes[4].label = strdup("river (a)");
    cr_expect_eq(lp_graph_supernodes(g, &o, group), 7, "labels that disagree keep 3 apart from 2 and 4");
    cr_expect(group[2] == group[4] && group[3] != group[2]);
    o.labels = 0;
    cr_expect_eq(lp_graph_supernodes(g, &o, group), 6, "labels ignored");
    free(g->nodes[3].label), free(g->nodes[2].label), free(g->nodes[4].label);
    g->nodes[3].label = g->nodes[2].label = g->nodes[4].label = NULL;
    lp_graph_free(g);
}

Test(supernodes, coarsened_edges_are_sums_of_member_edges)
{
    lp_graph *g = hand_graph();
    int group[9];
    int ng = lp_graph_supernodes(g, NULL, group);
    cr_assert_eq(ng, 6);
    lp_graph *h = lp_graph_coarsen(g, group, ng);
    cr_assert_not_null(h, "%s", lp_last_error());
    cr_assert_eq(h->n_nodes, ng);
    for (int a = 0; a < ng; a++)
        for (int b = 0; b < ng; b++) {
            double want = 0;
            for (int t = 0; t < 9; t++)
                for (int s = 0; s < 9; s++)
                    if (group[t] == a && group[s] == b && a != b)
                        want += lp_graph_edge(g, t, s);
            cr_expect(fabs(lp_graph_edge(h, a, b) - want) < 1e-6, "edge %d <- %d: %g, want %g", a, b,
                      (double)lp_graph_edge(h, a, b), want);
        }
    const lp_graph_node *A = &h->nodes[group[2]];
    cr_expect_str_eq(A->label, "L0 P1 \xc3\x97" "3");
    cr_expect_str_eq(A->id, g->nodes[2].id);
    cr_expect(fabs(A->activation - (3.0f + 4.0f + 5.0f)) < 1e-6);
    cr_expect(fabs(A->influence - 0.2f) < 1e-6, "the lowest influence share");
    cr_expect_eq(h->nodes[group[8]].kind, LP_NODE_LOGIT);
    /* saved: qParams supernodes [[name, ids...]] for the two groups; read back */
    cr_assert_not_null(h->qparams_supernodes);
    char want[1024];
    snprintf(want, sizeof want, "[[\"L0 P1 \xc3\x97" "3\",\"%s\",\"%s\",\"%s\"],[\"L1 P1 \xc3\x97" "2\",\"%s\",\"%s\"]]",
             g->nodes[2].id, g->nodes[3].id, g->nodes[4].id, g->nodes[5].id, g->nodes[6].id);
    cr_expect_str_eq(h->qparams_supernodes, want);
    char path[] = "/tmp/loupe_supernodes_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(lp_graph_save_json(h, path), 0, "%s", lp_last_error());
    lp_graph *r = lp_graph_load_json(path);
    cr_assert_not_null(r, "%s", lp_last_error());
    cr_expect_str_eq(r->qparams_supernodes, want);
    remove(path);
    lp_graph_free(r);
    /* labels name a group by the most common one */
    g->nodes[5].label = strdup("says Oslo");
    g->nodes[6].label = strdup("says Oslo");
    char *name = lp_graph_group_name(g, group, group[5]);
    cr_expect_str_eq(name, "says Oslo");
    free(name);
    /* a label that is not UTF-8 still names a group (written with '?' in the file) */
    free(g->nodes[5].label), free(g->nodes[6].label);
    g->nodes[5].label = strdup("says \xff");
    g->nodes[6].label = strdup("says \xff");
    lp_graph *h2 = lp_graph_coarsen(g, group, ng);
    cr_assert_not_null(h2, "%s", lp_last_error());
    cr_expect(strstr(h2->qparams_supernodes, "says ?") != NULL, "%s", h2->qparams_supernodes);
    lp_graph_free(h2);
    int bad[9] = {0, 1, 2, 2, 2, 3, 3, 9, 5};
    cr_expect_null(lp_graph_coarsen(g, bad, 6));
    lp_graph_free(h);
    lp_graph_free(g);
}

/* three features with one profile at layers 0, 1, 2 of one position: layer_gap 1 groups two
 * of them (a group spans at most two layers), layer_gap 2 all three */
Test(supernodes, a_group_spans_at_most_layer_gap_plus_one_layers)
{
    lp_graph *g = lp_graph_alloc(5, 1);
    cr_assert_not_null(g);
    g->n_layers = 3;
    g->tokens[0] = 1;
    g->token_text[0] = strdup("a");
    lp_node_kind kinds[5] = {LP_NODE_EMBEDDING, LP_NODE_FEATURE, LP_NODE_FEATURE, LP_NODE_FEATURE, LP_NODE_LOGIT};
    for (int i = 0; i < 5; i++) {
        lp_graph_node *d = &g->nodes[i];
        d->kind = kinds[i], d->pos = 0, d->layer = i == 0 ? -1 : i - 1;
        d->feature = d->kind == LP_NODE_FEATURE ? i : -1;
        d->token = d->kind == LP_NODE_FEATURE ? -1 : 1;
        lp_graph_node_id(d, g->n_layers);
        if (d->kind == LP_NODE_FEATURE) {
            lp_graph_set_edge(g, i, 0, 1.0f);
            lp_graph_set_edge(g, 4, i, 0.5f);
        }
    }
    int group[5];
    lp_supernode_opts o = lp_supernode_defaults();
    cr_expect_eq(lp_graph_supernodes(g, &o, group), 4);
    cr_expect(group[1] == group[2] && group[3] != group[1]);
    o.layer_gap = 2;
    cr_expect_eq(lp_graph_supernodes(g, &o, group), 3);
    cr_expect(group[1] == group[2] && group[3] == group[1]);
    o.layer_gap = 0;
    cr_expect_eq(lp_graph_supernodes(g, &o, group), 5);
    lp_graph_free(g);
}
