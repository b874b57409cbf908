/* The fast forward of sae_ops.h: z by sgemm, the activation per architecture into per-token
 * lists of active pairs, the decode as a gather of the active rows of W_dec (or an sgemm
 * when many are active), the losses. Token loops run on lp_par_for. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/parallel.h"
#include "dict/sae_work.h"
#include "model/forward_impl.h" /* LP_RANGE_VERSIONS: AVX-512, AVX2 and baseline builds of a kernel */

#if defined(__GNUC__) && !defined(__clang__)
/* no-trapping-math lets comparisons be if-converted (vectorized); it changes no value */
#define HOT __attribute__((optimize("O3", "no-trapping-math")))
#else
#define HOT
#endif

lp_sae_loss_opts lp_sae_loss_defaults(const lp_sae_config *c)
{
    lp_sae_loss_opts o = {.l1 = c->arch == LP_SAE_STANDARD ? 5.0f : 1e-3f, .tanh_c = 4.0f, .bandwidth = 0.05f,
                          .aux_alpha = c->arch == LP_SAE_TOPK ? 1.0f : 0.0f, .k_aux = c->d_in / 2 > 0 ? c->d_in / 2 : 1,
                          .batch_mode = 1};
    return o;
}

lp_sae_grads *lp_sae_grads_new(const lp_sae_config *c)
{
    size_t ne = (size_t)c->d_in * c->d_sae, nd = (size_t)c->d_sae * c->d_out;
    int thr = c->arch != LP_SAE_STANDARD && c->arch != LP_SAE_TOPK;
    size_t n = ne + c->d_sae + nd + c->d_out + (thr ? c->d_sae : 0) + (c->skip ? (size_t)c->d_out * c->d_in : 0);
    lp_sae_grads *g = lp_calloc(1, sizeof *g, "dictionary gradients");
    if (!g || !(g->mem = lp_calloc(n, sizeof(float), "dictionary gradients"))) {
        free(g);
        return NULL;
    }
    g->n = n;
    float *p = g->mem;
    g->W_enc = p, p += ne;
    g->b_enc = p, p += c->d_sae;
    g->W_dec = p, p += nd;
    g->b_dec = p, p += c->d_out;
    if (thr)
        g->threshold = p, p += c->d_sae;
    if (c->skip)
        g->W_skip = p;
    return g;
}

void lp_sae_grads_zero(lp_sae_grads *g) { memset(g->mem, 0, g->n * sizeof(float)); }

void lp_sae_grads_free(lp_sae_grads *g)
{
    if (g)
        free(g->mem), free(g);
}

void lp_sae_work_free(lp_sae_work *w)
{
    if (!w)
        return;
    free(w->xin), free(w->z), free(w->f), free(w->x_hat), free(w->px), free(w->G), free(w->dz), free(w->rowptr);
    free(w->idx), free(w->cval), free(w->dval), free(w->aidx), free(w->aval), free(w->adz), free(w->aH);
    free(w->colptr), free(w->colpos), free(w->ptok), free(w->norms), free(w->fsum), free(w->dnorm), free(w->dzsum);
    free(w->dWencT), free(w->scratch), free(w);
}

