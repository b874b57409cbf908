/* The feature dashboard (dashboard.h): static HTML of tables, shaded token spans and two
 * histograms as SVG images; a small script (js/dashboard.js) adds a hover readout. */
#include "dashboard.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "color.h"
#include "figure.h"
#include "figure_js.h"
#include "html.h"
#include "svg.h"
#include "text.h"

enum { NLOGIT = 10, NALIGN = 8, TOKMAX = 24, HW = 300, HH = 150 };
/* Examples stop being added past this many bytes of HTML (the rest of the output stays well
 * under 300 KB: a row of 11 worst-case tokens is about 6 KB). */
#define EXAMPLE_BUDGET (270u * 1024u)

/* The text of token id, shown as every figure shows tokens, cut to max code points, escaped
 * for HTML (spaces stay spaces in strips when keep_space). */
static void put_token(lp_buf *b, const lp_dashboard *d, int32_t id, size_t max, int keep_space)
{
    char num[24];
    const char *t = id >= 0 && d->tok_text ? d->tok_text(d->ud, id) : NULL;
    if (!t) {
        snprintf(num, sizeof num, "#%d", (int)id);
        t = num;
    }
    lp_buf cut = LP_BUF_INIT, shown = LP_BUF_INIT;
    lp_utf8_truncate(&cut, t, max);
    const char *c = lp_buf_str(&cut);
    for (size_t k = 0; k < cut.len; k++) {
        if (keep_space && c[k] == ' ')
            lp_buf_putc(&shown, ' ');
        else
            lp_token_show(&shown, c + k, 1);
    }
    lp_html_escape(b, lp_buf_str(&shown), shown.len);
    lp_buf_free(&cut), lp_buf_free(&shown);
}

static void section(lp_buf *b, const char *name)
{
    lp_buf_printf(b, "<div style=\"font-weight:bold;font-size:11px;letter-spacing:0.05em;opacity:0.75;"
                     "margin:8px 0 2px 0\">%s</div>", name); /* our own text */
}

/* A bar histogram of counts (n bins over [lo, hi]) as an <img>. */
static void hist_img(lp_buf *b, const double *count, int n, double lo, double hi, const char *xlabel,
                     const char *alt)
{
    double cmax = 0;
    for (int k = 0; k < n; k++)
        cmax = count[k] > cmax ? count[k] : cmax;
    double ylo = 0, yhi = cmax > 0 ? cmax : 1;
    lp_nice_range(&ylo, &yhi);
    lp_axes a = lp_axes_fit(HW, HH, lo, hi, ylo, yhi, 1);
    lp_buf svg = LP_BUF_INIT;
    lp_svg_begin(&svg, HW, HH);
    lp_axes_draw(&svg, &a, xlabel, "count", 1);
    char c[8];
    lp_color_hex(lp_color_category(0), c);
    for (int k = 0; k < n; k++) {
        if (!(count[k] > 0))
            continue;
        double x0 = lp_axes_x(&a, lo + (hi - lo) * k / n), x1 = lp_axes_x(&a, lo + (hi - lo) * (k + 1) / n);
        double y = lp_axes_y(&a, count[k]);
        lp_svg_rect(&svg, x0, y, fmax(0.5, x1 - x0 - 0.5), a.y0 + a.h - y, c);
    }
    lp_svg_end(&svg);
    lp_html_svg_img(b, lp_buf_str(&svg), svg.len, HW, alt, NULL);
    lp_buf_free(&svg);
}

