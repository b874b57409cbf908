/* The compute core (backend/dict/sae_ops.h): the fast forward and backward of every
 * architecture against the naive reference, and the reference's backward against finite
 * differences of its own loss. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "dict/sae_ops.h"
#include "dict/sae_work.h" /* which mode (sparse lists or dense products) a case ran in */
#include "rng.h"

typedef struct tcase {
    const char *name;
    lp_sae_config c;
    lp_sae_loss_opts o;
    float b_enc_shift; /* moves z down: fewer active features (sparse mode) */
    int dead;          /* mark every third feature dead (AuxK) */
    int fd;            /* the reference's gradients are true derivatives here (no AuxK stop-gradient) */
    int dense;         /* the mode the fast path must take: 1 dense products, 0 sparse lists */
} tcase;

static lp_sae_loss_opts opts(lp_sae_arch a, int d_in)
{
    lp_sae_config c = {.arch = a, .d_in = d_in, .d_out = d_in, .d_sae = 4};
    lp_sae_loss_opts o = lp_sae_loss_defaults(&c);
    o.l1 = 0.3f;
    o.bandwidth = 0.2f;
    return o;
}

static int cases(tcase *t, int di, int ds, int k)
{
    int n = 0;
    lp_sae_config sae = {.d_in = di, .d_sae = ds, .d_out = di, .k = k, .apply_b_dec_to_input = 1, .layer = -1};
    lp_sae_config tc = {.d_in = di, .d_sae = ds, .d_out = di + 2, .k = k, .transcoder = 1, .skip = 1, .layer = -1};
#define ADD(nm, cfg, ar, shift, dd, f)                                                                           \
    do {                                                                                                           \
        t[n] = (tcase){nm, cfg, opts(ar, di), shift, dd, f, 0};                                                     \
        t[n].c.arch = ar;                                                                                          \
        n++;                                                                                                       \
    } while (0)
    ADD("standard dense", sae, LP_SAE_STANDARD, 0.0f, 0, 1);
    t[n - 1].dense = 1;
    ADD("standard sparse", sae, LP_SAE_STANDARD, 1.6f, 0, 1);
    ADD("topk", sae, LP_SAE_TOPK, 0.0f, 0, 1);
    t[n - 1].o.aux_alpha = 0;
    ADD("topk auxk", sae, LP_SAE_TOPK, 0.0f, 1, 0);
    ADD("topk rescaled", sae, LP_SAE_TOPK, 0.0f, 0, 1);
    t[n - 1].c.rescale_acts_by_decoder_norm = 1, t[n - 1].o.aux_alpha = 0;
    ADD("batchtopk", sae, LP_SAE_BATCHTOPK, 0.0f, 0, 1);
    ADD("batchtopk threshold", sae, LP_SAE_BATCHTOPK, 0.0f, 0, 1);
    t[n - 1].o.batch_mode = 0, t[n - 1].dense = 1;
    ADD("jumprelu step", sae, LP_SAE_JUMPRELU, 1.6f, 0, 1);
    ADD("jumprelu step dense", sae, LP_SAE_JUMPRELU, 0.0f, 0, 1);
    t[n - 1].dense = 1;
    ADD("jumprelu tanh", sae, LP_SAE_JUMPRELU, 1.6f, 0, 1);
    t[n - 1].o.sparsity = LP_SPARSITY_TANH, t[n - 1].o.bandwidth = 0.3f;
    ADD("jumprelu tanh dense", sae, LP_SAE_JUMPRELU, 0.3f, 0, 1);
    t[n - 1].o.sparsity = LP_SPARSITY_TANH, t[n - 1].o.bandwidth = 2.0f, t[n - 1].dense = 1;
    ADD("jumprelu pre-act", sae, LP_SAE_JUMPRELU, 0.3f, 0, 1);
    t[n - 1].o.pre_act = 0.05f, t[n - 1].dense = 1;
    ADD("matryoshka", sae, LP_SAE_MATRYOSHKA, 0.0f, 0, 1);
    t[n - 1].o.n_prefix = 3, t[n - 1].o.prefix[0] = ds / 4, t[n - 1].o.prefix[1] = ds / 2, t[n - 1].o.prefix[2] = ds;
    ADD("skip transcoder relu", tc, LP_SAE_STANDARD, 0.4f, 0, 1);
    t[n - 1].dense = 1;
    ADD("skip transcoder topk", tc, LP_SAE_TOPK, 0.0f, 0, 1);
    t[n - 1].o.aux_alpha = 0;
    ADD("skip transcoder jumprelu", tc, LP_SAE_JUMPRELU, 1.6f, 0, 1);
#undef ADD
    return n;
}

