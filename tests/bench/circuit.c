/* bench_circuit: the static circuit diagram (display/circuit.c) of random attribution graphs
 * of 500, 5,000 and 20,000 nodes (ten edges per node, 30 tokens, 12 layers): the bytes of
 * the bundle and the time to build it, against the time to write the same graph as graph
 * JSON (one object per node and per link, as circuit-tracer's files are; jansson) in the
 * same run. One JSON object per line:
 *   {"bench": "circuit 5000 nodes", "nodes": .., "edges": .., "bytes": .., "html_bytes": ..,
 *    "display_ms": .., "json_ms": .., "json_bytes": .., "ratio": display_ms / json_ms}
 * Each time is the median of several repeats, the two alternating. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "circuit.h"

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 8) & 0xffffff;
}

typedef struct graph {
    lp_circuit c;
    lp_circuit_node *nodes;
    lp_circuit_edge *edges;
    char (*lab)[40];
    const char **tok;
    char (*tokbuf)[16];
} graph;

static int row_of(const lp_circuit_node *v, int L)
{
    return v->kind == LP_CIRCUIT_EMBEDDING ? 0 : v->kind == LP_CIRCUIT_LOGIT ? L + 1 : v->layer + 1;
}

static graph make(int n_nodes, int T, int L, unsigned seed)
{
    graph g = {0};
    int ne = 10 * n_nodes, nlog = 10, nerr = L * T, nf = n_nodes - nerr - T - nlog;
    g.nodes = calloc((size_t)n_nodes, sizeof *g.nodes);
    g.edges = calloc((size_t)ne, sizeof *g.edges);
    g.lab = calloc((size_t)n_nodes, sizeof *g.lab);
    g.tok = calloc((size_t)T, sizeof *g.tok);
    g.tokbuf = calloc((size_t)T, sizeof *g.tokbuf);
    if (!g.nodes || !g.edges || !g.lab || !g.tok || !g.tokbuf || nf < 0) {
        fprintf(stderr, "bench_circuit: cannot make a graph of %d nodes\n", n_nodes);
        exit(1);
    }
    unsigned s = seed;
    for (int p = 0; p < T; p++) {
        snprintf(g.tokbuf[p], sizeof g.tokbuf[p], " tok%d", p);
        g.tok[p] = g.tokbuf[p];
    }
    int k = 0;
    for (int i = 0; i < nf; i++, k++) {
        snprintf(g.lab[k], sizeof g.lab[k], "feature %d: a typical label", i);
        g.nodes[k] = (lp_circuit_node){LP_CIRCUIT_FEATURE, (int)(rnd(&s) % L), (int)(rnd(&s) % T),
                                       (int)(rnd(&s) % 16384), (float)(rnd(&s) % 1000) / 100,
                                       (float)(rnd(&s) % 10000) / 10000, 0, g.lab[k]};
    }
    for (int l = 0; l < L; l++)
        for (int p = 0; p < T; p++, k++)
            g.nodes[k] = (lp_circuit_node){LP_CIRCUIT_ERROR, l, p, -1, 1, (float)(rnd(&s) % 100) / 1000, 0, NULL};
    for (int p = 0; p < T; p++, k++)
        g.nodes[k] = (lp_circuit_node){LP_CIRCUIT_EMBEDDING, 0, p, p, 1, 0.01f, 0, NULL};
    for (int j = 0; j < nlog; j++, k++) {
        snprintf(g.lab[k], sizeof g.lab[k], " out%d", j);
        g.nodes[k] = (lp_circuit_node){LP_CIRCUIT_LOGIT, 0, T - 1, j, 0, 1.0f / (j + 1), 0.5f / (j + 1), g.lab[k]};
    }
    for (int e = 0; e < ne; e++) {
        int a, b;
        do {
            a = (int)(rnd(&s) % (unsigned)n_nodes);
            b = (int)(rnd(&s) % (unsigned)n_nodes);
        } while (!(row_of(&g.nodes[a], L) < row_of(&g.nodes[b], L) && g.nodes[b].kind != LP_CIRCUIT_ERROR));
        g.edges[e] = (lp_circuit_edge){a, b, ((float)(rnd(&s) % 2001) - 1000) / 100};
    }
    g.c = (lp_circuit){.n_nodes = n_nodes, .nodes = g.nodes, .n_edges = ne, .edges = g.edges, .n_tokens = T,
                       .tokens = g.tok, .n_layers = L, .replacement_score = 0.6, .completeness_score = 0.8};
    return g;
}

/* The graph as graph JSON (one object per node and link); returns the text's length. */
static size_t graph_json(const graph *g)
{
    json_t *nodes = json_array(), *links = json_array();
    char id[64], id2[64];
    for (int i = 0; i < g->c.n_nodes; i++) {
        const lp_circuit_node *v = &g->nodes[i];
        snprintf(id, sizeof id, "%d_%d_%d", v->layer, v->feature, v->pos);
        json_array_append_new(nodes, json_pack("{s:s,s:i,s:i,s:i,s:f,s:f,s:s?}", "node_id", id, "feature",
                                               v->feature, "layer", v->layer, "ctx_idx", v->pos, "activation",
                                               (double)v->activation, "influence", (double)v->influence,
                                               "clerp", v->label));
    }
    for (int k = 0; k < g->c.n_edges; k++) {
        const lp_circuit_node *a = &g->nodes[g->edges[k].src], *b = &g->nodes[g->edges[k].dst];
        snprintf(id, sizeof id, "%d_%d_%d", a->layer, a->feature, a->pos);
        snprintf(id2, sizeof id2, "%d_%d_%d", b->layer, b->feature, b->pos);
        json_array_append_new(links, json_pack("{s:s,s:s,s:f}", "source", id, "target", id2, "weight",
                                               (double)g->edges[k].weight));
    }
    json_t *doc = json_pack("{s:o,s:o}", "nodes", nodes, "links", links);
    char *s = json_dumps(doc, JSON_COMPACT);
    size_t n = s ? strlen(s) : 0;
    free(s);
    json_decref(doc);
    return n;
}

