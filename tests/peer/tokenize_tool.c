/* Test-only driver for tests/peer/test_tokenizers.py: loads a tokenizer folder and
 * tokenizes every line of a file (each a JSON string) in one process.
 *
 *   tokenize_tool FOLDER STRINGS.jsonl
 *
 * prints one JSON object per input line: {"ids": [...], "special": [...], "roundtrip": true}
 * where ids is encode(s) without special tokens, special is encode(s) with them (BOS / EOS
 * as configured), and roundtrip says whether decode(ids) == s byte for byte. A first line
 * {"vocab_size": N, "bos": B, "eos": E} describes the tokenizer. A load error is printed to
 * stderr with exit status 2. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

static json_t *id_array(const int32_t *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s FOLDER STRINGS.jsonl\n", argv[0]);
        return 2;
    }
    lp_tokenizer *t = lp_tokenizer_load(argv[1]);
    if (!t) {
        fprintf(stderr, "%s\n", lp_last_error());
        return 2;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        lp_tokenizer_free(t);
        return 2;
    }
    printf("{\"vocab_size\": %d, \"bos\": %d, \"eos\": %d}\n", lp_tokenizer_vocab_size(t), lp_tokenizer_bos(t),
           lp_tokenizer_eos(t));
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int status = 0;
    while ((got = getline(&line, &cap, f)) > 0) {
        json_error_t err;
        json_t *s = json_loadb(line, (size_t)got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!json_is_string(s)) {
            fprintf(stderr, "bad input line: %s\n", err.text);
            json_decref(s);
            status = 2;
            break;
        }
        const char *text = json_string_value(s);
        size_t len = json_string_length(s);
        int32_t *ids = NULL, *sp = NULL;
        size_t n = 0, ns = 0, dl = 0;
        if (lp_tokenizer_encode(t, text, len, 0, &ids, &n) < 0 || lp_tokenizer_encode(t, text, len, 1, &sp, &ns) < 0) {
            fprintf(stderr, "encode failed: %s\n", lp_last_error());
            status = 1;
        }
        char *back = lp_tokenizer_decode(t, ids, n, &dl);
        json_t *o = json_object();
        json_object_set_new(o, "ids", id_array(ids, n));
        json_object_set_new(o, "special", id_array(sp, ns));
        json_object_set_new(o, "roundtrip", json_boolean(back && dl == len && !memcmp(back, text, len)));
        char *out = json_dumps(o, JSON_COMPACT);
        puts(out);
        free(out);
        json_decref(o);
        free(back);
        free(ids);
        free(sp);
        json_decref(s);
    }
    free(line);
    fclose(f);
    lp_tokenizer_free(t);
    return status;
}
