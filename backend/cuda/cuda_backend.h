/* Private to backend/: the CUDA backend's entry point (the .cu files in backend/cuda), called once by
 * device.c. Returns the backend when a GPU is usable, else NULL with `reason` set to
 * "no CUDA device (<why>)". Never fails for a missing driver: that is zero devices. */
#ifndef LP_CUDA_BACKEND_H
#define LP_CUDA_BACKEND_H

#include <stddef.h>

#include "device.h"
#include "ops/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

const lp_backend *lp_cuda_backend_init(char *reason, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
