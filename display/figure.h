/* Internal helpers shared by the figure modules (not part of the public API): the HTML
 * frame of a figure (title, caption, embedded data, behaviour script), content hashes for
 * ids, and plot axes with "nice" ticks. */
#ifndef LP_DISPLAY_FIGURE_H
#define LP_DISPLAY_FIGURE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* Hash of a string (NULL hashes as a marker) and of a float array, for ids. */
uint64_t lp_fig_hash_str(uint64_t h, const char *s);
uint64_t lp_fig_hash_strs(uint64_t h, const char *const *s, size_t n);

/* Opens <div class="lp-fig lp-<kind>" data-lp-id="lp-<kind>-<hash>" ...>; writes the id
 * into id (at least 48 bytes). Then the title, if any. */
void lp_fig_open(lp_buf *html, const char *kind, uint64_t hash, const char *title, char *id);
void lp_fig_close(lp_buf *html);
/* A caption line in HTML (small, muted) and in text/plain (its own line). note may hold
 * our own text only; missing > 0 adds "N values missing (NaN/Inf)". */
void lp_fig_caption(lp_buf *html, lp_buf *plain, size_t missing, const char *note);
/* <script type="application/json">data</script><script>js</script>, with "@ID@" in js
 * (one of figure_js.h's lp_js_<name>) replaced by id. Returns 0 or -1. */
int lp_fig_script(lp_buf *html, const char *id, const json_t *data, const char *js);

/* Axes of a plot: data ranges mapped to a pixel rectangle. */
typedef struct lp_axes {
    double x0, y0, w, h;       /* plot area in pixels */
    double xlo, xhi, ylo, yhi; /* data ranges */
} lp_axes;

/* Widens [*lo, *hi] to round numbers (and a non-empty range). */
void lp_nice_range(double *lo, double *hi);
double lp_axes_x(const lp_axes *a, double x);
double lp_axes_y(const lp_axes *a, double y);
/* The widest tick label (px, font size 10) of the ticks lp_axes_draw puts on [lo, hi]
 * (target: 5 for y, 6 for x). */
double lp_axes_tick_width(double lo, double hi, int target);
/* Axes in a W x H picture whose left and right margins fit the tick labels and the y axis
 * label (12 px above, 46 below for the x ticks and label). */
lp_axes lp_axes_fit(double W, double H, double xlo, double xhi, double ylo, double yhi, int xticks);
/* Frame, grid lines, tick labels (x ticks skipped when xticks == 0), axis labels (untrusted). */
void lp_axes_draw(lp_buf *svg, const lp_axes *a, const char *xlabel, const char *ylabel,
                  int xticks);

#endif
