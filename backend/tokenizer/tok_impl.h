/* The tokenizer's insides, shared by its source files (not part of the public API). */
#ifndef LP_TOK_IMPL_H
#define LP_TOK_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pretok.h"
#include "tokenizer.h"

/* Ids beyond this are refused as corrupt (current vocabularies are below 300k). */
#define LP_TOK_MAX_ID (1 << 24)

enum { LP_TOKF_ADDED = 1, LP_TOKF_SPECIAL = 2 };

typedef struct lp_added {
    int32_t id;
    char *content; /* owned, NUL-terminated */
    size_t len;
    bool special, lstrip, rstrip, single_word, normalized;
} lp_added;

typedef enum { LP_STEP_SPLIT, LP_STEP_BYTELEVEL } lp_step_kind;
typedef struct lp_pretok_step {
    lp_step_kind kind;
    lp_split_kind split;  /* SPLIT, or BYTELEVEL with use_regex (always GPT-2's) */
    bool use_regex;       /* BYTELEVEL */
    bool add_prefix_space; /* BYTELEVEL */
} lp_pretok_step;

typedef struct lp_pair_slot {
    uint64_t key; /* (left << 32) | right; UINT64_MAX when empty */
    int32_t rank, new_id;
} lp_pair_slot;

typedef struct lp_cache_slot {
    char *key; /* owned; NULL when empty */
    uint32_t klen, nids;
    uint64_t hash;
    int32_t *ids; /* owned */
} lp_cache_slot;

struct lp_tokenizer {
    int32_t n;           /* ids 0..n-1 (the vocab size); some may be holes */
    char **str;          /* the vocab's string for each id (byte-level form), NULL for a hole */
    uint32_t *str_len;
    char **bytes;        /* the bytes each id stands for (decoded); NULL for a hole */
    uint32_t *bytes_len;
    char **display;      /* NUL-terminated display form, or NULL when bytes is valid UTF-8 */
    uint8_t *flags;
    int32_t tables_n;    /* entries in bytes, bytes_len, display */

    int32_t *map;        /* open addressing: vocab string -> id (-1 empty) */
    size_t map_cap;

    lp_pair_slot *pairs; /* merges: (left, right) -> rank and merged id */
    size_t pairs_cap;

    int32_t byte_id[256]; /* the id of each single byte's token, -1 when missing */
    uint32_t byte_cp[256];

    lp_added *added; /* longest first */
    size_t n_added;
    uint8_t added_first[256]; /* bit g: an added token of group g starts with this byte */

    lp_pretok_step steps[4];
    int n_steps;

    bool ignore_merges;
    bool fuse_unk;
    int32_t unk;
    int32_t bos, eos;
    int32_t prefix[4], suffix[4]; /* added around the text when add_special */
    int n_prefix, n_suffix;

    pthread_mutex_t cache_lock;
    lp_cache_slot *cache;
    size_t cache_cap, cache_used;
};

uint64_t lp_tok_hash(const char *s, size_t len);
/* Vocab string -> id, -1 when absent. */
int32_t lp_tok_find(const lp_tokenizer *t, const char *s, size_t len);
/* Builds the string map from t->str; 0 or -1 (out of memory). */
int lp_tok_build_map(lp_tokenizer *t);
/* Adds a merge; ranks given in file order (a later duplicate wins, as in `tokenizers`). */
int lp_tok_add_merge(lp_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t new_id);
int lp_tok_alloc_pairs(lp_tokenizer *t, size_t n_merges);

/* Appends the BPE ids of one pre-tokenized word (raw bytes) to *out. 0 or -1. */
typedef struct lp_ids {
    int32_t *v;
    size_t n, cap;
} lp_ids;
int lp_ids_push(lp_ids *a, int32_t id);
int lp_tok_bpe_word(const lp_tokenizer *t, const char *w, size_t len, lp_ids *out);
void lp_tok_cache_free(lp_tokenizer *t);

#endif

/* After loading: derives bytes, display strings, byte ids and the map; 0 or -1. */
int lp_tok_finish(lp_tokenizer *t);
lp_tokenizer *lp_tok_new(void);
/* Sets token id's string (copied); grows the tables. 0 or -1. */
int lp_tok_set(lp_tokenizer *t, int32_t id, const char *s, size_t len);
