/* Automatic supernodes (supernodes.h). */
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/supernodes.h"
#include "core/error.h"

lp_supernode_opts lp_supernode_defaults(void)
{
    return (lp_supernode_opts){.threshold = 0.9, .layer_gap = 1, .labels = 1};
}

static int find(int *p, int i)
{
    while (p[i] != i)
        i = p[i] = p[p[i]];
    return i;
}

/* the words of s (lower case, letters and digits), at most 64 of at most 31 bytes */
static int words(const char *s, char w[64][32])
{
    int n = 0;
    while (*s && n < 64) {
        while (*s && !isalnum((unsigned char)*s))
            s++;
        int k = 0;
        while (*s && isalnum((unsigned char)*s)) {
            if (k < 31)
                w[n][k++] = (char)tolower((unsigned char)*s);
            s++;
        }
        if (k) {
            w[n][k] = 0;
            n++;
        }
    }
    return n;
}

static int labels_agree(const char *a, const char *b)
{
    char wa[64][32], wb[64][32];
    int na = words(a, wa), nb = words(b, wb), common = 0;
    if (!na || !nb)
        return 1; /* an empty label says nothing */
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++)
            if (!strcmp(wa[i], wb[j])) {
                common++;
                break;
            }
    int m = na > nb ? na : nb;
    return 2 * common >= m;
}

int lp_graph_supernodes(const lp_graph *g, const lp_supernode_opts *o, int *group)
{
    lp_supernode_opts def = lp_supernode_defaults();
    if (!o)
        o = &def;
    if (!(o->threshold >= -1 && o->threshold <= 1))
        return lp_set_error("supernodes: threshold must be a cosine in [-1, 1] (got %g)", o->threshold);
    if (o->layer_gap < 0)
        return lp_set_error("supernodes: layer_gap must be >= 0 (got %d)", o->layer_gap);
    int n = g->n_nodes;
    int *p = lp_malloc((size_t)(n ? n : 1) * sizeof(int), "supernode groups");
    double *norm = lp_calloc((size_t)(n ? n : 1), sizeof(double), "supernode profiles");
    int *lo = lp_malloc((size_t)(n ? n : 1) * sizeof(int), "supernode layers"),
        *hi = lp_malloc((size_t)(n ? n : 1) * sizeof(int), "supernode layers");
    if (!p || !norm || !lo || !hi) {
        free(p), free(norm), free(lo), free(hi);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        p[i] = i;
        lo[i] = hi[i] = g->nodes[i].layer;
        if (g->nodes[i].kind != LP_NODE_FEATURE)
            continue;
        double s = 0;
        for (int k = 0; k < n; k++) {
            double a = lp_graph_edge(g, i, k), b = lp_graph_edge(g, k, i);
            s += a * a + b * b;
        }
        norm[i] = sqrt(s);
    }
    for (int i = 0; i < n; i++) {
        const lp_graph_node *a = &g->nodes[i];
        if (a->kind != LP_NODE_FEATURE || !(norm[i] > 0))
            continue;
        for (int j = i + 1; j < n; j++) {
            const lp_graph_node *b = &g->nodes[j];
            if (b->kind != LP_NODE_FEATURE || b->pos != a->pos || abs(b->layer - a->layer) > o->layer_gap ||
                !(norm[j] > 0) || find(p, i) == find(p, j))
                continue;
            if (o->labels && a->label && b->label && !labels_agree(a->label, b->label))
                continue;
            double d = 0;
            for (int k = 0; k < n; k++)
                d += (double)lp_graph_edge(g, i, k) * lp_graph_edge(g, j, k) +
                     (double)lp_graph_edge(g, k, i) * lp_graph_edge(g, k, j);
            int ri = find(p, i), rj = find(p, j);
            int l0 = lo[ri] < lo[rj] ? lo[ri] : lo[rj], l1 = hi[ri] > hi[rj] ? hi[ri] : hi[rj];
            if (l1 - l0 > o->layer_gap) /* a group spans at most layer_gap + 1 layers */
                continue;
            if (d / (norm[i] * norm[j]) >= o->threshold) {
                p[rj] = ri;
                lo[ri] = l0, hi[ri] = l1;
            }
        }
    }
    /* groups numbered by their first member */
    int ng = 0;
    for (int i = 0; i < n; i++)
        group[i] = -1;
    for (int i = 0; i < n; i++) {
        int r = find(p, i);
        if (group[r] < 0)
            group[r] = ng++;
        group[i] = group[r];
    }
    free(p), free(norm), free(lo), free(hi);
    return ng;
}

