/* Every CUDA op against the CPU reference (same signatures, ops/ops.h). Built whenever the
 * CUDA path is; where no GPU is present every test prints "skipped: no GPU" and skips.
 * Run on a GPU machine with: ctest -R cuda --output-on-failure (from the build dir). */
#include <criterion/criterion.h>
#include <stdio.h>

#include "core/error.h"
#include "helpers.h"
#include "ops/ops.h"
#include "tensor_ops.h"

static lp_rng g;
static const lp_backend *be;
static const lp_ops *R;

static void setup(void)
{
    lp_rng_seed(&g, 4321);
    R = lp_ref_ops();
    be = lp_device_available(LP_DEVICE_CUDA) ? lp_backend_get(LP_DEVICE_CUDA) : NULL;
}
TestSuite(cuda, .init = setup);

#define NEED_GPU()                                                                                            \
    do {                                                                                                      \
        if (!be) {                                                                                            \
            printf("skipped: no GPU\n");                                                                      \
            cr_skip_test("skipped: no GPU");                                                                  \
        }                                                                                                     \
    } while (0)

/* device copies of host arrays; freed by dfree */
static void *up(const void *h, size_t bytes)
{
    void *d = be->alloc(bytes ? bytes : 4, "test");
    cr_assert_not_null(d, "%s", lp_last_error());
    if (bytes)
        cr_assert_eq(be->to_device(d, h, bytes), 0, "%s", lp_last_error());
    return d;
}
#define UP(h, n) ((float *)up((h), (n) * sizeof(float)))
static float *down(const float *d, size_t n)
{
    float *h = zeros_array(n);
    cr_assert_eq(be->to_host(h, d, n * sizeof(float)), 0, "%s", lp_last_error());
    return h;
}
/* compares a device array with a host reference and frees the host copy */
static void check(const float *d, const float *want, size_t n, double atol, double rtol, const char *what)
{
    float *h = down(d, n);
    assert_close(h, want, n, atol, rtol, what);
    free(h);
}

Test(cuda, matmul_forward_and_backward)
{
    NEED_GPU();
    int sizes[][4] = {{1, 1, 1, 1}, {3, 7, 5, 9}, {2, 65, 33, 129}, {1, 128, 256, 96}};
    for (int si = 0; si < 4; si++)
        for (int flags = 0; flags < 16; flags++) {
            int B = sizes[si][0], M = sizes[si][1], K = sizes[si][2], N = sizes[si][3];
            size_t na = (size_t)B * M * K, nb = (flags & LP_SHARE_B) ? (size_t)K * N : (size_t)B * K * N,
                   no = (size_t)B * M * N;
            float *a = rand_array(&g, na, 1), *b = rand_array(&g, nb, 1), *bias = rand_array(&g, N, 1);
            float *o = rand_array(&g, no, 1), *dout = rand_array(&g, no, 1), *da = zeros_array(na);
            float *db = rand_array(&g, nb, 1), *dbias = rand_array(&g, N, 1);
            float *A = UP(a, na), *Bd = UP(b, nb), *BI = UP(bias, N), *O = UP(o, no), *G = UP(dout, no);
            float *DA = UP(da, na), *DB = UP(db, nb), *DBI = UP(dbias, N);
            const float *bs = (flags & 1) ? bias : NULL;
            cr_assert_eq(be->ops->matmul_forward(O, A, Bd, (flags & 1) ? BI : NULL, B, M, K, N, flags), 0, "%s",
                         lp_last_error());
            R->matmul_forward(o, a, b, bs, B, M, K, N, flags);
            check(O, o, no, 1e-3, 1e-3, "cuda matmul");
            cr_assert_eq(be->ops->matmul_backward(DA, DB, DBI, G, A, Bd, B, M, K, N, flags & ~LP_ACCUM), 0);
            R->matmul_backward(da, db, dbias, dout, a, b, B, M, K, N, flags & ~LP_ACCUM);
            check(DA, da, na, 1e-3, 1e-3, "cuda matmul dA");
            check(DB, db, nb, 1e-3, 1e-3, "cuda matmul dB");
            check(DBI, dbias, N, 1e-3, 1e-3, "cuda matmul dbias");
            float *hp[] = {a, b, bias, o, dout, da, db, dbias};
            float *dp[] = {A, Bd, BI, O, G, DA, DB, DBI};
            for (int i = 0; i < 8; i++) {
                free(hp[i]);
                be->free(dp[i]);
            }
        }
}

