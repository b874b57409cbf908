/* Test-only driver for tests/peer/test_peer_ct_attribution.py: loupe's replacement model and
 * dense adjacency matrix (backend/attrib/) for one prompt.
 *
 *   attrib_tool MODEL_DIR TRANSCODER_DIR MAX_N_LOGITS DESIRED_PROB BATCH NODE_T EDGE_T ADJ.f32 id...
 *
 * ADJ gets the n x n matrix, row-major little-endian f32, and ADJ.edges the kept-edge mask
 * of pruning at NODE_T / EDGE_T (n x n bytes). stdout: one JSON object {"n_nodes", "n_features",
 * "features": [[layer, pos, feature, activation]...], "logit_tokens", "logit_probs",
 * "seconds", "influence", "node_mask", "cumulative", "replacement", "completeness"}. Errors go to stderr with exit status 2. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "attrib/prune.h"
#include "attrib/replace.h"
#include "core/error.h"
#include "dict/sae_io.h"

static int fail(void)
{
    fprintf(stderr, "attrib_tool: %s\n", lp_last_error());
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 10) {
        fprintf(stderr, "usage: attrib_tool MODEL TRANSCODERS MAX_N_LOGITS DESIRED_PROB BATCH NODE_T EDGE_T ADJ.f32 id...\n");
        return 2;
    }
    lp_model *m = lp_model_load(argv[1]);
    if (!m)
        return fail();
    lp_transcoder_set *tcs = lp_transcoder_set_load(argv[2]);
    if (!tcs)
        return fail();
    lp_attrib_opts o = lp_attrib_defaults();
    o.max_n_logits = atoi(argv[3]);
    o.desired_logit_prob = (float)atof(argv[4]);
    o.batch = atoi(argv[5]);
    int T = argc - 9;
    double node_t = atof(argv[6]), edge_t = atof(argv[7]);
    const char *adj = argv[8];
    int32_t *toks = malloc(sizeof *toks * (size_t)T);
    for (int t = 0; t < T; t++)
        toks[t] = atoi(argv[9 + t]);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lp_replacement *r = lp_replacement_build(m, tcs, toks, T, &o);
    float *A = NULL;
    if (!r || lp_attrib_edges(r, o.batch, &A) < 0)
        return fail();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int N = lp_replacement_n_nodes(r);
    FILE *f = fopen(adj, "wb");
    if (!f || fwrite(A, sizeof(float), (size_t)N * N, f) != (size_t)N * N || fclose(f)) {
        fprintf(stderr, "attrib_tool: cannot write %s\n", adj);
        return 2;
    }
    printf("{\"n_nodes\": %d, \"n_features\": %d, \"seconds\": %.6f, \"features\": [", N, r->n_features,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    for (int i = 0; i < r->n_features; i++)
        printf("%s[%d, %d, %d, %.9g]", i ? ", " : "", r->features[i].layer, r->features[i].pos,
               r->features[i].feature, r->features[i].act);
    printf("], \"logit_tokens\": [");
    for (int i = 0; i < r->n_logits; i++)
        printf("%s%d", i ? ", " : "", r->logit_tokens[i]);
    printf("], \"logit_probs\": [");
    for (int i = 0; i < r->n_logits; i++)
        printf("%s%.9g", i ? ", " : "", r->logit_probs[i]);
    lp_graph_shape sh = {r->n_features, r->n_layers, r->T, r->n_logits, r->logit_probs};
    double *I = malloc(sizeof(double) * (size_t)N), rep, comp;
    lp_attrib_pruned pr;
    if (!I || lp_attrib_influence(A, &sh, I) < 0 || lp_attrib_prune(A, &sh, node_t, edge_t, &pr) < 0 ||
        lp_attrib_scores(A, &sh, &rep, &comp) < 0)
        return fail();
    char path[4096];
    snprintf(path, sizeof path, "%s.edges", adj);
    f = fopen(path, "wb");
    if (!f || fwrite(pr.edge_mask, 1, (size_t)N * N, f) != (size_t)N * N || fclose(f)) {
        fprintf(stderr, "attrib_tool: cannot write %s\n", path);
        return 2;
    }
    printf("], \"influence\": [");
    for (int i = 0; i < N; i++)
        printf("%s%.17g", i ? ", " : "", I[i]);
    printf("], \"cumulative\": [");
    for (int i = 0; i < N; i++)
        printf("%s%.17g", i ? ", " : "", pr.cumulative[i]);
    printf("], \"node_mask\": [");
    for (int i = 0; i < N; i++)
        printf("%s%d", i ? ", " : "", pr.node_mask[i]);
    printf("], \"replacement\": %.17g, \"completeness\": %.17g}\n", rep, comp);
    lp_attrib_pruned_clear(&pr);
    free(I);
    free(A);
    free(toks);
    lp_replacement_free(r);
    lp_transcoder_set_free(tcs);
    lp_model_free(m);
    return 0;
}
