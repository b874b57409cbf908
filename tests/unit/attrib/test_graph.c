/* Attribution graphs (backend/attrib/graph.h) on a tiny random GPT-2 with random per-layer
 * transcoders: the graph holds the engine's nodes, edges and scores; pruning is prune.h's
 * selection; inputs, outputs and paths agree with brute force; explicit targets (one token, a
 * logit difference) are the linear combinations they should be; the graph JSON round trip is
 * byte-identical and keeps nodes and edges; bad files are clear errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attrib/graph.h"
#include "attrib/prune.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "../model/random_model.h"

enum { L_ = 3, D_ = 16, V_ = 29, F_ = 40, T_ = 7 };

static lp_transcoder_set *transcoders(uint64_t seed)
{
    lp_transcoder_set *t = calloc(1, sizeof *t);
    t->n_layers = L_;
    t->layers = calloc(L_, sizeof *t->layers);
    strcpy(t->feature_input_hook, "mlp.hook_in");
    strcpy(t->feature_output_hook, "mlp.hook_out");
    lp_rng g;
    lp_rng_seed(&g, seed);
    for (int l = 0; l < L_; l++) {
        lp_sae_config c = {.arch = LP_SAE_JUMPRELU, .d_in = D_, .d_sae = F_, .d_out = D_, .transcoder = 1,
                           .skip = l == 1, .layer = l};
        snprintf(c.hook_in, sizeof c.hook_in, "blocks.%d.mlp.hook_in", l);
        snprintf(c.hook_out, sizeof c.hook_out, "blocks.%d.mlp.hook_out", l);
        lp_sae *s = lp_sae_new(&c);
        cr_assert_not_null(s, "%s", lp_last_error());
        rm_jitter(s->W_enc, &g, 0.4f, 0);
        rm_jitter(s->b_enc, &g, 0.3f, 0);
        rm_jitter(s->W_dec, &g, 0.3f, 0);
        rm_jitter(s->b_dec, &g, 0.1f, 0);
        rm_jitter(s->threshold, &g, 0.0f, 0.2f);
        rm_jitter(s->W_skip, &g, 0.1f, 0);
        t->layers[l] = s;
    }
    return t;
}

typedef struct fixture {
    lp_model *m;
    lp_transcoder_set *tcs;
    int32_t toks[T_];
    lp_attrib_opts o;
} fixture;

static fixture setup(uint64_t seed)
{
    fixture f = {.m = rm_model(0, L_, D_, 4, 4, V_, seed), .tcs = transcoders(seed + 1), .o = lp_attrib_defaults()};
    for (int t = 0; t < T_; t++)
        f.toks[t] = (int32_t)((t * 7 + 2 + seed) % V_);
    f.toks[0] = 0;
    f.o.max_n_logits = 4;
    f.o.batch = 3;
    return f;
}

static void teardown(fixture *f)
{
    lp_transcoder_set_free(f->tcs);
    lp_model_free(f->m);
}

static lp_graph *attribute(fixture *f, const lp_graph_target *tg)
{
    lp_graph_meta meta = {.model = "random-gpt2", .scan = "random-tc", .slug = "unit", .prompt = "p<r>o\"m\xffpt"};
    lp_graph *g = lp_graph_attribute(f->m, f->tcs, f->toks, T_, &f->o, tg, &meta);
    cr_assert_not_null(g, "%s", lp_last_error());
    return g;
}

Test(graph, holds_the_engines_nodes_edges_and_scores)
{
    fixture f = setup(3);
    lp_graph *g = attribute(&f, NULL);
    lp_replacement *r = lp_replacement_build(f.m, f.tcs, f.toks, T_, &f.o);
    cr_assert_not_null(r);
    float *A = NULL;
    cr_assert_eq(lp_attrib_edges(r, 3, &A), 0, "%s", lp_last_error());
    int n = lp_replacement_n_nodes(r);
    cr_assert_eq(g->n_nodes, n);
    cr_assert_gt(r->n_features, 10);
    for (int i = 0; i < r->n_features; i++) {
        const lp_graph_node *d = &g->nodes[i];
        cr_assert_eq(d->kind, LP_NODE_FEATURE);
        cr_assert(d->layer == r->features[i].layer && d->pos == r->features[i].pos &&
                  d->feature == r->features[i].feature && d->activation == r->features[i].act);
        char id[64];
        snprintf(id, sizeof id, "%d_%d_%d", d->layer, d->feature, d->pos);
        cr_assert_str_eq(d->id, id);
    }
    /* errors: circuit-tracer's "0_{layer}_{pos}", or "{layer}_-1_{pos}" where a feature of layer 0
     * has that id; every id is unique */
    int collisions = 0;
    for (int l = 0; l < L_; l++)
        for (int t = 0; t < T_; t++) {
            const lp_graph_node *d = &g->nodes[lp_replacement_error_node(r, l, t)];
            char ct[64], alt[64];
            snprintf(ct, sizeof ct, "0_%d_%d", l, t);
            snprintf(alt, sizeof alt, "%d_-1_%d", l, t);
            int feat = 0;
            for (int i = 0; i < r->n_features; i++)
                feat |= r->features[i].layer == 0 && r->features[i].feature == l && r->features[i].pos == t;
            cr_assert(d->kind == LP_NODE_ERROR && d->layer == l && d->pos == t);
            cr_assert_str_eq(d->id, feat ? alt : ct);
            collisions += feat;
        }
    cr_assert_gt(collisions, 0, "the fixture should exercise an id collision");
    for (int i = 0; i < n; i++)
        cr_assert_eq(lp_graph_find(g, g->nodes[i].id), i, "duplicate id %s", g->nodes[i].id);
    const lp_graph_node *e = &g->nodes[lp_replacement_embed_node(r, 4)];
    cr_assert(e->kind == LP_NODE_EMBEDDING && e->token == f.toks[4]);
    for (int k = 0; k < r->n_logits; k++) {
        const lp_graph_node *d = &g->nodes[lp_replacement_logit_node(r, k)];
        cr_assert(d->kind == LP_NODE_LOGIT && d->token == r->logit_tokens[k] && d->prob == r->logit_probs[k]);
        cr_assert_eq(d->is_target, k == 0);
        char id[64];
        snprintf(id, sizeof id, "%d_%d_%d", L_ + 1, (int)d->token, T_ - 1);
        cr_assert_str_eq(d->id, id);
    }
    for (int t = 0; t < n; t++)
        for (int s = 0; s < n; s++)
            cr_assert_eq(lp_graph_edge(g, t, s), A[(size_t)t * n + s]);
    lp_graph_shape sh = {r->n_features, L_, T_, r->n_logits, r->logit_probs};
    double rep, comp;
    cr_assert_eq(lp_attrib_scores(A, &sh, &rep, &comp), 0);
    cr_assert(rep == g->replacement && comp == g->completeness);
    cr_assert(rep > 0 && rep <= 1 && comp > 0 && comp <= 1, "%g %g", rep, comp);
    for (int i = 0; i < n; i++)
        cr_assert(g->nodes[i].influence > 0 && g->nodes[i].influence <= 1.0f + 1e-6f, "%g", g->nodes[i].influence);
    free(A);
    lp_replacement_free(r);
    lp_graph_free(g);
    teardown(&f);
}

