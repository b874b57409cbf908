/* The feature harvest: model runs over windows of a corpus, the dictionary's features, and
 * per-feature top examples, interval samples, densities, histograms and co-occurrence kept
 * in bounded memory (see harvest.h for the scheme). */
#include "dict/harvest.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "core/parallel.h"
#include "dict/sae_ops.h"

enum { TOP = LP_HARVEST_TOP, FINE = LP_HARVEST_FINE, S = LP_HARVEST_SAMPLES, W = LP_HARVEST_W };

/* An example while streaming, with its sample key. */
typedef struct item {
    uint64_t key;
    lp_harvest_example e;
} item;

/* The running state of one feature lives in arrays indexed by feature (one allocation per
 * role): top heaps, fine bins and space-saving tables. */
/* A top-heap entry: the value and the slot of its example in the payload array. */
typedef struct hnode {
    float v;
    int slot;
} hnode;

typedef struct builder {
    int d;
    item *top;         /* [d][TOP]: the top examples, in slots */
    hnode *heap;       /* [d][TOP]: a min-heap on value over the slots */
    int *ntop;
    float *tmin;       /* [d]: the heap's smallest value once it is full */
    item *bin;         /* [d][FINE][S]: bottom-S samples by key */
    uint64_t *bkey;    /* [d][FINE][S]: their keys, packed (what each activation reads) */
    uint8_t *nbin;     /* [d][FINE] */
    double *bcount;    /* [d][FINE] */
    double *M;         /* [d]: the fine bins' top, 0 before the first activation */
    int32_t *ss_id;    /* [d][SLOTS], the used ones first */
    uint32_t *ss_n;    /* [d][SLOTS] */
    uint8_t *ss_used;  /* [d] */
} builder;

static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t lp_harvest_key(uint64_t seed, int64_t gpos, int i)
{
    return mix64(seed ^ mix64((uint64_t)gpos * 0x100000001B3ull + (uint64_t)i));
}

static void builder_free(builder *b)
{
    free(b->top), free(b->heap), free(b->ntop), free(b->tmin), free(b->bin), free(b->bkey), free(b->nbin), free(b->bcount), free(b->M);
    free(b->ss_id), free(b->ss_n), free(b->ss_used);
}

static int builder_init(builder *b, int d)
{
    memset(b, 0, sizeof *b);
    b->d = d;
    size_t n = (size_t)d;
    if (!(b->top = lp_calloc(n * TOP, sizeof *b->top, "the harvest's top examples")) ||
        !(b->heap = lp_calloc(n * TOP, sizeof *b->heap, "the harvest's top examples")) ||
        !(b->ntop = lp_calloc(n, sizeof *b->ntop, "the harvest")) ||
        !(b->tmin = lp_calloc(n, sizeof *b->tmin, "the harvest")) ||
        !(b->bin = lp_calloc(n * FINE * S, sizeof *b->bin, "the harvest's interval samples")) ||
        !(b->bkey = lp_calloc(n * FINE * S, sizeof *b->bkey, "the harvest's interval samples")) ||
        !(b->nbin = lp_calloc(n * FINE, 1, "the harvest")) ||
        !(b->bcount = lp_calloc(n * FINE, sizeof *b->bcount, "the harvest")) ||
        !(b->M = lp_calloc(n, sizeof *b->M, "the harvest")) ||
        !(b->ss_id = lp_malloc(n * LP_HARVEST_SLOTS * sizeof *b->ss_id, "the harvest's co-occurrence")) ||
        !(b->ss_n = lp_calloc(n * LP_HARVEST_SLOTS, sizeof *b->ss_n, "the harvest's co-occurrence")) ||
        !(b->ss_used = lp_calloc(n, 1, "the harvest's co-occurrence"))) {
        builder_free(b);
        return -1;
    }
    for (size_t i = 0; i < n * LP_HARVEST_SLOTS; i++)
        b->ss_id[i] = -1;
    return 0;
}

/* ---- the pieces of one activation ---- */

/* The example of feature i at (r, p) of a batch: f (R*T, d) and its tokens. */
static void fill_example(lp_harvest_example *e, const float *f, const int32_t *ids, int d, int T, int r, int p,
                         int i, int64_t window)
{
    e->value = f[((size_t)r * T + p) * d + i];
    e->window = (int32_t)window, e->pos = p;
    for (int k = 0; k < W; k++) {
        int q = p - LP_HARVEST_CTX + k;
        int in = q >= 0 && q < T;
        e->tok[k] = in ? ids[(size_t)r * T + q] : -1;
        e->act[k] = in ? f[((size_t)r * T + q) * d + i] : 0.0f;
    }
}

