/* The naive reference of clt_ops.h: every (layer, token, feature) and every decoder entry in
 * plain loops with double accumulation, the backward recomputing the forward. The test
 * oracle of the fast path; its own backward is tested against finite differences. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "dict/clt_ops.h"

typedef struct cref {
    int L, d, T, N;
    double *z, *f, *yh, *nrm; /* (L,N,T) (L,N,T) (L,N,d) (L,T) */
} cref;

static void cref_free(cref *r) { free(r->z), free(r->f), free(r->yh), free(r->nrm); }

/* W_dec[l] entry (feature i, output layer l2 >= l, dimension j) */
static double wdec(const lp_clt *c, int l, int i, int l2, int j)
{
    return c->W_dec[l]->data[((size_t)i * (c->n_layers - l) + (l2 - l)) * c->d_model + j];
}

static int cref_forward(cref *r, const lp_clt *c, const float *x, int N)
{
    const int L = c->n_layers, d = c->d_model, T = c->d_tc;
    r->L = L, r->d = d, r->T = T, r->N = N;
    r->z = calloc((size_t)L * N * T, sizeof(double)), r->f = calloc((size_t)L * N * T, sizeof(double));
    r->yh = calloc((size_t)L * N * d, sizeof(double)), r->nrm = calloc((size_t)L * T, sizeof(double));
    if (!r->z || !r->f || !r->yh || !r->nrm) {
        cref_free(r);
        return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate the CLT reference");
    }
    for (int l = 0; l < L; l++)
        for (int i = 0; i < T; i++) {
            double a = 0;
            for (int l2 = l; l2 < L; l2++)
                for (int j = 0; j < d; j++)
                    a += wdec(c, l, i, l2, j) * wdec(c, l, i, l2, j);
            r->nrm[(size_t)l * T + i] = sqrt(a);
        }
    for (int l = 0; l < L; l++)
        for (int n = 0; n < N; n++)
            for (int i = 0; i < T; i++) {
                double z = c->b_enc[l]->data[i];
                for (int j = 0; j < d; j++)
                    z += (double)x[((size_t)l * N + n) * d + j] * c->W_enc[l]->data[(size_t)j * T + i];
                double th = c->threshold ? c->threshold[l]->data[i] : 0.0;
                size_t p = ((size_t)l * N + n) * T + i;
                r->z[p] = z, r->f[p] = z > th ? z : 0.0;
            }
    for (int l2 = 0; l2 < L; l2++)
        for (int n = 0; n < N; n++)
            for (int j = 0; j < d; j++) {
                double a = c->b_dec[l2]->data[j];
                for (int l = 0; l <= l2; l++)
                    for (int i = 0; i < T; i++)
                        a += r->f[((size_t)l * N + n) * T + i] * wdec(c, l, i, l2, j);
                r->yh[((size_t)l2 * N + n) * d + j] = a;
            }
    return 0;
}

static double K(double u) { return u > -0.5 && u < 0.5 ? 1.0 : 0.0; }

