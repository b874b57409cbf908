/* The kernel: what each Jupyter request means. A table from message type to handler
 * (shell requests on the main thread, control requests on the control thread), every
 * request framed by busy and idle on iopub, the session state (execution count, history,
 * the interpreter) and the lp_io that connects the interpreter to iopub and stdin. */
#ifndef LP_KERNEL_H
#define LP_KERNEL_H

/* Runs a kernel on the connection file until shutdown. Returns the process exit code;
 * on a bad connection file prints a message naming it and returns 1. */
int lp_kernel_main(const char *connection_file);

/* The kernel_info_reply content (new reference). */
#include <jansson.h>
json_t *lp_kernel_info(void);

#endif
