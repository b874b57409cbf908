/* Every fast CPU op against its naive reference (ops/<group>_ref.c) on random shapes, odd sizes
 * included, with a per-op tolerance. Gradients are checked against finite differences in
 * test_grad.c; the fast backward is checked against the reference backward here. */
#include <criterion/criterion.h>

#include "core/error.h"
#include "helpers.h"
#include "ops/ops.h"

static lp_rng g;
static const lp_ops *F, *R;

static void setup(void)
{
    lp_rng_seed(&g, 1234);
    F = lp_cpu_ops();
    R = lp_ref_ops();
}

TestSuite(ops, .init = setup);

Test(ops, matmul_all_layouts_against_reference)
{
    int sizes[][4] = {{1, 1, 1, 1}, {3, 7, 5, 9}, {2, 33, 17, 65}, {1, 64, 128, 48}, {4, 5, 1, 3}};
    for (int si = 0; si < 5; si++)
        for (int flags = 0; flags < 16; flags++) {
            int B = sizes[si][0], M = sizes[si][1], K = sizes[si][2], N = sizes[si][3];
            size_t nb = (flags & LP_SHARE_B) ? (size_t)K * N : (size_t)B * K * N;
            float *a = rand_array(&g, (size_t)B * M * K, 1), *b = rand_array(&g, nb, 1), *bias = rand_array(&g, N, 1);
            float *o1 = rand_array(&g, (size_t)B * M * N, 1), *o2 = copy_array(o1, (size_t)B * M * N);
            const float *bs = (flags & 1) ? bias : NULL;
            cr_assert_eq(F->matmul_forward(o1, a, b, bs, B, M, K, N, flags), 0);
            cr_assert_eq(R->matmul_forward(o2, a, b, bs, B, M, K, N, flags), 0);
            assert_close(o1, o2, (size_t)B * M * N, 1e-4, 1e-4, "matmul forward");
            /* backward */
            float *dout = rand_array(&g, (size_t)B * M * N, 1);
            float *da1 = zeros_array((size_t)B * M * K), *da2 = zeros_array((size_t)B * M * K);
            float *db1 = rand_array(&g, nb, 1), *db2 = copy_array(db1, nb);
            float *dbias1 = rand_array(&g, N, 1), *dbias2 = copy_array(dbias1, N);
            cr_assert_eq(F->matmul_backward(da1, db1, dbias1, dout, a, b, B, M, K, N, flags & ~LP_ACCUM), 0);
            cr_assert_eq(R->matmul_backward(da2, db2, dbias2, dout, a, b, B, M, K, N, flags & ~LP_ACCUM), 0);
            assert_close(da1, da2, (size_t)B * M * K, 1e-4, 1e-4, "matmul dA");
            assert_close(db1, db2, nb, 1e-4, 1e-4, "matmul dB (accumulated)");
            assert_close(dbias1, dbias2, N, 1e-4, 1e-4, "matmul dbias (accumulated)");
            float *p[] = {a, b, bias, o1, o2, dout, da1, da2, db1, db2, dbias1, dbias2};
            for (int i = 0; i < 12; i++)
                free(p[i]);
        }
}

