/* Writing a loaded tokenizer back out as tokenizer.json + tokenizer_config.json, for model
 * checkpoints (lp_model_save). The tokenizer keeps everything that decides its ids (vocab,
 * merge ranks, added tokens and their matching flags, pre-tokenizer steps, BPE flags, the
 * tokens added around the text), so a tokenizer from any form loupe reads (tokenizer.json,
 * or vocab.json + merges.txt + tokenizer_config.json) is written in the one form that
 * lp_tokenizer_load and the `tokenizers` library both read, with the same ids. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tok_impl.h"

/* The regexes as tokenizer.json spells them; checked against lp_split_identify (the
 * reader's table) before use, so the two cannot drift apart silently. */
static const char *split_pattern(lp_split_kind k)
{
    switch (k) {
    case LP_SPLIT_GPT2:
        return "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    case LP_SPLIT_CL100K:
        return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
               "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    case LP_SPLIT_QWEN2:
        return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
               "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    }
    return NULL;
}

static json_t *pretok_json(const lp_tokenizer *t)
{
    json_t *list = json_array();
    for (int i = 0; list && i < t->n_steps; i++) {
        const lp_pretok_step *s = &t->steps[i];
        json_t *j;
        if (s->kind == LP_STEP_BYTELEVEL) {
            j = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", s->add_prefix_space,
                          "trim_offsets", 1, "use_regex", s->use_regex);
        } else {
            const char *re = split_pattern(s->split);
            if (!re || lp_split_identify(re) != (int)s->split) {
                lp_set_error("the pre-tokenizer's %s regex cannot be written", lp_split_name(s->split));
                json_decref(list);
                return NULL;
            }
            j = json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex", re, "behavior",
                          "Isolated", "invert", 0);
        }
        if (!j || json_array_append_new(list, j) < 0) {
            json_decref(list);
            return NULL;
        }
    }
    if (list && json_array_size(list) == 1) {
        json_t *one = json_incref(json_array_get(list, 0));
        json_decref(list);
        return one;
    }
    return list ? json_pack("{s:s, s:o}", "type", "Sequence", "pretokenizers", list) : NULL;
}

/* Appends {"SpecialToken": ...} items for ids to the template, and registers them. */
static int template_ids(const lp_tokenizer *t, const int32_t *ids, int n, int type_id, json_t *tmpl, json_t *specials)
{
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n || !t->str[id])
            return lp_set_error("the token %ld added around the text is not in the vocab", (long)id);
        const char *s = t->str[id];
        if (json_array_append_new(tmpl, json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", s, "type_id", type_id)) < 0 ||
            json_object_set_new(specials, s, json_pack("{s:s, s:[i], s:[s]}", "id", s, "ids", (int)id, "tokens", s)) < 0)
            return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate the post-processor");
    }
    return 0;
}

static json_t *seq_item(const char *which, int type_id)
{
    return json_pack("{s:{s:s, s:i}}", "Sequence", "id", which, "type_id", type_id);
}

static json_t *post_json(const lp_tokenizer *t)
{
    json_t *bl = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 0,
                           "use_regex", 1);
    if (!bl || (t->n_prefix == 0 && t->n_suffix == 0))
        return bl;
    json_t *single = json_array(), *pair = json_array(), *specials = json_object();
    int bad = !single || !pair || !specials;
    bad = bad || template_ids(t, t->prefix, t->n_prefix, 0, single, specials) < 0 ||
          json_array_append_new(single, seq_item("A", 0)) < 0 ||
          template_ids(t, t->suffix, t->n_suffix, 0, single, specials) < 0;
    bad = bad || template_ids(t, t->prefix, t->n_prefix, 0, pair, specials) < 0 ||
          json_array_append_new(pair, seq_item("A", 0)) < 0 ||
          template_ids(t, t->suffix, t->n_suffix, 0, pair, specials) < 0 ||
          template_ids(t, t->prefix, t->n_prefix, 1, pair, specials) < 0 ||
          json_array_append_new(pair, seq_item("B", 1)) < 0 ||
          template_ids(t, t->suffix, t->n_suffix, 1, pair, specials) < 0;
    if (bad) {
        json_decref(bl), json_decref(single), json_decref(pair), json_decref(specials);
        return NULL;
    }
    json_t *tp = json_pack("{s:s, s:o, s:o, s:o}", "type", "TemplateProcessing", "single", single, "pair", pair,
                           "special_tokens", specials);
    return json_pack("{s:s, s:[o,o]}", "type", "Sequence", "processors", bl, tp);
}

