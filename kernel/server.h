/* The transport: the five sockets of a connection file and the threads around them.
 *
 *   main thread     shell (ROUTER) and stdin (ROUTER): requests are handled one at a time,
 *                   in arrival order, by the shell handler.
 *   control thread  control (ROUTER): kernel_info, interrupt, shutdown, answered while a
 *                   cell runs.
 *   iopub thread    owns the XPUB socket; every other thread publishes through one inproc
 *                   PUSH socket behind a mutex (one pipe, so messages keep their order),
 *                   and it answers each subscription with iopub_welcome.
 *   heartbeat       a REP echo in its own ZeroMQ context, so a long cell never stops it.
 *
 * SIGINT is blocked in every thread but the main one. The server knows nothing of Lua or
 * of what messages mean beyond framing and signing. */
#ifndef LP_SERVER_H
#define LP_SERVER_H

#include <jansson.h>

#include "connection.h"
#include "core/buf.h"
#include "wire.h"

typedef struct lp_server lp_server;

/* Handlers receive a decoded, verified request (borrowed; valid during the call). */
typedef void (*lp_handler)(lp_server *s, lp_msg *req, void *ud);

/* Binds all sockets and starts the threads. Every ZeroMQ and thread call is checked: on a
 * failure everything started is undone and NULL is returned with lp_last_error() naming
 * what was being done ("cannot bind the shell socket to tcp://127.0.0.1:5555: Address
 * already in use"). session is this process's session id (copied). */
lp_server *lp_server_start(const lp_conn *c, const char *session, lp_handler shell,
                           lp_handler control, void *ud);
/* Runs the shell loop on the calling thread until lp_server_stop. Returns 0, or -1 when it
 * ended because a socket could not be polled any more (logged). */
int lp_server_run(lp_server *s);
/* Asks the shell loop to end (any thread). */
void lp_server_stop(lp_server *s);
int lp_server_stopping(lp_server *s);
/* After lp_server_stop (and an interrupt) from another thread: waits up to 3 s for the shell
 * loop to return, and ends the process at once if it has not (a cell stuck in a C call that
 * never polls the interrupt flag must not keep a kernel that was told to go). */
void lp_server_exit_soon(lp_server *s);
void lp_server_free(lp_server *s);

const char *lp_server_session(lp_server *s);

/* Sends a reply to req's identities on channel (LP_CH_SHELL, LP_CH_CONTROL or
 * LP_CH_STDIN) from the thread that owns that socket. content is stolen. */
int lp_server_reply(lp_server *s, int channel, const lp_msg *req, const char *msg_type,
                    json_t *content);
/* Publishes on iopub (any thread). parent is borrowed (NULL = {}); content and metadata
 * are stolen (metadata may be NULL). */
int lp_server_publish(lp_server *s, const char *msg_type, json_t *parent, json_t *content,
                      json_t *metadata);
/* busy/idle with req's header as parent. */
void lp_server_status(lp_server *s, const lp_msg *req, const char *state);

/* Receives the next shell request if one arrives within timeout_ms (0 = only what is
 * queued). Returns 1 with *out filled (caller clears it), 0 when none. Bad messages are
 * logged and skipped. Main thread only. */
int lp_server_next_shell(lp_server *s, lp_msg *out, int timeout_ms);

/* Sends input_request to req's requester on stdin and waits for input_reply, polling the
 * interrupt flag. Returns 0 with the text in out, -1 with lp_last_error() ("interrupted",
 * or the kernel is shutting down). Main thread only. */
int lp_server_input(lp_server *s, const lp_msg *req, const char *prompt, int password,
                    lp_buf *out);

#endif
