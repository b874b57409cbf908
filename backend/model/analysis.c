/* Per-head weights and composition scores (see analysis.h). */
#include "model/analysis.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "ops/ops.h"

/* Element (in i, out j) of a Linear (out,in) or Conv1D (in,out) weight. */
static inline float lin_w(const lp_linear *l, int i, int j)
{
    return l->trans ? l->w->data[(size_t)j * l->in + i] : l->w->data[(size_t)i * l->out + j];
}

int lp_head_weights(const lp_model *m, int layer, int head, int fold_ln, float *wq, float *wk, float *wv,
                    float *wo)
{
    const lp_model_config *c = &m->cfg;
    if (layer < 0 || layer >= c->n_layers || head < 0 || head >= c->n_heads)
        return lp_set_error("head_weights: layer %d head %d is outside the model (%d layers, %d heads)", layer,
                            head, c->n_layers, c->n_heads);
    const lp_block *b = &m->blocks[layer];
    int D = c->d_model, S = c->d_head, H = c->n_heads, gpt2 = c->arch == LP_ARCH_GPT2;
    int kv = gpt2 ? head : head / (H / c->n_kv_heads);
    const float *lnw = fold_ln ? b->ln1_w->data : NULL;
    for (int d = 0; d < D; d++) {
        float s = lnw ? lnw[d] : 1.0f;
        for (int j = 0; j < S; j++) {
            size_t at = (size_t)d * S + j;
            if (gpt2) { /* c_attn (D, 3D): columns q | k | v, each H * S wide */
                if (wq)
                    wq[at] = s * lin_w(&b->qkv, d, head * S + j);
                if (wk)
                    wk[at] = s * lin_w(&b->qkv, d, H * S + kv * S + j);
                if (wv)
                    wv[at] = s * lin_w(&b->qkv, d, 2 * H * S + kv * S + j);
            } else {
                if (wq)
                    wq[at] = s * lin_w(&b->q, d, head * S + j);
                if (wk)
                    wk[at] = s * lin_w(&b->k, d, kv * S + j);
                if (wv)
                    wv[at] = s * lin_w(&b->v, d, kv * S + j);
            }
        }
    }
    if (wo) {
        for (int j = 0; j < S; j++) {
            float *row = wo + (size_t)j * D;
            double mean = 0;
            for (int d = 0; d < D; d++) {
                row[d] = lin_w(&b->o, head * S + j, d);
                mean += row[d];
            }
            if (fold_ln && b->ln1_b) /* LayerNorm models: center_writing_weights */
                for (int d = 0; d < D; d++)
                    row[d] -= (float)(mean / D);
        }
    }
    return 0;
}

/* ---- composition scores ---- */

/* Upper-triangular R (S x S) with R^T R = G for a symmetric positive semi-definite G, by
 * Cholesky in double. A pivot that is zero up to rounding (rank-deficient G, e.g. a head that
 * reads a single direction) leaves its row of R zero. work: S * S doubles. */
static void chol_upper(float *R, const float *G, int S, double *work)
{
    double mx = 0;
    for (int i = 0; i < S; i++)
        mx = fmax(mx, (double)G[(size_t)i * S + i]);
    double tol = mx * 1e-10;
    double *Lw = work; /* G = L L^T, L lower; R = L^T */
    memset(Lw, 0, (size_t)S * S * sizeof *Lw);
    for (int j = 0; j < S; j++) {
        double d = G[(size_t)j * S + j];
        for (int k = 0; k < j; k++)
            d -= Lw[(size_t)j * S + k] * Lw[(size_t)j * S + k];
        if (!(d > tol))
            continue; /* column j stays zero */
        double ljj = sqrt(d);
        Lw[(size_t)j * S + j] = ljj;
        for (int i = j + 1; i < S; i++) {
            double v = G[(size_t)i * S + j];
            for (int k = 0; k < j; k++)
                v -= Lw[(size_t)i * S + k] * Lw[(size_t)j * S + k];
            Lw[(size_t)i * S + j] = v / ljj;
        }
    }
    for (int i = 0; i < S; i++)
        for (int j = 0; j < S; j++)
            R[(size_t)i * S + j] = (float)Lw[(size_t)j * S + i];
}

typedef struct {
    const lp_model *m;
    lp_compose_kind kind;
    int fold_ln, D, S, H;
    float *wq, *wk, *wv, *wo, *G, *R; /* one head's matrices */
    double *work;
} comp_ctx;

static double sumsq(const float *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    return s;
}

/* The factor of layer l's heads (H*S x D, head h at rows h*S..) and their Frobenius norms:
 * left (the earlier head, W_OV = W_V W_O): R_V W_O with R_V^T R_V = W_V^T W_V;
 * right (the later head, W_B = B1 B2): R_B B1^T with R_B^T R_B = B2 B2^T.
 * Then ||W_A W_B||_F = ||left_h1 right_h2^T||_F, and the norms are ||W_A||_F, ||W_B||_F. */
