/* Exact attribution edges (replace.h): for each target row, the gradient of its
 * pre-activation (or logit direction) backpropagated through the frozen linear model
 * (norm scales and attention patterns fixed, attention's OV path only, the MLPs replaced
 * by the transcoders' skip), read against every source at every layer:
 *   feature s at layer l:  a_s <g_l[pos_s], W_dec[s]>    g_l the gradient at mlp.hook_out l
 *                          (a CLT: sum over l' >= l of a_s <g_l'[pos_s], W_dec[s][l' - l]>)
 *   error (l, p):          <g_l[p], e_{l,p}>
 *   embedding p:           <g_embed[p], W_E[tok_p]>
 *
 * A pass takes `batch` rows sorted by (layer, position): the rows a layer concerns are a
 * suffix of the batch, and a row whose target sits at position p has a zero gradient after
 * p (attention is causal), so the pass covers the positions up to the batch's last target
 * and each row's attention product only its own p + 1. The products with W_O, W_V and the
 * skip take every row of the batch at once; a feature source is read by one product per
 * (layer, position) against the decoder rows of the features active there (scaled by their
 * activations), not against the whole decoder. Batches run in parallel (lp_par_for), BLAS
 * on one thread inside each; a row's value does not depend on the thread count.
 *
 * lp_attrib_edges_rows adds circuit-tracer's influence-ordered processing with
 * max_feature_nodes and keeps the rows dense or sparse (replace.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/replace.h"
#include "core/error.h"
#include "core/parallel.h"
#include "device.h"

/* a store larger than this (bytes) is kept sparse under LP_ATTRIB_AUTO */
#define DENSE_LIMIT ((size_t)1 << 30)
/* the hot loops, vectorised (the build's -O2 leaves them scalar), as in train/kernels.c, and
 * built for AVX-512 and AVX2 too, the best chosen at load time (no FMA contraction: the same
 * rounding on each) */
#if defined(__GNUC__) && !defined(__clang__)
#define HOT __attribute__((optimize("O3", "no-trapping-math")))
#else
#define HOT
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WIDE __attribute__((target_clones("avx512f", "avx2", "default"), noinline))
#else
#define WIDE
#endif
/* attention products of a row with at most this many positions are plain loops */
#define SMALL_T 48

typedef struct frozen_w {
    float *wv; /* n_layers x (D x K*S): the value projection, row-major */
    float *wo; /* n_layers x (H*S x D): the output projection, row-major */
} frozen_w;

typedef struct sp_row {
    int32_t *col; /* NULL: val holds the whole row (N floats), where that is smaller */
    float *val;
    int64_t nnz;
} sp_row;

/* the rows computed so far, over all N sources of the replacement: slot -> row */
typedef struct row_store {
    int sparse, mixed; /* mixed: each sparse row dense where that is smaller */
    float **dense; /* per slot: N floats (into a block or the caller's matrix) */
    sp_row *sp;    /* per slot when sparse */
    double *absum; /* per slot: sum of |row| (influence ranking) */
} row_store;

typedef struct edge_ctx {
    const lp_replacement *r;
    frozen_w w;
    int *layer_start; /* n_layers + 1: the first feature node of each layer */
    int *cell_start;  /* n_layers x (T + 1): the first feature node of each (layer, position) */
    float *wact;      /* each feature's decoder rows times its activation: D floats per feature (a CLT:
                         (n_layers - layer) x D, its decoders into its layer and every later one) */
    size_t *wact_layer; /* n_layers: where layer l's features start in wact */
    int N, batch, Tmax;
    row_store st;
    /* the work of one lp_par_for: targets (feature index, or n_features + logit index)
     * sorted by (layer, position), their slots, cut into batches of `batch` */
    const int *work, *slots;
    int n_work;
    int failed;
} edge_ctx;

static float lin_at(const lp_linear *l, int i, int j) /* W[in i, out j] */
{
    return l->trans ? l->w->data[(size_t)j * l->in + i] : l->w->data[(size_t)i * l->out + j];
}

static int frozen_weights(const lp_model *m, frozen_w *w)
{
    const lp_model_config *c = &m->cfg;
    int D = c->d_model, H = c->n_heads, K = c->n_kv_heads > 0 ? c->n_kv_heads : H, S = c->d_head, L = c->n_layers;
    size_t nv = (size_t)D * K * S, no = (size_t)H * S * D;
    w->wv = lp_malloc((size_t)L * nv * sizeof(float), "frozen value weights");
    w->wo = lp_malloc((size_t)L * no * sizeof(float), "frozen output weights");
    if (!w->wv || !w->wo)
        return -1;
    for (int l = 0; l < L; l++) {
        const lp_block *b = &m->blocks[l];
        const lp_linear *v = c->arch == LP_ARCH_GPT2 ? &b->qkv : &b->v;
        int off = c->arch == LP_ARCH_GPT2 ? 2 * D : 0;
        for (int i = 0; i < D; i++)
            for (int j = 0; j < K * S; j++)
                w->wv[l * nv + (size_t)i * K * S + j] = lin_at(v, i, off + j);
        for (int j = 0; j < H * S; j++)
            for (int d = 0; d < D; d++)
                w->wo[l * no + (size_t)j * D + d] = lin_at(&b->o, j, d);
    }
    return 0;
}

