/* Heatmaps: one matrix (an attention pattern with token labels) or a grid of matrices with
 * a shared colour scale (every head of a layer). Cells are a palette PNG inside the SVG (one
 * byte per cell), so size stays bounded; hover values come from embedded data. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "core/error.h"
#include "figure.h"
#include "figure_js.h"
#include "figures.h"
#include "html.h"
#include "png.h"
#include "svg.h"
#include "text.h"

enum { MAX_SIDE = 256, MAX_PANELS = 64, GRID_BUDGET = 12 * 128 * 128, EXACT_HOVER = 20000,
       VALUES_TABLE = 400, LABEL_CHARS = 16 };

typedef struct hm {
    size_t np, rows, cols;  /* panels drawn, original sizes */
    size_t f, dr, dc;       /* downsampling factor and drawn sizes */
    float *cells;           /* np x dr x dc drawn values (block means) */
    size_t missing;         /* non-finite values in the original data */
    double min, max;        /* finite range of the original data */
    lp_scale scale;
} hm;

static int hm_prepare(hm *h, const float *v, size_t np, size_t rows, size_t cols, int grid, int kind)
{
    h->np = np;
    h->rows = rows;
    h->cols = cols;
    size_t side = rows > cols ? rows : cols, f = (side + MAX_SIDE - 1) / MAX_SIDE;
    if (grid) {
        double total = (double)np * rows * cols;
        size_t g = (size_t)ceil(sqrt(total / GRID_BUDGET) - 1e-9);
        if (g > f)
            f = g;
    }
    if (f < 1)
        f = 1;
    h->f = f;
    h->dr = (rows + f - 1) / f;
    h->dc = (cols + f - 1) / f;
    h->cells = lp_malloc(np * h->dr * h->dc * sizeof(float), "heatmap cells");
    if (!h->cells)
        return -1;
    h->missing = 0;
    h->min = INFINITY;
    h->max = -INFINITY;
    for (size_t p = 0; p < np; p++)
        for (size_t i = 0; i < h->dr; i++)
            for (size_t j = 0; j < h->dc; j++) {
                double sum = 0;
                size_t cnt = 0;
                for (size_t a = i * f; a < rows && a < (i + 1) * f; a++)
                    for (size_t b = j * f; b < cols && b < (j + 1) * f; b++) {
                        float x = v[(p * rows + a) * cols + b];
                        if (!isfinite(x)) {
                            h->missing++;
                            continue;
                        }
                        sum += x;
                        cnt++;
                        if (x < h->min) h->min = x;
                        if (x > h->max) h->max = x;
                    }
                h->cells[(p * h->dr + i) * h->dc + j] = cnt ? (float)(sum / cnt) : NAN;
            }
    h->scale = lp_scale_fit(h->cells, np * h->dr * h->dc, kind, NULL);
    return 0;
}

/* PNG of panel p into svg at (x, y, w, h). */
static int draw_panel(lp_buf *svg, const hm *h, size_t p, double x, double y, double w, double ht)
{
    size_t n = h->dr * h->dc;
    uint8_t *idx = lp_malloc(n, "heatmap image");
    if (!idx)
        return -1;
    for (size_t k = 0; k < n; k++)
        idx[k] = lp_scale_index(&h->scale, h->cells[p * n + k]);
    lp_rgb pal[256];
    lp_scale_palette(&h->scale, pal);
    lp_buf png = LP_BUF_INIT;
    int rc = lp_png_indexed(&png, idx, (int)h->dc, (int)h->dr, pal);
    free(idx);
    if (rc == 0) {
        lp_svg_png(svg, x, y, w, ht, png.data, png.len);
        lp_svg_frame(svg, x, y, w, ht, LP_COLOR_GRID);
    }
    lp_buf_free(&png);
    return rc;
}