Test(ops, norms_against_reference)
{
    int shapes[][2] = {{1, 1}, {3, 7}, {5, 768}, {17, 33}};
    for (int si = 0; si < 4; si++) {
        int N = shapes[si][0], C = shapes[si][1];
        size_t n = (size_t)N * C;
        float *x = rand_array(&g, n, 2), *w = rand_array(&g, C, 1), *bias = rand_array(&g, C, 1);
        float *o1 = zeros_array(n), *o2 = zeros_array(n), *m1 = zeros_array(N), *m2 = zeros_array(N);
        float *r1 = zeros_array(N), *r2 = zeros_array(N), *dout = rand_array(&g, n, 1);
        cr_assert_eq(F->layernorm_forward(o1, m1, r1, x, w, bias, N, C, 1e-5f), 0);
        cr_assert_eq(R->layernorm_forward(o2, m2, r2, x, w, bias, N, C, 1e-5f), 0);
        assert_close(o1, o2, n, 1e-4, 1e-4, "layernorm");
        assert_close(r1, r2, N, 1e-4, 1e-4, "layernorm rstd");
        float *di1 = zeros_array(n), *di2 = zeros_array(n), *dw1 = rand_array(&g, C, 1), *dw2 = copy_array(dw1, C);
        float *dbb1 = rand_array(&g, C, 1), *dbb2 = copy_array(dbb1, C);
        F->layernorm_backward(di1, dw1, dbb1, dout, x, w, m2, r2, N, C);
        R->layernorm_backward(di2, dw2, dbb2, dout, x, w, m2, r2, N, C);
        assert_close(di1, di2, n, 1e-4, 1e-3, "layernorm dinp");
        assert_close(dw1, dw2, C, 1e-4, 1e-4, "layernorm dweight");
        assert_close(dbb1, dbb2, C, 1e-4, 1e-4, "layernorm dbias");
        cr_assert_eq(F->rmsnorm_forward(o1, r1, x, w, N, C, 1e-6f), 0);
        cr_assert_eq(R->rmsnorm_forward(o2, r2, x, w, N, C, 1e-6f), 0);
        assert_close(o1, o2, n, 1e-5, 1e-4, "rmsnorm");
        F->rmsnorm_backward(di1, dw1, dout, x, w, r2, N, C);
        R->rmsnorm_backward(di2, dw2, dout, x, w, r2, N, C);
        assert_close(di1, di2, n, 1e-4, 1e-3, "rmsnorm dinp");
        assert_close(dw1, dw2, C, 1e-4, 1e-4, "rmsnorm dweight");
        /* rstd held constant (the frozen backward) */
        F->layernorm_backward_frozen(di1, dw1, dbb1, dout, x, w, m2, r2, N, C);
        R->layernorm_backward_frozen(di2, dw2, dbb2, dout, x, w, m2, r2, N, C);
        assert_close(di1, di2, n, 1e-4, 1e-3, "layernorm dinp (frozen)");
        assert_close(dw1, dw2, C, 1e-4, 1e-4, "layernorm dweight (frozen)");
        assert_close(dbb1, dbb2, C, 1e-4, 1e-4, "layernorm dbias (frozen)");
        F->rmsnorm_backward_frozen(di1, dw1, dout, x, w, r2, N, C);
        R->rmsnorm_backward_frozen(di2, dw2, dout, x, w, r2, N, C);
        assert_close(di1, di2, n, 1e-4, 1e-3, "rmsnorm dinp (frozen)");
        assert_close(dw1, dw2, C, 1e-4, 1e-4, "rmsnorm dweight (frozen)");
        F->bias_add_forward(o1, x, bias, N, C);
        R->bias_add_forward(o2, x, bias, N, C);
        assert_close(o1, o2, n, 1e-6, 1e-6, "bias add");
        F->bias_add_backward(di1, dbb1, dout, N, C);
        R->bias_add_backward(di2, dbb2, dout, N, C);
        assert_close(di1, di2, n, 0, 0, "bias add dinp");
        assert_close(dbb1, dbb2, C, 1e-4, 1e-4, "bias add dbias");
        float *p[] = {x, w, bias, o1, o2, m1, m2, r1, r2, dout, di1, di2, dw1, dw2, dbb1, dbb2};
        for (int i = 0; i < 16; i++)
            free(p[i]);
    }
}

