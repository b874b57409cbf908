/* Token strips: each token a span whose background shows its value (diverging colours
 * centred on zero) and whose `title` tooltip gives the value, which works without scripts.
 * Where scripts run, a readout line under the strip shows the hovered token and value. */
#include <math.h>
#include <string.h>

#include "bundle.h"
#include "figure.h"
#include "figure_js.h"
#include "figures.h"
#include "html.h"
#include "text.h"

enum { MAX_TOKENS = 4096 };

/* The token in the strip's running text: spaces stay spaces (the text reads as text, and
 * each span's background shows them), everything else as lp_token_show writes it (\n,
 * \t, \x1b). Tooltips, the readout and text/plain show the token as every figure does. */
static void token_text(lp_buf *b, const char *t)
{
    lp_buf tmp = LP_BUF_INIT;
    for (const char *p = t; *p; p++) {
        if (*p == ' ')
            lp_buf_putc(&tmp, ' ');
        else
            lp_token_show(&tmp, p, 1);
    }
    lp_html_escape(b, lp_buf_str(&tmp), tmp.len);
    lp_buf_free(&tmp);
}

/* The token as every figure shows it, HTML-escaped (tooltips) or made valid UTF-8 (text). */
static void token_shown(lp_buf *b, const char *t, int html)
{
    lp_buf tmp = LP_BUF_INIT;
    lp_token_show(&tmp, t, strlen(t));
    if (html)
        lp_html_escape(b, lp_buf_str(&tmp), tmp.len);
    else
        lp_utf8_sanitize(b, lp_buf_str(&tmp), tmp.len);
    lp_buf_free(&tmp);
}

json_t *lp_display_tokens(const char *const *tokens, const float *values, size_t n,
                          const char *title)
{
    if (!tokens || n == 0)
        return lp_bundle_nothing(title && *title ? title : "tokens");
    size_t nt = n > MAX_TOKENS ? MAX_TOKENS : n, missing = 0;
    double m = 0, lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; values && i < nt; i++) {
        if (!isfinite(values[i])) {
            missing++;
            continue;
        }
        m = fmax(m, fabs(values[i]));
        lo = fmin(lo, values[i]);
        hi = fmax(hi, values[i]);
    }
    if (!(m > 0))
        m = 1;
    uint64_t h = lp_fig_hash_strs(lp_fig_hash_str(LP_HASH64_INIT, title), tokens, nt);
    if (values)
        h = lp_hash64(h, values, nt * sizeof *values);
    lp_buf html = LP_BUF_INIT, plain = LP_BUF_INIT, note = LP_BUF_INIT;
    char id[48], t[32];
    lp_fig_open(&html, "tokens", h, title, id);
    lp_buf_puts(&html, "<div style=\"font-family:monospace;font-size:13px;line-height:22px;"
                       "white-space:pre-wrap;word-break:break-all\">");
    if (title && *title) {
        lp_utf8_sanitize(&plain, title, strlen(title));
        lp_buf_puts(&plain, ": ");
    }
    json_t *jt = json_array(), *jv = json_array();
    for (size_t i = 0; i < nt; i++) {
        const char *tok = tokens[i] ? tokens[i] : "";
        double v = values ? values[i] : NAN;
        lp_buf_printf(&html, "<span data-i=\"%zu\" title=\"#%zu ", i, i);
        token_shown(&html, tok, 1);
        if (values)
            lp_buf_printf(&html, " = %s", isfinite(v) ? lp_fmt_num(v, t, sizeof t) : "missing (NaN/Inf)");
        lp_buf_puts(&html, "\" style=\"border-radius:3px;padding:1px 1px;margin:0 1px 0 0");
        if (values && !isfinite(v)) {
            lp_buf_puts(&html, ";background:#9a9a9a;color:#000000;border:1px dashed #000000");
        } else if (values) {
            double a = fabs(v) / m;
            lp_rgb c = lp_color_diverging(v < 0 ? -0.8 : 0.8);
            lp_buf_printf(&html, ";background:rgba(%d,%d,%d,%.2f)", c.r, c.g, c.b, 0.05 + 0.9 * a);
            if (a > 0.5)
                lp_buf_puts(&html, ";color:#ffffff");
        } else {
            lp_buf_puts(&html, ";background:rgba(128,128,128,0.12)");
        }
        lp_buf_puts(&html, "\">");
        token_text(&html, tok);
        lp_buf_puts(&html, "</span>");
        /* text/plain: tok(value) */
        if (i)
            lp_buf_putc(&plain, ' ');
        token_shown(&plain, tok, 0);
        if (values)
            lp_buf_printf(&plain, "(%s)", lp_fmt_num(v, t, sizeof t));
        json_array_append_new(jt, lp_json_str(tok));
        json_array_append_new(jv, values && isfinite(v) ? json_real(v) : json_null());
    }
    lp_buf_puts(&html, "</div>");
    if (nt < n)
        lp_buf_printf(&note, "showing the first %zu of %zu tokens", nt, n);
    if (values && lo <= hi) {
        char a[32], b[32];
        lp_buf_printf(&note, "%svalues in [%s, %s]; blue negative, red positive", note.len ? "; " : "",
                      lp_fmt_num(lo, a, sizeof a), lp_fmt_num(hi, b, sizeof b));
    }
    lp_fig_caption(&html, &plain, missing, lp_buf_str(&note));
    int rc = 0;
    if (values) {
        json_t *d = json_pack("{s:o,s:o}", "t", jt, "v", jv);
        rc = d ? lp_fig_script(&html, id, d, lp_js_tokens) : -1;
        json_decref(d);
    } else {
        json_decref(jt);
        json_decref(jv);
    }
    lp_fig_close(&html);
    lp_buf_free(&note);
    if (rc != 0) {
        lp_buf_free(&plain);
        lp_buf_free(&html);
        return NULL;
    }
    return lp_bundle_from_bufs(&plain, &html);
}
