/* Plain-text training data: reading files that must be UTF-8 text.
 *
 *   char *s; size_t n;
 *   if (lp_text_read_file("corpus.txt", &s, &n) < 0) report(lp_last_error());
 *
 * A file that is missing, empty, or not text (invalid UTF-8, or a NUL byte) is an error
 * naming the file (and, for bad bytes, the byte offset). */
#ifndef LP_DATA_TEXT_H
#define LP_DATA_TEXT_H

#include <stddef.h>

/* Reads path into *text (malloc'd, NUL-terminated, *len bytes without the NUL; the caller
 * frees). 0, or -1 with the error set. */
int lp_text_read_file(const char *path, char **text, size_t *len);

/* The byte offset of the first byte that is not part of valid UTF-8 text (a NUL counts as
 * not text), or len when all of s[0..len) is text. */
size_t lp_text_check_utf8(const char *s, size_t len);

#endif
