/* Every backward against central finite differences of its forward. The loss is
 * L = sum(out * w) for a fixed random w, so dout = w; the forward used for differences is
 * the double-precision reference, and the fast CPU backward is checked (test_ops.c checks it
 * equals the reference backward). */
#include <criterion/criterion.h>

#include "helpers.h"
#include "ops/ops.h"

static lp_rng g;
static const lp_ops *F, *R;
static void setup(void)
{
    lp_rng_seed(&g, 99);
    F = lp_cpu_ops();
    R = lp_ref_ops();
}
TestSuite(grad, .init = setup);

/* The forward under test writes `out` (nout values) from the current inputs. */
typedef void (*forward_fn)(float *out, void *ctx);

static double loss_of(forward_fn f, void *ctx, float *out, const float *w, size_t nout)
{
    f(out, ctx);
    double s = 0;
    for (size_t i = 0; i < nout; i++)
        s += (double)out[i] * w[i];
    return s;
}

/* Compares analytic[i] with dL/dx[i] by central differences, for every i (or a sample). */
static void check_grad(const char *what, forward_fn f, void *ctx, float *x, size_t n, const float *analytic,
                       size_t nout, const float *w, float h, double tol)
{
    float *out = zeros_array(nout);
    size_t step = n > 200 ? n / 97 : 1;
    for (size_t i = 0; i < n; i += step) {
        float keep = x[i];
        x[i] = keep + h;
        double lp = loss_of(f, ctx, out, w, nout);
        x[i] = keep - h;
        double lm = loss_of(f, ctx, out, w, nout);
        x[i] = keep;
        double num = (lp - lm) / (2.0 * h);
        cr_assert(fabs(num - analytic[i]) <= tol * (1.0 + fabs(num)), "%s: d/dx[%zu] analytic %.6g, numeric %.6g",
                  what, i, (double)analytic[i], num);
    }
    free(out);
}

/* ---- forwards with their sizes in a context ---- */
typedef struct {
    float *a, *b, *bias, *x, *w, *th, *u, *k, *v, *att;
    int B, M, K, N, flags, form, C, T, NH, NKV, HS;
} ctx_t;

static void f_matmul(float *out, void *p)
{
    ctx_t *c = p;
    R->matmul_forward(out, c->a, c->b, c->bias, c->B, c->M, c->K, c->N, c->flags);
}

Test(grad, matmul)
{
    for (int flags = 0; flags < 8; flags++) {
        ctx_t c = {.B = 2, .M = 3, .K = 5, .N = 4, .flags = flags};
        size_t na = 30, nb = (flags & LP_SHARE_B) ? 20 : 40, no = 24;
        c.a = rand_array(&g, na, 1), c.b = rand_array(&g, nb, 1), c.bias = rand_array(&g, 4, 1);
        float *w = rand_array(&g, no, 1), *da = zeros_array(na), *db = zeros_array(nb), *dbias = zeros_array(4);
        F->matmul_backward(da, db, dbias, w, c.a, c.b, 2, 3, 5, 4, flags);
        check_grad("matmul dA", f_matmul, &c, c.a, na, da, no, w, 1e-2f, 1e-3);
        check_grad("matmul dB", f_matmul, &c, c.b, nb, db, no, w, 1e-2f, 1e-3);
        check_grad("matmul dbias", f_matmul, &c, c.bias, 4, dbias, no, w, 1e-2f, 1e-3);
        float *p[] = {c.a, c.b, c.bias, w, da, db, dbias};
        for (int i = 0; i < 7; i++)
            free(p[i]);
    }
}

static void f_layernorm(float *out, void *p)
{
    ctx_t *c = p;
    R->layernorm_forward(out, NULL, NULL, c->x, c->w, c->bias, c->N, c->C, 1e-5f);
}
static void f_rmsnorm(float *out, void *p)
{
    ctx_t *c = p;
    R->rmsnorm_forward(out, NULL, c->x, c->w, c->N, c->C, 1e-5f);
}
static void f_bias(float *out, void *p)
{
    ctx_t *c = p;
    R->bias_add_forward(out, c->x, c->bias, c->N, c->C);
}

