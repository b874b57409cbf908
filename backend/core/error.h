/* Error reporting for every layer: a function that user input or a file can reach returns
 * a status (negative, or NULL) and leaves a message here. The message is per thread, so a
 * control thread and the main thread never see each other's errors.
 *
 *   if (lp_tensor_new(...) == NULL) report(lp_last_error());
 */
#ifndef LP_ERROR_H
#define LP_ERROR_H

#include <stddef.h>

/* The last error set on this thread; never NULL ("" when none). Borrowed: valid until the
 * next lp_set_error on this thread. */
const char *lp_last_error(void);

/* Sets the message (printf-style, truncated at 1 KiB) and returns -1, so that a failing
 * function can `return lp_set_error("...")`. */
int lp_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void lp_clear_error(void);

/* Formats a byte count for messages: "6.2 GiB", "512 B". Writes into buf (at least 32). */
const char *lp_format_bytes(size_t n, char *buf, size_t cap);

/* malloc that sets "cannot allocate <n> for <what>" on failure and returns NULL. */
void *lp_malloc(size_t n, const char *what);
void *lp_calloc(size_t count, size_t size, const char *what);

#endif
