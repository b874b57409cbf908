/* Plain-text files: read whole, checked to be UTF-8 text. */
#include "data/text.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"

size_t lp_text_check_utf8(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = u[i];
        if (c < 0x80) {
            if (c == 0)
                return i;
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) { k = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { k = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { k = 4; cp = c & 0x07; min = 0x10000; }
        else return i;
        if (i + k > len)
            return i;
        for (size_t j = 1; j < k; j++) {
            if ((u[i + j] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (u[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += k;
    }
    return len;
}

int lp_text_read_file(const char *path, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    struct stat st;
    if (stat(path, &st) != 0)
        return lp_set_error_code(LP_ERR_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return lp_set_error_code(LP_ERR_IO, "%s: is a folder, not a text file", path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return lp_set_error_code(LP_ERR_IO, "%s: %s", path, strerror(errno));
    size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096, n = 0;
    char *buf = lp_malloc(cap, "a text file");
    if (!buf) {
        fclose(f);
        return lp_error_prefix("%s: ", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = lp_realloc(buf, cap * 2, "a text file");
            if (!nb) {
                free(buf);
                fclose(f);
                return lp_set_error_code(LP_ERR_NOMEM, "%s: cannot allocate memory for its contents", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return lp_set_error_code(LP_ERR_IO, "%s: read error", path);
    }
    buf[n] = 0;
    if (n == 0) {
        free(buf);
        return lp_set_error("%s: the file is empty", path);
    }
    size_t bad = lp_text_check_utf8(buf, n);
    if (bad < n) {
        unsigned b = (unsigned char)buf[bad];
        free(buf);
        return lp_set_error("%s: not a text file: byte 0x%02X at offset %zu is not valid UTF-8 text", path, b, bad);
    }
    *text = buf;
    *len = n;
    return 0;
}
