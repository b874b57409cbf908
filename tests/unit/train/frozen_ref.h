/* The oracle of the frozen backward: the trainer's function (train.h) computed naively in
 * double, with the attention patterns and the normalisation scales either computed or taken
 * as given (recorded from a real forward pass). Differentiating it by finite differences
 * gives what the frozen backward must give.
 *
 * The weights are double copies of the model's parameters (keyed by their data pointer, so
 * that a tied unembedding is the embedding), so that a finite difference perturbs one of
 * them by an exact step; dx0 (N,D) is added to the embedding output (the gradient there is
 * lp_trainer_input_grad's). */
#ifndef LP_TRAIN_FROZEN_REF_H
#define LP_TRAIN_FROZEN_REF_H

#include "helpers.h"
#include "model/config.h"

#define FREF_MAXP 64

typedef struct {
    const lp_model *m;
    int np;
    const float *key[FREF_MAXP]; /* the model tensor's data */
    double *val[FREF_MAXP];      /* its double copy */
    size_t n[FREF_MAXP];
    double *dx0; /* (N,D) added to the embedding output */
    int B, T;
    /* given (NULL: computed): per layer the pattern (B,H,T,T) and the scales of ln_1, ln_2
     * (N); the final norm's scale (N) */
    const float **att, **s1, **s2, *sf;
} fref;

static inline void fref_init(fref *r, const lp_model *m, int B, int T)
{
    memset(r, 0, sizeof *r);
    r->m = m, r->B = B, r->T = T;
    size_t np = lp_model_param_count(m);
    cr_assert(np <= FREF_MAXP);
    for (size_t i = 0; i < np; i++) {
        lp_tensor *w;
        lp_model_param(m, i, NULL, 0, &w);
        r->key[i] = w->data, r->n[i] = (size_t)lp_tensor_numel(w);
        r->val[i] = malloc(r->n[i] * sizeof(double));
        for (size_t j = 0; j < r->n[i]; j++)
            r->val[i][j] = w->data[j];
    }
    r->np = (int)np;
    r->dx0 = calloc((size_t)B * T * m->cfg.d_model, sizeof(double));
}

static inline void fref_free(fref *r)
{
    for (int i = 0; i < r->np; i++)
        free(r->val[i]);
    free(r->dx0);
}

/* The double copy of a model tensor (NULL for NULL). */
static inline const double *fref_w(const fref *r, const lp_tensor *t)
{
    if (!t)
        return NULL;
    for (int i = 0; i < r->np; i++)
        if (r->key[i] == t->data)
            return r->val[i];
    cr_assert_fail("tensor not among the parameters");
    return NULL;
}

/* y (N,out) = x (N,in) @ l (+ bias) */
static inline void fref_linear(const fref *r, double *y, const double *x, const lp_linear *l, int N)
{
    const double *w = fref_w(r, l->w), *b = fref_w(r, l->b);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < l->out; o++) {
            double s = b ? b[o] : 0;
            for (int i = 0; i < l->in; i++)
                s += x[(size_t)n * l->in + i] * (l->trans ? w[(size_t)o * l->in + i] : w[(size_t)i * l->out + o]);
            y[(size_t)n * l->out + o] = s;
        }
}

/* LayerNorm (b set) or RMSNorm of x (N,D) into y; scale given (N) or computed. */
static inline void fref_norm(const fref *r, double *y, const double *x, const lp_tensor *wt, const lp_tensor *bt,
                             const float *given, int N, int D)
{
    const double *w = fref_w(r, wt), *b = fref_w(r, bt);
    int ln = r->m->cfg.arch == LP_ARCH_GPT2;
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * D;
        double mean = 0, ss = 0;
        if (ln) {
            for (int d = 0; d < D; d++)
                mean += xr[d];
            mean /= D;
        }
        for (int d = 0; d < D; d++)
            ss += (xr[d] - mean) * (xr[d] - mean);
        double s = given ? (double)given[n] : 1.0 / sqrt(ss / D + r->m->cfg.eps);
        for (int d = 0; d < D; d++)
            y[(size_t)n * D + d] = (xr[d] - mean) * s * w[d] + (b ? b[d] : 0);
    }
}