static void heap_down(hnode *h, int n, int at)
{
    for (;;) {
        int l = 2 * at + 1, m = at;
        if (l < n && h[l].v < h[m].v)
            m = l;
        if (l + 1 < n && h[l + 1].v < h[m].v)
            m = l + 1;
        if (m == at)
            return;
        hnode t = h[m];
        h[m] = h[at], h[at] = t;
        at = m;
    }
}

static void heap_up(hnode *h, int at)
{
    while (at > 0) {
        int p = (at - 1) / 2;
        if (h[p].v <= h[at].v)
            return;
        hnode t = h[p];
        h[p] = h[at], h[at] = t;
        at = p;
    }
}

/* Index of the largest of n keys. */
static int max_key(const uint64_t *key, int n)
{
    int m = 0;
    for (int k = 1; k < n; k++)
        if (key[k] > key[m])
            m = k;
    return m;
}

/* Doubles feature i's fine-bin top M: bins 2j and 2j+1 merge into j. */
static void bins_double(builder *b, int i)
{
    item *bin = b->bin + (size_t)i * FINE * S;
    uint8_t *nb = b->nbin + (size_t)i * FINE;
    double *bc = b->bcount + (size_t)i * FINE;
    for (int j = 0; j < FINE / 2; j++) {
        item u[2 * S];
        int n = 0;
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < nb[2 * j + h]; k++)
                u[n++] = bin[(size_t)(2 * j + h) * S + k];
        /* the S smallest keys of the union */
        for (int a = 0; a < n && a < S; a++) {
            int m = a;
            for (int c = a + 1; c < n; c++)
                if (u[c].key < u[m].key)
                    m = c;
            item t = u[a];
            u[a] = u[m], u[m] = t;
        }
        int keep = n < S ? n : S;
        memcpy(bin + (size_t)j * S, u, (size_t)keep * sizeof *u);
        nb[j] = (uint8_t)keep;
        bc[j] = bc[2 * j] + bc[2 * j + 1];
    }
    for (int j = FINE / 2; j < FINE; j++)
        nb[j] = 0, bc[j] = 0;
    uint64_t *bk = b->bkey + (size_t)i * FINE * S;
    for (int j = 0; j < FINE / 2; j++)
        for (int k = 0; k < nb[j]; k++)
            bk[(size_t)j * S + k] = bin[(size_t)j * S + k].key;
    b->M[i] *= 2;
}

static int fine_bin(double v, double M)
{
    int k = (int)ceil(v * FINE / M) - 1;
    return k < 0 ? 0 : k >= FINE ? FINE - 1 : k;
}

/* One activation v of feature i at (r, p): its sample key, top heap, fine bin. */
static void add_activation(builder *b, lp_harvest *h, const float *f, const int32_t *ids, int T, int r, int p, int i,
                           float v, int64_t window, uint64_t key)
{
    int d = b->d;
    h->count[i] += 1;
    if (v > h->max[i])
        h->max[i] = v;
    double lg = log10((double)v);
    int hb = (int)floor((lg - LP_HARVEST_LOG_LO) * LP_HARVEST_HIST / (LP_HARVEST_LOG_HI - LP_HARVEST_LOG_LO));
    h->hist[(size_t)i * LP_HARVEST_HIST + (hb < 0 ? 0 : hb >= LP_HARVEST_HIST ? LP_HARVEST_HIST - 1 : hb)] += 1;
    item *top = b->top + (size_t)i * TOP;
    hnode *hp = b->heap + (size_t)i * TOP;
    int *nt = &b->ntop[i];
    if (*nt < TOP) {
        top[*nt].key = key;
        fill_example(&top[*nt].e, f, ids, d, T, r, p, i, window);
        hp[*nt] = (hnode){v, *nt};
        heap_up(hp, (*nt)++);
        b->tmin[i] = hp[0].v;
    } else if (v > b->tmin[i]) {
        int slot = hp[0].slot;
        top[slot].key = key;
        fill_example(&top[slot].e, f, ids, d, T, r, p, i, window);
        hp[0].v = v;
        heap_down(hp, TOP, 0);
        b->tmin[i] = hp[0].v;
    }
    if (b->M[i] == 0) {
        int e;
        double m = frexp((double)v, &e); /* v = m 2^e, m in [0.5, 1) */
        b->M[i] = m == 0.5 ? ldexp(1.0, e - 1) : ldexp(1.0, e);
    }
    while ((double)v > b->M[i])
        bins_double(b, i);
    int k = fine_bin(v, b->M[i]);
    b->bcount[(size_t)i * FINE + k] += 1;
    item *s = b->bin + ((size_t)i * FINE + k) * S;
    uint64_t *sk = b->bkey + ((size_t)i * FINE + k) * S;
    uint8_t *ns = &b->nbin[(size_t)i * FINE + k];
    int at = -1;
    if (*ns < S) {
        at = (*ns)++;
    } else {
        int mk = max_key(sk, S);
        at = key < sk[mk] ? mk : -1;
    }
    if (at >= 0) {
        s[at].key = sk[at] = key;
        fill_example(&s[at].e, f, ids, d, T, r, p, i, window);
    }
}

