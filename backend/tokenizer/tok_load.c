/* Loading: tokenizer.json, or vocab.json + merges.txt, then tokenizer_config.json and
 * config.json for BOS / EOS. Every field is type-checked; errors name the file. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "core/error.h"
#include "tok_impl.h"

/* A corrupt or unsupported file (LP_ERR_FORMAT): "<file>: <what is wrong>". */
static int fail(const char *file, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const char *file, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lp_set_error_code(LP_ERR_FORMAT, "%s: %s", file, msg);
}

/* Keeps an earlier message (out of memory, a bad id) and names the file. */
static int fail_with(const char *file, const char *what)
{
    return lp_error_prefix("%s: %s: ", file, what);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static json_t *load_json(const char *path)
{
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j) {
        if (err.line < 0)
            lp_set_error_code(LP_ERR_IO, "%s: %s", path, err.text); /* cannot open or read */
        else
            fail(path, "invalid JSON at line %d, column %d: %s", err.line, err.column, err.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        fail(path, "expected a JSON object at the top level");
        return NULL;
    }
    return j;
}

static int get_bool(json_t *o, const char *key, bool dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* ---- vocab and merges ---- */

static int load_vocab(lp_tokenizer *t, json_t *vocab, const char *file, const char *where)
{
    if (!json_is_object(vocab))
        return fail(file, "%s is not an object of token -> id", where);
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= LP_TOK_MAX_ID)
            return fail(file, "%s: the id of token \"%.80s\" is not an integer in 0 .. %d", where, key,
                        LP_TOK_MAX_ID - 1);
        int32_t id = (int32_t)json_integer_value(v);
        if (id < t->n && t->str[id])
            return fail(file, "%s: id %ld is given to both \"%.80s\" and \"%.80s\"", where, (long)id,
                        t->str[id], key);
        if (lp_tok_set(t, id, key, strlen(key)) < 0)
            return fail_with(file, where);
    }
    return 0;
}

static int add_merge(lp_tokenizer *t, const char *file, size_t rank, const char *a, size_t la,
                     const char *b, size_t lb)
{
    int32_t ia = lp_tok_find(t, a, la), ib = lp_tok_find(t, b, lb);
    if (ia < 0 || ib < 0)
        return fail(file, "merge %zu (\"%.*s %.*s\"): token \"%.*s\" is not in the vocab", rank + 1,
                    (int)la, a, (int)lb, b, ia < 0 ? (int)la : (int)lb, ia < 0 ? a : b);
    char stack[256], *ab = la + lb <= sizeof stack ? stack : lp_malloc(la + lb, "a tokenizer");
    if (!ab)
        return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate a merge");
    memcpy(ab, a, la);
    memcpy(ab + la, b, lb);
    int32_t m = lp_tok_find(t, ab, la + lb);
    if (ab != stack)
        free(ab);
    if (m < 0)
        return fail(file, "merge %zu (\"%.*s %.*s\"): the merged token \"%.*s%.*s\" is not in the vocab",
                    rank + 1, (int)la, a, (int)lb, b, (int)la, a, (int)lb, b);
    return lp_tok_add_merge(t, ia, ib, (int32_t)rank, m);
}

static int load_merges_json(lp_tokenizer *t, json_t *merges, const char *file)
{
    if (!json_is_array(merges))
        return fail(file, "model.merges is not an array");
    if (lp_tok_alloc_pairs(t, json_array_size(merges)) < 0)
        return fail_with(file, "merges");
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        if (json_is_string(m)) { /* "a b" (tokenizers before 0.20) */
            const char *s = json_string_value(m), *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return fail(file, "merge %zu (\"%.80s\") is not two tokens separated by a space", i + 1, s);
            if (add_merge(t, file, i, s, (size_t)(sp - s), sp + 1, strlen(sp + 1)) < 0)
                return -1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) { /* ["a", "b"] */
            json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
            if (add_merge(t, file, i, json_string_value(a), json_string_length(a), json_string_value(b),
                          json_string_length(b)) < 0)
                return -1;
        } else {
            return fail(file, "merge %zu is neither \"a b\" nor [\"a\", \"b\"]", i + 1);
        }
    }
    return 0;
}