Test(graph, prune_is_prune_h_selection)
{
    fixture f = setup(5);
    lp_graph *g = attribute(&f, NULL);
    lp_graph *p = lp_graph_prune(g, 0.8, 0.9);
    cr_assert_not_null(p, "%s", lp_last_error());
    int n = g->n_nodes, F = 0, K = 0;
    for (int i = 0; i < n; i++)
        F += g->nodes[i].kind == LP_NODE_FEATURE, K += g->nodes[i].kind == LP_NODE_LOGIT;
    float *A = malloc(sizeof(float) * n * n), probs[16];
    lp_graph_dense(g, A);
    for (int k = 0; k < K; k++)
        probs[k] = g->nodes[n - K + k].prob;
    lp_graph_shape sh = {F, L_, T_, K, probs};
    lp_attrib_pruned pr;
    cr_assert_eq(lp_attrib_prune(A, &sh, 0.8, 0.9, &pr), 0);
    int m = 0;
    for (int i = 0; i < n; i++) {
        int edge = 0;
        for (int j = 0; j < n; j++)
            edge |= (pr.edge_mask[(size_t)i * n + j] && pr.node_mask[j] && A[(size_t)i * n + j] != 0) ||
                    (pr.edge_mask[(size_t)j * n + i] && pr.node_mask[j] && A[(size_t)j * n + i] != 0);
        lp_node_kind k = g->nodes[i].kind;
        if (!pr.node_mask[i] || !(edge || k == LP_NODE_EMBEDDING || k == LP_NODE_LOGIT))
            continue;
        cr_assert_lt(m, p->n_nodes);
        cr_assert_str_eq(p->nodes[m].id, g->nodes[i].id);
        cr_assert_float_eq(p->nodes[m].influence, pr.cumulative[i], 1e-6);
        m++;
    }
    cr_assert_eq(m, p->n_nodes);
    cr_assert_lt(p->n_nodes, n, "nothing was pruned");
    for (int a = 0; a < p->n_nodes; a++)
        for (int b = 0; b < p->n_nodes; b++) {
            int i = lp_graph_find(g, p->nodes[a].id), j = lp_graph_find(g, p->nodes[b].id);
            float w = lp_graph_edge(p, a, b);
            cr_assert(w == 0 || w == A[(size_t)i * n + j]);
            cr_assert_eq(w != 0, pr.edge_mask[(size_t)i * n + j] && A[(size_t)i * n + j] != 0);
        }
    cr_assert_eq(p->node_threshold, 0.8);
    cr_assert_null(lp_graph_prune(g, 1.5, 0.9));
    cr_assert(strstr(lp_last_error(), "threshold"), "%s", lp_last_error());
    lp_attrib_pruned_clear(&pr);
    free(A);
    lp_graph_free(p);
    lp_graph_free(g);
    teardown(&f);
}