/* Space-saving: feature j co-occurred with i (found: +1; a free slot: 1; else the smallest
 * count's slot goes to j with that count + 1). */
static void co_add(builder *b, int i, int j)
{
    int32_t *id = b->ss_id + (size_t)i * LP_HARVEST_SLOTS;
    uint32_t *n = b->ss_n + (size_t)i * LP_HARVEST_SLOTS;
    int used = b->ss_used[i];
    for (int s = 0; s < used; s++)
        if (id[s] == j) {
            n[s]++;
            return;
        }
    if (used < LP_HARVEST_SLOTS) {
        id[used] = j, n[used] = 1;
        b->ss_used[i]++;
        return;
    }
    int lo = 0;
    for (int s = 1; s < LP_HARVEST_SLOTS; s++)
        if (n[s] < n[lo])
            lo = s;
    id[lo] = j, n[lo]++;
}

size_t lp_harvest_bytes(int d, int64_t batch_tokens, int d_in)
{
    size_t n = (size_t)d;
    size_t running = n * (TOP * (sizeof(item) + sizeof(hnode)) + sizeof(int) + sizeof(float) +
                          (size_t)FINE * S * (sizeof(item) + sizeof(uint64_t)) + FINE * (1 + sizeof(double)) +
                          sizeof(double) + LP_HARVEST_SLOTS * (sizeof(int32_t) + sizeof(uint32_t)) + 1);
    size_t result = n * (sizeof(double) + sizeof(float) + LP_HARVEST_HIST * sizeof(double) + sizeof(int) +
                         LP_HARVEST_EXAMPLES * sizeof(lp_harvest_example) +
                         LP_HARVEST_INTERVALS * sizeof(lp_harvest_interval) + LP_HARVEST_CORR * 8);
    size_t buffers = (size_t)batch_tokens * ((size_t)d_in * 4 + n * 4 + 6 + LP_HARVEST_CO * sizeof(int32_t));
    return running + result + buffers;
}


/* One batch's shared state for the threads: f (R*T, d), the tokens, and per position its (at
 * most) CO strongest features, strongest first (ties: the lower index). */
typedef struct batch {
    builder *b;
    lp_harvest *h;
    const float *f;
    const int32_t *ids;
    const uint8_t *special;
    int T, d;
    int64_t win0, pos0;
    uint64_t seed;
    size_t nt;     /* R*T positions */
    int32_t *co;   /* [R*T][CO] */
    uint8_t *nco;  /* [R*T] */
} batch;

/* The strongest features of positions [lo, hi). */
static void co_lists(void *ctx, size_t lo, size_t hi)
{
    batch *c = ctx;
    for (size_t t = lo; t < hi; t++) {
        int32_t *ids = c->co + t * LP_HARVEST_CO;
        float val[LP_HARVEST_CO];
        int n = 0;
        if (!c->special[t]) {
            const float *row = c->f + t * (size_t)c->d;
            for (int i0 = 0; i0 < c->d; i0 += 32) {
                int end = i0 + 32 < c->d ? i0 + 32 : c->d;
                float mx = 0;
                for (int i = i0; i < end; i++)
                    mx = row[i] > mx ? row[i] : mx;
                if (!(mx > 0))
                    continue;
                for (int i = i0; i < end; i++) {
                    float v = row[i];
                    if (!(v > 0 && v <= FLT_MAX) || (n == LP_HARVEST_CO && !(v > val[n - 1])))
                        continue;
                    int at = n < LP_HARVEST_CO ? n++ : LP_HARVEST_CO - 1;
                    while (at > 0 && val[at - 1] < v) {
                        val[at] = val[at - 1], ids[at] = ids[at - 1];
                        at--;
                    }
                    val[at] = v, ids[at] = i;
                }
            }
        }
        c->nco[t] = (uint8_t)n;
    }
}

