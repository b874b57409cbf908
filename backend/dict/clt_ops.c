/* The fast CLT forward and backward of clt_ops.h: each layer's encoder with its decoders into
 * layers l..L-1 is a transcoder of the SAE core (a "view" borrowing the CLT's tensors, with a
 * zero b_dec), so the sparse lists, top pairs and dense fallback are sae_ops.c's and
 * sae_grad.c's; this file sums the layers' predictions, computes the losses, and hands each
 * layer's backward d loss / d y_hat of the layers it writes. */
#include "dict/clt_ops.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/parallel.h"
#include "dict/sae_work.h"

struct lp_clt_work {
    int L, d, T, N_max, N;
    lp_sae *view;       /* (L) per-layer transcoders: tensors borrowed, except b_dec */
    lp_sae_work **sw;   /* (L) */
    float *y_hat;       /* (L,N,d) */
    float *bdec;        /* (L*d) scratch for the views' b_dec gradients */
    double *sse, *sst, *l0; /* (L) */
};

lp_clt_grads *lp_clt_grads_new(const lp_clt *c)
{
    const int L = c->n_layers, d = c->d_model, T = c->d_tc;
    size_t n = 0;
    for (int l = 0; l < L; l++)
        n += (size_t)d * T + T + (size_t)T * (L - l) * d + d + (c->threshold ? T : 0);
    lp_clt_grads *g = lp_calloc(1, sizeof *g, "CLT gradients");
    if (!g)
        return NULL;
    g->n_layers = L, g->n = n;
    if (!(g->mem = lp_calloc(n, sizeof(float), "CLT gradients")) ||
        !(g->W_enc = lp_calloc((size_t)L * 5, sizeof(float *), "CLT gradients"))) {
        lp_clt_grads_free(g);
        return NULL;
    }
    g->b_enc = g->W_enc + L, g->W_dec = g->W_enc + 2 * L, g->b_dec = g->W_enc + 3 * L;
    g->threshold = c->threshold ? g->W_enc + 4 * L : NULL;
    float *p = g->mem;
    for (int l = 0; l < L; l++) {
        g->W_enc[l] = p, p += (size_t)d * T;
        g->b_enc[l] = p, p += T;
        g->W_dec[l] = p, p += (size_t)T * (L - l) * d;
        g->b_dec[l] = p, p += d;
        if (c->threshold)
            g->threshold[l] = p, p += T;
    }
    return g;
}

void lp_clt_grads_zero(lp_clt_grads *g) { memset(g->mem, 0, g->n * sizeof(float)); }

void lp_clt_grads_free(lp_clt_grads *g)
{
    if (g)
        free(g->mem), free(g->W_enc), free(g);
}

void lp_clt_work_free(lp_clt_work *w)
{
    if (!w)
        return;
    for (int l = 0; l < w->L; l++) {
        if (w->sw)
            lp_sae_work_free(w->sw[l]);
        if (w->view)
            lp_tensor_free(w->view[l].b_dec);
    }
    free(w->view), free(w->sw), free(w->y_hat), free(w->bdec), free(w->sse), free(w->sst), free(w->l0), free(w);
}

lp_clt_work *lp_clt_work_new(const lp_clt *c, int N)
{
    if (N < 1) {
        lp_set_error("cross-layer transcoder: a batch needs at least one token (got %d)", N);
        return NULL;
    }
    const int L = c->n_layers, d = c->d_model, T = c->d_tc;
    lp_clt_work *w = lp_calloc(1, sizeof *w, "CLT work");
    if (!w)
        return NULL;
    w->L = L, w->d = d, w->T = T, w->N_max = N;
    int ok = (w->view = lp_calloc((size_t)L, sizeof *w->view, "CLT work")) &&
             (w->sw = lp_calloc((size_t)L, sizeof *w->sw, "CLT work")) &&
             (w->y_hat = lp_malloc((size_t)L * N * d * sizeof(float), "CLT predictions")) &&
             (w->bdec = lp_malloc((size_t)L * d * sizeof(float), "CLT work")) &&
             (w->sse = lp_calloc((size_t)L, sizeof(double), "CLT work")) &&
             (w->sst = lp_calloc((size_t)L, sizeof(double), "CLT work")) &&
             (w->l0 = lp_calloc((size_t)L, sizeof(double), "CLT work"));
    for (int l = 0; ok && l < L; l++) {
        lp_sae *v = &w->view[l];
        v->cfg = (lp_sae_config){.arch = c->threshold ? LP_SAE_JUMPRELU : LP_SAE_STANDARD, .d_in = d, .d_sae = T,
                                 .d_out = (L - l) * d, .transcoder = 1, .layer = l};
        v->W_enc = c->W_enc[l], v->b_enc = c->b_enc[l], v->W_dec = c->W_dec[l];
        v->threshold = c->threshold ? c->threshold[l] : NULL;
        v->scale = 1;
        ok = (v->b_dec = lp_tensor_zeros(1, (int64_t[]){(int64_t)(L - l) * d}, LP_DEVICE_CPU)) &&
             (w->sw[l] = lp_sae_work_new(&v->cfg, N, 0));
    }
    if (!ok) {
        lp_error_prefix("cross-layer transcoder (batch %d, %d layers, d_tc %d): ", N, L, T);
        lp_clt_work_free(w);
        return NULL;
    }
    return w;
}