/* 16 partial sums (vectorised; the same order on every machine) */
WIDE HOT static float dot(const float *restrict a, const float *restrict b, int n)
{
    float acc[16] = {0}, s = 0;
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++)
            acc[k] += a[i + k] * b[i + k];
    for (int k = 0; k < 16; k++)
        s += acc[k];
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* gradient through a frozen norm: x -> (x [- mean x]) / s * w (+ b); adds into gx */
WIDE HOT static void norm_back(float *restrict gx, const float *restrict gy, const float *restrict w, float s, int centered,
                      int D)
{
    float mean = centered ? dot(gy, w, D) / (float)D : 0.0f;
    float inv = 1.0f / s;
    for (int d = 0; d < D; d++)
        gx[d] += (gy[d] * w[d] - mean) * inv;
}

typedef struct batch_buf {
    float *g, *gin, *gz, *gv; /* R x Pm x D, R x Pm x D, R x Pm x H*S, R x Pm x K*S */
    float *out;               /* R x N: the batch's rows */
    int *top, *len;           /* R: each row's layer (n_layers for a logit) and position + 1 */
} batch_buf;

static void target_of(const lp_replacement *r, int t, int *layer, int *pos)
{
    if (t < r->n_features) {
        *layer = r->features[t].layer;
        *pos = r->features[t].pos;
    } else {
        *layer = r->n_layers;
        *pos = r->T - 1;
    }
}

/* gv[k] (+)= sum_{q < n} P[q, k] gz[q] for k < n: one head's frozen pattern transposed */
WIDE HOT static void pattern_back(const float *restrict P, int T, const float *restrict gz, int ldz, float *restrict gv, int ldv,
                         int n, int S)
{
    if (n > SMALL_T) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, S, n, 1.0f, P, T, gz, ldz, 1.0f, gv, ldv);
        return;
    }
    for (int q = 0; q < n; q++) {
        const float *z = gz + (size_t)q * ldz, *pq = P + (size_t)q * T;
        for (int k = 0; k <= q; k++) { /* causal: P[q, k] = 0 for k > q */
            float p = pq[k];
            if (p == 0.0f)
                continue;
            float *v = gv + (size_t)k * ldv;
            for (int s = 0; s < S; s++)
                v[s] += p * z[s];
        }
    }
}

/* gv[k] += P[p, k] z for k < n: the pattern's backward from one position */
WIDE HOT static void pattern_row(const float *restrict Pp, const float *restrict z, float *restrict gv, int ldv, int n,
                                 int S)
{
    for (int k = 0; k < n; k++) {
        float p = Pp[k];
        if (p == 0.0f)
            continue;
        float *v = gv + (size_t)k * ldv;
        for (int s = 0; s < S; s++)
            v[s] += p * z[s];
    }
}