/* Every activation of features [lo, hi) in the batch, position by position: each feature's
 * state is touched by one thread only, in the order of the positions, so the result does not
 * depend on the number of threads. */
static void add_features(void *ctx, size_t lo, size_t hi)
{
    batch *c = ctx;
    int d = c->d, T = c->T;
    for (size_t t = 0; t < c->nt; t++) {
        if (c->special[t])
            continue;
        int r = (int)(t / (size_t)T), p = (int)(t % (size_t)T);
        const float *row = c->f + t * (size_t)d;
        int64_t gpos = c->pos0 + (int64_t)t;
        for (size_t i0 = lo; i0 < hi; i0 += 32) { /* most blocks of a sparse row are all zero */
            size_t end = i0 + 32 < hi ? i0 + 32 : hi;
            float mx = 0;
            for (size_t i = i0; i < end; i++)
                mx = row[i] > mx ? row[i] : mx;
            if (!(mx > 0))
                continue;
            for (size_t i = i0; i < end; i++) {
                float v = row[i];
                if (!(v > 0 && v <= FLT_MAX))
                    continue; /* NaN and infinities are not activations */
                add_activation(c->b, c->h, c->f, c->ids, T, r, p, (int)i, v, c->win0 + r,
                               lp_harvest_key(c->seed, gpos, (int)i));
            }
        }
        const int32_t *co = c->co + t * LP_HARVEST_CO;
        for (int a = 0; a < c->nco[t]; a++) {
            if ((size_t)co[a] < lo || (size_t)co[a] >= hi)
                continue;
            for (int k = 0; k < c->nco[t]; k++)
                if (k != a)
                    co_add(c->b, co[a], co[k]);
        }
    }
}

/* ---- the result ---- */

static int ex_value_desc(const void *a, const void *b)
{
    const item *x = a, *y = b;
    return x->e.value > y->e.value ? -1 : x->e.value < y->e.value ? 1 : (x->key < y->key ? -1 : x->key > y->key);
}

static int key_asc(const void *a, const void *b)
{
    const item *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key;
}

static void finish(builder *b, lp_harvest *h)
{
    for (int i = 0; i < b->d; i++) {
        lp_harvest_example *ex = h->ex + (size_t)i * LP_HARVEST_EXAMPLES;
        item *top = b->top + (size_t)i * TOP;
        qsort(top, (size_t)b->ntop[i], sizeof *top, ex_value_desc);
        h->n_top[i] = b->ntop[i];
        for (int k = 0; k < b->ntop[i]; k++)
            ex[k] = top[k].e;
        /* intervals: unions of q whole fine bins */
        lp_harvest_interval *iv = h->iv + (size_t)i * LP_HARVEST_INTERVALS;
        double M = b->M[i];
        const double *bc = b->bcount + (size_t)i * FINE;
        int nb = 0;
        for (int k = 0; k < FINE; k++)
            if (bc[k] > 0)
                nb = k + 1;
        if (!nb)
            continue;
        int q = (nb + LP_HARVEST_INTERVALS - 1) / LP_HARVEST_INTERVALS;
        for (int k = 0; k < LP_HARVEST_INTERVALS; k++) {
            item u[FINE * S];
            int n = 0;
            iv[k].lo = (float)((double)k * q * M / FINE);
            iv[k].hi = (float)((double)(k + 1) * q * M / FINE);
            for (int j = k * q; j < (k + 1) * q && j < FINE; j++) {
                iv[k].count += bc[j];
                const item *s = b->bin + ((size_t)i * FINE + j) * S;
                for (int c = 0; c < b->nbin[(size_t)i * FINE + j]; c++)
                    u[n++] = s[c];
            }
            qsort(u, (size_t)n, sizeof *u, key_asc);
            iv[k].n = n < S ? n : S;
            for (int c = 0; c < iv[k].n; c++)
                ex[TOP + k * S + c] = u[c].e;
        }
        /* correlated features by Jaccard */
        const int32_t *id = b->ss_id + (size_t)i * LP_HARVEST_SLOTS;
        const uint32_t *sn = b->ss_n + (size_t)i * LP_HARVEST_SLOTS;
        int32_t *cid = h->corr + (size_t)i * LP_HARVEST_CORR;
        float *cs = h->corr_score + (size_t)i * LP_HARVEST_CORR;
        for (int s = 0; s < LP_HARVEST_SLOTS; s++) {
            if (id[s] < 0)
                continue;
            double co = sn[s], ni = h->count[i], nj = h->count[id[s]];
            co = co > ni ? ni : co;
            co = co > nj ? nj : co;
            float sc = (float)(co / (ni + nj - co));
            int at = LP_HARVEST_CORR;
            while (at > 0 && (cid[at - 1] < 0 || cs[at - 1] < sc))
                at--;
            if (at >= LP_HARVEST_CORR)
                continue;
            memmove(cid + at + 1, cid + at, (size_t)(LP_HARVEST_CORR - 1 - at) * sizeof *cid);
            memmove(cs + at + 1, cs + at, (size_t)(LP_HARVEST_CORR - 1 - at) * sizeof *cs);
            cid[at] = id[s], cs[at] = sc;
        }
    }
}

