/* The byte-level BPE trainer: determinism, the vocab size reached, valid merges, round trips
 * through the saved tokenizer.json, and bad inputs. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "data_fixtures.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/train.h"

TestSuite(bpe_train, .init = df_setup, .fini = df_teardown);

static const char *EOT[] = {"<|endoftext|>"};

static lp_bpe_trainer *trained(const char *text, int32_t vocab)
{
    lp_bpe_trainer *tr = lp_bpe_trainer_new(EOT, 1);
    cr_assert(tr);
    cr_assert_eq(lp_bpe_trainer_add_text(tr, text, strlen(text)), 0, "%s", lp_last_error());
    lp_bpe_train_opts o = {.vocab_size = vocab};
    cr_assert_eq(lp_bpe_trainer_train(tr, &o), 0, "%s", lp_last_error());
    return tr;
}

Test(bpe_train, deterministic_and_reaches_vocab_size)
{
    char *text = df_corpus(200000, 1);
    lp_bpe_trainer *a = trained(text, 400), *b = trained(text, 400);
    cr_expect_eq(lp_bpe_trainer_vocab_size(a), 400);
    cr_expect_eq(lp_bpe_trainer_n_merges(a), lp_bpe_trainer_n_merges(b));
    for (size_t i = 0; i < lp_bpe_trainer_n_merges(a); i++) {
        int32_t l1, r1, c1, l2, r2, c2;
        lp_bpe_trainer_merge(a, i, &l1, &r1, &c1);
        lp_bpe_trainer_merge(b, i, &l2, &r2, &c2);
        cr_assert(l1 == l2 && r1 == r2 && c1 == c2, "merge %zu differs", i);
    }
    lp_bpe_trainer_free(a);
    lp_bpe_trainer_free(b);
    free(text);
}

Test(bpe_train, merges_are_valid)
{
    char *text = df_corpus(100000, 2);
    lp_bpe_trainer *tr = trained(text, 350);
    size_t el;
    cr_expect_str_eq(lp_bpe_trainer_token(tr, 0, &el), "<|endoftext|>");
    for (size_t i = 0; i < lp_bpe_trainer_n_merges(tr); i++) {
        int32_t l, r, c;
        cr_assert_eq(lp_bpe_trainer_merge(tr, i, &l, &r, &c), 0);
        cr_assert(l >= 1 && r >= 1 && l < c && r < c, "merge %zu: %d %d -> %d", i, l, r, c);
        size_t ll, rl, cl;
        const char *ls = lp_bpe_trainer_token(tr, l, &ll), *rs = lp_bpe_trainer_token(tr, r, &rl),
                   *cs = lp_bpe_trainer_token(tr, c, &cl);
        cr_assert(cl == ll + rl && memcmp(cs, ls, ll) == 0 && memcmp(cs + ll, rs, rl) == 0, "merge %zu is not a concatenation", i);
    }
    cr_expect_eq(lp_bpe_trainer_merge(tr, lp_bpe_trainer_n_merges(tr), &(int32_t){0}, &(int32_t){0}, &(int32_t){0}), -1);
    lp_bpe_trainer_free(tr);
    free(text);
}

Test(bpe_train, saved_tokenizer_round_trips)
{
    char *text = df_corpus(150000, 3);
    const char *path = df_write("corpus.txt", text, strlen(text));
    lp_bpe_trainer *tr = lp_bpe_trainer_new(EOT, 1);
    cr_assert_eq(lp_bpe_trainer_add_file(tr, path), 0, "%s", lp_last_error());
    lp_bpe_train_opts o = {.vocab_size = 500};
    cr_assert_eq(lp_bpe_trainer_train(tr, &o), 0, "%s", lp_last_error());
    const char *folder = df_path("tok/nested");
    cr_assert_eq(lp_bpe_trainer_save(tr, folder), 0, "%s", lp_last_error());
    lp_tokenizer *t = lp_tokenizer_load(folder);
    cr_assert(t, "%s", lp_last_error());
    cr_expect_eq(lp_tokenizer_vocab_size(t), 500);
    cr_expect_eq(lp_tokenizer_eos(t), 0);
    int32_t *ids;
    size_t n;
    cr_assert_eq(lp_tokenizer_encode(t, text, strlen(text), 0, &ids, &n), 0);
    cr_expect_lt(n, strlen(text) / 2, "merges should compress the training text (%zu tokens)", n);
    size_t dl;
    char *back = lp_tokenizer_decode(t, ids, n, &dl);
    cr_assert(back && dl == strlen(text) && memcmp(back, text, dl) == 0, "decode(encode(text)) != text");
    free(back);
    free(ids);
    const char *odd = "x<|endoftext|>\t\xf0\x9f\x98\x80 日本語 \xff\xfe";
    cr_assert_eq(lp_tokenizer_encode(t, odd, strlen(odd), 0, &ids, &n), 0);
    cr_expect_eq(ids[1], 0, "the special token is one id");
    back = lp_tokenizer_decode(t, ids, n, &dl);
    cr_expect(back && dl == strlen(odd) && memcmp(back, odd, dl) == 0);
    free(back);
    free(ids);
    lp_tokenizer_free(t);
    /* also through a temporary folder */
    t = lp_bpe_trainer_tokenizer(tr);
    cr_assert(t, "%s", lp_last_error());
    cr_expect_eq(lp_tokenizer_vocab_size(t), 500);
    lp_tokenizer_free(t);
    lp_bpe_trainer_free(tr);
    free(text);
}

