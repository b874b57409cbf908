#include "error.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char lp_error_buf[1024];
static _Thread_local lp_err lp_error_code;

const char *lp_last_error(void) { return lp_error_buf; }
lp_err lp_last_error_code(void) { return lp_error_buf[0] ? lp_error_code : LP_ERR_NONE; }

const char *lp_error_code_name(lp_err code)
{
    switch (code) {
    case LP_ERR_NONE: return "no error";
    case LP_ERR_INPUT: return "bad input";
    case LP_ERR_NOMEM: return "out of memory";
    case LP_ERR_INTERRUPTED: return "interrupted";
    case LP_ERR_IO: return "input/output error";
    case LP_ERR_FORMAT: return "bad file format";
    case LP_ERR_DEVICE: return "device error";
    case LP_ERR_INTERNAL: return "internal error";
    }
    return "unknown error";
}

static void set_message(lp_err code, const char *fmt, va_list ap)
{
    vsnprintf(lp_error_buf, sizeof lp_error_buf, fmt, ap);
    if (!lp_error_buf[0]) /* an empty message would read as "no error" */
        snprintf(lp_error_buf, sizeof lp_error_buf, "%s", lp_error_code_name(code));
    lp_error_code = code;
}

int lp_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(LP_ERR_INPUT, fmt, ap);
    va_end(ap);
    return -1;
}

int lp_set_error_code(lp_err code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(code, fmt, ap);
    va_end(ap);
    return -1;
}

int lp_error_prefix(const char *fmt, ...)
{
    char old[sizeof lp_error_buf];
    memcpy(old, lp_error_buf, sizeof old);
    lp_err code = lp_last_error_code();
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(lp_error_buf, sizeof lp_error_buf, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof lp_error_buf)
        snprintf(lp_error_buf + n, sizeof lp_error_buf - (size_t)n, "%s", old);
    lp_error_code = code != LP_ERR_NONE ? code : LP_ERR_INPUT;
    return -1;
}

void lp_clear_error(void)
{
    lp_error_buf[0] = '\0';
    lp_error_code = LP_ERR_NONE;
}

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

/* ---- the failing allocator ---- */

static atomic_long lp_alloc_countdown = -1; /* allocations left before the failure; < 0: off */
static atomic_int lp_alloc_fired;

void lp_alloc_fail_after(long n)
{
    atomic_store(&lp_alloc_fired, 0);
    atomic_store(&lp_alloc_countdown, n < 0 ? -1 : n);
}

int lp_alloc_fail_fired(void) { return atomic_load(&lp_alloc_fired); }

int lp_alloc_fail_now(void)
{
    if (atomic_load_explicit(&lp_alloc_countdown, memory_order_relaxed) < 0)
        return 0;
    if (atomic_fetch_sub(&lp_alloc_countdown, 1) != 0)
        return 0;
    atomic_store(&lp_alloc_fired, 1);
    return 1;
}

/* ---- checked allocation ---- */

static void *no_memory(size_t n, const char *what)
{
    char b[32];
    lp_set_error_code(LP_ERR_NOMEM, "cannot allocate %s for %s", lp_format_bytes(n, b, sizeof b), what);
    return NULL;
}

void *lp_malloc(size_t n, const char *what)
{
    void *p = lp_alloc_fail_now() ? NULL : malloc(n ? n : 1);
    return p ? p : no_memory(n, what);
}

void *lp_calloc(size_t count, size_t size, const char *what)
{
    if (size && count > (size_t)-1 / size) {
        lp_set_error_code(LP_ERR_NOMEM, "cannot allocate %zu x %zu bytes for %s: size overflows", count, size, what);
        return NULL;
    }
    void *p = lp_alloc_fail_now() ? NULL : calloc(count ? count : 1, size ? size : 1);
    return p ? p : no_memory(count * size, what);
}

void *lp_realloc(void *p, size_t n, const char *what)
{
    void *q = lp_alloc_fail_now() ? NULL : realloc(p, n ? n : 1);
    return q ? q : no_memory(n, what);
}

char *lp_strdup(const char *s, const char *what)
{
    size_t n = strlen(s) + 1;
    char *d = lp_malloc(n, what);
    if (d)
        memcpy(d, s, n);
    return d;
}