void lp_harvest_free(lp_harvest *h)
{
    if (!h)
        return;
    free(h->count), free(h->max), free(h->hist), free(h->n_top), free(h->ex), free(h->iv);
    free(h->corr), free(h->corr_score);
    free(h);
}

lp_harvest *lp_harvest_alloc(int d)
{
    lp_harvest *h = lp_calloc(1, sizeof *h, "a harvest");
    if (!h)
        return NULL;
    size_t n = (size_t)d;
    h->d_sae = d;
    if (!(h->count = lp_calloc(n, sizeof *h->count, "a harvest")) ||
        !(h->max = lp_calloc(n, sizeof *h->max, "a harvest")) ||
        !(h->hist = lp_calloc(n * LP_HARVEST_HIST, sizeof *h->hist, "a harvest's histograms")) ||
        !(h->n_top = lp_calloc(n, sizeof *h->n_top, "a harvest")) ||
        !(h->ex = lp_calloc(n * LP_HARVEST_EXAMPLES, sizeof *h->ex, "a harvest's examples")) ||
        !(h->iv = lp_calloc(n * LP_HARVEST_INTERVALS, sizeof *h->iv, "a harvest's intervals")) ||
        !(h->corr = lp_malloc(n * LP_HARVEST_CORR * sizeof *h->corr, "a harvest")) ||
        !(h->corr_score = lp_calloc(n * LP_HARVEST_CORR, sizeof *h->corr_score, "a harvest"))) {
        lp_harvest_free(h);
        return NULL;
    }
    for (size_t i = 0; i < n * LP_HARVEST_CORR; i++)
        h->corr[i] = -1;
    return h;
}

static int keep_hook(void *ud, const char *name)
{
    return !strcmp(name, ((const lp_sae *)ud)->cfg.hook_in);
}

