/* Byte-level BPE: the vocab and merge hash maps, and the merge loop on one word (a min-heap
 * of candidate merges ordered by rank then position, as `tokenizers` does), with a
 * per-word cache. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tok_impl.h"

uint64_t lp_tok_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

int32_t lp_tok_find(const lp_tokenizer *t, const char *s, size_t len)
{
    if (!t->map_cap)
        return -1;
    size_t mask = t->map_cap - 1;
    for (size_t i = lp_tok_hash(s, len) & mask;; i = (i + 1) & mask) {
        int32_t id = t->map[i];
        if (id < 0)
            return -1;
        if (t->str_len[id] == len && !memcmp(t->str[id], s, len))
            return id;
    }
}

int lp_tok_build_map(lp_tokenizer *t)
{
    size_t cap = 64;
    while (cap < (size_t)t->n * 2 + 2)
        cap *= 2;
    free(t->map);
    t->map = lp_malloc(cap * sizeof *t->map, "the tokenizer's vocab map");
    if (!t->map)
        return -1;
    memset(t->map, 0xFF, cap * sizeof *t->map);
    t->map_cap = cap;
    for (int32_t id = 0; id < t->n; id++) {
        if (!t->str[id])
            continue;
        size_t mask = cap - 1, i = lp_tok_hash(t->str[id], t->str_len[id]) & mask;
        for (; t->map[i] >= 0; i = (i + 1) & mask)
            if (t->str_len[t->map[i]] == t->str_len[id] &&
                !memcmp(t->str[t->map[i]], t->str[id], t->str_len[id]))
                break;
        if (t->map[i] < 0)
            t->map[i] = id; /* the first id keeps a duplicated string */
    }
    return 0;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

int lp_tok_alloc_pairs(lp_tokenizer *t, size_t n_merges)
{
    size_t cap = 64;
    while (cap < n_merges * 2 + 2)
        cap *= 2;
    t->pairs = lp_malloc(cap * sizeof *t->pairs, "the tokenizer's merges");
    if (!t->pairs)
        return -1;
    for (size_t i = 0; i < cap; i++)
        t->pairs[i].key = UINT64_MAX;
    t->pairs_cap = cap;
    return 0;
}

int lp_tok_add_merge(lp_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t new_id)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->pairs_cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (t->pairs[i].key == UINT64_MAX || t->pairs[i].key == key) {
            t->pairs[i] = (lp_pair_slot){key, rank, new_id};
            return 0;
        }
    }
}

static const lp_pair_slot *find_pair(const lp_tokenizer *t, int32_t a, int32_t b)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->pairs_cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (t->pairs[i].key == key)
            return &t->pairs[i];
        if (t->pairs[i].key == UINT64_MAX)
            return NULL;
    }
}

int lp_ids_push(lp_ids *a, int32_t id)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = lp_realloc(a->v, cap * sizeof *v, "tokenizing");
        if (!v)
            return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate %zu token ids", cap);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

/* ---- the merge loop ---- */

typedef struct {
    int32_t rank, pos, new_id;
} merge_t;

static int merge_less(merge_t a, merge_t b)
{
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void heap_push(merge_t *h, size_t *n, merge_t m)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_less(m, h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
}

static merge_t heap_pop(merge_t *h, size_t *n)
{
    merge_t top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && merge_less(h[c + 1], h[c]))
            c++;
        if (!merge_less(h[c], last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
    return top;
}

/* Symbols: id, prev, next, alive. The heap never holds more than 2 entries per merge plus
 * the initial n - 1, so 3n bounds it. */
static int bpe_merge(const lp_tokenizer *t, const char *w, size_t len, lp_ids *out)
{
    int32_t stack_mem[4 * 64];
    merge_t heap_stack[3 * 64];
    int32_t *mem = stack_mem;
    merge_t *heap = heap_stack;
    if (len > 64) {
        mem = lp_malloc(4 * len * sizeof *mem, "tokenizing");
        heap = lp_malloc(3 * len * sizeof *heap, "tokenizing");
        if (!mem || !heap) {
            free(mem);
            free(heap);
            return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate memory for a word of %zu bytes", len);
        }
    }
    int32_t *id = mem, *prev = mem + len, *next = mem + 2 * len, *alive = mem + 3 * len;
    /* Initial symbols: one per byte; a byte whose token is missing becomes unk (fused when
     * asked) or is dropped, as `tokenizers` does. */
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t b = t->byte_id[(unsigned char)w[i]];
        if (b < 0) {
            if (t->unk < 0)
                continue;
            if (t->fuse_unk && n > 0 && id[n - 1] == t->unk)
                continue;
            b = t->unk;
        }
        id[n++] = b;
    }
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        alive[i] = 1;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        const lp_pair_slot *p = find_pair(t, id[i], id[i + 1]);
        if (p)
            heap_push(heap, &hn, (merge_t){p->rank, (int32_t)i, p->new_id});
    }
    while (hn > 0) {
        merge_t m = heap_pop(heap, &hn);
        if (!alive[m.pos] || next[m.pos] < 0)
            continue;
        int32_t r = next[m.pos];
        const lp_pair_slot *p = find_pair(t, id[m.pos], id[r]);
        if (!p || p->new_id != m.new_id)
            continue; /* stale */
        id[m.pos] = m.new_id;
        alive[r] = 0;
        next[m.pos] = next[r];
        if (next[r] >= 0)
            prev[next[r]] = m.pos;
        if (prev[m.pos] >= 0) {
            const lp_pair_slot *q = find_pair(t, id[prev[m.pos]], id[m.pos]);
            if (q)
                heap_push(heap, &hn, (merge_t){q->rank, prev[m.pos], q->new_id});
        }
        if (next[m.pos] >= 0) {
            const lp_pair_slot *q = find_pair(t, id[m.pos], id[next[m.pos]]);
            if (q)
                heap_push(heap, &hn, (merge_t){q->rank, m.pos, q->new_id});
        }
    }
    int rc = 0;
    for (int32_t i = n ? 0 : -1; i >= 0 && rc == 0; i = next[i])
        rc = lp_ids_push(out, id[i]);
    if (mem != stack_mem) {
        free(mem);
        free(heap);
    }
    return rc;
}

