/* safetensors: the checkpoint format of Hugging Face folders (model.safetensors, shards
 * listed by model.safetensors.index.json), read memory-mapped and written back.
 *
 * Layout: 8 bytes little-endian N, then N bytes of a JSON object
 *   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value"}}
 * then the data section; offsets are relative to its start.
 *
 * The reader validates the whole header before any tensor is touched: N within the file
 * (and at most LP_ST_MAX_HEADER), valid UTF-8 JSON without duplicate keys, every entry
 * well-formed, dtype F32 / F16 / BF16 (others are refused by name), numel x dtype size ==
 * end - begin, every range inside the data section, no two ranges overlapping. Any failure
 * returns NULL with lp_last_error() saying "<file>: <what is wrong>". Nothing aborts.
 *
 *   lp_safetensors *st = lp_safetensors_open("model.safetensors");
 *   const lp_st_entry *e = lp_safetensors_find(st, "wte.weight");
 *   lp_tensor *w = e ? lp_safetensors_tensor(st, e, LP_DEVICE_CPU) : NULL;  // f32 copy
 *   lp_safetensors_close(st);  // w stays valid: it owns its copy
 *
 * Ownership: an lp_safetensors owns its mapping (or borrows the caller's bytes for
 * lp_safetensors_parse) and its entries; entries and lp_safetensors_bytes pointers are
 * borrowed and live until close. lp_safetensors_tensor returns a new tensor the caller frees.
 */
#ifndef LP_SAFETENSORS_H
#define LP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

/* Headers longer than this are refused as absurd (real ones are well under 10 MB). */
#define LP_ST_MAX_HEADER ((uint64_t)100 << 20)

typedef struct lp_st_entry {
    const char *name; /* UTF-8, NUL-terminated */
    lp_dtype dtype;
    int ndim;
    int64_t shape[LP_MAX_DIMS];
    uint64_t begin, end; /* byte range within the data section */
} lp_st_entry;

typedef struct lp_safetensors lp_safetensors;

/* Maps and validates a file. NULL with an error naming the file on any problem. */
lp_safetensors *lp_safetensors_open(const char *path);
/* Validates bytes[0..n) in place (borrowed: they must outlive the result). `label` names
 * the source in messages. For tests and the fuzz target. */
lp_safetensors *lp_safetensors_parse(const void *bytes, size_t n, const char *label);
void lp_safetensors_close(lp_safetensors *st); /* NULL is a no-op */

size_t lp_safetensors_count(const lp_safetensors *st);
/* Entries sorted by name. i < count. */
const lp_st_entry *lp_safetensors_entry(const lp_safetensors *st, size_t i);
/* The entry called name, or NULL (no error set). */
const lp_st_entry *lp_safetensors_find(const lp_safetensors *st, const char *name);
/* The raw little-endian bytes of an entry (end - begin of them). */
const void *lp_safetensors_bytes(const lp_safetensors *st, const lp_st_entry *e);
/* The path or label given at open. */
const char *lp_safetensors_path(const lp_safetensors *st);
/* A metadata value ("__metadata__"), or NULL. Borrowed. */
const char *lp_safetensors_meta(const lp_safetensors *st, const char *key);

/* The entry as a new f32 tensor on dev (converted once from F16 / BF16). */
lp_tensor *lp_safetensors_tensor(const lp_safetensors *st, const lp_st_entry *e, lp_device dev);

/* Writes n named tensors (any device, any strides) to path in `dtype` (F32, F16 or BF16;
 * f32 values rounded to nearest even), with optional metadata pairs (meta_keys/meta_vals,
 * nmeta of them; may be 0). Names must be unique and non-empty. The file is written to
 * path.tmp and renamed, so a failure leaves no half-written file. 0, or -1 with an error. */
int lp_safetensors_write(const char *path, const char *const *names, const lp_tensor *const *tensors,
                         size_t n, lp_dtype dtype, const char *const *meta_keys,
                         const char *const *meta_vals, size_t nmeta);

/* "F32" / "F16" / "BF16". */
const char *lp_dtype_name(lp_dtype d);

#endif
