/* Graph JSON (graph.h; the team's ATTRIBUTION.md, "Graph JSON"): circuit-tracer's schema 1,
 * the one its viewer and Neuronpedia read, written and read with jansson.
 *
 * Node ids, as circuit-tracer 0.5 writes them (frontend/graph_models.py): features
 * "{layer}_{feature}_{pos}", errors "0_{layer}_{pos}", embeddings "E_{token}_{pos}", logits
 * "{n_layers + 1}_{token}_{pos}"; where an error id would also name a feature of layer 0, the
 * error takes "{layer}_-1_{pos}" (graph.c). A feature's `feature` is the Cantor pair of (layer,
 * feature). loupe adds metadata.info.generator, generation_settings, pruning_settings and
 * metadata.loupe {model, n_layers, tokens, replacement, completeness}; readers ignore them.
 *
 * Writing is deterministic: one node or link per line, keys in a fixed order, floats with 9
 * significant digits (a float's exact round trip), so saved -> loaded -> saved is the same
 * bytes. Every string is made valid UTF-8 (a bad byte becomes U+FFFD) before it is written. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/graph.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/interrupt.h"

#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))

/* ---- writing ---- */

static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!k || k > n || (k == 2 && c < 0xC2))
        return 0;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if (k == 3 && ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0)))
        return 0;
    if (k == 4 && ((c == 0xF0 && s[1] < 0x90) || c > 0xF4 || (c == 0xF4 && s[1] >= 0x90)))
        return 0;
    return k;
}

/* a JSON string of s (NULL: ""), invalid UTF-8 replaced */
static json_t *jstr(const char *s)
{
    if (!s)
        s = "";
    size_t n = strlen(s);
    lp_buf b = LP_BUF_INIT;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len((const unsigned char *)s + i, n - i);
        if (k)
            lp_buf_append(&b, s + i, k), i += k;
        else
            lp_buf_puts(&b, "\xEF\xBF\xBD"), i++;
    }
    char *t = lp_buf_finish(&b);
    json_t *j = t ? json_stringn(t, strlen(t)) : NULL;
    free(t);
    return j;
}

