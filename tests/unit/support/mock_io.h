/* A mock transport for the kernel's message dispatch (lp_transport, kernel/kernel.h), as
 * xeus tests its kernel core through a mock server: a test hands lp_kernel_shell or
 * lp_kernel_control a parsed request and reads back, in order, what the kernel would have
 * sent on shell, control and stdin and published on iopub. No ZeroMQ at all.
 *
 * Every message is encoded and signed by the wire format exactly as kernel/server.c sends
 * it (lp_msg_build), then verified and decoded back (lp_msg_decode): a message that is not
 * valid signed JSON is recorded as a mock error instead. Shell requests can be queued for
 * the dispatcher to find while it serves one (what arrives during a cell), and answers to
 * input requests given in advance. Thread-safe: the output thread publishes streams.
 *
 *   t_mock *m = t_mock_new();
 *   lp_kernel *k = lp_kernel_new(t_mock_transport(m), NULL);
 *   lp_msg req;
 *   t_mock_request(&req, "kernel_info_request", NULL);
 *   lp_kernel_shell(k, &req);
 *   t_mock_trace(m, &req)  ->  "iopub:status(busy) shell:kernel_info_reply iopub:status(idle)"
 */
#ifndef LP_TEST_MOCK_IO_H
#define LP_TEST_MOCK_IO_H

#include <jansson.h>
#include <stddef.h>

#include "kernel.h"
#include "wire.h"

/* The session id the mock's messages are stamped with (the kernel's side). */
#define T_MOCK_SESSION "mock-kernel-session"
/* The identity frame of the client that sends t_mock_request's requests. */
#define T_MOCK_CLIENT "mock-client"

/* One message the kernel sent. */
typedef struct t_sent {
    int channel; /* LP_CH_SHELL, LP_CH_CONTROL, LP_CH_STDIN or LP_CH_IOPUB */
    lp_msg msg;  /* decoded: ids, header, parent, metadata, content */
} t_sent;

typedef struct t_mock t_mock;

t_mock *t_mock_new(void); /* NULL on out of memory */
void t_mock_free(t_mock *m); /* NULL is a no-op */
/* The transport to give lp_kernel_new (valid while m lives). */
const lp_transport *t_mock_transport(t_mock *m);

/* A request as a client sends it: identity T_MOCK_CLIENT, a header with a fresh msg_id,
 * the client's session, msg_type, version 5.5 and, as JupyterLab sends, subshell_id null;
 * empty parent and metadata; content stolen (NULL = {}). The caller clears req. */
void t_mock_request(lp_msg *req, const char *msg_type, json_t *content);
/* Queues a shell request for the dispatcher's next_shell (req is moved; left empty). */
void t_mock_queue(t_mock *m, lp_msg *req);
/* Queues the text of the next input_reply. With none queued, input fails. */
void t_mock_answer(t_mock *m, const char *text);

/* What was sent, in order (pointers stay valid until t_mock_free). */
size_t t_mock_count(t_mock *m);
const t_sent *t_mock_at(t_mock *m, size_t i);
/* The messages sent with req as parent, as "channel:msg_type" words separated by spaces;
 * status messages read "iopub:status(busy)". Valid until the next call or t_mock_free. */
const char *t_mock_trace(t_mock *m, const lp_msg *req);
/* The first message of msg_type with req as parent, or NULL. */
const t_sent *t_mock_find(t_mock *m, const lp_msg *req, const char *msg_type);

/* How often the dispatcher asked the shell loop to stop / the process to end soon. */
int t_mock_stops(t_mock *m);
int t_mock_exits(t_mock *m);
/* The first thing that went wrong in the mock (a message that could not be encoded or
 * decoded, out of memory), or NULL when all went well. */
const char *t_mock_error(t_mock *m);

#endif