Test(bpe_train, specials_are_never_merged)
{
    const char *text = "ab<|endoftext|>ab<|endoftext|>ab<|endoftext|>";
    lp_bpe_trainer *tr = trained(text, 258);
    size_t n;
    cr_expect_eq(lp_bpe_trainer_n_merges(tr), 1);
    cr_expect_eq(lp_bpe_trainer_n_words(tr), 1);
    cr_expect_str_eq(lp_bpe_trainer_token(tr, 257, &n), "ab");
    lp_bpe_trainer_free(tr);
}

Test(bpe_train, stops_when_no_pair_is_frequent_enough)
{
    lp_bpe_trainer *tr = lp_bpe_trainer_new(NULL, 0);
    const char *text = "aaaa bb cd";
    lp_bpe_trainer_add_text(tr, text, strlen(text));
    lp_bpe_train_opts o = {.vocab_size = 1000, .min_frequency = 2};
    cr_assert_eq(lp_bpe_trainer_train(tr, &o), 0);
    cr_expect_eq(lp_bpe_trainer_n_merges(tr), 1, "only aa appears twice"); /* aaaa -> aa aa; then (aa,aa) once */
    cr_expect_eq(lp_bpe_trainer_vocab_size(tr), 257);
    lp_bpe_trainer_free(tr);
}

static void expect_err(int rc, const char *want)
{
    cr_expect_eq(rc, -1);
    cr_expect(strstr(lp_last_error(), want), "error should say \"%s\": %s", want, lp_last_error());
}

Test(bpe_train, bad_inputs)
{
    lp_bpe_trainer *tr = lp_bpe_trainer_new(EOT, 1);
    expect_err(lp_bpe_trainer_add_file(tr, df_path("missing.txt")), "missing.txt");
    expect_err(lp_bpe_trainer_add_file(tr, df_write("empty.txt", "", 0)), "empty");
    const char bin[] = "hello\x00\x01\x02world";
    expect_err(lp_bpe_trainer_add_file(tr, df_write("bin.dat", bin, sizeof bin)), "offset 5");
    cr_expect(strstr(lp_last_error(), "bin.dat"));
    const char bad8[] = "caf\xc3(";
    expect_err(lp_bpe_trainer_add_file(tr, df_write("latin.txt", bad8, 5)), "offset 3");
    lp_bpe_train_opts o = {.vocab_size = 1000};
    expect_err(lp_bpe_trainer_train(tr, &o), "no text");
    lp_bpe_trainer_add_text(tr, "hello world", 11);
    o.vocab_size = 256;
    expect_err(lp_bpe_trainer_train(tr, &o), "at least 256");
    expect_err(lp_bpe_trainer_save(tr, df_path("x")), "not trained");
    o.vocab_size = 300;
    cr_expect_eq(lp_bpe_trainer_train(tr, &o), 0);
    expect_err(lp_bpe_trainer_train(tr, &o), "already");
    lp_bpe_trainer_free(tr);

    const char *dup[] = {"<a>", "<a>"};
    cr_expect_null(lp_bpe_trainer_new(dup, 2));
    cr_expect(strstr(lp_last_error(), "twice"));
    const char *empty[] = {""};
    cr_expect_null(lp_bpe_trainer_new(empty, 1));
    lp_bpe_trainer_free(NULL);
}

Test(bpe_train, interrupt_stops_training)
{
    char *text = df_corpus(50000, 4);
    lp_bpe_trainer *tr = lp_bpe_trainer_new(EOT, 1);
    lp_bpe_trainer_add_text(tr, text, strlen(text));
    lp_interrupt_request();
    lp_bpe_train_opts o = {.vocab_size = 2000};
    expect_err(lp_bpe_trainer_train(tr, &o), "interrupted");
    lp_interrupt_clear();
    lp_bpe_trainer_free(tr);
    free(text);
}