static int draw_colorbar(lp_buf *svg, const hm *h, double x, double y, double ht)
{
    uint8_t idx[128];
    for (int k = 0; k < 128; k++)
        idx[k] = (uint8_t)(255 - k * 2);
    lp_rgb pal[256];
    lp_scale_palette(&h->scale, pal);
    lp_buf png = LP_BUF_INIT;
    if (lp_png_indexed(&png, idx, 1, 128, pal) != 0)
        return -1;
    lp_svg_png(svg, x, y, 10, ht, png.data, png.len);
    lp_buf_free(&png);
    char t[32];
    lp_svg_text(svg, x + 14, y + 8, "start", 10, LP_COLOR_INK, 0, lp_fmt_num(h->scale.hi, t, sizeof t), 0);
    lp_svg_text(svg, x + 14, y + ht, "start", 10, LP_COLOR_INK, 0, lp_fmt_num(h->scale.lo, t, sizeof t), 0);
    if (h->scale.diverging)
        lp_svg_text(svg, x + 14, y + ht / 2 + 4, "start", 10, LP_COLOR_INK, 0, "0", 0);
    return 0;
}

/* The widest of every k-th label (as drawn: cut at LABEL_CHARS), in pixels at font size 10. */
static double max_label_w(const char *const *l, size_t n, size_t k)
{
    double m = 0;
    for (size_t i = 0; l && i < n; i += k) {
        double w = lp_text_width_cut(l[i], LABEL_CHARS, 10);
        if (w > m) m = w;
    }
    return m;
}

/* Labels drawn: every k-th, so that 12 px lines of 10 px text never overlap. */
static size_t label_step(double cell)
{
    static const size_t nice[] = {1, 2, 5, 10, 20, 50, 100};
    for (size_t i = 0; i < sizeof nice / sizeof *nice; i++)
        if (nice[i] * cell >= 12)
            return nice[i];
    return 256;
}

/* Index labels "0", "1", ... for a side without labels of its own (tick labels of small
 * heatmaps such as layer x head scores). Returns the array (in one allocation) or NULL. */
static const char **index_labels(size_t n)
{
    char **l = lp_malloc(n * (sizeof *l + 24), "heatmap tick labels");
    if (!l)
        return NULL;
    char *text = (char *)(l + n);
    for (size_t i = 0; i < n; i++) {
        l[i] = text + 24 * i;
        snprintf(l[i], 24, "%zu", i);
    }
    return (const char **)l;
}

/* The picture's tooltip: the summary, then every label in full (the drawn ones may be cut
 * or thinned). */
static void full_labels(lp_buf *t, const char *what, const char *const *l, size_t n)
{
    if (!l)
        return;
    lp_buf_printf(t, "\n%s:", what);
    for (size_t i = 0; i < n && i < MAX_SIDE; i++) {
        lp_buf_printf(t, " %zu ", i);
        lp_buf_puts(t, l[i] ? l[i] : "");
    }
    if (n > MAX_SIDE)
        lp_buf_puts(t, " \xE2\x80\xA6");
}

static json_t *labels_json(const char *const *l, size_t n)
{
    if (!l)
        return json_null();
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, lp_json_str(l[i] ? l[i] : ""));
    return a;
}

/* The small values table (single heatmaps only): coloured cells with title tooltips, for
 * hover where scripts are stripped. */
static void values_table(lp_buf *html, const hm *h, const lp_heatmap_opts *o)
{
    char t[32], c[8];
    lp_buf_puts(html, "<details style=\"margin:2px 0\"><summary style=\"font-size:11px;"
                      "cursor:pointer\">values</summary><table style=\"border-collapse:collapse;"
                      "font-size:10px;font-family:monospace\">");
    for (size_t i = 0; i < h->dr; i++) {
        lp_buf_puts(html, "<tr>");
        for (size_t j = 0; j < h->dc; j++) {
            double v = h->cells[i * h->dc + j];
            lp_rgb col = lp_scale_color(&h->scale, v);
            lp_buf_printf(html, "<td style=\"padding:1px 3px;text-align:right;background:%s;"
                                "color:%s\" title=\"", lp_color_hex(col, c),
                          lp_color_luminance(col) > 0.4 ? "#000000" : "#ffffff");
            lp_buf_printf(html, "%zu ", i);
            if (o && o->row_labels)
                lp_html_escape(html, o->row_labels[i] ? o->row_labels[i] : "", o->row_labels[i] ? strlen(o->row_labels[i]) : 0);
            lp_buf_printf(html, " \xE2\x86\x92 %zu ", j);
            if (o && o->col_labels)
                lp_html_escape(html, o->col_labels[j] ? o->col_labels[j] : "", o->col_labels[j] ? strlen(o->col_labels[j]) : 0);
            lp_buf_printf(html, ": %s\">%s</td>", lp_fmt_num(v, t, sizeof t), isfinite(v) ? t : "\xC2\xB7");
        }
        lp_buf_puts(html, "</tr>");
    }
    lp_buf_puts(html, "</table></details>");
}