Test(graph, inputs_and_outputs_are_sorted_rows_and_columns)
{
    fixture f = setup(7);
    lp_graph *g = attribute(&f, NULL);
    int t = g->n_nodes - 1, s = 5, nz = 0;
    for (int j = 0; j < g->n_nodes; j++)
        nz += lp_graph_edge(g, t, j) != 0;
    lp_graph_link *l;
    int k = lp_graph_in(g, t, 0, &l);
    cr_assert_eq(k, nz);
    for (int i = 0; i < k; i++) {
        cr_assert_eq(l[i].weight, lp_graph_edge(g, t, l[i].node));
        if (i)
            cr_assert_geq(fabsf(l[i - 1].weight), fabsf(l[i].weight));
    }
    free(l);
    cr_assert_eq(lp_graph_in(g, t, 3, &l), 3);
    free(l);
    k = lp_graph_out(g, s, 0, &l);
    for (int i = 0; i < k; i++)
        cr_assert_eq(l[i].weight, lp_graph_edge(g, l[i].node, s));
    free(l);
    cr_assert_lt(lp_graph_in(g, g->n_nodes, 3, &l), 0);
    lp_graph_free(g);
    teardown(&f);
}

/* brute force: every path embedding -> logit with its score */
typedef struct bf {
    const lp_graph *g;
    double *best;
    int k, n;
    int stack[16];
} bf;

static int rank_of(const lp_graph *g, int i)
{
    const lp_graph_node *d = &g->nodes[i];
    return d->kind == LP_NODE_EMBEDDING ? 0 : d->kind == LP_NODE_LOGIT ? g->n_layers + 1 : d->layer + 1;
}

static double row_sum(const lp_graph *g, int t)
{
    double s = 0;
    for (int j = 0; j < g->n_nodes; j++)
        s += fabs(lp_graph_edge(g, t, j));
    return s;
}

static void walk(bf *b, int s, double score)
{
    const lp_graph *g = b->g;
    if (g->nodes[s].kind == LP_NODE_LOGIT) {
        for (int i = 0; i < b->k; i++)
            if (score > b->best[i]) {
                memmove(b->best + i + 1, b->best + i, sizeof(double) * (b->k - i - 1));
                b->best[i] = score;
                break;
            }
        return;
    }
    for (int t = 0; t < g->n_nodes; t++) {
        float w = lp_graph_edge(g, t, s);
        if (w != 0 && rank_of(g, t) > rank_of(g, s))
            walk(b, t, score * fabs(w) / row_sum(g, t));
    }
}