lp_sae_work *lp_sae_work_new(const lp_sae_config *c, int N, int k_aux)
{
    if (lp_sae_config_check(c) < 0)
        return NULL;
    if (N < 1 || k_aux < 0) {
        lp_set_error("dictionary: a batch needs at least one token (got %d) and k_aux >= 0", N);
        return NULL;
    }
    lp_sae_work *w = lp_calloc(1, sizeof *w, "dictionary work");
    if (!w)
        return NULL;
    w->cfg = *c, w->N_max = N, w->k_aux = k_aux > c->d_sae ? c->d_sae : k_aux;
    size_t NS = (size_t)N * c->d_sae, ND = (size_t)N * c->d_out, ka = (size_t)N * w->k_aux;
    size_t kcap = (c->arch == LP_SAE_TOPK || c->arch == LP_SAE_BATCHTOPK || c->arch == LP_SAE_MATRYOSHKA)
                      ? (size_t)N * c->k : 0;
    w->cap = NS / 8 > kcap ? NS / 8 : kcap;
    int np = c->arch == LP_SAE_MATRYOSHKA ? LP_SAE_MAX_PREFIX : 0;
    int batch = c->arch == LP_SAE_BATCHTOPK || c->arch == LP_SAE_MATRYOSHKA; /* scratch: the batch's values */
    int ok = (w->xin = lp_malloc((size_t)N * c->d_in * sizeof(float), "SAE inputs")) &&
             (w->z = lp_malloc(NS * sizeof(float), "SAE pre-activations")) &&
             (w->f = lp_malloc(NS * sizeof(float), "SAE features")) &&
             (w->x_hat = lp_malloc(ND * sizeof(float), "SAE reconstructions")) &&
             (!np || (w->px = lp_malloc((size_t)np * ND * sizeof(float), "prefix reconstructions"))) &&
             (w->G = lp_malloc((size_t)(np + 1) * ND * sizeof(float), "reconstruction gradients")) &&
             (w->dz = lp_malloc(NS * sizeof(float), "SAE gradients")) &&
             (w->rowptr = lp_malloc(((size_t)N + 1) * sizeof(int), "active lists")) &&
             (w->idx = lp_malloc((w->cap + 1) * sizeof(int), "active lists")) &&
             (w->cval = lp_malloc((w->cap + 1) * sizeof(float), "active lists")) &&
             (w->dval = lp_malloc((w->cap + 1) * sizeof(float), "active lists")) &&
             (w->aidx = lp_malloc((ka + 1) * sizeof(int), "AuxK lists")) &&
             (w->aval = lp_malloc((ka + 1) * sizeof(float), "AuxK lists")) &&
             (w->adz = lp_malloc((ka + 1) * sizeof(float), "AuxK lists")) &&
             (w->aH = lp_malloc(ND * sizeof(float), "AuxK gradients")) &&
             (w->colptr = lp_malloc(((size_t)c->d_sae + 1) * sizeof(int), "feature lists")) &&
             (w->colpos = lp_malloc((w->cap + ka + 1) * sizeof(int), "feature lists")) &&
             (w->ptok = lp_malloc((w->cap + ka + 1) * sizeof(int), "feature lists")) &&
             (w->norms = lp_malloc((size_t)c->d_sae * sizeof(double), "decoder norms")) &&
             (w->fsum = lp_malloc((size_t)c->d_sae * sizeof(double), "feature sums")) &&
             (w->dnorm = lp_malloc((size_t)c->d_sae * sizeof(double), "decoder norm gradients")) &&
             (w->dzsum = lp_malloc((size_t)c->d_sae * sizeof(double), "feature sums")) &&
             (w->dWencT = lp_malloc((size_t)c->d_sae * c->d_in * sizeof(float), "encoder gradients")) &&
             (w->scratch = lp_malloc((batch ? NS : w->cap + 1) * sizeof(float), "batch top-k scratch"));
    if (!ok) {
        lp_sae_work_free(w);
        return NULL;
    }
    return w;
}

const float *lp_sae_work_z(const lp_sae_work *w) { return w->z; }
const float *lp_sae_work_f(const lp_sae_work *w) { return w->f; }
const float *lp_sae_work_x_hat(const lp_sae_work *w) { return w->x_hat; }

void lp_sae_decoder_norms(double *norms, const lp_sae *s)
{
    const int ds = s->cfg.d_sae, d = s->cfg.d_out;
    for (int i = 0; i < ds; i++) {
        const float *r = s->W_dec->data + (size_t)i * d;
        double a = 0;
        for (int j = 0; j < d; j++)
            a += (double)r[j] * r[j];
        norms[i] = sqrt(a);
    }
}

/* A bounded min-heap of (value, index) keeping the best m: larger value, then lower index. */
static int worse(float va, int ia, float vb, int ib) { return va < vb || (va == vb && ia > ib); }

static void heap_down(float *v, int *ix, int m, int p)
{
    for (;;) {
        int l = 2 * p + 1, r = l + 1, s = p;
        if (l < m && worse(v[l], ix[l], v[s], ix[s]))
            s = l;
        if (r < m && worse(v[r], ix[r], v[s], ix[s]))
            s = r;
        if (s == p)
            return;
        float tv = v[p];
        int ti = ix[p];
        v[p] = v[s], ix[p] = ix[s], v[s] = tv, ix[s] = ti;
        p = s;
    }
}

/* The best m of vals[i] * (scale ? scale[i] : 1) over i with (mask ? mask[i] : 1), NaN
 * skipped; returns the count, idx/val unordered. After the heap fills, most values lose one
 * comparison with its minimum (equal values: the lower index already held wins). */
