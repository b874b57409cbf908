/* Figures: pure functions from data to MIME bundles (see bundle.h). Every bundle has
 * text/plain (a short summary) and text/html built from sanitizer-safe parts only: divs,
 * spans and tables with inline styles and `title` tooltips, and pictures as
 * <img src="data:image/svg+xml;base64,...">. Heatmaps and token strips carry a small
 * inline script (display/js/, embedded at build time) that adds hover values (and zoom on
 * large heatmaps) where scripts run; it finds its own output through
 * document.currentScript (or its data-lp-id), runs once per output, keeps no global
 * state, and leaves the figure as it is when its live view cannot be built.
 *
 * Common rules:
 *  - All strings (titles, labels, tokens) are untrusted: escaped, made valid UTF-8, long
 *    ones truncated in pictures. Any of them may be NULL.
 *  - NaN and infinities are drawn in the "missing" grey (or skipped in plots) and counted
 *    in the caption ("3 values missing (NaN/Inf)").
 *  - Empty data gives an explicit "nothing to show" bundle.
 *  - Large data is downsampled or truncated, with a note saying so.
 *  - Output is deterministic: the same input gives the same bytes (ids are content hashes).
 *  - Each function returns a NEW reference, or NULL with lp_last_error() set (OOM only). */
#ifndef LP_DISPLAY_FIGURES_H
#define LP_DISPLAY_FIGURES_H

#include <jansson.h>
#include <stddef.h>

#include "color.h"

/* ---- heatmaps (heatmap.c) ---- */
typedef struct lp_heatmap_opts {
    const char *title;
    const char *const *row_labels; /* rows entries, or NULL (e.g. query tokens) */
    const char *const *col_labels; /* cols entries, or NULL (e.g. key tokens) */
    const char *row_name, *col_name; /* axis names ("query", "key"), or NULL */
    int scale; /* LP_SCALE_AUTO (diverging when any value < 0), _SEQUENTIAL, _DIVERGING */
} lp_heatmap_opts;

/* v: rows x cols, row-major. o may be NULL. More than 256 per side: block-averaged. */
json_t *lp_display_heatmap(const float *v, size_t rows, size_t cols, const lp_heatmap_opts *o);
/* n heatmaps of rows x cols (v: n x rows x cols, contiguous) with one shared colour scale,
 * e.g. every head of a layer. panel_titles: n entries or NULL ("0", "1", ...). More than
 * 196608 cells in all: block-averaged; more than 64 panels: the first 64. */
json_t *lp_display_heatmap_grid(const float *v, size_t n, size_t rows, size_t cols,
                                const char *const *panel_titles, const lp_heatmap_opts *o);

/* ---- plots (plot.c) ---- */
typedef struct lp_plot_opts {
    const char *title, *xlabel, *ylabel;
} lp_plot_opts;

typedef struct lp_series {
    const char *name;  /* legend entry, or NULL */
    const double *x;   /* n x values, or NULL for 0, 1, 2, ... */
    const double *y;   /* n y values */
    size_t n;
} lp_series;

/* Line plot of several series with a legend. Non-finite points break the line. Series of
 * more than 2000 points are reduced to the min and max of 1000 buckets (the envelope). */
json_t *lp_display_line(const lp_series *s, size_t nseries, const lp_plot_opts *o);
/* Scatter plot; labels: n entries or NULL (only the first 40 are drawn). Above 20000
 * points, every k-th point is drawn (noted). */
json_t *lp_display_scatter(const double *x, const double *y, size_t n,
                           const char *const *labels, const lp_plot_opts *o);
/* Histogram of the finite values of v into bins bins (<= 0: 30; at most 500). */
json_t *lp_display_hist(const double *v, size_t n, int bins, const lp_plot_opts *o);
/* Horizontal bar chart (values may be negative); labels: n entries or NULL. At most 100
 * bars are drawn (the first 100, noted). */
json_t *lp_display_bar(const char *const *labels, const double *v, size_t n,
                       const lp_plot_opts *o);

/* ---- tokens and tables (tokens.c, table.c) ---- */
/* Tokens highlighted by value (diverging colours centred on zero, value in the `title`
 * tooltip). values may be NULL (plain tokens). At most 4096 tokens (noted). */
json_t *lp_display_tokens(const char *const *tokens, const float *values, size_t n,
                          const char *title);
/* A table of rows x cols strings (cells row-major; NULL cells are empty), with an optional
 * header of cols strings. Cells that are numbers are right-aligned. At most 500 rows. */
json_t *lp_display_table(const char *title, const char *const *header,
                         const char *const *cells, size_t rows, size_t cols);

#endif
