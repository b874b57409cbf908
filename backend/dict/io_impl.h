/* Helpers shared by the dictionary file readers and writers (sae_io.c, tc_io.c,
 * gemmascope.c); internal to backend/dict/. */
#ifndef LP_DICT_IO_IMPL_H
#define LP_DICT_IO_IMPL_H

#include <stdint.h>

#include "dict/sae.h"
#include "model/safetensors.h"
#include "tensor.h"

/* "dir/name" (new string, NULL with LP_ERR_NOMEM). */
char *lp_dict_join(const char *dir, const char *name);
/* mkdir -p dir. 0, or -1 with LP_ERR_IO naming the component. */
int lp_dict_mkdir(const char *dir);
/* A whole small file (at most max bytes) as a NUL-terminated string; *n its length. */
char *lp_dict_read_text(const char *path, size_t max, size_t *n);
/* The tensor called name in st as a new f32 tensor, checked against the expected shape
 * (ndim dims): errors name the file and tensor: "<file>: tensor 'W_enc' has shape [6, 10],
 * expected [6, 12]" or "<file>: tensor 'W_enc' is missing". Optional tensors that are absent
 * give NULL with *absent = 1 and no error (pass absent NULL for a required one). */
lp_tensor *lp_dict_tensor(const lp_safetensors *st, const char *name, int ndim, const int64_t *shape,
                          int *absent);
/* Refuses a tensor of st not in names[0..n): "<file>: unexpected tensor 'x'". */
int lp_dict_no_extra(const lp_safetensors *st, const char *const *names, int n);
/* Writes the "[a, b]" form of a shape into buf. */
const char *lp_dict_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);
/* The layer N of a hook name "blocks.N.<...>", or -1. */
int lp_dict_hook_layer(const char *hook);
/* A copy of s with its training normalisation folded in (W_enc * scale, W_dec / scale,
 * b_dec / scale; scale 1): what a file stores. NULL with an error. */
lp_sae *lp_dict_folded(const lp_sae *s);
/* The transpose of a 2-D CPU tensor (new). */
lp_tensor *lp_dict_transpose(const lp_tensor *t);

#endif
