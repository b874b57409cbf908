/* The tokenizer (backend/tokenizer): byte-level alphabet, the pre-tokenizer matchers, BPE,
 * added tokens, BOS, decode, display strings, on small folders the tests write. The peer
 * check against the `tokenizers` library is tests/peer/test_tokenizers.py. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fixtures.h"
#include "tokenizer/pretok.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

static void expect_ids(const lp_tokenizer *t, const char *text, size_t len, int special, const int32_t *want,
                       size_t nwant)
{
    int32_t *ids;
    size_t n;
    cr_assert_eq(lp_tokenizer_encode(t, text, len, special, &ids, &n), 0, "%s", lp_last_error());
    cr_expect_eq(n, nwant, "\"%s\": %zu ids, expected %zu", text, n, nwant);
    for (size_t i = 0; i < n && i < nwant; i++)
        cr_expect_eq(ids[i], want[i], "\"%s\": id %zu is %d, expected %d", text, i, ids[i], want[i]);
    size_t dl;
    char *back = lp_tokenizer_decode(t, ids, n, &dl);
    cr_assert(back);
    if (!special)
        cr_expect(dl == len && !memcmp(back, text, len), "decode(encode(s)) != s for \"%s\"", text);
    free(back);
    free(ids);
}
#define IDS(...) ((const int32_t[]){__VA_ARGS__}), sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t)

Test(unicode, byte_alphabet_round_trips)
{
    cr_expect_eq(lp_byte_to_cp(' '), 0x120); /* Ġ */
    cr_expect_eq(lp_byte_to_cp('\n'), 0x10A); /* Ċ */
    cr_expect_eq(lp_byte_to_cp('A'), 'A');
    for (int b = 0; b < 256; b++)
        cr_expect_eq(lp_cp_to_byte(lp_byte_to_cp((unsigned char)b)), b);
    cr_expect_eq(lp_cp_to_byte(0x3000), -1);
}

Test(unicode, classes)
{
    cr_expect_eq(lp_uni_class('a'), LP_UNI_LETTER);
    cr_expect_eq(lp_uni_class(0x65E5), LP_UNI_LETTER); /* 日 */
    cr_expect_eq(lp_uni_class(0xB2), LP_UNI_NUMBER);   /* ² */
    cr_expect_eq(lp_uni_class(0x0663), LP_UNI_NUMBER); /* Arabic-Indic 3 */
    cr_expect_eq(lp_uni_class(0x3000), LP_UNI_SPACE);
    cr_expect_eq(lp_uni_class(0x85), LP_UNI_SPACE);
    cr_expect_eq(lp_uni_class(0x1C), LP_UNI_OTHER); /* not White_Space, unlike str.isspace */
    cr_expect_eq(lp_uni_class(0x200B), LP_UNI_OTHER);
    cr_expect_eq(lp_uni_class(0x1F600), LP_UNI_OTHER);
    cr_expect_eq(lp_uni_class(LP_UNI_INVALID), LP_UNI_OTHER);
}

Test(unicode, strict_utf8)
{
    uint32_t cp;
    cr_expect_eq(lp_utf8_decode((const unsigned char *)"\xC0\x80", 2, 0, &cp), 1);
    cr_expect_eq(cp, LP_UNI_INVALID); /* overlong */
    cr_expect_eq(lp_utf8_decode((const unsigned char *)"\xED\xA0\x80", 3, 0, &cp), 1);
    cr_expect_eq(cp, LP_UNI_INVALID); /* surrogate */
    cr_expect_eq(lp_utf8_decode((const unsigned char *)"\xF0\x9F\x98", 3, 0, &cp), 1);
    cr_expect_eq(lp_utf8_decode((const unsigned char *)"\xF0\x9F\x98\x80", 4, 0, &cp), 4);
    cr_expect_eq(cp, 0x1F600);
}

/* ---- the regex matchers: expected pieces are what the `tokenizers` library gives ---- */