Test(ops, activations_against_reference)
{
    size_t n = 1001;
    float *x = rand_array(&g, n, 3), *u = rand_array(&g, n, 1), *dout = rand_array(&g, n, 1);
    float *o1 = zeros_array(n), *o2 = zeros_array(n), *d1 = zeros_array(n), *d2 = zeros_array(n);
    float *e1 = zeros_array(n), *e2 = zeros_array(n);
    for (int form = 0; form < 2; form++) {
        F->gelu_forward(o1, x, n, form);
        R->gelu_forward(o2, x, n, form);
        assert_close(o1, o2, n, 1e-6, 1e-5, "gelu");
        F->gelu_backward(d1, dout, x, n, form);
        R->gelu_backward(d2, dout, x, n, form);
        assert_close(d1, d2, n, 1e-6, 1e-5, "gelu backward");
    }
    F->silu_forward(o1, x, n);
    R->silu_forward(o2, x, n);
    assert_close(o1, o2, n, 1e-6, 1e-5, "silu");
    F->silu_backward(d1, dout, x, n);
    R->silu_backward(d2, dout, x, n);
    assert_close(d1, d2, n, 1e-6, 1e-5, "silu backward");
    F->relu_forward(o1, x, n);
    R->relu_forward(o2, x, n);
    assert_close(o1, o2, n, 0, 0, "relu");
    F->relu_backward(d1, dout, x, n);
    R->relu_backward(d2, dout, x, n);
    assert_close(d1, d2, n, 0, 0, "relu backward");
    F->swiglu_forward(o1, x, u, n);
    R->swiglu_forward(o2, x, u, n);
    assert_close(o1, o2, n, 1e-6, 1e-5, "swiglu");
    F->swiglu_backward(d1, e1, dout, x, u, n);
    R->swiglu_backward(d2, e2, dout, x, u, n);
    assert_close(d1, d2, n, 1e-6, 1e-5, "swiglu dgate");
    assert_close(e1, e2, n, 1e-6, 1e-5, "swiglu dup");
    /* dgate written over dout, as the trainer's device path calls it (ops.h allows it) */
    for (int k = 0; k < 2; k++) {
        const lp_ops *o = k ? R : F;
        float *buf = copy_array(dout, n), *ea = zeros_array(n);
        o->swiglu_backward(buf, ea, buf, x, u, n);
        assert_close(buf, d2, n, 1e-6, 1e-5, "swiglu dgate in place");
        assert_close(ea, e2, n, 1e-6, 1e-5, "swiglu dup in place");
        free(buf), free(ea);
    }
    /* in place */
    float *y = copy_array(x, n);
    F->gelu_forward(y, y, n, LP_GELU_TANH);
    F->gelu_forward(o1, x, n, LP_GELU_TANH);
    assert_close(y, o1, n, 0, 0, "gelu in place");
    float *p[] = {x, u, dout, o1, o2, d1, d2, e1, e2, y};
    for (int i = 0; i < 10; i++)
        free(p[i]);
}

Test(ops, sparse_activations_against_reference)
{
    int N = 7, C = 37;
    size_t n = (size_t)N * C;
    float *x = rand_array(&g, n, 1), *th = rand_array(&g, C, 0.5), *dout = rand_array(&g, n, 1);
    for (int c = 0; c < 5; c++) /* ties */
        x[c] = x[10 + c] = 0.75f;
    float *o1 = zeros_array(n), *o2 = zeros_array(n), *d1 = zeros_array(n), *d2 = zeros_array(n);
    int ks[] = {0, 1, 5, 12, 37};
    for (int ki = 0; ki < 5; ki++) {
        cr_assert_eq(F->topk_act_forward(o1, x, N, C, ks[ki]), 0);
        cr_assert_eq(R->topk_act_forward(o2, x, N, C, ks[ki]), 0);
        assert_close(o1, o2, n, 0, 0, "topk activation");
        F->topk_act_backward(d1, dout, o1, N, C);
        R->topk_act_backward(d2, dout, o2, N, C);
        assert_close(d1, d2, n, 0, 0, "topk activation backward");
    }
    int nz = 0;
    F->topk_act_forward(o1, x, N, C, 5);
    for (int c = 0; c < C; c++)
        nz += o1[c] != 0;
    cr_assert(nz <= 5);
    cr_assert_eq(F->topk_act_forward(o1, x, N, C, C + 1), -1);
    F->jumprelu_forward(o1, x, th, N, C);
    R->jumprelu_forward(o2, x, th, N, C);
    assert_close(o1, o2, n, 0, 0, "jumprelu");
    float *t1 = zeros_array(C), *t2 = zeros_array(C);
    F->jumprelu_backward(d1, t1, dout, x, th, N, C, 0.5f);
    R->jumprelu_backward(d2, t2, dout, x, th, N, C, 0.5f);
    assert_close(d1, d2, n, 0, 0, "jumprelu dinp");
    assert_close(t1, t2, C, 1e-5, 1e-5, "jumprelu dthreshold");
    for (int k = 0; k < 2; k++) { /* dinp written over dout */
        const lp_ops *o = k ? R : F;
        float *buf = copy_array(dout, n), *ta = zeros_array(C);
        o->jumprelu_backward(buf, ta, buf, x, th, N, C, 0.5f);
        assert_close(buf, d2, n, 0, 0, "jumprelu dinp in place");
        assert_close(ta, t2, C, 1e-5, 1e-5, "jumprelu dthreshold in place");
        free(buf), free(ta);
    }
    float *p[] = {x, th, dout, o1, o2, d1, d2, t1, t2};
    for (int i = 0; i < 9; i++)
        free(p[i]);
}

