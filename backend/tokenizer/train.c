/* The byte-level BPE trainer (see train.h): word counting, then incremental merging. */
#include "tokenizer/train.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "data/text.h"
#include "tokenizer/pretok.h"
#include "tokenizer/unicode.h"

/* ---- a hash set of ids keyed by strings held elsewhere ---- */

typedef const char *(*key_fn)(const void *ctx, int32_t id, size_t *len);
typedef struct idmap {
    int32_t *slot; /* -1 empty */
    size_t cap, n;
} idmap;

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

/* The slot holding s, or the empty slot where it would go. */
static size_t idmap_slot(const idmap *m, const char *s, size_t len, key_fn k, const void *ctx)
{
    size_t i = hash_bytes(s, len) & (m->cap - 1);
    for (;;) {
        int32_t id = m->slot[i];
        if (id < 0)
            return i;
        size_t kl;
        const char *ks = k(ctx, id, &kl);
        if (kl == len && memcmp(ks, s, len) == 0)
            return i;
        i = (i + 1) & (m->cap - 1);
    }
}

static int idmap_reserve(idmap *m, key_fn k, const void *ctx)
{
    if (m->cap && (m->n + 1) * 10 < m->cap * 7)
        return 0;
    size_t ncap = m->cap ? m->cap * 2 : 1024;
    int32_t *ns = lp_malloc(ncap * sizeof *ns, "the BPE trainer's tables");
    if (!ns)
        return -1;
    memset(ns, 0xff, ncap * sizeof *ns);
    idmap nm = {ns, ncap, m->n};
    for (size_t i = 0; i < m->cap; i++)
        if (m->slot[i] >= 0) {
            size_t kl;
            const char *ks = k(ctx, m->slot[i], &kl);
            nm.slot[idmap_slot(&nm, ks, kl, k, ctx)] = m->slot[i];
        }
    free(m->slot);
    *m = nm;
    return 0;
}

/* ---- the trainer ---- */

typedef struct pstat {
    uint64_t key; /* (left << 32) | right */
    int64_t count;
    int32_t *pos; /* words holding the pair (ascending; stale entries allowed) */
    uint32_t npos, cappos;
    uint32_t stamp;
} pstat;

typedef struct hentry {
    int64_t count;
    uint64_t key;
} hentry;

struct lp_bpe_trainer {
    char **special;
    size_t n_special;
    /* words */
    char *arena;
    size_t arena_len, arena_cap;
    size_t *woff;
    uint32_t *wlen;
    int64_t *wcount;
    size_t nwords, wcap;
    idmap words;
    lp_split_scratch scratch;
    const char *feeding; /* the text being split */
    /* tokens: vocab strings */
    char **tok;
    uint32_t *tok_len;
    int32_t ntok, tokcap;
    idmap toks;
    int32_t (*merges)[3];
    size_t nmerges, mcap;
    int trained;
};

static const char *word_key(const void *ctx, int32_t id, size_t *len)
{
    const lp_bpe_trainer *tr = ctx;
    *len = tr->wlen[id];
    return tr->arena + tr->woff[id];
}

static const char *tok_key(const void *ctx, int32_t id, size_t *len)
{
    const lp_bpe_trainer *tr = ctx;
    *len = tr->tok_len[id];
    return tr->tok[id];
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *np = lp_realloc(*p, nc * elem, "the BPE trainer");
    if (!np) {
        char b[32];
        return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate %s for the BPE trainer",
                                 lp_format_bytes(nc * elem, b, sizeof b));
    }
    *p = np;
    *cap = nc;
    return 0;
}

/* Adds vocab string s as a new token; its id, or -1. */
static int32_t add_token(lp_bpe_trainer *tr, const char *s, size_t len)
{
    if (idmap_reserve(&tr->toks, tok_key, tr) < 0)
        return -1;
    size_t cap = (size_t)tr->tokcap;
    if (grow((void **)&tr->tok, &cap, (size_t)tr->ntok + 1, sizeof *tr->tok) < 0)
        return -1;
    size_t cap2 = (size_t)tr->tokcap;
    if (grow((void **)&tr->tok_len, &cap2, (size_t)tr->ntok + 1, sizeof *tr->tok_len) < 0)
        return -1;
    tr->tokcap = (int32_t)cap;
    char *c = lp_malloc(len + 1, "a token");
    if (!c)
        return -1;
    memcpy(c, s, len);
    c[len] = 0;
    int32_t id = tr->ntok++;
    tr->tok[id] = c;
    tr->tok_len[id] = (uint32_t)len;
    tr->toks.slot[idmap_slot(&tr->toks, s, len, tok_key, tr)] = id;
    tr->toks.n++;
    return id;
}

