/* stdout and stderr of a running cell, as `stream` messages: Lua's print/io.write append
 * here directly, and output written by C code (or child processes) to fds 1 and 2 is
 * captured through pipes. A thread publishes what has accumulated a few times a second
 * (live but coalesced); lp_streams_flush publishes everything now, in order, before a
 * display or a reply. Output is capped per request with one visible "output truncated"
 * line. The parent header of the request being served is attached to every message. */
#ifndef LP_STREAMS_H
#define LP_STREAMS_H

#include <jansson.h>
#include <stddef.h>

/* Publishes one stream message; parent borrowed. Called with the streams lock held. */
typedef void (*lp_stream_publish)(void *ud, const char *name, const char *text, json_t *parent);

/* Redirects fds 1 and 2 into pipes (when capture is non-zero) and starts the thread.
 * Returns the fd of the original stderr (for the kernel's log), or -1 on error. */
int lp_streams_start(lp_stream_publish fn, void *ud, int capture);
void lp_streams_stop(void);

/* A new request: its header becomes the parent (borrowed, increfed) and the cap resets. */
void lp_streams_begin(json_t *parent);
/* Appends output: which is 1 (stdout) or 2 (stderr). Thread-safe. */
void lp_streams_write(int which, const char *data, size_t n);
/* Publishes all pending output now (also what sits in the pipes and in C stdio). */
void lp_streams_flush(void);
/* Flushes and adds the truncation note if output was dropped. */
void lp_streams_end(void);

/* Bytes one request may print before the rest is dropped (LOUPE_OUTPUT_LIMIT, default
 * 1 MiB); also used by tests. */
size_t lp_streams_limit(void);

#endif
