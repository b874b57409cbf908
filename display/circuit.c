/* The static circuit diagram of an attribution graph (circuit.h): layout by (row, position)
 * cells, the strongest edges by share of their target's input, glyphs by node type, and
 * the scores, top paths and top nodes as tables. Pure function; every string escaped. */
#include "circuit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "color.h"
#include "core/error.h"
#include "figure.h"
#include "figure_js.h"
#include "html.h"
#include "svg.h"
#include "text.h"

enum {
    DEF_EDGES = 300, DEF_PER_CELL = 8, DEF_PATHS = 10, DEF_TABLE = 20, DEF_DATA_EDGES = 1000,
    MAX_EDGES = 5000, MAX_PER_CELL = 64, MAX_PATHS = 50, MAX_TABLE = 500, MAX_DATA_EDGES = 100000,
    MAX_DRAWN = 1000,   /* feature and error glyphs drawn at most (the most influential) */
    MAX_COLS = 256,     /* above this many positions, positions without nodes are collapsed */
    MAX_LAYERS = 4096, MAX_TOKENS = 1 << 20, /* the picture's rows and columns at most */
    TOKEN_CHARS = 16, LOGIT_CHARS = 16, NAME_CHARS = 32, TABLE_CHARS = 120, DATA_CHARS = 160,
    TITLE_CHARS = 200
};

/* Geometry, in picture units (px). */
#define SLOT 13.0      /* horizontal distance between glyphs of one cell */
#define GLYPH 4.5      /* half the size of a glyph */
#define ROW_H 40.0
#define COL_PAD 10.0
#define MIN_COL 22.0
#define COLLAPSED 3.0
#define FONT 10.0
#define SMALL 9.0

static const char *const KIND_NAME[] = {"feature", "error", "embedding", "logit"};
/* fills of the glyphs, readable on light and dark themes; outlines in the ink grey */
static const char *const KIND_FILL[] = {"#f2c14e", "#bdbdbd", "#7fb2e5", "#e8836b"};
#define EDGE_POS "#1b9e77" /* green */
#define EDGE_NEG "#8e44ad" /* purple */

typedef struct cnode {
    int row;       /* 0 embeddings, 1..L layers, L+1 logits; -1 invalid */
    int drawn;     /* glyph in the picture */
    double x, y;   /* glyph centre when drawn */
    double in_abs; /* sum of |w| of the finite incoming edges */
} cnode;

typedef struct ctx {
    const lp_circuit *c;
    const lp_circuit_node *nd;
    int n, T, L, rows;
    cnode *cn;
} ctx;

static double fin_or(double v, double d) { return isfinite(v) ? v : d; }

/* A short number in the picture's coordinates: one decimal, no "-0". */
static void num(lp_buf *b, double v)
{
    double r = round(fin_or(v, 0) * 10) / 10;
    if (r == 0)
        r = 0;
    if (r == floor(r))
        lp_buf_printf(b, "%.0f", r);
    else
        lp_buf_printf(b, "%.1f", r);
}

static const char *token_of(const ctx *x, int pos)
{
    if (!x->c->tokens || pos < 0 || pos >= x->c->n_tokens)
        return "";
    return x->c->tokens[pos] ? x->c->tokens[pos] : "";
}

/* The token as every figure shows it (lp_token_show), into b, with what escaping would
 * still change made visible already (bidi controls as "\u202E", invalid UTF-8 as U+FFFD),
 * so that its measured width is the drawn one. */
static void put_token(lp_buf *b, const char *t)
{
    lp_buf s = LP_BUF_INIT;
    lp_token_show(&s, t ? t : "", t ? strlen(t) : 0);
    lp_utf8_sanitize(b, lp_buf_str(&s), s.len);
    lp_buf_free(&s);
}

/* The token as shown, cut to max_chars code points. */
static void put_token_cut(lp_buf *b, const char *t, size_t max_chars)
{
    lp_buf s = LP_BUF_INIT;
    put_token(&s, t);
    lp_utf8_truncate(b, lp_buf_str(&s), max_chars);
    lp_buf_free(&s);
}

/* A short name of node i (not escaped): "L3 #123", "err L3", "emb ␣Mara", "␣Oslo". */
static void node_name(lp_buf *b, const ctx *x, int i)
{
    const lp_circuit_node *v = &x->nd[i];
    switch (v->kind) {
    case LP_CIRCUIT_FEATURE: lp_buf_printf(b, "L%d #%d", v->layer, v->feature); break;
    case LP_CIRCUIT_ERROR: lp_buf_printf(b, "err L%d", v->layer); break;
    case LP_CIRCUIT_EMBEDDING: lp_buf_puts(b, "emb "); put_token_cut(b, token_of(x, v->pos), NAME_CHARS); break;
    default:
        lp_buf_puts(b, "logit ");
        if (v->label)
            put_token_cut(b, v->label, NAME_CHARS);
        else
            lp_buf_printf(b, "%d", v->feature);
    }
    lp_buf_printf(b, " @%d", v->pos);
}

/* The node's description for tables: the label of a feature (cut), else its name. */
static void node_desc(lp_buf *b, const ctx *x, int i, size_t max_chars)
{
    const lp_circuit_node *v = &x->nd[i];
    lp_buf t = LP_BUF_INIT;
    if (v->kind == LP_CIRCUIT_FEATURE && v->label && *v->label)
        lp_buf_printf(&t, "L%d %s", v->layer, v->label);
    else
        node_name(&t, x, i);
    lp_utf8_truncate(b, lp_buf_str(&t), max_chars);
    lp_buf_free(&t);
}

/* A logit's label in the picture: its token (cut) and probability. */
static void logit_text(lp_buf *b, const lp_circuit_node *v)
{
    lp_buf t = LP_BUF_INIT;
    put_token(&t, v->label ? v->label : "");
    lp_utf8_truncate(b, lp_buf_str(&t), LOGIT_CHARS);
    lp_buf_free(&t);
    char pr[32];
    lp_buf_printf(b, " %s", lp_fmt_num(v->prob, pr, sizeof pr));
}

/* ---- validation and layout ---------------------------------------------------------------- */

static int row_of(const ctx *x, const lp_circuit_node *v)
{
    if (v->pos < 0 || v->pos >= x->T)
        return -1;
    switch (v->kind) {
    case LP_CIRCUIT_EMBEDDING: return 0;
    case LP_CIRCUIT_LOGIT: return x->L + 1;
    case LP_CIRCUIT_FEATURE:
    case LP_CIRCUIT_ERROR: return v->layer >= 0 && v->layer < x->L ? v->layer + 1 : -1;
    default: return -1;
    }
}