static int load_merges_txt(lp_tokenizer *t, const char *file)
{
    FILE *f = fopen(file, "rb");
    if (!f)
        return lp_set_error_code(LP_ERR_IO, "%s: cannot open: %s", file, strerror(errno));
    lp_buf all = LP_BUF_INIT;
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
        lp_buf_append(&all, chunk, k);
    int err = ferror(f);
    fclose(f);
    if (err || all.oom) {
        lp_buf_free(&all);
        return err ? lp_set_error_code(LP_ERR_IO, "%s: read error", file)
                   : lp_set_error_code(LP_ERR_NOMEM, "%s: out of memory reading it", file);
    }
    size_t lines = 1;
    for (size_t i = 0; i < all.len; i++)
        lines += all.data[i] == '\n';
    int rc = lp_tok_alloc_pairs(t, lines);
    if (rc < 0)
        rc = fail_with(file, "merges");
    size_t rank = 0, lineno = 0;
    const char *p = lp_buf_str(&all), *end = p + all.len;
    while (rc == 0 && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        lineno++;
        size_t n = (size_t)(e - p);
        if (n && p[n - 1] == '\r')
            n--;
        if (n && !(lineno == 1 && n >= 8 && !memcmp(p, "#version", 8))) {
            const char *sp = memchr(p, ' ', n);
            if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - p)) || sp == p || sp + 1 == p + n)
                rc = fail(file, "line %zu (\"%.*s\") is not two tokens separated by a space", lineno,
                          n > 80 ? 80 : (int)n, p);
            else if (memchr(p, 0, n))
                rc = fail(file, "line %zu holds a NUL byte", lineno);
            else
                rc = add_merge(t, file, rank++, p, (size_t)(sp - p), sp + 1, n - (size_t)(sp + 1 - p));
        }
        p = e + 1;
    }
    lp_buf_free(&all);
    return rc;
}

/* ---- added tokens ---- */

static int add_token(lp_tokenizer *t, const char *file, int32_t id, const char *content, bool special,
                     bool lstrip, bool rstrip, bool single_word, bool normalized)
{
    size_t len = strlen(content);
    if (len == 0)
        return 0;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id)
            return 0; /* listed twice (tokenizer.json and tokenizer_config.json) */
    lp_added *a = lp_realloc(t->added, (t->n_added + 1) * sizeof *a, "a tokenizer");
    if (!a)
        return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate the added tokens");
    t->added = a;
    char *c = lp_strdup(content, "a tokenizer");
    if (!c)
        return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate the added tokens");
    t->added[t->n_added++] = (lp_added){id, c, len, special, lstrip, rstrip, single_word, normalized};
    if (!(id < t->n && t->str[id] && t->str_len[id] == len && !memcmp(t->str[id], content, len)) &&
        lp_tok_set(t, id, content, len) < 0)
        return fail_with(file, "added tokens");
    t->flags[id] |= LP_TOKF_ADDED | (special ? LP_TOKF_SPECIAL : 0);
    return 0;
}

static int load_added_json(lp_tokenizer *t, json_t *arr, const char *file)
{
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return fail(file, "added_tokens is not an array");
    size_t i;
    json_t *a;
    json_array_foreach(arr, i, a) {
        json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= LP_TOK_MAX_ID ||
            !json_is_string(content))
            return fail(file, "added_tokens[%zu] needs an id in 0 .. %d and a content string", i,
                        LP_TOK_MAX_ID - 1);
        if (add_token(t, file, (int32_t)json_integer_value(id), json_string_value(content),
                      get_bool(a, "special", false), get_bool(a, "lstrip", false), get_bool(a, "rstrip", false),
                      get_bool(a, "single_word", false), get_bool(a, "normalized", !get_bool(a, "special", false))) < 0)
            return -1;
    }
    return 0;
}

