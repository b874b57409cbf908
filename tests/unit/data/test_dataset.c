/* Datasets: text files to tokens, token files (both formats, corrupt ones), splits, and
 * the random-window batcher's determinism and bounds. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/dataset.h"
#include "data/text.h"
#include "data_fixtures.h"
#include "tokenizer/train.h"

TestSuite(dataset, .init = df_setup, .fini = df_teardown);

static lp_dataset *iota(size_t n)
{
    int32_t *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (int32_t)i;
    lp_dataset *d = lp_dataset_from_ids(v, n);
    free(v);
    cr_assert(d);
    return d;
}

Test(dataset, batches_are_deterministic_windows_in_bounds)
{
    lp_dataset *d = iota(1000);
    int64_t B = 16, ctx = 32;
    int32_t in1[16 * 32], tg1[16 * 32], in2[16 * 32], tg2[16 * 32];
    lp_rng g1, g2;
    lp_rng_seed(&g1, 7);
    lp_rng_seed(&g2, 7);
    for (int rep = 0; rep < 50; rep++) {
        cr_assert_eq(lp_dataset_batch(d, &g1, B, ctx, in1, tg1), 0);
        cr_assert_eq(lp_dataset_batch(d, &g2, B, ctx, in2, tg2), 0);
        cr_assert(memcmp(in1, in2, sizeof in1) == 0 && memcmp(tg1, tg2, sizeof tg1) == 0, "same seed, same batch");
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < ctx; i++) {
                int32_t x = in1[b * ctx + i], y = tg1[b * ctx + i];
                cr_assert(x >= 0 && y <= 999 && y == x + 1 && x == in1[b * ctx] + i, "window %ld broken", (long)b);
            }
    }
    lp_rng_seed(&g2, 8);
    lp_dataset_batch(d, &g2, B, ctx, in2, tg2);
    cr_expect(memcmp(in1, in2, sizeof in1) != 0, "another seed, another batch");
    /* a window exactly the size of the data: always the whole of it */
    lp_dataset *small = iota(33);
    cr_assert_eq(lp_dataset_batch(small, &g1, 2, 32, in1, tg1), 0);
    cr_expect(in1[0] == 0 && tg1[31] == 32 && in1[32] == 0);
    cr_expect_eq(lp_dataset_batch(small, &g1, 1, 33, in1, tg1), -1);
    cr_expect(strstr(lp_last_error(), "too few"));
    cr_expect_eq(lp_dataset_batch(small, &g1, 0, 3, in1, tg1), -1);
    /* every start is reachable */
    int seen[3] = {0};
    lp_dataset *three = iota(4);
    for (int i = 0; i < 200; i++) {
        lp_dataset_batch(three, &g1, 1, 1, in1, tg1);
        seen[in1[0]]++;
    }
    cr_expect(seen[0] && seen[1] && seen[2]);
    lp_dataset_free(three);
    lp_dataset_free(small);
    lp_dataset_free(d);
}

Test(dataset, split_shares_tokens)
{
    lp_dataset *d = iota(100), *tr, *va;
    cr_assert_eq(lp_dataset_split(d, 0.1, &tr, &va), 0);
    cr_expect_eq(lp_dataset_size(tr), 90);
    cr_expect_eq(lp_dataset_size(va), 10);
    cr_expect_eq(lp_dataset_ids(va)[0], 90);
    lp_dataset_free(d); /* the views keep the tokens */
    cr_expect_eq(lp_dataset_ids(tr)[89], 89);
    lp_dataset *a, *b;
    cr_expect_eq(lp_dataset_split(tr, 0.0, &a, &b), -1);
    cr_expect_eq(lp_dataset_split(tr, 1.0, &a, &b), -1);
    cr_expect_eq(lp_dataset_split(tr, 0.001, &a, &b), -1);
    cr_expect(a == NULL && b == NULL);
    lp_dataset_free(tr);
    lp_dataset_free(va);
}

Test(dataset, token_files_round_trip)
{
    lp_dataset *d = iota(70000); /* ids past 65535: width 4 */
    const char *p = df_path("big.tok");
    cr_assert_eq(lp_dataset_save_tokens(d, p, LP_TOKFILE_LOUPE), 0, "%s", lp_last_error());
    lp_dataset *e = lp_dataset_load_tokens(p);
    cr_assert(e, "%s", lp_last_error());
    cr_expect_eq(lp_dataset_size(e), 70000);
    cr_expect(memcmp(lp_dataset_ids(d), lp_dataset_ids(e), 70000 * 4) == 0);
    cr_expect_eq(lp_dataset_save_tokens(d, df_path("x.bin"), LP_TOKFILE_LLMC), -1, "llm.c holds uint16 only");
    lp_dataset *s, *v;
    lp_dataset_split(d, 0.5, &s, &v);
    const char *q = df_path("small.bin");
    cr_assert_eq(lp_dataset_save_tokens(s, q, LP_TOKFILE_LLMC), 0);
    lp_dataset *f = lp_dataset_load_tokens(q);
    cr_assert(f, "%s", lp_last_error());
    cr_expect_eq(lp_dataset_size(f), 35000);
    cr_expect(memcmp(lp_dataset_ids(f), lp_dataset_ids(s), 35000 * 4) == 0);
    const char *r = df_path("small.tok");
    cr_assert_eq(lp_dataset_save_tokens(s, r, LP_TOKFILE_LOUPE), 0);
    lp_dataset *g = lp_dataset_load_tokens(r);
    cr_expect(g && lp_dataset_size(g) == 35000 && memcmp(lp_dataset_ids(g), lp_dataset_ids(s), 35000 * 4) == 0);
    lp_dataset_free(g);
    lp_dataset_free(f);
    lp_dataset_free(s);
    lp_dataset_free(v);
    lp_dataset_free(e);
    lp_dataset_free(d);
}