HOT static void one_batch(edge_ctx *c, batch_buf *b, const int *tg, int R)
{
    const lp_replacement *r = c->r;
    const lp_model *m = r->m;
    const lp_model_config *mc = &m->cfg;
    int D = r->d_model, L = r->n_layers, H = mc->n_heads, K = mc->n_kv_heads > 0 ? mc->n_kv_heads : H,
        S = mc->d_head, T = r->T, HS = H * S, KS = K * S, N = c->N, nf = r->n_features;
    int *top = b->top, *len = b->len, Pm = 1;
    for (int i = 0; i < R; i++) {
        int p;
        target_of(r, tg[i], &top[i], &p);
        len[i] = p + 1;
        Pm = len[i] > Pm ? len[i] : Pm;
    }
    size_t PD = (size_t)Pm * D;
    memset(b->g, 0, (size_t)R * PD * sizeof(float));
    memset(b->out, 0, (size_t)R * N * sizeof(float));
    for (int i = 0; i < R; i++)
        if (tg[i] >= nf) /* a logit: its direction through the frozen final norm */
            norm_back(b->g + i * PD + (size_t)(T - 1) * D, r->logit_dirs + (size_t)(tg[i] - nf) * D, m->lnf_w->data,
                      r->lnf_scale[T - 1], m->lnf_b != NULL, D);
    for (int l = L - 1; l >= 0; l--) {
        int i0 = 0, i1;
        while (i0 < R && top[i0] < l)
            i0++;
        if (i0 == R)
            continue;
        i1 = i0;
        while (i1 < R && top[i1] == l)
            i1++;
        /* rows i0 .. i1-1 are targets of this layer (zero gradient at its MLP output); rows
         * i1 .. R-1 carry g, the gradient at mlp.hook_out l: read the sources there */
        int nR = R - i0, n1 = R - i1;
        size_t M = (size_t)nR * Pm;
        float *g1 = b->g + i1 * PD;
        const lp_block *bl = &m->blocks[l];
        const lp_sae *tc = r->clt ? NULL : r->tcs->layers[l];
        int F = tc ? tc->cfg.d_sae : r->clt->d_tc;
        const float *W_enc = tc ? tc->W_enc->data : r->clt->W_enc[l]->data;
        if (n1 > 0) {
            /* the features that write into this layer: its own, and with a CLT those of every
             * earlier layer l0 (their decoders into l: rows (L - l0) x D apart in wact) */
            for (int l0 = r->clt ? 0 : l; l0 <= l; l0++) {
                const int *cs = c->cell_start + (size_t)l0 * (T + 1);
                int ld = (r->clt ? L - l0 : 1) * D;
                const float *w0 = c->wact + c->wact_layer[l0] + (size_t)(l - l0) * D;
                for (int q = 1; q < Pm; q++)
                    if (cs[q + 1] > cs[q])
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n1, cs[q + 1] - cs[q], D, 1.0f,
                                    g1 + (size_t)q * D, (int)PD, w0 + (size_t)(cs[q] - c->layer_start[l0]) * ld, ld,
                                    1.0f, b->out + (size_t)i1 * N + cs[q], N);
            }
            for (int i = i1; i < R; i++) {
                float *o = b->out + (size_t)i * N + lp_replacement_error_node(r, l, 0);
                for (int p = 1; p < len[i]; p++) /* position 0's error vector is zero */
                    o[p] = dot(b->g + i * PD + (size_t)p * D, r->errors + ((size_t)l * T + p) * D, D);
            }
        }
        /* the MLP: its skip (nothing without one) for the rows that carry g, and each target's
         * own encoder column (its gradient at mlp.hook_in), through the frozen ln2 */
        if (n1 > 0 && tc && tc->W_skip) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n1 * Pm, D, D, 1.0f, g1, D, tc->W_skip->data, D, 0.0f,
                        b->gin, D);
            for (int i = i1; i < R; i++)
                for (int p = 0; p < len[i]; p++)
                    norm_back(b->g + i * PD + (size_t)p * D, b->gin + (size_t)(i - i1) * PD + (size_t)p * D,
                              bl->ln2_w->data, r->ln2_scale[(size_t)l * T + p], bl->ln2_b != NULL, D);
        }
        for (int i = i0; i < i1; i++) {
            const lp_attrib_feature *f = &r->features[tg[i]];
            float *col = b->gin; /* free again */
            for (int d = 0; d < D; d++)
                col[d] = W_enc[(size_t)d * F + f->feature];
            norm_back(b->g + i * PD + (size_t)f->pos * D, col, bl->ln2_w->data, r->ln2_scale[(size_t)l * T + f->pos],
                      bl->ln2_b != NULL, D);
        }
        /* attention's OV path with the frozen pattern: gv[k] = sum_q P[q, k] gz[q] per head */
        const float *wo = c->w.wo + (size_t)l * HS * D, *wv = c->w.wv + (size_t)l * D * KS;
        const float *P = r->pattern + (size_t)l * H * T * T;
        /* rows i0 .. iS-1 carry g at their target's position only (targets of this layer; the
         * logits at the last layer): a product and an outer product at that position */
        int iS = l == L - 1 ? R : i1;
        if (iS < R)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (R - iS) * Pm, HS, D, 1.0f, b->g + iS * PD, D, wo, D,
                        0.0f, b->gz + (size_t)(iS - i0) * Pm * HS, HS);
        memset(b->gv, 0, M * KS * sizeof(float));
        for (int i = i0; i < iS; i++) {
            int p = len[i] - 1;
            float *z = b->gz + ((size_t)(i - i0) * Pm + p) * HS, *v = b->gv + (size_t)(i - i0) * Pm * KS;
            cblas_sgemv(CblasRowMajor, CblasNoTrans, HS, D, 1.0f, wo, D, b->g + i * PD + (size_t)p * D, 1, 0.0f, z, 1);
            for (int h = 0; h < H; h++)
                pattern_row(P + (size_t)h * T * T + (size_t)p * T, z + h * S, v + (h / (H / K)) * S, KS, p + 1, S);
        }
        for (int i = iS; i < R; i++)
            for (int h = 0; h < H; h++)
                if (K == H && len[i] > SMALL_T) { /* the causal pattern is triangular: half the work */
                    float *v = b->gv + (size_t)(i - i0) * Pm * KS + h * S;
                    const float *z = b->gz + (size_t)(i - i0) * Pm * HS + h * S;
                    for (int q = 0; q < len[i]; q++)
                        memcpy(v + (size_t)q * KS, z + (size_t)q * HS, (size_t)S * sizeof(float));
                    cblas_strmm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, len[i], S, 1.0f,
                                P + (size_t)h * T * T, T, v, KS);
                } else
                    pattern_back(P + (size_t)h * T * T, T, b->gz + (size_t)(i - i0) * Pm * HS + h * S, HS,
                             b->gv + (size_t)(i - i0) * Pm * KS + (h / (H / K)) * S, KS, len[i], S);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, D, KS, 1.0f, b->gv, KS, wv, KS, 0.0f, b->gin, D);
        for (int i = i0; i < R; i++)
            for (int p = 0; p < len[i]; p++)
                norm_back(b->g + i * PD + (size_t)p * D, b->gin + (size_t)(i - i0) * PD + (size_t)p * D,
                          bl->ln1_w->data, r->ln1_scale[(size_t)l * T + p], bl->ln1_b != NULL, D);
    }
    /* g: the gradient at hook_embed */
    for (int i = 0; i < R; i++) {
        float *o = b->out + (size_t)i * N + lp_replacement_embed_node(r, 0);
        for (int p = 0; p < len[i]; p++)
            o[p] = dot(b->g + i * PD + (size_t)p * D, m->wte->data + (size_t)r->tokens[p] * D, D);
    }
}

