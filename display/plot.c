/* Plots drawn as SVG with axes: line plots (several series, legend; loss curves), scatter
 * plots with labels, histograms and horizontal bar charts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "core/error.h"
#include "figure.h"
#include "figures.h"
#include "html.h"
#include "svg.h"
#include "text.h"

enum { PW = 560, PH = 320, MR = 16, MT = 12, MB = 46, MAX_LINE = 2000, BUCKETS = 1000,
       MAX_SCATTER = 20000, MAX_LABELS = 40, MAX_BARS = 100, MAX_BINS = 500 };

static const lp_plot_opts NO_OPTS = {0};

/* Finishes a plot: the SVG as an image, caption, text/plain. Frees svg and note. */
static json_t *finish(const char *kind, uint64_t hash, const lp_plot_opts *o, lp_buf *svg,
                      lp_buf *plain, size_t missing, lp_buf *note, double w)
{
    lp_buf html = LP_BUF_INIT;
    char id[48];
    lp_fig_open(&html, kind, hash, o->title, id);
    lp_buf alt = LP_BUF_INIT;
    lp_utf8_sanitize(&alt, lp_buf_str(plain), plain->len);
    lp_html_svg_img(&html, svg->data ? svg->data : "", svg->len, (int)w, lp_buf_str(&alt), NULL);
    lp_buf_free(&alt);
    lp_fig_caption(&html, plain, missing, lp_buf_str(note));
    lp_fig_close(&html);
    int bad = svg->oom || note->oom;
    lp_buf_free(svg);
    lp_buf_free(note);
    if (bad) {
        lp_buf_free(plain);
        lp_buf_free(&html);
        return NULL;
    }
    return lp_bundle_from_bufs(plain, &html);
}

static void plain_title(lp_buf *plain, const lp_plot_opts *o)
{
    if (o->title && *o->title) {
        lp_utf8_sanitize(plain, o->title, strlen(o->title));
        lp_buf_puts(plain, ": ");
    }
}

static uint64_t opts_hash(uint64_t h, const lp_plot_opts *o)
{
    return lp_fig_hash_str(lp_fig_hash_str(lp_fig_hash_str(h, o->title), o->xlabel), o->ylabel);
}

static double xval(const lp_series *s, size_t i) { return s->x ? s->x[i] : (double)i; }

/* ---- line ---- */

/* Appends the drawn polylines of one series (breaking at missing points). */
static void draw_series(lp_buf *svg, const lp_axes *a, const lp_series *s, const char *color,
                        double *pts, size_t step)
{
    size_t m = 0;
    for (size_t i = 0; i < s->n; i += step) {
        /* With step > 1: the min and the max of the bucket, in their order. */
        size_t end = i + step < s->n ? i + step : s->n, imin = i, imax = i;
        int any = 0;
        for (size_t k = i; k < end; k++) {
            if (!isfinite(s->y[k]) || !isfinite(xval(s, k)))
                continue;
            if (!any || s->y[k] < s->y[imin]) imin = k;
            if (!any || s->y[k] > s->y[imax]) imax = k;
            any = 1;
        }
        if (!any) {
            if (m == 1)
                lp_svg_circle(svg, pts[0], pts[1], 1.5, color);
            lp_svg_polyline(svg, pts, m > 1 ? m : 0, color, 1.6);
            m = 0;
            continue;
        }
        size_t ks[2] = {imin < imax ? imin : imax, imin < imax ? imax : imin};
        for (int t = 0; t < (ks[0] == ks[1] ? 1 : 2); t++) {
            pts[2 * m] = lp_axes_x(a, xval(s, ks[t]));
            pts[2 * m + 1] = lp_axes_y(a, s->y[ks[t]]);
            m++;
        }
    }
    if (m == 1)
        lp_svg_circle(svg, pts[0], pts[1], 1.5, color);
    lp_svg_polyline(svg, pts, m > 1 ? m : 0, color, 1.6);
}

/* How much of the drawn lines falls in the box (x, y, w, h) grown by 6 px: samples every
 * 4 px along each segment between (every step-th) point. */
