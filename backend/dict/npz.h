/* NumPy's .npz archives (np.savez: a zip of .npy files, stored; np.savez_compressed:
 * deflated, read through zlib), as Gemma Scope's params.npz. Every length and offset of the
 * zip's central directory, the local headers (zip64 extras included, which numpy writes) and
 * the .npy headers is checked; CRC-32 is verified. Arrays of '<f4', '<f2' and '<f8' in C
 * order are read (converted to f32); others are refused by name.
 *
 *   lp_npz *z = lp_npz_open("params.npz");
 *   lp_tensor *w = lp_npz_tensor(z, "W_enc");      // new f32 tensor, or NULL + error
 *   lp_npz_close(z);
 *
 * Ownership: lp_npz owns its mapping (or borrows bytes for lp_npz_parse); tensors returned
 * are new. Errors: NULL with "<file>: <what>" (LP_ERR_FORMAT, LP_ERR_IO, LP_ERR_NOMEM).
 */
#ifndef LP_DICT_NPZ_H
#define LP_DICT_NPZ_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

typedef struct lp_npz lp_npz;

lp_npz *lp_npz_open(const char *path);
/* Validates bytes[0..n) (borrowed). For tests and the fuzz target. */
lp_npz *lp_npz_parse(const void *bytes, size_t n, const char *label);
void lp_npz_close(lp_npz *z); /* NULL is a no-op */

/* The arrays' names (without ".npy"), i < count. */
size_t lp_npz_count(const lp_npz *z);
const char *lp_npz_name(const lp_npz *z, size_t i);
/* The array called name as a new f32 tensor; NULL with an error naming the file and array
 * ("<file>: array 'x' is missing" when absent). */
lp_tensor *lp_npz_tensor(const lp_npz *z, const char *name);

#endif