static int32_t find_token(const lp_bpe_trainer *tr, const char *s, size_t len)
{
    if (!tr->toks.cap)
        return -1;
    return tr->toks.slot[idmap_slot(&tr->toks, s, len, tok_key, tr)];
}

lp_bpe_trainer *lp_bpe_trainer_new(const char *const *special, size_t n_special)
{
    lp_bpe_trainer *tr = lp_calloc(1, sizeof *tr, "the BPE trainer");
    if (!tr)
        return NULL;
    if (n_special) {
        tr->special = lp_calloc(n_special, sizeof *tr->special, "special tokens");
        if (!tr->special)
            goto fail;
    }
    for (size_t i = 0; i < n_special; i++) {
        if (!special[i] || !special[i][0]) {
            lp_set_error("special token %zu is empty", i + 1);
            goto fail;
        }
        if (lp_text_check_utf8(special[i], strlen(special[i])) != strlen(special[i])) {
            lp_set_error("special token %zu is not valid UTF-8 text", i + 1);
            goto fail;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(special[i], special[j]) == 0) {
                lp_set_error("special token \"%.80s\" is given twice", special[i]);
                goto fail;
            }
        if (!(tr->special[i] = lp_strdup(special[i], "the BPE trainer"))) {
            lp_set_error_code(LP_ERR_NOMEM, "cannot allocate a special token");
            goto fail;
        }
        tr->n_special++;
    }
    return tr;
fail:
    lp_bpe_trainer_free(tr);
    return NULL;
}

void lp_bpe_trainer_free(lp_bpe_trainer *tr)
{
    if (!tr)
        return;
    for (size_t i = 0; i < tr->n_special; i++)
        free(tr->special[i]);
    free(tr->special);
    free(tr->arena);
    free(tr->woff);
    free(tr->wlen);
    free(tr->wcount);
    free(tr->words.slot);
    lp_split_scratch_free(&tr->scratch);
    for (int32_t i = 0; i < tr->ntok; i++)
        free(tr->tok[i]);
    free(tr->tok);
    free(tr->tok_len);
    free(tr->toks.slot);
    free(tr->merges);
    free(tr);
}

/* ---- counting words ---- */

static int count_word(void *ctx, size_t start, size_t end)
{
    lp_bpe_trainer *tr = ctx;
    const char *s = tr->feeding + start;
    size_t len = end - start;
    if (idmap_reserve(&tr->words, word_key, tr) < 0)
        return -1;
    size_t slot = idmap_slot(&tr->words, s, len, word_key, tr);
    int32_t id = tr->words.slot[slot];
    if (id >= 0) {
        tr->wcount[id]++;
        return 0;
    }
    if (tr->nwords >= INT32_MAX - 1)
        return lp_set_error("too many distinct words for the BPE trainer");
    size_t c1 = tr->wcap, c2 = tr->wcap, c3 = tr->wcap;
    if (grow((void **)&tr->woff, &c1, tr->nwords + 1, sizeof *tr->woff) < 0 ||
        grow((void **)&tr->wlen, &c2, tr->nwords + 1, sizeof *tr->wlen) < 0 ||
        grow((void **)&tr->wcount, &c3, tr->nwords + 1, sizeof *tr->wcount) < 0 ||
        grow((void **)&tr->arena, &tr->arena_cap, tr->arena_len + len, 1) < 0)
        return -1;
    tr->wcap = c1;
    memcpy(tr->arena + tr->arena_len, s, len);
    tr->woff[tr->nwords] = tr->arena_len;
    tr->wlen[tr->nwords] = (uint32_t)len;
    tr->wcount[tr->nwords] = 1;
    tr->arena_len += len;
    tr->words.slot[slot] = (int32_t)tr->nwords++;
    tr->words.n++;
    return 0;
}

