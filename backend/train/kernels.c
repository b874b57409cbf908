/* The trainer's own kernels (train_impl.h), split over threads with lp_par_for. Where the op
 * table has what the trainer needs (norms, erf GELU, SwiGLU, embeddings) these call it on
 * row ranges; the rest is here because the table's version does not fit:
 *   - attention reads q, k, v in place inside GPT-2's fused c_attn output (row strides) and
 *     runs the (batch, kv head) pairs in parallel; the table's works head by head on one core
 *     (the softmax of its rows is the shared one, ops/softmax_row.h);
 *   - rotary embeddings use lp_rope_inv_freq's frequencies (scaled forms), as forward.c;
 *   - the tanh GELU uses forward.c's fast tanh, so that training computes forward.c's function;
 *   - cross-entropy is fused with its backward, in place over the logits;
 *   - linear backward can accumulate into dx (Llama's q, k, v all read the same input).
 * Inner loops are written as axpy (y[j] += a * x[j]) so that they vectorize without
 * reassociating sums. Only the linear and norm forwards (through the op table) poll the
 * interrupt flag; the rest never fails midway (the attention kernels only when their
 * scratch cannot be allocated). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "ops/ops.h"
#include "ops/softmax_row.h"
#include "core/parallel.h"
#include "core/tanh_fast.h"
#include "train/train_impl.h"

#if defined(__GNUC__) && !defined(__clang__)
/* no-trapping-math lets comparisons be if-converted (vectorized); it changes no value */
#define HOT __attribute__((optimize("O3", "no-trapping-math")))
#else
#define HOT
#endif

/* ---- linear layers ---- */

struct colsum_ctx {
    float *db;
    const float *dy;
    int N, C;
};

HOT static void colsum_range(void *p, size_t lo, size_t hi)
{
    struct colsum_ctx *c = p;
    for (int n = 0; n < c->N; n++) {
        const float *r = c->dy + (size_t)n * c->C;
        for (size_t j = lo; j < hi; j++)
            c->db[j] += r[j];
    }
}

void lp_tk_linear_backward(float *dx, int accum, float *dw, float *db, const float *dy, const float *x,
                           const float *W, const lp_linear *l, int N)
{
    int in = l->in, out = l->out;
    if (dx) {
        if (l->trans) /* W (out,in): dx (N,in) = dy (N,out) @ W */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, out, 1.0f, dy, out, W, in,
                        accum ? 1.0f : 0.0f, dx, in);
        else /* W (in,out): dx = dy @ W^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, in, out, 1.0f, dy, out, W, out,
                        accum ? 1.0f : 0.0f, dx, in);
    }
    if (dw) {
        if (l->trans) /* dW (out,in) += dy^T @ x */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, N, 1.0f, dy, out, x, in, 1.0f, dw, in);
        else /* dW (in,out) += x^T @ dy */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, in, out, N, 1.0f, x, in, dy, out, 1.0f, dw, out);
    }
    if (db) {
        struct colsum_ctx c = {db, dy, N, out};
        lp_par_for((size_t)out, 256, colsum_range, &c);
    }
}

/* ---- attention ---- */

struct attn_ctx {
    float *z, *att, *dq, *dk, *dv;
    const float *q, *k, *v, *dz;
    int ldq, ldk, B, T, H, K, S;
    float scale;
    int frozen; /* backward: the pattern a constant, dv only */
    int failed; /* a range could not allocate its scratch; read after the join */
};

/* Tasks are (batch, kv head) pairs: each owns its kv head's dk, dv and its query heads'
 * rows, so ranges never write the same memory. */
