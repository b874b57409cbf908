#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "util.h"

struct lp_server {
    void *ctx;      /* main context: shell, control, stdin, iopub, inproc */
    void *hb_ctx;   /* heartbeat's own context */
    void *sock[LP_CH_COUNT];
    void *pub_push; /* inproc PUSH to the iopub thread, guarded by pub_lock */
    void *pub_pull; /* its other end: the iopub thread's once it has started */
    pthread_mutex_t pub_lock;
    lp_signer signer;
    char session[64];
    pthread_t control_th, iopub_th, hb_th;
    int control_started, iopub_started, hb_started;
    atomic_int stop;
    atomic_int failed;   /* a socket stopped working: lp_server_run returns -1 */
    atomic_int iopub_stop;
    atomic_int run_done; /* lp_server_run has returned */
    pid_t parent;        /* > 0: end when this parent is gone (JPY_PARENT_PID was set) */
    lp_handler shell_fn, control_fn;
    void *ud;
};

#define IOPUB_INPROC "inproc://loupe-iopub"

/* ---- frames over zmq ---------------------------------------------------------------- */

static int recv_frames(void *sock, lp_frames *f, int flags)
{
    for (;;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, flags) < 0) {
            int e = errno;
            zmq_msg_close(&part);
            lp_frames_clear(f);
            errno = e;
            return -1;
        }
        int rc = lp_frames_push(f, zmq_msg_data(&part), zmq_msg_size(&part));
        int more = zmq_msg_more(&part);
        zmq_msg_close(&part);
        if (rc < 0) {
            /* Out of memory: drain the rest of this message so the socket stays usable. */
            while (more) {
                zmq_msg_init(&part);
                if (zmq_msg_recv(&part, sock, 0) < 0)
                    more = 0;
                else
                    more = zmq_msg_more(&part);
                zmq_msg_close(&part);
            }
            lp_frames_clear(f);
            errno = ENOMEM;
            return -1;
        }
        if (!more)
            return 0;
        flags = 0; /* the rest of a multipart message is already here */
    }
}

static int send_frames(void *sock, const lp_frames *f)
{
    for (size_t i = 0; i < f->n; i++) {
        int flags = i + 1 < f->n ? ZMQ_SNDMORE : 0;
        if (zmq_send(sock, f->v[i].data, f->v[i].len, flags) < 0)
            return -1;
    }
    return 0;
}

/* ---- publishing ----------------------------------------------------------------------- */

static int build(lp_server *s, lp_frames *out, const lp_frames *ids, const char *msg_type,
                 json_t *parent, json_t *content, json_t *metadata)
{
    int rc = lp_msg_build(&s->signer, s->session, ids, msg_type, parent, metadata, content, out);
    if (rc < 0)
        lp_log("cannot encode a %s message", msg_type);
    return rc;
}

int lp_server_publish(lp_server *s, const char *msg_type, json_t *parent, json_t *content,
                      json_t *metadata)
{
    lp_frames f = {0};
    /* The first frame is the topic: subscribers filter on it; clients subscribe to all. */
    char topic[128];
    snprintf(topic, sizeof topic, "kernel.%s.%s", s->session, msg_type);
    lp_frames ids = {0};
    lp_frames_push(&ids, topic, strlen(topic));
    int rc = build(s, &f, &ids, msg_type, parent, content, metadata);
    lp_frames_clear(&ids);
    if (rc == 0) {
        pthread_mutex_lock(&s->pub_lock);
        rc = send_frames(s->pub_push, &f);
        int e = errno;
        pthread_mutex_unlock(&s->pub_lock);
        if (rc < 0)
            lp_log("cannot publish %s: %s", msg_type, zmq_strerror(e));
    }
    lp_frames_clear(&f);
    return rc;
}

void lp_server_status(lp_server *s, const lp_msg *req, const char *state)
{
    lp_server_publish(s, "status", req ? req->header : NULL,
                      json_pack("{s:s}", "execution_state", state), NULL);
}