static void fill(float *a, size_t n, lp_rng *g, float scale)
{
    for (size_t i = 0; i < n; i++)
        a[i] = scale * (float)lp_rng_normal(g);
}

/* An SAE of t's shape with everything random (decoder norms unequal, thresholds spread). */
static lp_sae *make(const tcase *t, uint64_t seed)
{
    lp_sae *s = lp_sae_new(&t->c);
    cr_assert_not_null(s, "%s: %s", t->name, lp_last_error());
    cr_assert_eq(lp_sae_init_random(s, seed, 0.5f, 0.2f), 0);
    lp_rng g;
    lp_rng_seed(&g, seed + 1);
    const lp_sae_config *c = &t->c;
    for (int i = 0; i < c->d_sae; i++) {
        float m = 0.5f + lp_rng_uniform(&g) * 1.5f;
        for (int d = 0; d < c->d_out; d++)
            s->W_dec->data[i * c->d_out + d] *= m;
    }
    fill(s->W_enc->data, (size_t)c->d_in * c->d_sae, &g, 0.4f);
    fill(s->b_enc->data, c->d_sae, &g, 0.1f);
    for (int i = 0; i < c->d_sae; i++)
        s->b_enc->data[i] -= t->b_enc_shift * sqrtf(c->d_in / 5.0f); /* z grows as sqrt(d_in) */
    fill(s->b_dec->data, c->d_out, &g, 0.1f);
    if (s->threshold)
        for (int i = 0; i < c->d_sae; i++)
            s->threshold->data[i] = 0.05f + 0.3f * lp_rng_uniform(&g);
    if (s->W_skip)
        fill(s->W_skip->data, (size_t)c->d_out * c->d_in, &g, 0.2f);
    return s;
}

static void data(float *x, float *y, const lp_sae_config *c, int N, uint64_t seed)
{
    lp_rng g;
    lp_rng_seed(&g, seed);
    fill(x, (size_t)N * c->d_in, &g, 1.0f);
    fill(y, (size_t)N * c->d_out, &g, 1.0f);
}

static double maxabs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

static void close_arrays(const char *what, const char *name, const float *a, const float *b, size_t n, double rtol)
{
    double scale = fmax(maxabs(b, n), 1e-3);
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(a[i] - b[i]) <= rtol * scale, "%s: %s[%zu] fast %g, reference %g", name, what, i, a[i], b[i]);
}

