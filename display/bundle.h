/* MIME bundles: the value every display function returns. A bundle is a jansson object
 * mapping a MIME type to a string ({"text/plain": "...", "text/html": "..."}); the kernel
 * sends it as display_data. This module builds bundles and the pieces that every figure
 * shares: base64, the <img src="data:image/svg+xml;base64,..."> tag, the "nothing to show"
 * bundle, content-derived ids and JSON embedded safely in HTML.
 *
 * Ownership: functions returning json_t * return a NEW reference (json_decref it), or NULL
 * with lp_last_error() set when memory runs out. Strings passed in are copied. */
#ifndef LP_DISPLAY_BUNDLE_H
#define LP_DISPLAY_BUNDLE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* A new bundle holding text/plain = text (made valid UTF-8; NULL means ""). */
json_t *lp_bundle_new(const char *text);
/* Sets b[mime] = a copy of str (made valid UTF-8). Returns 0, or -1 with the error set. */
int lp_bundle_set(json_t *b, const char *mime, const char *str);
/* Like lp_bundle_set with the contents of buf, which is freed in every case. Returns -1
 * (error set) if buf ran out of memory while it was built. */
int lp_bundle_set_buf(json_t *b, const char *mime, lp_buf *buf);
/* Finishes a figure: a bundle from plain and html (both freed in every case), NULL on OOM. */
json_t *lp_bundle_from_bufs(lp_buf *plain, lp_buf *html);

/* The explicit empty result: "<what>: nothing to show" in text/plain and text/html. */
json_t *lp_bundle_nothing(const char *what);

/* Appends the standard base64 (RFC 4648, padded) of n bytes. */
void lp_base64_encode(lp_buf *out, const void *data, size_t n);

/* Appends <img src="data:image/svg+xml;base64,..." width=.. alt=.. title=..> for an SVG
 * document of svg_len bytes. alt and title are untrusted and escaped (title may be NULL). */
void lp_html_svg_img(lp_buf *out, const char *svg, size_t svg_len, int width_px,
                     const char *alt, const char *title);

/* 64-bit FNV-1a, for ids derived from content (outputs are deterministic, never random). */
uint64_t lp_hash64(uint64_t h, const void *data, size_t n);
#define LP_HASH64_INIT 0xcbf29ce484222325ULL

/* Appends a JSON value as the text of a <script type="application/json"> element: compact,
 * ASCII only, with < > & written as \u003c \u003e \u0026 so that no token can close the
 * element. Returns 0 or -1 (error set). Does not steal v. */
int lp_html_json_script(lp_buf *out, const json_t *v);

/* A JSON string from untrusted bytes (made valid UTF-8 first): a new reference. */
json_t *lp_json_str(const char *s);

/* Formats a number for labels and tooltips: "%.4g"-like, "NaN", "inf", "-inf". buf >= 32. */
const char *lp_fmt_num(double v, char *buf, size_t cap);

#endif
