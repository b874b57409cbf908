/* The kernel: what each Jupyter request means. A table from message type to handler
 * (shell requests on the main thread, control requests on the control thread), every
 * request framed by busy and idle on iopub, the session state (execution count, history,
 * the interpreter) and the lp_io that connects the interpreter to iopub and stdin.
 *
 * The dispatcher never touches a socket: it answers, publishes and asks for input through
 * an lp_transport. In a kernel process that is kernel/server.c's sockets (kernel_main.c
 * wires them); in the unit tests an in-memory mock (tests/unit/support/mock_io.h), as xeus
 * tests its kernel core through a mock server. */
#ifndef LP_KERNEL_H
#define LP_KERNEL_H

#include <jansson.h>

#include "core/buf.h"
#include "history.h"
#include "interp.h"
#include "wire.h"

/* Runs a kernel on the connection file until shutdown. Returns the process exit code: 0
 * after a shutdown; 1, with a message on stderr, when the connection file is bad or the
 * sockets cannot be set up (a port in use). */
int lp_kernel_main(const char *connection_file);

/* The kernel_info_reply content (new reference). */
json_t *lp_kernel_info(void);

/* Where the dispatcher's messages go. Every function may be called from the main thread
 * and the control thread; publish also from the output thread (kernel/streams.c). */
typedef struct lp_transport {
    /* Sends a reply to req's requester on channel (LP_CH_SHELL, LP_CH_CONTROL or
     * LP_CH_STDIN), with req's header as parent. content is stolen. Returns 0 or -1. */
    int (*reply)(void *ud, int channel, const lp_msg *req, const char *msg_type, json_t *content);
    /* Publishes on iopub. parent borrowed (NULL = {}); content and metadata stolen
     * (metadata may be NULL). Returns 0 or -1. */
    int (*publish)(void *ud, const char *msg_type, json_t *parent, json_t *content, json_t *metadata);
    /* The next shell request already queued, without waiting: 1 with *out filled (the
     * caller clears it), 0 when there is none. */
    int (*next_shell)(void *ud, lp_msg *out);
    /* Sends input_request to req's requester on stdin and waits for the input_reply:
     * 0 with the text in out, or -1 with lp_last_error() set. */
    int (*input)(void *ud, const lp_msg *req, const char *prompt, int password, lp_buf *out);
    /* Ends the shell loop once the request being served is done (any thread). */
    void (*stop)(void *ud);
    /* After a shutdown_request on control has been answered: makes sure the process ends
     * soon even when a cell does not stop. */
    void (*exit_soon)(void *ud);
    void *ud;
} lp_transport;

typedef struct lp_kernel lp_kernel;

/* The session state with a new interpreter whose output goes through t (copied). history
 * is borrowed and may be NULL (history requests then get an empty list). Cells' stdout and
 * stderr go through kernel/streams.c: the caller starts it with lp_kernel_stream and the
 * kernel as publisher. Returns NULL with lp_last_error() set. */
lp_kernel *lp_kernel_new(const lp_transport *t, lp_history *history);
void lp_kernel_free(lp_kernel *k); /* NULL is a no-op */
lp_interp *lp_kernel_interp(lp_kernel *k);

/* Serves one shell request (borrowed), framed by busy and idle; after an execute that
 * failed with stop_on_error, also answers the executes that were queued meanwhile. Main
 * thread only. */
void lp_kernel_shell(lp_kernel *k, lp_msg *req);
/* Serves one control request (borrowed), framed by busy and idle. Control thread. */
void lp_kernel_control(lp_kernel *k, lp_msg *req);
/* An lp_stream_publish (kernel/streams.h); ud is the kernel. */
void lp_kernel_stream(void *ud, const char *name, const char *text, json_t *parent);

#endif
