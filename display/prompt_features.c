/* The prompt view (prompt_features.h): a shaded token strip with tooltips, a table per token
 * and a table of the prompt's strongest features; js/prompt.js adds the readout. */
#include "prompt_features.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bundle.h"
#include "core/error.h"
#include "figure.h"
#include "figure_js.h"
#include "html.h"
#include "svg.h"
#include "text.h"

enum { TOKMAX = 24, LABELMAX = 60 };

/* Token text as the figures show it (spaces visible unless keep_space), cut and escaped. */
static void put_token(lp_buf *b, const char *t, int keep_space)
{
    lp_buf cut = LP_BUF_INIT, shown = LP_BUF_INIT;
    lp_utf8_truncate(&cut, t ? t : "?", TOKMAX);
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

static void put_label(lp_buf *b, const char *s)
{
    lp_buf tmp = LP_BUF_INIT;
    lp_utf8_truncate(&tmp, s ? s : "", LABELMAX);
    lp_html_escape(b, lp_buf_str(&tmp), tmp.len);
    lp_buf_free(&tmp);
}

/* "#12 label = 3.2; #40 = 1.1" for position t (escaped). */
static void put_feats(lp_buf *b, const lp_prompt_view *v, int t, const char *sep)
{
    char n[32];
    const lp_prompt_feat *f = v->per_token + (size_t)t * v->K;
    int any = 0;
    for (int k = 0; k < v->K && f[k].feature >= 0; k++) {
        lp_buf_printf(b, "%s#%d ", k ? sep : "", f[k].feature);
        if (f[k].label && *f[k].label) {
            put_label(b, f[k].label);
            lp_buf_putc(b, ' ');
        }
        lp_buf_printf(b, "= %s", lp_fmt_num(f[k].act, n, sizeof n));
        any = 1;
    }
    if (!any)
        lp_buf_puts(b, "no feature fires");
}

static void head(lp_buf *b, const char *name)
{
    lp_buf_printf(b, "<div style=\"font-weight:bold;font-size:11px;letter-spacing:0.05em;opacity:0.75;"
                     "margin:8px 0 2px 0\">%s</div>", name);
}

json_t *lp_display_prompt_features(const lp_prompt_view *v)
{
    lp_buf html = LP_BUF_INIT, plain = LP_BUF_INIT, tmp = LP_BUF_INIT;
    char id[48], t1[32];
    uint64_t hash = lp_fig_hash_str(LP_HASH64_INIT, v->what);
    hash = lp_fig_hash_strs(hash, v->tokens, (size_t)v->T);
    for (int t = 0; t < v->T * v->K; t++)
        hash = lp_hash64(hash, &v->per_token[t].feature, sizeof(int)),
        hash = lp_hash64(hash, &v->per_token[t].act, sizeof(float));
    double mx = 0;
    for (int t = 0; t < v->T; t++)
        if (v->K > 0 && v->per_token[(size_t)t * v->K].feature >= 0 && isfinite(v->per_token[(size_t)t * v->K].act))
            mx = fmax(mx, v->per_token[(size_t)t * v->K].act);
    lp_fig_open(&html, "prompt-features", hash, "Features on each token", id);
    lp_buf_puts(&plain, "features on each token");
    if (v->what) {
        lp_buf_puts(&html, "<div style=\"font-size:11px;opacity:0.7\">");
        put_label(&html, v->what);
        lp_buf_puts(&html, "</div>");
        lp_buf_printf(&plain, " · %s", v->what);
    }
    lp_buf_puts(&html, "<div data-lp-readout=\"1\" style=\"font:12px monospace;min-height:16px;white-space:pre\"></div>"
                       "<div style=\"font-family:monospace;font-size:13px;line-height:22px;white-space:pre-wrap\">");
    for (int t = 0; t < v->T; t++) {
        const lp_prompt_feat *f = v->per_token + (size_t)t * v->K;
        double a = v->K > 0 && f[0].feature >= 0 && mx > 0 && isfinite(f[0].act) ? fmin(1, f[0].act / mx) : 0;
        lp_buf_printf(&html, "<span data-t=\"%d\" title=\"", t);
        put_token(&html, v->tokens[t], 0);
        lp_buf_puts(&html, " · ");
        put_feats(&html, v, t, "; ");
        lp_buf_printf(&html, "\" style=\"background:rgba(230,85,13,%.2f)%s\">", a > 0 ? 0.1 + 0.8 * a : 0.0,
                      a > 0.6 ? ";color:#fff" : "");
        put_token(&html, v->tokens[t], 1);
        lp_buf_puts(&html, "</span>");
    }
    lp_buf_puts(&html, "</div>");
    head(&html, "TOP FEATURES OF EACH TOKEN");
    lp_buf_puts(&html, "<table style=\"font-size:12px\"><tr><th>pos</th><th style=\"text-align:left\">token</th>"
                       "<th style=\"text-align:left\">features (activation)</th></tr>");
    for (int t = 0; t < v->T && t < LP_PROMPT_ROWS; t++) {
        lp_buf_printf(&html, "<tr><td style=\"text-align:right\">%d</td><td style=\"font-family:monospace\">", t + 1);
        put_token(&html, v->tokens[t], 0);
        lp_buf_puts(&html, "</td><td>");
        put_feats(&html, v, t, "<br>");
        lp_buf_puts(&html, "</td></tr>");
        lp_buf_reset(&tmp);
        lp_token_show(&tmp, v->tokens[t] ? v->tokens[t] : "?", v->tokens[t] ? strlen(v->tokens[t]) : 1);
        lp_buf_printf(&plain, "\n%4d ", t + 1);
        lp_utf8_truncate(&plain, lp_buf_str(&tmp), TOKMAX);
        const lp_prompt_feat *f = v->per_token + (size_t)t * v->K;
        for (int k = 0; k < v->K && f[k].feature >= 0 && k < 3; k++)
            lp_buf_printf(&plain, "  #%d (%s)", f[k].feature, lp_fmt_num(f[k].act, t1, sizeof t1));
    }
    lp_buf_puts(&html, "</table>");
    if (v->T > LP_PROMPT_ROWS) {
        lp_buf_printf(&html, "<div style=\"font-size:11px;opacity:0.8\">the first %d of %d positions (every token "
                             "above has its features in its tooltip)</div>", LP_PROMPT_ROWS, v->T);
        lp_buf_printf(&plain, "\n(the first %d of %d positions)", LP_PROMPT_ROWS, v->T);
    }
    head(&html, "STRONGEST FEATURES OF THE PROMPT");
    lp_buf_puts(&plain, "\nstrongest:");
    lp_buf_puts(&html, "<table style=\"font-size:12px\"><tr><th>feature</th><th style=\"text-align:left\">label</th>"
                       "<th>max</th><th style=\"text-align:left\">at</th><th>positions</th></tr>");
    for (int k = 0; k < v->n_strong; k++) {
        const lp_prompt_strong *s = v->strong + k;
        lp_buf_printf(&html, "<tr data-f=\"%d\"><td style=\"text-align:right\">%d</td><td>", s->feature, s->feature);
        put_label(&html, s->label);
        lp_buf_printf(&html, "</td><td style=\"text-align:right\">%s</td><td style=\"font-family:monospace\">%d ",
                      lp_fmt_num(s->max, t1, sizeof t1), s->pos + 1);
        if (s->pos >= 0 && s->pos < v->T)
            put_token(&html, v->tokens[s->pos], 0);
        lp_buf_printf(&html, "</td><td style=\"text-align:right\">%d</td></tr>", s->fired);
        lp_buf_printf(&plain, " #%d (%s)", s->feature, lp_fmt_num(s->max, t1, sizeof t1));
    }
    lp_buf_puts(&html, "</table>");
    if (v->n_strong == 0) {
        lp_buf_puts(&html, "<div style=\"font-size:12px\">no feature fires on this prompt</div>");
        lp_buf_puts(&plain, " none fires");
    }
    lp_buf_free(&tmp);
    json_t *data = json_object();
    int rc = data ? lp_fig_script(&html, id, data, lp_js_prompt) : -1;
    json_decref(data);
    lp_fig_close(&html);
    if (rc != 0) {
        lp_buf_free(&plain), lp_buf_free(&html);
        lp_set_error_code(LP_ERR_NOMEM, "prompt view: no memory");
        return NULL;
    }
    return lp_bundle_from_bufs(&plain, &html);
}
