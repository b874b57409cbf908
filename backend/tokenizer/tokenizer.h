/* Byte-level BPE tokenizers, as Hugging Face folders hold them: tokenizer.json (a BPE
 * model, a ByteLevel pre-tokenizer with GPT-2's regex or a Split with the Llama-3 / cl100k
 * or Qwen2 regex, added and special tokens), or GPT-2's vocab.json + merges.txt.
 * Ids match the `tokenizers` library's. Text is bytes: UTF-8 normally, but any bytes
 * encode, and decode(encode(s)) == s.
 *
 *   lp_tokenizer *t = lp_tokenizer_load("models/gpt2");
 *   int32_t *ids; size_t n;
 *   if (!t || lp_tokenizer_encode(t, text, strlen(text), 1, &ids, &n) < 0)
 *       report(lp_last_error());
 *
 * A loaded tokenizer is read-only apart from an internal, locked word cache: it may be
 * used from several threads at once. */
#ifndef LP_TOKENIZER_H
#define LP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct lp_tokenizer lp_tokenizer;

/* Loads folder/tokenizer.json, else folder/vocab.json + folder/merges.txt. BOS / EOS and
 * whether encode adds them come from tokenizer_config.json (add_bos_token, bos_token, ...),
 * the post-processor of tokenizer.json, and config.json (bos_token_id, eos_token_id); when
 * config.json gives vocab_size, a tokenizer with ids past it is refused. NULL with
 * lp_last_error() naming the file and the problem. */
lp_tokenizer *lp_tokenizer_load(const char *folder);
void lp_tokenizer_free(lp_tokenizer *t);

/* Encodes text[0..len) into *ids (malloc'd, *n of them; the caller frees). Added and
 * special tokens in the text are always recognised; add_special adds BOS / EOS as the
 * model's configuration says. 0, or -1 with the error set (out of memory). */
int lp_tokenizer_encode(const lp_tokenizer *t, const char *text, size_t len, int add_special,
                        int32_t **ids, size_t *n);
/* The bytes of ids (malloc'd, NUL-terminated, *len of them without the NUL; len may be
 * NULL). Byte-level pieces of a character split over tokens are kept as bytes, so the
 * result is not always UTF-8. NULL with the error set on an id out of range. */
char *lp_tokenizer_decode(const lp_tokenizer *t, const int32_t *ids, size_t n, size_t *len);
/* The token's display string, e.g. " the": its bytes when they are UTF-8, with a byte that
 * is not (a piece of a character) written as <0xE2>. Borrowed; NULL when out of range. */
const char *lp_tokenizer_token(const lp_tokenizer *t, int32_t id);
/* Ids run 0 .. vocab_size - 1 (added tokens included). */
int32_t lp_tokenizer_vocab_size(const lp_tokenizer *t);
/* The BOS / EOS ids, -1 when the model has none. */
int32_t lp_tokenizer_bos(const lp_tokenizer *t);
int32_t lp_tokenizer_eos(const lp_tokenizer *t);
/* The id of a token given as the vocab writes it ("Ġthe") or as its text (" the"), or -1. */
int lp_tokenizer_lookup(const lp_tokenizer *t, const char *token_string);

/* Writes folder/tokenizer.json and folder/tokenizer_config.json (folder must exist; files
 * there are replaced): one form for every tokenizer loupe reads, which lp_tokenizer_load and
 * the `tokenizers` library (transformers' PreTrainedTokenizerFast) read with the same ids,
 * BOS / EOS and tokens added around the text (backend/tokenizer/tok_save.c). 0, or -1 with
 * the error set. */
int lp_tokenizer_save(const lp_tokenizer *t, const char *folder);

#endif