static int cmp_added(const void *x, const void *y)
{
    const lp_added *a = x, *b = y;
    if (a->len != b->len)
        return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* ---- pre-tokenizer and post-processor ---- */

static int add_step(lp_tokenizer *t, const char *file, lp_pretok_step s)
{
    if (t->n_steps == (int)(sizeof t->steps / sizeof t->steps[0]))
        return fail(file, "pre_tokenizer: too many steps");
    t->steps[t->n_steps++] = s;
    return 0;
}

static int load_pretok(lp_tokenizer *t, json_t *p, const char *file)
{
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type)
        return fail(file, "pre_tokenizer has no type");
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(p, "pretokenizers"), *q;
        size_t i;
        if (!json_is_array(list))
            return fail(file, "pre_tokenizer Sequence has no pretokenizers array");
        json_array_foreach(list, i, q) if (load_pretok(t, q, file) < 0) return -1;
        return 0;
    }
    if (!strcmp(type, "ByteLevel"))
        return add_step(t, file, (lp_pretok_step){LP_STEP_BYTELEVEL, LP_SPLIT_GPT2, get_bool(p, "use_regex", true),
                                                  get_bool(p, "add_prefix_space", true)});
    if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(p, "pattern");
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        const char *behavior = json_string_value(json_object_get(p, "behavior"));
        if (!re)
            return fail(file, "pre_tokenizer Split: only a Regex pattern is supported");
        int kind = lp_split_identify(re);
        if (kind < 0)
            return fail(file, "pre_tokenizer Split: unknown regex \"%.300s\" (supported: the GPT-2, Llama-3/cl100k and Qwen2 patterns)", re);
        if (!behavior || strcmp(behavior, "Isolated") || get_bool(p, "invert", false))
            return fail(file, "pre_tokenizer Split: only behavior Isolated without invert is supported (got %s%s)",
                        behavior ? behavior : "none", get_bool(p, "invert", false) ? ", invert" : "");
        return add_step(t, file, (lp_pretok_step){LP_STEP_SPLIT, (lp_split_kind)kind, false, false});
    }
    return fail(file, "pre_tokenizer %s is not supported (supported: ByteLevel, Split, Sequence)", type);
}

static int template_side(lp_tokenizer *t, json_t *proc, json_t *single, const char *file)
{
    json_t *specials = json_object_get(proc, "special_tokens"), *item;
    size_t i;
    bool seen_seq = false;
    json_array_foreach(single, i, item) {
        if (json_object_get(item, "Sequence")) {
            seen_seq = true;
            continue;
        }
        const char *name = json_string_value(json_object_get(json_object_get(item, "SpecialToken"), "id"));
        if (!name)
            return fail(file, "post_processor: template item %zu is neither Sequence nor SpecialToken", i);
        json_t *ids = json_object_get(json_object_get(specials, name), "ids"), *v;
        size_t k;
        if (!json_is_array(ids))
            return fail(file, "post_processor: special token \"%.80s\" has no ids", name);
        json_array_foreach(ids, k, v) {
            int32_t *side = seen_seq ? t->suffix : t->prefix;
            int *n = seen_seq ? &t->n_suffix : &t->n_prefix;
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= LP_TOK_MAX_ID)
                return fail(file, "post_processor: special token \"%.80s\" has a bad id", name);
            if (*n == 4)
                return fail(file, "post_processor: too many special tokens around the text");
            side[(*n)++] = (int32_t)json_integer_value(v);
        }
    }
    return 0;
}

static int load_post(lp_tokenizer *t, json_t *p, const char *file)
{
    if (!p || json_is_null(p))
        return 0;
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type)
        return fail(file, "post_processor has no type");
    if (!strcmp(type, "ByteLevel"))
        return 0;
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(p, "processors"), *q;
        size_t i;
        json_array_foreach(list, i, q) if (load_post(t, q, file) < 0) return -1;
        return 0;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(p, "single");
        if (!json_is_array(single))
            return fail(file, "post_processor TemplateProcessing has no single template");
        return template_side(t, p, single, file);
    }
    return fail(file, "post_processor %s is not supported (supported: ByteLevel, TemplateProcessing, Sequence)", type);
}

