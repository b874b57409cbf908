#include "figure.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bundle.h"
#include "color.h"
#include "html.h"
#include "svg.h"
#include "text.h"

uint64_t lp_fig_hash_str(uint64_t h, const char *s)
{
    if (!s)
        return lp_hash64(h, "\xff\xfe", 2);
    return lp_hash64(h, s, strlen(s) + 1);
}

uint64_t lp_fig_hash_strs(uint64_t h, const char *const *s, size_t n)
{
    h = lp_hash64(h, &n, sizeof n);
    if (!s)
        return lp_hash64(h, "\xff", 1);
    for (size_t i = 0; i < n; i++)
        h = lp_fig_hash_str(h, s[i]);
    return h;
}

void lp_fig_open(lp_buf *html, const char *kind, uint64_t hash, const char *title, char *id)
{
    snprintf(id, 48, "lp-%s-%016llx", kind, (unsigned long long)hash);
    lp_buf_printf(html,
                  "<div class=\"lp-fig lp-%s\" data-lp-id=\"%s\" style=\"position:relative;"
                  "max-width:100%%;margin:4px 0\">",
                  kind, id);
    if (title && *title) {
        lp_buf_puts(html, "<div style=\"font-weight:bold;margin:0 0 4px 0\">");
        lp_html_escape(html, title, strlen(title));
        lp_buf_puts(html, "</div>");
    }
}

void lp_fig_close(lp_buf *html) { lp_buf_puts(html, "</div>"); }

void lp_fig_caption(lp_buf *html, lp_buf *plain, size_t missing, const char *note)
{
    if (missing == 0 && !(note && *note))
        return;
    lp_buf line = LP_BUF_INIT;
    if (note && *note)
        lp_buf_puts(&line, note);
    if (missing)
        lp_buf_printf(&line, "%s%zu value%s missing (NaN/Inf)", line.len ? "; " : "", missing,
                      missing == 1 ? "" : "s");
    lp_buf_puts(html, "<div class=\"lp-caption\" style=\"font-size:11px;opacity:0.8;"
                      "margin:2px 0\">");
    lp_html_escape(html, lp_buf_str(&line), line.len);
    lp_buf_puts(html, "</div>");
    lp_buf_putc(plain, '\n');
    lp_buf_puts(plain, lp_buf_str(&line));
    lp_buf_free(&line);
}

int lp_fig_script(lp_buf *html, const char *id, const json_t *data, const char *js)
{
    lp_buf_puts(html, "<script type=\"application/json\">");
    if (lp_html_json_script(html, data) != 0)
        return -1;
    lp_buf_puts(html, "</script><script>");
    for (const char *p = js; *p;) {
        const char *q = strstr(p, "@ID@");
        if (!q) {
            lp_buf_puts(html, p);
            break;
        }
        lp_buf_append(html, p, (size_t)(q - p));
        lp_buf_puts(html, id);
        p = q + 4;
    }
    lp_buf_puts(html, "</script>");
    return 0;
}

static double nice_step(double range, int target)
{
    double raw = range / target;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

void lp_nice_range(double *lo, double *hi)
{
    if (!isfinite(*lo) || !isfinite(*hi)) {
        *lo = 0;
        *hi = 1;
    }
    if (*hi <= *lo) {
        double c = *lo, d = fabs(c) > 0 ? fabs(c) * 0.1 : 1;
        *lo = c - d;
        *hi = c + d;
    }
    double st = nice_step(*hi - *lo, 5);
    *lo = floor(*lo / st) * st;
    *hi = ceil(*hi / st) * st;
}

double lp_axes_x(const lp_axes *a, double x) { return a->x0 + (x - a->xlo) / (a->xhi - a->xlo) * a->w; }
double lp_axes_y(const lp_axes *a, double y) { return a->y0 + a->h - (y - a->ylo) / (a->yhi - a->ylo) * a->h; }

static void tick_label(char *buf, size_t cap, double v, double step)
{
    if (fabs(v) < step * 1e-9)
        v = 0;
    lp_fmt_num(v, buf, cap);
}

double lp_axes_tick_width(double lo, double hi, int target)
{
    char t[32];
    double st = nice_step(hi - lo, target), w = 0;
    if (!(isfinite(st) && st > 0))
        return 0;
    int k = 0;
    for (double v = ceil(lo / st - 1e-9) * st; v <= hi + st * 1e-9 && k < 40; v += st, k++) {
        tick_label(t, sizeof t, v, st);
        w = fmax(w, lp_text_width(t, 10));
    }
    return w;
}

lp_axes lp_axes_fit(double W, double H, double xlo, double xhi, double ylo, double yhi, int xticks)
{
    /* left: the y axis label (rotated, about x = 14), the tick labels, 4 px of gap */
    double ml = fmax(62, 26 + lp_axes_tick_width(ylo, yhi, 5));
    double mr = xticks ? fmax(16, lp_axes_tick_width(xlo, xhi, 6) / 2 + 4) : 16;
    return (lp_axes){ml, 12, W - ml - mr, H - 12 - 46, xlo, xhi, ylo, yhi};
}

void lp_axes_draw(lp_buf *svg, const lp_axes *a, const char *xlabel, const char *ylabel, int xticks)
{
    char t[32];
    double ys = nice_step(a->yhi - a->ylo, 5);
    if (!(isfinite(ys) && ys > 0))
        ys = INFINITY; /* no ticks */
    int k = 0;
    for (double v = ceil(a->ylo / ys - 1e-9) * ys; v <= a->yhi + ys * 1e-9 && k < 40; v += ys, k++) {
        double y = lp_axes_y(a, v);
        lp_svg_line(svg, a->x0, y, a->x0 + a->w, y, LP_COLOR_GRID, 1);
        tick_label(t, sizeof t, v, ys);
        lp_svg_text(svg, a->x0 - 4, y + 3.5, "end", 10, LP_COLOR_INK, 0, t, 0);
    }
    if (xticks) {
        double xs = nice_step(a->xhi - a->xlo, 6);
        if (!(isfinite(xs) && xs > 0))
            xs = INFINITY;
        k = 0;
        for (double v = ceil(a->xlo / xs - 1e-9) * xs; v <= a->xhi + xs * 1e-9 && k < 40; v += xs, k++) {
            double x = lp_axes_x(a, v);
            lp_svg_line(svg, x, a->y0 + a->h, x, a->y0 + a->h + 4, LP_COLOR_INK, 1);
            tick_label(t, sizeof t, v, xs);
            lp_svg_text(svg, x, a->y0 + a->h + 15, "middle", 10, LP_COLOR_INK, 0, t, 0);
        }
    }
    lp_svg_frame(svg, a->x0, a->y0, a->w, a->h, LP_COLOR_INK);
    if (xlabel && *xlabel)
        lp_svg_text(svg, a->x0 + a->w / 2, a->y0 + a->h + 32, "middle", 11, LP_COLOR_INK, 0,
                    xlabel, 60);
    if (ylabel && *ylabel)
        lp_svg_text(svg, 14, a->y0 + a->h / 2, "middle", 11, LP_COLOR_INK, -90, ylabel, 40);
}