static size_t points_in(const lp_axes *a, const lp_series *s, size_t nseries, double x, double y,
                        double w, double h)
{
    size_t c = 0;
    x -= 6, y -= 6, w += 12, h += 12;
    for (size_t k = 0; k < nseries; k++) {
        size_t step = s[k].n > 4 * MAX_LINE ? s[k].n / (4 * MAX_LINE) : 1;
        double px0 = NAN, py0 = NAN;
        for (size_t i = 0; s[k].y && i < s[k].n; i += step) {
            double px = lp_axes_x(a, xval(&s[k], i)), py = lp_axes_y(a, s[k].y[i]);
            if (!isfinite(px) || !isfinite(py)) {
                px0 = py0 = NAN;
                continue;
            }
            int m = isfinite(px0) ? (int)fmin(50, ceil(hypot(px - px0, py - py0) / 4)) : 0;
            for (int j = 0; j <= m; j++) {
                double t = m ? (double)j / m : 1, qx = px0 + (px - px0) * t, qy = py0 + (py - py0) * t;
                if (!m)
                    qx = px, qy = py;
                c += qx >= x && qx <= x + w && qy >= y && qy <= y + h;
            }
            px0 = px, py0 = py;
        }
    }
    return c;
}

/* Legend: on a background, in the corner of the plot where it covers the fewest points
 * (the first corner of top right, top left, bottom right, bottom left on ties). */
static void draw_legend(lp_buf *svg, const lp_axes *a, const lp_series *s, size_t nseries)
{
    enum { MAX_ENTRIES = 12, NAME_CHARS = 28 };
    size_t shown = 0;
    double tw = 0;
    for (size_t k = 0; k < nseries && shown < MAX_ENTRIES; k++)
        if (s[k].name) {
            tw = fmax(tw, lp_text_width_cut(s[k].name, NAME_CHARS, 10));
            shown++;
        }
    if (!shown)
        return;
    double w = fmin(a->w - 8, 26 + tw), h = 8 + 14 * (double)shown, best_x = 0, best_y = 0;
    size_t best = (size_t)-1;
    const double xs[4] = {a->x0 + a->w - w - 4, a->x0 + 4, a->x0 + a->w - w - 4, a->x0 + 4};
    const double ys[4] = {a->y0 + 4, a->y0 + 4, a->y0 + a->h - h - 4, a->y0 + a->h - h - 4};
    for (int q = 0; q < 4; q++) {
        size_t c = points_in(a, s, nseries, xs[q], ys[q], w, h);
        if (c < best) {
            best = c;
            best_x = xs[q];
            best_y = ys[q];
        }
    }
    char c[8];
    lp_buf_puts(svg, "<g fill-opacity=\"0.85\">");
    lp_svg_rect(svg, best_x, best_y, w, h, "#ffffff");
    lp_buf_puts(svg, "</g>");
    lp_svg_frame(svg, best_x, best_y, w, h, LP_COLOR_GRID);
    shown = 0;
    for (size_t k = 0; k < nseries && shown < MAX_ENTRIES; k++) {
        if (!s[k].name)
            continue;
        double y = best_y + 15 + 14 * (double)shown++;
        lp_svg_rect(svg, best_x + 6, y - 5, 12, 3, lp_color_hex(lp_color_category(k), c));
        lp_svg_text(svg, best_x + 22, y, "start", 10, LP_COLOR_INK, 0, s[k].name, NAME_CHARS);
    }
}