static int load_tokenizer_json(lp_tokenizer *t, const char *file)
{
    json_t *root = load_json(file);
    if (!root)
        return -1;
    int rc = -1;
    json_t *model = json_object_get(root, "model"), *v;
    const char *type = json_string_value(json_object_get(model, "type"));
    const char *s;
    if (!json_is_object(model)) {
        fail(file, "no model object");
    } else if (type && strcmp(type, "BPE")) {
        fail(file, "model type %s is not supported (only byte-level BPE)", type);
    } else if ((v = json_object_get(model, "dropout")) && json_is_number(v) && json_number_value(v) > 0) {
        fail(file, "BPE dropout is not supported");
    } else if (((s = json_string_value(json_object_get(model, "continuing_subword_prefix"))) && *s) ||
               ((s = json_string_value(json_object_get(model, "end_of_word_suffix"))) && *s)) {
        fail(file, "BPE with a subword prefix or suffix (\"%.40s\") is not supported", s);
    } else if ((v = json_object_get(root, "normalizer")) && !json_is_null(v)) {
        const char *nt = json_string_value(json_object_get(v, "type"));
        fail(file, "normalizer %s is not supported (byte-level tokenizers have none)", nt ? nt : "?");
    } else if (!(v = json_object_get(root, "pre_tokenizer")) || json_is_null(v)) {
        fail(file, "no pre_tokenizer: not a byte-level BPE tokenizer");
    } else if (load_pretok(t, v, file) == 0 && load_vocab(t, json_object_get(model, "vocab"), file, "model.vocab") == 0 &&
               load_added_json(t, json_object_get(root, "added_tokens"), file) == 0) {
        bool byte_level = false;
        for (int i = 0; i < t->n_steps; i++)
            byte_level |= t->steps[i].kind == LP_STEP_BYTELEVEL;
        t->ignore_merges = get_bool(model, "ignore_merges", false);
        t->fuse_unk = get_bool(model, "fuse_unk", false);
        if (!byte_level)
            fail(file, "the pre_tokenizer has no ByteLevel step: not a byte-level BPE tokenizer");
        else if (lp_tok_finish(t) < 0)
            fail_with(file, "vocab");
        else if (load_merges_json(t, json_object_get(model, "merges"), file) == 0 &&
                 load_post(t, json_object_get(root, "post_processor"), file) == 0) {
            const char *unk = json_string_value(json_object_get(model, "unk_token"));
            t->unk = unk ? lp_tok_find(t, unk, strlen(unk)) : -1;
            rc = 0;
        }
    }
    json_decref(root);
    return rc;
}

static int load_gpt2_files(lp_tokenizer *t, const char *vocab_file, const char *merges_file)
{
    json_t *root = load_json(vocab_file);
    if (!root)
        return -1;
    int rc = load_vocab(t, root, vocab_file, "the vocab");
    json_decref(root);
    if (rc < 0)
        return -1;
    /* GPT-2's form: ByteLevel with the GPT-2 regex, no prefix space. */
    t->steps[0] = (lp_pretok_step){LP_STEP_BYTELEVEL, LP_SPLIT_GPT2, true, false};
    t->n_steps = 1;
    if (lp_tok_finish(t) < 0)
        return fail_with(vocab_file, "vocab");
    return load_merges_txt(t, merges_file);
}

/* ---- configs ---- */

static const char *token_content(json_t *v)
{
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_string_value(v);
}

static int32_t first_id(json_t *v)
{
    if (json_is_array(v))
        v = json_array_get(v, 0);
    return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < LP_TOK_MAX_ID
               ? (int32_t)json_integer_value(v) : -1;
}

/* tokenizer_config.json's added_tokens_decoder (the GPT-2 form's special tokens). */
static int config_added(lp_tokenizer *t, json_t *dec, const char *file)
{
    const char *key;
    json_t *v;
    json_object_foreach(dec, key, v) {
        char *end;
        long id = strtol(key, &end, 10);
        const char *content = json_string_value(json_object_get(v, "content"));
        if (*end || id < 0 || id >= LP_TOK_MAX_ID || !content)
            return fail(file, "added_tokens_decoder entry \"%.40s\" needs an integer id and a content", key);
        if (add_token(t, file, (int32_t)id, content, get_bool(v, "special", false), get_bool(v, "lstrip", false),
                      get_bool(v, "rstrip", false), get_bool(v, "single_word", false),
                      get_bool(v, "normalized", false)) < 0)
            return -1;
    }
    return 0;
}

/* Marks a token already in the vocab as special (GPT-2's <|endoftext|>). */
static int mark_special(lp_tokenizer *t, const char *file, const char *content)
{
    int32_t id = content ? lp_tok_find(t, content, strlen(content)) : -1;
    if (id < 0)
        return 0;
    return add_token(t, file, id, content, true, false, false, false, false);
}