HOT static int select_top(int *idx, float *val, const float *vals, const double *scale, const uint8_t *mask, int n,
                          int m)
{
    int h = 0, i = 0;
    for (; i < n && h < m; i++) {
        if (mask && !mask[i])
            continue;
        float v = scale ? (float)(vals[i] * scale[i]) : vals[i];
        if (!isnan(v))
            val[h] = v, idx[h++] = i;
    }
    if (h < m)
        return h;
    for (int p = m / 2 - 1; p >= 0; p--)
        heap_down(val, idx, m, p);
    float lo = val[0];
    if (!mask && !scale) {
        for (; i < n; i++)
            if (vals[i] > lo) {
                val[0] = vals[i], idx[0] = i;
                heap_down(val, idx, m, 0);
                lo = val[0];
            }
        return h;
    }
    for (; i < n; i++) {
        if (mask && !mask[i])
            continue;
        float v = scale ? (float)(vals[i] * scale[i]) : vals[i];
        if (v > lo) {
            val[0] = v, idx[0] = i;
            heap_down(val, idx, m, 0);
            lo = val[0];
        }
    }
    return h;
}

/* The value of rank kth (0: the largest) of v[0..n), n > kth, NaN-free; v is reordered.
 * Quickselect with a three-way partition (many equal values stay linear). */
HOT static float rank_value(float *v, int n, int kth)
{
    int lo = 0, hi = n;
    for (;;) {
        float piv = v[lo + (hi - lo) / 2], t;
        int lt = lo, i = lo, gt = hi; /* [lo,lt) > piv, [lt,gt) == piv, [gt,hi) < piv */
        while (i < gt) {
            if (v[i] > piv)
                t = v[lt], v[lt++] = v[i], v[i++] = t;
            else if (v[i] < piv)
                t = v[--gt], v[gt] = v[i], v[i] = t;
            else
                i++;
        }
        if (kth < lt)
            hi = lt;
        else if (kth >= gt)
            lo = gt;
        else
            return piv;
    }
}

/* select_top without mask or scale, for long rows. The row is cut into nb groups of 16
 * (group j: entries j, j + nb, ..., vertical maxima: contiguous vector compares); the m-th
 * largest group maximum bounds the m-th largest value from below, so only groups whose
 * maximum reaches it hold candidates; of those, the m-th largest value decides, ties to the
 * lower index (the same set as select_top over the whole row). */
enum { TOPK_GROUP = 16, TOPK_CAND = 1024 };

HOT static int select_top_blocks(int *idx, float *val, const float *vals, int n, int m)
{
    int nb = n / TOPK_GROUP;
    if (m < 1 || nb < 4 * m || nb > 4096)
        return select_top(idx, val, vals, NULL, NULL, n, m);
    float gmax[nb], keep[nb], cv[TOPK_CAND], tmp[TOPK_CAND];
    int ci[TOPK_CAND], nfin = 0;
    for (int j = 0; j < nb; j++)
        gmax[j] = -INFINITY;
    for (int u = 0; u < TOPK_GROUP; u++) {
        const float *v = vals + (size_t)u * nb;
        for (int j = 0; j < nb; j++)
            gmax[j] = v[j] > gmax[j] ? v[j] : gmax[j]; /* NaN never wins */
    }
    for (int j = 0; j < nb; j++)
        nfin += gmax[j] > -INFINITY;
    if (nfin < m) /* NaN or -inf groups: the plain walk */
        return select_top(idx, val, vals, NULL, NULL, n, m);
    memcpy(keep, gmax, sizeof keep);
    float T = rank_value(keep, nb, m - 1); /* finite: m groups have a finite maximum */
    int c = 0;
    for (int j = 0; j <= nb; j++) {
        if (j < nb && !(gmax[j] >= T))
            continue;
        int i0 = j < nb ? j : nb * TOPK_GROUP, step = j < nb ? nb : 1; /* j == nb: the tail */
        int i1 = j < nb ? nb * TOPK_GROUP : n;
        for (int i = i0; i < i1; i += step)
            if (vals[i] >= T) { /* NaN never */
                if (c == TOPK_CAND)
                    return select_top(idx, val, vals, NULL, NULL, n, m);
                cv[c] = vals[i], ci[c++] = i;
            }
    }
    memcpy(tmp, cv, (size_t)c * sizeof *tmp); /* c >= m: the m group maxima >= T */
    float T2 = rank_value(tmp, c, m - 1);
    int h = 0, ne = 0, eqi[m];
    for (int q = 0; q < c; q++)
        if (cv[q] > T2)
            val[h] = cv[q], idx[h++] = ci[q];
        else if (cv[q] == T2) { /* the m - h lowest indices of those equal to T2 */
            int i = ci[q], p = ne < m ? ne++ : m;
            for (; p > 0 && eqi[p - 1] > i; p--)
                if (p < m)
                    eqi[p] = eqi[p - 1];
            if (p < m)
                eqi[p] = i;
        }
    for (int q = 0; h < m && q < ne; q++)
        val[h] = T2, idx[h++] = eqi[q];
    return h;
}