static json_t *jnum(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static long long cantor(long long x, long long y)
{
    return (x + y) * (x + y + 1) / 2 + y;
}

static json_t *node_json(const lp_graph *g, const lp_graph_node *d)
{
    char layer[24], js[96], clerp[256];
    long long feature = -1;
    const char *type = "";
    const char *label = d->label;
    switch (d->kind) {
    case LP_NODE_FEATURE:
        feature = cantor(d->layer, d->feature);
        snprintf(layer, sizeof layer, "%d", d->layer);
        snprintf(js, sizeof js, "%d_%d-0", d->layer, d->feature);
        type = "cross layer transcoder";
        break;
    case LP_NODE_ERROR:
        snprintf(layer, sizeof layer, "%d", d->layer);
        snprintf(js, sizeof js, "%d_%d-0", d->layer, d->pos);
        type = "mlp reconstruction error";
        break;
    case LP_NODE_EMBEDDING:
        feature = d->pos;
        snprintf(layer, sizeof layer, "E");
        snprintf(js, sizeof js, "E_%d-%d", (int)d->token, d->pos);
        type = "embedding";
        break;
    case LP_NODE_LOGIT:
        feature = d->token;
        snprintf(layer, sizeof layer, "%d", g->n_layers + 1);
        snprintf(js, sizeof js, "L_%d-%d", (int)d->token, d->pos);
        type = "logit";
        if (!label) {
            snprintf(clerp, sizeof clerp, "Output \"%s\" (p=%.3f)", d->text ? d->text : "", (double)d->prob);
            label = clerp;
        }
        break;
    }
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = 0;
    bad |= json_object_set_new(o, "node_id", jstr(d->id));
    bad |= json_object_set_new(o, "feature", json_integer(feature));
    bad |= json_object_set_new(o, "layer", jstr(layer));
    bad |= json_object_set_new(o, "ctx_idx", json_integer(d->pos));
    bad |= json_object_set_new(o, "feature_type", jstr(type));
    bad |= json_object_set_new(o, "token_prob", json_real(isfinite(d->prob) ? d->prob : 0.0));
    bad |= json_object_set_new(o, "is_target_logit", json_boolean(d->is_target));
    bad |= json_object_set_new(o, "run_idx", json_integer(0));
    bad |= json_object_set_new(o, "reverse_ctx_idx", json_integer(0));
    bad |= json_object_set_new(o, "jsNodeId", jstr(js));
    bad |= json_object_set_new(o, "clerp", jstr(label));
    bad |= json_object_set_new(o, "influence", jnum(d->influence));
    bad |= json_object_set_new(o, "activation", jnum(d->activation));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *metadata_json(const lp_graph *g)
{
    json_t *m = json_object(), *toks = json_array(), *ids = json_array(), *info = json_object(),
           *gen = json_object(), *gs = json_object(), *ps = json_object(), *lo = json_object();
    int bad = !m || !toks || !ids || !info || !gen || !gs || !ps || !lo;
    for (int t = 0; !bad && t < g->n_tokens; t++) {
        bad |= json_array_append_new(toks, jstr(g->token_text[t]));
        bad |= json_array_append_new(ids, json_integer(g->tokens[t]));
    }
    if (bad) {
        json_decref(m), json_decref(toks), json_decref(ids), json_decref(info), json_decref(gen), json_decref(gs),
            json_decref(ps), json_decref(lo);
        return NULL;
    }
    bad |= json_object_set_new(m, "slug", jstr(g->slug ? g->slug : "loupe-graph"));
    bad |= json_object_set_new(m, "scan", jstr(g->scan));
    bad |= json_object_set_new(m, "transcoder_list", json_array());
    bad |= json_object_set_new(m, "prompt_tokens", toks);
    bad |= json_object_set_new(m, "prompt", jstr(g->prompt));
    bad |= json_object_set_new(m, "node_threshold", jnum(g->node_threshold));
    bad |= json_object_set_new(m, "schema_version", json_integer(1));
    bad |= json_object_set_new(gen, "name", jstr(g->generator ? g->generator : "loupe"));
    bad |= json_object_set_new(gen, "version", jstr(g->generator ? g->generator_version : LOUPE_VERSION));
    bad |= json_object_set_new(info, "description", jstr("attribution graph"));
    bad |= json_object_set_new(info, "generator", gen);
    bad |= json_object_set_new(m, "info", info);
    bad |= json_object_set_new(gs, "max_n_logits", json_integer(g->max_n_logits));
    bad |= json_object_set_new(gs, "desired_logit_prob", jnum(g->desired_logit_prob));
    bad |= json_object_set_new(gs, "batch_size", json_integer(g->batch));
    bad |= json_object_set_new(gs, "max_feature_nodes", g->max_feature_nodes ? json_integer(g->max_feature_nodes)
                                                                             : json_null());
    bad |= json_object_set_new(m, "generation_settings", gs);
    bad |= json_object_set_new(ps, "node_threshold", jnum(g->node_threshold));
    bad |= json_object_set_new(ps, "edge_threshold", jnum(g->edge_threshold));
    bad |= json_object_set_new(m, "pruning_settings", ps);
    bad |= json_object_set_new(lo, "model", jstr(g->model));
    bad |= json_object_set_new(lo, "n_layers", json_integer(g->n_layers));
    bad |= json_object_set_new(lo, "tokens", ids);
    bad |= json_object_set_new(lo, "replacement", jnum(g->replacement));
    bad |= json_object_set_new(lo, "completeness", jnum(g->completeness));
    bad |= json_object_set_new(m, "loupe", lo);
    if (bad) {
        json_decref(m);
        return NULL;
    }
    return m;
}

static int dump(FILE *f, json_t *j)
{
    if (!j)
        return lp_set_error_code(LP_ERR_NOMEM, "graph: cannot build the JSON");
    int rc = json_dumpf(j, f, DUMP_FLAGS);
    json_decref(j);
    return rc < 0 ? lp_set_error("graph: cannot write the JSON") : 0;
}

/* qParams: the diagram's view (pinned nodes and supernodes by node id, as Neuronpedia's
 * viewer keeps them) and the viewer's defaults. */
static json_t *qparams_json(const lp_graph *g)
{
    json_t *pins = json_array(), *sns = NULL;
    if (g->qparams_supernodes) /* groups whose members are not nodes of this graph (g:supernodes) */
        sns = json_loads(g->qparams_supernodes, 0, NULL);
    if (!json_is_array(sns))
        json_decref(sns), sns = json_array();
    for (int i = 0; pins && i < g->n_pinned; i++)
        json_array_append_new(pins, json_string(g->nodes[g->pinned[i]].id));
    for (int k = 0; sns && k < g->n_groups; k++) {
        json_t *a = json_array();
        json_array_append_new(a, jstr(g->groups[k].name));
        for (int i = 0; i < g->groups[k].n; i++)
            json_array_append_new(a, json_string(g->nodes[g->groups[k].ids[i]].id));
        json_array_append_new(sns, a);
    }
    return json_pack("{s:o*,s:o*,s:s,s:s,s:s}", "pinnedIds", pins, "supernodes", sns, "linkType", "both",
                     "clickedId", "", "sg_pos", "");
}

/* The view from a file's qParams, leniently (a viewer's file may hold anything there):
 * ids of nodes the graph has; other entries are ignored. -1 only when memory runs out. */
static int load_qparams(lp_graph *g, json_t *q)
{
    if (!json_is_object(q))
        return 0;
    json_t *pins = json_object_get(q, "pinnedIds"), *sns = json_object_get(q, "supernodes");
    size_t np = json_is_array(pins) ? json_array_size(pins) : 0, cap = np;
    for (size_t k = 0; json_is_array(sns) && k < json_array_size(sns); k++)
        if (json_is_array(json_array_get(sns, k)) && json_array_size(json_array_get(sns, k)) > cap)
            cap = json_array_size(json_array_get(sns, k));
    if (np == 0 && !json_is_array(sns))
        return 0;
    int *ids = lp_malloc((cap ? cap : 1) * sizeof *ids, "the file's pinned nodes");
    if (!ids)
        return -1;
    int m = 0, rc = 0;
    for (size_t k = 0; k < np; k++) {
        const char *id = json_string_value(json_array_get(pins, k));
        int i = id ? lp_graph_find(g, id) : -1;
        if (i >= 0)
            ids[m++] = i;
    }
    if (m && lp_graph_set_pinned(g, ids, m) != 0)
        rc = -1;
    /* supernodes: an entry all of whose members are nodes of this graph is a group of them
     * (what loupe writes); any other (a coarsened graph's, naming members of the full graph;
     * a viewer's with ids this graph lacks) is kept as written and saved again; malformed
     * entries are ignored */
    json_t *raw = json_array();
    if (!raw)
        rc = -1;
    for (size_t k = 0; !rc && json_is_array(sns) && k < json_array_size(sns); k++) {
        json_t *a = json_array_get(sns, k);
        const char *name = json_string_value(json_array_get(a, 0));
        if (!json_is_array(a) || !name || !*name || json_array_size(a) < 2)
            continue;
        int all = 1;
        for (size_t j = 1; j < json_array_size(a) && all; j++) {
            const char *id = json_string_value(json_array_get(a, j));
            all = id && lp_graph_find(g, id) >= 0;
        }
        if (!all)
            json_array_append(raw, a);
    }
    if (!rc && json_array_size(raw) && !(g->qparams_supernodes = json_dumps(raw, DUMP_FLAGS)))
        rc = -1;
    json_decref(raw);
    if (rc)
        lp_set_error_code(LP_ERR_NOMEM, "graph: out of memory");
    for (size_t k = 0; !rc && json_is_array(sns) && k < json_array_size(sns); k++) {
        json_t *a = json_array_get(sns, k);
        const char *name = json_string_value(json_array_get(a, 0));
        if (!json_is_array(a) || !name || !*name)
            continue;
        m = 0;
        for (size_t j = 1; j < json_array_size(a); j++) {
            const char *id = json_string_value(json_array_get(a, j));
            int i = id ? lp_graph_find(g, id) : -1;
            if (i < 0) {
                m = 0; /* kept as written above */
                break;
            }
            ids[m++] = i;
        }
        if (m && lp_graph_add_group(g, name, ids, m) != 0)
            rc = -1;
    }
    free(ids);
    return rc;
}

int lp_graph_save_json(const lp_graph *g, const char *path)
{
    for (size_t i = 0, nn = (size_t)g->n_nodes * g->n_nodes; i < nn; i++)
        if (!isfinite(g->adj_[i]))
            return lp_set_error("graph: edge %s -> %s is not finite", g->nodes[i % g->n_nodes].id,
                                g->nodes[i / g->n_nodes].id);
    /* written beside the target and renamed at the end: a failure leaves no half file */
    size_t pl = strlen(path);
    char *tmp = lp_malloc(pl + 8, "file name");
    if (!tmp)
        return -1;
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".part", 6);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        lp_set_error("graph: cannot write '%s': %s", path, strerror(errno));
        free(tmp);
        return -1;
    }
    int rc = 0;
    fputs("{\"metadata\":", f);
    rc |= dump(f, metadata_json(g));
    fputs(",\n\"qParams\":", f);
    rc |= dump(f, qparams_json(g));
    fputs(",\n\"nodes\":[", f);
    for (int i = 0; i < g->n_nodes && !rc; i++) {
        fputs(i ? ",\n" : "\n", f);
        rc |= dump(f, node_json(g, &g->nodes[i]));
    }
    fputs("\n],\n\"links\":[", f);
    /* links: millions of lines in a large graph, written without a JSON value each: the ids
     * encoded once, weights as jansson writes reals (%.9g, with ".0" when it looks integral) */
    char **ids = rc ? NULL : lp_calloc(g->n_nodes ? (size_t)g->n_nodes : 1, sizeof(char *), "node ids");
    if (!rc && !ids)
        rc = -1;
    for (int i = 0; i < g->n_nodes && !rc; i++) {
        json_t *j = jstr(g->nodes[i].id);
        ids[i] = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
        json_decref(j);
        if (!ids[i])
            rc = lp_set_error_code(LP_ERR_NOMEM, "graph: cannot encode the node ids");
    }
    int first = 1;
    for (int t = 0; t < g->n_nodes && !rc; t++)
        for (int s = 0; s < g->n_nodes && !(rc = lp_interrupt_check()); s++) {
            float w = lp_graph_edge(g, t, s);
            if (w == 0.0f)
                continue;
            char num[40];
            int k = snprintf(num, sizeof num, "%.9g", (double)w);
            if (!strpbrk(num, ".eE") && k < (int)sizeof num - 2)
                strcat(num, ".0");
            fprintf(f, "%s{\"source\":%s,\"target\":%s,\"weight\":%s}", first ? "\n" : ",\n", ids[s], ids[t], num);
            first = 0;
        }
    for (int i = 0; ids && i < g->n_nodes; i++)
        free(ids[i]);
    free(ids);
    fputs("\n]", f);
    if (g->qk_tracing) /* QK explanations (qk.h), already JSON */
        fprintf(f, ",\n\"qk_tracing_results\":%s", g->qk_tracing);
    fputs("}\n", f);
    if (ferror(f))
        rc = rc ? rc : lp_set_error("graph: cannot write '%s'", path);
    if (fclose(f) != 0 && !rc)
        rc = lp_set_error("graph: cannot write '%s': %s", path, strerror(errno));
    if (!rc && rename(tmp, path) != 0)
        rc = lp_set_error("graph: cannot write '%s': %s", path, strerror(errno));
    if (rc)
        remove(tmp);
    free(tmp);
    return rc ? -1 : 0;
}