static double infl(const lp_circuit_node *v) { return isfinite(v->influence) ? v->influence : -INFINITY; }

static _Thread_local const ctx *sort_ctx; /* qsort has no context argument: set before each sort */

/* Order of nodes in a cell and in "most influential" lists: logits by probability, then
 * features before errors, by influence (descending), then index. */
static int by_importance(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    const lp_circuit_node *u = &sort_ctx->nd[i], *v = &sort_ctx->nd[j];
    if (u->kind == LP_CIRCUIT_LOGIT && v->kind == LP_CIRCUIT_LOGIT) {
        double p = fin_or(u->prob, -1), q = fin_or(v->prob, -1);
        if (p != q)
            return p > q ? -1 : 1;
    }
    if (u->kind != v->kind && (u->kind == LP_CIRCUIT_ERROR || v->kind == LP_CIRCUIT_ERROR))
        return u->kind == LP_CIRCUIT_ERROR ? 1 : -1;
    double p = infl(u), q = infl(v);
    if (p != q)
        return p > q ? -1 : 1;
    return (i > j) - (i < j);
}

/* Nodes by influence alone (descending), then index: the node table. */
static int by_influence(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    double p = infl(&sort_ctx->nd[i]), q = infl(&sort_ctx->nd[j]);
    if (p != q)
        return p > q ? -1 : 1;
    return (i > j) - (i < j);
}

/* Drawn nodes by cell: row, then position, then importance. */
static int by_cell(const void *a, const void *b)
{
    const cnode *u = &sort_ctx->cn[*(const int *)a], *v = &sort_ctx->cn[*(const int *)b];
    int pu = sort_ctx->nd[*(const int *)a].pos, pv = sort_ctx->nd[*(const int *)b].pos;
    if (u->row != v->row)
        return u->row < v->row ? -1 : 1;
    if (pu != pv)
        return pu < pv ? -1 : 1;
    return by_importance(a, b);
}

typedef struct sedge {
    int k;        /* index into c->edges */
    double share; /* |w| / in_abs[dst] */
} sedge;

static int by_share(const void *a, const void *b)
{
    const sedge *u = a, *v = b;
    if (u->share != v->share)
        return u->share > v->share ? -1 : 1;
    return (u->k > v->k) - (u->k < v->k);
}

/* ---- paths -------------------------------------------------------------------------------- */

typedef struct pent {
    double mag;    /* |product of shares| */
    int sign;      /* +1 / -1 */
    int prev, pk;  /* previous node and its entry, -1 at an embedding */
} pent;

typedef struct found_path {
    int *nodes, n;
    double score;
} found_path;

static int by_mag(const void *a, const void *b)
{
    const pent *u = a, *v = b;
    return (u->mag < v->mag) - (u->mag > v->mag);
}

/* The K paths from an embedding to a logit with the largest |product of signed shares|,
 * along valid edges going up the rows (K-best dynamic programme in row order). Returns the
 * number found (<= K) into out, or -1 on OOM. */
static int find_paths(const ctx *x, const sedge *se, int ne, int K, found_path *out)
{
    /* K entries per node: at most 8M entries in all (192 MB), fewer paths on huge graphs */
    if (x->n > 0 && (size_t)x->n * (size_t)K > ((size_t)8 << 20))
        K = (int)(((size_t)8 << 20) / (size_t)x->n) > 1 ? (int)(((size_t)8 << 20) / (size_t)x->n) : 1;
    const lp_circuit_edge *E = x->c->edges;
    int n = x->n, rc = -1, found = 0;
    int *order = lp_malloc((size_t)n * sizeof *order + 1, "circuit paths");
    int *start = lp_calloc((size_t)n + 1, sizeof *start, "circuit paths");
    int *inc = lp_malloc((size_t)ne * sizeof *inc + 1, "circuit paths");
    int *cnt = lp_calloc((size_t)n + 1, sizeof *cnt, "circuit paths");
    pent *ent = lp_malloc((size_t)n * K * sizeof *ent + 1, "circuit paths");
    size_t ncap = 5 * (size_t)K;
    pent *cand = lp_malloc(ncap * sizeof *cand, "circuit paths");
    if (!order || !start || !inc || !cnt || !ent || !cand)
        goto done;
    /* incoming edges per target (CSR), only those going up */
    for (int k = 0; k < ne; k++) {
        const lp_circuit_edge *e = &E[se[k].k];
        if (x->cn[e->src].row < x->cn[e->dst].row && se[k].share > 0)
            start[e->dst + 1]++;
    }
    for (int i = 0; i < n; i++)
        start[i + 1] += start[i];
    {
        int *fill = cnt; /* reused as the fill pointer, then zeroed */
        for (int k = 0; k < ne; k++) {
            const lp_circuit_edge *e = &E[se[k].k];
            if (x->cn[e->src].row < x->cn[e->dst].row && se[k].share > 0)
                inc[start[e->dst] + fill[e->dst]++] = k;
        }
        memset(cnt, 0, (size_t)n * sizeof *cnt);
    }
    /* nodes by row (counting sort) */
    {
        int m = 0, *rs = lp_calloc((size_t)x->rows + 1, sizeof *rs, "circuit paths");
        if (!rs)
            goto done;
        for (int i = 0; i < n; i++)
            if (x->cn[i].row >= 0)
                rs[x->cn[i].row + 1]++;
        for (int r = 0; r < x->rows; r++)
            rs[r + 1] += rs[r];
        for (int i = 0; i < n; i++)
            if (x->cn[i].row >= 0)
                order[rs[x->cn[i].row]++] = i;
        m = rs[x->rows - 1]; /* after the fill, rs[r] is the end of row r */
        free(rs);
        for (int oi = 0; oi < m; oi++) {
            int v = order[oi];
            pent *ev = ent + (size_t)v * K;
            if (x->nd[v].kind == LP_CIRCUIT_EMBEDDING) {
                ev[0] = (pent){1.0, 1, -1, -1};
                cnt[v] = 1;
                continue;
            }
            /* candidates from every incoming edge, cut back to the best K whenever the
             * buffer (5 K entries) fills: memory O(K) whatever the in-degree */
            size_t m2 = 0;
            for (int a = start[v]; a < start[v + 1]; a++) {
                const sedge *s = &se[inc[a]];
                const lp_circuit_edge *e = &x->c->edges[s->k];
                int sg = e->weight < 0 ? -1 : 1;
                if (m2 + (size_t)K > ncap) {
                    qsort(cand, m2, sizeof *cand, by_mag);
                    m2 = m2 < (size_t)K ? m2 : (size_t)K;
                }
                for (int q = 0; q < cnt[e->src]; q++) {
                    const pent *p = &ent[(size_t)e->src * K + q];
                    cand[m2++] = (pent){p->mag * s->share, p->sign * sg, e->src, q};
                }
            }
            if (m2 == 0)
                continue;
            qsort(cand, m2, sizeof *cand, by_mag);
            cnt[v] = m2 < (size_t)K ? (int)m2 : K;
            memcpy(ev, cand, (size_t)cnt[v] * sizeof *ev);
        }
    }
    /* the best entries over all logits */
    {
        size_t nl = 0;
        for (int i = 0; i < n; i++)
            if (x->nd[i].kind == LP_CIRCUIT_LOGIT && x->cn[i].row >= 0)
                nl += (size_t)cnt[i];
        pent *all = lp_malloc(nl * sizeof *all + 1, "circuit paths");
        if (!all)
            goto done;
        size_t m3 = 0;
        for (int i = 0; i < n; i++)
            if (x->nd[i].kind == LP_CIRCUIT_LOGIT && x->cn[i].row >= 0)
                for (int q = 0; q < cnt[i]; q++)
                    all[m3++] = (pent){ent[(size_t)i * K + q].mag, ent[(size_t)i * K + q].sign, i, q};
        qsort(all, m3, sizeof *all, by_mag);
        for (size_t t = 0; t < m3 && found < K; t++) {
            if (!(all[t].mag > 0))
                break;
            int len = 0;
            for (int v = all[t].prev, q = all[t].pk; v >= 0;) {
                const pent *p = &ent[(size_t)v * K + q];
                len++;
                int pv = p->prev;
                q = p->pk;
                v = pv;
            }
            int *path = lp_malloc((size_t)len * sizeof *path, "circuit paths");
            if (!path) {
                free(all);
                goto done;
            }
            int j = len;
            for (int v = all[t].prev, q = all[t].pk; v >= 0;) {
                const pent *p = &ent[(size_t)v * K + q];
                path[--j] = v;
                int pv = p->prev;
                q = p->pk;
                v = pv;
            }
            out[found++] = (found_path){path, len, all[t].sign * all[t].mag};
        }
        free(all);
    }
    rc = found;
done:
    free(order);
    free(start);
    free(inc);
    free(cnt);
    free(ent);
    free(cand);
    return rc;
}