Test(graph, paths_are_the_k_best_by_brute_force)
{
    fixture f = setup(9);
    lp_graph *g0 = attribute(&f, NULL);
    lp_graph *g = lp_graph_prune(g0, 0.6, 0.8);
    cr_assert_not_null(g);
    enum { K = 6 };
    double best[K];
    for (int i = 0; i < K; i++)
        best[i] = -1;
    bf b = {.g = g, .best = best, .k = K};
    for (int s = 0; s < g->n_nodes; s++)
        if (g->nodes[s].kind == LP_NODE_EMBEDDING)
            walk(&b, s, 1.0);
    lp_graph_path *p;
    int n = lp_graph_paths(g, K, -1, -1, &p);
    cr_assert_gt(n, 0, "%s", lp_last_error());
    for (int i = 0; i < n; i++) {
        cr_assert_float_eq(p[i].score, best[i], 1e-12 + 1e-9 * best[i], "path %d: %g vs %g", i, p[i].score, best[i]);
        /* the path's own product equals its score, and it runs embedding -> logit */
        double s = 1;
        int sign = 1;
        cr_assert_eq(g->nodes[p[i].nodes[0]].kind, LP_NODE_EMBEDDING);
        cr_assert_eq(g->nodes[p[i].nodes[p[i].n - 1]].kind, LP_NODE_LOGIT);
        for (int j = 1; j < p[i].n; j++) {
            float w = lp_graph_edge(g, p[i].nodes[j], p[i].nodes[j - 1]);
            cr_assert_neq(w, 0.0f);
            s *= fabs(w) / row_sum(g, p[i].nodes[j]);
            sign *= w < 0 ? -1 : 1;
        }
        cr_assert_float_eq(s, p[i].score, 1e-9 * s);
        cr_assert_eq(sign, p[i].sign);
    }
    lp_graph_paths_free(p, n);
    lp_graph_free(g);
    lp_graph_free(g0);
    teardown(&f);
}

Test(graph, explicit_targets_are_linear)
{
    fixture f = setup(11);
    lp_graph_target a = {.token = 5, .minus_token = -1, .set = 1}, b = {.token = 9, .minus_token = -1, .set = 1},
                    d = {.token = 5, .minus_token = 9, .text = " five - nine", .set = 1};
    lp_graph *ga = attribute(&f, &a), *gb = attribute(&f, &b), *gd = attribute(&f, &d);
    int n = ga->n_nodes, t = n - 1;
    cr_assert_eq(gb->n_nodes, n);
    cr_assert_eq(gd->n_nodes, n);
    cr_assert(ga->nodes[t].kind == LP_NODE_LOGIT && ga->nodes[t].token == 5);
    cr_assert_eq(gd->nodes[t].token, V_);
    cr_assert_str_eq(gd->nodes[t].text, " five - nine");
    double amax = 0;
    for (int s = 0; s < n; s++)
        amax = fmax(amax, fabs(lp_graph_edge(ga, t, s)));
    cr_assert_gt(amax, 0);
    for (int s = 0; s < n; s++) {
        double want = (double)lp_graph_edge(ga, t, s) - lp_graph_edge(gb, t, s);
        cr_assert_float_eq(lp_graph_edge(gd, t, s), want, 1e-5 * amax, "edge %d", s);
    }
    lp_graph_target bad = {.token = V_ + 3, .minus_token = -1, .set = 1};
    cr_assert_null(lp_graph_attribute(f.m, f.tcs, f.toks, T_, &f.o, &bad, NULL));
    cr_assert(strstr(lp_last_error(), "vocabulary"), "%s", lp_last_error());
    lp_graph_free(ga), lp_graph_free(gb), lp_graph_free(gd);
    teardown(&f);
}