/* Losses, and with g the gradients, from r. */
static void cref_losses(lp_clt_losses *out, lp_clt_grads *g, const cref *r, const lp_clt *c, const float *x,
                        const float *y, const lp_sae_loss_opts *o)
{
    const int L = r->L, d = r->d, T = r->T, N = r->N, jump = c->threshold != NULL;
    lp_clt_losses Lo = {0};
    double *G = calloc((size_t)L * N * d, sizeof(double)), *dnrm = calloc((size_t)L * T, sizeof(double));
    for (int l2 = 0; l2 < L; l2++)
        for (int j = 0; j < d; j++) {
            double m = 0;
            for (int n = 0; n < N; n++)
                m += y[((size_t)l2 * N + n) * d + j] / (double)N;
            for (int n = 0; n < N; n++) {
                size_t p = ((size_t)l2 * N + n) * d + j;
                double e = r->yh[p] - y[p];
                Lo.mse += e * e / N, Lo.sse += e * e, Lo.sst += (y[p] - m) * (y[p] - m);
                G[p] = 2.0 * e / N;
                if (g)
                    g->b_dec[l2][j] += (float)G[p];
            }
        }
    for (int l = 0; l < L; l++)
        for (int n = 0; n < N; n++)
            for (int i = 0; i < T; i++) {
                size_t p = ((size_t)l * N + n) * T + i;
                double z = r->z[p], f = r->f[p], nr = r->nrm[(size_t)l * T + i], dc = 0;
                double th = jump ? c->threshold[l]->data[i] : 0.0;
                for (int l2 = l; l2 < L; l2++)
                    for (int j = 0; j < d; j++) {
                        double Gj = G[((size_t)l2 * N + n) * d + j];
                        dc += Gj * wdec(c, l, i, l2, j);
                        if (g)
                            g->W_dec[l][((size_t)i * (L - l) + (l2 - l)) * d + j] += (float)(f * Gj);
                    }
                if (f != 0)
                    Lo.l0 += 1.0 / N / L;
                double dF = dc, dz = 0, eps = o->bandwidth;
                if (o->sparsity == LP_SPARSITY_TANH) {
                    double t = tanh(o->tanh_c * f * nr);
                    Lo.sparsity += o->l1 * t / N;
                    if (jump || f != 0)
                        dF += o->l1 / N * o->tanh_c * nr * (1 - t * t);
                    dnrm[(size_t)l * T + i] += o->l1 / N * o->tanh_c * f * (1 - t * t);
                } else if (jump) {
                    Lo.sparsity += o->l1 * (z > th) / N;
                    if (g)
                        g->threshold[l][i] += (float)(o->l1 / N * (-1.0 / eps) * K((z - th) / eps));
                } else {
                    Lo.sparsity += o->l1 * f * nr / N;
                    dF += f != 0 ? o->l1 * nr / N : 0;
                    dnrm[(size_t)l * T + i] += o->l1 * f / N;
                }
                if (jump && g)
                    g->threshold[l][i] += (float)(dF * (-(th / eps)) * K((z - th) / eps));
                if (jump && o->pre_act > 0 && z < th) {
                    Lo.pre_act += o->pre_act * (th - z) * nr / N;
                    dz -= o->pre_act * nr / N;
                    if (g)
                        g->threshold[l][i] += (float)(o->pre_act * nr / N);
                    dnrm[(size_t)l * T + i] += o->pre_act * (th - z) / N;
                }
                dz += f != 0 ? dF : 0;
                if (g) {
                    g->b_enc[l][i] += (float)dz;
                    for (int j = 0; j < d; j++)
                        g->W_enc[l][(size_t)j * T + i] += (float)(dz * x[((size_t)l * N + n) * d + j]);
                }
            }
    for (int l = 0; g && l < L; l++) /* through the concatenated norm */
        for (int i = 0; i < T; i++) {
            double nr = r->nrm[(size_t)l * T + i], dn = dnrm[(size_t)l * T + i];
            if (dn != 0 && nr > 0)
                for (int l2 = l; l2 < L; l2++)
                    for (int j = 0; j < d; j++)
                        g->W_dec[l][((size_t)i * (L - l) + (l2 - l)) * d + j] += (float)(dn * wdec(c, l, i, l2, j) / nr);
        }
    Lo.total = Lo.mse + Lo.sparsity + Lo.pre_act;
    if (out)
        *out = Lo;
    free(G), free(dnrm);
}

int lp_clt_forward_ref(lp_clt_losses *out, float *f, float *y_hat, const lp_clt *c, const float *x, const float *y,
                       int N, const lp_sae_loss_opts *o)
{
    cref r = {0};
    if (cref_forward(&r, c, x, N) < 0)
        return -1;
    for (size_t p = 0; f && p < (size_t)r.L * N * r.T; p++)
        f[p] = (float)r.f[p];
    for (size_t p = 0; y_hat && p < (size_t)r.L * N * r.d; p++)
        y_hat[p] = (float)r.yh[p];
    if (o && out)
        cref_losses(out, NULL, &r, c, x, y, o);
    cref_free(&r);
    return 0;
}

int lp_clt_backward_ref(lp_clt_grads *g, const lp_clt *c, const float *x, const float *y, int N,
                        const lp_sae_loss_opts *o)
{
    cref r = {0};
    if (cref_forward(&r, c, x, N) < 0)
        return -1;
    cref_losses(NULL, g, &r, c, x, y, o);
    cref_free(&r);
    return 0;
}