HOT static void attn_forward_range(void *p, size_t lo, size_t hi)
{
    struct attn_ctx *a = p;
    const int T = a->T, S = a->S, H = a->H, K = a->K, grp = H / K, ldz = H * S, ldq = a->ldq, ldk = a->ldk;
    float *kt = lp_malloc((size_t)S * T * sizeof(float), "attention scratch"); /* k of this kv head, transposed (S,T) */
    if (!kt) {
        a->failed = 1;
        return;
    }
    for (size_t task = lo; task < hi; task++) {
        int b = (int)(task / (size_t)K), g = (int)(task % (size_t)K);
        const float *kb = a->k + (size_t)b * T * ldk + (size_t)g * S;
        const float *vb = a->v + (size_t)b * T * ldk + (size_t)g * S;
        for (int j = 0; j < T; j++)
            for (int d = 0; d < S; d++)
                kt[(size_t)d * T + j] = kb[(size_t)j * ldk + d];
        for (int h = g * grp; h < (g + 1) * grp; h++)
            for (int t = 0; t < T; t++) {
                const float *restrict qt = a->q + ((size_t)b * T + t) * ldq + (size_t)h * S;
                float *restrict row = a->att + (((size_t)b * H + h) * T + t) * T;
                float *restrict zt = a->z + ((size_t)b * T + t) * ldz + (size_t)h * S;
                int n = t + 1;
                for (int j = 0; j < n; j++)
                    row[j] = 0.0f;
                for (int d = 0; d < S; d++) {
                    float qd = qt[d];
                    const float *restrict kr = kt + (size_t)d * T;
                    for (int j = 0; j < n; j++)
                        row[j] += qd * kr[j];
                }
                lp_softmax_row(row, row, n, T, a->scale);
                for (int d = 0; d < S; d++)
                    zt[d] = 0.0f;
                for (int j = 0; j < n; j++) {
                    float pj = row[j];
                    const float *restrict vr = vb + (size_t)j * ldk;
                    for (int d = 0; d < S; d++)
                        zt[d] += pj * vr[d];
                }
            }
    }
    free(kt);
}

HOT static void attn_backward_range(void *p, size_t lo, size_t hi)
{
    struct attn_ctx *a = p;
    const int T = a->T, S = a->S, H = a->H, K = a->K, grp = H / K, ldz = H * S, ldq = a->ldq, ldk = a->ldk;
    /* v transposed (S,T), then a row */
    float *vt = lp_malloc(((size_t)S * T + (size_t)T) * sizeof(float), "attention scratch");
    if (!vt) {
        a->failed = 1;
        return;
    }
    float *drow = vt + (size_t)S * T;
    for (size_t task = lo; task < hi; task++) {
        int b = (int)(task / (size_t)K), g = (int)(task % (size_t)K);
        size_t kvo = (size_t)b * T * ldk + (size_t)g * S;
        const float *kb = a->k + kvo, *vb = a->v + kvo;
        float *dkb = a->dk ? a->dk + kvo : NULL, *dvb = a->dv + kvo;
        for (int j = 0; j < T; j++) {
            if (dkb)
                memset(dkb + (size_t)j * ldk, 0, (size_t)S * sizeof(float));
            memset(dvb + (size_t)j * ldk, 0, (size_t)S * sizeof(float));
            for (int d = 0; d < S; d++)
                vt[(size_t)d * T + j] = vb[(size_t)j * ldk + d];
        }
        for (int h = g * grp; h < (g + 1) * grp; h++)
            for (int t = 0; t < T; t++) {
                const float *restrict qt = a->q + ((size_t)b * T + t) * ldq + (size_t)h * S;
                float *restrict dqt = a->dq ? a->dq + ((size_t)b * T + t) * ldq + (size_t)h * S : NULL;
                const float *restrict dzt = a->dz + ((size_t)b * T + t) * ldz + (size_t)h * S;
                const float *restrict P = a->att + (((size_t)b * H + h) * T + t) * T;
                int n = t + 1;
                /* dv_j += P[j] dz_t */
                for (int j = 0; j < n; j++) {
                    float pj = P[j];
                    float *restrict dvr = dvb + (size_t)j * ldk;
                    for (int d = 0; d < S; d++)
                        dvr[d] += pj * dzt[d];
                }
                if (a->frozen) { /* no gradient through the pattern */
                    if (dqt)
                        memset(dqt, 0, (size_t)S * sizeof(float));
                    continue;
                }
                /* dP[j] = dz_t . v_j */
                for (int j = 0; j < n; j++)
                    drow[j] = 0.0f;
                for (int d = 0; d < S; d++) {
                    float gd = dzt[d];
                    const float *restrict vr = vt + (size_t)d * T;
                    for (int j = 0; j < n; j++)
                        drow[j] += gd * vr[j];
                }
                /* through the softmax and the scale */
                float dot = 0.0f;
                for (int j = 0; j < n; j++)
                    dot += P[j] * drow[j];
                for (int j = 0; j < n; j++)
                    drow[j] = P[j] * (drow[j] - dot) * a->scale;
                /* dq_t = sum_j ds[j] k_j; dk_j += ds[j] q_t */
                for (int d = 0; d < S; d++)
                    dqt[d] = 0.0f;
                for (int j = 0; j < n; j++) {
                    float sj = drow[j];
                    const float *restrict kr = kb + (size_t)j * ldk;
                    float *restrict dkr = dkb + (size_t)j * ldk;
                    for (int d = 0; d < S; d++)
                        dqt[d] += sj * kr[d];
                    for (int d = 0; d < S; d++)
                        dkr[d] += sj * qt[d];
                }
            }
    }
    free(vt);
}

