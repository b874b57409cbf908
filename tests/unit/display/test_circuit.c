/* display/circuit.c: the static circuit diagram of an attribution graph. Layout (rows by
 * layer, columns by position, glyphs side by side in a cell), edge selection by share of
 * the target's input and colours by sign, the paths found, hostile text escaped, the size
 * bound, and the degenerate graphs (empty, no edges, one token, huge labels, non-finite
 * weights, nodes out of range) that must still give a picture with a note. Layout is read
 * back from the data the figure embeds for display/js/circuit.js. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "circuit.h"
#include "text.h"
#include "util.h"

#define EDGE_POS "#1b9e77"
#define EDGE_NEG "#8e44ad"

/* ---- reading a diagram back ---- */

/* The JSON of the <script type="application/json" data-lp-circuit="1"> element (a new
 * reference), with the \u003c escapes undone by the JSON parser. */
static json_t *diagram_data(const json_t *b)
{
    const char *html = t_get(b, "text/html");
    cr_assert(html);
    const char *tag = "<script type=\"application/json\" data-lp-circuit=\"1\">";
    const char *p = strstr(html, tag);
    cr_assert(p, "no embedded data");
    p += strlen(tag);
    const char *end = strstr(p, "</script>");
    cr_assert(end);
    json_error_t err;
    json_t *d = json_loadb(p, (size_t)(end - p), 0, &err);
    cr_assert(d, "embedded data does not parse: %s", err.text);
    return d;
}

/* The centre of node i's glyph: x from nodes.x, y from rowy by the node's row
 * (0 embeddings, 1 + layer, L + 1 logits). */
static double node_xy(const json_t *d, const char *axis, int i)
{
    json_t *nodes = json_object_get(d, "nodes");
    json_t *x = json_array_get(json_object_get(nodes, "x"), (size_t)i);
    cr_assert(json_is_number(x), "node %d is not drawn", i);
    if (!strcmp(axis, "x"))
        return json_number_value(x);
    int kind = (int)json_integer_value(json_array_get(json_object_get(nodes, "kind"), (size_t)i));
    int layer = (int)json_integer_value(json_array_get(json_object_get(nodes, "layer"), (size_t)i));
    int L = (int)json_integer_value(json_object_get(d, "L"));
    int row = kind == LP_CIRCUIT_EMBEDDING ? 0 : kind == LP_CIRCUIT_LOGIT ? L + 1 : layer + 1;
    json_t *y = json_array_get(json_object_get(d, "rowy"), (size_t)row);
    cr_assert(json_is_number(y), "no row %d", row);
    return json_number_value(y);
}

static int drawn(const json_t *d, int i)
{
    return json_is_number(json_array_get(json_object_get(json_object_get(d, "nodes"), "x"), (size_t)i));
}

static double attr(const char *tag, const char *name, double dflt)
{
    char key[32];
    snprintf(key, sizeof key, " %s=\"", name);
    const char *p = strstr(tag, key);
    const char *end = strchr(tag, '>');
    return p && p < end ? strtod(p + strlen(key), NULL) : dflt;
}

/* Every <text> of the SVG inside its viewBox, measured with lp_text_width (entities count
 * as one character; only vertical rotation is used). Returns the number of texts. */
static int texts_inside(const char *svg, const char *what)
{
    double W = 0, H = 0;
    const char *vb = strstr(svg, "viewBox=\"0 0 ");
    cr_assert(vb && sscanf(vb, "viewBox=\"0 0 %lf %lf", &W, &H) == 2, "%s: no viewBox", what);
    int n = 0;
    for (const char *p = svg; (p = strstr(p, "<text ")); n++) {
        const char *gt = strchr(p, '>'), *close = strstr(p, "</text>");
        cr_assert(gt && close);
        size_t len = (size_t)(close - gt - 1);
        char *text = malloc(len + 1), *q = text;
        for (size_t i = 0; i < len; i++) {
            const char *s = gt + 1;
            if (s[i] == '&' && memchr(s + i, ';', len - i)) {
                *q++ = '#';
                i = (size_t)((const char *)memchr(s + i, ';', len - i) - s);
            } else {
                *q++ = s[i];
            }
        }
        *q = 0;
        double x = attr(p, "x", 0), y = attr(p, "y", 0), size = attr(p, "font-size", 10);
        double w = lp_text_width(text, size), x0, x1, y0, y1;
        const char *anchor = strstr(p, "text-anchor=\"") + 13;
        double off = !strncmp(anchor, "end", 3) ? -w : !strncmp(anchor, "middle", 6) ? -w / 2 : 0;
        const char *rot = strstr(p, "rotate(");
        if (rot && rot < gt) {
            cr_assert(!strncmp(rot, "rotate(-90 ", 11), "%s: only vertical text is checked", what);
            x0 = x - size, x1 = x + 0.3 * size, y0 = y - off - w, y1 = y - off;
        } else {
            x0 = x + off, x1 = x + off + w, y0 = y - size, y1 = y + 0.3 * size;
        }
        cr_expect(x0 >= -0.5 && x1 <= W + 0.5 && y0 >= -0.5 && y1 <= H + 0.5,
                  "%s: \"%s\" spans [%.1f, %.1f] x [%.1f, %.1f], outside 0 0 %.1f %.1f", what, text,
                  x0, x1, y0, y1, W, H);
        free(text);
        p = close;
    }
    return n;
}

