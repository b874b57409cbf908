/* A small SVG writer for figures. Output is a standalone document meant to be embedded as
 * <img src="data:image/svg+xml;base64,...">, so it must parse as XML on its own: every text
 * goes through lp_xml_escape. Coordinates are printed with at most 2 decimals, so that the
 * same input always gives the same bytes. All functions append to an lp_buf (whose OOM flag
 * the caller checks once at the end). */
#ifndef LP_DISPLAY_SVG_H
#define LP_DISPLAY_SVG_H

#include <stddef.h>

#include "core/buf.h"

/* <svg xmlns=... viewBox="0 0 w h" width=w height=h> with a default font. */
void lp_svg_begin(lp_buf *b, double w, double h);
void lp_svg_end(lp_buf *b);
/* <g transform="translate(x,y)">; groups nest. */
void lp_svg_group_begin(lp_buf *b, double x, double y);
void lp_svg_group_end(lp_buf *b);
/* fill: a colour such as "#rrggbb" (trusted: our own constants, never user text). */
void lp_svg_rect(lp_buf *b, double x, double y, double w, double h, const char *fill);
/* A rectangle outline. */
void lp_svg_frame(lp_buf *b, double x, double y, double w, double h, const char *stroke);
void lp_svg_line(lp_buf *b, double x1, double y1, double x2, double y2, const char *stroke,
                 double width);
/* Polyline through n points xy[2i], xy[2i+1]. */
void lp_svg_polyline(lp_buf *b, const double *xy, size_t n, const char *stroke, double width);
void lp_svg_circle(lp_buf *b, double cx, double cy, double r, const char *fill);
/* Text (untrusted: escaped). anchor: "start", "middle" or "end". max_chars > 0 truncates
 * to that many code points with an ellipsis. rotate: degrees about (x, y), 0 for none. */
void lp_svg_text(lp_buf *b, double x, double y, const char *anchor, double size,
                 const char *fill, double rotate, const char *text, size_t max_chars);
/* <image> with a PNG (n bytes) as a data URI, scaled without smoothing. */
void lp_svg_png(lp_buf *b, double x, double y, double w, double h, const void *png, size_t n);

/* Appends at most max_chars code points of s (whole UTF-8 sequences), then "…" if cut.
 * Not escaped. */
void lp_utf8_truncate(lp_buf *b, const char *s, size_t max_chars);

#endif