/* ---- reading ---- */

typedef struct reader {
    const char *path;
    const char *text;      /* the whole file */
    size_t len;
    size_t links, links_end; /* the links array: text[links] == '[', up to links_end; links_end 0: none */
} reader;

#define FAIL(...) (lp_set_error(__VA_ARGS__), -1)

static json_t *need(const reader *r, json_t *o, const char *where, const char *key, int type)
{
    json_t *v = json_object_get(o, key);
    static const char *const names[] = {"an object", "an array", "a string", "an integer", "a number", "",
                                        "",          "a null"};
    int ok = v && ((int)json_typeof(v) == type || (type == JSON_REAL && json_is_number(v)));
    if (!ok)
        lp_set_error("graph file '%s': %s%s'%s' %s (%s expected)", r->path, where, *where ? ": " : "", key,
                     v ? "has the wrong type" : "is missing", names[type]);
    return ok ? v : NULL;
}

static char *opt_str(json_t *o, const char *key, int *fail)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return NULL;
    char *s = lp_strdup(json_string_value(v), "graph metadata");
    if (!s)
        *fail = 1;
    return s;
}

static double opt_num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static int opt_int(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < (1 << 30)
               ? (int)json_integer_value(v)
               : 0;
}

/* The token between the first '"' and the '"' before " (p=" in a logit's clerp. */
static char *clerp_token(const char *c)
{
    const char *a = strchr(c, '"'), *b = strstr(c, "\" (p=");
    if (!a || !b || b < a + 1)
        return NULL;
    size_t n = (size_t)(b - a - 1);
    char *s = lp_malloc(n + 1, "token text");
    if (s)
        memcpy(s, a + 1, n), s[n] = 0;
    return s;
}