/* keeps row i of the batch in its slot: a copy (dense) or its non-zero entries (sparse) */
HOT static int store_row(edge_ctx *c, int slot, const float *row)
{
    row_store *st = &c->st;
    int N = c->N;
    double s = 0;
    int64_t nnz = 0;
    for (int j = 0; j < N; j++) {
        s += fabs((double)row[j]);
        nnz += row[j] != 0.0f;
    }
    st->absum[slot] = s;
    if (!st->sparse) {
        memcpy(st->dense[slot], row, (size_t)N * sizeof(float));
        return 0;
    }
    sp_row *sp = &st->sp[slot];
    if (st->mixed && nnz * (sizeof(int32_t) + sizeof(float)) >= (size_t)N * sizeof(float)) {
        if (!(sp->val = malloc((size_t)N * sizeof(float))))
            return -1;
        memcpy(sp->val, row, (size_t)N * sizeof(float));
        sp->nnz = N;
        return 0;
    }
    sp->col = malloc((size_t)(nnz ? nnz : 1) * sizeof(int32_t));
    sp->val = malloc((size_t)(nnz ? nnz : 1) * sizeof(float));
    if (!sp->col || !sp->val)
        return -1;
    for (int j = 0, k = 0; j < N; j++)
        if (row[j] != 0.0f) {
            sp->col[k] = j;
            sp->val[k++] = row[j];
        }
    sp->nnz = nnz;
    return 0;
}

static void batches_range(void *p, size_t lo, size_t hi)
{
    edge_ctx *c = p;
    const lp_replacement *r = c->r;
    const lp_model_config *mc = &r->m->cfg;
    int K = mc->n_kv_heads > 0 ? mc->n_kv_heads : mc->n_heads;
    size_t RT = (size_t)c->batch * c->Tmax, D = (size_t)r->d_model, HS = (size_t)mc->n_heads * mc->d_head,
           KS = (size_t)K * mc->d_head;
    batch_buf b = {malloc(RT * D * sizeof(float)), malloc(RT * D * sizeof(float)), malloc(RT * HS * sizeof(float)),
                   malloc(RT * KS * sizeof(float)),
                   malloc((size_t)c->batch * c->N * sizeof(float)), malloc((size_t)c->batch * sizeof(int)),
                   malloc((size_t)c->batch * sizeof(int))};
    if (!b.g || !b.gin || !b.gz || !b.gv || !b.out || !b.top || !b.len) {
        c->failed = 1; /* no lp_set_error here: errors are per thread */
    } else {
        for (size_t k = lo; k < hi && !c->failed; k++) {
            int k0 = (int)k * c->batch, R = c->n_work - k0 < c->batch ? c->n_work - k0 : c->batch;
            one_batch(c, &b, c->work + k0, R);
            for (int i = 0; i < R; i++)
                if (store_row(c, c->slots[k0 + i], b.out + (size_t)i * c->N) < 0)
                    c->failed = 1;
        }
    }
    free(b.g);
    free(b.gin);
    free(b.gz);
    free(b.gv);
    free(b.out);
    free(b.top);
    free(b.len);
}

/* runs the targets work[0..n) (sorted by layer, position) into their slots */
typedef struct work_item {
    int pos, layer, target, slot;
} work_item;
static int by_pos(const void *a, const void *b)
{
    const work_item *x = a, *y = b;
    if (x->pos != y->pos)
        return x->pos < y->pos ? -1 : 1;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return (x->target > y->target) - (x->target < y->target);
}
static int by_layer(const void *a, const void *b)
{
    const work_item *x = a, *y = b;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return by_pos(a, b);
}

/* runs the targets work[0..n) into their slots: cut into batches by position (a batch covers
 * the positions up to its last target), each batch sorted by layer (one_batch's suffixes) */