static int join(void *ctx, size_t a, size_t b)
{
    char **p = ctx;
    size_t n = strlen(p[1]);
    snprintf(p[1] + n, 1024 - n, "%s%.*s", n ? "|" : "", (int)(b - a), p[0] + a);
    return 0;
}

static void expect_split(lp_split_kind kind, const char *text, const char *want)
{
    char out[1024] = "";
    char *ctx[2] = {(char *)text, out};
    lp_split_scratch sc = {0};
    cr_assert_eq(lp_split_run(kind, text, strlen(text), &sc, join, ctx), 0);
    lp_split_scratch_free(&sc);
    cr_expect_str_eq(out, want, "%s split of \"%s\"", lp_split_name(kind), text);
}

Test(pretok, gpt2_pattern)
{
    expect_split(LP_SPLIT_GPT2, "Hello world's  test\n\n 123", "Hello| world|'s| | test|\n\n| 123");
    expect_split(LP_SPLIT_GPT2, "I'M 12345 hi!!\n\nok", "I|'|M| 12345| hi|!!|\n|\n|ok");
    expect_split(LP_SPLIT_GPT2, "a \t\nb  ", "a| \t|\n|b|  ");
    expect_split(LP_SPLIT_GPT2, "'\xC5\xBF x\r\n\r\n  y", "'|\xC5\xBF| x|\r\n\r\n | y");
}

Test(pretok, cl100k_pattern)
{
    expect_split(LP_SPLIT_CL100K, "Hello world's  test\n\n 123", "Hello| world|'s| | test|\n\n| |123");
    expect_split(LP_SPLIT_CL100K, "I'M 12345 hi!!\n\nok", "I|'M| |123|45| hi|!!\n\n|ok");
    expect_split(LP_SPLIT_CL100K, "a \t\nb  ", "a| \t\n|b|  ");
    expect_split(LP_SPLIT_CL100K, "'\xC5\xBF x\r\n\r\n  y", "'\xC5\xBF| x|\r\n\r\n| | y");
    expect_split(LP_SPLIT_QWEN2, "x 123", "x| |1|2|3");
}

Test(pretok, identify)
{
    cr_expect_eq(lp_split_identify("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"),
                 LP_SPLIT_GPT2);
    cr_expect_eq(lp_split_identify("\\w+"), -1);
}

/* ---- whole tokenizers ---- */

Test(tokenizer, gpt2_files)
{
    char *d = tf_gpt2_folder();
    lp_tokenizer *t = lp_tokenizer_load(d);
    cr_assert(t, "%s", lp_last_error());
    cr_expect_eq(lp_tokenizer_vocab_size(t), 260);
    expect_ids(t, " the", 4, 0, IDS(258));
    expect_ids(t, "the", 3, 0, IDS('t', 257));
    expect_ids(t, "a<|endoftext|>b", 15, 0, IDS('a', 259, 'b'));
    expect_ids(t, " the the", 8, 1, IDS(258, 258)); /* GPT-2 adds no BOS */
    expect_ids(t, "", 0, 0, NULL, 0);
    expect_ids(t, "\xE2\x82\xAC\xFF\x00x", 6, 0, IDS(0xE2, 0x82, 0xAC, 0xFF, 0, 'x')); /* bytes, even invalid */
    cr_expect_str_eq(lp_tokenizer_token(t, 258), " the");
    cr_expect_str_eq(lp_tokenizer_token(t, 0xE2), "<0xE2>");
    cr_expect_str_eq(lp_tokenizer_token(t, 0), "<0x00>");
    cr_expect_str_eq(lp_tokenizer_token(t, 259), "<|endoftext|>");
    cr_expect_null(lp_tokenizer_token(t, 260));
    cr_expect_null(lp_tokenizer_token(t, -1));
    cr_expect_eq(lp_tokenizer_lookup(t, "\xC4\xA0the"), 258);
    cr_expect_eq(lp_tokenizer_lookup(t, " the"), 258);
    cr_expect_eq(lp_tokenizer_lookup(t, "nope"), -1);
    cr_expect_eq(lp_tokenizer_bos(t), -1);
    int32_t bad[] = {1, 999};
    cr_expect_null(lp_tokenizer_decode(t, bad, 2, NULL));
    cr_expect(strstr(lp_last_error(), "999"), "%s", lp_last_error());
    lp_tokenizer_free(t);
    tf_rmdir(d);
}

