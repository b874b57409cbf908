/* Figures of toy models of superposition (backend/toy): the summary of a sparsity sweep (W^T W
 * per instance, feature norms coloured by superposition beside the bias, the numbers as
 * application/vnd.loupe.toy+json) and the 2-D geometry of one instance. Our own pictures are
 * drawn with the SVG writer and embedded as <img>, so they survive the notebook sanitizer. */
#include "toy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "color.h"
#include "core/error.h"
#include "figures.h"
#include "html.h"
#include "svg.h"
#include "text.h"

void lp_toy_sparsity_label(char *buf, size_t cap, float S)
{
    snprintf(buf, cap, "S = %.3g", (double)S);
}



static void fig_open(lp_buf *html, const char *title)
{
    lp_buf_puts(html, "<div class=\"lp-fig lp-toy\" style=\"margin:4px 0\">");
    if (title) {
        lp_buf_puts(html, "<div style=\"font-weight:600;margin-bottom:4px\">");
        lp_html_escape(html, title, strlen(title));
        lp_buf_puts(html, "</div>");
    }
}

static void fig_caption(lp_buf *html, const char *text)
{
    lp_buf_puts(html, "<div style=\"font-size:85%;opacity:0.75\">");
    lp_html_escape(html, text, strlen(text));
    lp_buf_puts(html, "</div></div>");
}

/* Embeds the SVG in svg (freed) into html. */
static void embed_svg(lp_buf *html, lp_buf *svg, int width, const char *alt)
{
    lp_html_svg_img(html, lp_buf_str(svg), svg->len, width, alt, NULL);
    if (svg->oom)
        html->oom = true;
    lp_buf_free(svg);
}

/* One panel per instance: feature norms as bars coloured by superposition (viridis, 0 ->
 * purple, >= 1 -> yellow), and the bias as signed bars (blue < 0 < red). Panels keep their
 * size and wrap, at most PER_ROW to a row (more instances than that: rows of 4), so the
 * picture is never scaled down until its text is unreadable. */
enum { PER_ROW = 5 };
#define NORMS_NOTE "features top (most important) to bottom"

static int norms_per_row(int instances) { return instances <= PER_ROW ? instances : 4; }

static double norms_width(int instances)
{
    return fmax(10 + 190.0 * norms_per_row(instances), 14 + lp_text_width(NORMS_NOTE, 9));
}

static void norms_svg(lp_buf *svg, const lp_toy_model *t, float *scr)
{
    int n = t->n, I = t->instances, m = t->m;
    int per = norms_per_row(I), rows = (I + per - 1) / per;
    double row = n <= 20 ? 14 : n <= 60 ? 5 : 2, pw = 190, top = 30, ph = top + row * n + 10;
    double W = norms_width(I), H = ph * rows + 14;
    float *norms = scr, *sup = scr + n;
    float maxn = 1e-6f, maxb = 1e-6f;
    for (int k = 0; k < I; k++) {
        lp_toy_feature_norms(norms, lp_toy_weights(t, k), m, n);
        const float *b = lp_toy_bias(t, k);
        for (int i = 0; i < n; i++) {
            maxn = fmaxf(maxn, isfinite(norms[i]) ? norms[i] : 0);
            maxb = fmaxf(maxb, isfinite(b[i]) ? fabsf(b[i]) : 0);
        }
    }
    lp_svg_begin(svg, W, H);
    char hex[8], lab[48];
    for (int k = 0; k < I; k++) {
        const float *Wk = lp_toy_weights(t, k), *b = lp_toy_bias(t, k);
        lp_toy_feature_norms(norms, Wk, m, n);
        lp_toy_superposition(sup, Wk, m, n);
        double x0 = 10 + pw * (k % per), y0 = ph * (k / per);
        lp_toy_sparsity_label(lab, sizeof lab, t->sparsity[k]);
        lp_svg_text(svg, x0 + 85, y0 + 12, "middle", 11, LP_COLOR_INK, 0, lab, 20);
        lp_svg_text(svg, x0 + 50, y0 + 25, "middle", 9, LP_COLOR_INK, 0, "||W_i||", 0);
        lp_svg_text(svg, x0 + 140, y0 + 25, "middle", 9, LP_COLOR_INK, 0, "bias", 0);
        for (int i = 0; i < n; i++) {
            double y = y0 + top + row * i, len = isfinite(norms[i]) ? 100.0 * norms[i] / maxn : 0;
            lp_rgb c = lp_color_sequential(fmin(sup[i], 1.0));
            lp_svg_rect(svg, x0, y, fmax(len, 0.5), row * 0.8, lp_color_hex(c, hex));
            double bl = isfinite(b[i]) ? 35.0 * b[i] / maxb : 0;
            lp_rgb bc = lp_color_diverging(b[i] / maxb);
            lp_svg_rect(svg, bl < 0 ? x0 + 140 + bl : x0 + 140, y, fmax(fabs(bl), 0.5), row * 0.8,
                        lp_color_hex(bc, hex));
        }
        lp_svg_line(svg, x0 + 140, y0 + top, x0 + 140, y0 + top + row * n, LP_COLOR_INK, 0.5);
        lp_svg_line(svg, x0, y0 + top, x0, y0 + top + row * n, LP_COLOR_INK, 0.5);
    }
    lp_svg_text(svg, 10, H - 3, "start", 9, LP_COLOR_INK, 0, NORMS_NOTE, 0);
    lp_svg_end(svg);
}