Test(cuda, norms_and_activations)
{
    NEED_GPU();
    int N = 37, C = 771;
    size_t n = (size_t)N * C;
    float *x = rand_array(&g, n, 2), *w = rand_array(&g, C, 1), *bb = rand_array(&g, C, 1), *go = rand_array(&g, n, 1);
    float *u = rand_array(&g, n, 1), *o = zeros_array(n), *mean = zeros_array(N), *rstd = zeros_array(N);
    float *dx = zeros_array(n), *dw = zeros_array(C), *db = zeros_array(C), *dx2 = zeros_array(n);
    float *X = UP(x, n), *W = UP(w, C), *BB = UP(bb, C), *GO = UP(go, n), *U = UP(u, n), *O = UP(o, n);
    float *MEAN = UP(mean, N), *RSTD = UP(rstd, N), *DX = UP(dx, n), *DW = UP(dw, C), *DB = UP(db, C),
          *DX2 = UP(dx, n);
    be->ops->layernorm_forward(O, MEAN, RSTD, X, W, BB, N, C, 1e-5f);
    R->layernorm_forward(o, mean, rstd, x, w, bb, N, C, 1e-5f);
    check(O, o, n, 1e-4, 1e-4, "cuda layernorm");
    be->ops->layernorm_backward(DX, DW, DB, GO, X, W, MEAN, RSTD, N, C);
    R->layernorm_backward(dx, dw, db, go, x, w, mean, rstd, N, C);
    check(DX, dx, n, 1e-4, 1e-3, "cuda layernorm dinp");
    check(DW, dw, C, 1e-3, 1e-3, "cuda layernorm dweight");
    check(DB, db, C, 1e-3, 1e-3, "cuda layernorm dbias");
    be->ops->layernorm_backward_frozen(DX, DW, DB, GO, X, W, MEAN, RSTD, N, C);
    R->layernorm_backward_frozen(dx, dw, db, go, x, w, mean, rstd, N, C);
    check(DX, dx, n, 1e-4, 1e-3, "cuda layernorm dinp (frozen)");
    check(DW, dw, C, 1e-3, 1e-3, "cuda layernorm dweight (frozen)");
    check(DB, db, C, 1e-3, 1e-3, "cuda layernorm dbias (frozen)");
    be->ops->rmsnorm_forward(O, RSTD, X, W, N, C, 1e-6f);
    R->rmsnorm_forward(o, rstd, x, w, N, C, 1e-6f);
    check(O, o, n, 1e-4, 1e-4, "cuda rmsnorm");
    be->ops->rmsnorm_backward(DX, DW, GO, X, W, RSTD, N, C);
    R->rmsnorm_backward(dx, dw, go, x, w, rstd, N, C);
    check(DX, dx, n, 1e-4, 1e-3, "cuda rmsnorm dinp");
    check(DW, dw, C, 1e-3, 1e-3, "cuda rmsnorm dweight");
    be->ops->rmsnorm_backward_frozen(DX, DW, GO, X, W, RSTD, N, C);
    R->rmsnorm_backward_frozen(dx, dw, go, x, w, rstd, N, C);
    check(DX, dx, n, 1e-4, 1e-3, "cuda rmsnorm dinp (frozen)");
    check(DW, dw, C, 1e-3, 1e-3, "cuda rmsnorm dweight (frozen)");
    be->ops->bias_add_forward(O, X, BB, N, C);
    R->bias_add_forward(o, x, bb, N, C);
    check(O, o, n, 1e-6, 1e-6, "cuda bias add");
    for (int form = 0; form < 2; form++) {
        be->ops->gelu_forward(O, X, n, form);
        R->gelu_forward(o, x, n, form);
        check(O, o, n, 1e-5, 1e-5, "cuda gelu");
        be->ops->gelu_backward(DX, GO, X, n, form);
        R->gelu_backward(dx, go, x, n, form);
        check(DX, dx, n, 1e-5, 1e-4, "cuda gelu backward");
    }
    be->ops->silu_forward(O, X, n);
    R->silu_forward(o, x, n);
    check(O, o, n, 1e-5, 1e-5, "cuda silu");
    be->ops->silu_backward(DX, GO, X, n);
    R->silu_backward(dx, go, x, n);
    check(DX, dx, n, 1e-5, 1e-4, "cuda silu backward");
    be->ops->relu_forward(O, X, n);
    R->relu_forward(o, x, n);
    check(O, o, n, 0, 0, "cuda relu");
    be->ops->swiglu_forward(O, X, U, n);
    R->swiglu_forward(o, x, u, n);
    check(O, o, n, 1e-5, 1e-5, "cuda swiglu");
    be->ops->swiglu_backward(DX, DX2, GO, X, U, n);
    R->swiglu_backward(dx, dx2, go, x, u, n);
    check(DX, dx, n, 1e-5, 1e-4, "cuda swiglu dgate");
    check(DX2, dx2, n, 1e-5, 1e-4, "cuda swiglu dup");
    /* dgate written over dout, as the trainer calls it for Llama's MLP */
    be->to_device(DX, go, n * sizeof(float));
    be->ops->swiglu_backward(DX, DX2, DX, X, U, n);
    check(DX, dx, n, 1e-5, 1e-4, "cuda swiglu dgate in place");
    check(DX2, dx2, n, 1e-5, 1e-4, "cuda swiglu dup in place");
    float *th = zeros_array(C); /* JumpReLU backward, out of place and in place */
    R->jumprelu_backward(dx, th, go, x, w, N, C, 0.5f);
    for (int inplace = 0; inplace < 2; inplace++) {
        be->ops->fill(DB, 0.0f, C);
        be->to_device(DX, go, n * sizeof(float));
        be->ops->jumprelu_backward(inplace ? DX : DX2, DB, inplace ? DX : GO, X, W, N, C, 0.5f);
        check(inplace ? DX : DX2, dx, n, 0, 0, "cuda jumprelu dinp");
        check(DB, th, C, 1e-4, 1e-4, "cuda jumprelu dthreshold");
    }
    free(th);
    be->ops->jumprelu_forward(O, X, W, N, C);
    R->jumprelu_forward(o, x, w, N, C);
    check(O, o, n, 0, 0, "cuda jumprelu");
    for (int k = 0; k <= 40; k += 13) { /* with ties: equal values keep the lower index */
        for (size_t i = 0; i < n; i += 7)
            x[i] = x[(i / C) * C];
        be->to_device(X, x, n * sizeof(float));
        be->ops->topk_act_forward(O, X, N, C, k);
        R->topk_act_forward(o, x, N, C, k);
        check(O, o, n, 0, 0, "cuda topk activation");
    }
    for (int causal = 0; causal < 2; causal++) {
        be->ops->softmax_forward(O, X, N, 3, C / 3, causal);
        R->softmax_forward(o, x, N, 3, C / 3, causal);
        check(O, o, n, 1e-6, 1e-4, "cuda softmax");
        be->ops->softmax_backward(DX, GO, O, N, 3, C / 3);
        R->softmax_backward(dx, go, o, N, 3, C / 3);
        check(DX, dx, n, 1e-6, 1e-3, "cuda softmax backward");
    }
    float *hp[] = {x, w, bb, go, u, o, mean, rstd, dx, dw, db, dx2};
    float *dp[] = {X, W, BB, GO, U, O, MEAN, RSTD, DX, DW, DB, DX2};
    for (int i = 0; i < 12; i++) {
        free(hp[i]);
        be->free(dp[i]);
    }
}

