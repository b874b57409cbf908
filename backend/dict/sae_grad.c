/* The fast losses and backward of sae_ops.h. Sparse mode: d loss / d z only at the listed
 * pairs (per token, in parallel), then every parameter gradient per feature from the pairs
 * grouped by feature (in parallel, no two threads write one row). Dense mode (a ReLU or
 * JumpReLU SAE with many active features, or a pre-activation loss): sgemms. */
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

enum { T_MSE, T_SST, T_SP, T_PRE, T_AUX, T_PREFIX, T_L0, T_MIN, T_N };

struct loss_ctx {
    lp_sae_work *w;
    const lp_sae *s;
    const float *y;
    const lp_sae_loss_opts *o;
    const double *ybar;
    double *tok; /* (N,T_N) */
    int N;
};

/* A standard SAE's dense row, branch-free, in sixteen float lanes (vectorized; AVX-512 /
 * AVX2 builds through loss_range's) summed in double: L0, the least non-zero feature, sum
 * f * ||W_dec|| (nrm: the norms as floats). */
LP_KERNEL void std_row_losses(double *t, const float *restrict f, const float *restrict nrm, int ds)
{
    float l0[16] = {0}, mn[16], sp[16] = {0};
    int i = 0;
    for (int u = 0; u < 16; u++)
        mn[u] = INFINITY;
    for (; i + 16 <= ds; i += 16)
        for (int u = 0; u < 16; u++) {
            float v = f[i + u];
            l0[u] += v != 0 ? 1.0f : 0.0f;
            mn[u] = v != 0 && v < mn[u] ? v : mn[u];
            sp[u] += v * nrm[i + u];
        }
    double n0 = 0, s = 0;
    float m = INFINITY;
    for (; i < ds; i++) {
        float v = f[i];
        n0 += v != 0, s += (double)v * nrm[i];
        m = v != 0 && v < m ? v : m;
    }
    for (int u = 0; u < 16; u++)
        n0 += l0[u], s += sp[u], m = mn[u] < m ? mn[u] : m;
    t[T_L0] += n0, t[T_SP] += s;
    if (n0 > 0)
        t[T_MIN] = m;
}

