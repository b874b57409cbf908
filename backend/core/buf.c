#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static bool lp_buf_reserve(lp_buf *b, size_t extra)
{
    if (b->oom)
        return false;
    if (extra > (size_t)-1 / 2 - b->len) {
        b->oom = true;
        lp_set_error("string too large");
        return false;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = lp_realloc(b->data, cap, "a string");
    if (!p) {
        b->oom = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void lp_buf_append(lp_buf *b, const void *bytes, size_t n)
{
    if (!lp_buf_reserve(b, n))
        return;
    if (n)
        memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void lp_buf_puts(lp_buf *b, const char *s) { lp_buf_append(b, s, strlen(s)); }
void lp_buf_putc(lp_buf *b, char c) { lp_buf_append(b, &c, 1); }

void lp_buf_vprintf(lp_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || !lp_buf_reserve(b, (size_t)n))
        return;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void lp_buf_printf(lp_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lp_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void lp_buf_reset(lp_buf *b)
{
    b->len = 0;
    b->oom = false;
    if (b->data)
        b->data[0] = '\0';
}

void lp_buf_free(lp_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}

char *lp_buf_finish(lp_buf *b)
{
    if (b->oom) {
        lp_buf_free(b);
        return NULL;
    }
    if (!b->data && !lp_buf_reserve(b, 0))
        return NULL;
    if (!b->data) return NULL;
    b->data[b->len] = '\0';
    char *s = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

const char *lp_buf_str(const lp_buf *b) { return b->data ? b->data : ""; }
