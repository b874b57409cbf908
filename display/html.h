/* Escaping of untrusted text for HTML and SVG: every string that comes from a model or a
 * user (tokens, labels, file names) passes through here. Invalid UTF-8 becomes U+FFFD,
 * NUL and other C0 controls become visible escapes, so the output is always valid UTF-8. */
#ifndef LP_HTML_H
#define LP_HTML_H

#include <stddef.h>

#include "core/buf.h"

/* Appends s (n bytes) escaped for HTML text and attribute values (& < > " '). */
void lp_html_escape(lp_buf *out, const char *s, size_t n);
/* Appends s with invalid UTF-8 replaced by U+FFFD (no HTML escaping): for text/plain. */
void lp_utf8_sanitize(lp_buf *out, const char *s, size_t n);

#endif
