#include "util.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

void lp_uuid(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1) {
        /* Fall back to time and a counter: ids must still be unique per process. */
        static unsigned long counter;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long v[2] = {(unsigned long)ts.tv_nsec ^ ((unsigned long)ts.tv_sec << 20), ++counter};
        memcpy(b, v, sizeof b);
    }
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}

void lp_iso_date(char out[32], int64_t us)
{
    if (us < 0) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
    }
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char tmp[96];
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(us % 1000000));
    memcpy(out, tmp, 31);
    out[31] = '\0';
}

size_t lp_utf8_codepoints(const char *s, size_t nbytes)
{
    size_t n = 0;
    for (size_t i = 0; i < nbytes; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

size_t lp_utf8_offset(const char *s, size_t len, size_t cp)
{
    size_t i = 0, n = 0;
    while (i < len) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (n == cp)
                return i;
            n++;
        }
        i++;
    }
    return len;
}

static int log_fd = 2;
static int log_off = -1;

void lp_log_set_fd(int fd) { log_fd = fd; }
int lp_log_fd(void) { return log_fd; }

void lp_log(const char *fmt, ...)
{
    if (log_off < 0) {
        const char *e = getenv("LOUPE_LOG");
        log_off = e && strcmp(e, "0") == 0;
    }
    if (log_off)
        return;
    char line[2048];
    int n = snprintf(line, sizeof line, "[loupe] ");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + ((size_t)m < sizeof line - (size_t)n - 1 ? (size_t)m : sizeof line - (size_t)n - 2);
    line[len++] = '\n';
    ssize_t w = write(log_fd, line, len);
    (void)w;
}
