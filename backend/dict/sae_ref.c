/* The naive reference of sae_ops.h: every pair (token, feature) in plain loops, double
 * accumulation, the backward recomputing the forward. The test oracle of the fast path;
 * its own backward is tested against finite differences. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "dict/sae_work.h"

typedef struct ref_state {
    int N, di, ds, dout, np;
    double *xin, *z, *f, *c, *act, *xh, *px, *nrm; /* act: 1 where f is active (d f / d z = 1) */
    int *aidx;                                     /* (N,k_aux) or NULL */
    int ka;
    double aux_scale;
} ref_state;

static void ref_free(ref_state *r)
{
    free(r->xin), free(r->z), free(r->f), free(r->c), free(r->act), free(r->xh), free(r->px), free(r->nrm);
    free(r->aidx);
}

static int is_k(lp_sae_arch a) { return a == LP_SAE_TOPK || a == LP_SAE_BATCHTOPK || a == LP_SAE_MATRYOSHKA; }

/* a better than b: larger value, then lower index */
static int better(double va, int ia, double vb, int ib) { return va > vb || (va == vb && ia < ib); }

/* z, f, act, c for every pair; batch_mode for batchtopk. */
static void ref_activate(ref_state *r, const lp_sae *s, int batch_mode)
{
    const lp_sae_config *c = &s->cfg;
    int N = r->N, ds = r->ds;
    size_t NS = (size_t)N * ds;
    for (size_t p = 0; p < NS; p++)
        r->f[p] = r->act[p] = r->c[p] = 0;
    int batch = (c->arch == LP_SAE_BATCHTOPK || c->arch == LP_SAE_MATRYOSHKA) && batch_mode;
    if (c->arch == LP_SAE_STANDARD) {
        for (size_t p = 0; p < NS; p++)
            if (r->z[p] > 0)
                r->f[p] = r->z[p], r->act[p] = 1;
    } else if (c->arch == LP_SAE_JUMPRELU || (is_k(c->arch) && c->arch != LP_SAE_TOPK && !batch)) {
        for (size_t p = 0; p < NS; p++)
            if (r->z[p] > s->threshold->data[p % ds])
                r->f[p] = r->z[p], r->act[p] = 1;
    } else if (c->arch == LP_SAE_TOPK) {
        int rs = c->rescale_acts_by_decoder_norm;
        for (int n = 0; n < N; n++)
            for (int t = 0; t < c->k; t++) { /* k times the best not yet taken */
                int bi = -1;
                double bv = 0;
                for (int i = 0; i < ds; i++) {
                    double v = r->z[(size_t)n * ds + i] * (rs ? r->nrm[i] : 1.0);
                    if (r->act[(size_t)n * ds + i] < 0 || isnan(v))
                        continue;
                    if (bi < 0 || better(v, i, bv, bi))
                        bi = i, bv = v;
                }
                if (bi < 0)
                    break;
                size_t p = (size_t)n * ds + bi;
                r->act[p] = -1; /* taken */
                if (bv > 0)
                    r->f[p] = bv;
            }
        for (size_t p = 0; p < NS; p++)
            r->act[p] = r->f[p] > 0;
    } else { /* batch top k*N of ReLU(z) */
        long want = (long)c->k * N;
        for (long t = 0; t < want; t++) {
            long bp = -1;
            double bv = 0;
            for (size_t p = 0; p < NS; p++)
                if (!r->act[p] && r->z[p] > 0 && (bp < 0 || r->z[p] > bv))
                    bp = (long)p, bv = r->z[p]; /* ties: the lower flat index */
            if (bp < 0)
                break;
            r->act[bp] = 1, r->f[bp] = bv;
        }
    }
    for (size_t p = 0; p < NS; p++)
        r->c[p] = r->act[p] ? (c->arch == LP_SAE_TOPK && c->rescale_acts_by_decoder_norm ? r->z[p] : r->f[p]) : 0;
}

/* Reconstruction from the features i < w (w = d_sae: all) into out (N,d_out). */
static void ref_recon(double *out, const ref_state *r, const lp_sae *s, const float *x, int w)
{
    for (int n = 0; n < r->N; n++)
        for (int o = 0; o < r->dout; o++) {
            double a = s->b_dec->data[o];
            for (int i = 0; i < w; i++)
                a += r->c[(size_t)n * r->ds + i] * s->W_dec->data[(size_t)i * r->dout + o];
            if (s->W_skip)
                for (int j = 0; j < r->di; j++)
                    a += (double)x[(size_t)n * r->di + j] * s->W_skip->data[(size_t)o * r->di + j];
            out[(size_t)n * r->dout + o] = a;
        }
}

