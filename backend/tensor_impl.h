/* Private to backend/tensor*.c: the storage behind tensors. */
#ifndef LP_TENSOR_IMPL_H
#define LP_TENSOR_IMPL_H

#include <stdatomic.h>
#include <stddef.h>

#include "device.h"

struct lp_storage {
    atomic_int refs;      /* headers using this storage */
    const lp_backend *be; /* that allocated data (and frees it) */
    void *data;
    size_t nbytes;
};

#endif