/* The bundle is valid, has a picture whose texts stay inside it, and text/plain. Returns
 * the decoded SVG (free it). */
static char *check_picture(const json_t *b, const char *what)
{
    cr_assert(b, "%s: NULL bundle", what);
    cr_assert(t_bundle_valid(b), "%s: invalid bundle", what);
    char *svg = t_svg_at(t_get(b, "text/html"), 0);
    cr_assert(svg, "%s: no picture", what);
    cr_assert(strstr(svg, "<svg") == svg && strstr(svg, "</svg>"), "%s", what);
    texts_inside(svg, what);
    return svg;
}

/* ---- a hand-made graph ---- */

static const char *const TOKS3[] = {"The", " capital", " of"};

/* 0-2 embeddings, 3,4 features at (L0, pos 1) with influence 0.2 and 0.5, 5 a feature at
 * (L1, 2), 6 the error at (L0, 2), 7 and 8 logits at pos 2 (p 0.3 and 0.6). */
static const lp_circuit_node NODES[] = {
    {LP_CIRCUIT_EMBEDDING, 0, 0, 464, 1, 0.1f, 0, NULL},
    {LP_CIRCUIT_EMBEDDING, 0, 1, 3139, 1, 0.3f, 0, NULL},
    {LP_CIRCUIT_EMBEDDING, 0, 2, 286, 1, 0.2f, 0, NULL},
    {LP_CIRCUIT_FEATURE, 0, 1, 5, 2.5f, 0.2f, 0, "capitals"},
    {LP_CIRCUIT_FEATURE, 0, 1, 7, 1.5f, 0.5f, 0, "countries"},
    {LP_CIRCUIT_FEATURE, 1, 2, 11, 3.0f, 0.7f, 0, "say a capital"},
    {LP_CIRCUIT_ERROR, 0, 2, -1, 0.5f, 0.05f, 0, NULL},
    {LP_CIRCUIT_LOGIT, 0, 2, 6342, 0, 0.9f, 0.3f, " Rome"},
    {LP_CIRCUIT_LOGIT, 0, 2, 6184, 0, 1.0f, 0.6f, " Paris"},
};
#define NN ((int)(sizeof NODES / sizeof *NODES))

/* Shares of the target's input: into 3: 0->3 (2/3), 1->3 (1/3); into 4: 1->4 (1);
 * into 5: 3->5 (0.5), 4->5 (-0.25), 6->5 (0.25); into 8: 5->8 (0.8), 2->8 (0.2);
 * into 7: 5->7 (-1). */
static const lp_circuit_edge EDGES[] = {
    {0, 3, 2.0f}, {1, 3, 1.0f}, {1, 4, 0.7f}, {3, 5, 2.0f}, {4, 5, -1.0f},
    {6, 5, 1.0f}, {5, 8, 4.0f}, {2, 8, 1.0f}, {5, 7, -0.5f},
};
#define NE ((int)(sizeof EDGES / sizeof *EDGES))

static lp_circuit small_graph(void)
{
    return (lp_circuit){NN, NODES, NE, EDGES, 3, TOKS3, 2, 0.75, 0.62, 0, NULL, "capital", 0, NULL, 0, NULL};
}

/* a view from Lua with indices out of range, for the fuzz test: they are left out */
static const int FUZZ_PINS[] = {-1, 0, 99999};
static const lp_circuit_group FUZZ_GROUPS[] = {{"</script><b>", 3, FUZZ_PINS}, {NULL, 0, NULL}};