const float *lp_clt_work_y_hat(const lp_clt_work *w) { return w->y_hat; }
const float *lp_clt_work_z(const lp_clt_work *w, int l) { return w->sw[l]->z; }
const float *lp_clt_work_f(const lp_clt_work *w, int l) { return w->sw[l]->f; }
const lp_sae_work *lp_clt_work_layer_work(const lp_clt_work *w, int l) { return w->sw[l]; }

void lp_clt_work_layer(const lp_clt_work *w, int l, double *sse, double *sst, double *l0, int *dense)
{
    if (sse)
        *sse = w->sse[l];
    if (sst)
        *sst = w->sst[l];
    if (l0)
        *l0 = w->l0[l];
    if (dense)
        *dense = w->sw[l]->dense;
}

static int check_shapes(const lp_clt_work *w, const lp_clt *c, int N)
{
    if (c->n_layers != w->L || c->d_model != w->d || c->d_tc != w->T)
        return lp_set_error("cross-layer transcoder: the work was made for another shape");
    if (N < 1 || N > w->N_max)
        return lp_set_error("cross-layer transcoder: a batch of %d tokens (the work holds 1..%d)", N, w->N_max);
    return 0;
}

struct sum_ctx {
    lp_clt_work *w;
    const lp_clt *c;
    int N;
};

/* y_hat[l'][n] = b_dec[l'] + sum_{l <= l'} (layer l's prediction)[n][l'-l] */
static void sum_range(void *p, size_t lo, size_t hi)
{
    struct sum_ctx *s = p;
    lp_clt_work *w = s->w;
    const int L = w->L, d = w->d, N = s->N;
    for (size_t n = lo; n < hi; n++)
        for (int lo2 = 0; lo2 < L; lo2++) {
            float *o = w->y_hat + ((size_t)lo2 * N + n) * d;
            memcpy(o, s->c->b_dec[lo2]->data, (size_t)d * sizeof(float));
            for (int l = 0; l <= lo2; l++) {
                const float *r = w->sw[l]->x_hat + n * (size_t)(L - l) * d + (size_t)(lo2 - l) * d;
                for (int j = 0; j < d; j++)
                    o[j] += r[j];
            }
        }
}

/* The sparsity, pre-activation and L0 of layer l, from its lists (or every pair when dense). */
static void layer_penalties(const lp_clt_work *w, int l, int N, const lp_sae_loss_opts *o, double *sp, double *pre,
                            double *l0)
{
    const lp_sae_work *s = w->sw[l];
    const lp_sae *v = &w->view[l];
    const int T = w->T;
    const float *th = v->threshold ? v->threshold->data : NULL;
    int jump = v->cfg.arch == LP_SAE_JUMPRELU, tanhp = o->sparsity == LP_SPARSITY_TANH;
    double a = 0, b = 0, c0 = 0;
    for (int n = 0; n < N; n++) {
        const float *z = s->z + (size_t)n * T, *f = s->f + (size_t)n * T;
        int q0 = s->dense ? 0 : s->rowptr[n], q1 = s->dense ? T : s->rowptr[n + 1];
        for (int q = q0; q < q1; q++) {
            int i = s->dense ? q : s->idx[q];
            if (f[i] != 0) {
                c0 += 1;
                a += tanhp ? tanh(o->tanh_c * f[i] * s->norms[i]) : jump ? 1.0 : (double)f[i] * s->norms[i];
            }
            if (jump && o->pre_act > 0 && z[i] < th[i])
                b += ((double)th[i] - z[i]) * s->norms[i];
        }
    }
    *sp = o->l1 * a / N, *pre = jump ? o->pre_act * b / N : 0, *l0 = c0 / N;
}