int lp_tk_attention_forward(float *z, float *att, const float *q, const float *k, const float *v, int ldq, int ldk,
                            int B, int T, int H, int K, int S)
{
    struct attn_ctx a = {.z = z, .att = att, .q = q, .k = k, .v = v, .ldq = ldq, .ldk = ldk, .B = B, .T = T,
                         .H = H, .K = K, .S = S, .scale = 1.0f / sqrtf((float)S)};
    lp_par_for((size_t)B * K, 1, attn_forward_range, &a);
    return a.failed ? lp_set_error_code(LP_ERR_NOMEM, "attention: cannot allocate scratch space") : 0;
}

int lp_tk_attention_backward(float *dq, float *dk, float *dv, const float *dz, const float *q, const float *k,
                             const float *v, const float *att, int ldq, int ldk, int B, int T, int H, int K, int S,
                             int frozen)
{
    struct attn_ctx a = {.dq = dq, .dk = dk, .dv = dv, .dz = dz, .att = (float *)att, .q = q, .k = k, .v = v,
                         .ldq = ldq, .ldk = ldk, .B = B, .T = T, .H = H, .K = K, .S = S,
                         .scale = 1.0f / sqrtf((float)S), .frozen = frozen};
    lp_par_for((size_t)B * K, 1, attn_backward_range, &a);
    return a.failed ? lp_set_error_code(LP_ERR_NOMEM, "attention backward: cannot allocate scratch space") : 0;
}

/* ---- rotary embeddings ---- */

void lp_tk_rope(float *x, int N, int T, int nh, int S, const float *cs, const float *sn, float sign)
{
    lp_cpu_ops()->rope_table(x, cs, sn, N, T, nh, S, sign); /* fails only for odd S, checked at creation */
}

/* ---- GELU (tanh form), residual adds ---- */

#define GELU_K 0.7978845608028654f

struct ew_ctx {
    float *out, *out2;
    const float *a, *b, *c;
    int form;
};

HOT static void gelu_fwd_range(void *p, size_t lo, size_t hi)
{
    struct ew_ctx *c = p;
    float *restrict out = c->out;
    const float *restrict inp = c->a;
    for (size_t i = lo; i < hi; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + lp_tanh_fast(GELU_K * (x + 0.044715f * x * x * x)));
    }
}

HOT static void gelu_bwd_range(void *p, size_t lo, size_t hi)
{
    struct ew_ctx *c = p;
    const float *inp = c->b, *dout = c->a;
    float *dinp = c->out; /* may alias dout: each element is read before it is written */
    for (size_t i = lo; i < hi; i++) {
        float x = inp[i], t = lp_tanh_fast(GELU_K * (x + 0.044715f * x * x * x));
        float d = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] = d * dout[i];
    }
}

void lp_tk_gelu_tanh_forward(float *out, const float *inp, size_t n)
{
    struct ew_ctx c = {.out = out, .a = inp};
    lp_par_for(n, 1 << 14, gelu_fwd_range, &c);
}

void lp_tk_gelu_tanh_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    struct ew_ctx c = {.out = dinp, .a = dout, .b = inp};
    lp_par_for(n, 1 << 14, gelu_bwd_range, &c);
}

HOT static void add_range(void *p, size_t lo, size_t hi)
{
    struct ew_ctx *c = p;
    float *restrict y = c->out;
    const float *restrict x = c->a;
    for (size_t i = lo; i < hi; i++)
        y[i] += x[i];
}

void lp_tk_add(float *y, const float *x, size_t n)
{
    struct ew_ctx c = {.out = y, .a = x};
    lp_par_for(n, 1 << 16, add_range, &c);
}

/* ---- op-table activations on ranges (these ops never fail) ---- */

static void gelu_op_fwd(void *p, size_t lo, size_t hi)
{
    struct ew_ctx *c = p;
    lp_cpu_ops()->gelu_forward(c->out + lo, c->a + lo, hi - lo, c->form);
}

static void gelu_op_bwd(void *p, size_t lo, size_t hi)
{
    struct ew_ctx *c = p;
    lp_cpu_ops()->gelu_backward(c->out + lo, c->a + lo, c->b + lo, hi - lo, c->form);
}

static void swiglu_op_fwd(void *p, size_t lo, size_t hi)
{
    struct ew_ctx *c = p;
    lp_cpu_ops()->swiglu_forward(c->out + lo, c->a + lo, c->b + lo, hi - lo);
}

static void swiglu_op_bwd(void *p, size_t lo, size_t hi)
{
    struct ew_ctx *c = p;
    lp_cpu_ops()->swiglu_backward(c->out + lo, c->out2 + lo, c->c + lo, c->a + lo, c->b + lo, hi - lo);
}