Test(cuda, attention_and_rope)
{
    NEED_GPU();
    int cfg[][5] = {{1, 1, 1, 1, 1}, {2, 7, 4, 2, 5}, {2, 33, 6, 3, 16}, {1, 64, 8, 8, 64}};
    for (int ci = 0; ci < 4; ci++) {
        int B = cfg[ci][0], T = cfg[ci][1], NH = cfg[ci][2], NKV = cfg[ci][3], HS = cfg[ci][4];
        size_t nq = (size_t)B * T * NH * HS, nk = (size_t)B * T * NKV * HS, na = (size_t)B * NH * T * T;
        float *q = rand_array(&g, nq, 1), *k = rand_array(&g, nk, 1), *v = rand_array(&g, nk, 1);
        float *go = rand_array(&g, nq, 1), *o = zeros_array(nq), *a = zeros_array(na);
        float *dq = zeros_array(nq), *dk = zeros_array(nk), *dv = zeros_array(nk);
        float *Q = UP(q, nq), *K = UP(k, nk), *V = UP(v, nk), *GO = UP(go, nq), *O = UP(o, nq), *A = UP(a, na);
        float *DQ = UP(dq, nq), *DK = UP(dk, nk), *DV = UP(dv, nk);
        cr_assert_eq(be->ops->attention_forward(O, A, Q, K, V, B, T, NH, NKV, HS), 0, "%s", lp_last_error());
        R->attention_forward(o, a, q, k, v, B, T, NH, NKV, HS);
        check(A, a, na, 1e-5, 1e-3, "cuda attention pattern");
        check(O, o, nq, 1e-4, 1e-3, "cuda attention out");
        cr_assert_eq(be->ops->attention_backward(DQ, DK, DV, GO, Q, K, V, A, B, T, NH, NKV, HS), 0, "%s",
                     lp_last_error());
        R->attention_backward(dq, dk, dv, go, q, k, v, a, B, T, NH, NKV, HS);
        check(DQ, dq, nq, 1e-4, 1e-3, "cuda attention dq");
        check(DK, dk, nk, 1e-4, 1e-3, "cuda attention dk");
        check(DV, dv, nk, 1e-4, 1e-3, "cuda attention dv");
        cr_assert_eq(be->ops->attention_backward_frozen(DV, GO, A, B, T, NH, NKV, HS), 0, "%s", lp_last_error());
        R->attention_backward_frozen(dv, go, a, B, T, NH, NKV, HS);
        check(DV, dv, nk, 1e-4, 1e-3, "cuda attention dv (frozen)");
        int rot = HS % 2 ? HS - 1 : HS;
        be->ops->rope_forward(O, Q, B, T, NH, HS, rot, 10000.0f, 5);
        R->rope_forward(o, q, B, T, NH, HS, rot, 10000.0f, 5);
        check(O, o, nq, 1e-4, 1e-4, "cuda rope");
        be->ops->rope_backward(DQ, GO, B, T, NH, HS, rot, 10000.0f, 5);
        R->rope_backward(dq, go, B, T, NH, HS, rot, 10000.0f, 5);
        check(DQ, dq, nq, 1e-4, 1e-4, "cuda rope backward");
        float *hp[] = {q, k, v, go, o, a, dq, dk, dv};
        float *dp[] = {Q, K, V, GO, O, A, DQ, DK, DV};
        for (int i = 0; i < 9; i++) {
            free(hp[i]);
            be->free(dp[i]);
        }
    }
}