static void fast_vs_ref(int di, int ds, int k, int N, uint64_t seed)
{
    tcase t[20];
    int nc = cases(t, di, ds, k);
    for (int ci = 0; ci < nc; ci++) {
        const lp_sae_config *c = &t[ci].c;
        lp_sae *s = make(&t[ci], seed + ci);
        uint8_t *dead = calloc(ds, 1);
        for (int i = 0; t[ci].dead && i < ds; i += 3)
            dead[i] = 1;
        t[ci].o.dead = t[ci].dead ? dead : NULL;
        float *x = malloc((size_t)N * c->d_in * sizeof(float)), *y = malloc((size_t)N * c->d_out * sizeof(float));
        data(x, y, c, N, seed * 7 + ci);
        const float *target = c->transcoder ? y : NULL;
        lp_sae_work *w1 = lp_sae_work_new(c, N, t[ci].o.k_aux), *w2 = lp_sae_work_new(c, N, t[ci].o.k_aux);
        lp_sae_grads *g1 = lp_sae_grads_new(c), *g2 = lp_sae_grads_new(c);
        lp_sae_losses L1, L2;
        cr_assert_eq(lp_sae_forward(&L1, w1, s, x, target, N, &t[ci].o), 0, "%s: %s", t[ci].name, lp_last_error());
        cr_assert_eq(lp_sae_forward_ref(&L2, w2, s, x, target, N, &t[ci].o), 0, "%s", lp_last_error());
        size_t NS = (size_t)N * ds;
        cr_assert_eq(w1->dense, t[ci].dense, "%s ran in the %s mode", t[ci].name, w1->dense ? "dense" : "sparse");
        close_arrays("z", t[ci].name, lp_sae_work_z(w1), lp_sae_work_z(w2), NS, 1e-5);
        close_arrays("f", t[ci].name, lp_sae_work_f(w1), lp_sae_work_f(w2), NS, 1e-5);
        close_arrays("x_hat", t[ci].name, lp_sae_work_x_hat(w1), lp_sae_work_x_hat(w2), (size_t)N * c->d_out, 1e-5);
        cr_assert(L2.l0 > 0 && L2.l0 < ds, "%s: l0 %g (a case that tests nothing)", t[ci].name, L2.l0);
        double lf[] = {L1.mse, L1.sparsity, L1.pre_act, L1.aux, L1.prefix, L1.l0, L1.sse, L1.sst, L1.min_active};
        double lr[] = {L2.mse, L2.sparsity, L2.pre_act, L2.aux, L2.prefix, L2.l0, L2.sse, L2.sst, L2.min_active};
        for (int q = 0; q < 9; q++)
            cr_assert(fabs(lf[q] - lr[q]) <= 1e-5 * fmax(1.0, fabs(lr[q])), "%s: loss part %d fast %.9g ref %.9g",
                      t[ci].name, q, lf[q], lr[q]);
        cr_assert_eq(lp_sae_backward(g1, w1, s, x, target, N, &t[ci].o), 0, "%s", lp_last_error());
        cr_assert_eq(lp_sae_backward_ref(g2, w2, s, x, target, N, &t[ci].o), 0, "%s", lp_last_error());
        const char *names[] = {"dW_enc", "db_enc", "dW_dec", "db_dec", "dthreshold", "dW_skip"};
        float *a1[] = {g1->W_enc, g1->b_enc, g1->W_dec, g1->b_dec, g1->threshold, g1->W_skip};
        float *a2[] = {g2->W_enc, g2->b_enc, g2->W_dec, g2->b_dec, g2->threshold, g2->W_skip};
        size_t ns[] = {(size_t)c->d_in * ds, ds, (size_t)ds * c->d_out, c->d_out, ds, (size_t)c->d_out * c->d_in};
        for (int q = 0; q < 6; q++) {
            cr_assert_eq(a1[q] != NULL, a2[q] != NULL);
            if (a1[q])
                close_arrays(names[q], t[ci].name, a1[q], a2[q], ns[q], 2e-4);
        }
        cr_assert(maxabs(g2->W_enc, ns[0]) > 0 && maxabs(g2->W_dec, ns[2]) > 0, "%s: zero gradients", t[ci].name);
        if (t[ci].dead)
            cr_assert(L2.aux > 0, "%s: no AuxK loss", t[ci].name);
        lp_sae_grads_free(g1), lp_sae_grads_free(g2), lp_sae_work_free(w1), lp_sae_work_free(w2);
        free(x), free(y), free(dead), lp_sae_free(s);
    }
}

Test(sae_ops, fast_path_equals_the_reference_tiny) { fast_vs_ref(5, 12, 3, 7, 11); }
Test(sae_ops, fast_path_equals_the_reference_larger) { fast_vs_ref(16, 96, 8, 64, 23); }