static inline double fref_gelu(double x, int form)
{
    if (form == LP_GELU_ERF)
        return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

/* Rotary half rotation of one head of S at position p. */
static inline void fref_rope(double *x, int S, int p, const float *inv)
{
    for (int i = 0; i < S / 2; i++) {
        double a = (double)(float)((float)p * inv[i]), c = cos(a), s = sin(a);
        double x1 = x[i], x2 = x[i + S / 2];
        x[i] = x1 * c - x2 * s;
        x[i + S / 2] = x2 * c + x1 * s;
    }
}

/* The mean cross-entropy over the targets that are not -1. */
static inline double fref_loss(const fref *r, const int32_t *ids, const int32_t *tg)
{
    const lp_model *m = r->m;
    const lp_model_config *c = &m->cfg;
    int B = r->B, T = r->T, N = B * T, D = c->d_model, H = c->n_heads, S = c->d_head, V = c->d_vocab;
    int gpt2 = c->arch == LP_ARCH_GPT2, K = gpt2 ? H : c->n_kv_heads, QD = H * S, KD = K * S, F = c->d_mlp;
    size_t big = (size_t)N * (3 * QD > F ? (3 * QD > V ? 3 * QD : V) : (F > V ? F : V));
    double *x = calloc((size_t)N * D, sizeof(double)), *h = calloc((size_t)N * D, sizeof(double));
    double *qkv = calloc(big, sizeof(double)), *q = calloc((size_t)N * QD, sizeof(double));
    double *k = calloc((size_t)N * KD, sizeof(double)), *v = calloc((size_t)N * KD, sizeof(double));
    double *z = calloc((size_t)N * QD, sizeof(double)), *u = calloc(big, sizeof(double));
    double *u2 = calloc(big, sizeof(double)), *p = calloc((size_t)T, sizeof(double));
    float *inv = calloc((size_t)S, sizeof(float));
    if (!gpt2)
        lp_rope_inv_freq(c, T, inv);
    const double *wte = fref_w(r, m->wte), *wpe = gpt2 ? fref_w(r, m->wpe) : NULL;
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++)
            x[(size_t)n * D + d] = wte[(size_t)ids[n] * D + d] + (wpe ? wpe[(size_t)(n % T) * D + d] : 0) +
                                   r->dx0[(size_t)n * D + d];
    for (int l = 0; l < c->n_layers; l++) {
        const lp_block *bl = &m->blocks[l];
        fref_norm(r, h, x, bl->ln1_w, bl->ln1_b, r->s1 ? r->s1[l] : NULL, N, D);
        if (gpt2) {
            fref_linear(r, qkv, h, &bl->qkv, N);
            for (int n = 0; n < N; n++)
                for (int e = 0; e < QD; e++) {
                    q[(size_t)n * QD + e] = qkv[(size_t)n * 3 * QD + e];
                    k[(size_t)n * KD + e] = qkv[(size_t)n * 3 * QD + QD + e];
                    v[(size_t)n * KD + e] = qkv[(size_t)n * 3 * QD + 2 * QD + e];
                }
        } else {
            fref_linear(r, q, h, &bl->q, N), fref_linear(r, k, h, &bl->k, N), fref_linear(r, v, h, &bl->v, N);
            for (int n = 0; n < N; n++) {
                for (int hh = 0; hh < H; hh++)
                    fref_rope(q + (size_t)n * QD + (size_t)hh * S, S, n % T, inv);
                for (int g = 0; g < K; g++)
                    fref_rope(k + (size_t)n * KD + (size_t)g * S, S, n % T, inv);
            }
        }
        for (int b = 0; b < B; b++)
            for (int hh = 0; hh < H; hh++) {
                int g = hh / (H / K);
                for (int t = 0; t < T; t++) {
                    const double *qt = q + ((size_t)b * T + t) * QD + (size_t)hh * S;
                    if (r->att) {
                        for (int j = 0; j <= t; j++)
                            p[j] = r->att[l][(((size_t)b * H + hh) * T + t) * T + j];
                    } else {
                        double mx = -INFINITY, sum = 0;
                        for (int j = 0; j <= t; j++) {
                            const double *kj = k + ((size_t)b * T + j) * KD + (size_t)g * S;
                            double s = 0;
                            for (int e = 0; e < S; e++)
                                s += qt[e] * kj[e];
                            p[j] = s / sqrt((double)S);
                            mx = fmax(mx, p[j]);
                        }
                        for (int j = 0; j <= t; j++)
                            sum += (p[j] = exp(p[j] - mx));
                        for (int j = 0; j <= t; j++)
                            p[j] /= sum;
                    }
                    double *zt = z + ((size_t)b * T + t) * QD + (size_t)hh * S;
                    for (int e = 0; e < S; e++) {
                        double s = 0;
                        for (int j = 0; j <= t; j++)
                            s += p[j] * v[((size_t)b * T + j) * KD + (size_t)g * S + e];
                        zt[e] = s;
                    }
                }
            }
        fref_linear(r, h, z, &bl->o, N);
        for (size_t i = 0; i < (size_t)N * D; i++)
            x[i] += h[i];
        if (c->attn_only)
            continue;
        fref_norm(r, h, x, bl->ln2_w, bl->ln2_b, r->s2 ? r->s2[l] : NULL, N, D);
        if (gpt2) {
            fref_linear(r, u, h, &bl->fc, N);
            for (size_t i = 0; i < (size_t)N * F; i++)
                u[i] = fref_gelu(u[i], c->act);
            fref_linear(r, h, u, &bl->proj, N);
        } else {
            fref_linear(r, u, h, &bl->gate, N), fref_linear(r, u2, h, &bl->up, N);
            for (size_t i = 0; i < (size_t)N * F; i++)
                u[i] = u[i] / (1 + exp(-u[i])) * u2[i];
            fref_linear(r, h, u, &bl->down, N);
        }
        for (size_t i = 0; i < (size_t)N * D; i++)
            x[i] += h[i];
    }
    fref_norm(r, h, x, m->lnf_w, m->lnf_b, r->sf, N, D);
    fref_linear(r, u, h, &m->unembed, N);
    double loss = 0;
    int valid = 0;
    for (int n = 0; n < N; n++) {
        if (tg[n] < 0)
            continue;
        const double *lg = u + (size_t)n * V;
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < V; j++)
            mx = fmax(mx, lg[j]);
        for (int j = 0; j < V; j++)
            s += exp(lg[j] - mx);
        loss += log(s) + mx - lg[tg[n]];
        valid++;
    }
    free(x), free(h), free(qkv), free(q), free(k), free(v), free(z), free(u), free(u2), free(p), free(inv);
    return valid ? loss / valid : 0;
}

#endif