Test(ops, softmax_attention_rope_against_reference)
{
    int Rr = 3, T = 5, C = 9;
    size_t n = (size_t)Rr * T * C;
    float *x = rand_array(&g, n, 3), *o1 = zeros_array(n), *o2 = zeros_array(n), *dout = rand_array(&g, n, 1);
    float *d1 = zeros_array(n), *d2 = zeros_array(n);
    for (int causal = 0; causal < 2; causal++) {
        F->softmax_forward(o1, x, Rr, T, C, causal);
        R->softmax_forward(o2, x, Rr, T, C, causal);
        assert_close(o1, o2, n, 1e-6, 1e-5, "softmax");
        F->softmax_backward(d1, dout, o2, Rr, T, C);
        R->softmax_backward(d2, dout, o2, Rr, T, C);
        assert_close(d1, d2, n, 1e-6, 1e-4, "softmax backward");
    }
    cr_assert_eq(o1[C - 1], 0.0f, "causal row 0 sees columns <= C - T");
    float *p[] = {x, o1, o2, dout, d1, d2};
    for (int i = 0; i < 6; i++)
        free(p[i]);

    int cfg[][5] = {{1, 1, 1, 1, 1}, {2, 7, 4, 2, 5}, {1, 13, 3, 3, 16}, {2, 9, 6, 1, 8}};
    for (int ci = 0; ci < 4; ci++) {
        int B = cfg[ci][0], Tt = cfg[ci][1], NH = cfg[ci][2], NKV = cfg[ci][3], HS = cfg[ci][4];
        size_t nq = (size_t)B * Tt * NH * HS, nk = (size_t)B * Tt * NKV * HS, na = (size_t)B * NH * Tt * Tt;
        float *q = rand_array(&g, nq, 1), *k = rand_array(&g, nk, 1), *v = rand_array(&g, nk, 1);
        float *out1 = zeros_array(nq), *out2 = zeros_array(nq), *a1 = zeros_array(na), *a2 = zeros_array(na);
        cr_assert_eq(F->attention_forward(out1, a1, q, k, v, B, Tt, NH, NKV, HS), 0);
        cr_assert_eq(R->attention_forward(out2, a2, q, k, v, B, Tt, NH, NKV, HS), 0);
        assert_close(a1, a2, na, 1e-5, 1e-4, "attention pattern");
        assert_close(out1, out2, nq, 1e-5, 1e-4, "attention out");
        float *go = rand_array(&g, nq, 1), *dq1 = zeros_array(nq), *dq2 = zeros_array(nq);
        float *dk1 = zeros_array(nk), *dk2 = zeros_array(nk), *dv1 = zeros_array(nk), *dv2 = zeros_array(nk);
        cr_assert_eq(F->attention_backward(dq1, dk1, dv1, go, q, k, v, a2, B, Tt, NH, NKV, HS), 0);
        cr_assert_eq(R->attention_backward(dq2, dk2, dv2, go, q, k, v, a2, B, Tt, NH, NKV, HS), 0);
        assert_close(dq1, dq2, nq, 1e-5, 1e-4, "attention dq");
        assert_close(dk1, dk2, nk, 1e-5, 1e-4, "attention dk");
        assert_close(dv1, dv2, nk, 1e-5, 1e-4, "attention dv");
        /* the pattern a constant: the full backward's dv, from att and dout alone */
        float *dvf1 = rand_array(&g, nk, 1), *dvf2 = rand_array(&g, nk, 1);
        cr_assert_eq(F->attention_backward_frozen(dvf1, go, a2, B, Tt, NH, NKV, HS), 0);
        cr_assert_eq(R->attention_backward_frozen(dvf2, go, a2, B, Tt, NH, NKV, HS), 0);
        assert_close(dvf1, dvf2, nk, 1e-5, 1e-4, "attention dv (frozen)");
        assert_close(dvf2, dv2, nk, 1e-5, 1e-4, "attention dv (frozen) against the full backward's");
        free(dvf1), free(dvf2);
        int rot = HS % 2 ? HS - 1 : HS;
        F->rope_forward(out1, q, B, Tt, NH, HS, rot, 10000.0f, 3);
        R->rope_forward(out2, q, B, Tt, NH, HS, rot, 10000.0f, 3);
        assert_close(out1, out2, nq, 1e-5, 1e-4, "rope");
        F->rope_backward(dq1, go, B, Tt, NH, HS, rot, 500.0f, 0);
        R->rope_backward(dq2, go, B, Tt, NH, HS, rot, 500.0f, 0);
        assert_close(dq1, dq2, nq, 1e-5, 1e-4, "rope backward");
        float *pp[] = {q, k, v, out1, out2, a1, a2, go, dq1, dq2, dk1, dk2, dv1, dv2};
        for (int i = 0; i < 14; i++)
            free(pp[i]);
    }
    float z = 0;
    cr_assert_eq(F->attention_forward(&z, &z, &z, &z, &z, 1, 1, 3, 2, 1), -1);
    cr_assert(strstr(lp_last_error(), "not a multiple"), "%s", lp_last_error());
}

