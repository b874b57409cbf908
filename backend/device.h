/* Devices. A backend is a struct of function pointers (memory, transfers, and the op table
 * of ops/ops.h) for one kind of device, ggml style. The CPU backend always exists (OpenBLAS
 * for products); the CUDA backend exists when the build found the CUDA toolkit AND a GPU is
 * present at run time. Code above this layer asks lp_backend_get(dev) and never #ifdefs on
 * CUDA.
 *
 * Choosing a device: lp_default_device() is CUDA when available, else the CPU (with a note,
 * "no CUDA device (<reason>); using the CPU", when CUDA was built in or asked for). The
 * environment variable LOUPE_DEVICE=cpu|cuda overrides that, and lp_set_default_device
 * (the Lua call) overrides both.
 */
#ifndef LP_DEVICE_H
#define LP_DEVICE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum lp_device { LP_DEVICE_CPU = 0, LP_DEVICE_CUDA = 1 } lp_device;

struct lp_ops;

typedef struct lp_backend {
    const char *name; /* "cpu", "cuda" */
    lp_device device;
    /* nbytes of device memory; NULL with an error set ("cannot allocate ...") on failure. */
    void *(*alloc)(size_t nbytes, const char *what);
    void (*free)(void *p); /* NULL is a no-op */
    /* Copies between host and this device, and within the device. 0 or -1 with an error. */
    int (*to_device)(void *dst, const void *host_src, size_t nbytes);
    int (*to_host)(void *host_dst, const void *src, size_t nbytes);
    int (*copy)(void *dst, const void *src, size_t nbytes);
    /* Waits for queued work (no-op on the CPU). */
    int (*synchronize)(void);
    const struct lp_ops *ops; /* never NULL; entries may be NULL (unsupported op) */
} lp_backend;

/* The backend for dev, or NULL with an error ("CUDA is not available: <reason>"). Borrowed,
 * static lifetime. The first CUDA query initialises CUDA (lazily, never at start-up). */
const lp_backend *lp_backend_get(lp_device dev);
bool lp_device_available(lp_device dev);
/* Notes that are not errors (the CPU chosen for want of a GPU, an ignored LOUPE_DEVICE) go to
 * fn, e.g. the kernel's log; with none set (NULL), to stderr as "loupe: <note>". */
typedef void (*lp_note_fn)(const char *msg);
void lp_set_note_handler(lp_note_fn fn);
/* Why CUDA is unavailable ("loupe was built without CUDA", "no CUDA device (...)"), or "". */
const char *lp_cuda_unavailable_reason(void);
/* True when the CUDA path was compiled in (whether or not a GPU is present). */
bool lp_cuda_built(void);

lp_device lp_default_device(void);
/* -1 with an error when dev is not available. */
int lp_set_default_device(lp_device dev);
/* "cpu" / "cuda" -> device; -1 with an error for anything else. */
int lp_device_parse(const char *name, lp_device *out);
const char *lp_device_name(lp_device dev);

/* Threads for the CPU path (OpenBLAS and our own loops). n <= 0 means all cores. */
void lp_set_threads(int n);
int lp_get_threads(void);

/* BLAS threads for a stretch of products whose matrices are `width` wide (d_model): below
 * LP_BLAS_NARROW, OpenBLAS's threads cost more than they save (a 2-layer d_model 64 model
 * trained 16% slower on 2 threads than on 1, its workers spinning in the kernel; d_model 128
 * was 33% faster on 2), so the stretch runs on one. Returns what lp_blas_threads_end
 * restores. lp_par_for keeps using lp_get_threads(). */
#define LP_BLAS_NARROW 128
int lp_blas_threads_begin(long width);
void lp_blas_threads_end(int saved);

#endif