static int run_work(edge_ctx *c, const int *work, const int *slots, int n)
{
    if (n <= 0)
        return 0;
    work_item *it = lp_malloc((size_t)n * sizeof *it, "attribution rows");
    int *w = lp_malloc((size_t)n * sizeof(int), "attribution rows"), *sl = lp_malloc((size_t)n * sizeof(int), "attribution rows");
    if (!it || !w || !sl) {
        free(it), free(w), free(sl);
        return -1;
    }
    int Tmax = 1;
    for (int i = 0; i < n; i++) {
        target_of(c->r, work[i], &it[i].layer, &it[i].pos);
        it[i].target = work[i];
        it[i].slot = slots[i];
        Tmax = it[i].pos + 1 > Tmax ? it[i].pos + 1 : Tmax;
    }
    qsort(it, (size_t)n, sizeof *it, by_pos);
    for (int k0 = 0; k0 < n; k0 += c->batch)
        qsort(it + k0, (size_t)(n - k0 < c->batch ? n - k0 : c->batch), sizeof *it, by_layer);
    for (int i = 0; i < n; i++)
        w[i] = it[i].target, sl[i] = it[i].slot;
    free(it);
    c->Tmax = Tmax;
    c->work = w;
    c->slots = sl;
    c->n_work = n;
    int saved = lp_blas_threads_begin(0); /* our threads run the batches; BLAS on one each */
    lp_par_for(((size_t)n + c->batch - 1) / c->batch, 1, batches_range, c);
    lp_blas_threads_end(saved);
    free(w);
    free(sl);
    if (c->failed)
        return lp_set_error_code(LP_ERR_NOMEM, "attribution: out of memory for the backward passes");
    return 0;
}

static int ctx_init(edge_ctx *c, const lp_replacement *r, int batch)
{
    int L = r->n_layers, T = r->T;
    memset(c, 0, sizeof *c);
    if (batch < 1)
        return lp_set_error("attribution: batch must be at least 1 (got %d)", batch);
    c->r = r;
    c->N = lp_replacement_n_nodes(r);
    c->batch = batch;
    c->layer_start = lp_calloc((size_t)L + 1, sizeof(int), "feature ranges");
    c->cell_start = lp_calloc((size_t)L * (T + 1), sizeof(int), "feature ranges");
    if (!c->layer_start || !c->cell_start || frozen_weights(r->m, &c->w) < 0)
        return -1;
    int s = 0;
    for (int l = 0; l < L; l++) {
        c->layer_start[l] = s;
        for (int p = 0; p <= T; p++) {
            while (s < r->n_features && r->features[s].layer == l && r->features[s].pos < p)
                s++;
            c->cell_start[(size_t)l * (T + 1) + p] = s;
        }
    }
    c->layer_start[L] = s;
    size_t D = (size_t)r->d_model, n = 0;
    c->wact_layer = lp_malloc((size_t)L * sizeof(size_t), "scaled decoder rows");
    if (!c->wact_layer)
        return -1;
    for (int l = 0; l < L; l++) {
        c->wact_layer[l] = n;
        n += (size_t)(c->layer_start[l + 1] - c->layer_start[l]) * (r->clt ? (size_t)(L - l) : 1) * D;
    }
    c->wact = lp_malloc((n ? n : 1) * sizeof(float), "scaled decoder rows");
    if (!c->wact)
        return -1;
    float *w = c->wact;
    for (int k = 0; k < r->n_features; k++) { /* in node order: layer by layer */
        const lp_attrib_feature *f = &r->features[k];
        size_t len = r->clt ? (size_t)(L - f->layer) * D : D;
        const float *wd = r->clt ? r->clt->W_dec[f->layer]->data + (size_t)f->feature * len
                                 : r->tcs->layers[f->layer]->W_dec->data + (size_t)f->feature * D;
        for (size_t d = 0; d < len; d++)
            w[d] = f->act * wd[d];
        w += len;
    }
    return 0;
}

static void ctx_free(edge_ctx *c)
{
    free(c->layer_start);
    free(c->cell_start);
    free(c->wact);
    free(c->wact_layer);
    free(c->w.wv);
    free(c->w.wo);
}

int lp_attrib_edges(const lp_replacement *r, int batch, float **out)
{
    *out = NULL;
    edge_ctx c;
    int n_rows = r->n_features + r->n_logits, rc = -1, N = lp_replacement_n_nodes(r);
    float *A = NULL;
    int *work = NULL;
    if (ctx_init(&c, r, batch) < 0)
        goto done;
    A = lp_calloc((size_t)N * N, sizeof(float), "the adjacency matrix");
    work = lp_malloc((size_t)n_rows * sizeof(int), "attribution rows");
    c.st.dense = lp_malloc((size_t)n_rows * sizeof(float *), "attribution rows");
    c.st.absum = lp_malloc((size_t)n_rows * sizeof(double), "attribution rows");
    if (!A || !work || !c.st.dense || !c.st.absum)
        goto done;
    for (int i = 0; i < n_rows; i++) { /* node order is (layer, position) order */
        work[i] = i;
        c.st.dense[i] = A + (size_t)(i < r->n_features ? i : lp_replacement_logit_node(r, i - r->n_features)) * N;
    }
    if (run_work(&c, work, work, n_rows) < 0)
        goto done;
    *out = A;
    A = NULL;
    rc = 0;
done:
    free(A);
    free(work);
    free(c.st.dense);
    free(c.st.absum);
    ctx_free(&c);
    return rc;
}

/* ---- influence-ordered processing ---- */

typedef struct infl_ctx {
    const edge_ctx *c;
    const int *group;     /* slots whose rows are scattered now */
    const double *scale;  /* per slot of the group: its node's total influence / its row's sum */
    int n;
    double *acc; /* N */
} infl_ctx;