/* Rotary embeddings from tables: the fast op against the reference, the tables of plain
 * rope give rope_forward's result, and sign -1 undoes sign 1. */
Test(ops, rope_table_against_reference)
{
    int cfg[][4] = {{1, 1, 1, 2}, {14, 7, 3, 8}, {40, 8, 4, 16}}; /* N, T, NH, HS */
    for (int ci = 0; ci < 3; ci++) {
        int N = cfg[ci][0], T = cfg[ci][1], NH = cfg[ci][2], HS = cfg[ci][3], half = HS / 2;
        size_t n = (size_t)N * NH * HS, nt = (size_t)T * half;
        float *cs = zeros_array(nt), *sn = zeros_array(nt);
        for (int p = 0; p < T; p++)
            for (int i = 0; i < half; i++) {
                float a = (float)p * (1.0f / powf(10000.0f, (float)(2 * i) / (float)HS));
                cs[p * half + i] = cosf(a), sn[p * half + i] = sinf(a);
            }
        float *x = rand_array(&g, n, 1), *a = copy_array(x, n), *b = copy_array(x, n), *want = zeros_array(n);
        cr_assert_eq(F->rope_table(a, cs, sn, N, T, NH, HS, 1.0f), 0, "%s", lp_last_error());
        cr_assert_eq(R->rope_table(b, cs, sn, N, T, NH, HS, 1.0f), 0, "%s", lp_last_error());
        assert_close(a, b, n, 1e-6, 1e-5, "rope table");
        if (N % T == 0) { /* rows are (N/T, T) sequences: rope_forward's layout */
            R->rope_forward(want, x, N / T, T, NH, HS, HS, 10000.0f, 0);
            assert_close(a, want, n, 1e-5, 1e-4, "rope table vs rope_forward");
        }
        cr_assert_eq(F->rope_table(a, cs, sn, N, T, NH, HS, -1.0f), 0, "%s", lp_last_error());
        assert_close(a, x, n, 1e-5, 1e-5, "rope table inverse");
        float *p[] = {cs, sn, x, a, b, want};
        for (int i = 0; i < 6; i++)
            free(p[i]);
    }
    float z = 0;
    cr_assert_eq(F->rope_table(&z, &z, &z, 1, 1, 1, 3, 1.0f), -1);
    cr_assert(strstr(lp_last_error(), "must be even"), "%s", lp_last_error());
}

