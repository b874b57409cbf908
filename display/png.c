#include "png.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"

static void be32(lp_buf *b, uint32_t v)
{
    unsigned char p[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    lp_buf_append(b, p, 4);
}

static void chunk(lp_buf *b, const char *type, const void *data, size_t n)
{
    be32(b, (uint32_t)n);
    uLong crc = crc32(0, (const Bytef *)type, 4);
    if (n)
        crc = crc32(crc, data, (uInt)n);
    lp_buf_append(b, type, 4);
    lp_buf_append(b, data, n);
    be32(b, (uint32_t)crc);
}

int lp_png_indexed(lp_buf *out, const uint8_t *idx, int w, int h, const lp_rgb pal[256])
{
    if (w <= 0 || h <= 0 || w > 16384 || h > 16384)
        return lp_set_error("image size %dx%d out of range", w, h);
    size_t raw_n = (size_t)h * ((size_t)w + 1);
    unsigned char *raw = lp_malloc(raw_n, "an image");
    uLongf z_n = compressBound((uLong)raw_n);
    unsigned char *z = lp_malloc(z_n, "an image");
    if (!raw || !z) {
        free(raw);
        free(z);
        return -1;
    }
    for (int y = 0; y < h; y++) {
        raw[(size_t)y * (w + 1)] = 0; /* filter: none */
        memcpy(raw + (size_t)y * (w + 1) + 1, idx + (size_t)y * w, (size_t)w);
    }
    int zrc = compress2(z, &z_n, raw, (uLong)raw_n, 9);
    free(raw);
    if (zrc != Z_OK) {
        free(z);
        return lp_set_error("cannot compress an image");
    }
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    lp_buf_append(out, sig, 8);
    unsigned char ihdr[13] = {0};
    for (int i = 0; i < 4; i++) {
        ihdr[i] = (unsigned char)((uint32_t)w >> (24 - 8 * i));
        ihdr[4 + i] = (unsigned char)((uint32_t)h >> (24 - 8 * i));
    }
    ihdr[8] = 8; /* bit depth */
    ihdr[9] = 3; /* colour type: palette */
    chunk(out, "IHDR", ihdr, 13);
    unsigned char plte[768];
    for (int i = 0; i < 256; i++) {
        plte[3 * i] = pal[i].r;
        plte[3 * i + 1] = pal[i].g;
        plte[3 * i + 2] = pal[i].b;
    }
    chunk(out, "PLTE", plte, sizeof plte);
    chunk(out, "IDAT", z, z_n);
    chunk(out, "IEND", NULL, 0);
    free(z);
    return out->oom ? -1 : 0;
}