static int parse_layer(json_t *v, int *out)
{
    if (json_is_integer(v)) {
        *out = (int)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    char *end;
    long l = strtol(s, &end, 10);
    if (!*s || *end || l < -1 || l > 100000)
        return -1;
    *out = (int)l;
    return 0;
}

static int read_node(const reader *r, json_t *o, int i, int T, lp_graph_node *d, int *logit_layer)
{
    char where[48];
    snprintf(where, sizeof where, "nodes[%d]", i);
    if (!json_is_object(o))
        return FAIL("graph file '%s': %s is not an object", r->path, where);
    json_t *id = need(r, o, where, "node_id", JSON_STRING), *type = need(r, o, where, "feature_type", JSON_STRING),
           *ctx = id && type ? need(r, o, where, "ctx_idx", JSON_INTEGER) : NULL,
           *lay = ctx ? json_object_get(o, "layer") : NULL;
    if (!id || !type || !ctx)
        return -1;
    const char *ids = json_string_value(id), *ty = json_string_value(type);
    if (strlen(ids) >= sizeof d->id)
        return FAIL("graph file '%s': %s: node_id '%.40s...' is too long", r->path, where, ids);
    strcpy(d->id, ids);
    d->pos = (int)json_integer_value(ctx);
    if (d->pos < 0 || d->pos >= T)
        return FAIL("graph file '%s': %s ('%s'): ctx_idx %d is outside the prompt (%d tokens)", r->path, where, ids,
                    d->pos, T);
    d->feature = -1, d->token = -1, d->activation = NAN, d->influence = NAN, d->layer = -1;
    json_t *v = json_object_get(o, "influence");
    d->influence = json_is_number(v) ? (float)json_number_value(v) : NAN;
    v = json_object_get(o, "clerp");
    if (json_is_string(v) && *json_string_value(v) &&
        !(d->label = lp_strdup(json_string_value(v), "node label")))
        return -1;
    if (!strcmp(ty, "embedding")) {
        d->kind = LP_NODE_EMBEDDING;
        int tok, pos;
        if (sscanf(ids, "E_%d_%d", &tok, &pos) != 2)
            return FAIL("graph file '%s': %s: the embedding's node_id '%s' is not E_{token}_{pos}", r->path, where,
                        ids);
        d->token = tok;
    } else if (!strcmp(ty, "logit")) {
        d->kind = LP_NODE_LOGIT;
        json_t *f = need(r, o, where, "feature", JSON_INTEGER);
        if (!f || !lay || parse_layer(lay, logit_layer) < 0)
            return f ? FAIL("graph file '%s': %s: 'layer' is missing or not a layer", r->path, where) : -1;
        d->token = (int32_t)json_integer_value(f);
        v = json_object_get(o, "token_prob");
        d->prob = json_is_number(v) ? (float)json_number_value(v) : 0.0f;
        v = json_object_get(o, "is_target_logit");
        d->is_target = json_is_true(v);
        if (d->label && !(d->text = clerp_token(d->label)) && lp_last_error_code() == LP_ERR_NOMEM)
            return -1;
    } else {
        d->kind = strcmp(ty, "mlp reconstruction error") ? LP_NODE_FEATURE : LP_NODE_ERROR;
        if (!lay || parse_layer(lay, &d->layer) < 0 || d->layer < 0)
            return FAIL("graph file '%s': %s ('%s'): 'layer' is %s", r->path, where, ids,
                        lay ? "not a layer number" : "missing");
        if (d->kind == LP_NODE_FEATURE) {
            int l, f, p;
            if (sscanf(ids, "%d_%d_%d", &l, &f, &p) != 3 || f < 0)
                return FAIL("graph file '%s': %s: the feature's node_id '%s' is not {layer}_{feature}_{pos}",
                            r->path, where, ids);
            d->feature = f;
            v = json_object_get(o, "activation");
            d->activation = json_is_number(v) ? (float)json_number_value(v) : NAN;
        }
    }
    return 0;
}

typedef struct id_item {
    const char *id;
    int i;
} id_item;

static int id_cmp(const void *a, const void *b)
{
    const id_item *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : x->i - y->i;
}

static int lookup(const id_item *ix, int n, const char *id)
{
    int lo = 0, hi = n; /* the first item >= id */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (strcmp(ix[mid].id, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && !strcmp(ix[lo].id, id) ? ix[lo].i : -1;
}

/* ---- the top level, walked here so that links are never one big JSON value ---- */

static size_t skip_ws(const reader *r, size_t pos)
{
    while (pos < r->len && (r->text[pos] == ' ' || r->text[pos] == '\n' || r->text[pos] == '\r' || r->text[pos] == '\t'))
        pos++;
    return pos;
}

static void syntax(const reader *r, size_t pos, const char *what)
{
    int line = 1;
    for (size_t i = 0; i < pos && i < r->len; i++)
        line += r->text[i] == '\n';
    lp_set_error("graph file '%s': invalid JSON at line %d (byte %zu): %s", r->path, line, pos, what);
}

/* The end of the value at pos (a string, a number or literal, an object or array: brackets
 * matched, strings skipped), or 0 when the text ends first. */
static size_t skip_value(const reader *r, size_t pos)
{
    int depth = 0;
    for (size_t i = pos; i < r->len; i++) {
        char c = r->text[i];
        if (c == '"') {
            for (i++; i < r->len && r->text[i] != '"'; i++)
                i += r->text[i] == '\\';
            if (i >= r->len)
                return 0;
            if (!depth)
                return i + 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (!depth)
                return i; /* the end of a scalar before the enclosing bracket */
            if (--depth == 0)
                return i + 1;
        } else if (!depth && (c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t')) {
            return i;
        }
    }
    return 0;
}

/* The top-level object as a jansson object of its members, except links, whose span goes to
 * r->links..links_end. NULL with an error. */
static json_t *top_level(reader *r)
{
    size_t pos = skip_ws(r, 0);
    if (pos >= r->len || r->text[pos] != '{')
        return syntax(r, pos, pos >= r->len ? "the file is empty" : "the top level is not an object"), NULL;
    json_t *root = json_object();
    if (!root)
        return lp_set_error_code(LP_ERR_NOMEM, "graph: out of memory"), NULL;
    pos = skip_ws(r, pos + 1);
    for (int first = 1; pos < r->len && r->text[pos] != '}'; first = 0) {
        if (!first) {
            if (r->text[pos] != ',')
                goto bad;
            pos = skip_ws(r, pos + 1);
        }
        size_t end = pos < r->len && r->text[pos] == '"' ? skip_value(r, pos) : 0;
        json_error_t e;
        json_t *key = end ? json_loadb(r->text + pos, end - pos, JSON_DECODE_ANY, &e) : NULL;
        if (!json_is_string(key)) {
            json_decref(key);
            goto bad;
        }
        char name[64];
        snprintf(name, sizeof name, "%s", json_string_value(key));
        json_decref(key);
        pos = skip_ws(r, end);
        if (pos >= r->len || r->text[pos] != ':')
            goto bad;
        pos = skip_ws(r, pos + 1);
        if (!strcmp(name, "links") && pos < r->len && r->text[pos] == '[') {
            if (r->links_end || json_object_get(root, "links"))
                goto dup;
            end = skip_value(r, pos);
            if (!end)
                goto bad;
            r->links = pos, r->links_end = end;
            pos = skip_ws(r, end);
            continue;
        }
        json_t *v = NULL;
        if (pos < r->len && (r->text[pos] == '{' || r->text[pos] == '[')) {
            v = json_loadb(r->text + pos, r->len - pos, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &e);
            if (!v) {
                syntax(r, pos + (size_t)(e.position > 0 ? e.position : 0), e.text);
                json_decref(root);
                return NULL;
            }
            end = pos + (size_t)e.position;
        } else { /* a scalar: decoded from exactly its text */
            end = skip_value(r, pos);
            v = end > pos ? json_loadb(r->text + pos, end - pos, JSON_DECODE_ANY, &e) : NULL;
            if (!v)
                goto bad;
        }
        if (json_object_get(root, name) || (!strcmp(name, "links") && r->links_end)) {
            json_decref(v);
            goto dup;
        }
        if (json_object_set_new(root, name, v) < 0) {
            json_decref(root);
            return lp_set_error_code(LP_ERR_NOMEM, "graph: out of memory"), NULL;
        }
        pos = skip_ws(r, end);
    }
    if (pos >= r->len || skip_ws(r, pos + 1) != r->len) {
        syntax(r, pos, pos >= r->len ? "the file ends inside the top-level object" : "text after the top-level object");
        json_decref(root);
        return NULL;
    }
    return root;
bad:
    syntax(r, pos, "a member of the top-level object is malformed");
    json_decref(root);
    return NULL;
dup:
    lp_set_error("graph file '%s': a top-level member appears twice", r->path);
    json_decref(root);
    return NULL;
}

static lp_graph *load(const reader *r, json_t *root)
{
    if (!json_is_object(root))
        return lp_set_error("graph file '%s': the top level is not an object", r->path), NULL;
    json_t *meta = need(r, root, "", "metadata", JSON_OBJECT), *nodes = meta ? need(r, root, "", "nodes", JSON_ARRAY) : NULL;
    if (nodes && !r->links_end)
        return need(r, root, "", "links", JSON_ARRAY), NULL; /* missing or not an array */
    json_t *ptoks = nodes ? need(r, meta, "metadata", "prompt_tokens", JSON_ARRAY) : NULL;
    if (!ptoks)
        return NULL;
    size_t n = json_array_size(nodes), T = json_array_size(ptoks);
    if (n > (1u << 20) || T > (1u << 24))
        return lp_set_error("graph file '%s': too many nodes (%zu) or tokens (%zu)", r->path, n, T), NULL;
    lp_graph *g = lp_graph_alloc((int)n, (int)T);
    id_item *ix = NULL;
    if (!g)
        return NULL;
    int fail = 0, logit_layer = -1, max_layer = -1;
    for (size_t t = 0; t < T; t++) {
        json_t *v = json_array_get(ptoks, t);
        if (!json_is_string(v)) {
            lp_set_error("graph file '%s': metadata: prompt_tokens[%zu] is not a string", r->path, t);
            goto fail;
        }
        if (!(g->token_text[t] = lp_strdup(json_string_value(v), "prompt tokens")))
            goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        lp_graph_node *d = &g->nodes[i];
        int ll = -1;
        if (read_node(r, json_array_get(nodes, i), (int)i, (int)T, d, &ll) < 0)
            goto fail;
        if (d->kind == LP_NODE_LOGIT) {
            if (logit_layer >= 0 && ll != logit_layer) {
                lp_set_error("graph file '%s': nodes[%zu]: logit layer %d differs from %d", r->path, i, ll,
                             logit_layer);
                goto fail;
            }
            logit_layer = ll;
        } else if (d->layer > max_layer) {
            max_layer = d->layer;
        }
        if (d->kind == LP_NODE_EMBEDDING && !d->text && g->token_text[d->pos] &&
            !(d->text = lp_strdup(g->token_text[d->pos], "token text")))
            goto fail;
        if (d->kind == LP_NODE_EMBEDDING)
            g->tokens[d->pos] = d->token;
    }
    json_t *lo = json_object_get(meta, "loupe");
    int nl = opt_int(lo, "n_layers");
    g->n_layers = nl > 0 ? nl : logit_layer > 0 ? logit_layer - 1 : max_layer + 1;
    if (g->n_layers > 10000) {
        lp_set_error("graph file '%s': %d layers is not a model's count", r->path, g->n_layers);
        goto fail;
    }
    if (max_layer >= g->n_layers) {
        lp_set_error("graph file '%s': a node's layer %d is not below the logits' layer %d", r->path, max_layer,
                     g->n_layers + 1);
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        if (g->nodes[i].kind == LP_NODE_LOGIT)
            g->nodes[i].layer = g->n_layers;
    json_t *ids = json_object_get(lo, "tokens");
    if (json_is_array(ids) && json_array_size(ids) == T)
        for (size_t t = 0; t < T; t++) {
            json_t *v = json_array_get(ids, t);
            if (json_is_integer(v))
                g->tokens[t] = (int32_t)json_integer_value(v);
        }
    g->slug = opt_str(meta, "slug", &fail);
    g->scan = opt_str(meta, "scan", &fail);
    g->prompt = opt_str(meta, "prompt", &fail);
    g->node_threshold = opt_num(meta, "node_threshold");
    json_t *gen = json_object_get(json_object_get(meta, "info"), "generator");
    g->generator = opt_str(gen, "name", &fail);
    g->generator_version = opt_str(gen, "version", &fail);
    json_t *gs = json_object_get(meta, "generation_settings"), *ps = json_object_get(meta, "pruning_settings");
    g->max_n_logits = opt_int(gs, "max_n_logits");
    g->desired_logit_prob = opt_num(gs, "desired_logit_prob");
    g->batch = opt_int(gs, "batch_size");
    g->max_feature_nodes = opt_int(gs, "max_feature_nodes");
    if (json_is_number(json_object_get(ps, "node_threshold")))
        g->node_threshold = opt_num(ps, "node_threshold");
    g->edge_threshold = opt_num(ps, "edge_threshold");
    g->model = opt_str(lo, "model", &fail);
    g->replacement = opt_num(lo, "replacement");
    g->completeness = opt_num(lo, "completeness");
    if (fail)
        goto fail;
    /* links, by node id */
    if (!(ix = lp_malloc((n ? n : 1) * sizeof *ix, "node index")))
        goto fail;
    for (size_t i = 0; i < n; i++)
        ix[i] = (id_item){g->nodes[i].id, (int)i};
    qsort(ix, n, sizeof *ix, id_cmp);
    /* one link at a time: the array's text, element by element through jansson */
    size_t pos = r->links + 1;
    for (size_t k = 0;; k++) {
        char where[48];
        snprintf(where, sizeof where, "links[%zu]", k);
        pos = skip_ws(r, pos);
        if (r->text[pos] == ']')
            break;
        if ((k & 4095) == 0 && lp_interrupt_check() < 0)
            goto fail;
        if (k) {
            if (r->text[pos] != ',') {
                syntax(r, pos, "',' or ']' expected in links");
                goto fail;
            }
            pos = skip_ws(r, pos + 1);
        }
        if (r->text[pos] != '{') {
            lp_set_error("graph file '%s': %s is not an object", r->path, where);
            goto fail;
        }
        json_error_t e;
        json_t *l = json_loadb(r->text + pos, r->links_end - pos, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &e);
        if (!l) {
            syntax(r, pos + (size_t)(e.position > 0 ? e.position : 0), e.text);
            goto fail;
        }
        pos += (size_t)e.position;
        json_t *s = need(r, l, where, "source", JSON_STRING), *t = s ? need(r, l, where, "target", JSON_STRING) : NULL,
               *w = t ? need(r, l, where, "weight", JSON_REAL) : NULL;
        int si = w ? lookup(ix, (int)n, json_string_value(s)) : -1, ti = w ? lookup(ix, (int)n, json_string_value(t)) : -1;
        if (w && (si < 0 || ti < 0))
            lp_set_error("graph file '%s': %s: no node '%s'", r->path, where, json_string_value(si < 0 ? s : t));
        if (si >= 0 && ti >= 0)
            lp_graph_set_edge(g, ti, si, (float)json_number_value(w));
        json_decref(l);
        if (si < 0 || ti < 0)
            goto fail;
    }
    json_t *qk = json_object_get(root, "qk_tracing_results");
    if (json_is_array(qk) && !(g->qk_tracing = json_dumps(qk, DUMP_FLAGS))) {
        lp_set_error_code(LP_ERR_NOMEM, "graph: out of memory");
        goto fail;
    }
    free(ix);
    ix = NULL;
    if (load_qparams(g, json_object_get(root, "qParams")) != 0)
        goto fail;
    return g;
fail:
    free(ix);
    lp_graph_free(g);
    return NULL;
}

lp_graph *lp_graph_parse_json(const char *text, size_t len, const char *label)
{
    reader r = {.path = label, .text = text, .len = len};
    json_t *root = top_level(&r);
    if (!root)
        return NULL;
    lp_graph *g = load(&r, root);
    json_decref(root);
    return g;
}

lp_graph *lp_graph_load_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return lp_set_error("graph file '%s': %s", path, strerror(errno)), NULL;
    char *text = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (text = lp_malloc((size_t)n + 1, "graph file")) && fread(text, 1, (size_t)n, f) != (size_t)n) {
        free(text);
        text = NULL;
        lp_set_error("graph file '%s': cannot read it", path);
    }
    fclose(f);
    if (!text) {
        if (n < 0)
            lp_set_error("graph file '%s': cannot read it", path);
        return NULL;
    }
    text[n] = 0;
    lp_graph *g = lp_graph_parse_json(text, (size_t)n, path);
    free(text);
    return g;
}
