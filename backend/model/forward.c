/* The forward pass of GPT-2 and Llama-family models with hook points (see model.h), on the
 * CPU op table. Every hook point is a tensor of its own, made once and never written after
 * its hooks ran, so that a cache can keep a reference instead of a copy. Attention is
 * computed in its parts (scores, pattern, z) because each is a hook point.
 *
 * Layer by layer (TransformerLens' order):
 *   resid_pre -> ln1 (scale, normalized) -> q, k, v [-> rot_q, rot_k] -> attn_scores
 *   -> pattern -> z -> attn_out ; resid_mid = resid_pre + attn_out
 *   -> ln2 -> mlp pre [pre_linear] -> post -> mlp_out ; resid_post = resid_mid + mlp_out
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "device.h"
#include "model/forward_impl.h"
#include "ops/ops.h"

#define MAXT 48 /* tensors alive in one layer */

typedef struct {
    lp_tensor *t[MAXT];
    int n;
} track;

static lp_tensor *keep(track *tr, lp_tensor *t)
{
    if (t) {
        if (tr->n == MAXT) { /* programmer error: raise MAXT */
            lp_tensor_free(t);
            lp_set_error("forward: too many tensors in one layer");
            return NULL;
        }
        tr->t[tr->n++] = t;
    }
    return t;
}

static void drop(track *tr)
{
    for (int i = 0; i < tr->n; i++)
        lp_tensor_free(tr->t[i]);
    tr->n = 0;
}

/* ---- the elementwise stages on lp_get_threads() threads ----
 * BLAS runs the products on all cores; without this the norms, GELU, softmax and residual
 * adds ran on one core while the others waited (about a fifth of a GPT-2-small forward on
 * two cores). Each range is independent, so results do not depend on the thread count. */

typedef void (*range_fn)(void *ctx, size_t lo, size_t hi);

typedef struct {
    range_fn fn;
    void *ctx;
    size_t lo, hi;
} range_job;

static void *run_job(void *p)
{
    range_job *j = p;
    j->fn(j->ctx, j->lo, j->hi);
    return NULL;
}

#define MAX_PAR 16

/* fn over [0, n) in contiguous pieces of at least min_chunk; pieces whose thread could not
 * be started run on the caller. */
static void par_for(size_t n, size_t min_chunk, range_fn fn, void *ctx)
{
    size_t nt = (size_t)lp_get_threads();
    if (nt > MAX_PAR)
        nt = MAX_PAR;
    if (min_chunk == 0)
        min_chunk = 1;
    if (nt > n / min_chunk)
        nt = n / min_chunk;
    if (nt <= 1) {
        fn(ctx, 0, n);
        return;
    }
    pthread_t th[MAX_PAR];
    range_job jobs[MAX_PAR];
    int started[MAX_PAR] = {0};
    for (size_t i = 0; i < nt; i++)
        jobs[i] = (range_job){fn, ctx, n * i / nt, n * (i + 1) / nt};
    for (size_t i = 1; i < nt; i++)
        started[i] = pthread_create(&th[i], NULL, run_job, &jobs[i]) == 0;
    fn(ctx, jobs[0].lo, jobs[0].hi);
    for (size_t i = 1; i < nt; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            fn(ctx, jobs[i].lo, jobs[i].hi);
    }
}

static lp_tensor *new4(track *tr, const char *what, int nd, int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t s[4] = {a, b, c, d};
    return keep(tr, lp_tensor_empty_for(what, nd, s, LP_DEVICE_CPU));
}

/* y (B,T,out) = x (B,T,in) @ W (+ b) */
static lp_tensor *linear(lp_fwd *f, track *tr, const lp_linear *l, const lp_tensor *x, const char *what)
{
    lp_tensor *y = new4(tr, what, 3, f->B, f->T, l->out, 0);
    if (!y)
        return NULL;
    if (lp_cpu_ops()->matmul_forward(y->data, x->data, l->w->data, l->b ? l->b->data : NULL, 1, f->B * f->T,
                                     l->in, l->out, LP_SHARE_B | (l->trans ? LP_TRANS_B : 0)) < 0)
        return NULL;
    return y;
}