Test(cuda, rope_table)
{
    NEED_GPU();
    int cfg[][4] = {{1, 1, 1, 2}, {14, 7, 3, 8}, {96, 32, 4, 64}}; /* N, T, NH, HS */
    for (int ci = 0; ci < 3; ci++) {
        int N = cfg[ci][0], T = cfg[ci][1], NH = cfg[ci][2], HS = cfg[ci][3];
        size_t n = (size_t)N * NH * HS, nt = (size_t)T * (HS / 2);
        float *cs = rand_array(&g, nt, 1), *sn = rand_array(&g, nt, 1), *x = rand_array(&g, n, 1);
        float *CS = UP(cs, nt), *SN = UP(sn, nt), *X = UP(x, n);
        for (int k = 0; k < 2; k++) {
            float sign = k ? -1.0f : 1.0f;
            cr_assert_eq(be->ops->rope_table(X, CS, SN, N, T, NH, HS, sign), 0, "%s", lp_last_error());
            R->rope_table(x, cs, sn, N, T, NH, HS, sign);
            check(X, x, n, 1e-5, 1e-5, k ? "cuda rope table backward" : "cuda rope table");
        }
        free(cs), free(sn), free(x);
        be->free(CS), be->free(SN), be->free(X);
    }
}

Test(cuda, embedding_loss_adamw)
{
    NEED_GPU();
    int N = 9, C = 5, V = 11;
    int32_t ids[9] = {0, 3, 3, 10, 5, 0, 7, 7, 7};
    float *table = rand_array(&g, (size_t)V * C, 1), *o = zeros_array((size_t)N * C), *go = rand_array(&g, (size_t)N * C, 1);
    float *dt = zeros_array((size_t)V * C);
    int32_t *IDS = up(ids, sizeof ids);
    float *TB = UP(table, (size_t)V * C), *O = UP(o, (size_t)N * C), *GO = UP(go, (size_t)N * C), *DT = UP(dt, (size_t)V * C);
    cr_assert_eq(be->ops->embed_forward(O, IDS, TB, N, C, V), 0, "%s", lp_last_error());
    R->embed_forward(o, ids, table, N, C, V);
    check(O, o, (size_t)N * C, 0, 0, "cuda embedding");
    be->ops->embed_backward(DT, GO, IDS, N, C, V);
    R->embed_backward(dt, go, ids, N, C, V);
    check(DT, dt, (size_t)V * C, 1e-5, 1e-5, "cuda embedding backward");
    ids[4] = 11;
    be->to_device(IDS, ids, sizeof ids);
    cr_assert_eq(be->ops->embed_forward(O, IDS, TB, N, C, V), -1);
    cr_assert(strstr(lp_last_error(), "id 11 at position 4 out of range"), "%s", lp_last_error());

    int32_t tg[4] = {0, 10, -1, 4};
    float *logits = rand_array(&g, 4 * 11, 3), *loss = zeros_array(4), *probs = zeros_array(44), *dl = rand_array(&g, 4, 1);
    float *dlog = zeros_array(44);
    int32_t *TG = up(tg, sizeof tg);
    float *LG = UP(logits, 44), *LS = UP(loss, 4), *PR = UP(probs, 44), *DL = UP(dl, 4), *DLG = UP(dlog, 44);
    cr_assert_eq(be->ops->crossentropy_forward(LS, PR, LG, TG, 4, 11), 0, "%s", lp_last_error());
    R->crossentropy_forward(loss, probs, logits, tg, 4, 11);
    check(LS, loss, 4, 1e-5, 1e-5, "cuda cross-entropy");
    check(PR, probs, 44, 1e-6, 1e-5, "cuda cross-entropy probs");
    be->ops->crossentropy_backward(DLG, DL, PR, TG, 4, 11);
    R->crossentropy_backward(dlog, dl, probs, tg, 4, 11);
    check(DLG, dlog, 44, 1e-6, 1e-5, "cuda cross-entropy backward");
    /* in place over one buffer, as the trainer's device path calls it */
    float *BUF = UP(logits, 44);
    cr_assert_eq(be->ops->crossentropy_forward(LS, BUF, BUF, TG, 4, 11), 0, "%s", lp_last_error());
    check(LS, loss, 4, 1e-5, 1e-5, "cuda cross-entropy in place");
    cr_assert_eq(be->ops->crossentropy_backward(BUF, DL, BUF, TG, 4, 11), 0, "%s", lp_last_error());
    check(BUF, dlog, 44, 1e-6, 1e-5, "cuda cross-entropy backward in place");
    be->free(BUF);

    size_t np = 1000;
    float *p = rand_array(&g, np, 1), *gr = rand_array(&g, np, 1), *m = zeros_array(np), *v = zeros_array(np);
    float *P = UP(p, np), *GR = UP(gr, np), *M = UP(m, np), *VV = UP(v, np);
    for (int t = 1; t <= 3; t++) {
        be->ops->adamw_step(P, GR, M, VV, np, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, t);
        R->adamw_step(p, gr, m, v, np, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, t);
    }
    check(P, p, np, 1e-5, 1e-5, "cuda adamw");
    float *hp[] = {table, o, go, dt, logits, loss, probs, dl, dlog, p, gr, m, v};
    void *dp[] = {IDS, TB, O, GO, DT, TG, LG, LS, PR, DL, DLG, P, GR, M, VV};
    for (int i = 0; i < 13; i++)
        free(hp[i]);
    for (int i = 0; i < 15; i++)
        be->free(dp[i]);
}