/* ---- the per-word cache (words under 256 bytes, cleared when half full) ---- */

#define CACHE_MAX_WORD 256

void lp_tok_cache_free(lp_tokenizer *t)
{
    for (size_t i = 0; i < t->cache_cap; i++) {
        free(t->cache[i].key);
        free(t->cache[i].ids);
    }
    free(t->cache);
    t->cache = NULL;
    t->cache_cap = t->cache_used = 0;
}

static int cache_get(lp_tokenizer *t, const char *w, size_t len, uint64_t h, lp_ids *out)
{
    int rc = 1;
    pthread_mutex_lock(&t->cache_lock);
    if (t->cache_cap) {
        size_t mask = t->cache_cap - 1;
        for (size_t i = h & mask; t->cache[i].key; i = (i + 1) & mask) {
            lp_cache_slot *s = &t->cache[i];
            if (s->hash == h && s->klen == len && !memcmp(s->key, w, len)) {
                rc = 0;
                for (uint32_t k = 0; k < s->nids && rc == 0; k++)
                    rc = lp_ids_push(out, s->ids[k]);
                break;
            }
        }
    }
    pthread_mutex_unlock(&t->cache_lock);
    return rc; /* 1: not cached */
}

static void cache_put(lp_tokenizer *t, const char *w, size_t len, uint64_t h, const int32_t *ids,
                      size_t nids)
{
    pthread_mutex_lock(&t->cache_lock);
    if (!t->cache_cap || t->cache_used * 2 >= t->cache_cap) {
        lp_tok_cache_free(t);
        t->cache = lp_calloc(1 << 16, sizeof *t->cache, "tokenizing");
        t->cache_cap = t->cache ? 1 << 16 : 0;
    }
    char *key = t->cache_cap ? lp_malloc(len ? len : 1, "tokenizing") : NULL;
    int32_t *cp = key ? lp_malloc((nids ? nids : 1) * sizeof *cp, "tokenizing") : NULL;
    if (cp) {
        memcpy(key, w, len);
        memcpy(cp, ids, nids * sizeof *cp);
        size_t mask = t->cache_cap - 1, i = h & mask;
        while (t->cache[i].key)
            i = (i + 1) & mask;
        t->cache[i] = (lp_cache_slot){key, (uint32_t)len, (uint32_t)nids, h, cp};
        t->cache_used++;
    } else {
        free(key);
    }
    pthread_mutex_unlock(&t->cache_lock);
}

int lp_tok_bpe_word(const lp_tokenizer *tc, const char *w, size_t len, lp_ids *out)
{
    lp_tokenizer *t = (lp_tokenizer *)tc; /* the cache is the only mutable part */
    if (len == 0)
        return 0;
    if (t->ignore_merges) {
        /* the whole word, when the vocab has it, in its byte-level form */
        char stack[4 * 64], *s = stack;
        if (len > 64 && !(s = lp_malloc(2 * len, "tokenizing")))
            return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate memory for a word of %zu bytes", len);
        size_t k = 0;
        for (size_t i = 0; i < len; i++) {
            uint32_t cp = t->byte_cp[(unsigned char)w[i]];
            if (cp < 0x80) {
                s[k++] = (char)cp;
            } else {
                s[k++] = (char)(0xC0 | (cp >> 6));
                s[k++] = (char)(0x80 | (cp & 0x3F));
            }
        }
        int32_t id = lp_tok_find(t, s, k);
        if (s != stack)
            free(s);
        if (id >= 0)
            return lp_ids_push(out, id);
    }
    if (len >= CACHE_MAX_WORD)
        return bpe_merge(t, w, len, out);
    uint64_t h = lp_tok_hash(w, len);
    int rc = cache_get(t, w, len, h, out);
    if (rc <= 0)
        return rc;
    size_t start = out->n;
    if (bpe_merge(t, w, len, out) < 0)
        return -1;
    cache_put(t, w, len, h, out->v + start, out->n - start);
    return 0;
}