json_t *lp_display_line(const lp_series *s, size_t nseries, const lp_plot_opts *o)
{
    if (!o)
        o = &NO_OPTS;
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    size_t missing = 0, total = 0, maxn = 0;
    uint64_t hash = opts_hash(LP_HASH64_INIT, o);
    for (size_t k = 0; k < nseries; k++) {
        if (!s[k].y)
            continue;
        hash = lp_fig_hash_str(hash, s[k].name);
        hash = lp_hash64(hash, s[k].y, s[k].n * sizeof(double));
        if (s[k].x)
            hash = lp_hash64(hash, s[k].x, s[k].n * sizeof(double));
        if (s[k].n > maxn)
            maxn = s[k].n;
        for (size_t i = 0; i < s[k].n; i++) {
            double x = xval(&s[k], i), y = s[k].y[i];
            if (!isfinite(x) || !isfinite(y)) {
                missing++;
                continue;
            }
            total++;
            xlo = fmin(xlo, x); xhi = fmax(xhi, x);
            ylo = fmin(ylo, y); yhi = fmax(yhi, y);
        }
    }
    if (total == 0 && missing == 0)
        return lp_bundle_nothing(o->title && *o->title ? o->title : "line plot");
    if (xhi <= xlo) { xlo -= 0.5; xhi += 0.5; }
    lp_nice_range(&ylo, &yhi);
    lp_axes a = lp_axes_fit(PW, PH, xlo, xhi, ylo, yhi, 1);
    lp_buf svg = LP_BUF_INIT, plain = LP_BUF_INIT, note = LP_BUF_INIT;
    lp_svg_begin(&svg, PW, PH);
    lp_axes_draw(&svg, &a, o->xlabel, o->ylabel, 1);
    double *pts = lp_malloc((maxn < 2 * BUCKETS ? maxn : 2 * BUCKETS) * 2 * sizeof(double) + 16, "plot points");
    if (!pts) {
        lp_buf_free(&svg);
        return NULL;
    }
    int reduced = 0;
    char c[8], t[32];
    plain_title(&plain, o);
    lp_buf_printf(&plain, "line plot, %zu series", nseries);
    for (size_t k = 0; k < nseries; k++) {
        if (!s[k].y || s[k].n == 0)
            continue;
        size_t step = s[k].n > MAX_LINE ? (s[k].n + BUCKETS - 1) / BUCKETS : 1;
        reduced |= step > 1;
        draw_series(&svg, &a, &s[k], lp_color_hex(lp_color_category(k), c), pts, step);
        /* text/plain: the last finite point of each series (what a loss curve is at). */
        size_t i = s[k].n;
        while (i > 0 && !isfinite(s[k].y[i - 1]))
            i--;
        lp_buf_puts(&plain, "\n  ");
        lp_utf8_sanitize(&plain, s[k].name ? s[k].name : "", s[k].name ? strlen(s[k].name) : 0);
        lp_buf_printf(&plain, "%s%zu points", s[k].name ? ": " : "", s[k].n);
        if (i > 0)
            lp_buf_printf(&plain, ", last %s", lp_fmt_num(s[k].y[i - 1], t, sizeof t));
    }
    free(pts);
    draw_legend(&svg, &a, s, nseries);
    lp_svg_end(&svg);
    if (reduced)
        lp_buf_printf(&note, "long series reduced to the min and max of %d buckets", BUCKETS);
    return finish("line", hash, o, &svg, &plain, missing, &note, PW);
}

/* ---- scatter ---- */

json_t *lp_display_scatter(const double *x, const double *y, size_t n, const char *const *labels,
                           const lp_plot_opts *o)
{
    if (!o)
        o = &NO_OPTS;
    if (!x || !y || n == 0)
        return lp_bundle_nothing(o->title && *o->title ? o->title : "scatter plot");
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    size_t missing = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) {
            missing++;
            continue;
        }
        xlo = fmin(xlo, x[i]); xhi = fmax(xhi, x[i]);
        ylo = fmin(ylo, y[i]); yhi = fmax(yhi, y[i]);
    }
    lp_nice_range(&xlo, &xhi);
    lp_nice_range(&ylo, &yhi);
    lp_axes a = lp_axes_fit(PW, PH, xlo, xhi, ylo, yhi, 1);
    lp_buf svg = LP_BUF_INIT, plain = LP_BUF_INIT, note = LP_BUF_INIT;
    lp_svg_begin(&svg, PW, PH);
    lp_axes_draw(&svg, &a, o->xlabel, o->ylabel, 1);
    size_t step = n > MAX_SCATTER ? (n + MAX_SCATTER - 1) / MAX_SCATTER : 1;
    char c[8];
    lp_color_hex(lp_color_category(0), c);
    lp_buf_puts(&svg, "<g fill-opacity=\"0.75\">");
    for (size_t i = 0; i < n; i += step)
        if (isfinite(x[i]) && isfinite(y[i]))
            lp_svg_circle(&svg, lp_axes_x(&a, x[i]), lp_axes_y(&a, y[i]), 3, c);
    lp_buf_puts(&svg, "</g>");
    size_t nl = 0;
    for (size_t i = 0; labels && i < n && nl < MAX_LABELS; i++) {
        if (!labels[i] || !isfinite(x[i]) || !isfinite(y[i]))
            continue;
        double px = lp_axes_x(&a, x[i]);
        int right = px > a.x0 + a.w * 0.7; /* near the right edge: label to the left */
        lp_svg_text(&svg, right ? px - 5 : px + 5, lp_axes_y(&a, y[i]) - 4, right ? "end" : "start",
                    10, LP_COLOR_INK, 0, labels[i], 20);
        nl++;
    }
    lp_svg_end(&svg);
    plain_title(&plain, o);
    lp_buf_printf(&plain, "scatter plot, %zu points", n);
    if (step > 1)
        lp_buf_printf(&note, "every %zu-th point drawn", step);
    if (labels && n > MAX_LABELS)
        lp_buf_printf(&note, "%sonly the first %d labels drawn", note.len ? "; " : "", MAX_LABELS);
    uint64_t h = opts_hash(LP_HASH64_INIT, o);
    h = lp_hash64(lp_hash64(h, x, n * sizeof *x), y, n * sizeof *y);
    h = lp_fig_hash_strs(h, labels, labels ? n : 0);
    return finish("scatter", h, o, &svg, &plain, missing, &note, PW);
}