Test(circuit, layout_rows_by_layer_and_columns_by_position)
{
    lp_circuit c = small_graph();
    json_t *b = lp_circuit_display(&c, NULL);
    free(check_picture(b, "small graph"));
    json_t *d = diagram_data(b);
    for (int i = 0; i < NN; i++)
        cr_assert(drawn(d, i), "node %d not drawn", i);
    double y_emb = node_xy(d, "y", 0), y_l0 = node_xy(d, "y", 3), y_l1 = node_xy(d, "y", 5),
           y_log = node_xy(d, "y", 7);
    /* rows: embeddings at the bottom, logits at the top (SVG y grows downwards) */
    cr_assert(y_emb > y_l0 && y_l0 > y_l1 && y_l1 > y_log, "%g %g %g %g", y_emb, y_l0, y_l1, y_log);
    cr_assert_float_eq(node_xy(d, "y", 1), y_emb, 1e-9);
    cr_assert_float_eq(node_xy(d, "y", 2), y_emb, 1e-9);
    cr_assert_float_eq(node_xy(d, "y", 4), y_l0, 1e-9);
    cr_assert_float_eq(node_xy(d, "y", 6), y_l0, 1e-9, "an error sits in its layer's row");
    cr_assert_float_eq(node_xy(d, "y", 8), y_log, 1e-9);
    /* columns: left to right by position */
    double x0 = node_xy(d, "x", 0), x1 = node_xy(d, "x", 1), x2 = node_xy(d, "x", 2);
    cr_assert(x0 < x1 && x1 < x2);
    /* two features in the (L0, 1) cell: side by side, centred on the column, the more
     * influential (4) first */
    double a = node_xy(d, "x", 4), bx = node_xy(d, "x", 3);
    cr_assert(a < bx, "order in a cell by influence: %g %g", a, bx);
    cr_assert(bx - a >= 9, "glyphs of one cell overlap: %g %g", a, bx);
    cr_assert_float_eq((a + bx) / 2, x1, 1.01, "the cell is centred on its column (whole pixels)");
    /* logits: the likelier first; the column is wide enough for both and for the error */
    cr_assert(node_xy(d, "x", 8) < node_xy(d, "x", 7));
    cr_assert(node_xy(d, "x", 6) > x1 + 9 && node_xy(d, "x", 8) > x1 + 9);
    /* every glyph inside the picture */
    double W = json_number_value(json_object_get(d, "W")), H = json_number_value(json_object_get(d, "H"));
    for (int i = 0; i < NN; i++) {
        double x = node_xy(d, "x", i), y = node_xy(d, "y", i);
        cr_assert(x > 5 && x < W - 5 && y > 5 && y < H - 5, "node %d at %g %g", i, x, y);
    }
    /* the scores, counts and tokens are in the text */
    const char *plain = t_get(b, "text/plain");
    cr_assert(strstr(plain, "replacement score 0.75") && strstr(plain, "completeness score 0.62"), "%s", plain);
    cr_assert(strstr(plain, "9 nodes (3 features, 1 errors, 3 embeddings, 2 logits)"), "%s", plain);
    const char *html = t_get(b, "text/html");
    cr_assert(strstr(html, "replacement score 0.75"));
    char *svg = t_svg_at(html, 0);
    cr_assert(strstr(svg, "\xE2\x90\xA3" "capital"), "tokens are shown with lp_token_show");
    cr_assert(strstr(svg, "\xE2\x90\xA3" "Paris 0.6"), "a logit with its token and probability");
    cr_assert_eq(t_count(svg, "<circle"), 3, "features are circles");
    cr_assert_eq(t_count(svg, "<path d="), 1, "errors are diamonds");
    cr_assert_eq(t_count(svg, "<rect x=") - t_count(svg, "fill=\"#7f7f7f14\""), 5, "embeddings and logits are squares");
    free(svg);
    json_decref(d);
    json_decref(b);
}

Test(circuit, the_strongest_edges_by_share_are_drawn_coloured_by_sign)
{
    lp_circuit c = small_graph();
    /* all edges: 9, their colours by sign */
    json_t *b = lp_circuit_display(&c, NULL);
    char *svg = check_picture(b, "all edges");
    cr_assert_eq(t_count(svg, "<line "), NE);
    int neg = 0;
    for (int k = 0; k < NE; k++)
        neg += EDGES[k].weight < 0;
    cr_assert_eq(t_count(svg, "stroke=\"" EDGE_NEG "\""), neg);
    cr_assert_eq(t_count(svg, "stroke=\"" EDGE_POS "\""), NE - neg);
    free(svg);
    json_decref(b);

    /* capped at 3: the three largest shares of the target's input, computed here */
    double share[NE], in[NN] = {0};
    for (int k = 0; k < NE; k++)
        in[EDGES[k].dst] += fabs(EDGES[k].weight);
    for (int k = 0; k < NE; k++)
        share[k] = fabs(EDGES[k].weight) / in[EDGES[k].dst];
    int top[3];
    for (int t = 0; t < 3; t++) {
        int best = -1;
        for (int k = 0; k < NE; k++) {
            int seen = 0;
            for (int u = 0; u < t; u++)
                seen |= top[u] == k;
            if (!seen && (best < 0 || share[k] > share[best]))
                best = k;
        }
        top[t] = best;
    }
    b = lp_circuit_display(&c, &(lp_circuit_opts){.max_edges = 3});
    svg = check_picture(b, "3 edges");
    cr_assert_eq(t_count(svg, "<line "), 3);
    json_t *d = diagram_data(b);
    cr_assert_eq(json_integer_value(json_object_get(d, "drawn_edges")), 3);
    json_t *e = json_object_get(d, "edges");
    for (int t = 0; t < 3; t++) {
        int s = (int)json_integer_value(json_array_get(json_object_get(e, "src"), (size_t)t));
        int dd = (int)json_integer_value(json_array_get(json_object_get(e, "dst"), (size_t)t));
        int found = 0;
        for (int u = 0; u < 3; u++)
            found |= EDGES[top[u]].src == s && EDGES[top[u]].dst == dd;
        cr_assert(found, "edge %d->%d drawn but not among the 3 largest shares", s, dd);
        double sh = json_number_value(json_array_get(json_object_get(e, "share"), (size_t)t));
        cr_assert_float_eq(sh, share[top[t]], 1e-4);
    }
    /* the data keeps every edge (below max_data_edges) in the order of share */
    cr_assert_eq(json_array_size(json_object_get(e, "src")), NE);
    cr_assert(strstr(t_get(b, "text/plain"), "3 of 9 edges drawn"), "%s", t_get(b, "text/plain"));
    /* width by share: the widest line is the edge with the largest share (5->7, share 1) */
    double wmax = 0, wmin = 1e9;
    for (const char *p = svg; (p = strstr(p, "<line ")); p++) {
        double w = attr(p, "stroke-width", 0);
        wmax = fmax(wmax, w);
        wmin = fmin(wmin, w);
    }
    cr_assert(wmax > wmin, "widths differ with shares: %g %g", wmin, wmax);
    free(svg);
    json_decref(d);
    json_decref(b);
}