Test(graph, bad_prompts_are_errors)
{
    fixture f = setup(13);
    cr_assert_null(lp_graph_attribute(f.m, f.tcs, f.toks, 0, &f.o, NULL, NULL));
    cr_assert(strstr(lp_last_error(), "no tokens"), "%s", lp_last_error());
    int32_t *many = calloc(f.m->cfg.n_ctx + 1, sizeof *many);
    cr_assert_null(lp_graph_attribute(f.m, f.tcs, many, f.m->cfg.n_ctx + 1, &f.o, NULL, NULL));
    cr_assert(strstr(lp_last_error(), "context"), "%s", lp_last_error());
    free(many);
    teardown(&f);
}

static char *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "%s", path);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    rewind(fp);
    char *b = malloc(*n + 1);
    cr_assert_eq(fread(b, 1, *n, fp), *n);
    b[*n] = 0;
    fclose(fp);
    return b;
}

static void same_graph(const lp_graph *a, const lp_graph *b)
{
    cr_assert_eq(a->n_nodes, b->n_nodes);
    cr_assert_eq(a->n_layers, b->n_layers);
    cr_assert_eq(a->n_tokens, b->n_tokens);
    for (int i = 0; i < a->n_nodes; i++) {
        const lp_graph_node *x = &a->nodes[i], *y = &b->nodes[i];
        cr_assert_str_eq(x->id, y->id);
        cr_assert(x->kind == y->kind && x->layer == y->layer && x->pos == y->pos && x->feature == y->feature &&
                      x->token == y->token && x->prob == y->prob && x->is_target == y->is_target,
                  "node %s", x->id);
        cr_assert(x->influence == y->influence || (isnan(x->influence) && isnan(y->influence)));
        cr_assert(x->activation == y->activation || (isnan(x->activation) && isnan(y->activation)));
    }
    for (int t = 0; t < a->n_nodes; t++)
        for (int s = 0; s < a->n_nodes; s++)
            cr_assert_eq(lp_graph_edge(a, t, s), lp_graph_edge(b, t, s), "edge %d <- %d", t, s);
    for (int t = 0; t < a->n_tokens; t++)
        cr_assert_eq(a->tokens[t], b->tokens[t]);
}

Test(graph, json_round_trip_is_byte_identical)
{
    fixture f = setup(15);
    lp_graph *g = attribute(&f, NULL), *p = lp_graph_prune(g, 0.8, 0.98);
    cr_assert_not_null(p);
    char d[] = "/tmp/lp_graph_XXXXXX";
    cr_assert_not_null(mkdtemp(d));
    const lp_graph *both[2] = {g, p};
    for (int k = 0; k < 2; k++) {
        char a[64], b[64];
        snprintf(a, sizeof a, "%s/a%d.json", d, k);
        snprintf(b, sizeof b, "%s/b%d.json", d, k);
        cr_assert_eq(lp_graph_save_json(both[k], a), 0, "%s", lp_last_error());
        lp_graph *h = lp_graph_load_json(a);
        cr_assert_not_null(h, "%s", lp_last_error());
        same_graph(both[k], h);
        cr_assert_float_eq(h->replacement, g->replacement, 1e-8);
        cr_assert_str_eq(h->model, "random-gpt2");
        cr_assert_str_eq(h->generator, "loupe");
        cr_assert_eq(lp_graph_save_json(h, b), 0, "%s", lp_last_error());
        size_t na, nb;
        char *x = slurp(a, &na), *y = slurp(b, &nb);
        cr_assert(na == nb && !memcmp(x, y, na), "saved, loaded and saved again differs (%zu vs %zu bytes)", na, nb);
        cr_assert(strstr(x, "\"schema_version\":1"));
        cr_assert(strstr(x, "\"prompt\":\"p<r>o\\\"m\xEF\xBF\xBDpt\""), "the prompt is not escaped as valid UTF-8");
        free(x), free(y);
        lp_graph_free(h);
        unlink(a), unlink(b);
    }
    /* failures: a clear error, no file left behind */
    cr_assert_lt(lp_graph_save_json(g, "/nonexistent/dir/g.json"), 0);
    cr_assert(strstr(lp_last_error(), "/nonexistent/dir/g.json"), "%s", lp_last_error());
    char c[64], cp[72];
    snprintf(c, sizeof c, "%s/c.json", d);
    snprintf(cp, sizeof cp, "%s.part", c);
    lp_interrupt_request();
    int rc = lp_graph_save_json(g, c);
    lp_interrupt_clear();
    cr_assert_lt(rc, 0);
    cr_assert_eq(lp_last_error_code(), LP_ERR_INTERRUPTED, "%s", lp_last_error());
    cr_assert(access(c, F_OK) != 0 && access(cp, F_OK) != 0, "an interrupted save left a file");
    rmdir(d);
    lp_graph_free(p);
    lp_graph_free(g);
    teardown(&f);
}