int lp_tk_gelu_forward(float *out, const float *inp, size_t n, int form)
{
    if (form == LP_GELU_TANH) {
        lp_tk_gelu_tanh_forward(out, inp, n);
        return 0;
    }
    struct ew_ctx c = {.out = out, .a = inp, .form = form};
    lp_par_for(n, 1 << 14, gelu_op_fwd, &c);
    return 0;
}

int lp_tk_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n, int form)
{
    if (form == LP_GELU_TANH) {
        lp_tk_gelu_tanh_backward(dinp, dout, inp, n);
        return 0;
    }
    struct ew_ctx c = {.out = dinp, .a = dout, .b = inp, .form = form};
    lp_par_for(n, 1 << 14, gelu_op_bwd, &c);
    return 0;
}

int lp_tk_swiglu_forward(float *out, const float *gate, const float *up, size_t n)
{
    struct ew_ctx c = {.out = out, .a = gate, .b = up};
    lp_par_for(n, 1 << 14, swiglu_op_fwd, &c);
    return 0;
}

int lp_tk_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n)
{
    struct ew_ctx c = {.out = dgate, .out2 = dup, .a = gate, .b = up, .c = dout};
    lp_par_for(n, 1 << 14, swiglu_op_bwd, &c);
    return 0;
}

/* ---- norms: the op table on row ranges ---- */

struct norm_ctx {
    float *out, *mean, *rstd;
    const float *inp, *w, *b;
    int C;
    float eps;
    int failed;
};

static void ln_range(void *p, size_t lo, size_t hi)
{
    struct norm_ctx *c = p;
    size_t C = (size_t)c->C;
    if (lp_cpu_ops()->layernorm_forward(c->out + lo * C, c->mean + lo, c->rstd + lo, c->inp + lo * C, c->w, c->b,
                                        (int)(hi - lo), c->C, c->eps) < 0)
        c->failed = 1;
}

static void rms_range(void *p, size_t lo, size_t hi)
{
    struct norm_ctx *c = p;
    size_t C = (size_t)c->C;
    if (lp_cpu_ops()->rmsnorm_forward(c->out + lo * C, c->rstd + lo, c->inp + lo * C, c->w, (int)(hi - lo), c->C,
                                      c->eps) < 0)
        c->failed = 1;
}

/* A range failed: the op polls the interrupt flag (its message was set on its own thread). */
static int norm_failed(const char *what)
{
    if (lp_interrupt_check() < 0)
        return -1;
    return lp_set_error("%s failed", what);
}

int lp_tk_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                            const float *b, int N, int C, float eps)
{
    struct norm_ctx c = {out, mean, rstd, inp, w, b, C, eps, 0};
    lp_par_for((size_t)N, 16, ln_range, &c);
    return c.failed ? norm_failed("layer norm") : 0;
}

int lp_tk_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps)
{
    struct norm_ctx c = {out, NULL, rstd, inp, w, NULL, C, eps, 0};
    lp_par_for((size_t)N, 16, rms_range, &c);
    return c.failed ? norm_failed("RMS norm") : 0;
}

/* ---- cross-entropy, fused with its backward ---- */

struct ce_ctx {
    float *logits, *losses;
    const int32_t *targets;
    int V;
    float scale;
};

static void ce_range(void *p, size_t lo, size_t hi)
{
    struct ce_ctx *c = p;
    size_t V = (size_t)c->V;
    for (size_t n = lo; n < hi; n++) {
        float *restrict x = c->logits + n * V;
        int tg = c->targets[n];
        if (tg < 0) {
            c->losses[n] = 0.0f;
            memset(x, 0, V * sizeof(float));
            continue;
        }
        float mx = -INFINITY, xt = x[tg];
        for (size_t j = 0; j < V; j++)
            mx = x[j] > mx ? x[j] : mx;
        double s = 0;
        for (size_t j = 0; j < V; j++) {
            x[j] = expf(x[j] - mx);
            s += x[j];
        }
        /* -log p[t] from the logits, as the op table's cross-entropy */
        c->losses[n] = (float)(log(s) + mx - xt);
        float f = (float)(c->scale / s);
        for (size_t j = 0; j < V; j++)
            x[j] *= f;
        x[tg] -= c->scale;
    }
}

void lp_tk_crossentropy(float *logits, float *losses, const int32_t *targets, int N, int V, float scale)
{
    struct ce_ctx c = {logits, losses, targets, V, scale};
    lp_par_for((size_t)N, 1, ce_range, &c);
}