/* One example: its activation, then the context tokens shaded by activation / max. */
static void example_row(lp_buf *b, const lp_dashboard *d, const lp_harvest_example *e, double mx)
{
    char t[32];
    lp_buf_printf(b, "<div style=\"white-space:pre;font-family:monospace;font-size:12px;line-height:20px;"
                     "overflow:hidden\"><span style=\"display:inline-block;width:56px;opacity:0.7\">%s</span>",
                  lp_fmt_num(e->value, t, sizeof t));
    for (int k = 0; k < LP_HARVEST_W; k++) {
        if (e->tok[k] < 0)
            continue;
        double v = e->act[k], a = mx > 0 && isfinite(v) ? fmin(1, fmax(0, v / mx)) : 0;
        lp_buf_printf(b, "<span data-a=\"%s\" title=\"", lp_fmt_num(isfinite(v) ? v : 0, t, sizeof t));
        put_token(b, d, e->tok[k], 32, 0);
        lp_buf_printf(b, " = %s\" style=\"background:rgba(230,85,13,%.2f)", t, a > 0 ? 0.1 + 0.8 * a : 0.0);
        if (k == LP_HARVEST_CTX)
            lp_buf_puts(b, ";outline:1px solid rgba(128,128,128,0.8)");
        if (a > 0.6)
            lp_buf_puts(b, ";color:#fff");
        lp_buf_puts(b, "\">");
        put_token(b, d, e->tok[k], TOKMAX, 1);
        lp_buf_puts(b, "</span>");
    }
    lp_buf_puts(b, "</div>");
}

typedef struct idxval {
    int i;
    float v;
} idxval;


/* The n largest (sign 1) or smallest (sign -1) of v into out; returns how many. */
static int extremes(const float *v, int n, int sign, idxval *out, int k)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            continue;
        float s = sign * v[i];
        if (m < k || s > out[m - 1].v) {
            int at = m < k ? m++ : k - 1;
            while (at > 0 && out[at - 1].v < s) {
                out[at] = out[at - 1];
                at--;
            }
            out[at] = (idxval){i, s};
        }
    }
    for (int i = 0; i < m; i++)
        out[i].v *= (float)sign;
    return m;
}

static void logit_table(lp_buf *b, lp_buf *plain, const lp_dashboard *d, json_t *pos_out)
{
    idxval pos[NLOGIT], neg[NLOGIT];
    int np = extremes(d->logits, d->n_vocab, 1, pos, NLOGIT), nn = extremes(d->logits, d->n_vocab, -1, neg, NLOGIT);
    char t[32];
    lp_buf_puts(b, "<table style=\"font-size:12px;border-collapse:collapse\"><tr><th style=\"text-align:left\">"
                   "NEGATIVE LOGITS</th><th></th><th style=\"text-align:left;padding-left:12px\">POSITIVE LOGITS</th>"
                   "<th></th></tr>");
    for (int k = 0; k < NLOGIT && (k < np || k < nn); k++) {
        lp_buf_puts(b, "<tr>");
        for (int side = 0; side < 2; side++) {
            const idxval *e = side ? (k < np ? &pos[k] : NULL) : (k < nn ? &neg[k] : NULL);
            if (!e) {
                lp_buf_puts(b, "<td></td><td></td>");
                continue;
            }
            lp_buf_printf(b, "<td style=\"font-family:monospace;text-align:left;padding-left:%dpx\"><span style=\"background:%s\">",
                          side ? 12 : 0, side ? "rgba(33,102,172,0.15)" : "rgba(178,24,43,0.15)");
            put_token(b, d, e->i, TOKMAX, 0);
            lp_buf_printf(b, "</span></td><td style=\"text-align:right\">%s</td>", lp_fmt_num(e->v, t, sizeof t));
        }
        lp_buf_puts(b, "</tr>");
    }
    lp_buf_puts(b, "</table>");
    lp_buf_puts(plain, "\npromotes:");
    for (int k = 0; k < np && k < 5; k++) {
        lp_buf tok = LP_BUF_INIT;
        const char *s = d->tok_text ? d->tok_text(d->ud, pos[k].i) : NULL;
        lp_token_show(&tok, s ? s : "?", s ? strlen(s) : 1);
        lp_buf_puts(plain, " ");
        lp_utf8_truncate(plain, lp_buf_str(&tok), TOKMAX);
        lp_buf_printf(plain, " (%s)", lp_fmt_num(pos[k].v, t, sizeof t));
        if (pos_out && s)
            json_array_append_new(pos_out, lp_json_str(s));
        lp_buf_free(&tok);
    }
    double lo = INFINITY, hi = -INFINITY;
    for (int v = 0; v < d->n_vocab; v++)
        if (isfinite(d->logits[v]))
            lo = fmin(lo, d->logits[v]), hi = fmax(hi, d->logits[v]);
    if (lo < hi) {
        double count[40] = {0};
        for (int v = 0; v < d->n_vocab; v++)
            if (isfinite(d->logits[v])) {
                int k = (int)((d->logits[v] - lo) / (hi - lo) * 40);
                count[k > 39 ? 39 : k]++;
            }
        hist_img(b, count, 40, lo, hi, "direct effect on the logit", "histogram of the logit effects");
    }
}