struct add_ctx {
    float *y;
    const float *a, *b;
};

static void add_range(void *p, size_t lo, size_t hi)
{
    struct add_ctx *c = p;
    for (size_t i = lo; i < hi; i++)
        c->y[i] = c->a[i] + c->b[i];
}

static lp_tensor *add(lp_fwd *f, track *tr, const lp_tensor *a, const lp_tensor *b)
{
    lp_tensor *y = new4(tr, "residual", 3, a->shape[0], a->shape[1], a->shape[2], 0);
    if (!y)
        return NULL;
    struct add_ctx c = {y->data, a->data, b->data};
    par_for((size_t)lp_tensor_numel(a), 1 << 16, add_range, &c);
    return y;
}

struct norm_ctx {
    const float *x;
    float *nrm, *out;
    const float *w, *b; /* b NULL: RMSNorm */
    float *mean, *scale;
    int64_t C;
    float eps;
};

static void norm_stats(void *p, size_t lo, size_t hi)
{
    struct norm_ctx *c = p;
    for (size_t n = lo; n < hi; n++) {
        const float *xr = c->x + n * c->C;
        double mu = 0, var = 0;
        if (c->b) {
            for (int64_t k = 0; k < c->C; k++)
                mu += xr[k];
            mu /= c->C;
        }
        for (int64_t k = 0; k < c->C; k++)
            var += (xr[k] - mu) * (xr[k] - mu);
        c->mean[n] = (float)mu;
        c->scale[n] = (float)sqrt(var / c->C + c->eps);
    }
}

static void norm_apply(void *p, size_t lo, size_t hi)
{
    struct norm_ctx *c = p;
    for (size_t n = lo; n < hi; n++) {
        const float *xr = c->x + n * c->C;
        float *r = c->nrm + n * c->C, m = c->mean[n], s = c->scale[n];
        for (int64_t k = 0; k < c->C; k++)
            r[k] = (xr[k] - m) / s;
    }
}

static void norm_affine(void *p, size_t lo, size_t hi)
{
    struct norm_ctx *c = p;
    for (size_t n = lo; n < hi; n++) {
        const float *r = c->nrm + n * c->C;
        float *o = c->out + n * c->C;
        for (int64_t k = 0; k < c->C; k++)
            o[k] = r[k] * c->w[k] + (c->b ? c->b[k] : 0.0f);
    }
}

/* LayerNorm (b != NULL) or RMSNorm, with hook points prefix.hook_scale (B,T,1) and
 * prefix.hook_normalized (B,T,D); returns normalized * w (+ b). */
static lp_tensor *norm(lp_fwd *f, track *tr, const lp_tensor *x, const lp_tensor *w, const lp_tensor *b,
                       const char *prefix)
{
    int64_t N = (int64_t)f->B * f->T, C = x->shape[2];
    char name[96];
    lp_tensor *scale = new4(tr, "norm scale", 3, f->B, f->T, 1, 0);
    lp_tensor *nrm = new4(tr, "norm", 3, f->B, f->T, C, 0);
    lp_tensor *out = new4(tr, "norm", 3, f->B, f->T, C, 0);
    float *mean = lp_calloc((size_t)N, sizeof(float), "norm means");
    if (!scale || !nrm || !out || !mean)
        goto fail;
    struct norm_ctx nc = {x->data, nrm->data, out->data, w->data, b ? b->data : NULL, mean, scale->data, C,
                          f->m->cfg.eps};
    par_for((size_t)N, 16, norm_stats, &nc);
    snprintf(name, sizeof name, "%s.hook_scale", prefix);
    if (lp_fwd_hook(f, name, scale, -1, 1) < 0)
        goto fail;
    par_for((size_t)N, 16, norm_apply, &nc);
    snprintf(name, sizeof name, "%s.hook_normalized", prefix);
    if (lp_fwd_hook(f, name, nrm, -1, 1) < 0)
        goto fail;
    par_for((size_t)N, 16, norm_affine, &nc);
    free(mean);
    return out;
fail:
    free(mean);
    return NULL;
}