static void expect_load_error(const char *name, const void *bytes, size_t n, const char *want)
{
    const char *p = df_write(name, bytes, n);
    lp_dataset *d = lp_dataset_load_tokens(p);
    cr_expect_null(d, "%s should not load", name);
    lp_dataset_free(d);
    cr_expect(strstr(lp_last_error(), name), "error names the file: %s", lp_last_error());
    cr_expect(strstr(lp_last_error(), want), "error says %s: %s", want, lp_last_error());
}

Test(dataset, corrupt_token_files)
{
    unsigned char h[64] = "LOUPETOK";
    h[8] = 1;
    h[12] = 2;
    h[16] = 5; /* 5 tokens, 10 bytes */
    expect_load_error("short.tok", h, 32 + 6, "corrupt");
    expect_load_error("long.tok", h, 32 + 12, "corrupt");
    h[16] = 0;
    expect_load_error("zero.tok", h, 32, "no tokens");
    h[16] = 0xff;
    h[23] = 0xff; /* a huge count */
    expect_load_error("huge.tok", h, 40, "corrupt");
    h[23] = 0;
    h[16] = 1;
    h[12] = 3;
    expect_load_error("width.tok", h, 35, "width");
    h[12] = 4;
    h[8] = 9;
    expect_load_error("version.tok", h, 36, "version");
    h[8] = 1;
    h[32] = h[33] = h[34] = h[35] = 0xff; /* id 2^32 - 1 */
    expect_load_error("negid.tok", h, 36, "id");
    expect_load_error("text.tok", "hello world, not tokens", 23, "not a token file");
    expect_load_error("tiny.tok", "LOU", 3, "not a token file");
    unsigned char l[16] = {0x88, 0xd8, 0x34, 0x1, 1, 0, 0, 0, 4, 0, 0, 0}; /* llm.c magic, header cut short */
    expect_load_error("llmc.bin", l, 16, "truncated");
    cr_expect_null(lp_dataset_load_tokens(df_path("missing.tok")));
    cr_expect(strstr(lp_last_error(), "missing.tok"));
}

Test(dataset, text_files_are_checked_and_tokenized)
{
    char *text = df_corpus(60000, 5);
    const char *a = df_write("a.txt", text, strlen(text));
    const char *b = df_write("b.txt", "Mara lives in Paris.", 20);
    lp_bpe_trainer *trn = lp_bpe_trainer_new((const char *[]){"<|endoftext|>"}, 1);
    lp_bpe_trainer_add_text(trn, text, strlen(text));
    lp_bpe_train_opts o = {.vocab_size = 400};
    cr_assert_eq(lp_bpe_trainer_train(trn, &o), 0);
    lp_tokenizer *t = lp_bpe_trainer_tokenizer(trn);
    cr_assert(t, "%s", lp_last_error());
    lp_bpe_trainer_free(trn);
    const char *paths[] = {a, b};
    lp_dataset *d = lp_dataset_from_files(t, paths, 2);
    cr_assert(d, "%s", lp_last_error());
    size_t n = lp_dataset_size(d);
    const int32_t *ids = lp_dataset_ids(d);
    cr_expect_eq(ids[n - 1], 0, "each file ends with EOS");
    size_t dl;
    char *back = lp_tokenizer_decode(t, ids, n, &dl);
    cr_assert(back && dl == strlen(text) + 13 + 20 + 13);
    cr_expect(memcmp(back, text, strlen(text)) == 0);
    cr_expect_str_eq(back + strlen(text), "<|endoftext|>Mara lives in Paris.<|endoftext|>");
    free(back);
    lp_dataset_free(d);

    const char bin[] = {'o', 'k', '\n', (char)0x89, 'P', 'N', 'G'};
    const char *paths2[] = {a, df_write("img.png", bin, sizeof bin)};
    cr_expect_null(lp_dataset_from_files(t, paths2, 2));
    cr_expect(strstr(lp_last_error(), "img.png") && strstr(lp_last_error(), "offset 3"), "%s", lp_last_error());
    const char *paths3[] = {df_write("empty.txt", "", 0)};
    cr_expect_null(lp_dataset_from_files(t, paths3, 1));
    cr_expect(strstr(lp_last_error(), "empty.txt") && strstr(lp_last_error(), "empty"), "%s", lp_last_error());
    const char *paths4[] = {df_path("nope.txt")};
    cr_expect_null(lp_dataset_from_files(t, paths4, 1));
    cr_expect(strstr(lp_last_error(), "nope.txt"));
    cr_expect_null(lp_dataset_from_files(t, paths4, 0));
    cr_expect_null(lp_dataset_from_text(t, "", 0));
    lp_tokenizer_free(t);
    free(text);
}

Test(dataset, utf8_checker)
{
    cr_expect_eq(lp_text_check_utf8("héllo 日本 😀", strlen("héllo 日本 😀")), strlen("héllo 日本 😀"));
    cr_expect_eq(lp_text_check_utf8("ab\xc0\xaf", 4), 2, "overlong");
    cr_expect_eq(lp_text_check_utf8("ab\xed\xa0\x80", 5), 2, "surrogate");
    cr_expect_eq(lp_text_check_utf8("ab\xe6\x97", 4), 2, "truncated");
    cr_expect_eq(lp_text_check_utf8("a\0b", 3), 1, "NUL");
}
