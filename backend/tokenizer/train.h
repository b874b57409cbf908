/* A byte-level BPE trainer: gives a small model a vocabulary of its own, saved as a
 * Hugging Face tokenizer.json (BPE model, ByteLevel pre-tokenizer with GPT-2's regex,
 * ByteLevel decoder, special tokens as added tokens) that lp_tokenizer_load and the
 * `tokenizers` library both read, plus GPT-2's vocab.json + merges.txt and a
 * tokenizer_config.json.
 *
 *   lp_bpe_trainer *tr = lp_bpe_trainer_new((const char *[]){"<|endoftext|>"}, 1);
 *   lp_bpe_trainer_add_file(tr, "corpus.txt");            // any number of files / buffers
 *   lp_bpe_train_opts o = {.vocab_size = 4096};
 *   if (lp_bpe_trainer_train(tr, &o) < 0 || lp_bpe_trainer_save(tr, "tok") < 0)
 *       report(lp_last_error());
 *   lp_bpe_trainer_free(tr);
 *
 * The algorithm is the `tokenizers` BpeTrainer's: text is split by GPT-2's regex (special
 * tokens in the text are cut out first and never merged into), words are counted, and the
 * most frequent adjacent pair is merged until the vocabulary has vocab_size entries. Ids:
 * the special tokens first, then the 256 bytes ordered by their byte-level code point,
 * then one per merge. Ties between pairs of equal count go to the smaller (left id, right
 * id), as in `tokenizers`, so the result is deterministic. Pair counts are kept
 * incrementally with an index from pairs to the words holding them and a lazy max-heap. */
#ifndef LP_TOK_TRAIN_H
#define LP_TOK_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

typedef struct lp_bpe_trainer lp_bpe_trainer;

/* Called now and then during training: done of total merges (phase "merging"). */
typedef void (*lp_bpe_progress_fn)(void *ud, const char *phase, double done, double total);

typedef struct lp_bpe_train_opts {
    int32_t vocab_size;    /* >= 256 + number of special tokens */
    int64_t min_frequency; /* a pair seen fewer times is not merged (0 or 1: any) */
    lp_bpe_progress_fn progress; /* may be NULL */
    void *progress_ud;
} lp_bpe_train_opts;

/* special: n_special distinct, non-empty strings (copied). NULL with the error set. */
lp_bpe_trainer *lp_bpe_trainer_new(const char *const *special, size_t n_special);
void lp_bpe_trainer_free(lp_bpe_trainer *tr);

/* Counts the words of text[0..len) (any bytes). 0, or -1 with the error set. */
int lp_bpe_trainer_add_text(lp_bpe_trainer *tr, const char *text, size_t len);
/* Reads a UTF-8 text file (missing, empty or binary files are errors naming the file). */
int lp_bpe_trainer_add_file(lp_bpe_trainer *tr, const char *path);

/* Merges until the vocabulary is full or no pair is frequent enough. Polls the interrupt
 * flag. Can be called once. 0, or -1 with the error set ("interrupted", a bad size, no
 * text, out of memory). */
int lp_bpe_trainer_train(lp_bpe_trainer *tr, const lp_bpe_train_opts *o);

/* Writes folder/tokenizer.json, vocab.json, merges.txt and tokenizer_config.json (the
 * folder is created when missing). After train. 0, or -1 with the error set. */
int lp_bpe_trainer_save(const lp_bpe_trainer *tr, const char *folder);
/* The trained tokenizer, as lp_tokenizer_load reads it back (saved through a temporary
 * folder). NULL with the error set. */
lp_tokenizer *lp_bpe_trainer_tokenizer(const lp_bpe_trainer *tr);

int32_t lp_bpe_trainer_vocab_size(const lp_bpe_trainer *tr);
size_t lp_bpe_trainer_n_merges(const lp_bpe_trainer *tr);
size_t lp_bpe_trainer_n_words(const lp_bpe_trainer *tr);   /* distinct words counted */
/* Merge i as ids (left, right) -> new; 0 or -1 when out of range. */
int lp_bpe_trainer_merge(const lp_bpe_trainer *tr, size_t i, int32_t *left, int32_t *right, int32_t *id);
/* The vocab string of token id (borrowed; *len set): a special token's text, else the
 * byte-level form vocab.json holds ("Ġthe"). NULL when out of range. */
const char *lp_bpe_trainer_token(const lp_bpe_trainer *tr, int32_t id, size_t *len);

#endif