int lp_server_reply(lp_server *s, int channel, const lp_msg *req, const char *msg_type,
                    json_t *content)
{
    lp_frames f = {0};
    int rc = build(s, &f, &req->ids, msg_type, req->header, content, NULL);
    if (rc == 0 && send_frames(s->sock[channel], &f) < 0) {
        lp_log("cannot send %s on %s: %s", msg_type, lp_channel_names[channel], zmq_strerror(errno));
        rc = -1;
    }
    lp_frames_clear(&f);
    return rc;
}

/* ---- receiving requests --------------------------------------------------------------- */

/* Reads one message from sock and decodes it. 1 = got one, 0 = nothing usable. */
static int read_request(lp_server *s, void *sock, const char *chan, lp_msg *out)
{
    lp_frames f = {0};
    if (recv_frames(sock, &f, ZMQ_DONTWAIT) < 0) {
        if (errno != EAGAIN)
            lp_log("%s: receive failed: %s", chan, zmq_strerror(errno));
        return 0;
    }
    int rc = lp_msg_decode(&s->signer, &f, out);
    lp_frames_clear(&f);
    if (rc == -2) {
        lp_log("%s: dropped a message with a %s", chan, lp_last_error());
        return 0;
    }
    if (rc < 0) {
        lp_log("%s: dropped a malformed message: %s", chan, lp_last_error());
        return 0;
    }
    return 1;
}

/* A socket that cannot be polled any more (not an interrupted wait) leaves the kernel deaf
 * on that channel: say so, and end the shell loop with a failure instead of spinning. */
static void poll_failed(lp_server *s, const char *chan, int err)
{
    lp_log("%s: cannot poll the socket: %s; the kernel stops", chan, zmq_strerror(err));
    atomic_store(&s->failed, 1);
    lp_server_stop(s);
}

int lp_server_next_shell(lp_server *s, lp_msg *out, int timeout_ms)
{
    zmq_pollitem_t it = {s->sock[LP_CH_SHELL], 0, ZMQ_POLLIN, 0};
    for (;;) {
        int n = zmq_poll(&it, 1, timeout_ms);
        if (n < 0 && errno == EINTR) {
            if (timeout_ms == 0)
                return 0;
            continue;
        }
        if (n < 0) {
            poll_failed(s, "shell", errno);
            return 0;
        }
        if (n == 0)
            return 0;
        if (read_request(s, s->sock[LP_CH_SHELL], "shell", out))
            return 1;
        if (timeout_ms != 0)
            return 0; /* a bad message used up this wait; the caller loops */
    }
}

/* ---- threads -------------------------------------------------------------------------- */

/* jupyter_client sets JPY_PARENT_PID for a kernel it owns: when that frontend dies (killed,
 * crashed) nobody can reach the kernel any more, and it would hold its memory, models and
 * GPU for ever. The control thread notices that the parent is gone (this process was
 * re-parented), stops the shell loop and interrupts the running cell; a cell stuck in a C
 * call that never polls the flag does not keep the process beyond 3 s. */
static void parent_gone(lp_server *s)
{
    lp_log("the frontend that started this kernel (pid %d) is gone: shutting down", (int)s->parent);
    lp_server_stop(s);
    lp_interrupt_request();
    lp_server_exit_soon(s);
}

static void *control_main(void *arg)
{
    lp_server *s = arg;
    zmq_pollitem_t it = {s->sock[LP_CH_CONTROL], 0, ZMQ_POLLIN, 0};
    double next_check = lp_now_s() + 1;
    while (!atomic_load(&s->stop)) {
        int n = zmq_poll(&it, 1, 100);
        if (n < 0 && errno != EINTR) {
            poll_failed(s, "control", errno);
            break;
        }
        if (s->parent > 0 && lp_now_s() >= next_check) {
            next_check = lp_now_s() + 1;
            if (getppid() != s->parent) {
                parent_gone(s);
                break;
            }
        }
        if (n <= 0)
            continue;
        lp_msg m;
        if (read_request(s, s->sock[LP_CH_CONTROL], "control", &m)) {
            s->control_fn(s, &m, s->ud);
            lp_msg_clear(&m);
        }
    }
    return NULL;
}