int lp_sae_aux_select(int *idx, const float *zrow, const uint8_t *dead, int d_sae, int k_aux)
{
    float val[k_aux > 0 ? k_aux : 1];
    int h = select_top(idx, val, zrow, NULL, dead, d_sae, k_aux);
    for (int t = h; t < k_aux; t++)
        idx[t] = -1;
    return h;
}

/* ---- encode ---- */

struct act_ctx {
    lp_sae_work *w;
    const lp_sae *s;
    const lp_sae_loss_opts *o;
    int batch, lists; /* lists: fill the active lists (pass 2) instead of f (pass 1) */
};

/* A pair joins the lists when its feature is active, or, for a jumprelu being trained, when
 * z lies in the rectangle kernel's band below the threshold (its threshold gradient). */
static int listed(const struct act_ctx *a, float z, float f, int i)
{
    if (f != 0)
        return 1;
    if (a->s->cfg.arch == LP_SAE_JUMPRELU && a->o) {
        float th = a->s->threshold->data[i];
        return z > th - 0.5f * a->o->bandwidth;
    }
    return 0;
}

HOT static void act_range(void *p, size_t lo, size_t hi)
{
    struct act_ctx *a = p;
    lp_sae_work *w = a->w;
    const lp_sae_config *c = &a->s->cfg;
    const int ds = c->d_sae;
    const float *th = a->s->threshold ? a->s->threshold->data : NULL;
    int rs = c->arch == LP_SAE_TOPK && c->rescale_acts_by_decoder_norm;
    for (size_t n = lo; n < hi; n++) {
        const float *z = w->z + n * ds;
        float *f = w->f + n * ds;
        if (a->lists && !(c->arch == LP_SAE_JUMPRELU && a->o)) { /* the active features only */
            int q = w->rowptr[n];
            for (int i = 0; i < ds; i++)
                if (f[i] != 0) {
                    w->idx[q] = i;
                    w->cval[q++] = rs ? z[i] : f[i];
                }
            continue;
        }
        if (a->lists) {
            int q = w->rowptr[n];
            for (int i = 0; i < ds; i++)
                if (listed(a, z[i], f[i], i)) {
                    w->idx[q] = i;
                    w->cval[q++] = f[i] == 0 ? 0.0f : rs ? z[i] : f[i];
                }
            continue;
        }
        if (!a->batch) {
            if (c->arch == LP_SAE_STANDARD)
                for (int i = 0; i < ds; i++)
                    f[i] = z[i] > 0 ? z[i] : 0.0f;
            else if (c->arch == LP_SAE_TOPK) {
                /* the positive winners in feature order, staged at pairs n*k.. (the lists
                 * hold N*k pairs: lp_sae_encode_into moves them down to rowptr[n]) */
                int k = c->k, ix[k];
                float v[k];
                memset(f, 0, (size_t)ds * sizeof *f);
                int h = rs ? select_top(ix, v, z, w->norms, NULL, ds, k) : select_top_blocks(ix, v, z, ds, k);
                int cnt = 0, *sidx = w->idx + n * (size_t)k;
                float *sval = w->cval + n * (size_t)k;
                for (int t = 0; t < h; t++)
                    if (v[t] > 0) {
                        f[ix[t]] = v[t];
                        int i = ix[t], j = cnt++;
                        for (; j > 0 && sidx[j - 1] > i; j--) /* insertion by feature */
                            sidx[j] = sidx[j - 1], sval[j] = sval[j - 1];
                        sidx[j] = i, sval[j] = rs ? z[i] : v[t];
                    }
                w->rowptr[n + 1] = cnt;
                continue;
            } else
                for (int i = 0; i < ds; i++)
                    f[i] = z[i] > th[i] ? z[i] : 0.0f;
        }
        int cnt = 0;
        if (c->arch == LP_SAE_JUMPRELU && a->o)
            for (int i = 0; i < ds; i++)
                cnt += listed(a, z[i], f[i], i);
        else
            for (int i = 0; i < ds; i++)
                cnt += f[i] != 0;
        w->rowptr[n + 1] = cnt;
    }
}

