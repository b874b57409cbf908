#include "streams.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/error.h"

#define FLUSH_INTERVAL_MS 100
#define EAGER_BYTES (64 * 1024)

static struct {
    pthread_mutex_t mu;
    lp_buf buf[3];       /* [1] stdout, [2] stderr */
    int order[2];        /* which stream was written first since the last publish */
    int n_order;
    json_t *parent;
    size_t used, limit, dropped;
    int pipe_rd[3];      /* read ends for fds 1 and 2, or -1 */
    int saved_err;
    lp_stream_publish fn;
    void *ud;
    pthread_t th;
    int running;
    atomic_int stop;
    struct timespec last;
} S = {.mu = PTHREAD_MUTEX_INITIALIZER, .pipe_rd = {-1, -1, -1}, .saved_err = -1};

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

size_t lp_streams_limit(void)
{
    if (!S.limit) {
        const char *e = getenv("LOUPE_OUTPUT_LIMIT");
        S.limit = 1u << 20;
        if (e && *e) {
            char *end;
            double v = strtod(e, &end);
            if (*end == 'k' || *end == 'K') v *= 1024;
            else if (*end == 'm' || *end == 'M') v *= 1024 * 1024;
            if (v >= 1024)
                S.limit = (size_t)v;
        }
    }
    return S.limit;
}

/* Appends under the lock, applying the cap. */
static void append_locked(int which, const char *data, size_t n)
{
    size_t limit = lp_streams_limit();
    if (S.used >= limit) {
        S.dropped += n;
        return;
    }
    size_t keep = n;
    if (S.used + n > limit) {
        keep = limit - S.used;
        /* Cut at a line end if there is one near, so the last line shown is whole. */
        for (size_t i = keep; i > 0 && i + 4096 > keep; i--)
            if (data[i - 1] == '\n') {
                keep = i;
                break;
            }
        S.dropped += n - keep;
    }
    if (S.buf[which].len == 0 && (S.n_order == 0 || S.order[S.n_order - 1] != which) && S.n_order < 2)
        S.order[S.n_order++] = which;
    lp_buf_append(&S.buf[which], data, keep);
    S.used += keep;
}

static void drain_pipes_locked(void)
{
    char chunk[16384];
    for (int w = 1; w <= 2; w++) {
        if (S.pipe_rd[w] < 0)
            continue;
        for (;;) {
            ssize_t r = read(S.pipe_rd[w], chunk, sizeof chunk);
            if (r > 0) {
                append_locked(w, chunk, (size_t)r);
                continue;
            }
            if (r < 0 && errno == EINTR)
                continue;
            break;
        }
    }
}

static void publish_locked(void)
{
    static const char *names[3] = {"", "stdout", "stderr"};
    for (int i = 0; i < S.n_order; i++) {
        int w = S.order[i];
        if (S.buf[w].len && S.fn && !S.buf[w].oom)
            S.fn(S.ud, names[w], lp_buf_str(&S.buf[w]), S.parent);
        lp_buf_reset(&S.buf[w]);
    }
    for (int w = 1; w <= 2; w++) /* a stream written to but not in the order list */
        if (S.buf[w].len) {
            if (S.fn)
                S.fn(S.ud, names[w], lp_buf_str(&S.buf[w]), S.parent);
            lp_buf_reset(&S.buf[w]);
        }
    S.n_order = 0;
    clock_gettime(CLOCK_MONOTONIC, &S.last);
}

static void *flusher_main(void *arg)
{
    (void)arg;
    double last = now_ms();
    while (!atomic_load(&S.stop)) {
        struct pollfd p[2];
        int np = 0;
        for (int w = 1; w <= 2; w++)
            if (S.pipe_rd[w] >= 0)
                p[np++] = (struct pollfd){S.pipe_rd[w], POLLIN, 0};
        if (np)
            poll(p, (nfds_t)np, FLUSH_INTERVAL_MS / 2);
        else
            usleep(FLUSH_INTERVAL_MS * 500);
        fflush(stdout);
        pthread_mutex_lock(&S.mu);
        drain_pipes_locked();
        double t = now_ms();
        size_t pending = S.buf[1].len + S.buf[2].len;
        if (pending && (t - last >= FLUSH_INTERVAL_MS || pending >= EAGER_BYTES)) {
            publish_locked();
            last = t;
        }
        pthread_mutex_unlock(&S.mu);
    }
    return NULL;
}

