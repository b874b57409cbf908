#include "html.h"

#include <stdint.h>
#include <stdio.h>

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not valid. */
static size_t utf8_valid_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* Bidirectional controls (U+061C, U+200E/F, U+202A-E, U+2066-9) would let a token reorder
 * the text around it (a right-to-left override), so they are shown as visible escapes. */
static int is_bidi_control(const unsigned char *s, size_t len)
{
    if (len == 2)
        return s[0] == 0xD8 && s[1] == 0x9C;
    if (len != 3 || s[0] != 0xE2)
        return 0;
    if (s[1] == 0x80)
        return s[2] == 0x8E || s[2] == 0x8F || (s[2] >= 0xAA && s[2] <= 0xAE);
    return s[1] == 0x81 && s[2] >= 0xA6 && s[2] <= 0xA9;
}

/* U+FFFE and U+FFFF are valid UTF-8 but not XML characters: an SVG containing them does
 * not parse. */
static int is_xml_nonchar(const unsigned char *s, size_t len)
{
    return len == 3 && s[0] == 0xEF && s[1] == 0xBF && (s[2] == 0xBE || s[2] == 0xBF);
}

/* mode: 0 text/plain, 1 HTML, 2 XML (HTML plus the XML character rules). */
static void escape(lp_buf *out, const char *str, size_t n, int mode)
{
    int html = mode != 0;
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        size_t len = utf8_valid_len(s + i, n - i);
        if (len == 0) {
            lp_buf_puts(out, "\xEF\xBF\xBD");
            i++;
            continue;
        }
        unsigned c = s[i];
        if (html && len == 1) {
            switch (c) {
            case '&': lp_buf_puts(out, "&amp;"); break;
            case '<': lp_buf_puts(out, "&lt;"); break;
            case '>': lp_buf_puts(out, "&gt;"); break;
            case '"': lp_buf_puts(out, "&quot;"); break;
            case '\'': lp_buf_puts(out, "&#39;"); break;
            case '\n': case '\t': lp_buf_putc(out, (char)c); break;
            default:
                if (c < 0x20 || c == 0x7F)
                    lp_buf_printf(out, "\\x%02X", c);
                else
                    lp_buf_putc(out, (char)c);
            }
        } else if (!html && len == 1 && c == 0) {
            lp_buf_puts(out, "\\0");
        } else if (is_bidi_control(s + i, len)) {
            uint32_t cp = len == 2 ? 0x61C : (uint32_t)(s[i] & 0x0F) << 12 |
                                                 (uint32_t)(s[i + 1] & 0x3F) << 6 | (s[i + 2] & 0x3F);
            lp_buf_printf(out, "\\u%04X", (unsigned)cp);
        } else if (mode == 2 && is_xml_nonchar(s + i, len)) {
            lp_buf_puts(out, "\xEF\xBF\xBD");
        } else {
            lp_buf_append(out, s + i, len);
        }
        i += len;
    }
}

void lp_html_escape(lp_buf *out, const char *s, size_t n) { escape(out, s, n, 1); }
void lp_utf8_sanitize(lp_buf *out, const char *s, size_t n) { escape(out, s, n, 0); }
void lp_xml_escape(lp_buf *out, const char *s, size_t n) { escape(out, s, n, 2); }
