/* PNG encoding of palette images (8-bit indices, 256 colours, zlib-compressed): the cells
 * of heatmaps, embedded in their SVG. One byte per cell keeps a 12 x 128 x 128 attention
 * grid far under the 1 MB output budget even for incompressible data. */
#ifndef LP_DISPLAY_PNG_H
#define LP_DISPLAY_PNG_H

#include <stdint.h>

#include "color.h"
#include "core/buf.h"

/* Appends a PNG of w x h palette indices idx (row-major) with palette pal. Returns 0, or
 * -1 with the error set (sizes out of range, out of memory). */
int lp_png_indexed(lp_buf *out, const uint8_t *idx, int w, int h, const lp_rgb pal[256]);

#endif