static void alignment(lp_buf *b, const lp_dashboard *d)
{
    idxval top[NALIGN];
    float *absv = malloc((size_t)d->d_out * sizeof *absv);
    if (!absv)
        return;
    double l1 = 0;
    for (int k = 0; k < d->d_out; k++)
        absv[k] = fabsf(d->dec[k]), l1 += isfinite(absv[k]) ? absv[k] : 0;
    int n = extremes(absv, d->d_out, 1, top, NALIGN);
    free(absv);
    char t[32], u[32];
    lp_buf_printf(b, "<table style=\"font-size:12px\"><tr><th style=\"text-align:left\">%s</th>"
                     "<th>W_dec</th><th>share of L1</th></tr>", d->dim_name ? d->dim_name : "dimension");
    for (int k = 0; k < n; k++)
        lp_buf_printf(b, "<tr><td>%d</td><td style=\"text-align:right\">%s</td><td style=\"text-align:right\">"
                         "%s%%</td></tr>", top[k].i, lp_fmt_num(d->dec[top[k].i], t, sizeof t),
                      lp_fmt_num(l1 > 0 ? 100.0 * top[k].v / l1 : 0, u, sizeof u));
    lp_buf_puts(b, "</table>");
}

static void put_text(lp_buf *b, const char *s)
{
    lp_buf tmp = LP_BUF_INIT;
    lp_utf8_truncate(&tmp, s, 80);
    lp_html_escape(b, lp_buf_str(&tmp), tmp.len);
    lp_buf_free(&tmp);
}

