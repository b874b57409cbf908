/* Error reporting for every layer: a function that user input or a file can reach returns
 * a status (negative, or NULL) and leaves a message and a code here. The message is for
 * people; the code is for programs (the interpreter names the error by it: MemoryError,
 * KeyboardInterrupt, ...), so nothing ever tells errors apart by matching message text.
 * Message and code are per thread, so a control thread and the main thread never see each
 * other's errors.
 *
 *   if (lp_tensor_new(...) == NULL) report(lp_last_error(), lp_last_error_code());
 *
 * lp_set_error sets the most common code, LP_ERR_INPUT; a site whose failure is of another
 * kind says so with lp_set_error_code. lp_malloc and its kin set LP_ERR_NOMEM,
 * lp_interrupt_check LP_ERR_INTERRUPTED.
 */
#ifndef LP_ERROR_H
#define LP_ERROR_H

#include <stddef.h>

typedef enum lp_err {
    LP_ERR_NONE = 0,    /* no error set */
    LP_ERR_INPUT,       /* a bad argument, shape, name or value: the default of lp_set_error */
    LP_ERR_NOMEM,       /* memory ran out (host or device) */
    LP_ERR_INTERRUPTED, /* the interrupt flag stopped the work (interrupt.h) */
    LP_ERR_IO,          /* a file or folder could not be opened, read, written or made */
    LP_ERR_FORMAT,      /* a file is corrupt, truncated or in a layout we do not read */
    LP_ERR_DEVICE,      /* the GPU or its libraries failed (CUDA, cuBLAS), or there is none */
    LP_ERR_INTERNAL,    /* a state that should not happen: a bug of ours */
} lp_err;

/* The last error set on this thread; never NULL ("" when none). Borrowed: valid until the
 * next lp_set_error* on this thread. */
const char *lp_last_error(void);
/* The code of that error (LP_ERR_NONE when none). */
lp_err lp_last_error_code(void);
/* A short lower-case name of a code for logs and tests: "out of memory", "interrupted". */
const char *lp_error_code_name(lp_err code);

/* Sets the message (printf-style, truncated at 1 KiB) with the code LP_ERR_INPUT and returns
 * -1, so that a failing function can `return lp_set_error("...")`. */
int lp_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same with an explicit code. */
int lp_set_error_code(lp_err code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Puts the formatted text in front of the current message and keeps its code (a file name
 * in front of "cannot allocate ..." keeps it an out-of-memory error). Returns -1. */
int lp_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void lp_clear_error(void);

/* Formats a byte count for messages: "6.2 GiB", "512 B". Writes into buf (at least 32). */
const char *lp_format_bytes(size_t n, char *buf, size_t cap);

/* Checked allocation: malloc, calloc, realloc and strdup that set "cannot allocate <n> for
 * <what>" with LP_ERR_NOMEM on failure and return NULL. lp_realloc leaves p allocated when
 * it fails. Every allocation of the backend that can fail goes through these (or through a
 * device's alloc), so that one failing allocator (below) reaches them all. */
void *lp_malloc(size_t n, const char *what);
void *lp_calloc(size_t count, size_t size, const char *what);
void *lp_realloc(void *p, size_t n, const char *what);
char *lp_strdup(const char *s, const char *what);

/* ---- the failing allocator, for tests ------------------------------------------------------
 * lp_alloc_fail_after(n): the n-th checked allocation from now (0 = the next one) fails as if
 * memory ran out; the others succeed. n < 0 turns it off. Process-wide (worker threads count
 * too), so a test can sweep n = 0, 1, 2, ... over every allocation of an operation until the
 * operation succeeds without the failure having fired. */
void lp_alloc_fail_after(long n);
/* 1 when the planned failure has happened since the last lp_alloc_fail_after. */
int lp_alloc_fail_fired(void);
/* For allocators outside this file (device memory, lp_buf): 1 when this allocation is the one
 * to fail. Counts one allocation. */
int lp_alloc_fail_now(void);

#endif