static void send_welcome(lp_server *s, const char *topic, size_t len)
{
    char t[256];
    if (len >= sizeof t)
        len = sizeof t - 1;
    memcpy(t, topic, len);
    t[len] = '\0';
    lp_frames ids = {0}, f = {0};
    lp_frames_push(&ids, t, len);
    if (build(s, &f, &ids, "iopub_welcome", NULL, json_pack("{s:s}", "subscription", t), NULL) == 0 &&
        send_frames(s->sock[LP_CH_IOPUB], &f) < 0)
        lp_log("iopub: cannot send iopub_welcome: %s", zmq_strerror(errno));
    lp_frames_clear(&ids);
    lp_frames_clear(&f);
}

/* An XPUB socket drops what it publishes while nobody has subscribed. A client that sends
 * a request as soon as kernel_info is answered (jupyter console does, with the first line of
 * piped input) can have its SUB connection still on the way: busy and idle of that request
 * were lost, and the client waited for idle forever. So until the first subscription the
 * iopub thread holds what is published and sends it, in order, right after the welcome; it
 * gives up holding (and lets the socket drop, as before) after IOPUB_HOLD_MS or
 * IOPUB_HOLD_MAX messages or IOPUB_HOLD_BYTES, whichever comes first. */
#define IOPUB_HOLD_MS 10000
#define IOPUB_HOLD_MAX 1024
#define IOPUB_HOLD_BYTES ((size_t)64 << 20)

typedef struct {
    lp_frames *v;
    size_t n, cap, bytes;
    int on;
    double until;
} pub_hold;

static void hold_release(lp_server *s, pub_hold *h)
{
    for (size_t i = 0; i < h->n; i++) {
        if (send_frames(s->sock[LP_CH_IOPUB], &h->v[i]) < 0)
            lp_log("iopub: send failed: %s", zmq_strerror(errno));
        lp_frames_clear(&h->v[i]);
    }
    free(h->v);
    memset(h, 0, sizeof *h); /* on = 0: from now on published messages go straight out */
}

/* Takes f (cleared) if it is held; returns 0 when the caller should send it now. */
static int hold_take(lp_server *s, pub_hold *h, lp_frames *f)
{
    if (!h->on)
        return 0;
    size_t bytes = 0;
    for (size_t i = 0; i < f->n; i++)
        bytes += f->v[i].len;
    if (lp_now_s() > h->until || h->n >= IOPUB_HOLD_MAX || h->bytes + bytes > IOPUB_HOLD_BYTES) {
        hold_release(s, h);
        return 0;
    }
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 16;
        lp_frames *v = realloc(h->v, cap * sizeof *v);
        if (!v) {
            hold_release(s, h);
            return 0;
        }
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n++] = *f;
    h->bytes += bytes;
    memset(f, 0, sizeof *f);
    return 1;
}

