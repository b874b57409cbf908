/* Test-only driver for tests/peer/test_peer_ct_attribution.py: loupe's replacement model and
 * dense adjacency matrix (backend/attrib/) for one prompt.
 *
 *   attrib_tool [--max-feature-nodes K] [--sparse] [--dense-limit BYTES] [--clt] MODEL_DIR TRANSCODER_DIR MAX_N_LOGITS
 *               DESIRED_PROB BATCH NODE_T EDGE_T ADJ.f32 id...
 *
 * --clt: TRANSCODER_DIR is a cross-layer transcoder (lp_clt_load; lp_replacement_build_clt).
 *
 * ADJ gets the n x n matrix, row-major little-endian f32, and ADJ.edges the kept-edge mask
 * of pruning at NODE_T / EDGE_T (n x n bytes). stdout: one JSON object {"n_nodes", "n_features",
 * "features": [[layer, pos, feature, activation]...], "logit_tokens", "logit_probs",
 * "seconds", "build_s", "edges_s", "influence", "node_mask", "cumulative", "replacement",
 * "completeness"}. Without --max-feature-nodes the matrix is lp_attrib_edges'; with it (or
 * --sparse) lp_attrib_edges_rows' (kept features only: "kept" lists their indices into
 * "features", "n_kept" their count, "nnz" the stored entries). ADJ "-" writes nothing and skips
 * pruning (benchmarks: the time and memory of the attribution alone).
 *
 * --random-gpt2 D_TC ENC_BIAS (MODEL_DIR and TRANSCODER_DIR then "-"): a GPT-2-small-shaped
 * model with random weights (lp_model_random: 12 layers, d_model 768, 12 heads, d_mlp 3072,
 * vocabulary 50257, context 1024) and 12 random D_TC-wide JumpReLU transcoders on mlp.hook_in
 * -> mlp.hook_out (encoder entries uniform with variance 1/d_model, encoder biases ENC_BIAS + N(0, 0.1^2),
 * thresholds U[0, 0.2), decoder rows of norm ~0.1), made here (the long-prompt benchmark).
 * Errors go to stderr with exit status 2. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attrib/prune.h"
#include "attrib/replace.h"
#include "core/blas_core.h"
#include "core/error.h"
#include "dict/sae_io.h"
#include "rng.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static lp_model *random_gpt2(void)
{
    lp_model_config c = {.arch = LP_ARCH_GPT2, .n_layers = 12, .d_model = 768, .n_heads = 12, .n_kv_heads = 12,
                         .d_head = 64, .d_mlp = 3072, .d_vocab = 50257, .n_ctx = 1024, .eps = 1e-5f,
                         .act = 0 /* tanh GELU */, .tied = 1, .bos = -1, .eos = -1};
    return lp_model_random(&c, 7);
}

static lp_transcoder_set *random_transcoders(const lp_model *m, int F, float bias)
{
    int L = m->cfg.n_layers, D = m->cfg.d_model;
    lp_transcoder_set *t = calloc(1, sizeof *t);
    if (!t || !(t->layers = calloc((size_t)L, sizeof *t->layers)))
        return NULL;
    t->n_layers = L;
    strcpy(t->feature_input_hook, "mlp.hook_in");
    strcpy(t->feature_output_hook, "mlp.hook_out");
    lp_rng g;
    lp_rng_seed(&g, 11);
    for (int l = 0; l < L; l++) {
        lp_sae_config c = {.arch = LP_SAE_JUMPRELU, .d_in = D, .d_sae = F, .d_out = D, .transcoder = 1, .layer = l};
        snprintf(c.hook_in, sizeof c.hook_in, "blocks.%d.mlp.hook_in", l);
        snprintf(c.hook_out, sizeof c.hook_out, "blocks.%d.mlp.hook_out", l);
        lp_sae *s = lp_sae_new(&c);
        if (!s)
            return NULL;
        t->layers[l] = s;
        float sc = sqrtf(12.0f / (float)D); /* uniform, variance 1/D: cheaper than normals for 113M weights */
        for (int64_t i = 0; i < (int64_t)D * F; i++) {
            uint64_t u = lp_rng_next(&g);
            s->W_enc->data[i] = sc * ((float)(u >> 40) * 0x1p-24f - 0.5f);
            s->W_dec->data[i] = 0.1f * sc * ((float)(u & 0xffffff) * 0x1p-24f - 0.5f);
        }
        for (int i = 0; i < F; i++) {
            s->b_enc->data[i] = bias + 0.1f * (float)lp_rng_normal(&g);
            s->threshold->data[i] = 0.2f * lp_rng_uniform(&g);
        }
        for (int d = 0; d < D; d++)
            s->b_dec->data[d] = 0.01f * (float)lp_rng_normal(&g);
    }
    return t;
}

static int fail(void)
{
    fprintf(stderr, "attrib_tool: %s\n", lp_last_error());
    return 2;
}