Test(cuda, reductions_selection_elementwise)
{
    NEED_GPU();
    size_t tot = 5 * 13 * 7;
    float *x = rand_array(&g, tot, 2), *y = rand_array(&g, tot, 1), *o = zeros_array(tot);
    float *X = UP(x, tot), *Y = UP(y, tot), *O = UP(o, tot);
    for (int op = 0; op <= LP_REDUCE_MIN; op++) {
        be->ops->reduce_forward(O, X, 5, 13, 7, op);
        R->reduce_forward(o, x, 5, 13, 7, op);
        check(O, o, 35, 1e-5, 1e-5, "cuda reduce");
    }
    int32_t *I = be->alloc(tot * 4, "t"), hi[455], ri[455];
    be->ops->argmax_forward(I, X, 5, 13, 7);
    R->argmax_forward(ri, x, 5, 13, 7);
    be->to_host(hi, I, 35 * 4);
    cr_assert_eq(memcmp(hi, ri, 35 * 4), 0, "cuda argmax");
    x[0] = x[1] = x[2] = 9.0f;
    be->to_device(X, x, tot * 4);
    be->ops->topk_forward(O, I, X, 13, 35, 6);
    R->topk_forward(o, ri, x, 13, 35, 6);
    check(O, o, 13 * 6, 0, 0, "cuda topk values");
    be->to_host(hi, I, 13 * 6 * 4);
    cr_assert_eq(memcmp(hi, ri, 13 * 6 * 4), 0, "cuda topk indices");
    be->ops->cosine_forward(O, X, Y, 13, 35, 1e-8f);
    R->cosine_forward(o, x, y, 13, 35, 1e-8f);
    check(O, o, 13, 1e-5, 1e-5, "cuda cosine");
    int64_t shape[3] = {5, 13, 7}, sa[3] = {91, 7, 1}, sb[3] = {0, 1, 0}, st[3] = {1, 5, 65};
    for (int op = 0; op < 4; op++) {
        be->ops->binary_forward(O, X, Y, op, 3, shape, sa, sb);
        R->binary_forward(o, x, y, op, 3, shape, sa, sb);
        check(O, o, tot, 1e-6, 1e-6, "cuda binary");
    }
    be->ops->strided_copy(O, X, 3, shape, st);
    R->strided_copy(o, x, 3, shape, st);
    check(O, o, tot, 0, 0, "cuda strided copy");
    free(x), free(y), free(o);
    be->free(X), be->free(Y), be->free(O), be->free(I);
}