/* Owns the XPUB socket and the PULL end of the inproc pipe (bound by lp_server_start). */
static void *iopub_main(void *arg)
{
    lp_server *s = arg;
    void *pull = s->pub_pull;
    pub_hold hold = {.on = 1, .until = lp_now_s() + IOPUB_HOLD_MS / 1000.0};
    zmq_pollitem_t it[2] = {{pull, 0, ZMQ_POLLIN, 0}, {s->sock[LP_CH_IOPUB], 0, ZMQ_POLLIN, 0}};
    for (;;) {
        int n = zmq_poll(it, 2, 50);
        if (n < 0 && errno != EINTR) {
            /* Nothing more can be published; the shell loop ends with a failure. */
            poll_failed(s, "iopub", errno);
            break;
        }
        if (hold.on && lp_now_s() > hold.until)
            hold_release(s, &hold);
        if (n <= 0) {
            if (atomic_load(&s->iopub_stop))
                break;
            continue;
        }
        if (it[0].revents & ZMQ_POLLIN) {
            lp_frames f = {0};
            if (recv_frames(pull, &f, ZMQ_DONTWAIT) == 0 && !hold_take(s, &hold, &f)) {
                if (send_frames(s->sock[LP_CH_IOPUB], &f) < 0)
                    lp_log("iopub: send failed: %s", zmq_strerror(errno));
            }
            lp_frames_clear(&f);
        }
        if (it[1].revents & ZMQ_POLLIN) {
            lp_frames f = {0};
            if (recv_frames(s->sock[LP_CH_IOPUB], &f, ZMQ_DONTWAIT) == 0) {
                if (f.n == 1 && f.v[0].len >= 1 && f.v[0].data[0] == 1) {
                    send_welcome(s, f.v[0].data + 1, f.v[0].len - 1);
                    if (hold.on)
                        hold_release(s, &hold);
                }
                lp_frames_clear(&f);
            }
        }
    }
    hold_release(s, &hold);
    zmq_close(pull);
    return NULL;
}

static void *hb_main(void *arg)
{
    void *hb = arg;
    zmq_proxy(hb, hb, NULL); /* returns when the heartbeat context is shut down */
    if (errno != ETERM)
        lp_log("heartbeat: the echo stopped: %s", zmq_strerror(errno));
    zmq_close(hb);
    return NULL;
}

/* ---- start and stop ------------------------------------------------------------------- */

/* zmq_setsockopt, with a failure named in lp_last_error(). */
static int set_opt(void *sock, const char *sock_name, int opt, const char *opt_name, const void *v, size_t n)
{
    if (zmq_setsockopt(sock, opt, v, n) < 0)
        return lp_set_error("cannot set %s on the %s socket: %s", opt_name, sock_name, zmq_strerror(errno));
    return 0;
}
#define SET_OPT(sock, name, opt, v) set_opt((sock), (name), (opt), #opt, &(v), sizeof(v))

static void *bind_socket(void *ctx, int type, const lp_conn *c, int ch)
{
    const char *name = lp_channel_names[ch];
    void *sock = zmq_socket(ctx, type);
    if (!sock) {
        lp_set_error_code(LP_ERR_IO, "cannot create the %s socket: %s", name, zmq_strerror(errno));
        return NULL;
    }
    int linger = 1000, one = 1, hwm = 0; /* hwm 0: never drop published output on a slow subscriber */
    int64_t maxsize = (int64_t)1 << 30;
    if (SET_OPT(sock, name, ZMQ_LINGER, linger) < 0 || SET_OPT(sock, name, ZMQ_MAXMSGSIZE, maxsize) < 0 ||
        (type == ZMQ_ROUTER && SET_OPT(sock, name, ZMQ_ROUTER_HANDOVER, one) < 0) ||
        (type == ZMQ_XPUB && (SET_OPT(sock, name, ZMQ_XPUB_VERBOSE, one) < 0 || SET_OPT(sock, name, ZMQ_SNDHWM, hwm) < 0)))
        goto fail;
    char ep[320];
    lp_conn_endpoint(c, ch, ep, sizeof ep);
    if (zmq_bind(sock, ep) < 0) {
        lp_set_error_code(LP_ERR_IO, "cannot bind the %s socket to %s: %s", name, ep, zmq_strerror(errno));
        goto fail;
    }
    return sock;
fail:
    zmq_close(sock);
    return NULL;
}

/* The pipe through which every thread publishes: a PULL end bound here (the iopub thread
 * takes it) and a PUSH end connected to it. Binding first, on this thread, means the
 * connect cannot find the endpoint missing, so it is not retried. */
