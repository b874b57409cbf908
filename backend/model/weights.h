/* The weights of a Hugging Face folder: model.safetensors, or the shards listed by
 * model.safetensors.index.json ({"weight_map": {"name": "model-00001-of-00002.safetensors"}}).
 * Every file is opened (and its header validated) up front; tensors are copied out as f32
 * by name. Shard names in the index must be plain file names inside the folder, and every
 * name in the weight map must exist in the shard it points at.
 *
 * Ownership: lp_weights owns its files; lp_weights_get returns a new tensor (the caller
 * frees). Errors name the folder, the file and the tensor.
 */
#ifndef LP_WEIGHTS_H
#define LP_WEIGHTS_H

#include "model/safetensors.h"

typedef struct lp_weights lp_weights;

lp_weights *lp_weights_open(const char *folder);
void lp_weights_close(lp_weights *w); /* NULL is a no-op */

/* The entry called name and the file that holds it, or NULL (no error set). */
const lp_st_entry *lp_weights_find(const lp_weights *w, const char *name, const lp_safetensors **file);
/* All tensor names, in file order then name order: i < lp_weights_count. */
size_t lp_weights_count(const lp_weights *w);
const char *lp_weights_name(const lp_weights *w, size_t i);

/* The tensor called name as f32 on dev. With ndim > 0 its shape must be `shape` (ndim
 * dims), else an error "<file>: tensor '<name>' has shape [..], expected [..]". A missing
 * tensor: "<folder>: tensor '<name>' is missing (looked in <files>)". */
lp_tensor *lp_weights_get(const lp_weights *w, const char *name, int ndim, const int64_t *shape,
                          lp_device dev);
/* A description of where the weights come from ("model.safetensors", "3 shards"). */
const char *lp_weights_source(const lp_weights *w);

#endif