json_t *lp_display_dashboard(const lp_dashboard *d)
{
    const lp_harvest *h = d->h;
    int i = d->feature;
    lp_buf html = LP_BUF_INIT, plain = LP_BUF_INIT, tmp = LP_BUF_INIT;
    char id[48], t1[32], t2[32], t3[32];
    uint64_t hash = lp_hash64(LP_HASH64_INIT, &i, sizeof i);
    hash = lp_fig_hash_str(hash, d->label);
    hash = lp_fig_hash_str(hash, d->what);
    if (h)
        hash = lp_hash64(hash, lp_harvest_top(h, i), LP_HARVEST_EXAMPLES * sizeof(lp_harvest_example));
    if (d->logits)
        hash = lp_hash64(hash, d->logits, (size_t)d->n_vocab * sizeof *d->logits);
    lp_fig_open(&html, "dashboard", hash, NULL, id);
    lp_buf_puts(&html, "<div data-lp-readout=\"1\"></div>"); /* where scripts run: the hover readout */
    lp_buf_printf(&html, "<div style=\"font-weight:bold;font-size:14px\">Feature %d", i);
    lp_buf_printf(&plain, "feature %d", i);
    if (d->label && *d->label) {
        lp_buf_puts(&html, " · ");
        put_text(&html, d->label);
        lp_buf_puts(&plain, " · ");
        lp_utf8_truncate(&tmp, d->label, 80);
        lp_utf8_sanitize(&plain, lp_buf_str(&tmp), tmp.len);
        lp_buf_reset(&tmp);
    }
    lp_buf_puts(&html, "</div>");
    if (d->what) {
        lp_buf_puts(&html, "<div style=\"font-size:11px;opacity:0.7\">");
        put_text(&html, d->what);
        lp_buf_puts(&html, "</div>");
    }
    lp_buf_puts(&html, "<div style=\"display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start\">"
                       "<div style=\"flex:0 0 320px;min-width:0\">");
    double mx = h ? h->max[i] : 0;
    if (h) {
        double dens = h->n_tokens > 0 ? h->count[i] / (double)h->n_tokens : 0;
        section(&html, "ACTIVATIONS");
        lp_buf_printf(&html, "<div style=\"font-size:12px\">DENSITY = %s%% (%s of %lld tokens) · MAX = %s</div>",
                      lp_fmt_num(100 * dens, t1, sizeof t1), lp_fmt_num(h->count[i], t2, sizeof t2),
                      (long long)h->n_tokens, lp_fmt_num(mx, t3, sizeof t3));
        lp_buf_printf(&plain, "\ndensity %s%% of %lld tokens, max %s", lp_fmt_num(100 * dens, t1, sizeof t1),
                      (long long)h->n_tokens, lp_fmt_num(mx, t2, sizeof t2));
        const double *hc = h->hist + (size_t)i * LP_HARVEST_HIST;
        int a = LP_HARVEST_HIST, z = -1;
        for (int k = 0; k < LP_HARVEST_HIST; k++)
            if (hc[k] > 0)
                a = k < a ? k : a, z = k;
        if (z >= 0) {
            double w = (LP_HARVEST_LOG_HI - LP_HARVEST_LOG_LO) / LP_HARVEST_HIST;
            hist_img(&html, hc + a, z - a + 1, LP_HARVEST_LOG_LO + a * w, LP_HARVEST_LOG_LO + (z + 1) * w,
                     "log10 activation", "histogram of log10 activations");
        }
    } else {
        section(&html, "NO HARVEST");
        lp_buf_puts(&html, "<div style=\"font-size:12px;max-width:320px\">");
        put_text(&html, d->how ? d->how : "no harvest");
        lp_buf_puts(&html, "</div>");
        lp_buf_printf(&plain, "\n%s", d->how ? d->how : "no harvest");
    }
    json_t *promoted = json_array();
    if (d->logits && d->n_vocab > 0) {
        section(&html, "DIRECT EFFECT ON THE LOGITS (W_dec through W_U)");
        logit_table(&html, &plain, d, promoted);
    }
    if (d->dec && d->d_out > 0) {
        section(&html, "ALIGNMENT (largest decoder entries)");
        alignment(&html, d);
    }
    if (d->neuron && d->n_neuron > 0) {
        lp_buf_printf(&html, "<div style=\"font-weight:bold;font-size:11px;letter-spacing:0.05em;opacity:0.75;"
                             "margin:8px 0 2px 0\">MLP NEURONS OF LAYER %d (W_dec · W_out)</div>"
                             "<table style=\"font-size:12px\"><tr><th>neuron</th><th>W_dec · W_out</th></tr>",
                      d->neuron_layer);
        for (int k = 0; k < d->n_neuron; k++)
            lp_buf_printf(&html, "<tr><td>%d</td><td style=\"text-align:right\">%s</td></tr>", d->neuron[k],
                          lp_fmt_num(d->neuron_dot[k], t1, sizeof t1));
        lp_buf_puts(&html, "</table>");
    }
    if (h) {
        const int32_t *cid = h->corr + (size_t)i * LP_HARVEST_CORR;
        const float *cs = h->corr_score + (size_t)i * LP_HARVEST_CORR;
        if (cid[0] >= 0) {
            section(&html, "CORRELATED FEATURES (co-occurrence, Jaccard)");
            lp_buf_puts(&html, "<table style=\"font-size:12px\">");
            for (int k = 0; k < LP_HARVEST_CORR && cid[k] >= 0; k++) {
                lp_buf_printf(&html, "<tr><td>%d</td><td style=\"text-align:right\">%s</td><td>", cid[k],
                              lp_fmt_num(cs[k], t1, sizeof t1));
                if (d->corr_labels && d->corr_labels[k])
                    put_text(&html, d->corr_labels[k]);
                lp_buf_puts(&html, "</td></tr>");
            }
            lp_buf_puts(&html, "</table>");
        }
    }
    lp_buf_puts(&html, "</div><div style=\"flex:1 1 420px;min-width:0\">");
    if (h && h->n_top[i] > 0) {
        lp_buf_printf(&html, "<div style=\"font-weight:bold;font-size:11px;opacity:0.75;margin:8px 0 2px 0\">"
                             "TOP ACTIVATIONS (MAX = %s)</div>", lp_fmt_num(mx, t1, sizeof t1));
        int left_out = 0;
        for (int k = 0; k < h->n_top[i]; k++) {
            if (html.len > EXAMPLE_BUDGET) {
                left_out += h->n_top[i] - k;
                break;
            }
            example_row(&html, d, lp_harvest_top(h, i) + k, mx);
        }
        lp_buf_puts(&plain, "\ntop tokens:");
        for (int k = 0; k < h->n_top[i] && k < 5; k++) {
            const lp_harvest_example *e = lp_harvest_top(h, i) + k;
            const char *s = d->tok_text ? d->tok_text(d->ud, e->tok[LP_HARVEST_CTX]) : NULL;
            lp_buf_reset(&tmp);
            lp_token_show(&tmp, s ? s : "?", s ? strlen(s) : 1);
            lp_buf_putc(&plain, ' ');
            lp_utf8_truncate(&plain, lp_buf_str(&tmp), TOKMAX);
            lp_buf_printf(&plain, " (%s)", lp_fmt_num(e->value, t1, sizeof t1));
        }
        for (int k = LP_HARVEST_INTERVALS - 1; k >= 0; k--) {
            const lp_harvest_interval *v = h->iv + (size_t)i * LP_HARVEST_INTERVALS + k;
            if (!v->n)
                continue;
            lp_buf_printf(&html, "<div style=\"font-weight:bold;font-size:11px;opacity:0.75;margin:8px 0 2px 0\">"
                                 "INTERVAL %s – %s · CONTAINS %s%%</div>",
                          lp_fmt_num(v->lo, t1, sizeof t1), lp_fmt_num(v->hi, t2, sizeof t2),
                          lp_fmt_num(h->count[i] > 0 ? 100 * v->count / h->count[i] : 0, t3, sizeof t3));
            for (int c = 0; c < v->n; c++) {
                if (html.len > EXAMPLE_BUDGET) {
                    left_out += v->n - c;
                    break;
                }
                example_row(&html, d, lp_harvest_samples(h, i, k) + c, mx);
            }
        }
        if (left_out) {
            lp_buf_printf(&html, "<div style=\"font-size:11px;opacity:0.8\">%d examples left out to keep the "
                                 "output under 300 KB (long tokens)</div>", left_out);
            lp_buf_printf(&plain, "\n%d examples left out to keep the output under 300 KB", left_out);
        }
    } else if (h) {
        section(&html, "NO ACTIVATIONS");
        lp_buf_printf(&html, "<div style=\"font-size:12px\">the feature never fired on the %lld harvested tokens</div>",
                      (long long)h->n_tokens);
        lp_buf_puts(&plain, "\nnever fired in the harvest");
    }
    lp_buf_puts(&html, "</div></div>");
    lp_buf_free(&tmp);
    int rc = 0;
    if (h && h->n_top[i] > 0) {
        json_t *data = json_pack("{s:o}", "promotes", promoted);
        promoted = NULL;
        rc = data ? lp_fig_script(&html, id, data, lp_js_dashboard) : -1;
        json_decref(data);
    }
    json_decref(promoted);
    lp_fig_close(&html);
    if (rc != 0) {
        lp_buf_free(&plain), lp_buf_free(&html);
        return NULL;
    }
    return lp_bundle_from_bufs(&plain, &html);
}