/* ---- histogram ---- */

json_t *lp_display_hist(const double *v, size_t n, int bins, const lp_plot_opts *o)
{
    if (!o)
        o = &NO_OPTS;
    if (!v || n == 0)
        return lp_bundle_nothing(o->title && *o->title ? o->title : "histogram");
    if (bins <= 0)
        bins = 30;
    if (bins > MAX_BINS)
        bins = MAX_BINS;
    double lo = INFINITY, hi = -INFINITY, sum = 0;
    size_t missing = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            missing++;
            continue;
        }
        lo = fmin(lo, v[i]);
        hi = fmax(hi, v[i]);
        sum += v[i];
    }
    size_t finite = n - missing;
    size_t *count = lp_calloc((size_t)bins, sizeof *count, "histogram bins");
    if (!count)
        return NULL;
    double blo = lo, bhi = hi;
    if (finite == 0) { blo = 0; bhi = 1; }
    if (bhi <= blo) { blo -= 0.5; bhi += 0.5; }
    size_t cmax = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            continue;
        int b = (int)((v[i] - blo) / (bhi - blo) * bins);
        if (b >= bins) b = bins - 1;
        if (b < 0) b = 0;
        if (++count[b] > cmax)
            cmax = count[b];
    }
    double ylo = 0, yhi = cmax ? (double)cmax : 1;
    lp_nice_range(&ylo, &yhi);
    lp_axes a = lp_axes_fit(PW, PH, blo, bhi, ylo, yhi, 1);
    lp_buf svg = LP_BUF_INIT, plain = LP_BUF_INIT, note = LP_BUF_INIT;
    lp_svg_begin(&svg, PW, PH);
    lp_axes_draw(&svg, &a, o->xlabel, o->ylabel ? o->ylabel : "count", 1);
    char c[8], t1[32], t2[32], t3[32];
    lp_color_hex(lp_color_category(0), c);
    for (int b = 0; b < bins; b++) {
        if (!count[b])
            continue;
        double x0 = lp_axes_x(&a, blo + (bhi - blo) * b / bins);
        double x1 = lp_axes_x(&a, blo + (bhi - blo) * (b + 1) / bins);
        double y = lp_axes_y(&a, (double)count[b]);
        lp_svg_rect(&svg, x0, y, fmax(0.5, x1 - x0 - 0.5), a.y0 + a.h - y, c);
    }
    lp_svg_end(&svg);
    free(count);
    plain_title(&plain, o);
    lp_buf_printf(&plain, "histogram of %zu values, %d bins", finite, bins);
    if (finite)
        lp_buf_printf(&plain, ", min %s, max %s, mean %s", lp_fmt_num(lo, t1, sizeof t1),
                      lp_fmt_num(hi, t2, sizeof t2), lp_fmt_num(sum / finite, t3, sizeof t3));
    uint64_t h = lp_hash64(opts_hash(LP_HASH64_INIT, o), v, n * sizeof *v);
    h = lp_hash64(h, &bins, sizeof bins);
    return finish("hist", h, o, &svg, &plain, missing, &note, PW);
}

