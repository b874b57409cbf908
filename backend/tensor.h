/* lp_tensor: an n-dimensional f32 array on a device (CPU or CUDA), the value every other
 * part of the backend computes with, and what Lua holds as loupe.Tensor.
 *
 * A tensor is a small header (shape, strides, offset, device) over a reference-counted
 * storage. Views (slice, select, transpose, permute, reshape of a contiguous tensor) make a
 * new header over the same storage without copying; the storage is freed when the last
 * header that uses it is freed. The refcount is atomic, so headers on different threads
 * (a Lua handle, a model's parameter table) may share storage safely; one header must not
 * be used by two threads at once.
 *
 *   int64_t shape[] = {2, 3};
 *   lp_tensor *x = lp_tensor_zeros(2, shape, LP_DEVICE_CPU);   // new reference
 *   lp_tensor *row = lp_tensor_select(x, 0, 1);                  // new header, shared data
 *   lp_tensor_free(x);                                           // row keeps the data alive
 *   lp_tensor_free(row);                                         // storage freed here
 *
 * Ownership: every function returning lp_tensor * returns a new header the caller frees
 * with lp_tensor_free; arguments are borrowed. Errors: functions return NULL (or -1) and set
 * lp_last_error(); a failed allocation says "cannot allocate <bytes> for <op> of shape [..]".
 * Strides and offsets are in elements, not bytes.
 */
#ifndef LP_TENSOR_H
#define LP_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device.h"

#define LP_MAX_DIMS 8

typedef struct lp_storage lp_storage; /* opaque: data pointer, byte size, device, refcount */

typedef struct lp_tensor {
    int ndim;                       /* 0 (a scalar) .. LP_MAX_DIMS */
    int64_t shape[LP_MAX_DIMS];
    int64_t strides[LP_MAX_DIMS];   /* in elements; may be 0 (broadcast) */
    float *data;                    /* first element: storage base + offset; device pointer on CUDA */
    lp_device device;
    lp_storage *storage;            /* shared; one reference owned by this header */
} lp_tensor;

/* --- construction (new reference; NULL and an error on bad shape or allocation) --- */

/* Uninitialised contiguous tensor. `what` names the operation in an out-of-memory message
 * ("cannot allocate 6.2 GiB for matmul of shape [1024, 50257]"); NULL means "tensor". */
lp_tensor *lp_tensor_empty_for(const char *what, int ndim, const int64_t *shape, lp_device dev);
lp_tensor *lp_tensor_empty(int ndim, const int64_t *shape, lp_device dev);
lp_tensor *lp_tensor_zeros(int ndim, const int64_t *shape, lp_device dev);
lp_tensor *lp_tensor_full(int ndim, const int64_t *shape, float value, lp_device dev);
/* Copies numel floats from host memory (row-major) onto dev. */
lp_tensor *lp_tensor_from_data(int ndim, const int64_t *shape, const float *data, lp_device dev);
/* 0, 1, ..., n-1 scaled: start + i * step, 1-D of length n. */
lp_tensor *lp_tensor_arange(int64_t n, float start, float step, lp_device dev);

/* Checkpoint dtypes, converted to f32 on load. `bytes` is little-endian, numel elements. */
typedef enum lp_dtype { LP_DTYPE_F32 = 0, LP_DTYPE_F16 = 1, LP_DTYPE_BF16 = 2 } lp_dtype;
lp_tensor *lp_tensor_from_bytes(int ndim, const int64_t *shape, lp_dtype dtype, const void *bytes,
                                lp_device dev);
void lp_bf16_to_f32(float *dst, const uint16_t *src, size_t n);
void lp_f16_to_f32(float *dst, const uint16_t *src, size_t n);
uint16_t lp_f32_to_bf16(float x); /* round to nearest even; for writing checkpoints */
uint16_t lp_f32_to_f16(float x);

/* Drops this header's reference to the storage and frees the header. NULL is a no-op. */
void lp_tensor_free(lp_tensor *t);

/* --- inspection --- */
int64_t lp_tensor_numel(const lp_tensor *t);
bool lp_tensor_is_contiguous(const lp_tensor *t);
bool lp_tensor_same_shape(const lp_tensor *a, const lp_tensor *b);
/* "[2, 3]" into buf (cap >= 8; truncated with "..." when short); returns buf. */
const char *lp_tensor_shape_str(const lp_tensor *t, char *buf, size_t cap);
const char *lp_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap);
/* Number of headers sharing this tensor's storage (for tests and debugging). */
int lp_tensor_storage_refs(const lp_tensor *t);

/* --- views: new headers over the same storage (no copy) --- */

/* Another header over the same elements. */
lp_tensor *lp_tensor_alias(const lp_tensor *t);
/* Elements start, start+step, ... < stop along dim (0-based; python-style negatives for
 * start/stop are resolved by the caller). step >= 1. start == stop gives an empty view. */
lp_tensor *lp_tensor_slice(const lp_tensor *t, int dim, int64_t start, int64_t stop, int64_t step);
/* Index `index` along dim, which is removed (ndim - 1). */
lp_tensor *lp_tensor_select(const lp_tensor *t, int dim, int64_t index);
lp_tensor *lp_tensor_transpose(const lp_tensor *t, int d0, int d1);
/* perm is a permutation of 0..ndim-1: result dim i is input dim perm[i]. */
lp_tensor *lp_tensor_permute(const lp_tensor *t, const int *perm);
/* New shape with the same numel; one entry may be -1 (inferred). A view when the tensor is
 * contiguous, otherwise a contiguous copy. */
lp_tensor *lp_tensor_reshape(const lp_tensor *t, int ndim, const int64_t *shape);
/* Inserts a dim of size 1 at position dim (0..ndim). */
lp_tensor *lp_tensor_unsqueeze(const lp_tensor *t, int dim);
/* Broadcast view to `shape` (numpy rules, stride 0 on expanded dims); error when the shapes
 * do not broadcast. */
lp_tensor *lp_tensor_expand(const lp_tensor *t, int ndim, const int64_t *shape);

/* --- copies --- */

/* t itself (as a new alias) when contiguous, else a contiguous copy on the same device. */
lp_tensor *lp_tensor_contiguous(const lp_tensor *t);
lp_tensor *lp_tensor_clone(const lp_tensor *t);
/* A copy on dev (an alias when already there). Error when dev is not available. */
lp_tensor *lp_tensor_to(const lp_tensor *t, lp_device dev);
/* Copies src into dst elementwise (same shape; any strides; same device). */
int lp_tensor_copy_(lp_tensor *dst, const lp_tensor *src);
int lp_tensor_fill_(lp_tensor *t, float value);
/* Copies the elements, row-major, into host memory `out` (numel floats). Any device. */
int lp_tensor_to_host(const lp_tensor *t, float *out);

/* --- elements (any device; slow on CUDA: one transfer per call) --- */
/* idx has t->ndim 0-based entries; error when out of range. */
int lp_tensor_get(const lp_tensor *t, const int64_t *idx, float *out);
int lp_tensor_set(lp_tensor *t, const int64_t *idx, float value);
/* The single element of a tensor with numel 1. */
int lp_tensor_item(const lp_tensor *t, float *out);

#endif