static int ref_run(ref_state *r, const lp_sae *s, const float *x, int N, const lp_sae_loss_opts *o, int batch_mode)
{
    const lp_sae_config *c = &s->cfg;
    memset(r, 0, sizeof *r);
    r->N = N, r->di = c->d_in, r->ds = c->d_sae, r->dout = c->d_out, r->np = o ? o->n_prefix : 0;
    size_t NS = (size_t)N * c->d_sae;
    r->xin = lp_malloc((size_t)N * c->d_in * sizeof(double), "reference input");
    r->z = lp_malloc(NS * sizeof(double), "reference z");
    r->f = lp_malloc(NS * sizeof(double), "reference f");
    r->c = lp_malloc(NS * sizeof(double), "reference c");
    r->act = lp_malloc(NS * sizeof(double), "reference mask");
    r->xh = lp_malloc((size_t)N * c->d_out * sizeof(double), "reference x_hat");
    r->px = lp_malloc(((size_t)r->np * N * c->d_out + 1) * sizeof(double), "reference prefixes");
    r->nrm = lp_malloc((size_t)c->d_sae * sizeof(double), "reference norms");
    if (!r->xin || !r->z || !r->f || !r->c || !r->act || !r->xh || !r->px || !r->nrm) {
        ref_free(r);
        return -1;
    }
    lp_sae_decoder_norms(r->nrm, s);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < c->d_in; j++)
            r->xin[(size_t)n * c->d_in + j] =
                (double)x[(size_t)n * c->d_in + j] - (c->apply_b_dec_to_input ? s->b_dec->data[j] : 0.0f);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < c->d_sae; i++) {
            double a = s->b_enc->data[i];
            for (int j = 0; j < c->d_in; j++)
                a += r->xin[(size_t)n * c->d_in + j] * s->W_enc->data[(size_t)j * c->d_sae + i];
            r->z[(size_t)n * c->d_sae + i] = a;
        }
    ref_activate(r, s, batch_mode);
    ref_recon(r->xh, r, s, x, c->d_sae);
    for (int p = 0; p < r->np; p++)
        ref_recon(r->px + (size_t)p * N * c->d_out, r, s, x, o->prefix[p]);
    if (o && c->arch == LP_SAE_TOPK && o->aux_alpha > 0 && o->dead && o->k_aux > 0) {
        int nd = 0;
        for (int i = 0; i < c->d_sae; i++)
            nd += o->dead[i] != 0;
        if (nd > 0) {
            r->ka = o->k_aux;
            r->aux_scale = nd < o->k_aux ? (double)nd / o->k_aux : 1.0;
            if (!(r->aidx = lp_malloc((size_t)N * r->ka * sizeof(int), "reference AuxK"))) {
                ref_free(r);
                return -1;
            }
            for (int n = 0; n < N; n++) {
                int *sel = r->aidx + (size_t)n * r->ka;
                for (int t = 0; t < r->ka; t++) {
                    int bi = -1;
                    for (int i = 0; i < c->d_sae; i++) {
                        int taken = 0;
                        for (int u = 0; u < t; u++)
                            taken |= sel[u] == i;
                        double v = r->z[(size_t)n * c->d_sae + i];
                        if (o->dead[i] && !taken && !isnan(v) && (bi < 0 || better(v, i, r->z[(size_t)n * c->d_sae + bi], bi)))
                            bi = i;
                    }
                    sel[t] = bi;
                }
            }
        }
    }
    return 0;
}

static double K(double u) { return u > -0.5 && u < 0.5 ? 1.0 : 0.0; }