LP_KERNEL void loss_range_body(void *p, size_t lo, size_t hi)
{
    struct loss_ctx *L = p;
    lp_sae_work *w = L->w;
    const lp_sae_config *c = &L->s->cfg;
    const lp_sae_loss_opts *o = L->o;
    const int ds = c->d_sae, dout = c->d_out, N = L->N;
    const float *th = L->s->threshold ? L->s->threshold->data : NULL, *W = L->s->W_dec->data;
    const int listf = c->arch == LP_SAE_STANDARD || (c->arch == LP_SAE_TOPK && !c->rescale_acts_by_decoder_norm);
    enum { NRM_MAX = 1 << 14 }; /* a standard dense row's norms as floats, on the stack up to this width */
    const int std_dense = w->dense && c->arch == LP_SAE_STANDARD && ds <= NRM_MAX;
    float nrm_buf[std_dense ? ds : 1], *nrm = std_dense ? nrm_buf : NULL;
    for (int i = 0; std_dense && i < ds; i++)
        nrm_buf[i] = (float)w->norms[i];
    for (size_t n = lo; n < hi; n++) {
        double *t = L->tok + n * T_N;
        int std_done = 0; /* the dense features done by std_row_losses */
        memset(t, 0, T_N * sizeof *t);
        const float *y = L->y + n * dout, *xh = w->x_hat + n * dout, *z = w->z + n * ds, *f = w->f + n * ds;
        for (int d = 0; d < dout; d++) {
            double e = (double)xh[d] - y[d], u = y[d] - L->ybar[d];
            t[T_MSE] += e * e, t[T_SST] += u * u;
        }
        for (int pr = 0; pr < o->n_prefix; pr++) {
            const float *px = w->px + ((size_t)pr * N + n) * dout;
            for (int d = 0; d < dout; d++)
                t[T_PREFIX] += ((double)px[d] - y[d]) * ((double)px[d] - y[d]);
        }
        if (!w->dense) /* the lists hold every non-zero feature: the rest adds nothing */
            for (int q = w->rowptr[n]; q < w->rowptr[n + 1]; q++) {
                int i = w->idx[q];
                float fi = listf ? w->cval[q] : f[i]; /* the list value is f: no look-up in (N,d_sae) */
                if (fi == 0)
                    continue; /* a jumprelu pair in the kernel's band below its threshold */
                t[T_L0] += 1;
                t[T_MIN] = (t[T_MIN] == 0 || fi < t[T_MIN]) ? fi : t[T_MIN];
                if (c->arch == LP_SAE_STANDARD)
                    t[T_SP] += o->sparsity == LP_SPARSITY_TANH ? tanh(o->tanh_c * fi * w->norms[i])
                                                                : (double)fi * w->norms[i];
                else if (c->arch == LP_SAE_JUMPRELU)
                    t[T_SP] += o->sparsity == LP_SPARSITY_TANH ? tanh(o->tanh_c * fi * w->norms[i]) : 1.0;
            }
        if (w->dense && c->arch == LP_SAE_STANDARD && nrm && o->sparsity != LP_SPARSITY_TANH) {
            std_row_losses(t, f, nrm, ds);
            std_done = 1;
        }
        for (int i = 0; w->dense && !std_done && i < ds; i++) {
            if (f[i] != 0) {
                t[T_L0] += 1;
                t[T_MIN] = (t[T_MIN] == 0 || f[i] < t[T_MIN]) ? f[i] : t[T_MIN];
            }
            if (c->arch == LP_SAE_STANDARD)
                t[T_SP] += o->sparsity == LP_SPARSITY_TANH ? tanh(o->tanh_c * f[i] * w->norms[i])
                                                            : (double)f[i] * w->norms[i];
            else if (c->arch == LP_SAE_JUMPRELU) {
                t[T_SP] += o->sparsity == LP_SPARSITY_TANH ? tanh(o->tanh_c * f[i] * w->norms[i]) : (z[i] > th[i]);
                if (o->pre_act > 0 && z[i] < th[i])
                    t[T_PRE] += ((double)th[i] - z[i]) * w->norms[i];
            }
        }
        if (w->ka > 0) { /* AuxK: r = a W_dec - (y - x_hat), aH = d loss / d (a W_dec) */
            int *sel = w->aidx + n * w->ka;
            float *av = w->aval + n * w->ka, *H = w->aH + n * dout;
            lp_sae_aux_select(sel, z, o->dead, ds, w->ka);
            for (int d = 0; d < dout; d++)
                H[d] = xh[d] - y[d];
            for (int q = 0; q < w->ka; q++) {
                av[q] = sel[q] >= 0 ? z[sel[q]] : 0.0f;
                if (sel[q] >= 0)
                    for (int d = 0; d < dout; d++)
                        H[d] += av[q] * W[(size_t)sel[q] * dout + d];
            }
            double k2 = 2.0 * o->aux_alpha * w->aux_scale / N;
            for (int d = 0; d < dout; d++) {
                t[T_AUX] += (double)H[d] * H[d];
                H[d] = (float)(k2 * H[d]);
            }
        }
    }
}
LP_RANGE_VERSIONS(loss_range)