int lp_clt_forward(lp_clt_losses *out, lp_clt_work *w, const lp_clt *c, const float *x, const float *y, int N,
                   const lp_sae_loss_opts *o)
{
    if (check_shapes(w, c, N) < 0)
        return -1;
    const int L = w->L, d = w->d, T = w->T;
    w->N = N;
    for (int l = 0; l < L; l++) {
        const float *xl = x + (size_t)l * N * d;
        if (lp_sae_encode_into(w->sw[l], &w->view[l], xl, N, o, 0) < 0)
            return lp_error_prefix("cross-layer transcoder, layer %d: ", l);
        lp_sae_decode_from(w->sw[l]->x_hat, w->sw[l], &w->view[l], xl, N, T);
    }
    struct sum_ctx s = {w, c, N};
    lp_par_for((size_t)N, 16, sum_range, &s);
    if (!o || !out)
        return 0;
    memset(out, 0, sizeof *out);
    double *m = lp_malloc((size_t)d * sizeof *m, "CLT losses");
    if (!m)
        return -1;
    for (int l = 0; l < L; l++) {
        const float *yl = y + (size_t)l * N * d, *yh = w->y_hat + (size_t)l * N * d;
        double sse = 0, sst = 0;
        memset(m, 0, (size_t)d * sizeof *m);
        for (int n = 0; n < N; n++)
            for (int j = 0; j < d; j++)
                m[j] += yl[(size_t)n * d + j];
        for (int j = 0; j < d; j++)
            m[j] /= N;
        for (int n = 0; n < N; n++)
            for (int j = 0; j < d; j++) {
                double a = (double)yh[(size_t)n * d + j] - yl[(size_t)n * d + j], b = yl[(size_t)n * d + j] - m[j];
                sse += a * a, sst += b * b;
            }
        double sp, pre, l0;
        layer_penalties(w, l, N, o, &sp, &pre, &l0);
        w->sse[l] = sse, w->sst[l] = sst, w->l0[l] = l0;
        out->mse += sse / N, out->sse += sse, out->sst += sst;
        out->sparsity += sp, out->pre_act += pre, out->l0 += l0 / L;
    }
    free(m);
    out->total = out->mse + out->sparsity + out->pre_act;
    return 0;
}

int lp_clt_backward(lp_clt_grads *g, lp_clt_work *w, const lp_clt *c, const float *x, const float *y, int N,
                    const lp_sae_loss_opts *o)
{
    if (check_shapes(w, c, N) < 0)
        return -1;
    if (N != w->N)
        return lp_set_error("cross-layer transcoder: backward of %d tokens after a forward of %d", N, w->N);
    const int L = w->L, d = w->d;
    /* d loss / d y_hat[l'] = 2/N (y_hat - y), into y_hat's place (the forward's y_hat is
     * not needed again); b_dec's gradient is its sum over tokens */
    float *G = w->y_hat;
    for (size_t p = 0; p < (size_t)L * N * d; p++)
        G[p] = 2.0f / N * (G[p] - y[p]);
    for (int l = 0; l < L; l++)
        for (int n = 0; n < N; n++)
            for (int j = 0; j < d; j++)
                g->b_dec[l][j] += G[((size_t)l * N + n) * d + j];
    for (int l = 0; l < L; l++) {
        lp_sae_work *s = w->sw[l];
        const size_t row = (size_t)(L - l) * d;
        for (int n = 0; n < N; n++)
            for (int l2 = l; l2 < L; l2++)
                memcpy(s->G + n * row + (size_t)(l2 - l) * d, G + ((size_t)l2 * N + n) * d, (size_t)d * sizeof(float));
        lp_sae_loss_opts ol = *o;
        ol.dxhat = s->G, ol.n_prefix = 0;
        lp_sae_grads gl = {.W_enc = g->W_enc[l], .b_enc = g->b_enc[l], .W_dec = g->W_dec[l], .b_dec = w->bdec,
                           .threshold = g->threshold ? g->threshold[l] : NULL};
        if (lp_sae_backward(&gl, s, &w->view[l], x + (size_t)l * N * d, NULL, N, &ol) < 0)
            return lp_error_prefix("cross-layer transcoder, layer %d: ", l);
    }
    return 0;
}

