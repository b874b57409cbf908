/* Bad tokenizer folders: each load fails with a message naming the file and the problem,
 * and nothing aborts or leaks (the sanitizer build checks). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fixtures.h"
#include "tokenizer/tokenizer.h"

/* Writes name = text (plus, when other is set, other_name = other_text) into a fresh
 * folder, loads it, and expects failure with both `file` and `want` in the message. */
static void expect_error(const char *name, const char *text, const char *other_name, const char *other_text,
                         const char *file, const char *want)
{
    char *d = tf_mkdir();
    tf_write(d, name, text);
    if (other_name)
        tf_write(d, other_name, other_text);
    lp_tokenizer *t = lp_tokenizer_load(d);
    cr_expect_null(t, "loading %s = %.60s should fail", name, text);
    lp_tokenizer_free(t);
    const char *e = lp_last_error();
    cr_expect(strstr(e, file), "the error should name %s: %s", file, e);
    cr_expect(strstr(e, want), "the error should say \"%s\": %s", want, e);
    tf_rmdir(d);
}

static void expect_json_error(const char *json, const char *want)
{
    expect_error("tokenizer.json", json, NULL, NULL, "tokenizer.json", want);
}

static char *with(const char *from, const char *to)
{
    char *j = tf_json(TF_CL100K, "");
    char *p = strstr(j, from);
    cr_assert(p, "fixture lacks %s", from);
    size_t n = strlen(j) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(p - j), j, to, p + strlen(from));
    free(j);
    return out;
}

static void expect_edit_error(const char *from, const char *to, const char *want)
{
    char *j = with(from, to);
    expect_json_error(j, want);
    free(j);
}

Test(tokenizer_errors, no_files)
{
    char *d = tf_mkdir();
    cr_expect_null(lp_tokenizer_load(d));
    cr_expect(strstr(lp_last_error(), "no tokenizer here"), "%s", lp_last_error());
    tf_rmdir(d);
    cr_expect_null(lp_tokenizer_load("/nonexistent/loupe"));
}

Test(tokenizer_errors, not_json)
{
    expect_json_error("{\"model\": {\"type\": \"BPE\",\n \"vocab\": ", "line 2");
    expect_json_error("\x89PNG\r\n\x1a\n\x00\x00", "invalid JSON");
    expect_json_error("[1, 2]", "JSON object");
    expect_json_error("", "invalid JSON");
}

Test(tokenizer_errors, model_and_pipeline)
{
    expect_json_error("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", "no model");
    expect_edit_error("\"type\": \"BPE\"", "\"type\": \"WordPiece\"", "WordPiece is not supported");
    expect_edit_error("\"normalizer\": null", "\"normalizer\": {\"type\": \"NFC\"}", "normalizer NFC");
    expect_edit_error("\"dropout\": null", "\"dropout\": 0.1", "dropout");
    expect_edit_error("\"Regex\": \"(?i:", "\"Regex\": \"\\\\w+|(?i:", "unknown regex \"\\w+|(?i:");
    expect_edit_error("\"behavior\": \"Isolated\"", "\"behavior\": \"Removed\"", "Isolated");
    expect_edit_error("{\"type\": \"Split\"", "{\"type\": \"Whitespace\"", "pre_tokenizer Whitespace is not supported");
    expect_edit_error("{\"type\": \"ByteLevel\", \"add_prefix_space\"", "{\"type\": \"Metaspace\", \"add_prefix_space\"",
                      "Metaspace");
    expect_edit_error("\"post_processor\": {\"type\": \"TemplateProcessing\"", "\"post_processor\": {\"type\": \"BertProcessing\"",
                      "BertProcessing");
    expect_edit_error("\"ids\": [260]", "\"ids\": [-4]", "bad id");
    expect_edit_error("\"ids\": [260]", "\"ids\": [5000]", "not in the vocab");
}

Test(tokenizer_errors, vocab_and_merges)
{
    expect_edit_error("\"vocab\": {", "\"vocab\": [], \"x\": {", "model.vocab is not an object");
    expect_edit_error("\"he\": 257", "\"he\": -3", "not an integer in 0");
    expect_edit_error("\"he\": 257", "\"he\": 99999999999", "not an integer in 0");
    expect_edit_error("\"he\": 257", "\"he\": \"257\"", "\"he\"");
    expect_edit_error("\"he\": 257", "\"he\": 256", "id 256 is given to both");
    expect_edit_error("\"h e\"", "\"h q\\u0101\"", "is not in the vocab");
    expect_edit_error("\"h e\"", "\"he\"", "not two tokens");
    expect_edit_error("\"h e\"", "\"t t\"", "merged token \"tt\" is not in the vocab");
    expect_edit_error("\"h e\"", "[\"h\"]", "neither");
    expect_edit_error("\"merges\": [", "\"merges\": 3, \"x\": [", "merges is not an array");
    expect_edit_error("{\"id\": 260, \"content\"", "{\"id\": \"x\", \"content\"", "added_tokens[1]");
}

Test(tokenizer_errors, gpt2_files)
{
    char *v = tf_vocab(TF_EXTRA);
    expect_error("vocab.json", v, "merges.txt", "#version: 0.2\nh e\nnot-a-merge\n", "merges.txt", "line 3");
    expect_error("vocab.json", v, "merges.txt", "h e\nx y\n", "merges.txt", "\"xy\" is not in the vocab");
    expect_error("vocab.json", v, "merges.txt", "h e f\n", "merges.txt", "line 1");
    expect_error("vocab.json", "{\"a\": 0, \"b\": 0}", "merges.txt", "", "vocab.json", "given to both");
    expect_error("vocab.json", "{\"a\": 0,", "merges.txt", "", "vocab.json", "invalid JSON");
    expect_error("vocab.json", "{}", "merges.txt", "", "vocab.json", "empty");
    free(v);
}

Test(tokenizer_errors, does_not_fit_the_model)
{
    char *d = tf_gpt2_folder();
    tf_write(d, "config.json", "{\"vocab_size\": 100}");
    cr_expect_null(lp_tokenizer_load(d));
    cr_expect(strstr(lp_last_error(), "config.json: vocab_size is 100") && strstr(lp_last_error(), "does not fit"),
              "%s", lp_last_error());
    tf_write(d, "config.json", "{\"vocab_size\": 260, \"bos_token_id\": 4000}");
    cr_expect_null(lp_tokenizer_load(d));
    cr_expect(strstr(lp_last_error(), "BOS token id 4000"), "%s", lp_last_error());
    tf_write(d, "config.json", "{\"vocab_size\": 26");
    cr_expect_null(lp_tokenizer_load(d));
    cr_expect(strstr(lp_last_error(), "config.json: invalid JSON"), "%s", lp_last_error());
    tf_write(d, "config.json", "{\"vocab_size\": 260}");
    tf_write(d, "tokenizer_config.json", "{\"added_tokens_decoder\": {\"x\": {\"content\": \"a\"}}}");
    cr_expect_null(lp_tokenizer_load(d));
    cr_expect(strstr(lp_last_error(), "tokenizer_config.json: added_tokens_decoder"), "%s", lp_last_error());
    tf_rmdir(d);
}
