/* The loupe logo, drawn in code so that `loupe install` needs no data files: a lens ring
 * with a handle. PNGs are written with stored (uncompressed) deflate blocks. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernelspec.h"

const char lp_logo_svg[] =
    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"64\" height=\"64\" viewBox=\"0 0 64 64\">"
    "<circle cx=\"26\" cy=\"26\" r=\"17\" fill=\"#e8f0fa\" stroke=\"#2f5f98\" stroke-width=\"6\"/>"
    "<line x1=\"39\" y1=\"39\" x2=\"58\" y2=\"58\" stroke=\"#2f5f98\" stroke-width=\"8\" stroke-linecap=\"round\"/>"
    "<circle cx=\"20\" cy=\"20\" r=\"4\" fill=\"#ffffff\"/></svg>";

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc(const unsigned char *p, size_t n, uint32_t c)
{
    c ^= 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static unsigned char *put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return p + 4;
}

static unsigned char *chunk(unsigned char *p, const char *type, const unsigned char *data, size_t n)
{
    p = put32(p, (uint32_t)n);
    unsigned char *start = p;
    memcpy(p, type, 4);
    p += 4;
    if (n)
        memcpy(p, data, n);
    p += n;
    return put32(p, crc(start, n + 4, 0));
}

/* Distance from point to segment, for the handle. */
static double seg_dist(double x, double y, double ax, double ay, double bx, double by)
{
    double dx = bx - ax, dy = by - ay;
    double t = ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double px = ax + t * dx - x, py = ay + t * dy - y;
    return sqrt(px * px + py * py);
}

unsigned char *lp_logo_png(int size, size_t *len)
{
    crc_init();
    size_t row = (size_t)size * 4 + 1;
    size_t raw_len = row * (size_t)size;
    unsigned char *raw = calloc(1, raw_len);
    if (!raw)
        return NULL;
    double s = size / 64.0;
    for (int y = 0; y < size; y++) {
        raw[(size_t)y * row] = 0; /* filter: none */
        for (int x = 0; x < size; x++) {
            double fx = (x + 0.5) / s, fy = (y + 0.5) / s; /* in the 64-unit space */
            double r = sqrt((fx - 26) * (fx - 26) + (fy - 26) * (fy - 26));
            unsigned char *px = raw + (size_t)y * row + 1 + (size_t)x * 4;
            double ring = fabs(r - 17) - 3, handle = seg_dist(fx, fy, 39, 39, 58, 58) - 4;
            double glint = sqrt((fx - 20) * (fx - 20) + (fy - 20) * (fy - 20)) - 4;
            double edge = ring < handle ? ring : handle;
            if (edge < 0.5) { /* ring and handle, anti-aliased at the edge */
                double a = edge < -0.5 ? 1 : 0.5 - edge;
                px[0] = 0x2f; px[1] = 0x5f; px[2] = 0x98; px[3] = (unsigned char)(a * 255);
            } else if (r < 17) {
                int g = glint < 0;
                px[0] = g ? 0xff : 0xe8; px[1] = g ? 0xff : 0xf0; px[2] = g ? 0xff : 0xfa; px[3] = 255;
            }
        }
    }
    size_t nblocks = raw_len / 65535 + 1;
    size_t zlen = 2 + nblocks * 5 + raw_len + 4;
    unsigned char *z = malloc(zlen);
    unsigned char *out = malloc(8 + 25 + 12 + zlen + 12);
    if (!z || !out) {
        free(raw); free(z); free(out);
        return NULL;
    }
    unsigned char *q = z;
    *q++ = 0x78;
    *q++ = 0x01;
    size_t off = 0;
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < raw_len; i++) {
        a = (a + raw[i]) % 65521;
        b = (b + a) % 65521;
    }
    do {
        size_t n = raw_len - off > 65535 ? 65535 : raw_len - off;
        *q++ = off + n == raw_len ? 1 : 0;
        *q++ = (unsigned char)(n & 0xFF);
        *q++ = (unsigned char)(n >> 8);
        *q++ = (unsigned char)(~n & 0xFF);
        *q++ = (unsigned char)((~n >> 8) & 0xFF);
        memcpy(q, raw + off, n);
        q += n;
        off += n;
    } while (off < raw_len);
    q = put32(q, (b << 16) | a);
    unsigned char ihdr[13];
    put32(ihdr, (uint32_t)size);
    put32(ihdr + 4, (uint32_t)size);
    ihdr[8] = 8;  /* bit depth */
    ihdr[9] = 6;  /* RGBA */
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    unsigned char *p = out;
    memcpy(p, "\x89PNG\r\n\x1a\n", 8);
    p += 8;
    p = chunk(p, "IHDR", ihdr, 13);
    p = chunk(p, "IDAT", z, (size_t)(q - z));
    p = chunk(p, "IEND", NULL, 0);
    *len = (size_t)(p - out);
    free(raw);
    free(z);
    return out;
}