int main(int argc, char **argv)
{
    (void)argc;
    bench_blas_start(argv);
    static const int sizes[] = {500, 5000, 20000};
    int reps = bench_env_int("LOUPE_BENCH_REPS", 5);
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        graph g = make(sizes[t], 30, 12, 17 + (unsigned)t);
        double td[64], tj[64];
        size_t bytes = 0, html = 0, jbytes = 0;
        if (reps > 64)
            reps = 64;
        for (int r = 0; r < reps; r++) {
            double t0 = bench_now();
            json_t *b = lp_circuit_display(&g.c, NULL);
            double t1 = bench_now();
            jbytes = graph_json(&g);
            double t2 = bench_now();
            if (!b) {
                fprintf(stderr, "bench_circuit: the display failed\n");
                return 1;
            }
            char *s = json_dumps(b, JSON_COMPACT);
            bytes = s ? strlen(s) : 0;
            free(s);
            html = json_string_length(json_object_get(b, "text/html"));
            json_decref(b);
            td[r] = (t1 - t0) * 1e3;
            tj[r] = (t2 - t1) * 1e3;
        }
        double md = bench_median(td, reps), mj = bench_median(tj, reps);
        printf("{\"bench\": \"circuit %d nodes\", \"nodes\": %d, \"edges\": %d, \"bytes\": %zu, \"html_bytes\": %zu, "
               "\"display_ms\": %.2f, \"json_ms\": %.2f, \"json_bytes\": %zu, \"ratio\": %.3f}\n",
               g.c.n_nodes, g.c.n_nodes, g.c.n_edges, bytes, html, md, mj, jbytes, md / mj);
        fflush(stdout);
        free(g.nodes);
        free(g.edges);
        free(g.lab);
        free(g.tok);
        free(g.tokbuf);
    }
    return 0;
}
