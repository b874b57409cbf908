#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool t_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return false;
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

bool t_bundle_valid(const json_t *b)
{
    if (!json_is_object(b) || !json_is_string(json_object_get(b, "text/plain")))
        return false;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)b, k, v) {
        if (!json_is_string(v))
            return false;
        if (!t_utf8_valid(json_string_value(v), json_string_length(v)))
            return false;
        if (strlen(json_string_value(v)) != json_string_length(v))
            return false; /* no NUL inside */
    }
    return true;
}

const char *t_get(const json_t *b, const char *mime)
{
    return json_string_value(json_object_get(b, mime));
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

char *t_base64_decode(const char *s, size_t len, size_t *n)
{
    char *out = malloc(len / 4 * 3 + 4);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '=')
            break;
        int v = b64val(s[i]);
        if (v < 0) { free(out); return NULL; }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)(acc >> bits & 0xFF);
        }
    }
    out[o] = 0;
    if (n) *n = o;
    return out;
}

char *t_svg_at(const char *html, int k)
{
    static const char pre[] = "data:image/svg+xml;base64,";
    const char *p = html;
    for (int i = 0; p; i++) {
        p = strstr(p, pre);
        if (!p)
            return NULL;
        p += strlen(pre);
        if (i == k) {
            size_t len = strcspn(p, "\"");
            return t_base64_decode(p, len, NULL);
        }
    }
    return NULL;
}

int t_count(const char *hay, const char *needle)
{
    int c = 0;
    size_t nl = strlen(needle);
    for (const char *p = hay; (p = strstr(p, needle)); p += nl)
        c++;
    return c;
}

size_t t_bundle_bytes(const json_t *b)
{
    char *s = json_dumps(b, JSON_COMPACT);
    size_t n = s ? strlen(s) : 0;
    free(s);
    return n;
}