/* (B,T,NH,S) -> (B,NH,T,S) contiguous, or back with the same call on (B,NH,T,S). */
static lp_tensor *swap12(track *tr, const lp_tensor *x)
{
    int perm[4] = {0, 2, 1, 3};
    lp_tensor *p = lp_tensor_permute(x, perm);
    lp_tensor *c = p ? lp_tensor_clone(p) : NULL;
    lp_tensor_free(p);
    return keep(tr, c);
}

/* Rotary embedding (half rotation, as transformers' rotate_half) of x (B,T,NH,S). */
static lp_tensor *rope(lp_fwd *f, track *tr, const lp_tensor *x, const float *cs, const float *sn)
{
    int64_t NH = x->shape[2], S = x->shape[3], half = S / 2;
    lp_tensor *y = new4(tr, "rotary", 4, f->B, f->T, NH, S);
    if (!y)
        return NULL;
    for (int64_t b = 0; b < f->B; b++)
        for (int64_t t = 0; t < f->T; t++)
            for (int64_t h = 0; h < NH; h++) {
                const float *xi = x->data + ((b * f->T + t) * NH + h) * S;
                float *yo = y->data + ((b * f->T + t) * NH + h) * S;
                const float *c = cs + t * half, *s = sn + t * half;
                for (int64_t i = 0; i < half; i++) {
                    float x1 = xi[i], x2 = xi[i + half];
                    yo[i] = x1 * c[i] + (-x2) * s[i];
                    yo[i + half] = x2 * c[i] + x1 * s[i];
                }
            }
    return y;
}

struct att_ctx {
    float *sc, *pat;
    int T;
    float scale;
    int failed; /* set by any range; read after the join */
};

static void scale_mask_range(void *p, size_t lo, size_t hi)
{
    struct att_ctx *c = p;
    size_t T = (size_t)c->T;
    for (size_t r = lo; r < hi; r++)
        for (size_t i = 0; i < T; i++) {
            float *row = c->sc + (r * T + i) * T;
            for (size_t j = 0; j <= i; j++)
                row[j] *= c->scale;
            for (size_t j = i + 1; j < T; j++)
                row[j] = -INFINITY;
        }
}

static void softmax_range(void *p, size_t lo, size_t hi)
{
    struct att_ctx *c = p;
    size_t TT = (size_t)c->T * c->T;
    if (lp_cpu_ops()->softmax_forward(c->pat + lo * TT, c->sc + lo * TT, (int)(hi - lo), c->T, c->T, 1) < 0)
        c->failed = 1;
}

/* Attention of one layer from q (B,T,H,S), k, v (B,T,K,S): hook points scores, pattern, z;
 * returns z (B,T,H,S). */