static const char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/lp_graph_bad_%d.json", (int)getpid());
    FILE *fp = fopen(path, "wb");
    fputs(text, fp);
    fclose(fp);
    return path;
}

#define META "\"metadata\":{\"slug\":\"s\",\"prompt_tokens\":[\"<bos>\",\" a\",\" b\"],\"extra\":{\"x\":1}}"
#define NODES                                                                                                         \
    "\"nodes\":[{\"node_id\":\"1_7_2\",\"feature\":43,\"layer\":\"1\",\"ctx_idx\":2,\"feature_type\":\"cross layer "  \
    "transcoder\",\"activation\":1.5,\"influence\":0.2,\"unknown\":[1,2]},"                                           \
    "{\"node_id\":\"0_0_1\",\"feature\":-1,\"layer\":\"0\",\"ctx_idx\":1,\"feature_type\":\"mlp reconstruction "     \
    "error\"},"                                                                                                       \
    "{\"node_id\":\"E_5_1\",\"feature\":1,\"layer\":\"E\",\"ctx_idx\":1,\"feature_type\":\"embedding\"},"             \
    "{\"node_id\":\"3_9_2\",\"feature\":9,\"layer\":\"3\",\"ctx_idx\":2,\"feature_type\":\"logit\",\"token_prob\":0." \
    "5,\"is_target_logit\":true,\"clerp\":\"Output \\\" x\\\" (p=0.500)\"}]"

Test(graph, a_circuit_tracer_file_loads)
{
    const char *path = write_tmp("{" META ",\"qParams\":{\"pinnedIds\":[]}," NODES ",\"links\":["
                                 "{\"source\":\"E_5_1\",\"target\":\"0_0_1\",\"weight\":0.25},"
                                 "{\"source\":\"0_0_1\",\"target\":\"1_7_2\",\"weight\":-0.5},"
                                 "{\"source\":\"1_7_2\",\"target\":\"3_9_2\",\"weight\":2}]}");
    lp_graph *g = lp_graph_load_json(path);
    cr_assert_not_null(g, "%s", lp_last_error());
    /* members in another order, scalars among them: the same graph */
    const char *p2 = write_tmp("{\"links\":[{\"source\":\"1_7_2\",\"target\":\"3_9_2\",\"weight\":2}],\"n\":1.5,"
                               "\"s\":\"]}\\\"\", \"t\":true ," NODES "," META "}");
    lp_graph *g2 = lp_graph_load_json(p2);
    cr_assert_not_null(g2, "%s", lp_last_error());
    cr_assert(g2->n_nodes == 4 && lp_graph_edge(g2, 3, 0) == 2.0f && lp_graph_n_edges(g2) == 1);
    lp_graph_free(g2);
    path = write_tmp("{" META ",\"qParams\":{\"pinnedIds\":[]}," NODES ",\"links\":["
                     "{\"source\":\"E_5_1\",\"target\":\"0_0_1\",\"weight\":0.25},"
                     "{\"source\":\"0_0_1\",\"target\":\"1_7_2\",\"weight\":-0.5},"
                     "{\"source\":\"1_7_2\",\"target\":\"3_9_2\",\"weight\":2}]}");
    cr_assert_eq(g->n_nodes, 4);
    cr_assert_eq(g->n_layers, 2);
    cr_assert_eq(g->n_tokens, 3);
    cr_assert_eq(g->nodes[0].kind, LP_NODE_FEATURE);
    cr_assert(g->nodes[0].layer == 1 && g->nodes[0].feature == 7 && g->nodes[0].pos == 2);
    cr_assert_eq(g->nodes[0].activation, 1.5f);
    cr_assert(g->nodes[1].kind == LP_NODE_ERROR && g->nodes[1].layer == 0 && g->nodes[1].pos == 1);
    cr_assert(g->nodes[2].kind == LP_NODE_EMBEDDING && g->nodes[2].token == 5);
    cr_assert_str_eq(g->nodes[2].text, " a");
    cr_assert(g->nodes[3].kind == LP_NODE_LOGIT && g->nodes[3].token == 9 && g->nodes[3].is_target);
    cr_assert_str_eq(g->nodes[3].text, " x");
    cr_assert_eq(g->tokens[1], 5);
    cr_assert_eq(lp_graph_edge(g, 3, 0), 2.0f);
    cr_assert_eq(lp_graph_edge(g, 0, 1), -0.5f);
    cr_assert_eq(lp_graph_n_edges(g), 3);
    lp_graph_path *p;
    cr_assert_eq(lp_graph_paths(g, 3, -1, -1, &p), 1);
    cr_assert_eq(p[0].n, 4);
    cr_assert_eq(p[0].sign, -1);
    lp_graph_paths_free(p, 1);
    lp_graph *q = lp_graph_prune(g, 0.99, 0.99);
    cr_assert_not_null(q, "%s", lp_last_error());
    lp_graph_free(q);
    lp_graph_free(g);
    unlink(path);
}