Test(circuit, paths_from_embeddings_to_logits_by_product_of_shares)
{
    lp_circuit c = small_graph();
    json_t *b = lp_circuit_display(&c, NULL);
    const char *plain = t_get(b, "text/plain");
    /* best path: emb " capital"(1) -> f4 (share 1) -> f5 (-0.25) -> logit Rome (-1): 0.25;
     * emb "The"(0) -> f3 (2/3) -> f5 (0.5) -> Rome (-1): -1/3 is larger in magnitude */
    const char *top = strstr(plain, "top paths:\n  ");
    cr_assert(top, "%s", plain);
    top += strlen("top paths:\n  ");
    const char *want = "-0.3333  emb The @0 \xE2\x86\x92 L0 capitals \xE2\x86\x92 L1 say a capital \xE2\x86\x92 logit \xE2\x90\xA3Rome @2\n";
    cr_assert(!strncmp(top, want, strlen(want)), "%.120s", top);
    cr_assert(strstr(plain, "0.2667  emb The @0"), "0->3->5->8: 2/3 * 0.5 * 0.8:\n%s", plain);
    cr_assert(strstr(t_get(b, "text/html"), "Top paths"));
    json_decref(b);

    /* paths given by the caller are shown as given */
    int p1[] = {1, 4, 5, 8};
    lp_circuit_path given = {4, p1, 0.125};
    c.n_paths = 1;
    c.paths = &given;
    b = lp_circuit_display(&c, NULL);
    plain = t_get(b, "text/plain");
    cr_assert(strstr(plain, "top paths:\n  0.125  emb \xE2\x90\xA3" "capital @1 \xE2\x86\x92 L0 countries"), "%s", plain);
    json_decref(b);
}

Test(circuit, node_table_by_influence)
{
    lp_circuit c = small_graph();
    json_t *b = lp_circuit_display(&c, &(lp_circuit_opts){.max_table_nodes = 3});
    const char *html = t_get(b, "text/html");
    const char *t = strstr(html, "Top nodes (by influence)");
    cr_assert(t);
    /* influence 1.0 (Paris), 0.9 (Rome), 0.7 (say a capital) */
    const char *p = strstr(t, "Paris"), *r = strstr(t, "Rome"), *s = strstr(t, "say a capital");
    cr_assert(p && r && s && p < r && r < s);
    const char *end = strstr(t, "</table>");
    cr_assert(end && end > s);
    cr_assert(!strstr(t, "countries") || strstr(t, "countries") > end, "only 3 rows");
    cr_assert(strstr(t, "the 3 most influential of 9 nodes"));
    json_decref(b);
}