static int factor(comp_ctx *c, int l, int right, float *out, double *norms)
{
    const lp_ops *ops = lp_cpu_ops();
    int D = c->D, S = c->S;
    for (int h = 0; h < c->H; h++) {
        if (lp_head_weights(c->m, l, h, c->fold_ln, c->wq, c->wk, c->wv, c->wo) < 0)
            return -1;
        const float *b1 = NULL;
        int rc;
        if (!right) /* G = W_V^T W_V */
            rc = ops->matmul_forward(c->G, c->wv, c->wv, NULL, 1, S, D, S, LP_TRANS_A);
        else if (c->kind == LP_COMPOSE_Q) /* W_B = W_Q W_K^T: B2 B2^T = W_K^T W_K */
            b1 = c->wq, rc = ops->matmul_forward(c->G, c->wk, c->wk, NULL, 1, S, D, S, LP_TRANS_A);
        else if (c->kind == LP_COMPOSE_K) /* W_B = W_K W_Q^T: B2 B2^T = W_Q^T W_Q */
            b1 = c->wk, rc = ops->matmul_forward(c->G, c->wq, c->wq, NULL, 1, S, D, S, LP_TRANS_A);
        else /* W_B = W_V W_O: B2 B2^T = W_O W_O^T */
            b1 = c->wv, rc = ops->matmul_forward(c->G, c->wo, c->wo, NULL, 1, S, D, S, LP_TRANS_B);
        if (rc < 0)
            return -1;
        chol_upper(c->R, c->G, S, c->work);
        float *o = out + (size_t)h * S * D;
        if (!right)
            rc = ops->matmul_forward(o, c->R, c->wo, NULL, 1, S, S, D, 0);
        else
            rc = ops->matmul_forward(o, c->R, b1, NULL, 1, S, S, D, LP_TRANS_B);
        if (rc < 0)
            return -1;
        norms[h] = sqrt(sumsq(o, (size_t)S * D));
    }
    return 0;
}

static int check_pair(const lp_model *m, int l1, int l2, const char *what)
{
    int L = m->cfg.n_layers;
    if (l1 >= 0 && (l1 >= L || l2 < 0 || l2 >= L || l2 <= l1))
        return lp_set_error("%s: the layers must satisfy 0 <= l1 < l2 < %d (got %d, %d)", what, L, l1, l2);
    return 0;
}

int lp_composition_scores(const lp_model *m, lp_compose_kind kind, int fold_ln, int l1, int l2, float *out)
{
    if (check_pair(m, l1, l2, "composition") < 0)
        return -1;
    const lp_model_config *cf = &m->cfg;
    int L = cf->n_layers, H = cf->n_heads, D = cf->d_model, S = cf->d_head, HS = H * S;
    int lo = l1 >= 0 ? l1 : 0, hi = l1 >= 0 ? l2 : L - 1; /* layers involved */
    int nl = hi - lo + 1;
    comp_ctx c = {.m = m, .kind = kind, .fold_ln = fold_ln, .D = D, .S = S, .H = H};
    size_t hsd = (size_t)HS * D;
    c.wq = lp_malloc(((size_t)3 * D * S + (size_t)S * D + 2 * (size_t)S * S) * sizeof(float), "head weights");
    c.work = lp_malloc((size_t)S * S * sizeof(double), "composition scratch");
    float *left = lp_malloc(hsd * sizeof(float), "composition factors");
    float *right = lp_malloc((size_t)nl * hsd * sizeof(float), "composition factors (one per layer)");
    float *prod = lp_malloc((size_t)HS * HS * sizeof(float), "composition products");
    double *nleft = lp_malloc((size_t)H * sizeof(double), "composition norms");
    double *nright = lp_malloc((size_t)nl * H * sizeof(double), "composition norms");
    int rc = -1;
    if (!c.wq || !c.work || !left || !right || !prod || !nleft || !nright)
        goto done;
    c.wk = c.wq + (size_t)D * S, c.wv = c.wk + (size_t)D * S, c.wo = c.wv + (size_t)D * S;
    c.G = c.wo + (size_t)S * D, c.R = c.G + (size_t)S * S;
    for (int l = lo + 1; l <= hi; l++) /* every later layer's right factor, once */
        if (lp_interrupt_check() < 0 || factor(&c, l, 1, right + (size_t)(l - lo) * hsd, nright + (size_t)(l - lo) * H) < 0)
            goto done;
    size_t LH = (size_t)L * H;
    if (l1 < 0)
        memset(out, 0, LH * LH * sizeof *out);
    for (int a = lo; a < hi; a++) {
        if (l1 >= 0 && a != l1)
            continue;
        if (lp_interrupt_check() < 0 || factor(&c, a, 0, left, nleft) < 0)
            goto done;
        for (int b = a + 1; b <= hi; b++) {
            if (l1 >= 0 && b != l2)
                continue;
            if (lp_interrupt_check() < 0 ||
                lp_cpu_ops()->matmul_forward(prod, left, right + (size_t)(b - lo) * hsd, NULL, 1, HS, D, HS,
                                             LP_TRANS_B) < 0)
                goto done;
            for (int h1 = 0; h1 < H; h1++)
                for (int h2 = 0; h2 < H; h2++) {
                    double ss = 0;
                    for (int i = 0; i < S; i++)
                        ss += sumsq(prod + (size_t)(h1 * S + i) * HS + (size_t)h2 * S, (size_t)S);
                    double den = nleft[h1] * nright[(size_t)(b - lo) * H + h2];
                    float v = den > 0 ? (float)(sqrt(ss) / den) : NAN;
                    if (l1 >= 0)
                        out[(size_t)h1 * H + h2] = v;
                    else
                        out[((size_t)a * H + h1) * LH + (size_t)b * H + h2] = v;
                }
        }
    }
    rc = 0;
done:
    free(c.wq);
    free(c.work);
    free(left);
    free(right);
    free(prod);
    free(nleft);
    free(nright);
    return rc;
}