/* Losses from r; with g, the gradients too. */
static void ref_losses(lp_sae_losses *L, lp_sae_grads *g, const ref_state *r, const lp_sae *s, const float *x,
                       const float *y, const lp_sae_loss_opts *o)
{
    const lp_sae_config *c = &s->cfg;
    int N = r->N, ds = r->ds, dout = r->dout, di = r->di;
    const float *W = s->W_dec->data;
    const float *th = s->threshold ? s->threshold->data : NULL;
    memset(L, 0, sizeof *L);
    double *G = calloc((size_t)(r->np + 1) * dout, sizeof(double)); /* one token's gradients of each reconstruction */
    double *dnrm = calloc((size_t)ds, sizeof(double));
    double *dz = calloc((size_t)ds, sizeof(double));
    double *e = calloc((size_t)dout, sizeof(double));
    double *ybar = calloc((size_t)dout, sizeof(double));
    for (int n = 0; n < N; n++)
        for (int d = 0; d < dout; d++)
            ybar[d] += y[(size_t)n * dout + d] / (double)N;
    double minf = 0;
    for (int n = 0; n < N; n++) {
        const double *zn = r->z + (size_t)n * ds, *fn = r->f + (size_t)n * ds, *cn = r->c + (size_t)n * ds;
        const double *an = r->act + (size_t)n * ds;
        const float *yn = y + (size_t)n * dout;
        for (int d = 0; d < dout; d++) {
            double diff = r->xh[(size_t)n * dout + d] - yn[d];
            L->mse += diff * diff / N, L->sse += diff * diff;
            L->sst += (yn[d] - ybar[d]) * (yn[d] - ybar[d]);
            G[d] = 2.0 * diff / N;
            e[d] = -diff; /* y - x_hat */
        }
        for (int p = 0; p < r->np; p++)
            for (int d = 0; d < dout; d++) {
                double diff = r->px[((size_t)p * N + n) * dout + d] - yn[d];
                L->prefix += diff * diff / N;
                G[(size_t)(p + 1) * dout + d] = 2.0 * diff / N;
            }
        for (int i = 0; i < ds; i++) {
            if (fn[i] != 0)
                L->l0 += 1.0 / N, minf = (minf == 0 || fn[i] < minf) ? fn[i] : minf;
            dz[i] = 0;
            /* d loss / d c_i through every reconstruction that uses feature i */
            double dc = 0, cw = cn[i];
            for (int p = -1; p < r->np; p++) {
                if (p >= 0 && o->prefix[p] <= i)
                    continue;
                const double *Gp = G + (size_t)(p + 1) * dout;
                for (int d = 0; d < dout; d++) {
                    dc += Gp[d] * W[(size_t)i * dout + d];
                    if (g)
                        g->W_dec[(size_t)i * dout + d] += (float)(cw * Gp[d]);
                }
            }
            double dF = dc;
            if (c->arch == LP_SAE_STANDARD && o->sparsity == LP_SPARSITY_TANH) { /* CLTs' ReLU */
                double t = tanh(o->tanh_c * fn[i] * r->nrm[i]);
                L->sparsity += o->l1 * t / N;
                dF += an[i] ? o->l1 / N * o->tanh_c * r->nrm[i] * (1 - t * t) : 0;
                dnrm[i] += o->l1 / N * o->tanh_c * fn[i] * (1 - t * t);
            } else if (c->arch == LP_SAE_STANDARD) {
                L->sparsity += o->l1 * fn[i] * r->nrm[i] / N;
                dF += an[i] ? o->l1 * r->nrm[i] / N : 0;
                dnrm[i] += o->l1 * fn[i] / N;
            }
            if (c->arch == LP_SAE_JUMPRELU) {
                double eps = o->bandwidth, kk = K((zn[i] - th[i]) / eps);
                if (o->sparsity == LP_SPARSITY_TANH) {
                    double t = tanh(o->tanh_c * fn[i] * r->nrm[i]);
                    L->sparsity += o->l1 * t / N;
                    dF += o->l1 / N * o->tanh_c * r->nrm[i] * (1 - t * t);
                    dnrm[i] += o->l1 / N * o->tanh_c * fn[i] * (1 - t * t);
                } else {
                    L->sparsity += o->l1 * (zn[i] > th[i]) / N;
                    if (g)
                        g->threshold[i] += (float)(o->l1 / N * (-1.0 / eps) * kk);
                }
                if (g)
                    g->threshold[i] += (float)(dF * (-(th[i] / eps)) * kk);
                if (o->pre_act > 0 && zn[i] < th[i]) {
                    L->pre_act += o->pre_act * (th[i] - zn[i]) * r->nrm[i] / N;
                    dz[i] -= o->pre_act * r->nrm[i] / N;
                    if (g)
                        g->threshold[i] += (float)(o->pre_act * r->nrm[i] / N);
                    dnrm[i] += o->pre_act * (th[i] - zn[i]) / N;
                }
            }
            dz[i] += an[i] ? dF : 0;
        }
        if (r->aidx) { /* AuxK: e = y - x_hat held constant */
            const int *sel = r->aidx + (size_t)n * r->ka;
            double *H = G; /* reuse: the aux residual's gradient */
            for (int d = 0; d < dout; d++) {
                double a = -e[d];
                for (int t = 0; t < r->ka; t++)
                    if (sel[t] >= 0)
                        a += zn[sel[t]] * W[(size_t)sel[t] * dout + d];
                L->aux += o->aux_alpha * r->aux_scale * a * a / N;
                H[d] = 2.0 * o->aux_alpha * r->aux_scale * a / N;
            }
            for (int t = 0; t < r->ka; t++) {
                int i = sel[t];
                if (i < 0)
                    continue;
                for (int d = 0; d < dout; d++) {
                    dz[i] += H[d] * W[(size_t)i * dout + d];
                    if (g)
                        g->W_dec[(size_t)i * dout + d] += (float)(zn[i] * H[d]);
                }
            }
            /* restore the reconstruction gradients for b_dec below */
            for (int d = 0; d < dout; d++)
                G[d] = -2.0 * e[d] / N;
        }
        if (!g)
            continue;
        for (int d = 0; d < dout; d++) {
            double a = 0;
            for (int p = -1; p < r->np; p++)
                a += G[(size_t)(p + 1) * dout + d];
            g->b_dec[d] += (float)a;
            if (g->W_skip)
                for (int j = 0; j < di; j++)
                    g->W_skip[(size_t)d * di + j] += (float)(a * x[(size_t)n * di + j]);
        }
        for (int i = 0; i < ds; i++) {
            g->b_enc[i] += (float)dz[i];
            for (int j = 0; j < di; j++) {
                g->W_enc[(size_t)j * ds + i] += (float)(r->xin[(size_t)n * di + j] * dz[i]);
                if (c->apply_b_dec_to_input)
                    g->b_dec[j] -= (float)(dz[i] * s->W_enc->data[(size_t)j * ds + i]);
            }
        }
    }
    if (g)
        for (int i = 0; i < ds; i++)
            if (r->nrm[i] > 0)
                for (int d = 0; d < dout; d++)
                    g->W_dec[(size_t)i * dout + d] += (float)(dnrm[i] * W[(size_t)i * dout + d] / r->nrm[i]);
    L->min_active = (float)minf;
    L->total = L->mse + L->sparsity + L->pre_act + L->aux + L->prefix;
    free(G), free(dnrm), free(dz), free(e), free(ybar);
}

