#include "text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void lp_token_show(lp_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ')
            lp_buf_puts(b, "\xE2\x90\xA3");
        else if (c == '\n')
            lp_buf_puts(b, "\\n");
        else if (c == '\t')
            lp_buf_puts(b, "\\t");
        else if (c == '\r')
            lp_buf_puts(b, "\\r");
        else if (c == '\\' && i + 1 < n && strchr("ntrx\\", s[i + 1]) && s[i + 1])
            lp_buf_puts(b, "\\\\"); /* only where it would read as one of these escapes */
        else if (c < 0x20 || c == 0x7f)
            lp_buf_printf(b, "\\x%02x", c);
        else
            lp_buf_putc(b, (char)c);
    }
}

char *lp_token_show_dup(const char *s)
{
    lp_buf b = LP_BUF_INIT;
    s = s ? s : "";
    lp_token_show(&b, s, strlen(s));
    const char *t = lp_buf_str(&b);
    char *out = lp_malloc(strlen(t) + 1, "token text");
    if (out)
        memcpy(out, t, strlen(t) + 1);
    lp_buf_free(&b);
    return out;
}

/* One code point at s (at most n bytes): its value and length (invalid bytes: 1 byte, U+FFFD). */
static unsigned decode(const unsigned char *s, size_t n, size_t *len)
{
    unsigned c = s[0];
    size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (k == 0 || k > n) {
        *len = 1;
        return 0xFFFD;
    }
    unsigned v = k == 1 ? c : c & (0x7F >> k);
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *len = 1;
            return 0xFFFD;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    *len = k;
    return v;
}

static int is_double(unsigned c)
{
    return (c >= 0x1100 && c <= 0x115F) || (c >= 0x2E80 && c <= 0xA4CF) ||
           (c >= 0xAC00 && c <= 0xD7A3) || (c >= 0xF900 && c <= 0xFAFF) ||
           (c >= 0xFE30 && c <= 0xFE4F) || (c >= 0xFF00 && c <= 0xFF60) ||
           (c >= 0xFFE0 && c <= 0xFFE6) || (c >= 0x1F000 && c <= 0x1FAFF) ||
           (c >= 0x20000 && c <= 0x3FFFD);
}

/* Width of one code point in em. */
static double em(unsigned c)
{
    if (c < 0x80) {
        if (strchr(" ijlI.,:;'|!()[]{}`\"/\\-ftr", (int)c) && c)
            return 0.40;
        if (strchr("mwMW@%&", (int)c) && c)
            return 1.0;
        if (c >= 'A' && c <= 'Z')
            return 0.78;
        return 0.66;
    }
    if (c >= 0x300 && c <= 0x36F) /* combining marks */
        return 0;
    if (is_double(c))
        return 1.05;
    return 0.80;
}

/* Bidirectional controls, which every escaper (display/html.c) draws as "\uXXXX". */
static int is_bidi(unsigned c)
{
    return c == 0x61C || c == 0x200E || c == 0x200F || (c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069);
}

/* Width in em of one code point as it is drawn: what the escapers make visible (a bidi
 * control as "\u202E", a control byte as "\x1B") is measured in that visible form. */
static double drawn_em(unsigned c)
{
    char vis[8];
    if (is_bidi(c))
        snprintf(vis, sizeof vis, "\\u%04X", c);
    else if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F)
        snprintf(vis, sizeof vis, "\\x%02X", c);
    else
        return em(c);
    double w = 0;
    for (const char *v = vis; *v; v++)
        w += em((unsigned char)*v);
    return w;
}

double lp_text_width_cut(const char *s, size_t max_chars, double size)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t n = strlen((const char *)p), i = 0, chars = 0;
    double w = 0;
    while (i < n) {
        if (max_chars && chars == max_chars) {
            w += 1.0; /* the ellipsis */
            break;
        }
        size_t len;
        w += drawn_em(decode(p + i, n - i, &len));
        i += len;
        chars++;
    }
    return w * size;
}

double lp_text_width(const char *s, double size) { return lp_text_width_cut(s, 0, size); }
