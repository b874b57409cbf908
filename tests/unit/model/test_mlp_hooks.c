/* The MLP's input and output hook points, blocks.L.mlp.hook_in and blocks.L.mlp.hook_out,
 * against a computation by hand from the weights (GPT-2 and Llama random models), and what
 * replacing each one does to the run. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model.h"
#include "random_model.h"

enum { L_ = 2, D_ = 16, H_ = 4, K_ = 2, V_ = 29, B_ = 2, T_ = 7 };
static const int32_t TOK[B_ * T_] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7};

/* y (N, out) = x (N, in) @ l (+ b) */
static void linear(const lp_linear *l, const float *x, int N, float *y)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < l->out; o++) {
            double s = l->b ? l->b->data[o] : 0;
            for (int i = 0; i < l->in; i++)
                s += (double)x[n * l->in + i] * (l->trans ? l->w->data[o * l->in + i] : l->w->data[i * l->out + o]);
            y[n * l->out + o] = (float)s;
        }
}

/* ln2 of resid_mid, by hand: LayerNorm (GPT-2) or RMSNorm (Llama), with weight and bias */
static void norm2(const lp_model *m, const lp_block *bl, const float *x, int N, float *y)
{
    int D = m->cfg.d_model;
    for (int n = 0; n < N; n++) {
        const float *r = x + n * D;
        double mean = 0, var = 0;
        if (m->cfg.arch == LP_ARCH_GPT2) {
            for (int i = 0; i < D; i++)
                mean += r[i];
            mean /= D;
        }
        for (int i = 0; i < D; i++)
            var += (r[i] - mean) * (r[i] - mean);
        double inv = 1.0 / sqrt(var / D + m->cfg.eps);
        for (int i = 0; i < D; i++)
            y[n * D + i] = (float)((r[i] - mean) * inv * bl->ln2_w->data[i] + (bl->ln2_b ? bl->ln2_b->data[i] : 0));
    }
}

/* the MLP of block bl on x (N, D), by hand */
static void mlp(const lp_model *m, const lp_block *bl, const float *x, int N, float *y)
{
    int F = m->cfg.d_mlp;
    float *a = malloc(sizeof(float) * N * F), *u = malloc(sizeof(float) * N * F);
    if (m->cfg.arch == LP_ARCH_GPT2) {
        linear(&bl->fc, x, N, a);
        for (int i = 0; i < N * F; i++)
            a[i] = 0.5f * a[i] * (1.0f + tanhf(0.7978845608f * (a[i] + 0.044715f * a[i] * a[i] * a[i])));
        linear(&bl->proj, a, N, y);
    } else {
        linear(&bl->gate, x, N, a);
        linear(&bl->up, x, N, u);
        for (int i = 0; i < N * F; i++)
            a[i] = a[i] / (1.0f + expf(-a[i])) * u[i];
        linear(&bl->down, a, N, y);
    }
    free(a);
    free(u);
}

static void close_to(const float *a, const float *b, size_t n, float tol, const char *what)
{
    for (size_t i = 0; i < n; i++)
        cr_assert(fabsf(a[i] - b[i]) <= tol * (1.0f + fabsf(b[i])), "%s[%zu]: %g, expected %g", what, i, a[i], b[i]);
}

static lp_tensor *get(const lp_run *r, const char *fmt, int L)
{
    char name[96];
    snprintf(name, sizeof name, fmt, L);
    lp_tensor *t = lp_run_get(r, name);
    cr_assert_not_null(t, "%s was not cached", name);
    return t;
}

static void hand_values(int llama)
{
    lp_model *m = rm_model(llama, L_, D_, H_, K_, V_, 11);
    lp_run r;
    lp_run_opts o = {.cache_all = 1};
    cr_assert_eq(lp_model_run(m, TOK, B_, T_, &o, &r), 0, "%s", lp_last_error());
    int N = B_ * T_;
    float in[B_ * T_ * D_], out[B_ * T_ * D_];
    for (int L = 0; L < L_; L++) {
        const lp_tensor *mid = get(&r, "blocks.%d.hook_resid_mid", L), *hin = get(&r, "blocks.%d.mlp.hook_in", L);
        const lp_tensor *hout = get(&r, "blocks.%d.mlp.hook_out", L), *mo = get(&r, "blocks.%d.hook_mlp_out", L);
        cr_assert(hin->ndim == 3 && hin->shape[0] == B_ && hin->shape[1] == T_ && hin->shape[2] == D_);
        cr_assert(hout->ndim == 3 && hout->shape[2] == D_);
        norm2(m, &m->blocks[L], mid->data, N, in);
        close_to(hin->data, in, (size_t)N * D_, 1e-4f, "mlp.hook_in");
        mlp(m, &m->blocks[L], hin->data, N, out);
        close_to(hout->data, out, (size_t)N * D_, 1e-4f, "mlp.hook_out");
        cr_assert_eq(memcmp(hout->data, mo->data, sizeof(float) * N * D_), 0, "hook_out != hook_mlp_out");
    }
    /* the names, in forward order: ln2.hook_normalized, mlp.hook_in, ..., mlp.hook_out, hook_mlp_out */
    size_t at[4] = {0};
    const char *want[4] = {"blocks.1.ln2.hook_normalized", "blocks.1.mlp.hook_in", "blocks.1.mlp.hook_out",
                           "blocks.1.hook_mlp_out"};
    for (int k = 0; k < 4; k++) {
        cr_assert(lp_model_has_hook(m, want[k]));
        for (at[k] = 0; at[k] < r.n && strcmp(r.names[at[k]], want[k]); at[k]++) {
        }
        cr_assert_lt(at[k], r.n, "%s is not in the run's names", want[k]);
        if (k)
            cr_assert_lt(at[k - 1], at[k], "%s comes before %s", want[k - 1], want[k]);
    }
    lp_run_clear(&r);
    lp_model_free(m);
}

