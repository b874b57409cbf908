/* Small tokenizer folders written by the tests themselves: a byte-level alphabet (ids 0..255,
 * byte b has id b) plus a few merges, in each file form. */
#ifndef LP_TEST_TOK_FIXTURES_H
#define LP_TEST_TOK_FIXTURES_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer/unicode.h"

static inline char *tf_mkdir(void)
{
    char tmpl[] = "/tmp/loupe-tok-XXXXXX";
    char *d = mkdtemp(tmpl);
    cr_assert(d, "mkdtemp");
    return strdup(d);
}

static inline void tf_write(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

static inline void tf_rmdir(char *dir)
{
    const char *names[] = {"tokenizer.json", "vocab.json", "merges.txt", "config.json", "tokenizer_config.json"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    free(dir);
}

/* The JSON object body of the vocab: the 256 byte tokens, then `extra` ("\"x\": 256, ..."). */
static inline char *tf_vocab(const char *extra)
{
    size_t cap = 8192 + strlen(extra);
    char *s = malloc(cap);
    size_t k = 0;
    s[k++] = '{';
    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t n = lp_utf8_encode(lp_byte_to_cp((unsigned char)b), u);
        k += (size_t)snprintf(s + k, cap - k, "%s\"", b ? ", " : "");
        if (b == '"' || b == '\\')
            s[k++] = '\\';
        memcpy(s + k, u, n);
        k += n;
        k += (size_t)snprintf(s + k, cap - k, "\": %d", b);
    }
    k += (size_t)snprintf(s + k, cap - k, "%s%s}", *extra ? ", " : "", extra);
    return s;
}

/* GPT-2 form: merges Ġ t, h e, Ġt he; <|endoftext|> = 259. */
#define TF_EXTRA "\"\xC4\xA0t\": 256, \"he\": 257, \"\xC4\xA0the\": 258, \"<|endoftext|>\": 259"
#define TF_MERGES "#version: 0.2\n\xC4\xA0 t\nh e\n\xC4\xA0t he\n"

static inline char *tf_gpt2_folder(void)
{
    char *d = tf_mkdir();
    char *v = tf_vocab(TF_EXTRA);
    tf_write(d, "vocab.json", v);
    free(v);
    tf_write(d, "merges.txt", TF_MERGES);
    return d;
}

/* tokenizer.json with a Split pre-tokenizer (pattern given, JSON-escaped) and ByteLevel,
 * an added special <|bos|> = 260, and a post-processor that adds it. */
static inline char *tf_json(const char *pattern, const char *extra_fields)
{
    char *v = tf_vocab(TF_EXTRA);
    size_t cap = strlen(v) + 4096;
    char *s = malloc(cap);
    snprintf(s, cap,
             "{\"version\": \"1.0\", \"added_tokens\": ["
             "{\"id\": 259, \"content\": \"<|endoftext|>\", \"special\": true, \"normalized\": false},"
             "{\"id\": 260, \"content\": \"<|bos|>\", \"special\": true, \"normalized\": false}],"
             "\"normalizer\": null,"
             "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
             "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"%s\"}, \"behavior\": \"Isolated\", \"invert\": false},"
             "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]},"
             "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<|bos|>\", \"type_id\": 0}},"
             "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\": {\"<|bos|>\": "
             "{\"id\": \"<|bos|>\", \"ids\": [260], \"tokens\": [\"<|bos|>\"]}}},"
             "\"decoder\": {\"type\": \"ByteLevel\"},%s"
             "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"fuse_unk\": false,"
             "\"byte_fallback\": false, \"ignore_merges\": true, \"vocab\": %s,"
             "\"merges\": [[\"\xC4\xA0\", \"t\"], \"h e\", [\"\xC4\xA0t\", \"he\"]]}}",
             pattern, extra_fields, v);
    free(v);
    return s;
}

#define TF_CL100K "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"

static inline char *tf_json_folder(void)
{
    char *d = tf_mkdir();
    char *j = tf_json(TF_CL100K, "");
    tf_write(d, "tokenizer.json", j);
    free(j);
    tf_write(d, "tokenizer_config.json", "{\"bos_token\": \"<|bos|>\", \"eos_token\": {\"content\": \"<|endoftext|>\"}}");
    return d;
}

#endif
