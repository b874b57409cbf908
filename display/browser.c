/* The feature browser (browser.h): a static HTML table; js/browser.js adds search, sorting
 * and dashboards opened in place. */
#include "browser.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bundle.h"
#include "core/error.h"
#include "figure.h"
#include "figure_js.h"
#include "html.h"
#include "svg.h"

enum { TEXTMAX = 80 };

static void put_text(lp_buf *b, const char *s, size_t max)
{
    lp_buf tmp = LP_BUF_INIT;
    lp_utf8_truncate(&tmp, s ? s : "", max);
    lp_html_escape(b, lp_buf_str(&tmp), tmp.len);
    lp_buf_free(&tmp);
}

/* A lowercase copy of s (ASCII letters only) escaped for an attribute: the search key. */
static void put_key(lp_buf *b, const char *s)
{
    lp_buf low = LP_BUF_INIT;
    for (const char *p = s ? s : ""; *p; p++)
        lp_buf_putc(&low, *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p);
    put_text(b, lp_buf_str(&low), 4 * TEXTMAX);
    lp_buf_free(&low);
}

/* The bytes s takes in the figure's JSON data (lp_html_json_script: ASCII-only JSON with
 * <, >, & as \u escapes), which is what the size budget counts. */
static size_t escaped_size(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '<' || *p == '>' || *p == '&' || *p < 0x20)
            n += 6;
        else if (*p == '"' || *p == '\\' || *p == '/')
            n += 2;
        else if (*p >= 0xf0)
            n += 12; /* a surrogate pair */
        else if (*p >= 0xc0)
            n += 6;
        else if (*p < 0x80)
            n += 1;
    }
    return n;
}

static const char *num(double v, char *t, size_t n)
{
    return isfinite(v) ? lp_fmt_num(v, t, n) : "–";
}

json_t *lp_display_browser(const char *title, const lp_browser_row *rows, int n, const char *note)
{
    lp_buf html = LP_BUF_INIT, plain = LP_BUF_INIT;
    char id[48], t1[32], t2[32];
    uint64_t hash = lp_fig_hash_str(LP_HASH64_INIT, title);
    for (int r = 0; r < n; r++) {
        hash = lp_hash64(hash, &rows[r].index, sizeof rows[r].index);
        hash = lp_fig_hash_str(hash, rows[r].label);
        hash = lp_fig_hash_str(hash, rows[r].top);
    }
    json_t *dash = json_object();
    if (!dash) {
        lp_set_error_code(LP_ERR_NOMEM, "feature browser: no memory");
        return NULL;
    }
    lp_fig_open(&html, "browser", hash, title, id);
    lp_buf_printf(&plain, "%s", title ? title : "features");
    lp_buf_puts(&html, "<div data-lp-search=\"1\"></div>"
                       "<table style=\"font-size:12px;border-collapse:collapse\"><thead><tr>"
                       "<th data-k=\"index\" style=\"text-align:right;padding:2px 6px\">feature</th>"
                       "<th style=\"text-align:left;padding:2px 6px\">label</th>"
                       "<th data-k=\"density\" style=\"text-align:right;padding:2px 6px\">density %</th>"
                       "<th data-k=\"max\" style=\"text-align:right;padding:2px 6px\">max</th>"
                       "<th style=\"text-align:left;padding:2px 6px\">top tokens</th></tr></thead><tbody>");
    size_t dash_bytes = 0;
    int embedded = 0;
    for (int r = 0; r < n; r++) {
        const lp_browser_row *w = rows + r;
        int has = 0;
        size_t size = w->dash ? escaped_size(w->dash) : 0;
        if (w->dash && dash_bytes + size <= LP_BROWSER_DASH_BUDGET) {
            char key[16];
            snprintf(key, sizeof key, "%d", w->index);
            json_t *s = json_string(w->dash);
            if (s && json_object_set_new(dash, key, s) == 0) {
                dash_bytes += size;
                has = 1;
                embedded++;
            }
        }
        lp_buf_printf(&html, "<tr data-i=\"%d\" data-index=\"%d\" data-density=\"%.9g\" data-max=\"%.9g\"%s "
                             "data-s=\"%d ", w->index, w->index, isfinite(w->density) ? w->density : -1.0,
                      isfinite(w->max) ? w->max : -1.0, has ? " data-dash=\"1\"" : "", w->index);
        put_key(&html, w->label);
        lp_buf_putc(&html, ' ');
        put_key(&html, w->top);
        lp_buf_printf(&html, "\"><td style=\"text-align:right;padding:2px 6px\">%d</td>"
                             "<td style=\"padding:2px 6px\">", w->index);
        put_text(&html, w->label, TEXTMAX);
        lp_buf_printf(&html, "</td><td style=\"text-align:right;padding:2px 6px\">%s</td>"
                             "<td style=\"text-align:right;padding:2px 6px\">%s</td>"
                             "<td style=\"font-family:monospace;white-space:pre;padding:2px 6px\">",
                      num(100 * w->density, t1, sizeof t1), num(w->max, t2, sizeof t2));
        put_text(&html, w->top, TEXTMAX);
        lp_buf_puts(&html, "</td></tr>");
        lp_buf_printf(&plain, "\n%6d  %s%%  max %s  ", w->index, num(100 * w->density, t1, sizeof t1),
                      num(w->max, t2, sizeof t2));
        lp_buf tmp = LP_BUF_INIT;
        lp_utf8_truncate(&tmp, w->label ? w->label : "", TEXTMAX);
        lp_utf8_sanitize(&plain, lp_buf_str(&tmp), tmp.len);
        lp_buf_reset(&tmp);
        if (w->top && *w->top) {
            lp_buf_puts(&plain, "  | ");
            lp_utf8_truncate(&tmp, w->top, TEXTMAX);
            lp_utf8_sanitize(&plain, lp_buf_str(&tmp), tmp.len);
        }
        lp_buf_free(&tmp);
    }
    lp_buf_puts(&html, "</tbody></table>");
    if (n == 0)
        lp_buf_puts(&plain, "\n(no feature matches)");
    char cap[200];
    snprintf(cap, sizeof cap, "%d feature%s shown; %d dashboard%s embedded (click a row where scripts run)%s%s", n,
             n == 1 ? "" : "s", embedded, embedded == 1 ? "" : "s", note && *note ? "; " : "", note ? note : "");
    lp_fig_caption(&html, &plain, 0, cap);
    json_t *data = json_pack("{s:o}", "dash", dash);
    int rc = data ? lp_fig_script(&html, id, data, lp_js_browser) : -1;
    json_decref(data);
    lp_fig_close(&html);
    if (rc != 0) {
        lp_buf_free(&plain), lp_buf_free(&html);
        lp_set_error_code(LP_ERR_NOMEM, "feature browser: no memory");
        return NULL;
    }
    return lp_bundle_from_bufs(&plain, &html);
}
