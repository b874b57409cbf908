/* Unicode facts the tokenizer needs: UTF-8 decoding, the code point classes of the
 * pre-tokenizer regexes (\p{L}, \p{N}, \s as Oniguruma defines them), and GPT-2's
 * byte <-> unicode mapping. The class ranges are generated (tools/gen_unicode.py). */
#ifndef LP_TOK_UNICODE_H
#define LP_TOK_UNICODE_H

#include <stddef.h>
#include <stdint.h>

typedef struct lp_uni_range {
    uint32_t lo, hi;
    uint8_t cls;
} lp_uni_range;

extern const char lp_uni_version[];
extern const size_t lp_uni_nranges;
extern const lp_uni_range lp_uni_ranges[];

enum { LP_UNI_OTHER = 0, LP_UNI_LETTER = 1, LP_UNI_NUMBER = 2, LP_UNI_SPACE = 3 };

/* A code point that is not one: a byte of invalid UTF-8 decodes to this (class OTHER). */
#define LP_UNI_INVALID 0xFFFFFFFFu

/* The class of cp: SPACE (\s: Unicode White_Space), LETTER (\p{L}), NUMBER (\p{N}), OTHER. */
int lp_uni_class(uint32_t cp);

/* Decodes the code point at s[i] (i < len), strict UTF-8 (no overlongs, surrogates or
 * values past U+10FFFF). Returns its length in bytes (1 for an invalid byte, which
 * decodes to LP_UNI_INVALID). */
size_t lp_utf8_decode(const unsigned char *s, size_t len, size_t i, uint32_t *cp);
/* Writes cp as UTF-8 into out (4 bytes at most); returns the length. */
size_t lp_utf8_encode(uint32_t cp, char *out);
/* Whether s[0..len) is valid UTF-8 without NUL bytes. */
int lp_utf8_valid(const char *s, size_t len);

/* GPT-2's bytes_to_unicode: byte b is written as the code point lp_byte_to_cp(b). */
uint32_t lp_byte_to_cp(unsigned char b);
/* The inverse: the byte for cp, or -1 when cp is not one of the 256 code points. */
int lp_cp_to_byte(uint32_t cp);

#endif
