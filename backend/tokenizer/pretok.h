/* The pre-tokenizer's regex split, as hand-written matchers that behave exactly like the
 * regexes (Oniguruma semantics: ordered alternation, greedy, backtracking) on every input.
 * Invalid UTF-8 bytes count as single characters outside \s, \p{L} and \p{N}. */
#ifndef LP_TOK_PRETOK_H
#define LP_TOK_PRETOK_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    LP_SPLIT_GPT2 = 0, /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    LP_SPLIT_CL100K,   /* Llama 3 / cl100k: ... |\p{N}{1,3}| ... */
    LP_SPLIT_QWEN2,    /* the same with \p{N} (one digit per piece) */
} lp_split_kind;

/* The kind whose regex is `pattern` (as written in tokenizer.json), or -1. */
int lp_split_identify(const char *pattern);
const char *lp_split_name(lp_split_kind kind);

/* Scratch space for lp_split_run, reused between calls; zero-initialise, free with
 * lp_split_scratch_free. */
typedef struct lp_split_scratch {
    uint32_t *cp;
    uint8_t *cls;
    size_t *off; /* byte offset of each character, n + 1 entries */
    size_t cap;
} lp_split_scratch;

void lp_split_scratch_free(lp_split_scratch *s);

/* Splits s[0..len) into the regex's matches (which cover the text: no gaps). Calls
 * piece(ctx, start, end) with byte offsets for each, in order. Returns 0, or -1 with the
 * error set (out of memory, or piece returned non-zero). */
int lp_split_run(lp_split_kind kind, const char *s, size_t len, lp_split_scratch *scratch,
                 int (*piece)(void *ctx, size_t start, size_t end), void *ctx);

#endif