static int load_configs(lp_tokenizer *t, const char *folder, bool gpt2_form)
{
    char path[4096];
    json_t *tc = NULL, *cfg = NULL;
    int rc = 0;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", folder);
    if (exists(path) && !(tc = load_json(path)))
        return -1;
    if (gpt2_form) {
        if (tc) {
            json_t *dec = json_object_get(tc, "added_tokens_decoder");
            if (json_is_object(dec))
                rc = config_added(t, dec, path);
            const char *names[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
            for (int i = 0; i < 4 && rc == 0; i++)
                rc = mark_special(t, path, token_content(json_object_get(tc, names[i])));
        } else {
            rc = mark_special(t, path, "<|endoftext|>");
        }
    }
    const char *bos = tc ? token_content(json_object_get(tc, "bos_token")) : NULL;
    const char *eos = tc ? token_content(json_object_get(tc, "eos_token")) : NULL;
    if (bos)
        t->bos = lp_tok_find(t, bos, strlen(bos));
    if (eos)
        t->eos = lp_tok_find(t, eos, strlen(eos));
    json_t *ab = tc ? json_object_get(tc, "add_bos_token") : NULL;
    json_t *ae = tc ? json_object_get(tc, "add_eos_token") : NULL;

    char cpath[4096];
    snprintf(cpath, sizeof cpath, "%s/config.json", folder);
    if (rc == 0 && exists(cpath) && !(cfg = load_json(cpath)))
        rc = -1;
    if (rc == 0 && cfg) {
        if (t->bos < 0)
            t->bos = first_id(json_object_get(cfg, "bos_token_id"));
        if (t->eos < 0)
            t->eos = first_id(json_object_get(cfg, "eos_token_id"));
        json_t *vs = json_object_get(cfg, "vocab_size");
        if (json_is_integer(vs) && json_integer_value(vs) < t->n)
            rc = fail(cpath, "vocab_size is %lld, but the tokenizer has ids up to %ld: the tokenizer does not fit the model",
                      (long long)json_integer_value(vs), (long)t->n - 1);
    }
    if (rc == 0 && (t->bos >= t->n || t->eos >= t->n))
        rc = fail(cfg ? cpath : path, "the %s token id %ld is not in the tokenizer's vocab (0 .. %ld)",
                  t->bos >= t->n ? "BOS" : "EOS", (long)(t->bos >= t->n ? t->bos : t->eos), (long)t->n - 1);
    if (rc == 0 && json_is_boolean(ab)) {
        t->n_prefix = 0;
        if (json_is_true(ab) && t->bos >= 0)
            t->prefix[t->n_prefix++] = t->bos;
    }
    if (rc == 0 && json_is_boolean(ae)) {
        t->n_suffix = 0;
        if (json_is_true(ae) && t->eos >= 0)
            t->suffix[t->n_suffix++] = t->eos;
    }
    json_decref(tc);
    json_decref(cfg);
    return rc;
}

lp_tokenizer *lp_tokenizer_load(const char *folder)
{
    char tj[4096], vj[4096], mt[4096];
    if (!folder)
        folder = ".";
    snprintf(tj, sizeof tj, "%s/tokenizer.json", folder);
    snprintf(vj, sizeof vj, "%s/vocab.json", folder);
    snprintf(mt, sizeof mt, "%s/merges.txt", folder);
    lp_tokenizer *t = lp_tok_new();
    if (!t)
        return NULL;
    int rc;
    bool gpt2_form = false;
    if (exists(tj)) {
        rc = load_tokenizer_json(t, tj);
    } else if (exists(vj) && exists(mt)) {
        gpt2_form = true;
        rc = load_gpt2_files(t, vj, mt);
    } else {
        rc = lp_set_error("%s: no tokenizer here (tokenizer.json, or vocab.json and merges.txt)", folder);
    }
    if (rc == 0)
        rc = load_configs(t, folder, gpt2_form);
    /* added tokens may have grown the tables: rebuild what depends on them */
    if (rc == 0) {
        for (int32_t i = 0; i < t->tables_n; i++) {
            free(t->bytes[i]);
            free(t->display[i]);
        }
        t->tables_n = 0;
        free(t->bytes);
        free(t->bytes_len);
        free(t->display);
        t->bytes = NULL;
        t->bytes_len = NULL;
        t->display = NULL;
        if (lp_tok_finish(t) < 0)
            rc = fail_with(gpt2_form ? vj : tj, "tables");
    }
    for (int k = 0; rc == 0 && k < t->n_prefix + t->n_suffix; k++) {
        int32_t id = k < t->n_prefix ? t->prefix[k] : t->suffix[k - t->n_prefix];
        if (id >= t->n || !t->str[id])
            rc = fail(tj, "post_processor: special token id %ld is not in the vocab", (long)id);
    }
    if (rc == 0) {
        if (t->n_added)
            qsort(t->added, t->n_added, sizeof *t->added, cmp_added);
        for (size_t i = 0; i < t->n_added; i++)
            t->added_first[(unsigned char)t->added[i].content[0]] |= (uint8_t)(1u << (t->added[i].normalized ? 1 : 0));
    }
    if (rc < 0) {
        lp_tokenizer_free(t);
        return NULL;
    }
    return t;
}