lp_harvest *lp_harvest_run(const lp_model *m, const lp_sae *s, const lp_harvest_opts *o)
{
    const lp_model_config *mc = &m->cfg;
    const lp_sae_config *c = &s->cfg;
    int T = o->ctx, pre = o->prepend_bos ? 1 : 0, d = c->d_sae;
    if (!c->hook_in[0] || !lp_model_has_hook(m, c->hook_in)) {
        lp_set_error("harvest: the model has no hook point '%s' (the dictionary's %s)", c->hook_in,
                     c->transcoder ? "hook_in" : "hook");
        return NULL;
    }
    if (T < 2 || (mc->n_ctx > 0 && T > mc->n_ctx)) {
        lp_set_error("harvest: ctx %d must be in 2..%d (the model's context)", T, mc->n_ctx > 0 ? mc->n_ctx : 1 << 20);
        return NULL;
    }
    if (pre && mc->bos < 0) {
        lp_set_error("harvest: prepend_bos, but the model has no BOS token");
        return NULL;
    }
    size_t per = (size_t)(T - pre), nwin = o->ntokens / per;
    if (!o->tokens || nwin == 0) {
        lp_set_error("harvest: the corpus has %zu tokens, fewer than one window of %zu", o->tokens ? o->ntokens : 0,
                     per);
        return NULL;
    }
    for (size_t i = 0; i < nwin * per; i++)
        if (o->tokens[i] < 0 || o->tokens[i] >= mc->d_vocab) {
            lp_set_error("harvest: token %zu of the corpus (%d) is not an id of this model (0..%d)", i,
                         (int)o->tokens[i], mc->d_vocab - 1);
            return NULL;
        }
    size_t wins = nwin;
    if (o->want > 0 && (size_t)((o->want + T - 1) / T) < wins)
        wins = (size_t)((o->want + T - 1) / T);
    int B = o->batch > 0 ? o->batch : 8;
    int64_t cap = ((int64_t)256 << 20) / ((int64_t)T * mc->d_vocab * (int64_t)sizeof(float));
    B = B > cap ? (int)(cap < 1 ? 1 : cap) : B;
    size_t N = (size_t)B * T;
    builder b;
    lp_harvest *h = NULL;
    int32_t *ids = lp_malloc(N * sizeof *ids, "the harvest's tokens");
    uint8_t *special = lp_malloc(N, "the harvest's mask");
    float *xs = lp_malloc(N * (size_t)c->d_in * sizeof *xs, "the harvest's inputs");
    float *f = lp_malloc(N * (size_t)d * sizeof *f, "the harvest's features");
    int32_t *co = lp_malloc(N * LP_HARVEST_CO * sizeof *co, "the harvest's co-occurrence lists");
    uint8_t *nco = lp_malloc(N, "the harvest's co-occurrence lists");
    int ok = 0, binit = 0;
    if (!ids || !special || !xs || !f || !co || !nco || builder_init(&b, d) < 0)
        goto done;
    binit = 1;
    if (!(h = lp_harvest_alloc(d)))
        goto done;
    h->ctx = T;
    snprintf(h->hook, sizeof h->hook, "%s", c->hook_in);
    /* the run stops after the hook's block (blocks.L.*: L + 1 blocks; other hooks: all) */
    int nblocks = 0, hl, used = 0;
    if (sscanf(c->hook_in, "blocks.%d.%n", &hl, &used) == 1 && used > 0 && hl >= 0 && hl + 1 < mc->n_layers)
        nblocks = hl + 1;
    for (size_t w0 = 0; w0 < wins; w0 += (size_t)B) {
        int R = (int)(wins - w0 < (size_t)B ? wins - w0 : (size_t)B);
        for (int r = 0; r < R; r++) {
            int32_t *row = ids + (size_t)r * T;
            if (pre)
                row[0] = mc->bos;
            memcpy(row + pre, o->tokens + (w0 + (size_t)r) * per, per * sizeof *row);
        }
        for (size_t i = 0; i < (size_t)R * T; i++)
            special[i] = !o->keep_special && ((mc->bos >= 0 && ids[i] == mc->bos) || (mc->eos >= 0 && ids[i] == mc->eos));
        if (lp_interrupt_check() < 0)
            goto done;
        lp_run run;
        lp_run_opts ro = {.filter = keep_hook, .filter_ud = (void *)s};
        if (lp_model_run_blocks(m, ids, R, T, &ro, nblocks, &run) < 0)
            goto done;
        const lp_tensor *x = lp_run_get(&run, c->hook_in);
        if (!x || !lp_tensor_is_contiguous(x) || lp_tensor_numel(x) != (int64_t)R * T * c->d_in) {
            lp_set_error("harvest: the hook '%s' does not have the dictionary's %d dimensions per token", c->hook_in,
                         c->d_in);
            lp_run_clear(&run);
            goto done;
        }
        for (size_t i = 0; i < (size_t)R * T * c->d_in; i++)
            xs[i] = x->data[i] * s->scale;
        lp_run_clear(&run);
        if (lp_sae_encode(NULL, f, s, xs, R * T, 0) < 0)
            goto done;
        batch bt = {.b = &b, .h = h, .f = f, .ids = ids, .special = special, .T = T, .d = d, .win0 = (int64_t)w0,
                    .pos0 = (int64_t)w0 * T, .seed = o->seed, .nt = (size_t)R * T, .co = co, .nco = nco};
        lp_par_for(bt.nt, 64, co_lists, &bt);
        lp_par_for((size_t)d, 256, add_features, &bt);
        for (size_t t = 0; t < bt.nt; t++)
            h->n_tokens += !special[t];
        h->windows += R;
        if (o->progress && o->progress(o->ud, (int64_t)(w0 + (size_t)R) * T, (int64_t)wins * T)) {
            lp_set_error_code(LP_ERR_INTERRUPTED, "harvest: interrupted");
            goto done;
        }
    }
    if (h->n_tokens == 0) {
        lp_set_error("harvest: every position of the corpus was a special token (keep_special counts them)");
        goto done;
    }
    finish(&b, h);
    ok = 1;
done:
    if (binit)
        builder_free(&b);
    free(ids), free(special), free(xs), free(f), free(co), free(nco);
    if (!ok) {
        lp_harvest_free(h);
        return NULL;
    }
    return h;
}