/* Batch top-k: f = z at the k*N largest positive z of the batch (ties: lower flat index). */
static void batch_topk(lp_sae_work *w, int N, int k)
{
    size_t NS = (size_t)N * w->cfg.d_sae, m = 0, want = (size_t)k * N;
    for (size_t p = 0; p < NS; p++)
        if (w->z[p] > 0)
            w->scratch[m++] = w->z[p];
    memset(w->f, 0, NS * sizeof(float));
    if (m == 0)
        return;
    float tv = 0;
    if (m <= want)
        tv = 0; /* every positive value is kept */
    else { /* quickselect (three-way) the want-th largest */
        float *v = w->scratch;
        size_t lo = 0, hi = m, kth = want - 1;
        for (;;) {
            float piv = v[lo + (hi - lo) / 2], t;
            size_t lt = lo, i = lo, gt = hi; /* [lo,lt) > piv, [lt,gt) == piv, [gt,hi) < piv */
            while (i < gt) {
                if (v[i] > piv)
                    t = v[lt], v[lt++] = v[i], v[i++] = t;
                else if (v[i] < piv)
                    t = v[--gt], v[gt] = v[i], v[i] = t;
                else
                    i++;
            }
            if (kth < lt)
                hi = lt;
            else if (kth >= gt)
                lo = gt;
            else {
                tv = piv;
                break;
            }
        }
    }
    size_t above = 0;
    for (size_t p = 0; p < NS; p++)
        above += w->z[p] > tv && w->z[p] > 0;
    size_t eq = want > above ? want - above : 0;
    for (size_t p = 0; p < NS; p++) {
        float z = w->z[p];
        if (z > 0 && (z > tv || (z == tv && eq > 0 && (eq--, 1))))
            w->f[p] = z;
    }
}

/* z and f for the batch, and the active lists (w->dense when they do not fit). */
int lp_sae_encode_into(lp_sae_work *w, const lp_sae *s, const float *x, int N, const lp_sae_loss_opts *o,
                       int batch_mode);
int lp_sae_encode_into(lp_sae_work *w, const lp_sae *s, const float *x, int N, const lp_sae_loss_opts *o,
                       int batch_mode)
{
    const lp_sae_config *c = &s->cfg;
    const int di = c->d_in, ds = c->d_sae;
    if (N < 1 || N > w->N_max)
        return lp_set_error("dictionary: a batch of %d tokens (the work holds 1..%d)", N, w->N_max);
    w->N = N;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < di; j++)
            w->xin[(size_t)n * di + j] = x[(size_t)n * di + j] - (c->apply_b_dec_to_input ? s->b_dec->data[j] : 0.0f);
    for (int n = 0; n < N; n++)
        memcpy(w->z + (size_t)n * ds, s->b_enc->data, (size_t)ds * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, ds, di, 1.0f, w->xin, di, s->W_enc->data, ds, 1.0f,
                w->z, ds);
    lp_sae_decoder_norms(w->norms, s);
    int batch = (c->arch == LP_SAE_BATCHTOPK || c->arch == LP_SAE_MATRYOSHKA) && batch_mode;
    if (batch)
        batch_topk(w, N, c->k);
    struct act_ctx a = {w, s, o, batch, 0};
    w->rowptr[0] = 0;
    lp_par_for((size_t)N, 16, act_range, &a);
    for (int n = 0; n < N; n++)
        w->rowptr[n + 1] += w->rowptr[n];
    size_t nnz = (size_t)w->rowptr[N];
    w->dense = nnz > w->cap || (c->arch == LP_SAE_JUMPRELU && o && o->pre_act > 0);
    if (w->dense && (c->arch == LP_SAE_TOPK || (o && o->n_prefix > 0)))
        return lp_set_error("dictionary: %zu active pairs exceed the work's %zu (%s keeps them sparse)", nnz, w->cap,
                            lp_sae_arch_name(c->arch));
    if (!w->dense && c->arch == LP_SAE_TOPK) { /* staged by act_range at n*k: moved down in order */
        for (int n = 1; n < N; n++)
            if (w->rowptr[n] != n * c->k) {
                size_t from = (size_t)n * c->k, cnt = (size_t)(w->rowptr[n + 1] - w->rowptr[n]);
                memmove(w->idx + w->rowptr[n], w->idx + from, cnt * sizeof(int));
                memmove(w->cval + w->rowptr[n], w->cval + from, cnt * sizeof(float));
            }
    } else if (!w->dense) {
        a.lists = 1;
        lp_par_for((size_t)N, 16, act_range, &a);
    }
    return 0;
}