static int cmp_rank(const void *a, const void *b)
{
    const lp_pair_slot *x = *(const lp_pair_slot *const *)a, *y = *(const lp_pair_slot *const *)b;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

/* Merges in rank order: "a b", or ["a", "b"] when a token holds a space. */
static json_t *merges_json(const lp_tokenizer *t)
{
    size_t n = 0;
    for (size_t i = 0; i < t->pairs_cap; i++)
        n += t->pairs[i].key != UINT64_MAX;
    const lp_pair_slot **order = lp_malloc((n ? n : 1) * sizeof *order, "saving a tokenizer");
    json_t *merges = json_array();
    if (!order || !merges) {
        free(order);
        json_decref(merges);
        return NULL;
    }
    n = 0;
    for (size_t i = 0; i < t->pairs_cap; i++)
        if (t->pairs[i].key != UINT64_MAX)
            order[n++] = &t->pairs[i];
    qsort(order, n, sizeof *order, cmp_rank);
    char stack[512];
    for (size_t i = 0; i < n && merges; i++) {
        int32_t a = (int32_t)(order[i]->key >> 32), b = (int32_t)(order[i]->key & 0xFFFFFFFFu);
        const char *sa = t->str[a], *sb = t->str[b];
        size_t la = t->str_len[a], lb = t->str_len[b];
        json_t *m;
        if (memchr(sa, ' ', la) || memchr(sb, ' ', lb)) {
            m = json_pack("[s%, s%]", sa, la, sb, lb);
        } else {
            char *s = la + lb + 2 <= sizeof stack ? stack : lp_malloc(la + lb + 2, "saving a tokenizer");
            if (!s) {
                json_decref(merges);
                merges = NULL;
                break;
            }
            memcpy(s, sa, la);
            s[la] = ' ';
            memcpy(s + la + 1, sb, lb);
            m = json_stringn(s, la + lb + 1);
            if (s != stack)
                free(s);
        }
        if (!m || json_array_append_new(merges, m) < 0) {
            json_decref(merges);
            merges = NULL;
        }
    }
    free(order);
    return merges;
}

static int cmp_added_id(const void *a, const void *b)
{
    const lp_added *x = *(const lp_added *const *)a, *y = *(const lp_added *const *)b;
    return (x->id > y->id) - (x->id < y->id);
}

static json_t *added_json(const lp_tokenizer *t)
{
    const lp_added **order = lp_malloc((t->n_added ? t->n_added : 1) * sizeof *order, "saving a tokenizer");
    json_t *arr = json_array();
    if (!order || !arr) {
        free(order);
        json_decref(arr);
        return NULL;
    }
    for (size_t i = 0; i < t->n_added; i++)
        order[i] = &t->added[i];
    qsort(order, t->n_added, sizeof *order, cmp_added_id);
    for (size_t i = 0; i < t->n_added && arr; i++) {
        const lp_added *a = order[i];
        json_t *j = json_pack("{s:i, s:s%, s:b, s:b, s:b, s:b, s:b}", "id", (int)a->id, "content", a->content, a->len,
                              "single_word", a->single_word, "lstrip", a->lstrip, "rstrip", a->rstrip, "normalized",
                              a->normalized, "special", a->special);
        if (!j || json_array_append_new(arr, j) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(order);
    return arr;
}

/* Every id with a string, added tokens included: the `tokenizers` library then gives each
 * added token the id it has here, whatever the holes and the order. */
static json_t *vocab_json(const lp_tokenizer *t)
{
    json_t *v = json_object();
    for (int pass = 0; pass < 2 && v; pass++)
        for (int32_t id = 0; id < t->n && v; id++) {
            int added = (t->flags[id] & LP_TOKF_ADDED) != 0;
            if (!t->str[id] || added != pass)
                continue;
            /* an added token spelled like a vocab token keeps only its added_tokens entry */
            if (pass && json_object_getn(v, t->str[id], t->str_len[id]))
                continue;
            if (json_object_setn_new(v, t->str[id], t->str_len[id], json_integer(id)) < 0) {
                lp_set_error("token %ld is not valid UTF-8 and cannot be written to tokenizer.json", (long)id);
                json_decref(v);
                v = NULL;
            }
        }
    return v;
}

static int dump(json_t *j, const char *folder, const char *name)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", folder, name) >= (int)sizeof path)
        return lp_set_error("%.200s...: path too long", folder);
    int rc = 0;
    if (!j)
        rc = lp_last_error()[0] ? -1 : lp_set_error_code(LP_ERR_NOMEM, "%s: cannot allocate its contents", path);
    else if (json_dump_file(j, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        rc = lp_set_error_code(LP_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    json_decref(j);
    return rc;
}

int lp_tokenizer_save(const lp_tokenizer *t, const char *folder)
{
    lp_clear_error();
    json_t *unk = t->unk >= 0 && t->unk < t->n && t->str[t->unk] ? json_stringn(t->str[t->unk], t->str_len[t->unk])
                                                                  : json_null();
    json_t *model = json_pack("{s:s, s:n, s:o, s:n, s:n, s:b, s:b, s:b, s:o*, s:o*}", "type", "BPE", "dropout", "unk_token",
                              unk, "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", t->fuse_unk,
                              "byte_fallback", 0, "ignore_merges", t->ignore_merges, "vocab", vocab_json(t), "merges",
                              merges_json(t));
    json_t *root = NULL;
    if (model && json_object_get(model, "vocab") && json_object_get(model, "merges"))
        root = json_pack("{s:s, s:n, s:n, s:o*, s:n, s:o*, s:o*, s:o, s:o}", "version", "1.0", "truncation", "padding",
                         "added_tokens", added_json(t), "normalizer", "pre_tokenizer", pretok_json(t),
                         "post_processor", post_json(t), "decoder",
                         json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets",
                                   1, "use_regex", 1),
                         "model", json_incref(model));
    json_decref(model);
    if (root && (!json_object_get(root, "added_tokens") || !json_object_get(root, "pre_tokenizer") ||
                 !json_object_get(root, "post_processor"))) {
        json_decref(root);
        root = NULL;
    }
    if (dump(root, folder, "tokenizer.json") < 0)
        return -1;
    /* PreTrainedTokenizerFast takes the post-processor as written (no add_bos_token here, so
     * that lp_tokenizer_load keeps it too), and decodes without clean-up so text round-trips */
    json_t *cfg = json_pack("{s:s, s:b, s:i}", "tokenizer_class", "PreTrainedTokenizerFast",
                            "clean_up_tokenization_spaces", 0, "model_max_length", 1 << 20);
    /* transformers rewrites a lone ByteLevel pre-tokenizer to this setting (default false) */
    int aps = 0;
    for (int i = 0; i < t->n_steps; i++)
        aps |= t->steps[i].kind == LP_STEP_BYTELEVEL && t->steps[i].add_prefix_space;
    if (cfg && json_object_set_new(cfg, "add_prefix_space", json_boolean(aps)) < 0) {
        json_decref(cfg);
        cfg = NULL;
    }
    const char *keys[] = {"bos_token", "eos_token"};
    int32_t ids[] = {t->bos, t->eos};
    for (int i = 0; i < 2 && cfg; i++)
        if (ids[i] >= 0 && ids[i] < t->n && t->str[ids[i]])
            json_object_set_new(cfg, keys[i], json_stringn(t->str[ids[i]], t->str_len[ids[i]]));
    return dump(cfg, folder, "tokenizer_config.json");
}