/* The reference's total loss, and whether the active set equals `mask` (NULL: store it). */
static double total_ref(lp_sae_work *w, const lp_sae *s, const float *x, const float *y, int N,
                        const lp_sae_loss_opts *o, uint8_t *mask, int *flipped)
{
    lp_sae_losses L;
    cr_assert_eq(lp_sae_forward_ref(&L, w, s, x, y, N, o), 0);
    const float *f = lp_sae_work_f(w);
    for (int p = 0; p < N * s->cfg.d_sae; p++)
        if (flipped)
            *flipped |= mask[p] != (f[p] != 0);
        else
            mask[p] = f[p] != 0;
    return L.total;
}

Test(sae_ops, reference_backward_equals_finite_differences)
{
    const int di = 5, ds = 12, N = 7;
    tcase t[20];
    int nc = cases(t, di, ds, 3);
    for (int ci = 0; ci < nc; ci++) {
        if (!t[ci].fd)
            continue;
        const lp_sae_config *c = &t[ci].c;
        lp_sae *s = make(&t[ci], 100 + ci);
        float x[N * 8], y[N * 8];
        data(x, y, c, N, 200 + ci);
        const float *target = c->transcoder ? y : NULL;
        lp_sae_work *w = lp_sae_work_new(c, N, t[ci].o.k_aux);
        lp_sae_grads *g = lp_sae_grads_new(c);
        cr_assert_eq(lp_sae_backward_ref(g, w, s, x, target, N, &t[ci].o), 0);
        uint8_t mask[N * 12];
        total_ref(w, s, x, target, N, &t[ci].o, mask, NULL);
        /* the threshold's gradient is the rectangle kernel's estimate, not a derivative */
        lp_tensor *P[] = {s->W_enc, s->b_enc, s->W_dec, s->b_dec, s->W_skip};
        float *D[] = {g->W_enc, g->b_enc, g->W_dec, g->b_dec, g->W_skip};
        int bad = 0, checked = 0, skipped = 0;
        for (int q = 0; q < 5; q++) {
            if (!P[q])
                continue;
            for (int64_t e = 0; e < lp_tensor_numel(P[q]); e++) {
                float *p = P[q]->data + e, p0 = *p;
                *p = p0 + 1e-4f;
                int flip = 0;
                double hp = *p - p0, lp = total_ref(w, s, x, target, N, &t[ci].o, mask, &flip);
                *p = p0 - 1e-4f;
                double hm = p0 - *p, lm = total_ref(w, s, x, target, N, &t[ci].o, mask, &flip);
                *p = p0;
                if (flip) { /* a feature switched on or off inside +-h: no derivative there */
                    skipped++;
                    continue;
                }
                double fd = (lp - lm) / (hp + hm), an = D[q][e];
                checked++;
                if (fabs(fd - an) > 2e-3 * fmax(1.0, fabs(fd)))
                    bad++, cr_log_warn("%s: tensor %d entry %ld: finite differences %g, backward %g", t[ci].name, q,
                                       (long)e, fd, an);
            }
        }
        cr_assert(bad == 0, "%s: %d of %d gradients differ from finite differences", t[ci].name, bad, checked);
        cr_assert(skipped <= checked / 10, "%s: %d of %d entries flipped a feature", t[ci].name, skipped, checked);
        lp_sae_grads_free(g), lp_sae_work_free(w), lp_sae_free(s);
    }
}

Test(sae_ops, topk_decode_is_a_gather_and_encode_decode_match_the_reference)
{
    tcase t[20];
    cases(t, 16, 96, 8);
    lp_sae *s = make(&t[4], 5); /* topk rescaled */
    const int N = 9;
    float x[N * 16], y[N * 16], f1[N * 96], f2[N * 96], z1[N * 96], z2[N * 96], h1[N * 16], h2[N * 16];
    data(x, y, &s->cfg, N, 3);
    cr_assert_eq(lp_sae_encode(z1, f1, s, x, N, 1), 0);
    cr_assert_eq(lp_sae_encode_ref(z2, f2, s, x, N, 1), 0);
    close_arrays("f", "encode", f1, f2, N * 96, 1e-5);
    for (int n = 0; n < N; n++) {
        int nz = 0;
        for (int i = 0; i < 96; i++)
            nz += f1[n * 96 + i] != 0;
        cr_assert(nz <= 8 && nz > 0, "token %d has %d features", n, nz);
    }
    cr_assert_eq(lp_sae_decode(h1, s, f1, x, N), 0);
    cr_assert_eq(lp_sae_decode_ref(h2, s, f1, x, N), 0);
    close_arrays("x_hat", "decode", h1, h2, N * 16, 1e-5);
    lp_sae_free(s);
}

