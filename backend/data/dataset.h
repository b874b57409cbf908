/* Token datasets for training: text files tokenized into one int32 token array, token
 * files, a train / validation split, and batches of random windows.
 *
 *   lp_dataset *d = lp_dataset_from_files(tok, paths, 2);        // or lp_dataset_load_tokens
 *   lp_dataset *train, *val;
 *   lp_dataset_split(d, 0.1, &train, &val);                       // last 10% for validation
 *   lp_rng g; lp_rng_seed(&g, 1234);
 *   lp_dataset_batch(train, &g, B, ctx, inputs, targets);         // B x ctx each
 *
 * Datasets are read-only after creation and share their tokens (a split is two views, no
 * copy); free each with lp_dataset_free.
 *
 * Token files. Our format (little-endian): a 32-byte header
 *     char     magic[8]  = "LOUPETOK"
 *     uint32   version   = 1
 *     uint32   width     = 2 or 4   (bytes per token: uint16 when every id < 65536)
 *     uint64   count                (number of tokens)
 *     uint32   vocab_size           (1 + the largest id; a hint)
 *     uint32   reserved  = 0
 * then count tokens. llm.c's format is also read and written: 256 int32 header words
 * (20240520, version 1, count, ...) then count uint16 tokens. */
#ifndef LP_DATA_DATASET_H
#define LP_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"
#include "tokenizer/tokenizer.h"

typedef struct lp_dataset lp_dataset;

typedef enum { LP_TOKFILE_LOUPE = 0, LP_TOKFILE_LLMC = 1 } lp_tokfile_format;

/* A copy of ids[0..n) (n >= 1). NULL with the error set. */
lp_dataset *lp_dataset_from_ids(const int32_t *ids, size_t n);
/* Text (any bytes) encoded with t (no BOS / EOS added). */
lp_dataset *lp_dataset_from_text(const lp_tokenizer *t, const char *text, size_t len);
/* UTF-8 text files, each encoded with t and followed by the tokenizer's EOS token when it
 * has one (a document separator). Missing, empty or binary files are errors naming the
 * file (and the byte offset). Polls the interrupt flag between files. */
lp_dataset *lp_dataset_from_files(const lp_tokenizer *t, const char *const *paths, size_t n);
/* A token file in either format (detected by its magic). Corrupt or truncated files are
 * errors naming the file. */
lp_dataset *lp_dataset_load_tokens(const char *path);
/* Writes the tokens; llm.c's format needs every id < 65536. 0 or -1. */
int lp_dataset_save_tokens(const lp_dataset *d, const char *path, lp_tokfile_format fmt);
void lp_dataset_free(lp_dataset *d);

size_t lp_dataset_size(const lp_dataset *d);
const int32_t *lp_dataset_ids(const lp_dataset *d); /* borrowed */
int32_t lp_dataset_max_id(const lp_dataset *d);

/* The first (1 - val_fraction) of the tokens and the rest, as two new datasets sharing
 * d's tokens. 0 < val_fraction < 1 and both parts non-empty, else -1 with the error set. */
int lp_dataset_split(const lp_dataset *d, double val_fraction, lp_dataset **train, lp_dataset **val);

/* B windows of ctx + 1 consecutive tokens at random starts (uniform over every start, from
 * g): inputs[b * ctx + i] = window[i], targets[b * ctx + i] = window[i + 1]. Deterministic
 * for g's state. -1 with the error set when the dataset has fewer than ctx + 1 tokens or
 * B, ctx < 1. */
int lp_dataset_batch(const lp_dataset *d, lp_rng *g, int64_t B, int64_t ctx, int32_t *inputs, int32_t *targets);

#endif