/* ---- drawing ------------------------------------------------------------------------------ */

static void glyph(lp_buf *svg, int kind, double cx, double cy)
{
    double g = GLYPH;
    if (kind == LP_CIRCUIT_FEATURE) {
        lp_buf_puts(svg, "<circle cx=\"");
        num(svg, cx);
        lp_buf_puts(svg, "\" cy=\"");
        num(svg, cy);
        lp_buf_puts(svg, "\" r=\"4.5\"/>");
    } else if (kind == LP_CIRCUIT_ERROR) {
        lp_buf_puts(svg, "<path d=\"M");
        num(svg, cx);
        lp_buf_putc(svg, ' ');
        num(svg, cy - g - 0.5);
        lp_buf_puts(svg, "l5 5-5 5-5-5z\"/>");
    } else {
        lp_buf_puts(svg, "<rect x=\"");
        num(svg, cx - g);
        lp_buf_puts(svg, "\" y=\"");
        num(svg, cy - g);
        lp_buf_puts(svg, "\" width=\"9\" height=\"9\"/>");
    }
}

static void html_cell(lp_buf *h, const char *s, int right)
{
    lp_buf_puts(h, right ? "<td style=\"padding:1px 6px;text-align:right\">" : "<td style=\"padding:1px 6px;text-align:left\">");
    lp_html_escape(h, s, strlen(s));
    lp_buf_puts(h, "</td>");
}

/* A table's heading and header row; rows are separated by their bottom border (on the
 * <tr>, which border-collapse draws), cells only pad: short rows for large tables. */
static void html_table_head(lp_buf *h, const char *caption, const char *const *cols, int n)
{
    lp_buf_puts(h, "<div style=\"font-size:12px;font-weight:bold;margin:6px 0 2px 0\">");
    lp_buf_puts(h, caption); /* our own text */
    lp_buf_puts(h, "</div><table style=\"border-collapse:collapse;font-size:12px;font-family:monospace;"
                   "white-space:pre-wrap\"><thead><tr style=\"border-bottom:1px solid #7f7f7f\">");
    for (int j = 0; j < n; j++)
        lp_buf_printf(h, "<th style=\"padding:1px 6px;text-align:left\">%s</th>", cols[j]);
    lp_buf_puts(h, "</tr></thead><tbody>");
}

#define TR "<tr style=\"border-bottom:1px solid rgba(127,127,127,0.2)\">"

static json_t *fnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* v with 4 significant digits (shorter JSON), null when not finite. */
static json_t *fnum4(double v)
{
    if (!isfinite(v))
        return json_null();
    if (v == 0)
        return json_integer(0);
    double m = pow(10, 3 - floor(log10(fabs(v))));
    double r = round(v * m) / m;
    return r == floor(r) && fabs(r) < 1e15 ? json_integer((json_int_t)r) : json_real(r);
}

/* ---- the figure --------------------------------------------------------------------------- */