Test(circuit, hostile_labels_and_tokens_are_text)
{
    static const char *const toks[] = {"<script>alert(1)</script>", "\"><img src=x onerror=alert(2)>",
                                       "</text></svg><script>x()</script>"};
    lp_circuit_node nodes[NN];
    memcpy(nodes, NODES, sizeof nodes);
    nodes[3].label = "<img src=x onerror=alert(3)>&amp;";
    nodes[4].label = "]]><!-- \xE2\x80\xAE evil -->";
    nodes[8].label = "</script><script>alert(4)</script>";
    lp_circuit c = small_graph();
    c.nodes = nodes;
    c.tokens = toks;
    c.title = "<b onmouseover=alert(5)>t</b>";
    json_t *b = lp_circuit_display(&c, NULL);
    char *svg = check_picture(b, "hostile");
    const char *html = t_get(b, "text/html");
    cr_assert_null(strstr(html, "<script>alert"));
    cr_assert_null(strstr(html, "<img src=x"));
    cr_assert_null(strstr(html, "<b onmouseover"));
    cr_assert_null(strstr(html, "\xE2\x80\xAE"), "bidi override shown as an escape");
    cr_assert_eq(t_count(html, "<script"), 2, "only the JSON data element and our hover script");
    cr_assert_eq(t_count(html, "</script>"), 2, "no token closes the data element");
    cr_assert(strstr(html, "</script><script>(function(){\"use strict\";"), "our script (embedded prefix)");
    cr_assert(strstr(html, "&lt;img src=x onerror=alert(3)&gt;&amp;amp;"), "labels as text in the table");
    cr_assert_null(strstr(svg, "<script"));
    cr_assert_null(strstr(svg, "<img"));
    cr_assert(strstr(svg, "&lt;/script&gt;&lt;script\xE2\x80\xA6"), "the logit's label as text, cut");
    cr_assert(strstr(svg, "&lt;script&gt;alert(1)"), "a token as text");
    /* the data still holds the labels exactly (escaped only by JSON) */
    json_t *d = diagram_data(b);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(json_object_get(d, "nodes"), "label"), 8)),
                     "</script><script>alert(4)</script>");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(d, "tokens"), 2)),
                     "</text></svg><script>x()</script>");
    json_decref(d);
    free(svg);
    json_decref(b);
}

/* A deterministic pseudo-random graph: n features over T tokens and L layers (plus errors,
 * embeddings and logits) and ne random upward edges. */
typedef struct rgraph {
    lp_circuit c;
    lp_circuit_node *nodes;
    lp_circuit_edge *edges;
    const char **tokens;
    char (*tok)[16];
    char (*lab)[48];
} rgraph;

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 8) & 0xffffff;
}

static rgraph random_graph(int nf, int T, int L, int ne, unsigned seed)
{
    rgraph g = {0};
    int nlog = 10, n = nf + L * T + T + nlog;
    g.nodes = calloc((size_t)n, sizeof *g.nodes);
    g.edges = calloc((size_t)ne, sizeof *g.edges);
    g.tokens = calloc((size_t)T, sizeof *g.tokens);
    g.tok = calloc((size_t)T, sizeof *g.tok);
    g.lab = calloc((size_t)n, sizeof *g.lab);
    unsigned s = seed;
    for (int p = 0; p < T; p++) {
        snprintf(g.tok[p], sizeof g.tok[p], " tok%d", p);
        g.tokens[p] = g.tok[p];
    }
    int k = 0;
    for (int i = 0; i < nf; i++, k++) {
        snprintf(g.lab[k], sizeof g.lab[k], "feature %d: a label of some length", i);
        g.nodes[k] = (lp_circuit_node){LP_CIRCUIT_FEATURE, (int)(rnd(&s) % L), (int)(rnd(&s) % T),
                                       (int)(rnd(&s) % 16384), (float)(rnd(&s) % 1000) / 100,
                                       (float)(rnd(&s) % 10000) / 10000, 0, g.lab[k]};
    }
    for (int l = 0; l < L; l++)
        for (int p = 0; p < T; p++, k++)
            g.nodes[k] = (lp_circuit_node){LP_CIRCUIT_ERROR, l, p, -1, 1, (float)(rnd(&s) % 100) / 1000, 0, NULL};
    for (int p = 0; p < T; p++, k++)
        g.nodes[k] = (lp_circuit_node){LP_CIRCUIT_EMBEDDING, 0, p, p, 1, (float)(rnd(&s) % 100) / 1000, 0, NULL};
    for (int j = 0; j < nlog; j++, k++) {
        snprintf(g.lab[k], sizeof g.lab[k], " out%d", j);
        g.nodes[k] = (lp_circuit_node){LP_CIRCUIT_LOGIT, 0, T - 1, 100 + j, 0, 1.0f / (j + 1), 0.5f / (j + 1), g.lab[k]};
    }
    /* rows: embedding 0, layer l -> l + 1, logits L + 1 */
    for (int e = 0; e < ne; e++) {
        int a, b, ra, rb;
        do {
            a = (int)(rnd(&s) % (unsigned)n);
            b = (int)(rnd(&s) % (unsigned)n);
            const lp_circuit_node *u = &g.nodes[a], *v = &g.nodes[b];
            ra = u->kind == LP_CIRCUIT_EMBEDDING ? 0 : u->kind == LP_CIRCUIT_LOGIT ? L + 1 : u->layer + 1;
            rb = v->kind == LP_CIRCUIT_EMBEDDING ? 0 : v->kind == LP_CIRCUIT_LOGIT ? L + 1 : v->layer + 1;
        } while (!(ra < rb && g.nodes[b].kind != LP_CIRCUIT_ERROR && g.nodes[b].kind != LP_CIRCUIT_EMBEDDING));
        g.edges[e] = (lp_circuit_edge){a, b, ((float)(rnd(&s) % 2001) - 1000) / 100};
    }
    g.c = (lp_circuit){n, g.nodes, ne, g.edges, T, g.tokens, L, 0.5, 0.8, 0, NULL, NULL, 0, NULL, 0, NULL};
    return g;
}