static lp_tensor *attention(lp_fwd *f, track *tr, int L, const lp_tensor *q, const lp_tensor *k,
                            const lp_tensor *v)
{
    const lp_ops *ops = lp_cpu_ops();
    int B = f->B, T = f->T, H = (int)q->shape[2], K = (int)k->shape[2], S = (int)q->shape[3], grp = H / K;
    char name[96];
    lp_tensor *qh = swap12(tr, q), *kh = swap12(tr, k), *vh = swap12(tr, v);
    lp_tensor *sc = new4(tr, "attention scores", 4, B, H, T, T);
    lp_tensor *pat = new4(tr, "attention pattern", 4, B, H, T, T);
    lp_tensor *zh = new4(tr, "attention", 4, B, H, T, S);
    if (!qh || !kh || !vh || !sc || !pat || !zh)
        return NULL;
    size_t TT = (size_t)T * T, TS = (size_t)T * S;
    for (int b = 0; b < B; b++)
        for (int g = 0; g < K; g++) /* the grp query heads of kv head g are contiguous */
            if (ops->matmul_forward(sc->data + ((size_t)b * H + (size_t)g * grp) * TT,
                                    qh->data + ((size_t)b * H + (size_t)g * grp) * TS,
                                    kh->data + ((size_t)b * K + g) * TS, NULL, 1, grp * T, S, T, LP_TRANS_B) < 0)
                return NULL;
    size_t R = (size_t)B * H;
    struct att_ctx ac = {sc->data, pat->data, T, 1.0f / sqrtf((float)S), 0};
    par_for(R, 1, scale_mask_range, &ac);
    snprintf(name, sizeof name, "blocks.%d.attn.hook_attn_scores", L);
    if (lp_fwd_hook(f, name, sc, 1, 2) < 0)
        return NULL;
    par_for(R, 1, softmax_range, &ac);
    if (ac.failed) { /* the op's message was set on a worker thread */
        if (lp_interrupt_check() == 0)
            lp_set_error("attention: softmax failed in layer %d", L);
        return NULL;
    }
    snprintf(name, sizeof name, "blocks.%d.attn.hook_pattern", L);
    if (lp_fwd_hook(f, name, pat, 1, 2) < 0)
        return NULL;
    for (int b = 0; b < B; b++)
        for (int g = 0; g < K; g++)
            if (ops->matmul_forward(zh->data + ((size_t)b * H + (size_t)g * grp) * TS,
                                    pat->data + ((size_t)b * H + (size_t)g * grp) * TT,
                                    vh->data + ((size_t)b * K + g) * TS, NULL, 1, grp * T, T, S, 0) < 0)
                return NULL;
    lp_tensor *z = swap12(tr, zh);
    snprintf(name, sizeof name, "blocks.%d.attn.hook_z", L);
    if (!z || lp_fwd_hook(f, name, z, 2, 1) < 0)
        return NULL;
    return z;
}

/* tanh by a rational approximation (Eigen's, clamped; max abs error 4e-7 against tanh in
 * double), branch-free so that compilers vectorize it. The op table's GELU calls tanhf,
 * which was 13% of a GPT-2-small forward pass; this is several times faster and keeps
 * logits within 1e-5 of transformers'. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("O3", "no-trapping-math")))
#endif
static inline float tanh_fast(float x)
{
    const float c = 7.90531110763549805f;
    x = x < -c ? -c : x;
    x = x > c ? c : x;
    float x2 = x * x;
    float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
    p = x2 * p + -8.60467152213735e-11f;
    p = x2 * p + 5.12229709037114e-08f;
    p = x2 * p + 1.48572235717979e-05f;
    p = x2 * p + 6.37261928875436e-04f;
    p = x2 * p + 4.89352455891786e-03f;
    p = x * p;
    float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
    q = x2 * q + 2.26843463243900e-03f;
    q = x2 * q + 4.89352518554385e-03f;
    return p / q;
}

/* GELU, tanh form (GPT-2's gelu_new). out may alias inp. */
struct gelu_ctx {
    float *out;
    const float *inp;
};

#if defined(__GNUC__) && !defined(__clang__)
/* vectorized only when comparisons may be if-converted: no-trapping-math changes no value
 * (no reassociation, NaN and rounding as before), it only drops FP-exception side effects */