int lp_sae_forward(lp_sae_losses *out, lp_sae_work *w, const lp_sae *s, const float *x, const float *y, int N,
                   const lp_sae_loss_opts *o)
{
    const lp_sae_config *c = &s->cfg;
    y = y ? y : x;
    if (o->n_prefix > 0 && (c->arch != LP_SAE_MATRYOSHKA || o->n_prefix > LP_SAE_MAX_PREFIX))
        return lp_set_error("dictionary: prefix widths are for matryoshka SAEs, at most %d", LP_SAE_MAX_PREFIX);
    for (int p = 0; p < o->n_prefix; p++)
        if (o->prefix[p] < 1 || o->prefix[p] > c->d_sae || (p > 0 && o->prefix[p] <= o->prefix[p - 1]))
            return lp_set_error("dictionary: prefix widths must rise within 1..%d", c->d_sae);
    if (lp_sae_encode_into(w, s, x, N, o, o->batch_mode) < 0)
        return -1;
    lp_sae_decode_from(w->x_hat, w, s, x, N, c->d_sae);
    for (int p = 0; p < o->n_prefix; p++)
        lp_sae_decode_from(w->px + (size_t)p * N * c->d_out, w, s, x, N, o->prefix[p]);
    w->ka = 0, w->n_dead = 0, w->aux_scale = 0;
    if (c->arch == LP_SAE_TOPK && o->aux_alpha > 0 && o->dead && w->k_aux > 0) {
        for (int i = 0; i < c->d_sae; i++)
            w->n_dead += o->dead[i] != 0;
        if (w->n_dead > 0) {
            w->ka = o->k_aux < w->k_aux ? o->k_aux : w->k_aux;
            w->aux_scale = w->n_dead < o->k_aux ? (double)w->n_dead / o->k_aux : 1.0;
        }
    }
    double *tok = lp_malloc((size_t)N * T_N * sizeof(double) + (size_t)c->d_out * sizeof(double), "batch losses");
    if (!tok)
        return -1;
    double *ybar = tok + (size_t)N * T_N;
    memset(ybar, 0, (size_t)c->d_out * sizeof(double));
    for (int n = 0; n < N; n++)
        for (int d = 0; d < c->d_out; d++)
            ybar[d] += y[(size_t)n * c->d_out + d];
    for (int d = 0; d < c->d_out; d++)
        ybar[d] /= N;
    struct loss_ctx L = {w, s, y, o, ybar, tok, N};
    lp_par_for((size_t)N, 16, loss_range, &L);
    double a[T_N] = {0};
    for (int n = 0; n < N; n++)
        for (int k = 0; k < T_N; k++)
            if (k == T_MIN)
                a[k] = (a[k] == 0 || (tok[n * T_N + k] != 0 && tok[n * T_N + k] < a[k])) ? tok[n * T_N + k] : a[k];
            else
                a[k] += tok[(size_t)n * T_N + k];
    free(tok);
    memset(out, 0, sizeof *out);
    out->mse = a[T_MSE] / N, out->sse = a[T_MSE], out->sst = a[T_SST];
    out->sparsity = (c->arch == LP_SAE_STANDARD || c->arch == LP_SAE_JUMPRELU) ? o->l1 * a[T_SP] / N : 0;
    out->pre_act = o->pre_act * a[T_PRE] / N;
    out->aux = o->aux_alpha * w->aux_scale * a[T_AUX] / N;
    out->prefix = a[T_PREFIX] / N;
    out->l0 = a[T_L0] / N;
    out->min_active = (float)a[T_MIN];
    out->total = out->mse + out->sparsity + out->pre_act + out->aux + out->prefix;
    return 0;
}

/* ---- backward ---- */

/* Eight partial sums, so that the products vectorize. */
LP_KERNEL float dot(const float *restrict a, const float *restrict b, int n)
{
    float p[8] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; u++)
            p[u] += a[j + u] * b[j + u];
    float s = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
    for (; j < n; j++)
        s += a[j] * b[j];
    return s;
}

struct bw_ctx {
    lp_sae_work *w;
    const lp_sae *s;
    const lp_sae_loss_opts *o;
    lp_sae_grads *g;
    int N, np;
};

/* G slot of feature i: the cumulative gradient of every reconstruction that uses it. */
static const float *gslot(const struct bw_ctx *b, size_t n, int i)
{
    const int dout = b->s->cfg.d_out;
    int p = 0;
    while (p < b->np && b->o->prefix[p] <= i)
        p++;
    return b->w->G + ((size_t)(p < b->np ? p + 1 : 0) * b->N + n) * dout;
}

