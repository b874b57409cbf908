/* The dataset's insides, shared by backend/data's source files. */
#ifndef LP_DATA_DATASET_IMPL_H
#define LP_DATA_DATASET_IMPL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"

typedef struct lp_tok_store {
    int32_t *ids;
    size_t n;
    atomic_int refs;
} lp_tok_store;

struct lp_dataset {
    lp_tok_store *store; /* shared with splits */
    size_t off, n;
};

/* A dataset owning ids (malloc'd; freed on failure too). */
lp_dataset *lp_dataset_adopt(int32_t *ids, size_t n);

#endif