static void bad(const char *text, const char *want)
{
    const char *path = write_tmp(text);
    lp_graph *g = lp_graph_load_json(path);
    cr_assert_null(g, "loaded a bad file: %s", text);
    cr_assert(strstr(lp_last_error(), want), "error '%s' does not say '%s'", lp_last_error(), want);
    unlink(path);
}

Test(graph, bad_files_are_clear_errors)
{
    bad("{", "graph file");
    bad("[]", "not an object");
    bad("{" NODES ",\"links\":[]}", "'metadata' is missing");
    bad("{\"metadata\":{}," NODES ",\"links\":[]}", "'prompt_tokens' is missing");
    bad("{" META ",\"links\":[]}", "'nodes' is missing");
    bad("{" META "," NODES "}", "'links' is missing");
    bad("{" META ",\"nodes\":[{\"feature_type\":\"embedding\",\"ctx_idx\":0}],\"links\":[]}", "nodes[0]: 'node_id'");
    bad("{" META ",\"nodes\":[{\"node_id\":\"E_1_0\",\"ctx_idx\":0}],\"links\":[]}", "'feature_type' is missing");
    bad("{" META ",\"nodes\":[{\"node_id\":\"E_1_0\",\"feature_type\":\"embedding\",\"ctx_idx\":\"0\"}],\"links\":[]}",
        "'ctx_idx' has the wrong type");
    bad("{" META ",\"nodes\":[{\"node_id\":\"E_1_9\",\"feature_type\":\"embedding\",\"ctx_idx\":9}],\"links\":[]}",
        "outside the prompt");
    bad("{" META ",\"nodes\":[{\"node_id\":\"x\",\"feature_type\":\"cross layer transcoder\",\"layer\":\"1\","
        "\"ctx_idx\":1}],\"links\":[]}",
        "{layer}_{feature}_{pos}");
    bad("{" META "," NODES ",\"links\":[{\"source\":\"E_5_1\",\"target\":\"nope\",\"weight\":1}]}", "no node 'nope'");
    bad("{" META "," NODES ",\"links\":[{\"source\":\"E_5_1\",\"target\":\"0_0_1\"}]}", "'weight' is missing");
    bad("{" META "," NODES ",\"links\":[{\"source\":\"E_5_1\",\"target\":\"0_0_1\",\"weight\":\"1\"}]}",
        "'weight' has the wrong type");
    bad("{" META "," NODES ",\"links\":{}}", "'links' has the wrong type");
    bad("{" META "," NODES ",\"links\":[],\"links\":[]}", "appears twice");
    bad("{" META "," NODES ",\"links\":[]} x", "text after");
    bad("{" META "," NODES ",\"links\":[{\"source\":\"E_5_1\",\"target\":\"0_0_1\",\"weight\":1} {}]}", "',' or ']'");
    bad("{" META "," NODES ",\"links\":[{\"source\":\"E_5_1\",\"target\":\"0_0_1\",\"weight\":1}", "invalid JSON");
    cr_assert_null(lp_graph_load_json("/nonexistent/graph.json"));
    cr_assert(strstr(lp_last_error(), "/nonexistent/graph.json"), "%s", lp_last_error());
}

