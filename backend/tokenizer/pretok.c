/* Hand-written matchers for the known pre-tokenizer regexes. Each takes the decoded
 * characters and an index i, and returns where the regex's leftmost match at i ends (every
 * position starts a match: the last alternatives are \s+ and [^\s\p{L}\p{N}]+ with the
 * letter and digit branches, which cover every character class). */
#include "pretok.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "unicode.h"

static const char PAT_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char PAT_CL100K[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char PAT_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

int lp_split_identify(const char *pattern)
{
    if (!strcmp(pattern, PAT_GPT2))
        return LP_SPLIT_GPT2;
    if (!strcmp(pattern, PAT_CL100K))
        return LP_SPLIT_CL100K;
    if (!strcmp(pattern, PAT_QWEN2))
        return LP_SPLIT_QWEN2;
    return -1;
}

const char *lp_split_name(lp_split_kind kind)
{
    switch (kind) {
    case LP_SPLIT_GPT2: return "GPT-2";
    case LP_SPLIT_CL100K: return "Llama-3/cl100k";
    case LP_SPLIT_QWEN2: return "Qwen2";
    }
    return "?";
}

void lp_split_scratch_free(lp_split_scratch *s)
{
    free(s->cp);
    free(s->cls);
    free(s->off);
    memset(s, 0, sizeof *s);
}

typedef struct {
    const uint32_t *cp;
    const uint8_t *cls;
    size_t n;
} chars;

static size_t run_of(const chars *c, size_t j, int cls)
{
    while (j < c->n && c->cls[j] == cls)
        j++;
    return j;
}

/* \s+(?!\S)|\s+ at a whitespace character i. */
static size_t space_tail(const chars *c, size_t i)
{
    size_t e = run_of(c, i, LP_UNI_SPACE);
    if (e == c->n)
        return e;
    return e - 1 > i ? e - 1 : i + 1;
}

static size_t match_gpt2(const chars *c, size_t i)
{
    size_t n = c->n;
    uint32_t x = c->cp[i];
    if (x == '\'' && i + 1 < n) {
        uint32_t y = c->cp[i + 1];
        if (y == 's' || y == 't' || y == 'm' || y == 'd')
            return i + 2;
        if (i + 2 < n) {
            uint32_t z = c->cp[i + 2];
            if ((y == 'r' && z == 'e') || (y == 'v' && z == 'e') || (y == 'l' && z == 'l'))
                return i + 3;
        }
    }
    size_t j = (x == ' ' && i + 1 < n && c->cls[i + 1] != LP_UNI_SPACE) ? i + 1 : i;
    int k = c->cls[j];
    if (k != LP_UNI_SPACE)
        return run_of(c, j, k); /* ` ?\p{L}+`, ` ?\p{N}+` or ` ?[^\s\p{L}\p{N}]+` */
    return space_tail(c, i);
}

static uint32_t fold(uint32_t x)
{
    if (x >= 'A' && x <= 'Z')
        return x + 32;
    if (x == 0x17F) /* LATIN SMALL LETTER LONG S folds to s */
        return 's';
    return x;
}

static size_t match_cl100k(const chars *c, size_t i, size_t max_digits)
{
    size_t n = c->n;
    uint32_t x = c->cp[i];
    if (x == '\'' && i + 1 < n) {
        uint32_t y = fold(c->cp[i + 1]);
        if (y == 's' || y == 't' || y == 'm' || y == 'd')
            return i + 2;
        if (i + 2 < n) {
            uint32_t z = fold(c->cp[i + 2]);
            if ((y == 'r' && z == 'e') || (y == 'v' && z == 'e') || (y == 'l' && z == 'l'))
                return i + 3;
        }
    }
    int k = c->cls[i];
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (k == LP_UNI_LETTER)
        return run_of(c, i, LP_UNI_LETTER);
    if (x != '\r' && x != '\n' && k != LP_UNI_NUMBER && i + 1 < n && c->cls[i + 1] == LP_UNI_LETTER)
        return run_of(c, i + 1, LP_UNI_LETTER);
    /* \p{N}{1,3} */
    if (k == LP_UNI_NUMBER) {
        size_t j = i;
        while (j < n && j - i < max_digits && c->cls[j] == LP_UNI_NUMBER)
            j++;
        return j;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t j = (x == ' ' && i + 1 < n && c->cls[i + 1] == LP_UNI_OTHER) ? i + 1 : i;
    if (c->cls[j] == LP_UNI_OTHER) {
        j = run_of(c, j, LP_UNI_OTHER);
        while (j < n && (c->cp[j] == '\r' || c->cp[j] == '\n'))
            j++;
        return j;
    }
    /* \s*[\r\n]+ : the whitespace run up to its last \r or \n */
    size_t e = run_of(c, i, LP_UNI_SPACE);
    for (size_t q = e; q > i; q--)
        if (c->cp[q - 1] == '\r' || c->cp[q - 1] == '\n')
            return q;
    return space_tail(c, i);
}

static int grow(lp_split_scratch *s, size_t need)
{
    if (need <= s->cap)
        return 0;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < need)
        cap *= 2;
    uint32_t *cp = lp_realloc(s->cp, cap * sizeof *cp, "tokenizing");
    if (cp)
        s->cp = cp;
    uint8_t *cls = lp_realloc(s->cls, cap, "tokenizing");
    if (cls)
        s->cls = cls;
    size_t *off = lp_realloc(s->off, (cap + 1) * sizeof *off, "tokenizing");
    if (off)
        s->off = off;
    if (!cp || !cls || !off) {
        char b[32];
        return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate %s for tokenizing",
                                 lp_format_bytes(cap * 13, b, sizeof b));
    }
    s->cap = cap;
    return 0;
}

int lp_split_run(lp_split_kind kind, const char *s, size_t len, lp_split_scratch *scratch,
                 int (*piece)(void *ctx, size_t start, size_t end), void *ctx)
{
    if (len == 0)
        return 0;
    if (grow(scratch, len) < 0)
        return -1;
    const unsigned char *u = (const unsigned char *)s;
    size_t n = 0;
    for (size_t i = 0; i < len; n++) {
        uint32_t cp;
        size_t k = lp_utf8_decode(u, len, i, &cp);
        scratch->cp[n] = cp;
        scratch->cls[n] = (uint8_t)lp_uni_class(cp);
        scratch->off[n] = i;
        i += k;
    }
    scratch->off[n] = len;
    chars c = {scratch->cp, scratch->cls, n};
    for (size_t i = 0; i < n;) {
        size_t j = kind == LP_SPLIT_GPT2 ? match_gpt2(&c, i)
                                         : match_cl100k(&c, i, kind == LP_SPLIT_CL100K ? 3 : 1);
        if (piece(ctx, scratch->off[i], scratch->off[j]) != 0)
            return -1;
        i = j;
    }
    return 0;
}
