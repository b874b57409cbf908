/* Operations on whole lp_tensors, for the Lua bindings and interactive use: they check
 * shapes and devices, make operands contiguous where needed, allocate the result on the
 * operands' device and call that device's op table (ops/ops.h). Models and training call
 * the op tables directly on preallocated buffers instead.
 *
 * Every function returns a new tensor (the caller frees it) or NULL with lp_last_error()
 * set: "matmul: shapes [2, 3] and [4, 5] do not match (3 != 4)", "add: tensors on
 * different devices (cpu and cuda)", "cannot allocate 1.2 GiB for matmul of shape [..]".
 * Arguments are borrowed. Dims are 0-based; a negative dim counts from the end.
 */
#ifndef LP_TENSOR_OPS_H
#define LP_TENSOR_OPS_H

#include "ops/ops.h"
#include "tensor.h"

/* Matrix product with torch.matmul's rules for 1-D and 2-D operands; a (..., M, K) with
 * b (K, N) shares b across the batch; a (..., M, K) with b (..., K, N) needs equal batch
 * dims. A transposed view (t:T()) is used in place, without a copy. */
lp_tensor *lp_tensor_matmul(const lp_tensor *a, const lp_tensor *b);
/* Elementwise a op b (LP_BIN_*), numpy broadcasting. */
lp_tensor *lp_tensor_binary(const lp_tensor *a, const lp_tensor *b, int op);
/* a op s, or s op a when scalar_first. */
lp_tensor *lp_tensor_binary_scalar(const lp_tensor *a, float s, int op, int scalar_first);
/* Reduction (LP_REDUCE_*) over dim, which is removed (kept with size 1 when keepdim). A dim
 * of LP_ALL_DIMS reduces every element to a 0-d tensor. */
#define LP_ALL_DIMS (-100)
lp_tensor *lp_tensor_reduce(const lp_tensor *t, int dim, int op, int keepdim);
/* 0-based positions of the maximum along dim (LP_ALL_DIMS: flat position, 0-d), as f32
 * (exact below 2^24). */
lp_tensor *lp_tensor_argmax(const lp_tensor *t, int dim);
/* The k largest along the last dim, descending: *vals and *idx (0-based, as f32) of shape
 * (..., k). Returns 0 or -1. */
int lp_tensor_topk(const lp_tensor *t, int64_t k, lp_tensor **vals, lp_tensor **idx);
/* Cosine similarity along the last dim: shape (...). */
lp_tensor *lp_tensor_cosine(const lp_tensor *a, const lp_tensor *b);
/* Softmax along the last dim. */
lp_tensor *lp_tensor_softmax(const lp_tensor *t);

#endif