/* a (n x k) @ b (k x p) in double */
static void dgemm_naive(double *out, const double *a, const double *b, int n, int k, int p)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < p; j++) {
            double s = 0;
            for (int t = 0; t < k; t++)
                s += a[(size_t)i * k + t] * b[(size_t)t * p + j];
            out[(size_t)i * p + j] = s;
        }
}

static double dnorm(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i] * v[i];
    return sqrt(s);
}

/* W_OV (left) or the kind's W_B (right) of one head as a D x D double matrix. */
static int full_matrix(const lp_model *m, int l, int h, lp_compose_kind kind, int fold_ln, int right, double *out,
                       float *buf, double *x, double *y)
{
    int D = m->cfg.d_model, S = m->cfg.d_head;
    float *wq = buf, *wk = wq + (size_t)D * S, *wv = wk + (size_t)D * S, *wo = wv + (size_t)D * S;
    if (lp_head_weights(m, l, h, fold_ln, wq, wk, wv, wo) < 0)
        return -1;
    const float *a = wv, *b = wo; /* out = a (D x S) @ b (S x D) */
    int bT = 0;                   /* b given as (D x S): use its transpose */
    if (right && kind == LP_COMPOSE_Q)
        a = wq, b = wk, bT = 1;
    else if (right && kind == LP_COMPOSE_K)
        a = wk, b = wq, bT = 1;
    for (size_t i = 0; i < (size_t)D * S; i++)
        x[i] = a[i];
    for (int s = 0; s < S; s++)
        for (int d = 0; d < D; d++)
            y[(size_t)s * D + d] = bT ? b[(size_t)d * S + s] : b[(size_t)s * D + d];
    dgemm_naive(out, x, y, D, S, D);
    return 0;
}

int lp_composition_scores_ref(const lp_model *m, lp_compose_kind kind, int fold_ln, int l1, int l2, float *out)
{
    if (check_pair(m, l1, l2, "composition") < 0)
        return -1;
    int L = m->cfg.n_layers, H = m->cfg.n_heads, D = m->cfg.d_model, S = m->cfg.d_head;
    size_t DD = (size_t)D * D, LH = (size_t)L * H;
    float *buf = lp_malloc(4 * (size_t)D * S * sizeof(float), "reference scratch");
    double *A = lp_malloc((3 * DD + 2 * (size_t)D * S) * sizeof(double), "reference scratch");
    if (!buf || !A) {
        free(buf);
        free(A);
        return -1;
    }
    double *B = A + DD, *P = B + DD, *x = P + DD, *y = x + (size_t)D * S;
    if (l1 < 0)
        memset(out, 0, LH * LH * sizeof *out);
    int rc = 0;
    for (int a = 0; a < L && rc == 0; a++)
        for (int h1 = 0; h1 < H && rc == 0; h1++) {
            if (l1 >= 0 && a != l1)
                continue;
            if ((rc = full_matrix(m, a, h1, kind, fold_ln, 0, A, buf, x, y)) < 0)
                break;
            for (int b = a + 1; b < L && rc == 0; b++)
                for (int h2 = 0; h2 < H && rc == 0; h2++) {
                    if (l1 >= 0 && b != l2)
                        continue;
                    if ((rc = full_matrix(m, b, h2, kind, fold_ln, 1, B, buf, x, y)) < 0)
                        break;
                    dgemm_naive(P, A, B, D, D, D);
                    double den = dnorm(A, DD) * dnorm(B, DD);
                    float v = den > 0 ? (float)(dnorm(P, DD) / den) : NAN;
                    if (l1 >= 0)
                        out[(size_t)h1 * H + h2] = v;
                    else
                        out[((size_t)a * H + h1) * LH + (size_t)b * H + h2] = v;
                }
        }
    free(buf);
    free(A);
    return rc;
}
