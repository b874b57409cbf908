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
    pthread_mutex_t pub_lock;
    lp_signer signer;
    char session[64];
    pthread_t control_th, iopub_th, hb_th;
    int threads_started;
    atomic_int stop;
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
    lp_msg m = {0};
    if (ids)
        m.ids = *ids; /* borrowed: not cleared below */
    m.header = lp_header_new(s->session, "loupe", msg_type);
    m.parent = parent ? json_incref(parent) : json_object();
    m.metadata = metadata ? metadata : json_object();
    m.content = content ? content : json_object();
    int rc = (m.header && m.content && m.metadata && m.parent) ? lp_msg_encode(&s->signer, &m, out) : -1;
    json_decref(m.header);
    json_decref(m.parent);
    json_decref(m.metadata);
    json_decref(m.content);
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
        pthread_mutex_unlock(&s->pub_lock);
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
        if (n <= 0)
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
    if (build(s, &f, &ids, "iopub_welcome", NULL, json_pack("{s:s}", "subscription", t), NULL) == 0)
        send_frames(s->sock[LP_CH_IOPUB], &f);
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

static void *iopub_main(void *arg)
{
    lp_server *s = arg;
    void *pull = zmq_socket(s->ctx, ZMQ_PULL);
    zmq_bind(pull, IOPUB_INPROC);
    pub_hold hold = {.on = 1, .until = lp_now_s() + IOPUB_HOLD_MS / 1000.0};
    zmq_pollitem_t it[2] = {{pull, 0, ZMQ_POLLIN, 0}, {s->sock[LP_CH_IOPUB], 0, ZMQ_POLLIN, 0}};
    for (;;) {
        int n = zmq_poll(it, 2, 50);
        if (n < 0 && errno != EINTR)
            break;
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
    zmq_close(hb);
    return NULL;
}

/* ---- start and stop ------------------------------------------------------------------- */

static void *bind_socket(void *ctx, int type, const lp_conn *c, int ch)
{
    void *sock = zmq_socket(ctx, type);
    if (!sock) {
        lp_set_error_code(LP_ERR_IO, "cannot create the %s socket: %s", lp_channel_names[ch], zmq_strerror(errno));
        return NULL;
    }
    int linger = 1000, one = 1;
    int64_t maxsize = (int64_t)1 << 30;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxsize, sizeof maxsize);
    if (type == ZMQ_ROUTER)
        zmq_setsockopt(sock, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    if (type == ZMQ_XPUB) {
        zmq_setsockopt(sock, ZMQ_XPUB_VERBOSE, &one, sizeof one);
        int hwm = 0; /* never drop published output on a slow subscriber */
        zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    }
    char ep[320];
    lp_conn_endpoint(c, ch, ep, sizeof ep);
    if (zmq_bind(sock, ep) < 0) {
        lp_set_error_code(LP_ERR_IO, "cannot bind the %s channel to %s: %s", lp_channel_names[ch], ep,
                          zmq_strerror(errno));
        zmq_close(sock);
        return NULL;
    }
    return sock;
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
        free(s);
        return NULL;
    }
    /* Threads created from here on (ZeroMQ's I/O threads included) never see SIGINT. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);

    s->ctx = zmq_ctx_new();
    s->hb_ctx = zmq_ctx_new();
    static const int types[LP_CH_COUNT] = {ZMQ_ROUTER, ZMQ_ROUTER, ZMQ_ROUTER, ZMQ_XPUB, ZMQ_REP};
    for (int ch = 0; ch < LP_CH_COUNT; ch++) {
        s->sock[ch] = bind_socket(ch == LP_CH_HB ? s->hb_ctx : s->ctx, types[ch], c, ch);
        if (!s->sock[ch])
            goto fail;
    }
    s->pub_push = zmq_socket(s->ctx, ZMQ_PUSH);
    int hwm = 0, linger = 2000;
    zmq_setsockopt(s->pub_push, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s->pub_push, ZMQ_LINGER, &linger, sizeof linger);
    if (pthread_create(&s->iopub_th, NULL, iopub_main, s) != 0)
        goto fail_threads;
    /* inproc needs the bind first (ZeroMQ >= 4.2 allows connect-before-bind, but be safe). */
    while (zmq_connect(s->pub_push, IOPUB_INPROC) < 0)
        ;
    if (pthread_create(&s->hb_th, NULL, hb_main, s->sock[LP_CH_HB]) != 0)
        goto fail_threads;
    s->sock[LP_CH_HB] = NULL; /* owned by its thread now */
    if (pthread_create(&s->control_th, NULL, control_main, s) != 0)
        goto fail_threads;
    s->threads_started = 1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return s;

fail_threads:
    lp_set_error("cannot start the kernel's threads");
fail:
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", lp_last_error());
        atomic_store(&s->stop, 1);
        atomic_store(&s->iopub_stop, 1);
        for (int ch = 0; ch < LP_CH_COUNT; ch++)
            if (s->sock[ch])
                zmq_close(s->sock[ch]);
        if (s->pub_push)
            zmq_close(s->pub_push);
        /* Threads that did start end on their own (stop flags); detach-free shutdown. */
        zmq_ctx_shutdown(s->hb_ctx);
        lp_signer_clear(&s->signer);
        lp_set_error("%s", msg);
    }
    return NULL;
}

void lp_server_run(lp_server *s)
{
    while (!atomic_load(&s->stop)) {
        lp_msg m;
        if (lp_server_next_shell(s, &m, 100)) {
            s->shell_fn(s, &m, s->ud);
            lp_msg_clear(&m);
        }
    }
    atomic_store(&s->run_done, 1);
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

void lp_server_free(lp_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, 1);
    if (s->threads_started) {
        pthread_join(s->control_th, NULL);
        atomic_store(&s->iopub_stop, 1);
        pthread_join(s->iopub_th, NULL);
        zmq_ctx_shutdown(s->hb_ctx);
        pthread_join(s->hb_th, NULL);
    }
    for (int ch = 0; ch < LP_CH_COUNT; ch++)
        if (s->sock[ch])
            zmq_close(s->sock[ch]);
    zmq_close(s->pub_push);
    zmq_ctx_term(s->ctx);
    zmq_ctx_term(s->hb_ctx);
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