Test(tokenizer, long_words_use_the_heap_and_cache)
{
    char *d = tf_gpt2_folder();
    lp_tokenizer *t = lp_tokenizer_load(d);
    cr_assert(t, "%s", lp_last_error());
    size_t reps = 5000, len = 4 * reps;
    char *s = malloc(len + 1);
    for (size_t i = 0; i < reps; i++)
        memcpy(s + 4 * i, " the", 4);
    s[len] = 0;
    int32_t *ids;
    size_t n;
    for (int pass = 0; pass < 2; pass++) { /* the second pass hits the word cache */
        cr_assert_eq(lp_tokenizer_encode(t, s, len, 0, &ids, &n), 0);
        cr_expect_eq(n, reps);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(ids[i], 258);
        free(ids);
    }
    memset(s, 'h', len); /* one word of 20,000 bytes: merges "h e" never apply */
    for (size_t i = 1; i < len; i += 2)
        s[i] = 'e';
    cr_assert_eq(lp_tokenizer_encode(t, s, len, 0, &ids, &n), 0);
    cr_expect_eq(n, len / 2);
    cr_expect_eq(ids[0], 257);
    cr_expect_eq(ids[n - 1], 257);
    free(ids);
    free(s);
    lp_tokenizer_free(t);
    tf_rmdir(d);
}

Test(tokenizer, tokenizer_json_split_added_and_bos)
{
    char *d = tf_json_folder();
    lp_tokenizer *t = lp_tokenizer_load(d);
    cr_assert(t, "%s", lp_last_error());
    cr_expect_eq(lp_tokenizer_vocab_size(t), 261);
    cr_expect_eq(lp_tokenizer_bos(t), 260);
    cr_expect_eq(lp_tokenizer_eos(t), 259);
    expect_ids(t, " the", 4, 1, IDS(260, 258));
    expect_ids(t, " the", 4, 0, IDS(258));
    expect_ids(t, "<|bos|> the<|endoftext|>", 24, 0, IDS(260, 258, 259));
    expect_ids(t, "12345", 5, 0, IDS('1', '2', '3', '4', '5'));
    cr_expect_str_eq(lp_tokenizer_token(t, 260), "<|bos|>");
    lp_tokenizer_free(t);
    tf_rmdir(d);
}

Test(tokenizer, config_decides_bos)
{
    char *d = tf_json_folder();
    tf_write(d, "tokenizer_config.json", "{\"add_bos_token\": false}");
    lp_tokenizer *t = lp_tokenizer_load(d);
    cr_assert(t, "%s", lp_last_error());
    expect_ids(t, " the", 4, 1, IDS(258)); /* the template's BOS is turned off */
    lp_tokenizer_free(t);
    tf_rmdir(d);

    d = tf_gpt2_folder();
    tf_write(d, "tokenizer_config.json", "{\"add_bos_token\": true, \"bos_token\": \"<|endoftext|>\"}");
    tf_write(d, "config.json", "{\"vocab_size\": 260, \"bos_token_id\": 7}");
    t = lp_tokenizer_load(d);
    cr_assert(t, "%s", lp_last_error());
    cr_expect_eq(lp_tokenizer_bos(t), 259); /* tokenizer_config.json first */
    expect_ids(t, " the", 4, 1, IDS(259, 258));
    expect_ids(t, "a<|endoftext|>", 14, 0, IDS('a', 259)); /* its bos_token is special */
    lp_tokenizer_free(t);
    tf_rmdir(d);
}