/* The diagram's view (issue 18): pins and supernodes are checked, kept sorted and distinct,
 * saved in qParams by node id and loaded back; pinned ids the graph does not know are
 * ignored; a supernode with a member that is not a node here (a coarsened graph's, whose
 * members are the full graph's nodes) is kept as written and saved again. */
Test(graph, pins_and_supernodes_round_trip_through_qparams)
{
    const char *path = write_tmp("{" META ",\"qParams\":{\"pinnedIds\":[\"3_9_2\",\"nope\",7,\"E_5_1\"],"
                                 "\"supernodes\":[[\"say x\",\"1_7_2\",\"0_0_1\"],[\"partly\",\"0_0_1\",\"gone\"],[3],\"x\"]},"
                                 NODES ",\"links\":[{\"source\":\"1_7_2\",\"target\":\"3_9_2\",\"weight\":2}]}");
    lp_graph *g = lp_graph_load_json(path);
    cr_assert_not_null(g, "%s", lp_last_error());
    cr_assert(g->n_pinned == 2 && g->pinned[0] == 2 && g->pinned[1] == 3);
    cr_assert_eq(g->n_groups, 1);
    cr_assert_str_eq(g->groups[0].name, "say x");
    cr_assert(g->groups[0].n == 2 && g->groups[0].ids[0] == 0 && g->groups[0].ids[1] == 1);
    int pins[] = {3, 1, 3};
    cr_assert_eq(lp_graph_set_pinned(g, pins, 3), 0);
    cr_assert(g->n_pinned == 2 && g->pinned[0] == 1 && g->pinned[1] == 3);
    int bad_ids[] = {0, 4};
    cr_assert_lt(lp_graph_set_pinned(g, bad_ids, 2), 0);
    cr_assert(strstr(lp_last_error(), "node 5 out of range"), "%s", lp_last_error());
    cr_assert(g->n_pinned == 2 && g->pinned[0] == 1, "a failed call changed the pins");
    cr_assert_lt(lp_graph_add_group(g, "", pins, 1), 0);
    cr_assert_lt(lp_graph_add_group(g, "n", pins, 0), 0);
    cr_assert_eq(lp_graph_add_group(g, "say x", pins + 1, 1), 0); /* replaces */
    cr_assert_eq(lp_graph_add_group(g, "q\"<b>", pins, 2), 0);
    cr_assert(g->n_groups == 2 && g->groups[0].n == 1 && g->groups[0].ids[0] == 1);
    char out[80];
    snprintf(out, sizeof out, "%s.out", path);
    cr_assert_eq(lp_graph_save_json(g, out), 0, "%s", lp_last_error());
    size_t n;
    char *text = slurp(out, &n);
    cr_assert(strstr(text, "\"qParams\":{\"pinnedIds\":[\"0_0_1\",\"3_9_2\"],\"supernodes\":[[\"partly\",\"0_0_1\",\"gone\"],"
                           "[\"say x\",\"0_0_1\"],"
                           "[\"q\\\"<b>\",\"0_0_1\",\"3_9_2\"]],\"linkType\":\"both\""), "%s", text);
    free(text);
    lp_graph *h = lp_graph_load_json(out);
    cr_assert_not_null(h, "%s", lp_last_error());
    cr_assert(h->n_pinned == 2 && h->pinned[0] == 1 && h->pinned[1] == 3);
    cr_assert(h->n_groups == 2 && !strcmp(h->groups[1].name, "q\"<b>") && h->groups[1].n == 2);
    lp_graph_free(h);
    lp_graph_free(g);
    unlink(out);
    unlink(path);
}
