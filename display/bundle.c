#include "bundle.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "html.h"

static char *sanitized(const char *s)
{
    lp_buf b = LP_BUF_INIT;
    lp_buf_puts(&b, ""); /* so that "" still allocates */
    if (s)
        lp_utf8_sanitize(&b, s, strlen(s));
    return lp_buf_finish(&b);
}

json_t *lp_bundle_new(const char *text)
{
    json_t *b = json_object();
    if (!b || lp_bundle_set(b, "text/plain", text ? text : "") != 0) {
        json_decref(b);
        lp_set_error_code(LP_ERR_NOMEM, "cannot allocate a display bundle");
        return NULL;
    }
    return b;
}

int lp_bundle_set(json_t *b, const char *mime, const char *str)
{
    char *s = sanitized(str);
    if (!s)
        return -1;
    json_t *v = json_string(s);
    free(s);
    if (!v || json_object_set_new(b, mime, v) != 0)
        return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate a display bundle");
    return 0;
}

int lp_bundle_set_buf(json_t *b, const char *mime, lp_buf *buf)
{
    if (buf->oom) {
        lp_buf_free(buf);
        return -1;
    }
    int rc = lp_bundle_set(b, mime, lp_buf_str(buf));
    lp_buf_free(buf);
    return rc;
}

json_t *lp_bundle_from_bufs(lp_buf *plain, lp_buf *html)
{
    json_t *b = NULL;
    if (!plain->oom)
        b = lp_bundle_new(lp_buf_str(plain));
    lp_buf_free(plain);
    if (b && lp_bundle_set_buf(b, "text/html", html) != 0) {
        json_decref(b);
        return NULL;
    }
    lp_buf_free(html);
    return b;
}

json_t *lp_bundle_nothing(const char *what)
{
    lp_buf plain = LP_BUF_INIT, html = LP_BUF_INIT;
    const char *w = what && *what ? what : "display";
    lp_utf8_sanitize(&plain, w, strlen(w));
    lp_buf_puts(&plain, ": nothing to show (no data)");
    lp_buf_puts(&html, "<div class=\"lp-empty\" style=\"font-style:italic;opacity:0.75\">");
    lp_html_escape(&html, w, strlen(w));
    lp_buf_puts(&html, ": nothing to show (no data)</div>");
    return lp_bundle_from_bufs(&plain, &html);
}

void lp_base64_encode(lp_buf *out, const void *data, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    char q[4];
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        q[0] = tab[v >> 18]; q[1] = tab[(v >> 12) & 63];
        q[2] = tab[(v >> 6) & 63]; q[3] = tab[v & 63];
        lp_buf_append(out, q, 4);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        q[0] = tab[v >> 18]; q[1] = tab[(v >> 12) & 63]; q[2] = '='; q[3] = '=';
        lp_buf_append(out, q, 4);
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        q[0] = tab[v >> 18]; q[1] = tab[(v >> 12) & 63]; q[2] = tab[(v >> 6) & 63]; q[3] = '=';
        lp_buf_append(out, q, 4);
    }
}

void lp_html_svg_img(lp_buf *out, const char *svg, size_t svg_len, int width_px,
                     const char *alt, const char *title)
{
    lp_buf_puts(out, "<img src=\"data:image/svg+xml;base64,");
    lp_base64_encode(out, svg, svg_len);
    lp_buf_printf(out, "\" width=\"%d\" style=\"max-width:100%%;height:auto;display:block\" alt=\"",
                  width_px);
    if (alt)
        lp_html_escape(out, alt, strlen(alt));
    lp_buf_putc(out, '"');
    if (title) {
        lp_buf_puts(out, " title=\"");
        lp_html_escape(out, title, strlen(title));
        lp_buf_putc(out, '"');
    }
    lp_buf_puts(out, ">");
}

uint64_t lp_hash64(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

int lp_html_json_script(lp_buf *out, const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_ESCAPE_SLASH | JSON_ENCODE_ANY |
                          JSON_REAL_PRECISION(5));
    if (!s)
        return lp_set_error("cannot encode display data as JSON");
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '<': lp_buf_puts(out, "\\u003c"); break;
        case '>': lp_buf_puts(out, "\\u003e"); break;
        case '&': lp_buf_puts(out, "\\u0026"); break;
        default: lp_buf_putc(out, *p);
        }
    }
    free(s);
    return 0;
}

json_t *lp_json_str(const char *s)
{
    char *t = sanitized(s);
    if (!t)
        return NULL;
    json_t *v = json_string(t);
    free(t);
    return v;
}

const char *lp_fmt_num(double v, char *buf, size_t cap)
{
    if (isnan(v))
        snprintf(buf, cap, "NaN");
    else if (isinf(v))
        snprintf(buf, cap, v > 0 ? "inf" : "-inf");
    else if (v == 0)
        snprintf(buf, cap, "0");
    else
        snprintf(buf, cap, "%.4g", v);
    return buf;
}