static int is_ascii_visible(unsigned char c) { return c >= 0x21 && c <= 0x7e; }

#define CHUNK (1u << 20)

/* Splits s[0..len) (no special tokens in it) in chunks of about CHUNK bytes, cut only
 * where GPT-2's regex gives the same pieces either way: after a lone "\n" that sits
 * between visible ASCII characters. */
static int split_segment(lp_bpe_trainer *tr, const char *s, size_t len)
{
    size_t pos = 0;
    while (pos < len) {
        size_t end = len;
        if (len - pos > 2 * CHUNK) {
            end = 0;
            for (size_t i = pos + CHUNK; i < len && i < pos + 2 * CHUNK; i++)
                if (s[i - 1] == '\n' && is_ascii_visible((unsigned char)s[i - 2]) &&
                    is_ascii_visible((unsigned char)s[i])) {
                    end = i;
                    break;
                }
            if (!end)
                end = len; /* no safe cut near: take the rest whole */
        }
        tr->feeding = s + pos;
        if (lp_split_run(LP_SPLIT_GPT2, s + pos, end - pos, &tr->scratch, count_word, tr) < 0)
            return -1;
        if (lp_interrupt_check() < 0)
            return -1;
        pos = end;
    }
    return 0;
}

int lp_bpe_trainer_add_text(lp_bpe_trainer *tr, const char *text, size_t len)
{
    if (tr->trained)
        return lp_set_error("the BPE trainer has already trained: add text before training");
    size_t pos = 0;
    while (pos < len) {
        /* the next special token (the longest at the earliest position) */
        const char *hit = NULL;
        size_t hit_len = 0;
        for (size_t i = 0; i < tr->n_special; i++) {
            size_t sl = strlen(tr->special[i]);
            const char *h = memmem(text + pos, len - pos, tr->special[i], sl);
            if (h && (!hit || h < hit || (h == hit && sl > hit_len))) {
                hit = h;
                hit_len = sl;
            }
        }
        size_t seg_end = hit ? (size_t)(hit - text) : len;
        if (seg_end > pos && split_segment(tr, text + pos, seg_end - pos) < 0)
            return -1;
        pos = hit ? seg_end + hit_len : len;
    }
    return 0;
}

int lp_bpe_trainer_add_file(lp_bpe_trainer *tr, const char *path)
{
    char *s;
    size_t n;
    if (lp_text_read_file(path, &s, &n) < 0)
        return -1;
    int rc = lp_bpe_trainer_add_text(tr, s, n);
    free(s);
    return rc;
}

/* ---- merging ---- */

typedef struct merger {
    lp_bpe_trainer *tr;
    int32_t *sym;    /* every word's symbols */
    size_t *soff;
    uint32_t *sn;
    size_t *pslot;   /* pair key -> index + 1 into ps; 0 empty */
    size_t pcap;
    pstat *ps;
    size_t np, pscap;
    hentry *heap;
    size_t nh, hcap;
    uint64_t *fresh; /* pairs made by this merge */
    size_t nfresh, freshcap;
    uint32_t stamp;
} merger;