int lp_clt_run(float *f, float *y_hat, const lp_clt *c, const float *x, int N)
{
    lp_clt_work *w = lp_clt_work_new(c, N);
    if (!w || lp_clt_forward(NULL, w, c, x, NULL, N, NULL) < 0) {
        lp_clt_work_free(w);
        return -1;
    }
    const int L = c->n_layers, d = c->d_model, T = c->d_tc;
    for (int l = 0; f && l < L; l++)
        memcpy(f + (size_t)l * N * T, w->sw[l]->f, (size_t)N * T * sizeof(float));
    if (y_hat)
        memcpy(y_hat, w->y_hat, (size_t)L * N * d * sizeof(float));
    lp_clt_work_free(w);
    return 0;
}

int lp_clt_init_random(lp_clt *c, uint64_t seed, float dec_norm, float threshold)
{
    for (int l = 0; l < c->n_layers; l++) {
        lp_sae v = {.cfg = {.arch = c->threshold ? LP_SAE_JUMPRELU : LP_SAE_STANDARD, .d_in = c->d_model,
                            .d_sae = c->d_tc, .d_out = (c->n_layers - l) * c->d_model, .transcoder = 1},
                    .W_enc = c->W_enc[l], .b_enc = c->b_enc[l], .W_dec = c->W_dec[l], .b_dec = NULL,
                    .threshold = c->threshold ? c->threshold[l] : NULL};
        lp_tensor *bd = lp_tensor_zeros(1, (int64_t[]){v.cfg.d_out}, LP_DEVICE_CPU);
        if (!bd)
            return -1;
        v.b_dec = bd;
        int rc = lp_sae_init_random(&v, seed * 1000003u + (uint64_t)l, dec_norm, threshold);
        lp_tensor_free(bd);
        if (rc < 0)
            return -1;
        memset(c->b_dec[l]->data, 0, (size_t)c->d_model * sizeof(float));
    }
    return 0;
}

void lp_clt_activate_layer(float *f, const float *z, const lp_clt *c, int l, int N)
{
    const int T = c->d_tc;
    const float *th = c->threshold ? c->threshold[l]->data : NULL;
    for (size_t p = 0; p < (size_t)N * T; p++) {
        float t = th ? th[p % T] : 0.0f;
        f[p] = z[p] > t ? z[p] : 0.0f;
    }
}

int lp_clt_encode_layer(float *z, float *f, const lp_clt *c, int l, const float *x, int N)
{
    const int d = c->d_model, T = c->d_tc;
    if (l < 0 || l >= c->n_layers || N < 1)
        return lp_set_error("cross-layer transcoder: layer %d of %d, %d rows", l, c->n_layers, N);
    float *zz = z ? z : lp_malloc((size_t)N * T * sizeof(float), "CLT pre-activations");
    if (!zz)
        return -1;
    for (int n = 0; n < N; n++)
        memcpy(zz + (size_t)n * T, c->b_enc[l]->data, (size_t)T * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, T, d, 1.0f, x, d, c->W_enc[l]->data, T, 1.0f, zz, T);
    lp_clt_activate_layer(f, zz, c, l, N);
    if (!z)
        free(zz);
    return 0;
}

void lp_clt_decode_layer(float *y, const lp_clt *c, int l2, const float *const *f, int N)
{
    const int L = c->n_layers, d = c->d_model, T = c->d_tc;
    for (int n = 0; n < N; n++)
        memcpy(y + (size_t)n * d, c->b_dec[l2]->data, (size_t)d * sizeof(float));
    for (int l = 0; l <= l2; l++) /* W_dec[l][:, l2-l, :]: rows (L-l)*d apart */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, d, T, 1.0f, f[l], T,
                    c->W_dec[l]->data + (size_t)(l2 - l) * d, (L - l) * d, 1.0f, y, d);
}