/* d loss / d z of a pair from d loss / d c (dc), and its threshold / norm contributions. */
static float pair_dz(const struct bw_ctx *b, int i, float z, float f, float dc, float *dth, float *dnrm)
{
    const lp_sae_config *c = &b->s->cfg;
    const lp_sae_loss_opts *o = b->o;
    double nr = b->w->norms[i], dF = dc;
    *dth = 0, *dnrm = 0;
    if (c->arch == LP_SAE_STANDARD && o->sparsity == LP_SPARSITY_TANH) { /* CLTs' ReLU */
        if (f != 0) {
            double t = tanh(o->tanh_c * f * nr);
            dF += o->l1 / b->N * o->tanh_c * nr * (1 - t * t);
            *dnrm = (float)(o->l1 / b->N * o->tanh_c * f * (1 - t * t));
        }
    } else if (c->arch == LP_SAE_STANDARD) {
        if (f != 0)
            dF += o->l1 * nr / b->N, *dnrm = (float)(o->l1 * f / b->N);
    } else if (c->arch == LP_SAE_JUMPRELU) {
        double th = b->s->threshold->data[i], eps = o->bandwidth, u = (z - th) / eps;
        double kk = u > -0.5 && u < 0.5;
        if (o->sparsity == LP_SPARSITY_TANH) {
            double t = tanh(o->tanh_c * f * nr);
            dF += o->l1 / b->N * o->tanh_c * nr * (1 - t * t);
            *dnrm = (float)(o->l1 / b->N * o->tanh_c * f * (1 - t * t));
        } else
            *dth += (float)(o->l1 / b->N * (-1.0 / eps) * kk);
        *dth += (float)(dF * (-(th / eps)) * kk);
        if (o->pre_act > 0 && z < th) {
            *dth += (float)(o->pre_act * nr / b->N);
            *dnrm += (float)(o->pre_act * (th - z) / b->N);
            return (float)(-o->pre_act * nr / b->N); /* f = 0 here */
        }
    }
    return f != 0 ? (float)dF : 0.0f;
}

LP_KERNEL void pairs_range_body(void *p, size_t lo, size_t hi)
{
    struct bw_ctx *b = p;
    lp_sae_work *w = b->w;
    const int ds = b->s->cfg.d_sae, dout = b->s->cfg.d_out;
    const float *W = b->s->W_dec->data;
    /* standard and topk read only f != 0 (standard: f itself, its list value): no look-up
     * of the (N,d_sae) z and f, a cache miss per pair */
    const int fromlist = b->s->cfg.arch == LP_SAE_STANDARD || b->s->cfg.arch == LP_SAE_TOPK;
    for (size_t n = lo; n < hi; n++) {
        for (int q = w->rowptr[n]; q < w->rowptr[n + 1]; q++) {
            int i = w->idx[q];
            float dc = dot(gslot(b, n, i), W + (size_t)i * dout, dout), dth, dn;
            float zq = fromlist ? 0.0f : w->z[n * ds + i], fq = fromlist ? w->cval[q] : w->f[n * ds + i];
            w->dval[q] = pair_dz(b, i, zq, fq, dc, &dth, &dn);
            w->scratch[q] = dth, w->dz[q] = dn;
        }
        for (int t = 0; t < w->ka; t++) {
            int i = w->aidx[n * w->ka + t];
            w->adz[n * w->ka + t] = i >= 0 ? dot(w->aH + n * dout, W + (size_t)i * dout, dout) : 0.0f;
        }
    }
}
LP_RANGE_VERSIONS(pairs_range)

LP_KERNEL void features_range_body(void *p, size_t lo, size_t hi)
{
    struct bw_ctx *b = p;
    lp_sae_work *w = b->w;
    const lp_sae_config *c = &b->s->cfg;
    const int di = c->d_in, dout = c->d_out;
    const float *W = b->s->W_dec->data;
    for (size_t i = lo; i < hi; i++) {
        float *dwd = b->g->W_dec + i * dout, *dwe = w->dWencT + i * di;
        memset(dwe, 0, (size_t)di * sizeof *dwe);
        double dzs = 0, dth = 0, dn = 0;
        for (int e = w->colptr[i]; e < w->colptr[i + 1]; e++) {
            int q = w->colpos[e];
            size_t n = (size_t)w->ptok[e];
            float dz, cv;
            const float *G;
            if (q >= 0)
                dz = w->dval[q], cv = w->cval[q], G = gslot(b, n, (int)i), dth += w->scratch[q], dn += w->dz[q];
            else
                q = -1 - q, dz = w->adz[q], cv = w->aval[q], G = w->aH + n * dout;
            if (cv != 0)
                for (int d = 0; d < dout; d++)
                    dwd[d] += cv * G[d];
            if (dz != 0) {
                const float *xi = w->xin + n * di;
                for (int j = 0; j < di; j++)
                    dwe[j] += dz * xi[j];
            }
            dzs += dz;
        }
        b->g->b_enc[i] += (float)dzs;
        w->dzsum[i] = dzs;
        if (b->g->threshold)
            b->g->threshold[i] += (float)dth;
        if (dn != 0 && w->norms[i] > 0)
            for (int d = 0; d < dout; d++)
                dwd[d] += (float)(dn * W[i * dout + d] / w->norms[i]);
    }
}
LP_RANGE_VERSIONS(features_range)