static uint64_t pkey(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static size_t phash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

static pstat *pfind(const merger *m, uint64_t k)
{
    for (size_t i = phash(k) & (m->pcap - 1);; i = (i + 1) & (m->pcap - 1)) {
        if (!m->pslot[i])
            return NULL;
        if (m->ps[m->pslot[i] - 1].key == k)
            return &m->ps[m->pslot[i] - 1];
    }
}

static pstat *pget(merger *m, uint64_t k)
{
    pstat *p = pfind(m, k);
    if (p)
        return p;
    if ((m->np + 1) * 10 >= m->pcap * 7) {
        size_t nc = m->pcap * 2;
        size_t *ns = lp_calloc(nc, sizeof *ns, "the BPE trainer's pair table");
        if (!ns)
            return NULL;
        for (size_t j = 0; j < m->np; j++) {
            size_t i = phash(m->ps[j].key) & (nc - 1);
            while (ns[i])
                i = (i + 1) & (nc - 1);
            ns[i] = j + 1;
        }
        free(m->pslot);
        m->pslot = ns;
        m->pcap = nc;
    }
    if (grow((void **)&m->ps, &m->pscap, m->np + 1, sizeof *m->ps) < 0)
        return NULL;
    size_t i = phash(k) & (m->pcap - 1);
    while (m->pslot[i])
        i = (i + 1) & (m->pcap - 1);
    m->pslot[i] = m->np + 1;
    p = &m->ps[m->np++];
    memset(p, 0, sizeof *p);
    p->key = k;
    return p;
}

static int pos_push(merger *m, pstat *p, int32_t w)
{
    if (p->npos && p->pos[p->npos - 1] == w)
        return 0;
    if (p->npos == p->cappos) {
        size_t c = p->cappos;
        if (grow((void **)&p->pos, &c, (size_t)p->npos + 1, sizeof *p->pos) < 0)
            return -1;
        p->cappos = (uint32_t)c;
    }
    p->pos[p->npos++] = w;
    (void)m;
    return 0;
}

/* heap order: higher count first, then the smaller (left, right) */
static int hbefore(const hentry *a, const hentry *b)
{
    return a->count != b->count ? a->count > b->count : a->key < b->key;
}

static int hpush(merger *m, int64_t count, uint64_t key)
{
    if (grow((void **)&m->heap, &m->hcap, m->nh + 1, sizeof *m->heap) < 0)
        return -1;
    size_t i = m->nh++;
    hentry e = {count, key};
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!hbefore(&e, &m->heap[up]))
            break;
        m->heap[i] = m->heap[up];
        i = up;
    }
    m->heap[i] = e;
    return 0;
}

static hentry hpop(merger *m)
{
    hentry top = m->heap[0], e = m->heap[--m->nh];
    size_t i = 0, n = m->nh;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && hbefore(&m->heap[c + 1], &m->heap[c]))
            c++;
        if (!hbefore(&m->heap[c], &e))
            break;
        m->heap[i] = m->heap[c];
        i = c;
    }
    if (n)
        m->heap[i] = e;
    return top;
}

/* Replaces (a, b) by c in word w, updating the pair counts and the index. */
static int merge_word(merger *m, int32_t w, int32_t a, int32_t b, int32_t c)
{
    int32_t *s = m->sym + m->soff[w];
    uint32_t n = m->sn[w];
    int found = 0;
    for (uint32_t i = 0; i + 1 < n && !found; i++)
        found = s[i] == a && s[i + 1] == b;
    if (!found)
        return 0; /* a stale index entry */
    int64_t cnt = m->tr->wcount[w];
    for (uint32_t i = 0; i + 1 < n; i++)
        pfind(m, pkey(s[i], s[i + 1]))->count -= cnt;
    uint32_t j = 0;
    for (uint32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            s[j++] = c;
            i += 2;
        } else {
            s[j++] = s[i++];
        }
    }
    m->sn[w] = j;
    for (uint32_t i = 0; i + 1 < j; i++) {
        uint64_t k = pkey(s[i], s[i + 1]);
        if (s[i] != c && s[i + 1] != c) {
            pfind(m, k)->count += cnt;
            continue;
        }
        pstat *p = pget(m, k);
        if (!p)
            return -1;
        p->count += cnt;
        if (pos_push(m, p, w) < 0)
            return -1;
        if (p->stamp != m->stamp) {
            p->stamp = m->stamp;
            if (grow((void **)&m->fresh, &m->freshcap, m->nfresh + 1, sizeof *m->fresh) < 0)
                return -1;
            m->fresh[m->nfresh++] = k;
        }
    }
    return 0;
}

static int add_merge(lp_bpe_trainer *tr, int32_t a, int32_t b, int32_t c)
{
    if (grow((void **)&tr->merges, &tr->mcap, tr->nmerges + 1, sizeof *tr->merges) < 0)
        return -1;
    tr->merges[tr->nmerges][0] = a;
    tr->merges[tr->nmerges][1] = b;
    tr->merges[tr->nmerges][2] = c;
    tr->nmerges++;
    return 0;
}

