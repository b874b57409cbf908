/* Colour scales for figures. Diverging (signed values centred on zero: blue - near white -
 * red, ColorBrewer RdBu, colour-blind safe), sequential (non-negative values: viridis),
 * categorical (series: Okabe-Ito), and one "missing" grey for NaN and infinities. All are
 * readable on JupyterLab's light and dark themes. Pure functions, no allocation. */
#ifndef LP_DISPLAY_COLOR_H
#define LP_DISPLAY_COLOR_H

#include <stddef.h>

typedef struct lp_rgb {
    unsigned char r, g, b;
} lp_rgb;

extern const lp_rgb LP_COLOR_MISSING;
/* Axis lines, ticks and text in figures: a mid grey that reads on white and on near-black. */
#define LP_COLOR_INK "#7f7f7f"
#define LP_COLOR_GRID "#7f7f7f33"

/* t in [-1, 1] (clamped): -1 blue, 0 near white, +1 red. NaN: missing. */
lp_rgb lp_color_diverging(double t);
/* t in [0, 1] (clamped): viridis, dark purple to yellow. NaN: missing. */
lp_rgb lp_color_sequential(double t);
/* The i-th colour of a categorical palette (cycles). */
lp_rgb lp_color_category(size_t i);
/* "#rrggbb" into out (at least 8 bytes); returns out. */
char *lp_color_hex(lp_rgb c, char *out);
/* Relative luminance in [0, 1]: choose black or white text on a coloured background. */
double lp_color_luminance(lp_rgb c);

/* A scale fitted to data: values lo..hi map to t 0..1. Diverging scales are symmetric
 * around zero (lo = -hi). */
typedef struct lp_scale {
    int diverging;
    double lo, hi;
} lp_scale;

enum { LP_SCALE_AUTO = 0, LP_SCALE_SEQUENTIAL = 1, LP_SCALE_DIVERGING = 2 };

/* Fits a scale to v[0..n) (non-finite values ignored and counted into *missing when not
 * NULL). kind: LP_SCALE_AUTO (diverging when any value is negative), or a fixed kind. */
lp_scale lp_scale_fit(const float *v, size_t n, int kind, size_t *missing);
/* Position of v on the scale in [0, 1] (clamped), or NaN for a non-finite v. */
double lp_scale_pos(const lp_scale *s, double v);
lp_rgb lp_scale_color(const lp_scale *s, double v);
/* Quantised position: 0 for missing, 1..255 along the scale (palette indices). */
unsigned char lp_scale_index(const lp_scale *s, double v);
/* The value at palette index i (1..255), the inverse of lp_scale_index up to rounding. */
double lp_scale_value(const lp_scale *s, int i);
/* The 256-entry palette matching lp_scale_index. */
void lp_scale_palette(const lp_scale *s, lp_rgb pal[256]);

#endif