Test(cuda, tensors_move_between_devices)
{
    NEED_GPU();
    int64_t shape[2] = {3, 4};
    lp_tensor *c = lp_tensor_randn(2, shape, &g, 0, 1, LP_DEVICE_CPU);
    lp_tensor *d = lp_tensor_to(c, LP_DEVICE_CUDA);
    cr_assert_not_null(d, "%s", lp_last_error());
    cr_assert_eq(d->device, LP_DEVICE_CUDA);
    lp_tensor *dt = lp_tensor_transpose(d, 0, 1);
    lp_tensor *prod = lp_tensor_matmul(dt, d), *want = NULL;
    lp_tensor *ct = lp_tensor_transpose(c, 0, 1);
    want = lp_tensor_matmul(ct, c);
    lp_tensor *back = lp_tensor_to(prod, LP_DEVICE_CPU);
    assert_close(back->data, want->data, 16, 1e-4, 1e-4, "cuda tensor matmul");
    cr_assert_null(lp_tensor_binary(c, d, LP_BIN_ADD));
    cr_assert(strstr(lp_last_error(), "different devices (cpu and cuda)"), "%s", lp_last_error());
    lp_tensor *s = lp_tensor_reduce(d, 1, LP_REDUCE_SUM, 0), *sc = lp_tensor_reduce(c, 1, LP_REDUCE_SUM, 0);
    lp_tensor *sh = lp_tensor_to(s, LP_DEVICE_CPU);
    assert_close(sh->data, sc->data, 3, 1e-5, 1e-5, "cuda tensor sum");
    lp_tensor *tv[] = {c, d, dt, prod, want, ct, back, s, sc, sh};
    for (int i = 0; i < 10; i++)
        lp_tensor_free(tv[i]);
}