int main(int argc, char **argv)
{
    char note[320];
    if (lp_blas_core_start(argv, note, sizeof note))
        fprintf(stderr, "%s\n", note);
    int max_feat = 0, rows_api = 0, rand_F = 0, use_clt = 0;
    float rand_bias = 0;
    lp_attrib_opts o = lp_attrib_defaults();
    while (argc > 1 && !strncmp(argv[1], "--", 2)) {
        if (!strcmp(argv[1], "--max-feature-nodes") && argc > 2) {
            max_feat = atoi(argv[2]);
            rows_api = 1;
            argv += 2, argc -= 2;
        } else if (!strcmp(argv[1], "--random-gpt2") && argc > 3) {
            rand_F = atoi(argv[2]);
            rand_bias = (float)atof(argv[3]);
            argv += 3, argc -= 3;
        } else if (!strcmp(argv[1], "--dense-limit") && argc > 2) {
            o.dense_limit = atoll(argv[2]);
            rows_api = 1;
            argv += 2, argc -= 2;
        } else if (!strcmp(argv[1], "--clt")) {
            use_clt = 1;
            argv++, argc--;
        } else if (!strcmp(argv[1], "--sparse")) {
            o.storage = LP_ATTRIB_SPARSE;
            rows_api = 1;
            argv++, argc--;
        } else {
            fprintf(stderr, "attrib_tool: unknown option %s\n", argv[1]);
            return 2;
        }
    }
    o.max_feature_nodes = max_feat;
    if (argc < 10) {
        fprintf(stderr, "usage: attrib_tool MODEL TRANSCODERS MAX_N_LOGITS DESIRED_PROB BATCH NODE_T EDGE_T ADJ.f32 id...\n");
        return 2;
    }
    lp_model *m = rand_F ? random_gpt2() : lp_model_load(argv[1]);
    if (!m)
        return fail();
    lp_transcoder_set *tcs = NULL;
    lp_clt *clt = NULL;
    if (use_clt ? !(clt = lp_clt_load(argv[2]))
                : !(tcs = rand_F ? random_transcoders(m, rand_F, rand_bias) : lp_transcoder_set_load(argv[2])))
        return fail();
    o.max_n_logits = atoi(argv[3]);
    o.desired_logit_prob = (float)atof(argv[4]);
    o.batch = atoi(argv[5]);
    int T = argc - 9;
    double node_t = atof(argv[6]), edge_t = atof(argv[7]);
    const char *adj = argv[8];
    int32_t *toks = malloc(sizeof *toks * (size_t)T);
    for (int t = 0; t < T; t++)
        toks[t] = atoi(argv[9 + t]);
    double t0 = now();
    lp_replacement *r = clt ? lp_replacement_build_clt(m, clt, toks, T, &o) : lp_replacement_build(m, tcs, toks, T, &o);
    double t1 = now();
    float *A = NULL;
    lp_attrib_matrix am = {0};
    if (!r || (rows_api ? lp_attrib_edges_rows(r, &o, &am) : lp_attrib_edges(r, o.batch, &A)) < 0)
        return fail();
    double t2 = now();
    int N = rows_api ? am.n_nodes : lp_replacement_n_nodes(r), nf = rows_api ? am.n_kept : r->n_features;
    long long nnz = am.dense ? (long long)am.n_rows * am.n_nodes : am.row_ptr ? (long long)am.row_ptr[am.n_rows] : 0;
    printf("{\"n_nodes\": %d, \"n_features\": %d, \"seconds\": %.6f, \"build_s\": %.6f, \"edges_s\": %.6f, "
           "\"n_kept\": %d, \"nnz\": %lld, \"kept\": [",
           N, r->n_features, t2 - t0, t1 - t0, t2 - t1, nf, nnz);
    for (int i = 0; rows_api && i < am.n_kept; i++)
        printf("%s%d", i ? ", " : "", am.kept[i]);
    printf("], \"features\": [");
    for (int i = 0; i < r->n_features; i++)
        printf("%s[%d, %d, %d, %.9g]", i ? ", " : "", r->features[i].layer, r->features[i].pos,
               r->features[i].feature, r->features[i].act);
    printf("], \"logit_tokens\": [");
    for (int i = 0; i < r->n_logits; i++)
        printf("%s%d", i ? ", " : "", r->logit_tokens[i]);
    printf("], \"logit_probs\": [");
    for (int i = 0; i < r->n_logits; i++)
        printf("%s%.9g", i ? ", " : "", r->logit_probs[i]);
    if (!strcmp(adj, "-")) {
        printf("]}\n");
        lp_attrib_matrix_clear(&am);
        free(A);
        free(toks);
        lp_replacement_free(r);
        lp_transcoder_set_free(tcs);
        lp_clt_free(clt);
        lp_model_free(m);
        return 0;
    }
    if (rows_api && lp_attrib_matrix_dense(&am, &A) < 0)
        return fail();
    FILE *f = fopen(adj, "wb");
    if (!f || fwrite(A, sizeof(float), (size_t)N * N, f) != (size_t)N * N || fclose(f)) {
        fprintf(stderr, "attrib_tool: cannot write %s\n", adj);
        return 2;
    }
    lp_graph_shape sh = {nf, r->n_layers, r->T, r->n_logits, r->logit_probs};
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
    lp_attrib_matrix_clear(&am);
    free(I);
    free(A);
    free(toks);
    lp_replacement_free(r);
    lp_transcoder_set_free(tcs);
    lp_clt_free(clt);
    lp_model_free(m);
    return 0;
}