/* A wide topk SAE (width >= 64 k: the fast selection bounds the k-th value by block maxima)
 * picks the same features as the reference, ties (equal encoder columns) by the lower index,
 * tokens with fewer than k positive pre-activations included; the training forward's lists
 * hold exactly those features. */
Test(sae_ops, wide_topk_selection_equals_the_reference_with_ties)
{
    tcase t[20];
    cases(t, 6, 1536, 8);
    tcase *tk = &t[2]; /* plain topk */
    cr_assert_eq(tk->c.arch, LP_SAE_TOPK);
    lp_sae *s = make(tk, 9);
    const int N = 24, ds = 1536, di = 6;
    for (int i = 0; i < 400; i++) /* feature 1000 + i ties feature 100 + 2i: equal columns and biases */
        for (int j = 0; j < di; j++) {
            s->W_enc->data[j * ds + 1000 + i] = s->W_enc->data[j * ds + 100 + 2 * i];
            s->b_enc->data[1000 + i] = s->b_enc->data[100 + 2 * i];
        }
    float *x = malloc(sizeof(float) * N * di), *y = malloc(sizeof(float) * N * di);
    float *f1 = malloc(sizeof(float) * N * ds), *f2 = malloc(sizeof(float) * N * ds);
    float *z1 = malloc(sizeof(float) * N * ds), *z2 = malloc(sizeof(float) * N * ds);
    cr_assert(x && y && f1 && f2 && z1 && z2);
    data(x, y, &s->cfg, N, 4);
    for (int j = 0; j < di; j++) /* token 0: x = b_dec, so z = b_enc, few of them positive */
        x[j] = s->b_dec->data[j];
    for (int i = 0; i < ds; i++)
        s->b_enc->data[i] = i % 300 == 7 ? 0.05f : -1.0f;
    cr_assert_eq(lp_sae_encode(z1, f1, s, x, N, 1), 0, "%s", lp_last_error());
    cr_assert_eq(lp_sae_encode_ref(z2, f2, s, x, N, 1), 0, "%s", lp_last_error());
    int ties = 0, fewer = 0;
    for (int n = 0; n < N; n++) {
        int nz = 0;
        for (int i = 0; i < ds; i++) {
            cr_assert((f1[n * ds + i] != 0) == (f2[n * ds + i] != 0), "token %d feature %d: fast %g reference %g", n, i,
                      f1[n * ds + i], f2[n * ds + i]);
            nz += f1[n * ds + i] != 0;
            ties += i >= 1000 && i < 1400 && f1[n * ds + i] == 0 && f1[n * ds + 100 + 2 * (i - 1000)] != 0;
        }
        cr_assert(nz <= 8);
        fewer += nz < 8;
    }
    cr_assert(ties > 0, "no tie was decided");
    cr_assert(fewer > 0, "no token with fewer than k positive features");
    close_arrays("f", "wide encode", f1, f2, (size_t)N * ds, 1e-5);
    /* the training forward's lists: the same features, in feature order */
    lp_sae_work *w = lp_sae_work_new(&s->cfg, N, 0);
    cr_assert_not_null(w);
    lp_sae_losses L;
    lp_sae_loss_opts o = tk->o;
    cr_assert_eq(lp_sae_forward(&L, w, s, x, y, N, &o), 0, "%s", lp_last_error());
    const float *f = lp_sae_work_f(w);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < ds; i++)
            cr_assert_eq(f[n * ds + i] != 0, f1[n * ds + i] != 0, "forward: token %d feature %d", n, i);
    lp_sae_work_free(w);
    free(x), free(y), free(f1), free(f2), free(z1), free(z2);
    lp_sae_free(s);
}
