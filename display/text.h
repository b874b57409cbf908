/* How text looks in figures and tables: one notation for tokens (shared by every figure,
 * table, title, axis and hover, and by display/js/), and an estimate of the width a string
 * takes in the figures' font, so that layouts make room for their labels instead of
 * clipping them. */
#ifndef LP_DISPLAY_TEXT_H
#define LP_DISPLAY_TEXT_H

#include <stddef.h>

#include "core/buf.h"

/* Appends the token s (n bytes) as shown everywhere: each space as "␣" (U+2423), newline,
 * tab and carriage return as "\n", "\t", "\r", other control characters (C0, DEL) as
 * "\xHH", a backslash as "\\" where it would otherwise read as one of these escapes
 * (before n, t, r, x or a backslash); everything else as it is (not HTML-escaped; invalid UTF-8 is
 * left to the escaping that follows). */
void lp_token_show(lp_buf *b, const char *s, size_t n);
/* The same as a new NUL-terminated string (free() it), or NULL with lp_last_error() set
 * when memory runs out. s NULL shows as "". */
char *lp_token_show_dup(const char *s);

/* Estimated width in pixels of the UTF-8 string s at font size size (px) in the figures'
 * sans-serif font, by character class: narrow (i, l, punctuation, space), normal, wide (m,
 * w, M, W, @, %), and double width (CJK, Hangul, full-width forms, emoji). On the generous
 * side of DejaVu Sans, the widest of the fonts the figures name. */
double lp_text_width(const char *s, double size);
/* The width of at most max_chars code points of s plus an ellipsis when cut, as lp_svg_text
 * draws it (max_chars 0: all of s). */
double lp_text_width_cut(const char *s, size_t max_chars, double size);

#endif
