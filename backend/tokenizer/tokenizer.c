/* Encoding (added tokens split out, pre-tokenizer steps, BPE per word, BOS / EOS),
 * decoding and the token tables. Loading is in tok_load.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/error.h"
#include "tok_impl.h"
#include "unicode.h"

lp_tokenizer *lp_tok_new(void)
{
    lp_tokenizer *t = lp_calloc(1, sizeof *t, "a tokenizer");
    if (!t)
        return NULL;
    pthread_mutex_init(&t->cache_lock, NULL);
    t->unk = t->bos = t->eos = -1;
    for (int b = 0; b < 256; b++) {
        t->byte_cp[b] = lp_byte_to_cp((unsigned char)b);
        t->byte_id[b] = -1;
    }
    return t;
}

int lp_tok_set(lp_tokenizer *t, int32_t id, const char *s, size_t len)
{
    if (id < 0 || id >= LP_TOK_MAX_ID)
        return lp_set_error("token id %ld is out of range (0 .. %d)", (long)id, LP_TOK_MAX_ID - 1);
    if (id >= t->n) {
        int32_t n = t->n ? t->n : 1024;
        while (n <= id)
            n = n < LP_TOK_MAX_ID / 2 ? n * 2 : LP_TOK_MAX_ID;
        char **str = lp_realloc(t->str, n * sizeof *str, "a tokenizer");
        if (str)
            t->str = str;
        uint32_t *sl = lp_realloc(t->str_len, n * sizeof *sl, "a tokenizer");
        if (sl)
            t->str_len = sl;
        uint8_t *fl = lp_realloc(t->flags, n, "a tokenizer");
        if (fl)
            t->flags = fl;
        if (!str || !sl || !fl)
            return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate the tables for %ld tokens", (long)n);
        for (int32_t i = t->n; i < n; i++) {
            t->str[i] = NULL;
            t->str_len[i] = 0;
            t->flags[i] = 0;
        }
        t->n = n; /* trimmed to the highest id in lp_tok_finish */
    }
    char *c = lp_malloc(len + 1, "a token string");
    if (!c)
        return -1;
    memcpy(c, s, len);
    c[len] = 0;
    free(t->str[id]);
    t->str[id] = c;
    t->str_len[id] = (uint32_t)len;
    return 0;
}

/* The bytes a vocab string stands for: each code point of GPT-2's alphabet is one byte;
 * any other character stands for itself. */
static char *byte_decode(const char *s, size_t len, uint32_t *out_len)
{
    char *o = lp_malloc(len + 1, "a token's bytes");
    if (!o)
        return NULL;
    size_t k = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t w = lp_utf8_decode(u, len, i, &cp);
        int b = cp == LP_UNI_INVALID ? -1 : lp_cp_to_byte(cp);
        if (b >= 0) {
            o[k++] = (char)b;
        } else {
            memcpy(o + k, s + i, w);
            k += w;
        }
        i += w;
    }
    o[k] = 0;
    *out_len = (uint32_t)k;
    return o;
}

static char *display_form(const char *b, size_t len)
{
    lp_buf out = LP_BUF_INIT;
    const unsigned char *u = (const unsigned char *)b;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t w = lp_utf8_decode(u, len, i, &cp);
        if (cp == LP_UNI_INVALID || cp == 0)
            lp_buf_printf(&out, "<0x%02X>", u[i]);
        else
            lp_buf_append(&out, b + i, w);
        i += w;
    }
    if (!out.data && !out.oom)
        lp_buf_puts(&out, "");
    return lp_buf_finish(&out);
}

int lp_tok_finish(lp_tokenizer *t)
{
    int32_t n = t->n;
    while (n > 0 && !t->str[n - 1])
        n--;
    t->n = n;
    if (n == 0)
        return lp_set_error("the vocab is empty");
    t->bytes = lp_calloc(n, sizeof *t->bytes, "the token tables");
    t->bytes_len = lp_calloc(n, sizeof *t->bytes_len, "the token tables");
    t->display = lp_calloc(n, sizeof *t->display, "the token tables");
    if (!t->bytes || !t->bytes_len || !t->display)
        return -1;
    t->tables_n = n;
    for (int32_t id = 0; id < n; id++) {
        if (!t->str[id])
            continue;
        if (t->flags[id] & LP_TOKF_ADDED) {
            t->bytes[id] = lp_malloc(t->str_len[id] + 1, "a token's bytes");
            if (!t->bytes[id])
                return -1;
            memcpy(t->bytes[id], t->str[id], t->str_len[id] + 1);
            t->bytes_len[id] = t->str_len[id];
        } else if (!(t->bytes[id] = byte_decode(t->str[id], t->str_len[id], &t->bytes_len[id]))) {
            return -1;
        }
        if (!lp_utf8_valid(t->bytes[id], t->bytes_len[id]) &&
            !(t->display[id] = display_form(t->bytes[id], t->bytes_len[id])))
            return -1;
    }
    if (lp_tok_build_map(t) < 0)
        return -1;
    for (int b = 0; b < 256; b++) {
        char s[4];
        size_t k = lp_utf8_encode(t->byte_cp[b], s);
        t->byte_id[b] = lp_tok_find(t, s, k);
    }
    return 0;
}