__attribute__((optimize("O3", "no-trapping-math")))
#endif
static void gelu_range(void *p, size_t lo, size_t hi)
{
    struct gelu_ctx *c = p;
    float *restrict out = c->out;
    const float *restrict inp = c->inp;
    for (size_t i = lo; i < hi; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanh_fast(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    }
}

static void gelu_tanh(float *out, const float *inp, size_t n)
{
    struct gelu_ctx c = {out, inp};
    par_for(n, 1 << 15, gelu_range, &c);
}

/* A (B,T,n*S) projection seen as (B,T,n,S), as a tensor of its own. */
static lp_tensor *heads(lp_fwd *f, track *tr, const lp_tensor *x, int64_t off, int64_t n, int64_t S)
{
    lp_tensor *y = new4(tr, "attention heads", 4, f->B, f->T, n, S);
    if (!y)
        return NULL;
    int64_t N = (int64_t)f->B * f->T, W = x->shape[2];
    for (int64_t i = 0; i < N; i++)
        memcpy(y->data + i * n * S, x->data + i * W + off, (size_t)(n * S) * sizeof(float));
    return y;
}

static int block(lp_fwd *f, int L, lp_tensor **resid, const float *cs, const float *sn)
{
    const lp_model *m = f->m;
    const lp_model_config *c = &m->cfg;
    const lp_block *bl = &m->blocks[L];
    const lp_ops *ops = lp_cpu_ops();
    int gpt2 = c->arch == LP_ARCH_GPT2;
    int64_t H = c->n_heads, K = c->n_kv_heads, S = c->d_head;
    track tr = {0};
    char name[96], pre[48];
    lp_tensor *q, *k, *v, *x, *z, *t;
#define HOOK(tensor, suffix, hd, pd)                                          \
    do {                                                                      \
        snprintf(name, sizeof name, "blocks.%d.%s", L, suffix);              \
        if (lp_fwd_hook(f, name, tensor, hd, pd) < 0)                         \
            goto fail;                                                        \
    } while (0)
    snprintf(name, sizeof name, "blocks.%d.hook_resid_pre", L);
    if (lp_fwd_hooked(f, name)) { /* resid_pre shares storage with the previous hook point */
        lp_tensor *cl = lp_tensor_clone(*resid);
        if (!cl)
            goto fail;
        lp_tensor_free(*resid);
        *resid = cl;
    }
    HOOK(*resid, "hook_resid_pre", -1, 1);
    snprintf(pre, sizeof pre, "blocks.%d.ln1", L);
    if (!(x = norm(f, &tr, *resid, bl->ln1_w, bl->ln1_b, pre)))
        goto fail;
    if (gpt2) {
        if (!(t = linear(f, &tr, &bl->qkv, x, "attention qkv")) || !(q = heads(f, &tr, t, 0, H, S)) ||
            !(k = heads(f, &tr, t, H * S, H, S)) || !(v = heads(f, &tr, t, 2 * H * S, H, S)))
            goto fail;
    } else {
        lp_tensor *tq, *tk, *tv;
        if (!(tq = linear(f, &tr, &bl->q, x, "attention q")) || !(tk = linear(f, &tr, &bl->k, x, "attention k")) ||
            !(tv = linear(f, &tr, &bl->v, x, "attention v")) || !(q = heads(f, &tr, tq, 0, H, S)) ||
            !(k = heads(f, &tr, tk, 0, K, S)) || !(v = heads(f, &tr, tv, 0, K, S)))
            goto fail;
    }
    HOOK(q, "attn.hook_q", 2, 1);
    HOOK(k, "attn.hook_k", 2, 1);
    HOOK(v, "attn.hook_v", 2, 1);
    if (!gpt2) {
        if (!(q = rope(f, &tr, q, cs, sn)))
            goto fail;
        HOOK(q, "attn.hook_rot_q", 2, 1);
        if (!(k = rope(f, &tr, k, cs, sn)))
            goto fail;
        HOOK(k, "attn.hook_rot_k", 2, 1);
    }
    if (!(z = attention(f, &tr, L, q, k, v)))
        goto fail;
    lp_tensor *zf = keep(&tr, lp_tensor_reshape(z, 3, (int64_t[]){f->B, f->T, H * S}));
    lp_tensor *ao = zf ? linear(f, &tr, &bl->o, zf, "attention out") : NULL;
    if (!ao)
        goto fail;
    HOOK(ao, "hook_attn_out", -1, 1);
    lp_tensor *mid = add(f, &tr, *resid, ao);
    if (!mid)
        goto fail;
    HOOK(mid, "hook_resid_mid", -1, 1);
    snprintf(pre, sizeof pre, "blocks.%d.ln2", L);
    if (!(x = norm(f, &tr, mid, bl->ln2_w, bl->ln2_b, pre)))
        goto fail;
    lp_tensor *post, *mo;
    if (gpt2) {
        lp_tensor *h = linear(f, &tr, &bl->fc, x, "mlp");
        if (!h)
            goto fail;
        HOOK(h, "mlp.hook_pre", -1, 1);
        post = new4(&tr, "mlp", 3, f->B, f->T, c->d_mlp, 0);
        if (!post)
            goto fail;
        if (c->act == LP_GELU_TANH)
            gelu_tanh(post->data, h->data, (size_t)lp_tensor_numel(h));
        else if (ops->gelu_forward(post->data, h->data, (size_t)lp_tensor_numel(h), c->act) < 0)
            goto fail;
        HOOK(post, "mlp.hook_post", -1, 1);
        mo = linear(f, &tr, &bl->proj, post, "mlp out");
    } else {
        lp_tensor *g = linear(f, &tr, &bl->gate, x, "mlp gate");
        if (!g)
            goto fail;
        HOOK(g, "mlp.hook_pre", -1, 1);
        lp_tensor *u = linear(f, &tr, &bl->up, x, "mlp up");
        if (!u)
            goto fail;
        HOOK(u, "mlp.hook_pre_linear", -1, 1);
        post = new4(&tr, "mlp", 3, f->B, f->T, c->d_mlp, 0);
        if (!post || ops->swiglu_forward(post->data, g->data, u->data, (size_t)lp_tensor_numel(g)) < 0)
            goto fail;
        HOOK(post, "mlp.hook_post", -1, 1);
        mo = linear(f, &tr, &bl->down, post, "mlp out");
    }
    if (!mo)
        goto fail;
    HOOK(mo, "hook_mlp_out", -1, 1);
    lp_tensor *rp = add(f, &tr, mid, mo);
    if (!rp)
        goto fail;
    HOOK(rp, "hook_resid_post", -1, 1);
#undef HOOK
    lp_tensor *next = lp_tensor_alias(rp);
    if (!next)
        goto fail;
    lp_tensor_free(*resid);
    *resid = next;
    drop(&tr);
    return 0;
fail:
    drop(&tr);
    return -1;
}

/* The embedding (and GPT-2's position embedding) of the tokens: resid_pre of block 0. */
static lp_tensor *embed(lp_fwd *f, const int32_t *tokens)
{
    const lp_model *m = f->m;
    int64_t D = m->cfg.d_model, N = (int64_t)f->B * f->T;
    track tr = {0};
    lp_tensor *e = new4(&tr, "embedding", 3, f->B, f->T, D, 0), *out = NULL;
    if (!e || lp_cpu_ops()->embed_forward(e->data, tokens, m->wte->data, (int)N, (int)D, m->cfg.d_vocab) < 0 ||
        lp_fwd_hook(f, "hook_embed", e, -1, 1) < 0)
        goto done;
    if (m->cfg.arch != LP_ARCH_GPT2) {
        out = lp_tensor_alias(e);
        goto done;
    }
    lp_tensor *p = new4(&tr, "position embedding", 3, f->B, f->T, D, 0);
    if (!p)
        goto done;
    for (int64_t b = 0; b < f->B; b++)
        memcpy(p->data + b * f->T * D, m->wpe->data, (size_t)(f->T * D) * sizeof(float));
    if (lp_fwd_hook(f, "hook_pos_embed", p, -1, 1) < 0)
        goto done;
    lp_tensor *r = add(f, &tr, e, p);
    out = r ? lp_tensor_alias(r) : NULL;
done:
    drop(&tr);
    return out;
}

int lp_model_run(const lp_model *m, const int32_t *tokens, int B, int T, const lp_run_opts *opts, lp_run *out)
{
    memset(out, 0, sizeof *out);
    const lp_model_config *c = &m->cfg;
    if (B <= 0 || T <= 0)
        return lp_set_error("run: need at least one token (got batch %d x %d)", B, T);
    /* GPT-2 has no position embedding past n_ctx; Llama's rotary embeddings extend, but
     * only the dynamic scaling form is meant to be used past max_position_embeddings */
    if (T > c->n_ctx && (c->arch == LP_ARCH_GPT2 || c->rope != LP_ROPE_DYNAMIC))
        return lp_set_error("run: %d tokens is longer than the model's context of %d (%s)", T, c->n_ctx,
                            c->arch == LP_ARCH_GPT2 ? "n_positions" : "max_position_embeddings");
    if ((int64_t)B * T > (1 << 30))
        return lp_set_error("run: batch %d x %d tokens is too large", B, T);
    for (int64_t i = 0; i < (int64_t)B * T; i++)
        if (tokens[i] < 0 || tokens[i] >= c->d_vocab)
            return lp_set_error("run: token %d at position %lld is outside the vocabulary (0..%d)", tokens[i],
                                (long long)i % T + 1, c->d_vocab - 1);
    if (lp_fwd_check_hooks(m, opts) < 0)
        return -1;
    lp_fwd f = {.m = m, .o = opts, .r = out, .B = B, .T = T};
    float *cs = NULL, *sn = NULL, *inv = NULL;
    lp_tensor *resid = NULL;
    track tr = {0};
    if (c->arch == LP_ARCH_LLAMA) {
        int half = c->d_head / 2;
        cs = lp_malloc((size_t)T * half * sizeof(float), "rotary table");
        sn = lp_malloc((size_t)T * half * sizeof(float), "rotary table");
        inv = lp_malloc((size_t)half * sizeof(float), "rotary table");
        if (!cs || !sn || !inv)
            goto fail;
        lp_rope_inv_freq(c, T, inv);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < half; i++) {
                float a = (float)t * inv[i];
                cs[t * half + i] = cosf(a);
                sn[t * half + i] = sinf(a);
            }
    }
    if (!(resid = embed(&f, tokens)))
        goto fail;
    for (int L = 0; L < c->n_layers; L++)
        if (lp_interrupt_check() < 0 || block(&f, L, &resid, cs, sn) < 0)
            goto fail;
    lp_tensor *x = norm(&f, &tr, resid, m->lnf_w, m->lnf_b, "ln_final");
    lp_tensor *logits = x ? linear(&f, &tr, &m->unembed, x, "logits") : NULL;
    if (!logits || !(out->logits = lp_tensor_alias(logits)))
        goto fail;
    drop(&tr);
    lp_tensor_free(resid);
    free(cs), free(sn), free(inv);
    return 0;
fail:
    drop(&tr);
    lp_tensor_free(resid);
    free(cs), free(sn), free(inv);
    lp_run_clear(out);
    return -1;
}

int lp_model_unembed(const lp_model *m, const float *resid, int N, float *logits)
{
    const lp_ops *ops = lp_cpu_ops();
    int D = m->cfg.d_model;
    float *x = lp_malloc((size_t)N * D * sizeof *x, "unembed input");
    float *stats = lp_malloc(2 * (size_t)N * sizeof *stats, "unembed norm statistics");
    int rc = -1;
    if (!x || !stats)
        goto done;
    if (m->cfg.arch == LP_ARCH_GPT2) {
        if (ops->layernorm_forward(x, stats, stats + N, resid, m->lnf_w->data, m->lnf_b ? m->lnf_b->data : NULL,
                                   N, D, m->cfg.eps) < 0)
            goto done;
    } else if (ops->rmsnorm_forward(x, stats, resid, m->lnf_w->data, N, D, m->cfg.eps) < 0) {
        goto done;
    }
    const lp_linear *u = &m->unembed;
    rc = ops->matmul_forward(logits, x, u->w->data, u->b ? u->b->data : NULL, 1, N, u->in, u->out,
                             LP_SHARE_B | (u->trans ? LP_TRANS_B : 0));
done:
    free(x);
    free(stats);
    return rc;
}