static void merger_free(merger *m)
{
    free(m->sym);
    free(m->soff);
    free(m->sn);
    free(m->pslot);
    for (size_t i = 0; i < m->np; i++)
        free(m->ps[i].pos);
    free(m->ps);
    free(m->heap);
    free(m->fresh);
}

static int cmp_cp(const void *x, const void *y)
{
    uint32_t a = lp_byte_to_cp(*(const unsigned char *)x), b = lp_byte_to_cp(*(const unsigned char *)y);
    return (a > b) - (a < b);
}

/* The vocab: special tokens, then the 256 bytes by code point. byte_id[b] set. */
static int init_vocab(lp_bpe_trainer *tr, int32_t byte_id[256])
{
    for (size_t i = 0; i < tr->n_special; i++)
        if (add_token(tr, tr->special[i], strlen(tr->special[i])) < 0)
            return -1;
    unsigned char order[256];
    for (int b = 0; b < 256; b++)
        order[b] = (unsigned char)b;
    qsort(order, 256, 1, cmp_cp);
    for (int i = 0; i < 256; i++) {
        char u[4];
        size_t k = lp_utf8_encode(lp_byte_to_cp(order[i]), u);
        if (find_token(tr, u, k) >= 0)
            return lp_set_error("special token \"%.*s\" is also a byte token", (int)k, u);
        if ((byte_id[order[i]] = add_token(tr, u, k)) < 0)
            return -1;
    }
    return 0;
}

int lp_bpe_trainer_train(lp_bpe_trainer *tr, const lp_bpe_train_opts *o)
{
    if (tr->trained)
        return lp_set_error("the BPE trainer has already trained");
    int64_t base = 256 + (int64_t)tr->n_special;
    if (o->vocab_size < base)
        return lp_set_error(
            "vocab_size %ld is too small: it must be at least 256 (the bytes) + %zu (special tokens) = %ld",
            (long)o->vocab_size, tr->n_special, (long)base);
    if (o->vocab_size > (1 << 24))
        return lp_set_error("vocab_size %ld is too large (at most %d)", (long)o->vocab_size, 1 << 24);
    if (tr->nwords == 0)
        return lp_set_error("the BPE trainer has no text to learn from");
    if (lp_interrupt_check() < 0)
        return -1;
    tr->trained = 1;
    int32_t byte_id[256];
    if (init_vocab(tr, byte_id) < 0)
        return -1;

    merger m = {.tr = tr};
    int rc = -1;
    m.sym = lp_malloc((tr->arena_len ? tr->arena_len : 1) * sizeof *m.sym, "the BPE trainer's words");
    m.soff = lp_malloc(tr->nwords * sizeof *m.soff, "the BPE trainer's words");
    m.sn = lp_malloc(tr->nwords * sizeof *m.sn, "the BPE trainer's words");
    m.pcap = 1 << 16;
    m.pslot = lp_calloc(m.pcap, sizeof *m.pslot, "the BPE trainer's pair table");
    if (!m.sym || !m.soff || !m.sn || !m.pslot)
        goto done;
    size_t off = 0;
    for (size_t w = 0; w < tr->nwords; w++) {
        const unsigned char *bytes = (const unsigned char *)tr->arena + tr->woff[w];
        m.soff[w] = off;
        m.sn[w] = tr->wlen[w];
        for (uint32_t i = 0; i < tr->wlen[w]; i++)
            m.sym[off + i] = byte_id[bytes[i]];
        for (uint32_t i = 0; i + 1 < tr->wlen[w]; i++) {
            pstat *p = pget(&m, pkey(m.sym[off + i], m.sym[off + i + 1]));
            if (!p || pos_push(&m, p, (int32_t)w) < 0)
                goto done;
            p->count += tr->wcount[w];
        }
        off += tr->wlen[w];
    }
    for (size_t i = 0; i < m.np; i++)
        if (m.ps[i].count > 0 && hpush(&m, m.ps[i].count, m.ps[i].key) < 0)
            goto done;

    double total = (double)(o->vocab_size - base);
    lp_buf name = LP_BUF_INIT;
    size_t steps = 0;
    while (tr->ntok < o->vocab_size && m.nh > 0) {
        if ((++steps & 63) == 0) {
            if (lp_interrupt_check() < 0)
                goto done_buf;
            if (o->progress)
                o->progress(o->progress_ud, "merging", (double)(tr->ntok - base), total);
        }
        hentry top = hpop(&m);
        pstat *p = pfind(&m, top.key);
        if (top.count != p->count) {
            if (p->count > 0 && hpush(&m, p->count, p->key) < 0)
                goto done_buf;
            continue;
        }
        if (top.count < 1 || top.count < o->min_frequency)
            break;
        int32_t a = (int32_t)(top.key >> 32), b = (int32_t)(top.key & 0xffffffffu);
        lp_buf_reset(&name);
        lp_buf_append(&name, tr->tok[a], tr->tok_len[a]);
        lp_buf_append(&name, tr->tok[b], tr->tok_len[b]);
        if (name.oom) {
            lp_set_error_code(LP_ERR_NOMEM, "cannot allocate a token");
            goto done_buf;
        }
        int32_t c = find_token(tr, name.data, name.len);
        if (c < 0 && (c = add_token(tr, name.data, name.len)) < 0)
            goto done_buf;
        if (add_merge(tr, a, b, c) < 0)
            goto done_buf;
        /* the pair's index is taken out: the table may move while words are merged */
        int32_t *pos = p->pos;
        uint32_t npos = p->npos;
        p->pos = NULL;
        p->npos = p->cappos = 0;
        m.stamp++;
        m.nfresh = 0;
        int bad = 0;
        for (uint32_t i = 0; i < npos && !bad; i++)
            bad = merge_word(&m, pos[i], a, b, c) < 0;
        free(pos);
        if (bad)
            goto done_buf;
        for (size_t i = 0; i < m.nfresh; i++) {
            pstat *q = pfind(&m, m.fresh[i]);
            if (q->count > 0 && hpush(&m, q->count, q->key) < 0)
                goto done_buf;
        }
    }
    if (o->progress)
        o->progress(o->progress_ud, "merging", (double)(tr->ntok - base), total);
    rc = 0;
done_buf:
    lp_buf_free(&name);
done:
    merger_free(&m);
    return rc;
}

