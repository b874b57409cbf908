/* Code point classes, UTF-8 and GPT-2's byte-level alphabet. */
#include "unicode.h"

int lp_uni_class(uint32_t cp)
{
    /* \s in Oniguruma's Unicode mode: the White_Space property. */
    if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
        (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
        cp == 0x205F || cp == 0x3000)
        return LP_UNI_SPACE;
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')
            return LP_UNI_LETTER;
        if (cp >= '0' && cp <= '9')
            return LP_UNI_NUMBER;
        return LP_UNI_OTHER;
    }
    if (cp == LP_UNI_INVALID)
        return LP_UNI_OTHER;
    size_t lo = 0, hi = lp_uni_nranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < lp_uni_ranges[mid].lo)
            hi = mid;
        else if (cp > lp_uni_ranges[mid].hi)
            lo = mid + 1;
        else
            return lp_uni_ranges[mid].cls;
    }
    return LP_UNI_OTHER;
}

size_t lp_utf8_decode(const unsigned char *s, size_t len, size_t i, uint32_t *cp)
{
    unsigned c = s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = LP_UNI_INVALID;
        return 1;
    }
    if (len - i < n) {
        *cp = LP_UNI_INVALID;
        return 1;
    }
    for (size_t k = 1; k < n; k++) {
        unsigned d = s[i + k];
        if ((d & 0xC0) != 0x80) {
            *cp = LP_UNI_INVALID;
            return 1;
        }
        v = (v << 6) | (d & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = LP_UNI_INVALID;
        return 1;
    }
    *cp = v;
    return n;
}

size_t lp_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int lp_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = lp_utf8_decode(u, len, i, &cp);
        if (cp == LP_UNI_INVALID || cp == 0)
            return 0;
        i += k;
    }
    return 1;
}

/* bytes_to_unicode(): printable Latin-1 bytes map to themselves; the other 68 bytes map,
 * in byte order, to U+0100, U+0101, ... */
static int printable(unsigned b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t lp_byte_to_cp(unsigned char b)
{
    if (printable(b))
        return b;
    uint32_t n = 0;
    for (unsigned k = 0; k < b; k++)
        n += !printable(k);
    return 0x100 + n;
}

int lp_cp_to_byte(uint32_t cp)
{
    if (cp < 0x100)
        return printable(cp) ? (int)cp : -1;
    if (cp >= 0x100 + 68)
        return -1;
    uint32_t n = cp - 0x100;
    for (unsigned k = 0; k < 256; k++)
        if (!printable(k) && n-- == 0)
            return (int)k;
    return -1;
}