/* ---- bar ---- */

json_t *lp_display_bar(const char *const *labels, const double *v, size_t n, const lp_plot_opts *o)
{
    if (!o)
        o = &NO_OPTS;
    if (!v || n == 0)
        return lp_bundle_nothing(o->title && *o->title ? o->title : "bar chart");
    size_t nb = n > MAX_BARS ? MAX_BARS : n, missing = 0;
    double lo = 0, hi = 0;
    for (size_t i = 0; i < nb; i++) {
        if (!isfinite(v[i])) {
            missing++;
            continue;
        }
        lo = fmin(lo, v[i]);
        hi = fmax(hi, v[i]);
    }
    lp_nice_range(&lo, &hi);
    double lw = 0, vw = 0;
    char t[32];
    for (size_t i = 0; i < nb; i++) {
        char idx[32];
        snprintf(idx, sizeof idx, "%zu", i);
        lw = fmax(lw, lp_text_width_cut(labels && labels[i] ? labels[i] : idx, 20, 10));
        vw = fmax(vw, lp_text_width(lp_fmt_num(v[i], t, sizeof t), 9));
    }
    lw = fmax(40, lw + 12);
    double bh = 18, W = PW, H = MT + bh * nb + MB;
    double mr = fmax(MR, lp_axes_tick_width(lo, hi, 6) / 2 + 4);
    lp_axes a = {lw, MT, W - lw - mr - vw - 8, bh * nb, lo, hi, 0, 1};
    lp_buf svg = LP_BUF_INIT, plain = LP_BUF_INIT, note = LP_BUF_INIT;
    lp_svg_begin(&svg, W, H);
    /* Vertical grid and x ticks, reusing the axes with the roles swapped by hand. */
    lp_axes_draw(&svg, &(lp_axes){a.x0, a.y0, a.w, a.h, lo, hi, 0, 0}, o->xlabel, NULL, 1);
    char pos[8], neg[8];
    lp_color_hex(lp_color_category(0), pos);
    lp_color_hex(lp_color_category(3), neg);
    double x0 = lp_axes_x(&a, 0);
    plain_title(&plain, o);
    lp_buf_printf(&plain, "bar chart, %zu bars", n);
    for (size_t i = 0; i < nb; i++) {
        double y = MT + bh * i;
        char idx[32];
        snprintf(idx, sizeof idx, "%zu", i);
        const char *lab = labels && labels[i] ? labels[i] : idx;
        lp_svg_text(&svg, lw - 6, y + bh / 2 + 3.5, "end", 10, LP_COLOR_INK, 0, lab, 20);
        lp_buf_puts(&plain, "\n  ");
        lp_utf8_sanitize(&plain, lab, strlen(lab));
        lp_buf_printf(&plain, "  %s", lp_fmt_num(v[i], t, sizeof t));
        if (!isfinite(v[i])) {
            lp_svg_rect(&svg, x0 - 1, y + 3, 2, bh - 6, "#9a9a9a");
            continue;
        }
        double x1 = lp_axes_x(&a, v[i]);
        lp_svg_rect(&svg, fmin(x0, x1), y + 3, fabs(x1 - x0), bh - 6, v[i] < 0 ? neg : pos);
        lp_svg_text(&svg, fmax(x0, x1) + 4, y + bh / 2 + 3.5, "start", 9, LP_COLOR_INK, 0, t, 0);
    }
    lp_svg_line(&svg, x0, MT, x0, MT + bh * nb, LP_COLOR_INK, 1);
    lp_svg_end(&svg);
    if (nb < n)
        lp_buf_printf(&note, "showing the first %zu of %zu bars", nb, n);
    uint64_t h = lp_hash64(opts_hash(LP_HASH64_INIT, o), v, n * sizeof *v);
    h = lp_fig_hash_strs(h, labels, labels ? n : 0);
    return finish("bar", h, o, &svg, &plain, missing, &note, W);
}
