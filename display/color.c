#include "color.h"

#include <math.h>
#include <stdio.h>

const lp_rgb LP_COLOR_MISSING = {0x9a, 0x9a, 0x9a};

/* ColorBrewer RdBu, reversed so that negative is blue. */
static const lp_rgb RDBU[] = {
    {0x05, 0x30, 0x61}, {0x21, 0x66, 0xac}, {0x43, 0x93, 0xc3}, {0x92, 0xc5, 0xde},
    {0xd1, 0xe5, 0xf0}, {0xf7, 0xf7, 0xf7}, {0xfd, 0xdb, 0xc7}, {0xf4, 0xa5, 0x82},
    {0xd6, 0x60, 0x4d}, {0xb2, 0x18, 0x2b}, {0x67, 0x00, 0x1f},
};
static const lp_rgb VIRIDIS[] = {
    {0x44, 0x01, 0x54}, {0x48, 0x28, 0x78}, {0x3e, 0x4a, 0x89}, {0x31, 0x68, 0x8e},
    {0x26, 0x82, 0x8e}, {0x1f, 0x9e, 0x89}, {0x35, 0xb7, 0x79}, {0x6d, 0xcd, 0x59},
    {0xb4, 0xde, 0x2c}, {0xfd, 0xe7, 0x25},
};
/* Okabe-Ito, without black (unreadable on a dark theme). */
static const lp_rgb OKABE_ITO[] = {
    {0x00, 0x72, 0xb2}, {0xe6, 0x9f, 0x00}, {0x00, 0x9e, 0x73}, {0xd5, 0x5e, 0x00},
    {0x56, 0xb4, 0xe9}, {0xcc, 0x79, 0xa7}, {0xf0, 0xe4, 0x42}, {0x99, 0x99, 0x99},
};

static lp_rgb ramp(const lp_rgb *stops, size_t n, double t)
{
    if (isnan(t))
        return LP_COLOR_MISSING;
    if (t <= 0)
        return stops[0];
    if (t >= 1)
        return stops[n - 1];
    double x = t * (double)(n - 1);
    size_t i = (size_t)x;
    if (i >= n - 1)
        return stops[n - 1];
    double f = x - (double)i;
    lp_rgb a = stops[i], b = stops[i + 1];
    lp_rgb c = {(unsigned char)lround(a.r + (b.r - a.r) * f),
                (unsigned char)lround(a.g + (b.g - a.g) * f),
                (unsigned char)lround(a.b + (b.b - a.b) * f)};
    return c;
}

lp_rgb lp_color_diverging(double t)
{
    return ramp(RDBU, sizeof RDBU / sizeof *RDBU, isnan(t) ? t : (t + 1) / 2);
}

lp_rgb lp_color_sequential(double t) { return ramp(VIRIDIS, sizeof VIRIDIS / sizeof *VIRIDIS, t); }

lp_rgb lp_color_category(size_t i) { return OKABE_ITO[i % (sizeof OKABE_ITO / sizeof *OKABE_ITO)]; }

char *lp_color_hex(lp_rgb c, char *out)
{
    snprintf(out, 8, "#%02x%02x%02x", c.r, c.g, c.b);
    return out;
}

static double lin(unsigned char c)
{
    double x = c / 255.0;
    return x <= 0.04045 ? x / 12.92 : pow((x + 0.055) / 1.055, 2.4);
}

double lp_color_luminance(lp_rgb c) { return 0.2126 * lin(c.r) + 0.7152 * lin(c.g) + 0.0722 * lin(c.b); }

lp_scale lp_scale_fit(const float *v, size_t n, int kind, size_t *missing)
{
    double lo = INFINITY, hi = -INFINITY;
    size_t miss = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            miss++;
            continue;
        }
        if (v[i] < lo) lo = v[i];
        if (v[i] > hi) hi = v[i];
    }
    if (missing)
        *missing = miss;
    lp_scale s = {0, 0, 1};
    if (lo > hi) /* no finite value */
        return s;
    s.diverging = kind == LP_SCALE_AUTO ? lo < 0 : kind == LP_SCALE_DIVERGING;
    if (s.diverging) {
        double m = fmax(fabs(lo), fabs(hi));
        if (!(m > 0))
            m = 1;
        s.lo = -m;
        s.hi = m;
    } else {
        s.lo = lo;
        s.hi = hi > lo ? hi : lo + 1;
    }
    return s;
}

double lp_scale_pos(const lp_scale *s, double v)
{
    if (!isfinite(v))
        return NAN;
    double t = (v - s->lo) / (s->hi - s->lo);
    return t < 0 ? 0 : t > 1 ? 1 : t;
}

lp_rgb lp_scale_color(const lp_scale *s, double v)
{
    double t = lp_scale_pos(s, v);
    return s->diverging ? lp_color_diverging(isnan(t) ? t : 2 * t - 1) : lp_color_sequential(t);
}

unsigned char lp_scale_index(const lp_scale *s, double v)
{
    double t = lp_scale_pos(s, v);
    return isnan(t) ? 0 : (unsigned char)(1 + lround(t * 254));
}

double lp_scale_value(const lp_scale *s, int i)
{
    return s->lo + (s->hi - s->lo) * (i - 1) / 254.0;
}

void lp_scale_palette(const lp_scale *s, lp_rgb pal[256])
{
    pal[0] = LP_COLOR_MISSING;
    for (int i = 1; i < 256; i++) {
        double t = (i - 1) / 254.0;
        pal[i] = s->diverging ? lp_color_diverging(2 * t - 1) : lp_color_sequential(t);
    }
}