/* The m = 2 picture: each feature's column W_i as a spoke from the origin. */
json_t *lp_display_toy_geometry(const lp_toy_model *t, int k)
{
    int n = t->n;
    const float *Wk = lp_toy_weights(t, k);
    double R = 1.0;
    for (int i = 0; i < n; i++)
        if (isfinite(Wk[i]) && isfinite(Wk[n + i]))
            R = fmax(R, hypot(Wk[i], Wk[n + i]));
    R *= 1.15;
    const double S = 320, c = S / 2, scale = (S / 2 - 24) / R;
    lp_buf svg = LP_BUF_INIT, html = LP_BUF_INIT, plain = LP_BUF_INIT;
    char hex[8], lab[32], title[96];
    lp_svg_begin(&svg, S, S);
    lp_svg_line(&svg, 10, c, S - 10, c, LP_COLOR_GRID, 1);
    lp_svg_line(&svg, c, 10, c, S - 10, LP_COLOR_GRID, 1);
    double circ[2 * 73];
    for (int a = 0; a <= 72; a++) { /* the unit circle */
        circ[2 * a] = c + scale * cos(a * 2 * M_PI / 72);
        circ[2 * a + 1] = c - scale * sin(a * 2 * M_PI / 72);
    }
    lp_svg_polyline(&svg, circ, 73, LP_COLOR_GRID, 1);
    snprintf(title, sizeof title, "feature geometry, instance %d (S = %.3g): columns of W", k + 1,
             (double)t->sparsity[k]);
    lp_buf_printf(&plain, "%s\n", title);
    for (int i = 0; i < n; i++) {
        double x = Wk[i], y = Wk[n + i];
        double norm = hypot(x, y), ang = atan2(y, x) * 180 / M_PI;
        lp_buf_printf(&plain, "  x%d: norm %.3f, angle %.1f deg\n", i + 1, norm, ang);
        if (!isfinite(norm))
            continue;
        lp_color_hex(lp_color_category((size_t)i), hex);
        double px = c + scale * x, py = c - scale * y;
        lp_svg_line(&svg, c, c, px, py, hex, 2);
        lp_svg_circle(&svg, px, py, 4, hex);
        snprintf(lab, sizeof lab, "x%d", i + 1);
        if (n <= 40 && norm > 0.05)
            lp_svg_text(&svg, c + (scale * norm + 12) * cos(ang * M_PI / 180),
                        c - (scale * norm + 12) * sin(ang * M_PI / 180) + 4, "middle", 11, hex, 0,
                        lab, 8);
    }
    lp_svg_end(&svg);
    fig_open(&html, title);
    embed_svg(&html, &svg, (int)S, "feature geometry");
    fig_caption(&html, "each spoke is a feature's direction W_i in the 2 hidden dimensions; "
                       "the circle has radius 1");
    return lp_bundle_from_bufs(&plain, &html);
}