struct tr_ctx {
    float *dW;
    const float *T;
    int di, ds;
};

/* In tiles of 256 features: the lines of T a tile reads serve the next rows j too. */
HOT static void transpose_add_range(void *p, size_t lo, size_t hi)
{
    struct tr_ctx *t = p;
    for (int i0 = 0; i0 < t->ds; i0 += 256) {
        int i1 = t->ds - i0 < 256 ? t->ds : i0 + 256;
        for (size_t j = lo; j < hi; j++)
            for (int i = i0; i < i1; i++)
                t->dW[j * t->ds + i] += t->T[(size_t)i * t->di + j];
    }
}

/* Dense mode: w->dz holds d loss / d c (N,d_sae); turn it into d loss / d z. A range is a
 * block of features, walked token by token (rows stay contiguous). */
LP_KERNEL void dense_range_body(void *p, size_t lo, size_t hi)
{
    struct bw_ctx *b = p;
    lp_sae_work *w = b->w;
    const int ds = b->s->cfg.d_sae, dout = b->s->cfg.d_out;
    const float *W = b->s->W_dec->data;
    for (size_t i = lo; i < hi; i++)
        w->dzsum[i] = w->dnorm[i] = w->fsum[i] = 0; /* fsum: the threshold's gradient */
    if (b->s->cfg.arch == LP_SAE_STANDARD && b->o->sparsity != LP_SPARSITY_TANH) { /* pair_dz's L1 case, branch-free, in float */
        enum { FB = 512, TB = 64 };           /* features per block; tokens per float partial sum */
        const double a = (double)b->o->l1 / b->N;
        for (size_t i0 = lo; i0 < hi; i0 += FB) {
            const int nb = (int)(hi - i0 < FB ? hi - i0 : FB);
            float coef[FB], sdz[FB], sf[FB];
            for (int i = 0; i < nb; i++)
                coef[i] = (float)(a * w->norms[i0 + i]);
            for (int n0 = 0; n0 < b->N; n0 += TB) {
                memset(sdz, 0, sizeof sdz), memset(sf, 0, sizeof sf);
                for (int n = n0; n < b->N && n < n0 + TB; n++) {
                    float *restrict dz = w->dz + (size_t)n * ds + i0;
                    const float *restrict f = w->f + (size_t)n * ds + i0;
                    for (int i = 0; i < nb; i++) {
                        float fi = f[i], d = fi != 0 ? dz[i] + coef[i] : 0.0f;
                        dz[i] = d, sdz[i] += d, sf[i] += fi;
                    }
                }
                for (int i = 0; i < nb; i++)
                    w->dzsum[i0 + i] += sdz[i], w->dnorm[i0 + i] += sf[i];
            }
        }
        for (size_t i = lo; i < hi; i++)
            w->dnorm[i] *= a;
    } else {
        for (int n = 0; n < b->N; n++)
            for (size_t i = lo; i < hi; i++) {
                size_t q = (size_t)n * ds + i;
                float t1, t2;
                w->dz[q] = pair_dz(b, (int)i, w->z[q], w->f[q], w->dz[q], &t1, &t2);
                w->fsum[i] += t1, w->dnorm[i] += t2, w->dzsum[i] += w->dz[q];
            }
    }
    for (size_t i = lo; i < hi; i++) {
        b->g->b_enc[i] += (float)w->dzsum[i];
        if (b->g->threshold)
            b->g->threshold[i] += (float)w->fsum[i];
        double dn = w->dnorm[i];
        if (dn != 0 && w->norms[i] > 0)
            for (int d = 0; d < dout; d++)
                b->g->W_dec[i * dout + d] += (float)(dn * W[i * dout + d] / w->norms[i]);
    }
}
LP_RANGE_VERSIONS(dense_range)