int lp_streams_start(lp_stream_publish fn, void *ud, int capture)
{
    S.fn = fn;
    S.ud = ud;
    lp_streams_limit();
    int log_fd = 2;
    if (capture) {
        fflush(stdout);
        fflush(stderr);
        S.saved_err = fcntl(2, F_DUPFD_CLOEXEC, 3);
        if (S.saved_err < 0)
            return lp_set_error_code(LP_ERR_IO, "cannot duplicate stderr: %s", strerror(errno));
        log_fd = S.saved_err;
        for (int w = 1; w <= 2; w++) {
            int p[2];
            if (pipe2(p, O_CLOEXEC) < 0)
                return lp_set_error_code(LP_ERR_IO, "cannot create a pipe for fd %d: %s", w, strerror(errno));
            fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
            fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
            if (dup2(p[1], w) < 0)
                return lp_set_error_code(LP_ERR_IO, "cannot redirect fd %d: %s", w, strerror(errno));
            close(p[1]);
            S.pipe_rd[w] = p[0];
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        setvbuf(stderr, NULL, _IONBF, 0);
    }
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = pthread_create(&S.th, NULL, flusher_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return lp_set_error("cannot start the output thread");
    S.running = 1;
    return log_fd;
}

void lp_streams_stop(void)
{
    lp_streams_flush();
    if (S.running) {
        atomic_store(&S.stop, 1);
        pthread_join(S.th, NULL);
        S.running = 0;
    }
    if (S.saved_err >= 0) { /* give fds 1 and 2 back so late messages still show */
        dup2(S.saved_err, 1);
        dup2(S.saved_err, 2);
    }
    pthread_mutex_lock(&S.mu);
    json_decref(S.parent);
    S.parent = NULL;
    for (int w = 1; w <= 2; w++)
        lp_buf_free(&S.buf[w]);
    pthread_mutex_unlock(&S.mu);
}

void lp_streams_begin(json_t *parent)
{
    fflush(stdout);
    pthread_mutex_lock(&S.mu);
    drain_pipes_locked(); /* output from before this request belongs to the previous one */
    publish_locked();
    json_decref(S.parent);
    S.parent = parent ? json_incref(parent) : NULL;
    S.used = 0;
    S.dropped = 0;
    pthread_mutex_unlock(&S.mu);
}

void lp_streams_write(int which, const char *data, size_t n)
{
    if (which != 1 && which != 2)
        which = 1;
    pthread_mutex_lock(&S.mu);
    append_locked(which, data, n);
    pthread_mutex_unlock(&S.mu);
}

void lp_streams_flush(void)
{
    fflush(stdout);
    fflush(stderr);
    pthread_mutex_lock(&S.mu);
    drain_pipes_locked();
    publish_locked();
    pthread_mutex_unlock(&S.mu);
}

void lp_streams_end(void)
{
    fflush(stdout);
    fflush(stderr);
    pthread_mutex_lock(&S.mu);
    drain_pipes_locked();
    if (S.dropped) {
        char note[256], a[32], b[32];
        lp_format_bytes(S.dropped, a, sizeof a);
        lp_format_bytes(lp_streams_limit(), b, sizeof b);
        snprintf(note, sizeof note,
                 "\n[output truncated: %s more not shown; a cell may print %s (LOUPE_OUTPUT_LIMIT)]\n", a, b);
        if (S.buf[2].len == 0 && S.n_order < 2)
            S.order[S.n_order++] = 2;
        lp_buf_puts(&S.buf[2], note);
        S.dropped = 0;
        S.used = lp_streams_limit();
    }
    publish_locked();
    pthread_mutex_unlock(&S.mu);
}