int32_t lp_bpe_trainer_vocab_size(const lp_bpe_trainer *tr) { return tr->ntok; }
size_t lp_bpe_trainer_n_merges(const lp_bpe_trainer *tr) { return tr->nmerges; }
size_t lp_bpe_trainer_n_words(const lp_bpe_trainer *tr) { return tr->nwords; }

int lp_bpe_trainer_merge(const lp_bpe_trainer *tr, size_t i, int32_t *left, int32_t *right, int32_t *id)
{
    if (i >= tr->nmerges)
        return -1;
    *left = tr->merges[i][0];
    *right = tr->merges[i][1];
    *id = tr->merges[i][2];
    return 0;
}

const char *lp_bpe_trainer_token(const lp_bpe_trainer *tr, int32_t id, size_t *len)
{
    if (id < 0 || id >= tr->ntok)
        return NULL;
    if (len)
        *len = tr->tok_len[id];
    return tr->tok[id];
}

/* ---- saving ---- */

static int mkdirs(const char *path)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p)
        return lp_set_error("%.200s...: path too long", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST)
                return lp_set_error_code(LP_ERR_IO, "%s: cannot create the folder: %s", p, strerror(errno));
            *s = '/';
        }
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
        return lp_set_error_code(LP_ERR_IO, "%s: cannot create the folder: %s", p, strerror(errno));
    return 0;
}

