#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static _Thread_local char lp_error_buf[1024];

const char *lp_last_error(void) { return lp_error_buf; }

int lp_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lp_error_buf, sizeof lp_error_buf, fmt, ap);
    va_end(ap);
    return -1;
}

void lp_clear_error(void) { lp_error_buf[0] = '\0'; }

const char *lp_format_bytes(size_t n, char *buf, size_t cap)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024.0 && u < 5) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%zu B", n);
    else
        snprintf(buf, cap, "%.1f %s", v, units[u]);
    return buf;
}

void *lp_malloc(size_t n, const char *what)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        char b[32];
        lp_set_error("cannot allocate %s for %s", lp_format_bytes(n, b, sizeof b), what);
    }
    return p;
}

void *lp_calloc(size_t count, size_t size, const char *what)
{
    if (size && count > (size_t)-1 / size) {
        lp_set_error("cannot allocate %zu x %zu bytes for %s: size overflows", count, size, what);
        return NULL;
    }
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) {
        char b[32];
        lp_set_error("cannot allocate %s for %s", lp_format_bytes(count * size, b, sizeof b), what);
    }
    return p;
}