/* ---- decode ---- */

struct dec_ctx {
    const lp_sae_work *w;
    const lp_sae *s;
    float *out;
    int width; /* features i < width only */
};

LP_KERNEL void dec_range_body(void *p, size_t lo, size_t hi)
{
    struct dec_ctx *d = p;
    const int dout = d->s->cfg.d_out;
    const float *W = d->s->W_dec->data;
    for (size_t n = lo; n < hi; n++) {
        float *restrict o = d->out + n * dout;
        memcpy(o, d->s->b_dec->data, (size_t)dout * sizeof(float));
        for (int q = d->w->rowptr[n]; q < d->w->rowptr[n + 1]; q++) {
            float cv = d->w->cval[q];
            if (cv == 0 || d->w->idx[q] >= d->width)
                continue;
            const float *restrict r = W + (size_t)d->w->idx[q] * dout;
            for (int j = 0; j < dout; j++)
                o[j] += cv * r[j];
        }
    }
}
LP_RANGE_VERSIONS(dec_range)

/* out (N,d_out) from the lists (or dense f), features i < width. */
void lp_sae_decode_from(float *out, const lp_sae_work *w, const lp_sae *s, const float *x, int N, int width);
void lp_sae_decode_from(float *out, const lp_sae_work *w, const lp_sae *s, const float *x, int N, int width)
{
    const lp_sae_config *c = &s->cfg;
    if (w->dense) {
        for (int n = 0; n < N; n++)
            memcpy(out + (size_t)n * c->d_out, s->b_dec->data, (size_t)c->d_out * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, c->d_out, width, 1.0f, w->f, c->d_sae,
                    s->W_dec->data, c->d_out, 1.0f, out, c->d_out);
    } else {
        struct dec_ctx d = {w, s, out, width};
        lp_par_for((size_t)N, 16, dec_range, &d);
    }
    if (s->W_skip)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, c->d_out, c->d_in, 1.0f, x, c->d_in,
                    s->W_skip->data, c->d_in, 1.0f, out, c->d_out);
}

int lp_sae_encode(float *z, float *f, const lp_sae *s, const float *x, int N, int batch_mode)
{
    lp_sae_work *w = lp_sae_work_new(&s->cfg, N, 0);
    if (!w || lp_sae_encode_into(w, s, x, N, NULL, batch_mode) < 0) {
        lp_sae_work_free(w);
        return -1;
    }
    if (z)
        memcpy(z, w->z, (size_t)N * s->cfg.d_sae * sizeof(float));
    memcpy(f, w->f, (size_t)N * s->cfg.d_sae * sizeof(float));
    lp_sae_work_free(w);
    return 0;
}

int lp_sae_decode(float *x_hat, const lp_sae *s, const float *f, const float *x, int N)
{
    lp_sae_work *w = lp_sae_work_new(&s->cfg, N, 0);
    if (!w)
        return -1;
    const int ds = s->cfg.d_sae;
    int rs = s->cfg.arch == LP_SAE_TOPK && s->cfg.rescale_acts_by_decoder_norm;
    lp_sae_decoder_norms(w->norms, s);
    size_t q = 0;
    w->rowptr[0] = 0;
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < ds; i++) {
            float v = f[(size_t)n * ds + i];
            if (v == 0)
                continue;
            if (q == w->cap) { /* too many for lists: dense (rescaled into w->f) */
                w->dense = 1;
                break;
            }
            w->idx[q] = i, w->cval[q++] = rs ? (w->norms[i] > 0 ? (float)(v / w->norms[i]) : 0.0f) : v;
        }
        if (w->dense)
            break;
        w->rowptr[n + 1] = (int)q;
    }
    if (w->dense)
        for (size_t p = 0; p < (size_t)N * ds; p++)
            w->f[p] = rs ? (w->norms[p % ds] > 0 ? (float)(f[p] / w->norms[p % ds]) : 0.0f) : f[p];
    lp_sae_decode_from(x_hat, w, s, x, N, ds);
    lp_sae_work_free(w);
    return 0;
}