static void free_graph(rgraph *g)
{
    free(g->nodes);
    free(g->edges);
    free(g->tokens);
    free(g->tok);
    free(g->lab);
}

Test(circuit, output_is_bounded_for_2000_nodes_and_20000_edges)
{
    rgraph g = random_graph(2000 - 12 * 20 - 20 - 10, 20, 12, 20000, 7);
    cr_assert_eq(g.c.n_nodes, 2000);
    json_t *b = lp_circuit_display(&g.c, NULL);
    char *svg = check_picture(b, "2000 nodes");
    size_t bytes = t_bundle_bytes(b);
    printf("[size] circuit diagram 2000 nodes / 20000 edges: %zu bytes (svg %zu)\n", bytes, strlen(svg));
    cr_assert(bytes < 300 * 1000, "%zu bytes", bytes);
    cr_assert_eq(t_count(svg, "<line "), 300, "the default cap of drawn edges");
    cr_assert(strstr(t_get(b, "text/plain"), "300 of 20000 edges drawn"), "%s", t_get(b, "text/plain"));
    json_t *d = diagram_data(b);
    cr_assert_eq(json_array_size(json_object_get(json_object_get(d, "nodes"), "kind")), 2000);
    cr_assert_eq(json_array_size(json_object_get(json_object_get(d, "edges"), "src")), 1000);
    /* crowded cells say so */
    cr_assert(strstr(svg, ">+"), "a crowded cell shows +N");
    /* deterministic */
    json_t *b2 = lp_circuit_display(&g.c, NULL);
    cr_assert_str_eq(t_get(b, "text/html"), t_get(b2, "text/html"));
    json_decref(b2);
    json_decref(d);
    free(svg);
    json_decref(b);
    free_graph(&g);
}

Test(circuit, many_tokens_collapse_empty_positions)
{
    rgraph g = random_graph(300, 1000, 4, 2000, 3);
    json_t *b = lp_circuit_display(&g.c, NULL);
    char *svg = check_picture(b, "1000 tokens");
    size_t bytes = t_bundle_bytes(b);
    printf("[size] circuit diagram 1000 tokens, 4 layers, %d nodes: %zu bytes\n", g.c.n_nodes, bytes);
    cr_assert(bytes < 700 * 1000, "%zu bytes", bytes);
    cr_assert(strstr(t_get(b, "text/plain"), "positions without nodes narrowed"), "%s", t_get(b, "text/plain"));
    free(svg);
    json_decref(b);
    free_graph(&g);
}

static void has_note(const json_t *b, const char *note)
{
    const char *plain = t_get(b, "text/plain"), *html = t_get(b, "text/html");
    cr_assert(strstr(plain, note), "text/plain lacks \"%s\":\n%s", note, plain);
    cr_assert(strstr(html, note), "text/html lacks \"%s\"", note);
}