Test(ops, embedding_loss_adamw_against_reference)
{
    int N = 11, C = 6, V = 13;
    int32_t ids[11] = {0, 3, 3, 12, 5, 0, 7, 7, 7, 1, 2};
    float *table = rand_array(&g, (size_t)V * C, 1), *o1 = zeros_array((size_t)N * C), *o2 = zeros_array((size_t)N * C);
    F->embed_forward(o1, ids, table, N, C, V);
    R->embed_forward(o2, ids, table, N, C, V);
    assert_close(o1, o2, (size_t)N * C, 0, 0, "embedding");
    float *dout = rand_array(&g, (size_t)N * C, 1), *dt1 = zeros_array((size_t)V * C), *dt2 = zeros_array((size_t)V * C);
    F->embed_backward(dt1, dout, ids, N, C, V);
    R->embed_backward(dt2, dout, ids, N, C, V);
    assert_close(dt1, dt2, (size_t)V * C, 1e-6, 1e-5, "embedding backward");
    ids[4] = 13;
    cr_assert_eq(F->embed_forward(o1, ids, table, N, C, V), -1);
    cr_assert(strstr(lp_last_error(), "id 13 at position 4 out of range [0, 13)"), "%s", lp_last_error());

    int32_t tg[5] = {0, 12, -1, 4, 7};
    int Nn = 5;
    float *logits = rand_array(&g, (size_t)Nn * V, 4), *l1 = zeros_array(Nn), *l2 = zeros_array(Nn);
    float *p1 = zeros_array((size_t)Nn * V), *p2 = zeros_array((size_t)Nn * V), *dl = rand_array(&g, Nn, 1);
    F->crossentropy_forward(l1, p1, logits, tg, Nn, V);
    R->crossentropy_forward(l2, p2, logits, tg, Nn, V);
    assert_close(l1, l2, Nn, 1e-5, 1e-5, "cross-entropy");
    assert_close(p1, p2, (size_t)Nn * V, 1e-7, 1e-5, "cross-entropy probs");
    cr_assert_eq(l1[2], 0.0f);
    float *dg1 = zeros_array((size_t)Nn * V), *dg2 = zeros_array((size_t)Nn * V);
    F->crossentropy_backward(dg1, dl, p2, tg, Nn, V);
    R->crossentropy_backward(dg2, dl, p2, tg, Nn, V);
    assert_close(dg1, dg2, (size_t)Nn * V, 1e-6, 1e-5, "cross-entropy backward");
    /* in place over one buffer (probs aliasing logits, then dlogits aliasing probs), as the
     * trainer's device path calls it: the same losses and gradient */
    for (int k = 0; k < 2; k++) {
        const lp_ops *o = k ? R : F;
        float *buf = copy_array(logits, (size_t)Nn * V), *la = zeros_array(Nn);
        cr_assert_eq(o->crossentropy_forward(la, buf, buf, tg, Nn, V), 0, "%s", lp_last_error());
        assert_close(la, l2, Nn, 1e-5, 1e-5, "cross-entropy in place");
        cr_assert_eq(o->crossentropy_backward(buf, dl, buf, tg, Nn, V), 0, "%s", lp_last_error());
        assert_close(buf, dg2, (size_t)Nn * V, 1e-6, 1e-5, "cross-entropy backward in place");
        free(buf), free(la);
    }
    tg[0] = V;
    cr_assert_eq(F->crossentropy_forward(l1, p1, logits, tg, Nn, V), -1);

    size_t np = 333;
    float *w1 = rand_array(&g, np, 1), *w2 = copy_array(w1, np), *gr = rand_array(&g, np, 1);
    float *m1 = zeros_array(np), *m2 = zeros_array(np), *v1 = zeros_array(np), *v2 = zeros_array(np);
    for (int t = 1; t <= 5; t++) {
        F->adamw_step(w1, gr, m1, v1, np, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, t);
        R->adamw_step(w2, gr, m2, v2, np, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, t);
    }
    assert_close(w1, w2, np, 1e-5, 1e-5, "adamw params");
    assert_close(v1, v2, np, 1e-6, 1e-5, "adamw second moment");
    cr_assert_eq(F->adamw_step(w1, gr, m1, v1, np, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0), -1);
    float *p[] = {table, o1, o2, dout, dt1, dt2, logits, l1, l2, p1, p2, dl, dg1, dg2, w1, w2, gr, m1, m2, v1, v2};
    for (int i = 0; i < 21; i++)
        free(p[i]);
}