static int open_pub_pipe(lp_server *s)
{
    s->pub_pull = zmq_socket(s->ctx, ZMQ_PULL);
    if (!s->pub_pull)
        return lp_set_error("cannot create the iopub pipe (inproc PULL): %s", zmq_strerror(errno));
    if (zmq_bind(s->pub_pull, IOPUB_INPROC) < 0)
        return lp_set_error("cannot bind the iopub pipe to %s: %s", IOPUB_INPROC, zmq_strerror(errno));
    s->pub_push = zmq_socket(s->ctx, ZMQ_PUSH);
    if (!s->pub_push)
        return lp_set_error("cannot create the iopub pipe (inproc PUSH): %s", zmq_strerror(errno));
    int hwm = 0, linger = 2000;
    if (SET_OPT(s->pub_push, "iopub pipe", ZMQ_SNDHWM, hwm) < 0 ||
        SET_OPT(s->pub_push, "iopub pipe", ZMQ_LINGER, linger) < 0)
        return -1;
    if (zmq_connect(s->pub_push, IOPUB_INPROC) < 0)
        return lp_set_error("cannot connect the iopub pipe to %s: %s", IOPUB_INPROC, zmq_strerror(errno));
    return 0;
}

static int start_thread(pthread_t *th, void *(*fn)(void *), void *arg, const char *what)
{
    int rc = pthread_create(th, NULL, fn, arg);
    if (rc != 0)
        return lp_set_error("cannot start the %s thread: %s", what, strerror(rc));
    return 0;
}

lp_server *lp_server_start(const lp_conn *c, const char *session, lp_handler shell,
                           lp_handler control, void *ud)
{
    if (c->has_curve) {
        lp_set_error("the connection file asks for CURVE encryption, which loupe does not support");
        return NULL;
    }
    lp_server *s = calloc(1, sizeof *s);
    if (!s) {
        lp_set_error_code(LP_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->pub_lock, NULL);
    snprintf(s->session, sizeof s->session, "%s", session);
    s->shell_fn = shell;
    s->control_fn = control;
    /* Watched only when a frontend says it owns the kernel; the parent to watch is the
     * one we have now (a wrapper script between the two stays our parent while it lives). */
    const char *jpy = getenv("JPY_PARENT_PID");
    if (jpy && *jpy && getppid() > 1)
        s->parent = getppid();
    s->ud = ud;
    if (lp_signer_init(&s->signer, c->scheme, c->key) < 0) {
        pthread_mutex_destroy(&s->pub_lock);
        free(s);
        return NULL;
    }
    /* Threads created from here on (ZeroMQ's I/O threads included) never see SIGINT. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);

    static const int types[LP_CH_COUNT] = {ZMQ_ROUTER, ZMQ_ROUTER, ZMQ_ROUTER, ZMQ_XPUB, ZMQ_REP};
    s->ctx = zmq_ctx_new();
    if (!s->ctx) {
        lp_set_error("cannot create a ZeroMQ context: %s", zmq_strerror(errno));
        goto fail;
    }
    s->hb_ctx = zmq_ctx_new();
    if (!s->hb_ctx) {
        lp_set_error("cannot create the heartbeat's ZeroMQ context: %s", zmq_strerror(errno));
        goto fail;
    }
    for (int ch = 0; ch < LP_CH_COUNT; ch++) {
        s->sock[ch] = bind_socket(ch == LP_CH_HB ? s->hb_ctx : s->ctx, types[ch], c, ch);
        if (!s->sock[ch])
            goto fail;
    }
    if (open_pub_pipe(s) < 0 || start_thread(&s->iopub_th, iopub_main, s, "iopub") < 0)
        goto fail;
    s->iopub_started = 1; /* pub_pull is the iopub thread's from now on */
    if (start_thread(&s->hb_th, hb_main, s->sock[LP_CH_HB], "heartbeat") < 0)
        goto fail;
    s->hb_started = 1;
    s->sock[LP_CH_HB] = NULL; /* owned by its thread now */
    if (start_thread(&s->control_th, control_main, s, "control") < 0)
        goto fail;
    s->control_started = 1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return s;

fail:
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", lp_last_error());
        lp_server_free(s);
        lp_set_error("%s", msg);
    }
    return NULL;
}