Test(mlp_hooks, gpt2_values_equal_a_hand_computation) { hand_values(0); }
Test(mlp_hooks, llama_values_equal_a_hand_computation) { hand_values(1); }

static void replaced(int llama)
{
    lp_model *m = rm_model(llama, L_, D_, H_, K_, V_, 12);
    int N = B_ * T_;
    lp_rng g;
    lp_rng_seed(&g, 5);
    lp_tensor *p = lp_tensor_randn(3, (int64_t[]){B_, T_, D_}, &g, 0.0f, 1.0f, LP_DEVICE_CPU);
    lp_run_opts all = {.cache_all = 1};
    lp_run clean, r;
    cr_assert_eq(lp_model_run(m, TOK, B_, T_, &all, &clean), 0, "%s", lp_last_error());

    /* a patched mlp.hook_in: the MLP's output is the MLP of the patch */
    lp_hook h = {.name = "blocks.0.mlp.hook_in", .kind = LP_HOOK_PATCH, .value = p, .head = -1, .pos = -1};
    lp_run_opts o = {.hooks = &h, .nhooks = 1, .cache_all = 1};
    cr_assert_eq(lp_model_run(m, TOK, B_, T_, &o, &r), 0, "%s", lp_last_error());
    float out[B_ * T_ * D_];
    mlp(m, &m->blocks[0], p->data, N, out);
    close_to(get(&r, "blocks.%d.mlp.hook_in", 0)->data, p->data, (size_t)N * D_, 0, "patched hook_in");
    close_to(get(&r, "blocks.%d.hook_mlp_out", 0)->data, out, (size_t)N * D_, 1e-4f, "mlp of the patch");
    /* ln2.hook_normalized is untouched: hook_in is a tensor of its own */
    close_to(get(&r, "blocks.%d.ln2.hook_normalized", 0)->data, get(&clean, "blocks.%d.ln2.hook_normalized", 0)->data,
             (size_t)N * D_, 0, "ln2.hook_normalized");
    lp_run_clear(&r);

    /* a patched mlp.hook_out: resid_post = resid_mid + the patch, and hook_mlp_out is it */
    h.name = "blocks.1.mlp.hook_out";
    cr_assert_eq(lp_model_run(m, TOK, B_, T_, &o, &r), 0, "%s", lp_last_error());
    const float *mid = get(&r, "blocks.%d.hook_resid_mid", 1)->data, *post = get(&r, "blocks.%d.hook_resid_post", 1)->data;
    for (int i = 0; i < N * D_; i++)
        out[i] = mid[i] + p->data[i];
    close_to(post, out, (size_t)N * D_, 1e-6f, "resid_post");
    close_to(get(&r, "blocks.%d.hook_mlp_out", 1)->data, p->data, (size_t)N * D_, 0, "hook_mlp_out");
    double dl = 0;
    for (int64_t i = 0; i < lp_tensor_numel(r.logits); i++)
        dl += fabs(r.logits->data[i] - clean.logits->data[i]);
    cr_assert_gt(dl, 1e-3, "the patch did not reach the logits");
    lp_run_clear(&r);

    /* a hook on hook_mlp_out does not change a cached mlp.hook_out (the same values) */
    h = (lp_hook){.name = "blocks.1.hook_mlp_out", .kind = LP_HOOK_ZERO, .head = -1, .pos = -1};
    cr_assert_eq(lp_model_run(m, TOK, B_, T_, &o, &r), 0, "%s", lp_last_error());
    close_to(get(&r, "blocks.%d.mlp.hook_out", 1)->data, get(&clean, "blocks.%d.mlp.hook_out", 1)->data,
             (size_t)N * D_, 0, "mlp.hook_out under a zeroed hook_mlp_out");
    const float *z = get(&r, "blocks.%d.hook_mlp_out", 1)->data;
    for (int i = 0; i < N * D_; i++)
        cr_assert_eq(z[i], 0.0f);
    lp_run_clear(&r);

    /* zeroing mlp.hook_out zeroes hook_mlp_out as well */
    h.name = "blocks.0.mlp.hook_out";
    cr_assert_eq(lp_model_run(m, TOK, B_, T_, &o, &r), 0, "%s", lp_last_error());
    z = get(&r, "blocks.%d.hook_mlp_out", 0)->data;
    for (int i = 0; i < N * D_; i++)
        cr_assert_eq(z[i], 0.0f);
    lp_run_clear(&r);
    lp_run_clear(&clean);
    lp_tensor_free(p);
    lp_model_free(m);
}

Test(mlp_hooks, gpt2_replacing_them_changes_the_mlp_and_the_residual) { replaced(0); }
Test(mlp_hooks, llama_replacing_them_changes_the_mlp_and_the_residual) { replaced(1); }

Test(mlp_hooks, attention_only_models_have_none)
{
    lp_model_config c = {.arch = LP_ARCH_GPT2, .n_layers = 1, .d_model = 8, .n_heads = 2, .n_kv_heads = 2,
                         .d_head = 4, .d_mlp = 8, .d_vocab = 11, .n_ctx = 8, .eps = 1e-5f, .attn_only = 1,
                         .bos = -1, .eos = -1};
    lp_model *m = lp_model_random(&c, 3);
    cr_assert_not_null(m, "%s", lp_last_error());
    cr_assert_not(lp_model_has_hook(m, "blocks.0.mlp.hook_in"));
    cr_assert_not(lp_model_has_hook(m, "blocks.0.mlp.hook_out"));
    lp_model_free(m);
}