char *lp_graph_group_name(const lp_graph *g, const int *group, int k)
{
    int n = 0, first = -1, lo = 1 << 30, hi = -1, best = -1, best_count = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (group[i] != k)
            continue;
        if (first < 0)
            first = i;
        n++;
        lo = g->nodes[i].layer < lo ? g->nodes[i].layer : lo;
        hi = g->nodes[i].layer > hi ? g->nodes[i].layer : hi;
        const char *l = g->nodes[i].label;
        if (!l || !*l)
            continue;
        int c = 0;
        for (int j = 0; j < g->n_nodes; j++)
            c += group[j] == k && g->nodes[j].label && !strcmp(g->nodes[j].label, l);
        if (c > best_count)
            best = i, best_count = c;
    }
    if (first < 0) {
        lp_set_error("supernodes: no group %d", k);
        return NULL;
    }
    char buf[96];
    const char *s;
    if (best >= 0)
        s = g->nodes[best].label;
    else if (n == 1)
        s = g->nodes[first].label ? g->nodes[first].label : g->nodes[first].id;
    else {
        if (lo == hi)
            snprintf(buf, sizeof buf, "L%d P%d \xc3\x97%d", lo, g->nodes[first].pos, n);
        else
            snprintf(buf, sizeof buf, "L%d-%d P%d \xc3\x97%d", lo, hi, g->nodes[first].pos, n);
        s = buf;
    }
    size_t len = strlen(s);
    char *r = lp_malloc(len + 1, "supernode name");
    if (r)
        memcpy(r, s, len + 1);
    return r;
}

static char *dup(const char *s, int *fail)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *r = malloc(n + 1);
    if (!r)
        *fail = 1;
    else
        memcpy(r, s, n + 1);
    return r;
}

/* a JSON string of s; bytes of invalid UTF-8 written as '?' */
static json_t *jstring(const char *s)
{
    json_t *j = json_string(s);
    if (j || !s)
        return j;
    size_t n = strlen(s);
    char *c = malloc(n + 1);
    if (!c)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        c[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
    j = json_string(c);
    free(c);
    return j;
}

lp_graph *lp_graph_coarsen(const lp_graph *g, const int *group, int ng)
{
    int n = g->n_nodes, fail = 0;
    for (int i = 0; i < n; i++)
        if (group[i] < 0 || group[i] >= ng)
            return lp_set_error("supernodes: node %d is in group %d, not in 0..%d", i, group[i], ng - 1), NULL;
    int *size = lp_calloc((size_t)(ng ? ng : 1), sizeof(int), "supernode sizes");
    lp_graph *h = size ? lp_graph_alloc(ng, g->n_tokens) : NULL;
    json_t *sn = h ? json_array() : NULL;
    if (!sn)
        goto fail;
    h->n_layers = g->n_layers;
    memcpy(h->tokens, g->tokens, (size_t)g->n_tokens * sizeof(int32_t));
    for (int t = 0; t < g->n_tokens; t++)
        h->token_text[t] = dup(g->token_text[t], &fail);
    h->prompt = dup(g->prompt, &fail), h->model = dup(g->model, &fail), h->scan = dup(g->scan, &fail);
    h->slug = dup(g->slug, &fail), h->generator = dup(g->generator, &fail);
    h->generator_version = dup(g->generator_version, &fail);
    h->replacement = g->replacement, h->completeness = g->completeness;
    h->node_threshold = g->node_threshold, h->edge_threshold = g->edge_threshold;
    h->max_n_logits = g->max_n_logits, h->batch = g->batch, h->max_feature_nodes = g->max_feature_nodes;
    h->desired_logit_prob = g->desired_logit_prob;
    for (int i = 0; i < n; i++) {
        int k = group[i];
        lp_graph_node *d = &h->nodes[k];
        const lp_graph_node *s = &g->nodes[i];
        if (size[k]++ == 0) {
            *d = *s;
            d->text = dup(s->text, &fail);
            d->label = NULL;
        } else {
            d->activation += s->activation;
            if (isnan(d->influence) || s->influence < d->influence)
                d->influence = s->influence;
        }
    }
    for (int k = 0; k < ng && !fail; k++) {
        char *name = lp_graph_group_name(g, group, k);
        if (!name) {
            fail = 1;
            break;
        }
        h->nodes[k].label = name;
        if (size[k] < 2)
            continue;
        json_t *e = json_array();
        fail |= !e || json_array_append_new(e, jstring(name)) < 0;
        for (int i = 0; i < n && !fail; i++)
            if (group[i] == k)
                fail |= json_array_append_new(e, jstring(g->nodes[i].id)) < 0;
        fail |= json_array_append_new(sn, e) < 0;
    }
    if (fail)
        goto fail;
    for (int t = 0; t < n; t++)
        for (int s = 0; s < n; s++) {
            float w = lp_graph_edge(g, t, s);
            int a = group[t], b = group[s];
            if (w != 0 && a != b)
                lp_graph_set_edge(h, a, b, lp_graph_edge(h, a, b) + w);
        }
    if (json_array_size(sn) && !(h->qparams_supernodes = json_dumps(sn, JSON_COMPACT | JSON_REAL_PRECISION(9))))
        goto fail;
    json_decref(sn);
    free(size);
    return h;
fail:
    if (fail)
        lp_set_error_code(LP_ERR_NOMEM, "supernodes: out of memory for the coarsened graph");
    json_decref(sn);
    lp_graph_free(h);
    free(size);
    return NULL;
}
