/* Test-only driver for tests/peer/test_peer_ct_attribution.py: loupe's replacement model and
 * dense adjacency matrix (backend/attrib/) for one prompt.
 *
 *   attrib_tool MODEL_DIR TRANSCODER_DIR MAX_N_LOGITS DESIRED_PROB BATCH ADJ.f32 id id ...
 *
 * ADJ gets the n x n matrix, row-major little-endian f32. stdout: one JSON object
 * {"n_nodes", "n_features", "features": [[layer, pos, feature, activation]...],
 *  "logit_tokens", "logit_probs", "seconds"}. Errors go to stderr with exit status 2. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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
    if (argc < 8) {
        fprintf(stderr, "usage: attrib_tool MODEL TRANSCODERS MAX_N_LOGITS DESIRED_PROB BATCH ADJ.f32 id...\n");
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
    int T = argc - 7;
    int32_t *toks = malloc(sizeof *toks * (size_t)T);
    for (int t = 0; t < T; t++)
        toks[t] = atoi(argv[7 + t]);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lp_replacement *r = lp_replacement_build(m, tcs, toks, T, &o);
    float *A = NULL;
    if (!r || lp_attrib_edges(r, o.batch, &A) < 0)
        return fail();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int N = lp_replacement_n_nodes(r);
    FILE *f = fopen(argv[6], "wb");
    if (!f || fwrite(A, sizeof(float), (size_t)N * N, f) != (size_t)N * N || fclose(f)) {
        fprintf(stderr, "attrib_tool: cannot write %s\n", argv[6]);
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
    printf("]}\n");
    free(A);
    free(toks);
    lp_replacement_free(r);
    lp_transcoder_set_free(tcs);
    lp_model_free(m);
    return 0;
}