static int write_json(const char *folder, const char *name, json_t *j)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", folder, name);
    int rc = 0;
    if (!j)
        rc = lp_set_error_code(LP_ERR_NOMEM, "%s: cannot allocate its contents", path);
    else if (json_dump_file(j, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        rc = lp_set_error_code(LP_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    json_decref(j);
    return rc;
}

static json_t *jstr(const char *s, size_t n) { return json_stringn(s, n); }

static json_t *bytelevel(int add_prefix_space, int trim_offsets)
{
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", add_prefix_space,
                     "trim_offsets", trim_offsets, "use_regex", 1);
}

int lp_bpe_trainer_save(const lp_bpe_trainer *tr, const char *folder)
{
    if (!tr->trained || tr->ntok == 0)
        return lp_set_error("the BPE trainer has not trained yet: nothing to save");
    if (mkdirs(folder) < 0)
        return -1;
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    int oom = !vocab || !merges || !added;
    for (int32_t i = 0; i < tr->ntok && !oom; i++)
        oom = json_object_setn_new(vocab, tr->tok[i], tr->tok_len[i], json_integer(i)) != 0;
    lp_buf line = LP_BUF_INIT, txt = LP_BUF_INIT;
    lp_buf_puts(&txt, "#version: 0.2\n");
    for (size_t i = 0; i < tr->nmerges && !oom; i++) {
        int32_t a = tr->merges[i][0], b = tr->merges[i][1];
        lp_buf_reset(&line);
        lp_buf_append(&line, tr->tok[a], tr->tok_len[a]);
        lp_buf_putc(&line, ' ');
        lp_buf_append(&line, tr->tok[b], tr->tok_len[b]);
        oom = line.oom || json_array_append_new(merges, jstr(line.data, line.len)) != 0;
        lp_buf_append(&txt, line.data, line.len);
        lp_buf_putc(&txt, '\n');
    }
    for (size_t i = 0; i < tr->n_special && !oom; i++)
        oom = json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (int)i, "content",
                                                     tr->special[i], "single_word", 0, "lstrip", 0, "rstrip", 0,
                                                     "normalized", 0, "special", 1)) != 0;
    lp_buf_free(&line);
    if (oom || txt.oom) {
        json_decref(vocab);
        json_decref(merges);
        json_decref(added);
        lp_buf_free(&txt);
        return lp_set_error_code(LP_ERR_NOMEM, "%s: cannot allocate the tokenizer's files", folder);
    }
    json_t *vocab_copy = json_deep_copy(vocab);
    json_t *model = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE", "dropout",
                              "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0,
                              "byte_fallback", 0, "ignore_merges", 0, "vocab", vocab, "merges", merges);
    json_t *root = json_pack("{s:s, s:n, s:n, s:o, s:n, s:o, s:o, s:o, s:o}", "version", "1.0", "truncation",
                             "padding", "added_tokens", added, "normalizer", "pre_tokenizer", bytelevel(0, 1),
                             "post_processor", bytelevel(1, 0), "decoder", bytelevel(1, 1), "model", model);
    int rc = write_json(folder, "tokenizer.json", root);
    if (rc == 0)
        rc = write_json(folder, "vocab.json", vocab_copy);
    else
        json_decref(vocab_copy);
    if (rc == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/merges.txt", folder);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(txt.data, 1, txt.len, f) != txt.len)
            rc = lp_set_error_code(LP_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        if (f && fclose(f) != 0 && rc == 0)
            rc = lp_set_error_code(LP_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    lp_buf_free(&txt);
    if (rc == 0) {
        json_t *cfg = json_pack("{s:b, s:b, s:s, s:b, s:i}", "add_bos_token", 0, "add_eos_token", 0, "tokenizer_class",
                                "GPT2Tokenizer", "clean_up_tokenization_spaces", 0, "model_max_length", 1 << 20);
        if (cfg && tr->n_special) {
            json_object_set_new(cfg, "bos_token", json_string(tr->special[0]));
            json_object_set_new(cfg, "eos_token", json_string(tr->special[0]));
        }
        rc = write_json(folder, "tokenizer_config.json", cfg);
    }
    return rc;
}

lp_tokenizer *lp_bpe_trainer_tokenizer(const lp_bpe_trainer *tr)
{
    char dir[] = "/tmp/loupe-bpe-XXXXXX";
    if (!mkdtemp(dir)) {
        lp_set_error_code(LP_ERR_IO, "cannot create a temporary folder for the tokenizer: %s", strerror(errno));
        return NULL;
    }
    lp_tokenizer *t = lp_bpe_trainer_save(tr, dir) == 0 ? lp_tokenizer_load(dir) : NULL;
    const char *names[] = {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"};
    for (int i = 0; i < 4; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    return t;
}