void lp_tokenizer_free(lp_tokenizer *t)
{
    if (!t)
        return;
    for (int32_t i = 0; i < t->n; i++)
        free(t->str[i]);
    for (int32_t i = 0; i < t->tables_n; i++) {
        free(t->bytes[i]);
        free(t->display[i]);
    }
    free(t->str);
    free(t->str_len);
    free(t->bytes);
    free(t->bytes_len);
    free(t->display);
    free(t->flags);
    free(t->map);
    free(t->pairs);
    for (size_t i = 0; i < t->n_added; i++)
        free(t->added[i].content);
    free(t->added);
    lp_tok_cache_free(t);
    pthread_mutex_destroy(&t->cache_lock);
    free(t);
}

/* ---- encoding ---- */

typedef struct {
    size_t *v; /* start, end pairs */
    size_t n, cap;
} spans;

static int spans_push(spans *s, size_t a, size_t b)
{
    if (s->n + 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        size_t *v = lp_realloc(s->v, cap * sizeof *v, "a tokenizer");
        if (!v)
            return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate memory for tokenizing");
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = a;
    s->v[s->n++] = b;
    return 0;
}

typedef struct {
    const lp_tokenizer *t;
    lp_ids *out;
    lp_split_scratch scratch;
    lp_buf arena[2];
    spans sp[2];
    size_t base; /* offset of the piece being split, for the callback */
    spans *dst;
} enc;

static int on_piece(void *ctx, size_t a, size_t b)
{
    enc *e = ctx;
    return spans_push(e->dst, e->base + a, e->base + b);
}

/* Text with no added tokens: the pre-tokenizer steps, then BPE on each piece. */
static int encode_plain(enc *e, const char *s, size_t len)
{
    const lp_tokenizer *t = e->t;
    if (len == 0)
        return 0;
    int cur = 0;
    lp_buf_reset(&e->arena[0]);
    lp_buf_append(&e->arena[0], s, len);
    if (e->arena[0].oom)
        return -1; /* the error is set */
    e->sp[0].n = 0;
    if (spans_push(&e->sp[0], 0, len) < 0)
        return -1;
    for (int k = 0; k < t->n_steps; k++) {
        const lp_pretok_step *st = &t->steps[k];
        int nx = 1 - cur;
        lp_buf *src = &e->arena[cur], *dst = &e->arena[nx];
        lp_buf_reset(dst);
        e->sp[nx].n = 0;
        e->dst = &e->sp[nx];
        for (size_t p = 0; p < e->sp[cur].n; p += 2) {
            size_t a = e->sp[cur].v[p], b = e->sp[cur].v[p + 1];
            if (a == b)
                continue;
            e->base = dst->len;
            if (st->kind == LP_STEP_BYTELEVEL && st->add_prefix_space &&
                src->data[a] != ' ')
                lp_buf_putc(dst, ' ');
            lp_buf_append(dst, src->data + a, b - a);
            if (dst->oom)
                return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate memory for tokenizing");
            size_t pa = e->base, pb = dst->len;
            if (st->kind == LP_STEP_SPLIT || st->use_regex) {
                e->base = pa;
                if (lp_split_run(st->split, dst->data + pa, pb - pa, &e->scratch, on_piece, e) < 0)
                    return -1;
            } else if (spans_push(&e->sp[nx], pa, pb) < 0) {
                return -1;
            }
        }
        cur = nx;
    }
    const char *buf = e->arena[cur].data;
    for (size_t p = 0; p < e->sp[cur].n; p += 2)
        if (lp_tok_bpe_word(t, buf + e->sp[cur].v[p], e->sp[cur].v[p + 1] - e->sp[cur].v[p], e->out) < 0)
            return -1;
    return 0;
}

static size_t ws_before(const char *s, size_t lo, size_t a)
{
    for (size_t k = 1; k <= 3 && a >= lo + k; k++) {
        uint32_t cp;
        size_t w = lp_utf8_decode((const unsigned char *)s, a, a - k, &cp);
        if (w == k)
            return lp_uni_class(cp) == LP_UNI_SPACE ? k : 0;
    }
    return 0;
}

static int is_word_at(const char *s, size_t len, size_t i)
{
    uint32_t cp;
    lp_utf8_decode((const unsigned char *)s, len, i, &cp);
    int c = lp_uni_class(cp);
    return cp == '_' || c == LP_UNI_LETTER || c == LP_UNI_NUMBER;
}

static int word_before(const char *s, size_t a)
{
    for (size_t k = 1; k <= 4 && a >= k; k++) {
        uint32_t cp;
        size_t w = lp_utf8_decode((const unsigned char *)s, a, a - k, &cp);
        if (w == k)
            return is_word_at(s, a, a - k);
    }
    return 0;
}

/* The longest added token of `group` (0: matched on the raw text, 1: on the normalized
 * text) at s[i], or NULL. */
static const lp_added *added_at(const lp_tokenizer *t, int group, const char *s, size_t len, size_t i)
{
    const lp_added *best = NULL;
    for (size_t k = 0; k < t->n_added; k++) { /* sorted longest first */
        const lp_added *a = &t->added[k];
        if (a->normalized != (group == 1) || a->len > len - i || a->len == 0 ||
            a->content[0] != s[i] || memcmp(a->content, s + i, a->len))
            continue;
        if (a->single_word && ((i > 0 && word_before(s, i)) || (i + a->len < len && is_word_at(s, len, i + a->len))))
            continue;
        best = a;
        break;
    }
    return best;
}

static int encode_group(enc *e, const char *s, size_t len, int group)
{
    const lp_tokenizer *t = e->t;
    if (group == 2 || t->n_added == 0)
        return encode_plain(e, s, len);
    size_t done = 0;
    for (size_t i = 0; i < len;) {
        const lp_added *a = (t->added_first[(unsigned char)s[i]] >> group) & 1 ? added_at(t, group, s, len, i) : NULL;
        if (!a) {
            i++;
            continue;
        }
        size_t from = i, to = i + a->len;
        if (a->lstrip)
            for (size_t w; (w = ws_before(s, done, from)) > 0;)
                from -= w;
        if (a->rstrip)
            for (;;) {
                uint32_t cp;
                if (to >= len)
                    break;
                size_t w = lp_utf8_decode((const unsigned char *)s, len, to, &cp);
                if (lp_uni_class(cp) != LP_UNI_SPACE)
                    break;
                to += w;
            }
        if (encode_group(e, s + done, from - done, group + 1) < 0 || lp_ids_push(e->out, a->id) < 0)
            return -1;
        done = i = to;
    }
    return encode_group(e, s + done, len - done, group + 1);
}

int lp_tokenizer_encode(const lp_tokenizer *t, const char *text, size_t len, int add_special,
                        int32_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    lp_ids out = {0};
    enc e = {.t = t, .out = &out, .arena = {LP_BUF_INIT, LP_BUF_INIT}};
    int rc = 0;
    if (add_special)
        for (int k = 0; k < t->n_prefix && rc == 0; k++)
            rc = lp_ids_push(&out, t->prefix[k]);
    if (rc == 0)
        rc = encode_group(&e, text ? text : "", text ? len : 0, 0);
    if (add_special)
        for (int k = 0; k < t->n_suffix && rc == 0; k++)
            rc = lp_ids_push(&out, t->suffix[k]);
    if (rc == 0 && !out.v && !(out.v = lp_malloc(sizeof *out.v, "a tokenizer")))
        rc = lp_set_error_code(LP_ERR_NOMEM, "cannot allocate token ids");
    lp_split_scratch_free(&e.scratch);
    lp_buf_free(&e.arena[0]);
    lp_buf_free(&e.arena[1]);
    free(e.sp[0].v);
    free(e.sp[1].v);
    if (rc < 0) {
        free(out.v);
        return -1;
    }
    *ids = out.v;
    *n = out.n;
    return 0;
}

/* ---- decoding and tables ---- */

char *lp_tokenizer_decode(const lp_tokenizer *t, const int32_t *ids, size_t n, size_t *len)
{
    lp_buf out = LP_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n || !t->str[ids[i]]) {
            lp_buf_free(&out);
            lp_set_error("token id %ld (at %zu) is not in the vocab (0 .. %ld)", (long)ids[i], i,
                         (long)t->n - 1);
            return NULL;
        }
        lp_buf_append(&out, t->bytes[ids[i]], t->bytes_len[ids[i]]);
    }
    if (!out.data && !out.oom)
        lp_buf_puts(&out, "");
    size_t k = out.len;
    char *s = lp_buf_finish(&out);
    if (s && len)
        *len = k;
    return s;
}

const char *lp_tokenizer_token(const lp_tokenizer *t, int32_t id)
{
    if (!t || id < 0 || id >= t->n || !t->str[id])
        return NULL;
    return t->display[id] ? t->display[id] : t->bytes[id];
}

int32_t lp_tokenizer_vocab_size(const lp_tokenizer *t) { return t->n; }
int32_t lp_tokenizer_bos(const lp_tokenizer *t) { return t->bos; }
int32_t lp_tokenizer_eos(const lp_tokenizer *t) { return t->eos; }

int lp_tokenizer_lookup(const lp_tokenizer *t, const char *s)
{
    size_t len = strlen(s);
    int32_t id = lp_tok_find(t, s, len);
    if (id >= 0)
        return id;
    /* as text: its bytes in GPT-2's alphabet */
    lp_buf b = LP_BUF_INIT;
    for (size_t i = 0; i < len; i++) {
        char u[4];
        lp_buf_append(&b, u, lp_utf8_encode(t->byte_cp[(unsigned char)s[i]], u));
    }
    id = b.oom ? -1 : lp_tok_find(t, lp_buf_str(&b), b.len);
    lp_buf_free(&b);
    return id;
}