static void ref_store(lp_sae_work *w, const ref_state *r)
{
    size_t NS = (size_t)r->N * r->ds, ND = (size_t)r->N * r->dout;
    for (size_t p = 0; p < NS; p++)
        w->z[p] = (float)r->z[p], w->f[p] = (float)r->f[p];
    for (size_t p = 0; p < ND; p++)
        w->x_hat[p] = (float)r->xh[p];
    w->N = r->N;
}

int lp_sae_forward_ref(lp_sae_losses *out, lp_sae_work *w, const lp_sae *s, const float *x, const float *y, int N,
                       const lp_sae_loss_opts *o)
{
    if (N < 1 || N > w->N_max)
        return lp_set_error("dictionary: a batch of %d tokens (the work holds 1..%d)", N, w->N_max);
    ref_state r;
    if (ref_run(&r, s, x, N, o, o->batch_mode) < 0)
        return -1;
    ref_losses(out, NULL, &r, s, x, y ? y : x, o);
    ref_store(w, &r);
    ref_free(&r);
    return 0;
}

int lp_sae_backward_ref(lp_sae_grads *g, lp_sae_work *w, const lp_sae *s, const float *x, const float *y, int N,
                        const lp_sae_loss_opts *o)
{
    (void)w;
    ref_state r;
    lp_sae_losses L;
    if (ref_run(&r, s, x, N, o, o->batch_mode) < 0)
        return -1;
    ref_losses(&L, g, &r, s, x, y ? y : x, o);
    ref_free(&r);
    return 0;
}

int lp_sae_encode_ref(float *z, float *f, const lp_sae *s, const float *x, int N, int batch_mode)
{
    ref_state r;
    if (ref_run(&r, s, x, N, NULL, batch_mode) < 0)
        return -1;
    for (size_t p = 0; p < (size_t)N * s->cfg.d_sae; p++) {
        if (z)
            z[p] = (float)r.z[p];
        f[p] = (float)r.f[p];
    }
    ref_free(&r);
    return 0;
}

int lp_sae_decode_ref(float *x_hat, const lp_sae *s, const float *f, const float *x, int N)
{
    const lp_sae_config *c = &s->cfg;
    double *nrm = lp_malloc((size_t)c->d_sae * sizeof(double), "reference norms");
    if (!nrm)
        return -1;
    lp_sae_decoder_norms(nrm, s);
    int rs = c->arch == LP_SAE_TOPK && c->rescale_acts_by_decoder_norm;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < c->d_out; o++) {
            double a = s->b_dec->data[o];
            for (int i = 0; i < c->d_sae; i++) {
                double fi = f[(size_t)n * c->d_sae + i];
                if (rs)
                    fi = nrm[i] > 0 ? fi / nrm[i] : 0;
                a += fi * s->W_dec->data[(size_t)i * c->d_out + o];
            }
            if (s->W_skip)
                for (int j = 0; j < c->d_in; j++)
                    a += (double)x[(size_t)n * c->d_in + j] * s->W_skip->data[(size_t)o * c->d_in + j];
            x_hat[(size_t)n * c->d_out + o] = (float)a;
        }
    free(nrm);
    return 0;
}