/* acc[j] += scale |A[slot, j]| for the group's slots, columns lo .. hi-1: each column summed in
 * the same order whatever the thread count */
HOT static void infl_range(void *p, size_t lo, size_t hi)
{
    infl_ctx *ic = p;
    const row_store *st = &ic->c->st;
    for (int g = 0; g < ic->n; g++) {
        int k = ic->group[g];
        double sc = ic->scale[g];
        if (sc == 0)
            continue;
        if (!st->sparse || !st->sp[k].col) {
            const float *row = st->sparse ? st->sp[k].val : st->dense[k];
            for (size_t j = lo; j < hi; j++)
                ic->acc[j] += sc * fabsf(row[j]);
        } else {
            const sp_row *sp = &st->sp[k];
            int64_t a = 0, z = sp->nnz;
            while (a < z) { /* the first entry at column >= lo */
                int64_t mid = (a + z) / 2;
                if ((size_t)sp->col[mid] < lo)
                    a = mid + 1;
                else
                    z = mid;
            }
            for (; a < sp->nnz && (size_t)sp->col[a] < hi; a++)
                ic->acc[sp->col[a]] += sc * fabsf(sp->val[a]);
        }
    }
}

static int slot_layer(const edge_ctx *c, const int *slot_node, int k)
{
    int node = slot_node[k];
    return node < c->r->n_features ? c->r->features[node].layer : c->r->n_layers;
}

/* circuit-tracer's compute_partial_influences on the rows computed so far, in double:
 * infl = sum_{k>=1} w^T Ahat^k over those rows (Ahat = |rows| / row sums, at least 1e-8).
 * It iterates that product until it vanishes; here the same sum comes from one pass: a row
 * only reads nodes of lower layers, so taking the rows by layer, from the logits down, each
 * row's node has its whole influence I (w + what the rows above gave it) before its row
 * passes I |row| / sum on to every column. group and scale: n_slots + n_logits each. */
static int partial_influence(const edge_ctx *c, const int *slot_node, int n_slots, int logit_slot0, double *infl,
                             int *group, double *scale)
{
    const lp_replacement *r = c->r;
    const row_store *st = &c->st;
    int N = c->N, L = r->n_layers;
    memset(infl, 0, (size_t)N * sizeof(double));
    infl_ctx ic = {c, group, scale, 0, infl};
    for (int l = L; l >= 0; l--) {
        int n = 0;
        if (l == L)
            for (int i = 0; i < r->n_logits; i++)
                group[n++] = logit_slot0 + i;
        else
            for (int k = 0; k < n_slots; k++)
                if (slot_layer(c, slot_node, k) == l)
                    group[n++] = k;
        for (int g = 0; g < n; g++) {
            int k = group[g], node = slot_node[k];
            double w = node >= lp_replacement_logit_node(r, 0) ? r->logit_probs[node - lp_replacement_logit_node(r, 0)]
                                                                : 0.0;
            scale[g] = (w + infl[node]) / (st->absum[k] > 1e-8 ? st->absum[k] : 1e-8);
        }
        ic.n = n;
        if (n)
            lp_par_for((size_t)N, 4096, infl_range, &ic);
    }
    return 0;
}

typedef struct ranked {
    double key;
    int idx;
} ranked;
static int by_influence(const void *a, const void *b) /* descending, ties by index */
{
    const ranked *x = a, *y = b;
    return x->key > y->key ? -1 : x->key < y->key ? 1 : (x->idx > y->idx) - (x->idx < y->idx);
}
static int by_index(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    return (i > j) - (i < j);
}

void lp_attrib_matrix_clear(lp_attrib_matrix *a)
{
    free(a->kept);
    free(a->dense);
    free(a->row_ptr);
    free(a->col);
    free(a->val);
    memset(a, 0, sizeof *a);
}

int lp_attrib_matrix_row_node(const lp_attrib_matrix *a, int i)
{
    return i < a->n_kept ? i : a->n_nodes - (a->n_rows - i);
}

int lp_attrib_matrix_dense(const lp_attrib_matrix *a, float **out)
{
    size_t n = (size_t)a->n_nodes;
    float *A = lp_calloc(n * n, sizeof(float), "the dense adjacency matrix");
    *out = NULL;
    if (!A)
        return -1;
    for (int i = 0; i < a->n_rows; i++) {
        float *row = A + (size_t)lp_attrib_matrix_row_node(a, i) * n;
        if (a->dense)
            memcpy(row, a->dense + (size_t)i * n, n * sizeof(float));
        else
            for (int64_t k = a->row_ptr[i]; k < a->row_ptr[i + 1]; k++)
                row[a->col[k]] = a->val[k];
    }
    *out = A;
    return 0;
}