Test(ops, reductions_topk_cosine_elementwise_against_reference)
{
    int64_t outer = 5, n = 13, inner = 7;
    size_t tot = (size_t)(outer * n * inner);
    float *x = rand_array(&g, tot, 2), *o1 = zeros_array(tot), *o2 = zeros_array(tot);
    int64_t splits[][3] = {{5, 13, 7}, {1, 455, 1}, {65, 7, 1}, {1, 5, 91}};
    for (int s = 0; s < 4; s++)
        for (int op = 0; op <= LP_REDUCE_MIN; op++) {
            size_t no = (size_t)(splits[s][0] * splits[s][2]);
            F->reduce_forward(o1, x, splits[s][0], splits[s][1], splits[s][2], op);
            R->reduce_forward(o2, x, splits[s][0], splits[s][1], splits[s][2], op);
            assert_close(o1, o2, no, 1e-4, 1e-4, "reduce");
            int32_t i1[512], i2[512];
            F->argmax_forward(i1, x, splits[s][0], splits[s][1], splits[s][2]);
            R->argmax_forward(i2, x, splits[s][0], splits[s][1], splits[s][2]);
            cr_assert_eq(memcmp(i1, i2, no * sizeof(int32_t)), 0, "argmax");
        }
    for (int k = 0; k <= 35; k += 7) {
        int32_t i1[35 * 13], i2[35 * 13];
        x[3] = x[4] = x[5] = 9.0f; /* ties */
        F->topk_forward(o1, i1, x, 13, 35, k);
        R->topk_forward(o2, i2, x, 13, 35, k);
        assert_close(o1, o2, (size_t)13 * k, 0, 0, "topk values");
        cr_assert_eq(memcmp(i1, i2, (size_t)13 * k * sizeof(int32_t)), 0, "topk indices");
    }
    float *y = rand_array(&g, tot, 1);
    F->cosine_forward(o1, x, y, 13, 35, 1e-8f);
    R->cosine_forward(o2, x, y, 13, 35, 1e-8f);
    assert_close(o1, o2, 13, 1e-6, 1e-5, "cosine");
    /* broadcasting: (5,13,7) op (13,1) with b's strides {0,1,0} */
    int64_t shape[3] = {5, 13, 7}, sa[3] = {91, 7, 1}, sb[3] = {0, 1, 0};
    for (int op = 0; op < 4; op++) {
        F->binary_forward(o1, x, y, op, 3, shape, sa, sb);
        R->binary_forward(o2, x, y, op, 3, shape, sa, sb);
        assert_close(o1, o2, tot, 1e-6, 1e-6, "binary");
    }
    int64_t st[3] = {1, 5, 65}; /* a permuted view */
    F->strided_copy(o1, x, 3, shape, st);
    R->strided_copy(o2, x, 3, shape, st);
    assert_close(o1, o2, tot, 0, 0, "strided copy");
    F->affine_forward(o1, x, 2.0f, -1.0f, tot);
    R->affine_forward(o2, x, 2.0f, -1.0f, tot);
    assert_close(o1, o2, tot, 1e-6, 1e-6, "affine");
    free(x);
    free(y);
    free(o1);
    free(o2);
}