Test(grad, norms_and_bias)
{
    ctx_t c = {.N = 3, .C = 7};
    size_t n = 21;
    c.x = rand_array(&g, n, 1), c.w = rand_array(&g, 7, 1), c.bias = rand_array(&g, 7, 1);
    float *w = rand_array(&g, n, 1), *mean = zeros_array(3), *rstd = zeros_array(3), *out = zeros_array(n);
    float *dx = zeros_array(n), *dw = zeros_array(7), *db = zeros_array(7);
    R->layernorm_forward(out, mean, rstd, c.x, c.w, c.bias, 3, 7, 1e-5f);
    F->layernorm_backward(dx, dw, db, w, c.x, c.w, mean, rstd, 3, 7);
    check_grad("layernorm dinp", f_layernorm, &c, c.x, n, dx, n, w, 1e-2f, 3e-3);
    check_grad("layernorm dweight", f_layernorm, &c, c.w, 7, dw, n, w, 1e-2f, 1e-3);
    check_grad("layernorm dbias", f_layernorm, &c, c.bias, 7, db, n, w, 1e-2f, 1e-3);
    memset(dw, 0, 7 * sizeof(float));
    R->rmsnorm_forward(out, rstd, c.x, c.w, 3, 7, 1e-5f);
    F->rmsnorm_backward(dx, dw, w, c.x, c.w, rstd, 3, 7);
    check_grad("rmsnorm dinp", f_rmsnorm, &c, c.x, n, dx, n, w, 1e-2f, 3e-3);
    check_grad("rmsnorm dweight", f_rmsnorm, &c, c.w, 7, dw, n, w, 1e-2f, 1e-3);
    memset(db, 0, 7 * sizeof(float));
    F->bias_add_backward(dx, db, w, 3, 7);
    check_grad("bias dinp", f_bias, &c, c.x, n, dx, n, w, 1e-2f, 1e-3);
    check_grad("bias dbias", f_bias, &c, c.bias, 7, db, n, w, 1e-2f, 1e-3);
    float *p[] = {c.x, c.w, c.bias, w, mean, rstd, out, dx, dw, db};
    for (int i = 0; i < 10; i++)
        free(p[i]);
}

static void f_gelu(float *out, void *p) { R->gelu_forward(out, ((ctx_t *)p)->x, (size_t)((ctx_t *)p)->N, ((ctx_t *)p)->form); }
static void f_silu(float *out, void *p) { R->silu_forward(out, ((ctx_t *)p)->x, (size_t)((ctx_t *)p)->N); }
static void f_relu(float *out, void *p) { R->relu_forward(out, ((ctx_t *)p)->x, (size_t)((ctx_t *)p)->N); }
static void f_swiglu(float *out, void *p)
{
    ctx_t *c = p;
    R->swiglu_forward(out, c->x, c->u, (size_t)c->N);
}
static void f_jump(float *out, void *p)
{
    ctx_t *c = p;
    R->jumprelu_forward(out, c->x, c->th, 1, c->N);
}
static void f_topk(float *out, void *p)
{
    ctx_t *c = p;
    R->topk_act_forward(out, c->x, 1, c->N, 4);
}

Test(grad, activations)
{
    ctx_t c = {.N = 40};
    size_t n = 40;
    c.x = rand_array(&g, n, 2), c.u = rand_array(&g, n, 1), c.th = zeros_array(n);
    for (size_t i = 0; i < n; i++) { /* keep away from the kinks so that differences are exact */
        if (fabsf(c.x[i]) < 0.05f)
            c.x[i] += 0.2f;
        c.th[i] = c.x[i] + (i % 2 ? 0.1f : -0.1f);
    }
    float *w = rand_array(&g, n, 1), *d = zeros_array(n), *d2 = zeros_array(n), *out = zeros_array(n);
    for (c.form = 0; c.form < 2; c.form++) {
        F->gelu_backward(d, w, c.x, n, c.form);
        check_grad("gelu", f_gelu, &c, c.x, n, d, n, w, 1e-2f, 1e-3);
    }
    F->silu_backward(d, w, c.x, n);
    check_grad("silu", f_silu, &c, c.x, n, d, n, w, 1e-2f, 1e-3);
    F->relu_backward(d, w, c.x, n);
    check_grad("relu", f_relu, &c, c.x, n, d, n, w, 1e-2f, 1e-3);
    F->swiglu_backward(d, d2, w, c.x, c.u, n);
    check_grad("swiglu dgate", f_swiglu, &c, c.x, n, d, n, w, 1e-2f, 1e-3);
    check_grad("swiglu dup", f_swiglu, &c, c.u, n, d2, n, w, 1e-2f, 1e-3);
    F->jumprelu_backward(d, NULL, w, c.x, c.th, 1, (int)n, 1e-3f);
    check_grad("jumprelu dinp", f_jump, &c, c.x, n, d, n, w, 1e-2f, 1e-3);
    F->topk_act_forward(out, c.x, 1, (int)n, 4);
    F->topk_act_backward(d, w, out, 1, (int)n);
    check_grad("topk activation", f_topk, &c, c.x, n, d, n, w, 1e-3f, 1e-3);
    float *p[] = {c.x, c.u, c.th, w, d, d2, out};
    for (int i = 0; i < 7; i++)
        free(p[i]);
}