/* the kept rows over the kept columns, from the store */
static int build_matrix(const edge_ctx *c, const int *node_slot, const int *kept, int n_kept, int storage,
                        size_t limit, float **block, lp_attrib_matrix *out)
{
    const lp_replacement *r = c->r;
    int nf = r->n_features, N = c->N, n = n_kept + (N - nf), n_rows = n_kept + r->n_logits;
    int *colmap = lp_malloc((size_t)N * sizeof(int), "column map");
    out->kept = lp_malloc((size_t)(n_kept ? n_kept : 1) * sizeof(int), "kept features");
    if (!colmap || !out->kept) {
        free(colmap);
        return -1;
    }
    out->n_nodes = n;
    out->n_rows = n_rows;
    out->n_kept = n_kept;
    memcpy(out->kept, kept, (size_t)n_kept * sizeof(int));
    for (int j = 0; j < nf; j++)
        colmap[j] = -1;
    for (int k = 0; k < n_kept; k++)
        colmap[kept[k]] = k;
    for (int j = nf; j < N; j++)
        colmap[j] = j - nf + n_kept;
    int sparse = storage == LP_ATTRIB_SPARSE || (storage == LP_ATTRIB_AUTO && (size_t)n_rows * n * 4 > limit);
    int rc = 0;
    const row_store *st = &c->st;
    if (!sparse && !st->sparse && n_kept == nf) { /* every feature kept: the store is the matrix */
        out->dense = *block;
        *block = NULL;
    } else if (!sparse) {
        out->dense = lp_calloc((size_t)n_rows * n, sizeof(float), "the adjacency rows");
        if (!out->dense)
            rc = -1;
        for (int i = 0; rc == 0 && i < n_rows; i++) {
            int slot = node_slot[i < n_kept ? kept[i] : lp_replacement_logit_node(r, i - n_kept)];
            float *o = out->dense + (size_t)i * n;
            if (!st->sparse || !st->sp[slot].col) {
                const float *row = st->sparse ? st->sp[slot].val : st->dense[slot];
                for (int j = 0; j < N; j++)
                    if (colmap[j] >= 0)
                        o[colmap[j]] = row[j];
            } else
                for (int64_t k = 0; k < st->sp[slot].nnz; k++)
                    if (colmap[st->sp[slot].col[k]] >= 0)
                        o[colmap[st->sp[slot].col[k]]] = st->sp[slot].val[k];
        }
    } else {
        /* two passes: the entries per row, then the entries (ascending columns: colmap is
         * monotone on the kept columns) */
        out->row_ptr = lp_calloc((size_t)n_rows + 1, sizeof(int64_t), "the adjacency rows");
        if (!out->row_ptr)
            rc = -1;
        for (int pass = 0; rc == 0 && pass < 2; pass++) {
            if (pass == 1) {
                int64_t nnz = out->row_ptr[n_rows];
                out->col = lp_malloc((size_t)(nnz ? nnz : 1) * sizeof(int32_t), "the adjacency rows");
                out->val = lp_malloc((size_t)(nnz ? nnz : 1) * sizeof(float), "the adjacency rows");
                if (!out->col || !out->val) {
                    rc = -1;
                    break;
                }
            }
            int64_t at = 0;
            for (int i = 0; i < n_rows; i++) {
                int slot = node_slot[i < n_kept ? kept[i] : lp_replacement_logit_node(r, i - n_kept)];
                if (pass == 0)
                    out->row_ptr[i] = at;
                if (!st->sparse || !st->sp[slot].col) {
                    const float *row = st->sparse ? st->sp[slot].val : st->dense[slot];
                    for (int j = 0; j < N; j++)
                        if (colmap[j] >= 0 && row[j] != 0.0f) {
                            if (pass == 1)
                                out->col[at] = colmap[j], out->val[at] = row[j];
                            at++;
                        }
                } else
                    for (int64_t k = 0; k < st->sp[slot].nnz; k++) {
                        int j = colmap[st->sp[slot].col[k]];
                        if (j >= 0) {
                            if (pass == 1)
                                out->col[at] = j, out->val[at] = st->sp[slot].val[k];
                            at++;
                        }
                    }
            }
            if (pass == 0)
                out->row_ptr[n_rows] = at;
        }
    }
    free(colmap);
    return rc;
}