json_t *lp_circuit_display(const lp_circuit *c, const lp_circuit_opts *o)
{
    static const lp_circuit_opts none = {0};
    static const lp_circuit empty = {0};
    if (!o)
        o = &none;
    if (!c)
        c = &empty;
    int max_edges = o->max_edges > 0 ? (o->max_edges < MAX_EDGES ? o->max_edges : MAX_EDGES) : DEF_EDGES;
    int per_cell = o->max_per_cell > 0 ? (o->max_per_cell < MAX_PER_CELL ? o->max_per_cell : MAX_PER_CELL) : DEF_PER_CELL;
    if (per_cell < 2)
        per_cell = 2; /* one glyph and the "+N" */
    int max_paths = o->max_paths > 0 ? (o->max_paths < MAX_PATHS ? o->max_paths : MAX_PATHS) : DEF_PATHS;
    int max_table = o->max_table_nodes > 0 ? (o->max_table_nodes < MAX_TABLE ? o->max_table_nodes : MAX_TABLE) : DEF_TABLE;
    int max_data = o->max_data_edges > 0 ? (o->max_data_edges < MAX_DATA_EDGES ? o->max_data_edges : MAX_DATA_EDGES) : DEF_DATA_EDGES;

    ctx x = {c, c->nodes, c->nodes && c->n_nodes > 0 ? c->n_nodes : 0, 0, 0, 0, NULL};
    int ne_in = c->edges && c->n_edges > 0 ? c->n_edges : 0;
    /* tokens and layers: as given, else as far as the nodes reach */
    x.T = c->n_tokens > 0 ? (c->n_tokens < MAX_TOKENS ? c->n_tokens : MAX_TOKENS) : 0;
    x.L = c->n_layers > 0 ? (c->n_layers < MAX_LAYERS ? c->n_layers : MAX_LAYERS) : 0;
    for (int i = 0; i < x.n; i++) {
        const lp_circuit_node *v = &x.nd[i];
        if (c->n_tokens <= 0 && v->pos >= x.T && v->pos < MAX_TOKENS)
            x.T = v->pos + 1;
        if (c->n_layers <= 0 && (v->kind == LP_CIRCUIT_FEATURE || v->kind == LP_CIRCUIT_ERROR) &&
            v->layer >= x.L && v->layer < MAX_LAYERS)
            x.L = v->layer + 1;
    }
    x.rows = x.L + 2;
    lp_buf title_buf = LP_BUF_INIT; /* the title, cut (it is repeated: heading, alt, text) */
    if (c->title && *c->title)
        lp_utf8_truncate(&title_buf, c->title, TITLE_CHARS);
    const char *title = title_buf.len ? lp_buf_str(&title_buf) : NULL;
    if (x.n == 0 && x.T == 0) {
        json_t *nothing = lp_bundle_nothing(title ? title : "circuit");
        lp_buf_free(&title_buf);
        return nothing;
    }

    int T = x.T > 0 ? x.T : 1;
    lp_buf svg = LP_BUF_INIT, html = LP_BUF_INIT, plain = LP_BUF_INIT, note = LP_BUF_INIT, tmp = LP_BUF_INIT;
    json_t *result = NULL, *data = NULL;
    int *idx = NULL, *run_start = NULL, nruns = 0;
    sedge *se = NULL;
    double *colw = NULL, *colx = NULL;
    unsigned char *used = NULL;
    found_path *fp = NULL;
    int nfp = 0;

    x.cn = lp_calloc((size_t)x.n + 1, sizeof *x.cn, "circuit nodes");
    idx = lp_malloc(((size_t)x.n + 1) * sizeof *idx, "circuit nodes");
    run_start = lp_calloc((size_t)x.n + 2, sizeof *run_start, "circuit cells");
    se = lp_malloc(((size_t)ne_in + 1) * sizeof *se, "circuit edges");
    colw = lp_calloc((size_t)T, sizeof *colw, "circuit columns");
    colx = lp_calloc((size_t)T + 1, sizeof *colx, "circuit columns");
    used = lp_calloc((size_t)T, 1, "circuit columns");
    if (!x.cn || !idx || !run_start || !se || !colw || !colx || !used)
        goto done;

    /* nodes: rows, counts by kind */
    int n_kind[4] = {0}, invalid = 0, n_valid = 0, nonfinite_nodes = 0;
    for (int i = 0; i < x.n; i++) {
        const lp_circuit_node *v = &x.nd[i];
        x.cn[i].row = row_of(&x, v);
        if (x.cn[i].row < 0) {
            invalid++;
            continue;
        }
        n_kind[v->kind]++;
        n_valid++;
        if (!isfinite(v->activation) || !isfinite(v->influence) ||
            (v->kind == LP_CIRCUIT_LOGIT && !isfinite(v->prob)))
            nonfinite_nodes++;
    }

    /* edges: valid ones, their shares, the strongest first */
    int ne = 0, bad_edges = 0, nonfinite_edges = 0;
    for (int k = 0; k < ne_in; k++) {
        const lp_circuit_edge *e = &c->edges[k];
        if (e->src < 0 || e->src >= x.n || e->dst < 0 || e->dst >= x.n || x.cn[e->src].row < 0 ||
            x.cn[e->dst].row < 0) {
            bad_edges++;
            continue;
        }
        if (!isfinite(e->weight)) {
            nonfinite_edges++;
            continue;
        }
        x.cn[e->dst].in_abs += fabs(e->weight);
        se[ne++] = (sedge){k, 0};
    }
    for (int k = 0; k < ne; k++) {
        const lp_circuit_edge *e = &c->edges[se[k].k];
        double in = x.cn[e->dst].in_abs;
        se[k].share = in > 0 && isfinite(in) ? fabs(e->weight) / in : 0;
    }
    qsort(se, (size_t)ne, sizeof *se, by_share);

    /* which nodes are drawn: every embedding and logit, the MAX_DRAWN most influential
     * features and errors */
    int m = 0, not_drawn = 0;
    for (int i = 0; i < x.n; i++)
        if (x.cn[i].row >= 0 && (x.nd[i].kind == LP_CIRCUIT_FEATURE || x.nd[i].kind == LP_CIRCUIT_ERROR))
            idx[m++] = i;
    sort_ctx = &x;
    qsort(idx, (size_t)m, sizeof *idx, by_importance);
    for (int t = 0; t < m; t++) {
        x.cn[idx[t]].drawn = t < MAX_DRAWN;
        if (t >= MAX_DRAWN)
            not_drawn++;
    }
    for (int i = 0; i < x.n; i++)
        if (x.cn[i].row >= 0 && (x.nd[i].kind == LP_CIRCUIT_EMBEDDING || x.nd[i].kind == LP_CIRCUIT_LOGIT))
            x.cn[i].drawn = 1;
    /* columns: with many positions, those without drawn features, errors or logits collapse */
    int collapse = T > MAX_COLS, collapsed = 0;
    for (int i = 0; i < x.n; i++)
        if (x.cn[i].drawn && x.nd[i].kind != LP_CIRCUIT_EMBEDDING)
            used[x.nd[i].pos] = 1;
    for (int p = 0; p < T; p++) {
        if (!collapse)
            used[p] = 1;
        collapsed += !used[p];
    }
    for (int i = 0; i < x.n; i++)
        if (x.cn[i].drawn && !used[x.nd[i].pos]) {
            x.cn[i].drawn = 0;
            not_drawn++;
        }

    /* cells: the drawn nodes sorted by (row, position), each cell (a run of that order) in
     * order of importance; only cells that hold nodes exist */
    int nd_drawn = 0;
    for (int i = 0; i < x.n; i++)
        if (x.cn[i].drawn)
            idx[nd_drawn++] = i;
    sort_ctx = &x;
    qsort(idx, (size_t)nd_drawn, sizeof *idx, by_cell);
    for (int t = 0; t < nd_drawn; t++) {
        const cnode *u = &x.cn[idx[t]];
        if (t == 0 || u->row != x.cn[idx[t - 1]].row || x.nd[idx[t]].pos != x.nd[idx[t - 1]].pos)
            run_start[nruns++] = t;
    }
    run_start[nruns] = nd_drawn;

    /* column widths: the busiest cell, glyphs up to per_cell (then per_cell - 1 and "+N") */
    char more[32];
    int hidden = 0;
    /* narrowed positions take 3 px each, and 2,000 px at most in all */
    double narrow = collapsed ? fmin(COLLAPSED, 2000.0 / collapsed) : COLLAPSED;
    for (int p = 0; p < T; p++)
        colw[p] = used[p] ? MIN_COL : narrow;
    for (int q = 0; q < nruns; q++) {
        int k = run_start[q + 1] - run_start[q], p = x.nd[idx[run_start[q]]].pos;
        double cw = k * SLOT;
        if (k > per_cell) {
            snprintf(more, sizeof more, "+%d", k - (per_cell - 1));
            cw = (per_cell - 1) * SLOT + lp_text_width(more, SMALL) + 4;
        }
        colw[p] = fmax(colw[p], cw + COL_PAD);
    }

    /* token labels under the columns: across when each fits its column, else vertical */
    double tok_w = 0;
    int across = 1;
    for (int p = 0; p < T; p++) {
        if (!used[p])
            continue;
        lp_buf_reset(&tmp);
        put_token(&tmp, token_of(&x, p));
        double w = lp_text_width_cut(lp_buf_str(&tmp), TOKEN_CHARS, FONT);
        tok_w = fmax(tok_w, w);
        if (w + 4 > colw[p])
            across = 0;
    }
    double mb = (across ? 16 : tok_w + 8) + 14; /* + the position numbers' line */
    /* logit labels above the logit glyphs, vertical: "␣Oslo 0.62" */
    double mt = 8;
    for (int i = 0; i < x.n; i++) {
        if (!x.cn[i].drawn || x.nd[i].kind != LP_CIRCUIT_LOGIT)
            continue;
        lp_buf_reset(&tmp);
        logit_text(&tmp, &x.nd[i]);
        mt = fmax(mt, lp_text_width(lp_buf_str(&tmp), SMALL) + 10);
    }
    /* row labels on the left */
    char rl[32];
    snprintf(rl, sizeof rl, "L%d", x.L > 0 ? x.L - 1 : 0);
    double ml = fmax(fmax(lp_text_width("logits", FONT), lp_text_width("emb", FONT)), lp_text_width(rl, FONT)) + 14;
    double mr = 10;
    colx[0] = ml;
    for (int p = 0; p < T; p++)
        colx[p + 1] = colx[p] + colw[p];
    double W = colx[T] + mr, H = mt + x.rows * ROW_H + mb;
    /* glyph centres */
    for (int q = 0; q < nruns; q++) {
        int cnt = run_start[q + 1] - run_start[q], shown = cnt > per_cell ? per_cell - 1 : cnt;
        int p = x.nd[idx[run_start[q]]].pos, r = x.cn[idx[run_start[q]]].row;
        double cw = cnt > per_cell ? per_cell * SLOT : cnt * SLOT;
        double x0 = colx[p] + (colw[p] - cw) / 2 + SLOT / 2;
        double y = mt + (x.rows - 1 - r) * ROW_H + ROW_H / 2;
        for (int j = 0; j < cnt; j++) {
            cnode *cn = &x.cn[idx[run_start[q] + j]];
            if (j < shown) {
                cn->x = round(x0 + j * SLOT); /* whole pixels: shorter SVG and data */
                cn->y = round(y);
            } else {
                cn->drawn = 0;
                hidden++;
            }
        }
    }

    /* ---- the SVG ---- */
    lp_svg_begin(&svg, W, H);
    /* row bands and labels */
    for (int r = 0; r < x.rows; r++) {
        double y = mt + (x.rows - 1 - r) * ROW_H;
        if (r % 2 == 0)
            lp_svg_rect(&svg, ml, y, colx[T] - ml, ROW_H, "#7f7f7f14");
        char lab[32];
        if (r == 0)
            snprintf(lab, sizeof lab, "emb");
        else if (r == x.rows - 1)
            snprintf(lab, sizeof lab, "logits");
        else
            snprintf(lab, sizeof lab, "L%d", r - 1);
        lp_svg_text(&svg, ml - 6, y + ROW_H / 2 + 3.5, "end", FONT, LP_COLOR_INK, 0, lab, 0);
    }
    /* edges: the strongest max_edges, weakest first so the strong ones lie on top */
    int drawn_edges = 0, skipped_hidden = 0;
    int *dr = lp_malloc(((size_t)max_edges + 1) * sizeof *dr, "circuit edges");
    if (!dr)
        goto done;
    for (int k = 0; k < ne && drawn_edges < max_edges; k++) {
        const lp_circuit_edge *e = &c->edges[se[k].k];
        if (!x.cn[e->src].drawn || !x.cn[e->dst].drawn || e->src == e->dst) {
            skipped_hidden++;
            continue;
        }
        if (!(se[k].share > 0))
            break;
        dr[drawn_edges++] = k;
    }
    lp_buf_puts(&svg, "<g fill=\"none\" stroke-opacity=\"0.6\" stroke-linecap=\"round\">");
    for (int t = drawn_edges - 1; t >= 0; t--) {
        const sedge *s = &se[dr[t]];
        const lp_circuit_edge *e = &c->edges[s->k];
        lp_buf_puts(&svg, "<line x1=\"");
        num(&svg, x.cn[e->src].x);
        lp_buf_puts(&svg, "\" y1=\"");
        num(&svg, x.cn[e->src].y);
        lp_buf_puts(&svg, "\" x2=\"");
        num(&svg, x.cn[e->dst].x);
        lp_buf_puts(&svg, "\" y2=\"");
        num(&svg, x.cn[e->dst].y);
        lp_buf_printf(&svg, "\" stroke=\"%s\" stroke-width=\"", e->weight < 0 ? EDGE_NEG : EDGE_POS);
        num(&svg, 0.6 + 3.4 * s->share);
        lp_buf_puts(&svg, "\"/>");
    }
    free(dr);
    lp_buf_puts(&svg, "</g>");
    /* glyphs, one group per kind */
    for (int kind = 0; kind < 4; kind++) {
        lp_buf_printf(&svg, "<g class=\"%s\" fill=\"%s\" stroke=\"#555555\" stroke-width=\"0.8\">",
                      KIND_NAME[kind], KIND_FILL[kind]);
        for (int i = 0; i < x.n; i++)
            if (x.cn[i].drawn && x.nd[i].kind == kind)
                glyph(&svg, kind, x.cn[i].x, x.cn[i].y);
        lp_buf_puts(&svg, "</g>");
    }
    /* "+N" where a cell holds more than per_cell nodes */
    for (int q = 0; q < nruns; q++) {
        int cnt = run_start[q + 1] - run_start[q];
        if (cnt <= per_cell)
            continue;
        int p = x.nd[idx[run_start[q]]].pos, r = x.cn[idx[run_start[q]]].row;
        double cw = per_cell * SLOT, x0 = colx[p] + (colw[p] - cw) / 2 + (per_cell - 1) * SLOT + 2;
        snprintf(more, sizeof more, "+%d", cnt - (per_cell - 1));
        lp_svg_text(&svg, x0, mt + (x.rows - 1 - r) * ROW_H + ROW_H / 2 + 3, "start", SMALL,
                    LP_COLOR_INK, 0, more, 0);
    }
    /* logit labels */
    for (int i = 0; i < x.n; i++) {
        if (!x.cn[i].drawn || x.nd[i].kind != LP_CIRCUIT_LOGIT)
            continue;
        lp_buf_reset(&tmp);
        logit_text(&tmp, &x.nd[i]);
        lp_svg_text(&svg, x.cn[i].x + 3, x.cn[i].y - GLYPH - 4, "start", SMALL, LP_COLOR_INK, -90,
                    lp_buf_str(&tmp), 0);
    }
    /* tokens and position numbers under the columns (thinned to 12 px lines) */
    double ybase = mt + x.rows * ROW_H;
    double last_num = -1e9;
    for (int p = 0; p < T; p++) {
        if (!used[p])
            continue;
        double cx = (colx[p] + colx[p + 1]) / 2;
        char pn[16];
        snprintf(pn, sizeof pn, "%d", p);
        if (cx - last_num >= lp_text_width(pn, SMALL) + 4 &&
            cx - lp_text_width(pn, SMALL) / 2 >= 0 && cx + lp_text_width(pn, SMALL) / 2 <= W) {
            lp_svg_text(&svg, cx, ybase + 11, "middle", SMALL, LP_COLOR_INK, 0, pn, 0);
            last_num = cx;
        }
        lp_buf_reset(&tmp);
        put_token(&tmp, token_of(&x, p));
        if (across)
            lp_svg_text(&svg, cx, ybase + 26, "middle", FONT, LP_COLOR_INK, 0, lp_buf_str(&tmp), TOKEN_CHARS);
        else
            lp_svg_text(&svg, cx + 3.5, ybase + 18, "end", FONT, LP_COLOR_INK, -90, lp_buf_str(&tmp), TOKEN_CHARS);
    }
    lp_svg_end(&svg);

    /* ---- paths ---- */
    fp = lp_calloc((size_t)max_paths, sizeof *fp, "circuit paths");
    if (!fp)
        goto done;
    int given_paths = c->n_paths > 0 && c->paths;
    if (given_paths) {
        for (int t = 0; t < c->n_paths && nfp < max_paths; t++) {
            const lp_circuit_path *pp = &c->paths[t];
            if (pp->n <= 0 || !pp->nodes)
                continue;
            int ok = 1;
            for (int j = 0; j < pp->n; j++)
                ok &= pp->nodes[j] >= 0 && pp->nodes[j] < x.n;
            if (!ok)
                continue;
            fp[nfp].nodes = lp_malloc((size_t)pp->n * sizeof(int), "circuit paths");
            if (!fp[nfp].nodes)
                goto done;
            memcpy(fp[nfp].nodes, pp->nodes, (size_t)pp->n * sizeof(int));
            fp[nfp].n = pp->n;
            fp[nfp].score = pp->score;
            nfp++;
        }
    } else if (x.n > 0) {
        nfp = find_paths(&x, se, ne, max_paths, fp);
        if (nfp < 0) {
            nfp = 0;
            goto done;
        }
    }

    /* ---- notes ---- */
    char a[32], b[32];
    if (ne > drawn_edges)
        lp_buf_printf(&note, "%d of %d edges drawn (the strongest by share of their target's input; "
                             "green positive, purple negative)", drawn_edges, ne);
    else if (ne > 0)
        lp_buf_printf(&note, "%d edges (green positive, purple negative; width: share of the target's input)", ne);
    else
        lp_buf_puts(&note, "no edges to draw");
    if (hidden + not_drawn > 0)
        lp_buf_printf(&note, "; %d nodes not drawn (crowded cells show +N; the most influential are drawn)",
                      hidden + not_drawn);
    if (collapsed)
        lp_buf_printf(&note, "; %d positions without nodes narrowed", collapsed);
    if (invalid)
        lp_buf_printf(&note, "; %d nodes with a layer, position or kind out of range left out", invalid);
    if (bad_edges)
        lp_buf_printf(&note, "; %d edges naming missing nodes left out", bad_edges);
    if (nonfinite_edges)
        lp_buf_printf(&note, "; %d edges with non-finite weights left out", nonfinite_edges);
    if (n_valid == 0)
        lp_buf_puts(&note, "; no nodes to draw");
    if (x.T == 1)
        lp_buf_puts(&note, "; a single token");

    /* ---- text/plain ---- */
    if (title) {
        lp_utf8_sanitize(&plain, title, strlen(title));
        lp_buf_puts(&plain, ": ");
    }
    lp_buf_printf(&plain, "attribution graph: %d nodes (%d features, %d errors, %d embeddings, %d logits), "
                          "%d edges, %d tokens, %d layers",
                  n_valid, n_kind[0], n_kind[1], n_kind[2], n_kind[3], ne, x.T, x.L);
    lp_buf scores = LP_BUF_INIT;
    lp_buf_printf(&scores, "replacement score %s, completeness score %s",
                  isfinite(c->replacement_score) ? lp_fmt_num(c->replacement_score, a, sizeof a) : "unknown",
                  isfinite(c->completeness_score) ? lp_fmt_num(c->completeness_score, b, sizeof b) : "unknown");
    lp_buf_printf(&plain, "\n%s", lp_buf_str(&scores));
    size_t missing = (size_t)nonfinite_nodes;

    /* ---- HTML ---- */
    uint64_t h = lp_fig_hash_str(LP_HASH64_INIT, c->title);
    h = lp_hash64(h, (int[]){x.n, ne_in, c->n_tokens, c->n_layers, c->n_paths}, 5 * sizeof(int));
    for (int i = 0; i < x.n; i++) {
        const lp_circuit_node *v = &x.nd[i];
        h = lp_hash64(h, (int[]){v->kind, v->layer, v->pos, v->feature}, 4 * sizeof(int));
        h = lp_hash64(h, (float[]){v->activation, v->influence, v->prob}, 3 * sizeof(float));
        h = lp_fig_hash_str(h, v->label);
    }
    for (int k = 0; k < ne_in; k++)
        h = lp_hash64(h, &c->edges[k], sizeof c->edges[k]);
    h = lp_fig_hash_strs(h, c->tokens, c->tokens && c->n_tokens > 0 ? (size_t)c->n_tokens : 0);
    h = lp_hash64(h, (double[]){c->replacement_score, c->completeness_score}, 2 * sizeof(double));
    char id[48];
    lp_fig_open(&html, "circuit", h, title, id);
    lp_buf_puts(&html, "<div style=\"overflow:auto;max-width:100%\">");
    lp_buf alt = LP_BUF_INIT;
    lp_utf8_sanitize(&alt, lp_buf_str(&plain), plain.len);
    lp_html_svg_img(&html, svg.data ? svg.data : "", svg.len, (int)ceil(W), lp_buf_str(&alt), lp_buf_str(&alt));
    lp_buf_free(&alt);
    lp_buf_puts(&html, "</div>");
    lp_buf_puts(&html, "<div class=\"lp-scores\" style=\"font-size:12px;margin:2px 0\">");
    lp_buf_puts(&html, lp_buf_str(&scores));
    lp_buf_puts(&html, "</div>");
    lp_buf_free(&scores);
    lp_fig_caption(&html, &plain, missing, lp_buf_str(&note));

    /* the top paths */
    if (nfp > 0) {
        static const char *const cols[] = {"#", "score", "path (embedding \xE2\x86\x92 logit)"};
        html_table_head(&html, given_paths ? "Top paths" : "Top paths (by |product of shares|)", cols, 3);
        lp_buf_puts(&plain, "\ntop paths:");
        for (int t = 0; t < nfp; t++) {
            lp_buf_reset(&tmp);
            for (int j = 0; j < fp[t].n; j++) {
                if (j)
                    lp_buf_puts(&tmp, " \xE2\x86\x92 ");
                node_desc(&tmp, &x, fp[t].nodes[j], NAME_CHARS);
            }
            char nb[16];
            snprintf(nb, sizeof nb, "%d", t + 1);
            lp_buf_puts(&html, TR);
            html_cell(&html, nb, 1);
            html_cell(&html, lp_fmt_num(fp[t].score, a, sizeof a), 1);
            html_cell(&html, lp_buf_str(&tmp), 0);
            lp_buf_puts(&html, "</tr>");
            lp_buf_printf(&plain, "\n  %s  ", a);
            lp_utf8_sanitize(&plain, lp_buf_str(&tmp), tmp.len);
        }
        lp_buf_puts(&html, "</tbody></table>");
    }
    /* the top nodes by influence */
    {
        int nv = 0;
        for (int i = 0; i < x.n; i++)
            if (x.cn[i].row >= 0)
                idx[nv++] = i;
        qsort(idx, (size_t)nv, sizeof *idx, by_influence);
        int shown = 0;
        if (nv > 0) {
            static const char *const cols[] = {"node", "kind", "layer", "pos", "token", "activation",
                                               "influence", "label"};
            html_table_head(&html, "Top nodes (by influence)", cols, 8);
            lp_buf_puts(&plain, "\ntop nodes:");
        }
        for (; shown < max_table && shown < nv; shown++) {
            int i = idx[shown];
            const lp_circuit_node *v = &x.nd[i];
            lp_buf_puts(&html, TR);
            lp_buf_reset(&tmp);
            node_name(&tmp, &x, i);
            html_cell(&html, lp_buf_str(&tmp), 0);
            html_cell(&html, KIND_NAME[v->kind], 0);
            char lb[16];
            if (v->kind == LP_CIRCUIT_FEATURE || v->kind == LP_CIRCUIT_ERROR)
                snprintf(lb, sizeof lb, "%d", v->layer);
            else
                snprintf(lb, sizeof lb, "%s", v->kind == LP_CIRCUIT_EMBEDDING ? "E" : "out");
            html_cell(&html, lb, 1);
            snprintf(lb, sizeof lb, "%d", v->pos);
            html_cell(&html, lb, 1);
            lp_buf_reset(&tmp);
            put_token_cut(&tmp, token_of(&x, v->pos), NAME_CHARS);
            html_cell(&html, lp_buf_str(&tmp), 0);
            html_cell(&html, lp_fmt_num(v->activation, a, sizeof a), 1);
            html_cell(&html, lp_fmt_num(v->influence, b, sizeof b), 1);
            lp_buf_reset(&tmp);
            if (v->kind == LP_CIRCUIT_LOGIT) {
                char pr[32];
                put_token(&tmp, v->label ? v->label : "");
                lp_buf_printf(&tmp, " (p=%s)", lp_fmt_num(v->prob, pr, sizeof pr));
            } else if (v->label) {
                lp_utf8_truncate(&tmp, v->label, TABLE_CHARS);
            }
            html_cell(&html, lp_buf_str(&tmp), 0);
            lp_buf_puts(&html, "</tr>");
            if (shown < 10) {
                lp_buf_puts(&plain, "\n  ");
                lp_buf cut = LP_BUF_INIT;
                node_name(&cut, &x, i);
                lp_utf8_sanitize(&plain, lp_buf_str(&cut), cut.len);
                lp_buf_free(&cut);
                lp_buf_printf(&plain, "  influence %s", b);
            }
        }
        if (nv > 0)
            lp_buf_puts(&html, "</tbody></table>");
        if (nv > shown)
            lp_buf_printf(&html, "<div style=\"font-size:11px;opacity:0.8\">the %d most influential of %d nodes</div>",
                          shown, nv);
    }

    /* ---- the data for display/js/circuit.js ---- */
    {
        json_t *jk = json_array(), *jl = json_array(), *jp = json_array(), *jf = json_array(),
               *ja = json_array(), *ji = json_array(), *jpr = json_array(), *jlab = json_array(),
               *jx = json_array(), *jy = json_array(), *jtok = json_array();
        json_t *es = json_array(), *ed = json_array(), *ew = json_array(), *esh = json_array();
        for (int i = 0; i < x.n; i++) {
            const lp_circuit_node *v = &x.nd[i];
            json_array_append_new(jk, json_integer(v->kind));
            json_array_append_new(jl, json_integer(v->layer));
            json_array_append_new(jp, json_integer(v->pos));
            json_array_append_new(jf, json_integer(v->feature));
            json_array_append_new(ja, fnum4(v->activation));
            json_array_append_new(ji, fnum4(v->influence));
            json_array_append_new(jpr, v->kind == LP_CIRCUIT_LOGIT ? fnum4(v->prob) : json_integer(0));
            if (v->label && x.cn[i].drawn) { /* labels of drawn nodes only: size */
                lp_buf_reset(&tmp);
                lp_utf8_truncate(&tmp, v->label, DATA_CHARS);
                json_array_append_new(jlab, lp_json_str(lp_buf_str(&tmp)));
            } else {
                json_array_append_new(jlab, json_null());
            }
            json_array_append_new(jx, x.cn[i].drawn ? json_integer((json_int_t)x.cn[i].x) : json_null());
        }
        for (int r = 0; r < x.rows; r++)
            json_array_append_new(jy, json_integer((json_int_t)round(mt + (x.rows - 1 - r) * ROW_H + ROW_H / 2)));
        json_t *jtp = json_array();
        for (int p = 0; p < x.T; p++) {
            if (!used[p])
                continue; /* narrowed positions: no token (size) */
            json_array_append_new(jtp, json_integer(p));
            lp_buf_reset(&tmp);
            lp_utf8_truncate(&tmp, token_of(&x, p), DATA_CHARS);
            json_array_append_new(jtok, lp_json_str(lp_buf_str(&tmp)));
        }
        int de = 0;
        for (int k = 0; k < ne && de < max_data; k++, de++) {
            const lp_circuit_edge *e = &c->edges[se[k].k];
            json_array_append_new(es, json_integer(e->src));
            json_array_append_new(ed, json_integer(e->dst));
            json_array_append_new(ew, fnum4(e->weight));
            json_array_append_new(esh, fnum4(se[k].share));
        }
        data = json_pack("{s:i,s:f,s:f,s:i,s:o,s:i,s:o,s:o,s:o,s:o,s:{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o},"
                         "s:{s:o,s:o,s:o,s:o},s:i,s:i,s:i}",
                         "v", 1, "W", W, "H", H, "L", x.L, "rowy", jy, "T", x.T, "tpos", jtp, "tokens", jtok,
                         "rs", fnum(c->replacement_score), "cs", fnum(c->completeness_score),
                         "nodes", "kind", jk, "layer", jl, "pos", jp, "feature", jf, "act", ja,
                         "infl", ji, "prob", jpr, "label", jlab, "x", jx,
                         "edges", "src", es, "dst", ed, "w", ew, "share", esh,
                         "n_nodes", x.n, "n_edges", ne, "drawn_edges", drawn_edges);
        if (!data)
            goto done;
        if ((c->n_pinned > 0 && c->pinned) || (c->n_groups > 0 && c->groups)) {
            json_t *pins = json_array(), *sns = json_array();
            for (int k = 0; pins && c->pinned && k < c->n_pinned; k++)
                if (c->pinned[k] >= 0 && c->pinned[k] < x.n)
                    json_array_append_new(pins, json_integer(c->pinned[k]));
            for (int k = 0; sns && c->groups && k < c->n_groups; k++) {
                const lp_circuit_group *gr = &c->groups[k];
                lp_buf_reset(&tmp);
                lp_utf8_truncate(&tmp, gr->name ? gr->name : "", DATA_CHARS);
                json_t *ga = json_array();
                json_array_append_new(ga, lp_json_str(lp_buf_str(&tmp)));
                for (int j = 0; gr->ids && j < gr->n; j++)
                    if (gr->ids[j] >= 0 && gr->ids[j] < x.n)
                        json_array_append_new(ga, json_integer(gr->ids[j]));
                json_array_append_new(sns, ga);
            }
            if (json_object_set_new(data, "state", json_pack("{s:o*,s:o*}", "pinned", pins, "supernodes", sns)) != 0)
                goto done;
        }
        lp_buf_puts(&html, "<script type=\"application/json\" data-lp-circuit=\"1\">");
        if (lp_html_json_script(&html, data) != 0)
            goto done;
        lp_buf_puts(&html, "</script><script>");
        /* the hover (display/js/circuit.js), with "@ID@" replaced by the figure's id */
        for (const char *p = lp_js_circuit; *p;) {
            const char *q = strstr(p, "@ID@");
            if (!q) {
                lp_buf_puts(&html, p);
                break;
            }
            lp_buf_append(&html, p, (size_t)(q - p));
            lp_buf_puts(&html, id);
            p = q + 4;
        }
        lp_buf_puts(&html, "</script>");
    }
    lp_fig_close(&html);
    if (svg.oom || tmp.oom || note.oom)
        goto done;
    result = lp_bundle_from_bufs(&plain, &html);

done:
    if (!result)
        lp_set_error_code(LP_ERR_NOMEM, "cannot allocate the circuit diagram");
    for (int t = 0; fp && t < max_paths; t++)
        free(fp[t].nodes);
    free(fp);
    json_decref(data);
    lp_buf_free(&svg);
    lp_buf_free(&html);
    lp_buf_free(&plain);
    lp_buf_free(&note);
    lp_buf_free(&tmp);
    lp_buf_free(&title_buf);
    free(x.cn);
    free(idx);
    free(run_start);
    free(se);
    free(colw);
    free(colx);
    free(used);
    return result;
}
