/* The kernel process: signals, output capture, the history file, and the dispatcher
 * (kernel.c) wired to the sockets of kernel/server.c. */
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "connection.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "kernel.h"
#include "server.h"
#include "streams.h"
#include "util.h"

/* ---- the sockets as the dispatcher's transport ------------------------------------------ */

/* The control thread can hand over a request before lp_server_start has returned (and the
 * output thread can publish at any time), so the server is published through an atomic
 * pointer that the handlers set too. Until it is set, messages are dropped. */
static _Atomic(lp_server *) server;

static int srv_reply(void *ud, int channel, const lp_msg *req, const char *msg_type, json_t *content)
{
    (void)ud;
    lp_server *s = atomic_load(&server);
    if (!s) {
        json_decref(content);
        return -1;
    }
    return lp_server_reply(s, channel, req, msg_type, content);
}

static int srv_publish(void *ud, const char *msg_type, json_t *parent, json_t *content, json_t *metadata)
{
    (void)ud;
    lp_server *s = atomic_load(&server);
    if (!s) {
        json_decref(content);
        json_decref(metadata);
        return -1;
    }
    return lp_server_publish(s, msg_type, parent, content, metadata);
}

static int srv_next_shell(void *ud, lp_msg *out)
{
    (void)ud;
    lp_server *s = atomic_load(&server);
    return s ? lp_server_next_shell(s, out, 0) : 0;
}

static int srv_input(void *ud, const lp_msg *req, const char *prompt, int password, lp_buf *out)
{
    (void)ud;
    lp_server *s = atomic_load(&server);
    if (!s)
        return lp_set_error("input is not available: the kernel's sockets are not up");
    return lp_server_input(s, req, prompt, password, out);
}

static void srv_stop(void *ud)
{
    (void)ud;
    lp_server *s = atomic_load(&server);
    if (s)
        lp_server_stop(s);
}

static void srv_exit_soon(void *ud)
{
    (void)ud;
    lp_server *s = atomic_load(&server);
    if (s)
        lp_server_exit_soon(s);
}

static void on_shell(lp_server *s, lp_msg *req, void *ud)
{
    atomic_store(&server, s);
    lp_kernel_shell(ud, req);
}

static void on_control(lp_server *s, lp_msg *req, void *ud)
{
    atomic_store(&server, s);
    lp_kernel_control(ud, req);
}

/* ---- main ---------------------------------------------------------------------------------- */

static void on_sigint(int sig)
{
    (void)sig;
    lp_interrupt_request();
}

int lp_kernel_main(const char *connection_file)
{
    lp_conn conn;
    if (lp_conn_load(&conn, connection_file) < 0) {
        fprintf(stderr, "loupe: %s\n", lp_last_error());
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    static const lp_transport sockets = {srv_reply, srv_publish, srv_next_shell, srv_input,
                                         srv_stop, srv_exit_soon, NULL};
    lp_history *history = lp_history_open(NULL, NULL);
    lp_kernel *k = lp_kernel_new(&sockets, history);
    if (!k) {
        fprintf(stderr, "loupe: %s\n", lp_last_error());
        lp_history_free(history);
        lp_conn_clear(&conn);
        return 1;
    }
    int log_fd = lp_streams_start(lp_kernel_stream, k, getenv("LOUPE_NO_CAPTURE") == NULL);
    if (log_fd < 0) {
        fprintf(stderr, "loupe: %s\n", lp_last_error());
        lp_kernel_free(k);
        lp_history_free(history);
        lp_conn_clear(&conn);
        return 1;
    }
    lp_log_set_fd(log_fd);
    /* A kernel has no terminal: io.stdin reads end at once instead of blocking forever. */
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, 0);
        close(devnull);
    }
    char session[37];
    lp_uuid(session);
    lp_server *s = lp_server_start(&conn, session, on_shell, on_control, k);
    lp_conn_clear(&conn);
    if (!s) { /* on the real stderr even with LOUPE_LOG=0: the frontend shows it */
        dprintf(log_fd, "loupe: cannot start the kernel: %s\n", lp_last_error());
        lp_streams_stop();
        lp_kernel_free(k);
        lp_history_free(history);
        return 1;
    }
    atomic_store(&server, s);
    lp_server_publish(s, "status", NULL, json_pack("{s:s}", "execution_state", "starting"), NULL);
    int rc = lp_server_run(s) < 0 ? 1 : 0;
    lp_streams_stop();
    atomic_store(&server, NULL);
    lp_server_free(s);
    lp_kernel_free(k);
    lp_history_free(history);
    return rc;
}
