/* A growable byte buffer, used by every layer to build strings (HTML, SVG, JSON text,
 * stream output). Always NUL-terminated. On allocation failure the buffer is marked
 * failed (`oom`), later appends do nothing, and lp_buf_finish returns NULL with the error
 * set, so callers check once at the end instead of after every append. */
#ifndef LP_BUF_H
#define LP_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct lp_buf {
    char *data; /* owned; NUL-terminated; NULL until the first append */
    size_t len;
    size_t cap;
    bool oom;
} lp_buf;

#define LP_BUF_INIT {NULL, 0, 0, false}

void lp_buf_append(lp_buf *b, const void *bytes, size_t n);
void lp_buf_puts(lp_buf *b, const char *s);
void lp_buf_putc(lp_buf *b, char c);
void lp_buf_printf(lp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lp_buf_vprintf(lp_buf *b, const char *fmt, va_list ap);
void lp_buf_reset(lp_buf *b); /* len = 0, keeps the memory */
void lp_buf_free(lp_buf *b);
/* The contents as a malloc'd string the caller owns (buffer emptied), or NULL on OOM. */
char *lp_buf_finish(lp_buf *b);
/* The contents, borrowed ("" when empty). */
const char *lp_buf_str(const lp_buf *b);

#endif