Test(circuit, degenerate_graphs_give_a_picture_with_a_note)
{
    lp_circuit c = small_graph();
    json_t *b;
    char *svg;

    /* no nodes, tokens given: the empty grid */
    c.n_nodes = 0;
    c.n_edges = 0;
    b = lp_circuit_display(&c, NULL);
    free(check_picture(b, "no nodes"));
    has_note(b, "no nodes to draw");
    json_decref(b);
    /* nothing at all */
    b = lp_circuit_display(&(lp_circuit){0}, NULL);
    cr_assert(b && strstr(t_get(b, "text/plain"), "nothing to show"));
    json_decref(b);
    b = lp_circuit_display(NULL, NULL);
    cr_assert(b && strstr(t_get(b, "text/plain"), "nothing to show"));
    json_decref(b);

    /* no edges */
    c = small_graph();
    c.n_edges = 0;
    b = lp_circuit_display(&c, NULL);
    svg = check_picture(b, "no edges");
    cr_assert_eq(t_count(svg, "<line "), 0);
    has_note(b, "no edges to draw");
    free(svg);
    json_decref(b);

    /* a single token */
    static const lp_circuit_node one[] = {
        {LP_CIRCUIT_EMBEDDING, 0, 0, 1, 1, 0.5f, 0, NULL},
        {LP_CIRCUIT_FEATURE, 0, 0, 3, 1, 0.5f, 0, "x"},
        {LP_CIRCUIT_LOGIT, 0, 0, 2, 0, 1, 0.9f, " y"},
    };
    static const lp_circuit_edge one_e[] = {{0, 1, 1}, {1, 2, 1}};
    static const char *const one_t[] = {"Hi"};
    c = (lp_circuit){3, one, 2, one_e, 1, one_t, 1, NAN, NAN, 0, NULL, NULL, 0, NULL, 0, NULL};
    b = lp_circuit_display(&c, NULL);
    svg = check_picture(b, "one token");
    cr_assert_eq(t_count(svg, "<line "), 2);
    has_note(b, "a single token");
    cr_assert(strstr(t_get(b, "text/plain"), "replacement score unknown"));
    free(svg);
    json_decref(b);

    /* labels and tokens of 10,000 characters: cut in the picture, which stays small */
    char *big = malloc(10001);
    for (int i = 0; i < 10000; i++)
        big[i] = "Wm\xE6\xBC\xA2"[i % 2 ? 1 : 0];
    big[10000] = 0;
    lp_circuit_node nodes[NN];
    memcpy(nodes, NODES, sizeof nodes);
    nodes[3].label = big;
    nodes[8].label = big;
    const char *toks[] = {big, big, "x"};
    c = small_graph();
    c.nodes = nodes;
    c.tokens = toks;
    c.title = big;
    b = lp_circuit_display(&c, NULL);
    svg = check_picture(b, "10,000-character labels");
    cr_assert(strlen(svg) < 20000, "%zu bytes of SVG", strlen(svg));
    cr_assert(t_bundle_bytes(b) < 120000, "%zu bytes", t_bundle_bytes(b));
    free(svg);
    json_decref(b);
    free(big);

    /* non-finite weights and numbers */
    lp_circuit_edge edges[NE];
    memcpy(edges, EDGES, sizeof edges);
    edges[0].weight = NAN;
    edges[3].weight = INFINITY;
    edges[6].weight = -INFINITY;
    memcpy(nodes, NODES, sizeof nodes);
    nodes[3].influence = NAN;
    nodes[8].prob = INFINITY;
    c = small_graph();
    c.nodes = nodes;
    c.edges = edges;
    c.replacement_score = NAN;
    b = lp_circuit_display(&c, NULL);
    svg = check_picture(b, "non-finite");
    cr_assert_eq(t_count(svg, "<line "), NE - 3);
    cr_assert_null(strstr(svg, "nan"));
    has_note(b, "3 edges with non-finite weights left out");
    has_note(b, "2 values missing (NaN/Inf)");
    free(svg);
    json_decref(b);

    /* 100,000 positions, two of them with nodes, no token texts: a picture of bounded width */
    static const lp_circuit_node far[] = {
        {LP_CIRCUIT_FEATURE, 0, 5, 1, 1, 0.5f, 0, "early"},
        {LP_CIRCUIT_LOGIT, 0, 99999, 2, 0, 1, 0.5f, " late"},
    };
    static const lp_circuit_edge far_e[] = {{0, 1, 1}};
    c = (lp_circuit){2, far, 1, far_e, 100000, NULL, 1, 0.5, 0.5, 0, NULL, NULL, 0, NULL, 0, NULL};
    b = lp_circuit_display(&c, NULL);
    svg = check_picture(b, "100,000 positions");
    double W = 0;
    cr_assert(sscanf(strstr(svg, "viewBox=\"0 0 "), "viewBox=\"0 0 %lf", &W) == 1 && W < 2200, "%g px wide", W);
    has_note(b, "99998 positions without nodes narrowed");
    cr_assert(t_bundle_bytes(b) < 60000, "%zu bytes", t_bundle_bytes(b));
    free(svg);
    json_decref(b);

    /* nodes and edges out of range */
    memcpy(nodes, NODES, sizeof nodes);
    nodes[5].layer = 7;  /* only 2 layers */
    nodes[6].pos = -1;
    nodes[2].kind = 9;
    memcpy(edges, EDGES, sizeof edges);
    edges[1].src = 1000;
    edges[2].dst = -3;
    c = small_graph();
    c.nodes = nodes;
    c.edges = edges;
    b = lp_circuit_display(&c, NULL);
    free(check_picture(b, "out of range"));
    has_note(b, "3 nodes with a layer, position or kind out of range left out");
    has_note(b, "edges naming missing nodes left out");
    json_decref(b);
}

/* Random graphs with anything out of range (kinds, layers, positions, node indices,
 * non-finite numbers, NULL labels and tokens, 0 or more layers and tokens): always a valid
 * bundle whose texts stay inside its picture, and the same bytes twice. */
