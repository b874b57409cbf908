/* Helpers for the display tests: a strict UTF-8 validator, a base64 decoder, and access to
 * the SVG documents that a bundle's text/html embeds as data URIs. */
#ifndef LP_TEST_DISPLAY_UTIL_H
#define LP_TEST_DISPLAY_UTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* True when s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool t_utf8_valid(const char *s, size_t n);
/* Every string in the bundle is valid UTF-8, and text/plain is present. */
bool t_bundle_valid(const json_t *b);
/* The string b[mime], or NULL. Borrowed. */
const char *t_get(const json_t *b, const char *mime);
/* Decodes base64; returns a malloc'd NUL-terminated buffer (length in *n) or NULL. */
char *t_base64_decode(const char *s, size_t len, size_t *n);
/* The k-th "data:image/svg+xml;base64," image of html, decoded (malloc'd), or NULL. */
char *t_svg_at(const char *html, int k);
/* Number of non-overlapping occurrences of needle in hay. */
int t_count(const char *hay, const char *needle);
/* The size in bytes of everything the bundle holds (its serialised JSON). */
size_t t_bundle_bytes(const json_t *b);

#endif
