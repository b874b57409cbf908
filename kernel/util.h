/* Small helpers of the protocol layer: message ids, ISO 8601 dates, UTF-8 code points. */
#ifndef LP_UTIL_H
#define LP_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* A fresh random UUID4 string ("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx") into out[37]. */
void lp_uuid(char out[37]);
/* UTC time as "2026-11-24T10:00:00.123456Z" into out[32]; us_since_epoch < 0 means now. */
void lp_iso_date(char out[32], int64_t us_since_epoch);
/* Number of code points in the first nbytes of s (invalid bytes count one each). */
size_t lp_utf8_codepoints(const char *s, size_t nbytes);
/* Byte offset of code point `cp` in s (len bytes); clamps to len. */
size_t lp_utf8_offset(const char *s, size_t len, size_t cp);
/* Seconds on the monotonic clock (for intervals and deadlines). Inline, so that code
 * compiled into unit tests without util.c can use it. */
static inline double lp_now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}



/* The kernel's own log: one line per event on the original stderr (saved before fds 1/2 are
 * redirected into the notebook), prefixed "[loupe] ". LOUPE_LOG=0 silences it. */
void lp_log_set_fd(int fd);
int lp_log_fd(void);
void lp_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#endif