static json_t *summary_json(const lp_toy_model *t, const float *last_loss, float *scr)
{
    int n = t->n, m = t->m;
    json_t *root = json_pack("{s:i,s:i,s:i,s:I}", "n", n, "m", m, "batch", t->batch, "step",
                             (json_int_t)t->step);
    json_t *arr = json_array();
    if (!root || !arr || json_object_set_new(root, "instances", arr) < 0) {
        json_decref(root);
        return NULL;
    }
    const char *names[4] = {"norms", "superposition", "dimensionality", "bias"};
    void (*fns[3])(float *, const float *, int, int) = {lp_toy_feature_norms, lp_toy_superposition, lp_toy_dimensionality};
    for (int k = 0; k < t->instances; k++) {
        const float *W = lp_toy_weights(t, k);
        double loss = last_loss ? last_loss[k] : NAN;
        json_t *o = json_pack("{s:f,s:o,s:f}", "sparsity", (double)t->sparsity[k], "loss",
                              isfinite(loss) ? json_real(loss) : json_null(), "dims_per_feature",
                              fmin(lp_toy_dims_per_feature(W, m, n), 1e30));
        if (!o || json_array_append_new(arr, o) < 0)
            goto fail;
        for (int f = 0; f < 4; f++) {
            if (f < 3)
                fns[f](scr, W, m, n);
            const float *v = f < 3 ? scr : lp_toy_bias(t, k);
            json_t *a = json_array();
            for (int i = 0; a && i < n; i++)
                json_array_append_new(a, isfinite(v[i]) ? json_real(v[i]) : json_null());
            if (!a || json_object_set_new(o, names[f], a) < 0)
                goto fail;
        }
    }
    return root;
fail:
    json_decref(root);
    return NULL;
}

json_t *lp_display_toy_summary(const lp_toy_model *t, const float *last_loss)
{
    int n = t->n, m = t->m, I = t->instances;
    float *scr = lp_malloc(((size_t)I * n * n + 2 * (size_t)n) * sizeof *scr, "a toy model's summary");
    char(*titles)[32] = lp_malloc((size_t)I * sizeof *titles, "a toy model's summary");
    const char **tp = lp_malloc((size_t)I * sizeof *tp, "a toy model's summary");
    json_t *b = NULL;
    if (!scr || !titles || !tp) {
        lp_set_error_code(LP_ERR_NOMEM, "cannot allocate the summary of a toy model");
        free(scr);
        free(titles);
        free(tp);
        return NULL;
    }
    lp_buf plain = LP_BUF_INIT, html = LP_BUF_INIT, svg = LP_BUF_INIT;
    lp_buf_printf(&plain, "toy model of superposition: %d features in %d dimensions, %d "
                          "instance%s, step %ld\n", n, m, I, I == 1 ? "" : "s", t->step);
    for (int k = 0; k < I; k++) {
        const float *W = lp_toy_weights(t, k);
        double loss = last_loss ? last_loss[k] : NAN;
        lp_toy_feature_norms(scr, W, m, n);
        lp_buf_printf(&plain, "  %d: S = %-6.3g loss %-9.4g dims/feature %-6.3f norms", k + 1,
                      (double)t->sparsity[k], loss, lp_toy_dims_per_feature(W, m, n));
        for (int i = 0; i < n && i < 12; i++)
            lp_buf_printf(&plain, " %.2f", scr[i]);
        lp_buf_puts(&plain, n > 12 ? " ...\n" : "\n");
    }
    char head[160];
    snprintf(head, sizeof head, "Toy model of superposition: %d features, %d dimensions, step %ld",
             n, m, t->step);
    fig_open(&html, head);
    lp_buf_puts(&html, "</div>");
    for (int k = 0; k < I; k++) {
        lp_toy_wtw(scr + (size_t)k * n * n, lp_toy_weights(t, k), m, n);
        lp_toy_sparsity_label(titles[k], sizeof titles[k], t->sparsity[k]);
        tp[k] = titles[k];
    }
    lp_heatmap_opts o = {"W^T W per instance", NULL, NULL, "feature", "feature", LP_SCALE_DIVERGING};
    json_t *grid = lp_display_heatmap_grid(scr, (size_t)I, (size_t)n, (size_t)n, tp, &o);
    if (!grid)
        goto fail;
    lp_buf_puts(&html, json_string_value(json_object_get(grid, "text/html")) ? json_string_value(json_object_get(grid, "text/html")) : "");
    json_decref(grid);
    norms_svg(&svg, t, scr);
    fig_open(&html, "Feature norms ||W_i|| (colour: superposition) and bias b_i");
    embed_svg(&html, &svg, (int)norms_width(I), "feature norms and bias");
    fig_caption(&html, "bar colour: sum over j != i of (W_i_hat . W_j)^2, purple 0 (a dimension "
                       "of its own) to yellow >= 1 (shared); bias: blue < 0 < red");
    json_t *data = summary_json(t, last_loss, scr);
    char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    b = lp_bundle_from_bufs(&plain, &html);
    if (!b || !text || lp_bundle_set(b, "application/vnd.loupe.toy+json", text) < 0) {
        json_decref(b);
        b = NULL;
    }
    free(text);
    goto done;
fail:
    lp_buf_free(&plain);
    lp_buf_free(&html);
done:
    free(scr);
    free(titles);
    free(tp);
    return b;
}