int lp_sae_backward(lp_sae_grads *g, lp_sae_work *w, const lp_sae *s, const float *x, const float *y, int N,
                    const lp_sae_loss_opts *o)
{
    const lp_sae_config *c = &s->cfg;
    const int di = c->d_in, ds = c->d_sae, dout = c->d_out, np = o->n_prefix;
    y = y ? y : x;
    if (N != w->N)
        return lp_set_error("dictionary: backward of %d tokens after a forward of %d", N, w->N);
    size_t ND = (size_t)N * dout;
    if (o->dxhat) { /* the caller's d loss / d x_hat (a CLT's sum over layers); may be w->G itself */
        if (o->dxhat != w->G)
            memcpy(w->G, o->dxhat, ND * sizeof(float));
    } else
        for (size_t p = 0; p < ND; p++)
            w->G[p] = 2.0f / N * (w->x_hat[p] - y[p]);
    for (int p = np - 1; p >= 0; p--) { /* cumulative: slot p+1 = G_full + sum_{q >= p} G_q */
        float *Gp = w->G + (size_t)(p + 1) * ND;
        const float *px = w->px + (size_t)p * ND, *prev = w->G + (size_t)(p + 2 <= np ? p + 2 : 0) * ND;
        for (size_t q = 0; q < ND; q++)
            Gp[q] = 2.0f / N * (px[q] - y[q]) + prev[q];
    }
    const float *Gtot = w->G + (size_t)(np > 0 ? 1 : 0) * ND;
    for (int n = 0; n < N; n++)
        for (int d = 0; d < dout; d++)
            g->b_dec[d] += Gtot[(size_t)n * dout + d];
    struct bw_ctx b = {w, s, o, g, N, np};
    if (w->dense) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, ds, dout, 1.0f, w->G, dout, s->W_dec->data, dout,
                    0.0f, w->dz, ds);
        lp_par_for((size_t)ds, 64, dense_range, &b);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, di, ds, N, 1.0f, w->xin, di, w->dz, ds, 1.0f, g->W_enc,
                    ds);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ds, dout, N, 1.0f, w->f, ds, w->G, dout, 1.0f, g->W_dec,
                    dout);
    } else {
        lp_par_for((size_t)N, 16, pairs_range, &b);
        /* group the pairs by feature */
        memset(w->colptr, 0, ((size_t)ds + 1) * sizeof(int));
        size_t nnz = (size_t)w->rowptr[N], na = (size_t)N * w->ka;
        for (size_t q = 0; q < nnz; q++)
            w->colptr[w->idx[q] + 1]++;
        for (size_t q = 0; q < na; q++)
            if (w->aidx[q] >= 0)
                w->colptr[w->aidx[q] + 1]++;
        for (int i = 0; i < ds; i++)
            w->colptr[i + 1] += w->colptr[i];
        int *fill = lp_malloc((size_t)ds * sizeof(int), "feature lists");
        if (!fill)
            return -1;
        memcpy(fill, w->colptr, (size_t)ds * sizeof(int));
        for (int n = 0; n < N; n++) {
            for (int q = w->rowptr[n]; q < w->rowptr[n + 1]; q++) {
                int e = fill[w->idx[q]]++;
                w->colpos[e] = q, w->ptok[e] = n;
            }
            for (int t = 0; t < w->ka; t++) {
                int q = n * w->ka + t, i = w->aidx[q];
                if (i >= 0) {
                    int e = fill[i]++;
                    w->colpos[e] = -1 - q, w->ptok[e] = n;
                }
            }
        }
        free(fill);
        lp_par_for((size_t)ds, 16, features_range, &b);
        struct tr_ctx t = {g->W_enc, w->dWencT, di, ds};
        lp_par_for((size_t)di, 8, transpose_add_range, &t);
    }
    if (c->apply_b_dec_to_input)
        for (int j = 0; j < di; j++) {
            double a = 0;
            const float *r = s->W_enc->data + (size_t)j * ds;
            for (int i = 0; i < ds; i++)
                a += r[i] * w->dzsum[i];
            g->b_dec[j] -= (float)a;
        }
    if (g->W_skip)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dout, di, N, 1.0f, Gtot, dout, x, di, 1.0f, g->W_skip, di);
    return 0;
}