Test(circuit, random_garbage_never_breaks_the_figure)
{
    unsigned s = 12345;
    static const float odd[] = {0.0f, -1.0f, 1e30f, -1e-30f, NAN, INFINITY, -INFINITY, 0.5f};
    static const char *const labels[] = {NULL, "", "x", "<b>\"'&", "\xff\xfe", "\xE2\x80\xAE" "rtl", " \n\t",
                                         "\x1b[31m\x7f"};
    enum { NL = sizeof labels / sizeof *labels };
    for (int it = 0; it < 150; it++) {
        int n = (int)(rnd(&s) % 60), ne = (int)(rnd(&s) % 200), T = (int)(rnd(&s) % 12) - 2,
            L = (int)(rnd(&s) % 6) - 1;
        lp_circuit_node *nodes = calloc((size_t)n + 1, sizeof *nodes);
        lp_circuit_edge *edges = calloc((size_t)ne + 1, sizeof *edges);
        const char *toks[12];
        for (int p = 0; p < 12; p++)
            toks[p] = labels[rnd(&s) % NL];
        for (int i = 0; i < n; i++)
            nodes[i] = (lp_circuit_node){(int)(rnd(&s) % 6) - 1, (int)(rnd(&s) % 8) - 1, (int)(rnd(&s) % 14) - 1,
                                         (int)rnd(&s), odd[rnd(&s) % 8], odd[rnd(&s) % 8], odd[rnd(&s) % 8],
                                         labels[rnd(&s) % NL]};
        for (int k = 0; k < ne; k++)
            edges[k] = (lp_circuit_edge){(int)(rnd(&s) % (unsigned)(n + 3)) - 1,
                                         (int)(rnd(&s) % (unsigned)(n + 3)) - 1, odd[rnd(&s) % 8]};
        lp_circuit c = {n, nodes, ne, edges, T, rnd(&s) % 3 ? toks : NULL, L, odd[rnd(&s) % 8],
                        odd[rnd(&s) % 8], 0, NULL, labels[rnd(&s) % NL],
                        3, FUZZ_PINS, 2, FUZZ_GROUPS}; /* indices out of range too */
        lp_circuit_opts o = {(int)(rnd(&s) % 5) - 1, (int)(rnd(&s) % 4) - 1, (int)(rnd(&s) % 4) - 1,
                             (int)(rnd(&s) % 4) - 1, (int)(rnd(&s) % 4) - 1};
        json_t *b = lp_circuit_display(&c, &o);
        cr_assert(b && t_bundle_valid(b), "iteration %d", it);
        char *svg = t_svg_at(t_get(b, "text/html"), 0);
        if (svg) {
            char what[32];
            snprintf(what, sizeof what, "random graph %d", it);
            texts_inside(svg, what);
            free(svg);
        } else {
            cr_assert(strstr(t_get(b, "text/plain"), "nothing to show"), "iteration %d: no picture", it);
        }
        json_t *b2 = lp_circuit_display(&c, &o);
        cr_assert_str_eq(t_get(b, "text/html"), t_get(b2, "text/html"));
        json_decref(b2);
        json_decref(b);
        free(nodes);
        free(edges);
    }
}

/* The view given from Lua (pins and supernodes) is in the data as "state", indices out of
 * range left out, names as JSON strings; without a view there is no "state". */
Test(circuit, the_view_from_lua_is_in_the_data)
{
    lp_circuit c = small_graph();
    json_t *b = lp_circuit_display(&c, NULL);
    json_t *d = diagram_data(b);
    cr_assert_null(json_object_get(d, "state"));
    json_decref(d), json_decref(b);
    c.n_pinned = 3, c.pinned = FUZZ_PINS, c.n_groups = 2, c.groups = FUZZ_GROUPS;
    b = lp_circuit_display(&c, NULL);
    d = diagram_data(b);
    json_t *st = json_object_get(d, "state");
    cr_assert_not_null(st);
    json_t *pins = json_object_get(st, "pinned"), *sns = json_object_get(st, "supernodes");
    cr_assert(json_array_size(pins) == 1 && json_integer_value(json_array_get(pins, 0)) == 0);
    cr_assert_eq(json_array_size(sns), 2);
    json_t *g0 = json_array_get(sns, 0), *g1 = json_array_get(sns, 1);
    cr_assert_str_eq(json_string_value(json_array_get(g0, 0)), "</script><b>");
    cr_assert(json_array_size(g0) == 2 && json_integer_value(json_array_get(g0, 1)) == 0);
    cr_assert(json_array_size(g1) == 1 && !strcmp(json_string_value(json_array_get(g1, 0)), ""));
    const char *html = json_string_value(json_object_get(b, "text/html"));
    cr_assert_null(strstr(html, "</script><b>"), "the name is not markup");
    json_decref(d), json_decref(b);
}