static void f_softmax(float *out, void *p)
{
    ctx_t *c = p;
    R->softmax_forward(out, c->x, c->B, c->T, c->C, 1);
}
static void f_attention(float *out, void *p)
{
    ctx_t *c = p;
    R->attention_forward(out, c->att, c->x, c->k, c->v, c->B, c->T, c->NH, c->NKV, c->HS);
}
static void f_rope(float *out, void *p)
{
    ctx_t *c = p;
    R->rope_forward(out, c->x, c->B, c->T, c->NH, c->HS, c->HS - 2, 100.0f, 2);
}

Test(grad, softmax_attention_rope)
{
    ctx_t c = {.B = 2, .T = 3, .C = 5};
    size_t n = 30;
    c.x = rand_array(&g, n, 2);
    float *w = rand_array(&g, n, 1), *y = zeros_array(n), *d = zeros_array(n);
    R->softmax_forward(y, c.x, 2, 3, 5, 1);
    F->softmax_backward(d, w, y, 2, 3, 5);
    check_grad("softmax", f_softmax, &c, c.x, n, d, n, w, 1e-2f, 1e-3);
    free(c.x), free(w), free(y), free(d);

    ctx_t a = {.B = 2, .T = 5, .NH = 4, .NKV = 2, .HS = 6};
    size_t nq = 2 * 5 * 4 * 6, nk = 2 * 5 * 2 * 6;
    a.x = rand_array(&g, nq, 1), a.k = rand_array(&g, nk, 1), a.v = rand_array(&g, nk, 1);
    a.att = zeros_array(2 * 4 * 25);
    float *wo = rand_array(&g, nq, 1), *out = zeros_array(nq);
    float *dq = zeros_array(nq), *dk = zeros_array(nk), *dv = zeros_array(nk);
    R->attention_forward(out, a.att, a.x, a.k, a.v, 2, 5, 4, 2, 6);
    F->attention_backward(dq, dk, dv, wo, a.x, a.k, a.v, a.att, 2, 5, 4, 2, 6);
    check_grad("attention dq", f_attention, &a, a.x, nq, dq, nq, wo, 1e-2f, 2e-3);
    check_grad("attention dk", f_attention, &a, a.k, nk, dk, nq, wo, 1e-2f, 2e-3);
    check_grad("attention dv", f_attention, &a, a.v, nk, dv, nq, wo, 1e-2f, 2e-3);
    F->rope_backward(dq, wo, 2, 5, 4, 6, 4, 100.0f, 2);
    check_grad("rope", f_rope, &a, a.x, nq, dq, nq, wo, 1e-2f, 1e-3);
    float *p[] = {a.x, a.k, a.v, a.att, wo, out, dq, dk, dv};
    for (int i = 0; i < 9; i++)
        free(p[i]);
}

static int32_t ids_g[6] = {1, 4, 1, 0, 4, 4};
static void f_embed(float *out, void *p)
{
    ctx_t *c = p;
    R->embed_forward(out, ids_g, c->w, 6, c->C, 5);
}
static int32_t tg_g[4] = {2, -1, 0, 6};
static void f_ce(float *out, void *p)
{
    ctx_t *c = p;
    float probs[4 * 7];
    R->crossentropy_forward(out, probs, c->x, tg_g, 4, 7);
}

Test(grad, embedding_and_cross_entropy)
{
    ctx_t c = {.C = 3};
    c.w = rand_array(&g, 15, 1);
    float *w = rand_array(&g, 18, 1), *dt = zeros_array(15);
    F->embed_backward(dt, w, ids_g, 6, 3, 5);
    check_grad("embedding", f_embed, &c, c.w, 15, dt, 18, w, 1e-2f, 1e-3);
    c.x = rand_array(&g, 28, 2);
    float *wl = rand_array(&g, 4, 1), *loss = zeros_array(4), *probs = zeros_array(28), *dl = zeros_array(28);
    R->crossentropy_forward(loss, probs, c.x, tg_g, 4, 7);
    F->crossentropy_backward(dl, wl, probs, tg_g, 4, 7);
    check_grad("cross-entropy", f_ce, &c, c.x, 28, dl, 4, wl, 1e-2f, 1e-3);
    float *p[] = {c.w, w, dt, c.x, wl, loss, probs, dl};
    for (int i = 0; i < 8; i++)
        free(p[i]);
}
