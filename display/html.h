/* Escaping of untrusted text for HTML and SVG: every string that comes from a model or a
 * user (tokens, labels, file names) passes through here. Invalid UTF-8 becomes U+FFFD,
 * NUL and other C0 controls become visible escapes, so the output is always valid UTF-8.
 * Bidirectional controls (right-to-left override U+202E, marks U+200E/U+200F, isolates)
 * become visible "\u202E" in every mode, so that no token can reorder the text around it. */
#ifndef LP_HTML_H
#define LP_HTML_H

#include <stddef.h>

#include "core/buf.h"

/* Appends s (n bytes) escaped for HTML text and attribute values (& < > " '). */
void lp_html_escape(lp_buf *out, const char *s, size_t n);
/* Like lp_html_escape, for XML (SVG text and attributes): also replaces U+FFFE/U+FFFF,
 * which XML forbids, so that the SVG always parses. */
void lp_xml_escape(lp_buf *out, const char *s, size_t n);
/* Appends s with invalid UTF-8 replaced by U+FFFD (no HTML escaping): for text/plain. */
void lp_utf8_sanitize(lp_buf *out, const char *s, size_t n);

#endif