static json_t *heatmaps(const float *v, size_t n, size_t rows, size_t cols,
                        const char *const *titles, const lp_heatmap_opts *o, int grid)
{
    static const lp_heatmap_opts none = {0};
    if (!o)
        o = &none;
    const char *kind = grid ? "heatmaps" : "heatmap";
    if (!v || n == 0 || rows == 0 || cols == 0)
        return lp_bundle_nothing(o->title && *o->title ? o->title : kind);
    if (rows > ((size_t)1 << 24) / 1 || cols > ((size_t)1 << 24) || n > ((size_t)1 << 24)) {
        lp_set_error("heatmap of %zu x %zu x %zu is too large to show", n, rows, cols);
        return NULL;
    }
    size_t np = n > MAX_PANELS ? MAX_PANELS : n;
    hm h;
    lp_buf svg = LP_BUF_INIT;
    if (hm_prepare(&h, v, np, rows, cols, grid, o->scale) != 0)
        return NULL;

    /* Layout: every panel has its row labels on its left and its column labels (vertical
     * when they do not fit across a cell) below it; every margin is measured. */
    size_t side = h.dr > h.dc ? h.dr : h.dc, ncol = 1, nrow = 1;
    const char **irl = h.f == 1 && !o->row_labels ? index_labels(rows) : NULL;
    const char **icl = h.f == 1 && !o->col_labels ? index_labels(cols) : NULL;
    const char *const *row_l = o->row_labels ? o->row_labels : irl;
    const char *const *col_l = o->col_labels ? o->col_labels : icl;
    int has_rl = h.f == 1 && row_l, has_cl = h.f == 1 && col_l;
    double cell, ml = 8, mt = 6, pw, ph, gap = 12, tt = 0;
    if (grid) {
        ncol = (size_t)ceil(sqrt((double)np));
        nrow = (np + ncol - 1) / ncol;
        double s = fmin(220, fmax(72, 840.0 / ncol - gap));
        if (has_rl || has_cl) /* room for a readable label per row */
            s = fmax(s, fmin(220, 12.0 * side));
        cell = s / side;
        tt = 16;
    } else {
        cell = fmin(28, fmax(1, 480.0 / side));
    }
    int rl = has_rl && cell >= 1, cl = has_cl && cell >= 1;
    size_t kr = label_step(cell), kc = kr;
    double lw = rl ? max_label_w(row_l, rows, kr) + 6 : 0;
    double cwid = cl ? max_label_w(col_l, cols, 1) : 0;
    int vertical = cl && cwid > kc * cell - 4; /* across when each fits the cells it labels */
    double bh = !cl ? 0 : vertical ? max_label_w(col_l, cols, kc) + 8 : 16;
    pw = cell * h.dc;
    ph = cell * h.dr;
    double sx = lw + pw + gap, sy = tt + ph + bh + gap;
    /* a panel title wider than its panel widens the column */
    for (size_t p = 0; grid && p < np; p++) {
        double tw = lp_text_width_cut(titles && titles[p] ? titles[p] : "000", 24, 11);
        if (tw + gap > pw + gap && lw + tw + gap > sx)
            sx = lw + tw + gap;
    }
    char lo_s[32], hi_s[32];
    lp_fmt_num(h.scale.lo, lo_s, sizeof lo_s);
    lp_fmt_num(h.scale.hi, hi_s, sizeof hi_s);
    double bar_w = 14 + fmax(lp_text_width(lo_s, 10), lp_text_width(hi_s, 10)) + 6;
    double W = ml + ncol * sx + bar_w, H = mt + nrow * sy;
    double bar_h = fmax(60, fmin(ph, 200));
    H = fmax(H, mt + tt + bar_h + 6); /* the colour bar and its minimum */
    lp_buf axes = LP_BUF_INIT;
    if (o->row_name || o->col_name) {
        lp_buf_printf(&axes, "rows: %s, columns: %s", o->row_name ? o->row_name : "-",
                      o->col_name ? o->col_name : "-");
        H += 14;
        W = fmax(W, ml + lp_text_width_cut(lp_buf_str(&axes), 80, 10) + 8);
    }

    lp_svg_begin(&svg, W, H);
    json_t *panels = json_array();
    int rc = 0;
    char t[32];
    for (size_t p = 0; p < np && rc == 0; p++) {
        double x = ml + (p % ncol) * sx + lw, y = mt + (p / ncol) * sy + tt;
        if (grid) {
            const char *pt = titles && titles[p] ? titles[p] : NULL;
            snprintf(t, sizeof t, "%zu", p);
            lp_svg_text(&svg, x + pw / 2, y - 4, "middle", 11, LP_COLOR_INK, 0, pt ? pt : t, 24);
        }
        rc = draw_panel(&svg, &h, p, x, y, pw, ph);
        for (size_t i = 0; rl && i < rows; i += kr)
            lp_svg_text(&svg, x - 4, y + cell * (i + 0.5) + 3.5, "end", 10, LP_COLOR_INK, 0,
                        row_l[i], LABEL_CHARS);
        for (size_t j = 0; cl && j < cols; j += kc) {
            double cx = x + cell * (j + 0.5);
            if (vertical)
                lp_svg_text(&svg, cx + 3.5, y + ph + 4, "end", 10, LP_COLOR_INK, -90,
                            col_l[j], LABEL_CHARS);
            else
                lp_svg_text(&svg, cx, y + ph + 12, "middle", 10, LP_COLOR_INK, 0,
                            col_l[j], LABEL_CHARS);
        }
        json_t *pj = json_pack("[f,f,f,f,I,I,o]", x, y, pw, ph, (json_int_t)h.dr, (json_int_t)h.dc,
                               grid ? lp_json_str(titles && titles[p] ? titles[p] : t) : json_null());
        json_array_append_new(panels, pj);
    }
    if (axes.len)
        lp_svg_text(&svg, ml, H - 5, "start", 10, LP_COLOR_INK, 0, lp_buf_str(&axes), 80);
    lp_buf_free(&axes);
    free(irl);
    free(icl);
    if (rc == 0)
        rc = draw_colorbar(&svg, &h, ml + ncol * sx, mt + tt, bar_h);
    lp_svg_end(&svg);

    /* text/plain */
    lp_buf plain = LP_BUF_INIT, html = LP_BUF_INIT;
    if (o->title && *o->title) {
        lp_utf8_sanitize(&plain, o->title, strlen(o->title));
        lp_buf_puts(&plain, ": ");
    }
    if (grid)
        lp_buf_printf(&plain, "%zu heatmaps of %zu\xC3\x97%zu", n, rows, cols);
    else
        lp_buf_printf(&plain, "heatmap %zu\xC3\x97%zu", rows, cols);
    char a[32], b[32];
    if (h.min <= h.max)
        lp_buf_printf(&plain, ", values in [%s, %s]", lp_fmt_num(h.min, a, sizeof a), lp_fmt_num(h.max, b, sizeof b));

    /* Notes. */
    lp_buf note = LP_BUF_INIT;
    if (np < n)
        lp_buf_printf(&note, "showing the first %zu of %zu heatmaps", np, n);
    if (h.f > 1)
        lp_buf_printf(&note, "%sdownsampled from %zu\xC3\x97%zu to %zu\xC3\x97%zu (mean of %zu\xC3\x97%zu blocks)",
                      note.len ? "; " : "", rows, cols, h.dr, h.dc, h.f, h.f);
    size_t drawn = np * h.dr * h.dc;
    int exact = drawn <= EXACT_HOVER;

    uint64_t hash = lp_hash64(LP_HASH64_INIT, v, np * rows * cols * sizeof(float));
    hash = lp_hash64(hash, (size_t[]){n, rows, cols, (size_t)o->scale + 1}, 4 * sizeof(size_t));
    hash = lp_fig_hash_str(hash, o->title);
    hash = lp_fig_hash_strs(hash, o->row_labels, o->row_labels ? rows : 0);
    hash = lp_fig_hash_strs(hash, o->col_labels, o->col_labels ? cols : 0);
    hash = lp_fig_hash_strs(hash, titles, titles ? np : 0);
    hash = lp_fig_hash_str(lp_fig_hash_str(hash, o->row_name), o->col_name);
    char id[48];
    lp_fig_open(&html, kind, hash, o->title, id);
    int zoom = side * cell < 4 * side ? (int)ceil(4 / cell) : 1;
    if (zoom > 4) zoom = 4;
    lp_buf_puts(&html, "<div style=\"overflow:auto;max-width:100%\">");
    lp_buf alt = LP_BUF_INIT;
    lp_utf8_sanitize(&alt, lp_buf_str(&plain), plain.len);
    lp_buf tip = LP_BUF_INIT;
    lp_buf_puts(&tip, lp_buf_str(&alt));
    full_labels(&tip, o->row_name ? o->row_name : "rows", o->row_labels, rows);
    full_labels(&tip, o->col_name ? o->col_name : "columns", o->col_labels, cols);
    lp_buf tips = LP_BUF_INIT;
    lp_utf8_sanitize(&tips, lp_buf_str(&tip), tip.len);
    lp_html_svg_img(&html, svg.data ? svg.data : "", svg.len, (int)ceil(W), lp_buf_str(&alt),
                    lp_buf_str(&tips));
    lp_buf_free(&tip);
    lp_buf_free(&tips);
    lp_buf_free(&alt);
    lp_buf_puts(&html, "</div>");
    lp_fig_caption(&html, &plain, h.missing, lp_buf_str(&note));
    if (!grid && drawn <= VALUES_TABLE)
        values_table(&html, &h, o);

    /* Embedded data for the script. */
    json_t *d = json_pack("{s:f,s:f,s:o,s:o,s:o,s:f,s:f,s:I,s:i,s:o,s:o}", "W", W, "H", H,
                          "p", panels, "rl", h.f == 1 ? labels_json(o->row_labels, rows) : json_null(),
                          "cl", h.f == 1 ? labels_json(o->col_labels, cols) : json_null(),
                          "lo", h.scale.lo, "hi", h.scale.hi, "f", (json_int_t)h.f, "z", zoom,
                          "rn", lp_json_str(o->row_name ? o->row_name : "row"),
                          "cn", lp_json_str(o->col_name ? o->col_name : "col"));
    if (d && exact) {
        json_t *vals = json_array();
        for (size_t k = 0; k < drawn; k++)
            json_array_append_new(vals, isfinite(h.cells[k]) ? json_real(h.cells[k]) : json_null());
        json_object_set_new(d, "v", vals);
    } else if (d) {
        uint8_t *q = lp_malloc(drawn ? drawn : 1, "heatmap hover data");
        lp_buf b64 = LP_BUF_INIT;
        if (q) {
            for (size_t k = 0; k < drawn; k++)
                q[k] = lp_scale_index(&h.scale, h.cells[k]);
            lp_base64_encode(&b64, q, drawn);
            free(q);
        }
        json_object_set_new(d, "q", json_string(lp_buf_str(&b64)));
        lp_buf_free(&b64);
    }
    if (!d || lp_fig_script(&html, id, d, lp_js_heatmap) != 0)
        rc = -1;
    json_decref(d);
    lp_fig_close(&html);
    lp_buf_free(&note);
    lp_buf_free(&svg);
    free(h.cells);
    if (rc != 0) {
        lp_buf_free(&plain);
        lp_buf_free(&html);
        return NULL;
    }
    return lp_bundle_from_bufs(&plain, &html);
}

json_t *lp_display_heatmap(const float *v, size_t rows, size_t cols, const lp_heatmap_opts *o)
{
    return heatmaps(v, 1, rows, cols, NULL, o, 0);
}

json_t *lp_display_heatmap_grid(const float *v, size_t n, size_t rows, size_t cols,
                                const char *const *panel_titles, const lp_heatmap_opts *o)
{
    return heatmaps(v, n, rows, cols, panel_titles, o, 1);
}