int lp_attrib_edges_rows(const lp_replacement *r, const lp_attrib_opts *o, lp_attrib_matrix *out)
{
    lp_attrib_opts def = lp_attrib_defaults();
    if (!o)
        o = &def;
    memset(out, 0, sizeof *out);
    if (o->max_feature_nodes < 0)
        return lp_set_error("attribution: max_feature_nodes must not be negative (got %d)", o->max_feature_nodes);
    if (o->update_interval < 1)
        return lp_set_error("attribution: update_interval must be at least 1 (got %d)", o->update_interval);
    if (o->storage < LP_ATTRIB_AUTO || o->storage > LP_ATTRIB_SPARSE)
        return lp_set_error("attribution: storage must be LP_ATTRIB_AUTO, _DENSE or _SPARSE (got %d)", o->storage);
    edge_ctx c;
    size_t limit = o->dense_limit > 0 ? (size_t)o->dense_limit : DENSE_LIMIT;
    int nf = r->n_features, nl = r->n_logits, rc = -1;
    int K = o->max_feature_nodes > 0 && o->max_feature_nodes < nf ? o->max_feature_nodes : nf;
    int n_slots = K + nl, N = lp_replacement_n_nodes(r);
    int *slot_node = NULL, *node_slot = NULL, *work = NULL, *slots = NULL, *kept = NULL;
    ranked *rank = NULL;
    double *infl = NULL, *scale = NULL;
    int *group = NULL;
    unsigned char *visited = NULL;
    float *block = NULL;
    if (ctx_init(&c, r, o->batch) < 0)
        goto done;
    c.st.sparse = o->storage == LP_ATTRIB_SPARSE ||
                  (o->storage == LP_ATTRIB_AUTO && (size_t)n_slots * N * sizeof(float) > limit);
    c.st.mixed = c.st.sparse && o->storage == LP_ATTRIB_AUTO;
    slot_node = lp_malloc((size_t)n_slots * sizeof(int), "attribution rows");
    node_slot = lp_malloc((size_t)N * sizeof(int), "attribution rows");
    work = lp_malloc((size_t)n_slots * sizeof(int), "attribution rows");
    slots = lp_malloc((size_t)n_slots * sizeof(int), "attribution rows");
    kept = lp_malloc((size_t)(K ? K : 1) * sizeof(int), "attribution rows");
    visited = lp_calloc((size_t)(nf ? nf : 1), 1, "attribution rows");
    c.st.absum = lp_malloc((size_t)n_slots * sizeof(double), "attribution rows");
    if (c.st.sparse)
        c.st.sp = lp_calloc((size_t)n_slots, sizeof(sp_row), "attribution rows");
    else {
        c.st.dense = lp_malloc((size_t)n_slots * sizeof(float *), "attribution rows");
        block = lp_malloc((size_t)n_slots * N * sizeof(float), "attribution rows (dense)");
    }
    if (!slot_node || !node_slot || !work || !slots || !kept || !visited || !c.st.absum ||
        (c.st.sparse ? !c.st.sp : !c.st.dense || !block))
        goto done;
    if (!c.st.sparse)
        for (int k = 0; k < n_slots; k++)
            c.st.dense[k] = block + (size_t)k * N;
    for (int j = 0; j < N; j++)
        node_slot[j] = -1;
    /* the logit rows, in the last slots (with every feature kept in a dense store, the
     * slots are the graph's rows in order) */
    for (int i = 0; i < nl; i++) {
        work[i] = nf + i;
        slots[i] = K + i;
        slot_node[K + i] = lp_replacement_logit_node(r, i);
        node_slot[slot_node[K + i]] = K + i;
    }
    if (run_work(&c, work, slots, nl) < 0)
        goto done;
    int done_slots = 0, n_visited = 0;
    if (K < nf) {
        rank = lp_malloc((size_t)nf * sizeof(ranked), "influence ranking");
        infl = lp_malloc((size_t)N * sizeof(double), "influence ranking");
        group = lp_malloc((size_t)n_slots * sizeof(int), "influence ranking");
        scale = lp_malloc((size_t)n_slots * sizeof(double), "influence ranking");
        if (!rank || !infl || !group || !scale)
            goto done;
    }
    while (n_visited < K) {
        int n = 0;
        if (K == nf) {
            for (int s = 0; s < nf; s++)
                work[n++] = s;
        } else {
            if (partial_influence(&c, slot_node, done_slots, K, infl, group, scale) < 0)
                goto done;
            for (int s = 0; s < nf; s++)
                rank[s] = (ranked){infl[s], s};
            qsort(rank, (size_t)nf, sizeof(ranked), by_influence);
            long q = (long)o->update_interval * o->batch;
            if (q > K - n_visited)
                q = K - n_visited;
            for (int k = 0; k < nf && n < q; k++)
                if (!visited[rank[k].idx])
                    work[n++] = rank[k].idx;
            qsort(work, (size_t)n, sizeof(int), by_index); /* node order: (layer, position) */
        }
        for (int k = 0; k < n; k++) {
            slots[k] = done_slots + k;
            slot_node[done_slots + k] = work[k];
            node_slot[work[k]] = done_slots + k;
            visited[work[k]] = 1;
        }
        if (run_work(&c, work, slots, n) < 0)
            goto done;
        done_slots += n;
        n_visited += n;
    }
    int n_kept = 0;
    for (int s = 0; s < nf; s++)
        if (visited[s])
            kept[n_kept++] = s;
    if (build_matrix(&c, node_slot, kept, n_kept, o->storage, limit, &block, out) < 0) {
        lp_attrib_matrix_clear(out);
        goto done;
    }
    rc = 0;
done:
    if (c.st.sp)
        for (int k = 0; k < n_slots; k++) {
            free(c.st.sp[k].col);
            free(c.st.sp[k].val);
        }
    free(c.st.sp);
    free(c.st.dense);
    free(c.st.absum);
    free(block);
    free(slot_node);
    free(node_slot);
    free(work);
    free(slots);
    free(rank);
    free(kept);
    free(visited);
    free(infl);
    free(group);
    free(scale);
    ctx_free(&c);
    return rc;
}