int lp_server_run(lp_server *s)
{
    while (!atomic_load(&s->stop)) {
        lp_msg m;
        if (lp_server_next_shell(s, &m, 100)) {
            s->shell_fn(s, &m, s->ud);
            lp_msg_clear(&m);
        }
    }
    atomic_store(&s->run_done, 1);
    return atomic_load(&s->failed) ? -1 : 0;
}

void lp_server_stop(lp_server *s) { atomic_store(&s->stop, 1); }

void lp_server_exit_soon(lp_server *s)
{
    for (int i = 0; i < 60 && !atomic_load(&s->run_done); i++)
        usleep(50000);
    if (!atomic_load(&s->run_done)) {
        lp_log("the running cell did not stop within 3 s; exiting now");
        _exit(0);
    }
}

int lp_server_stopping(lp_server *s) { return atomic_load(&s->stop); }
const char *lp_server_session(lp_server *s) { return s->session; }

static void close_socket(void **sock)
{
    if (*sock && zmq_close(*sock) < 0)
        lp_log("cannot close a socket: %s", zmq_strerror(errno));
    *sock = NULL;
}

/* zmq_ctx_term waits for the sockets' lingering messages; a signal can interrupt it, and
 * it is then restarted (a few times at most: a process that is ending must not hang). */
static void term_context(void *ctx)
{
    if (!ctx)
        return;
    for (int i = 0; i < 10; i++) {
        if (zmq_ctx_term(ctx) == 0)
            return;
        if (errno != EINTR)
            break;
    }
    lp_log("cannot end a ZeroMQ context: %s", zmq_strerror(errno));
}

void lp_server_free(lp_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, 1);
    if (s->control_started)
        pthread_join(s->control_th, NULL);
    atomic_store(&s->iopub_stop, 1);
    if (s->iopub_started)
        pthread_join(s->iopub_th, NULL);
    if (s->hb_started) {
        zmq_ctx_shutdown(s->hb_ctx);
        pthread_join(s->hb_th, NULL);
    }
    for (int ch = 0; ch < LP_CH_COUNT; ch++)
        close_socket(&s->sock[ch]);
    if (!s->iopub_started)
        close_socket(&s->pub_pull); /* else closed by the iopub thread */
    close_socket(&s->pub_push);
    term_context(s->ctx);
    term_context(s->hb_ctx);
    lp_signer_clear(&s->signer);
    pthread_mutex_destroy(&s->pub_lock);
    free(s);
}

/* ---- stdin ---------------------------------------------------------------------------- */

int lp_server_input(lp_server *s, const lp_msg *req, const char *prompt, int password, lp_buf *out)
{
    void *sock = s->sock[LP_CH_STDIN];
    /* Forget stale replies (an earlier request that was interrupted). */
    lp_msg stale;
    while (read_request(s, sock, "stdin", &stale))
        lp_msg_clear(&stale);
    if (lp_server_reply(s, LP_CH_STDIN, req, "input_request",
                        json_pack("{s:s, s:b}", "prompt", prompt, "password", password)) < 0)
        return lp_set_error("cannot send the input request");
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    for (;;) {
        if (lp_interrupted())
            return lp_set_error_code(LP_ERR_INTERRUPTED, "interrupted");
        if (atomic_load(&s->stop))
            return lp_set_error("the kernel is shutting down");
        int n = zmq_poll(&it, 1, 50);
        if (n < 0 && errno != EINTR)
            return lp_set_error("cannot wait for input on the stdin socket: %s", zmq_strerror(errno));
        if (n <= 0)
            continue;
        lp_msg m;
        if (!read_request(s, sock, "stdin", &m))
            continue;
        int ok = strcmp(lp_msg_type(&m), "input_reply") == 0;
        if (ok) {
            const char *v = json_string_value(json_object_get(m.content, "value"));
            lp_buf_reset(out);
            lp_buf_puts(out, v ? v : "");
        } else {
            lp_log("stdin: ignored a %s", lp_msg_type(&m));
        }
        lp_msg_clear(&m);
        if (ok)
            return 0;
    }
}
