/* Models (backend/model): loading errors, hook points and their shapes, cache filters, and
 * hooks: patching with the clean cache reproduces clean logits exactly; ablation and
 * steering change the logits as computed independently here. Agreement with Hugging Face
 * transformers is tests/peer/test_models.py. */
#include <criterion/criterion.h>
#include <math.h>

#include "core/interrupt.h"
#include "fixtures.h"
#include "model/model.h"

static char dir[64];
static lp_model *m;

static lp_model *load(const fx_opts *o)
{
    fx_make(dir, o);
    lp_model *r = lp_model_load(dir);
    return r;
}

static void fini(void)
{
    lp_model_free(m);
    m = NULL;
    fx_remove(dir);
}

TestSuite(model, .fini = fini);

static const int32_t TOK[2][6] = {{3, 1, 4, 1, 5, 9}, {2, 7, 18, 28, 18, 28}};

static lp_run run(const int32_t *toks, int B, int T, const lp_run_opts *o)
{
    lp_run r;
    cr_assert_eq(lp_model_run(m, toks, B, T, o, &r), 0, "%s", lp_last_error());
    return r;
}

static void assert_equal(const lp_tensor *a, const lp_tensor *b, const char *what)
{
    cr_assert(lp_tensor_same_shape(a, b), "%s: shapes differ", what);
    size_t n = (size_t)lp_tensor_numel(a);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(a->data[i], b->data[i], "%s: element %zu %g vs %g", what, i, a->data[i], b->data[i]);
}

static float max_diff(const float *a, const float *b, size_t n)
{
    float d = 0;
    for (size_t i = 0; i < n; i++)
        d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

/* Logits of one row x (D) through the final norm and the unembedding, computed here. */
static void unembed_row(const float *x, float *logits)
{
    int D = m->cfg.d_model, rms = m->cfg.arch == LP_ARCH_LLAMA;
    double mu = 0, var = 0;
    if (!rms) {
        for (int c = 0; c < D; c++)
            mu += x[c];
        mu /= D;
    }
    for (int c = 0; c < D; c++)
        var += (x[c] - mu) * (x[c] - mu);
    double s = sqrt(var / D + m->cfg.eps);
    for (int v = 0; v < m->cfg.d_vocab; v++) {
        double acc = 0;
        for (int c = 0; c < D; c++) {
            double y = (x[c] - mu) / s * m->lnf_w->data[c] + (rms ? 0 : m->lnf_b->data[c]);
            acc += y * m->unembed.w->data[(size_t)v * D + c];
        }
        logits[v] = (float)acc;
    }
}

Test(model, gpt2_hook_points_and_shapes)
{
    m = load(&(fx_opts){0});
    cr_assert_not_null(m, "%s", lp_last_error());
    lp_run_opts o = {.cache_all = 1};
    lp_run r = run(&TOK[0][0], 2, 6, &o);
    cr_assert_eq(r.logits->ndim, 3);
    cr_assert_eq(r.logits->shape[2], FX_V);
    char name[96];
    size_t count = 0;
    while (lp_model_hook_name(m, count, name, sizeof name) == 0) {
        cr_assert_not_null(lp_run_get(&r, name), "hook %s was not cached", name);
        cr_assert(lp_model_has_hook(m, name));
        count++;
    }
    cr_assert_eq(count, r.n);
    cr_assert_eq(count, 2 + 19 * FX_L + 2);
    lp_tensor *sc = lp_run_get(&r, "blocks.1.attn.hook_attn_scores");
    cr_assert(sc->ndim == 4 && sc->shape[1] == FX_H && sc->shape[2] == 6 && sc->shape[3] == 6);
    cr_assert(isinf(sc->data[1]) && sc->data[1] < 0, "masked scores are -inf");
    lp_tensor *z = lp_run_get(&r, "blocks.0.attn.hook_z");
    cr_assert(z->ndim == 4 && z->shape[2] == FX_H && z->shape[3] == FX_D / FX_H);
    lp_tensor *scale = lp_run_get(&r, "ln_final.hook_scale");
    cr_assert(scale->ndim == 3 && scale->shape[2] == 1);
    cr_assert(!lp_model_has_hook(m, "blocks.2.hook_resid_pre"));
    cr_assert(!lp_model_has_hook(m, "blocks.01.hook_resid_pre"));
    cr_assert(!lp_model_has_hook(m, "blocks. 1.hook_resid_pre"));
    cr_assert(!lp_model_has_hook(m, "blocks.+1.hook_resid_pre"));
    cr_assert(!lp_model_has_hook(m, "blocks.-1.hook_resid_pre"));
    cr_assert(!lp_model_has_hook(m, "blocks.1.hook_resid_pre "));
    cr_assert(!lp_model_has_hook(m, "blocks.0.attn.hook_rot_q"));
    /* the batch rows are independent, and causal: row 0 alone gives the same logits */
    lp_run r1 = run(&TOK[0][0], 1, 6, NULL);
    cr_assert_eq(r1.n, 0, "no cache asked, none kept");
    cr_assert(max_diff(r1.logits->data, r.logits->data, 6 * FX_V) < 1e-5);
    lp_run r2 = run(&TOK[0][0], 1, 3, NULL);
    cr_assert(max_diff(r2.logits->data, r.logits->data, 3 * FX_V) < 1e-5);
    lp_run_clear(&r);
    lp_run_clear(&r1);
    lp_run_clear(&r2);
}

Test(model, llama_loads_untied_and_tied)
{
    m = load(&(fx_opts){.llama = 1});
    cr_assert_not_null(m, "%s", lp_last_error());
    cr_assert_eq(m->cfg.n_kv_heads, FX_KV);
    lp_run_opts o = {.cache_all = 1};
    lp_run r = run(&TOK[0][0], 2, 6, &o);
    cr_assert_not_null(lp_run_get(&r, "blocks.1.attn.hook_rot_k"));
    cr_assert_eq(lp_run_get(&r, "blocks.1.attn.hook_k")->shape[2], FX_KV);
    cr_assert_eq(lp_run_get(&r, "blocks.1.attn.hook_pattern")->shape[1], FX_H);
    cr_assert_null(lp_run_get(&r, "hook_pos_embed"));
    /* rotary embedding keeps norms per pair: |rot_q| == |q| */
    lp_tensor *q = lp_run_get(&r, "blocks.0.attn.hook_q"), *rq = lp_run_get(&r, "blocks.0.attn.hook_rot_q");
    double a = 0, b = 0;
    for (int64_t i = 0; i < lp_tensor_numel(q); i++)
        a += q->data[i] * q->data[i], b += rq->data[i] * rq->data[i];
    cr_assert(fabs(a - b) < 1e-3 * a);
    /* last position from its own final resid_post */
    float want[FX_V];
    lp_tensor *rp = lp_run_get(&r, "blocks.1.hook_resid_post");
    unembed_row(rp->data + 5 * FX_D, want);
    cr_assert(max_diff(want, r.logits->data + 5 * FX_V, FX_V) < 1e-4);
    lp_run_clear(&r);
    size_t untied = m->param_bytes;
    lp_model_free(m);
    fx_remove(dir);
    m = load(&(fx_opts){.llama = 1, .tied = 1});
    cr_assert_not_null(m, "%s", lp_last_error());
    cr_assert_eq(m->param_bytes, untied - FX_V * FX_D * sizeof(float), "tied weights are held once");
    cr_assert_eq(lp_tensor_storage_refs(m->wte), 2);
}

Test(model, gpt2_without_prefix) {
    m = load(&(fx_opts){.no_prefix = 1});
    cr_assert_not_null(m, "%s", lp_last_error());
}

Test(model, no_cache_without_a_filter)
{
    m = load(&(fx_opts){0});
    lp_run_opts o = {.cache_all = 0};
    lp_run r = run(&TOK[0][0], 1, 6, &o);
    cr_assert_eq(r.n, 0);
    cr_assert_not_null(r.logits);
    lp_run_clear(&r);
}

static int only_resid(void *ud, const char *name) { return strstr(name, "resid_post") != NULL; }

Test(model, cache_filter_function)
{
    m = load(&(fx_opts){0});
    lp_run_opts o = {.filter = only_resid};
    lp_run r = run(&TOK[0][0], 1, 6, &o);
    cr_assert_eq(r.n, FX_L);
    cr_assert_not_null(lp_run_get(&r, "blocks.0.hook_resid_post"));
    cr_assert_null(lp_run_get(&r, "blocks.0.hook_resid_pre"));
    lp_run_clear(&r);
}

/* Patching each of these hook points at every position with the clean run's cache makes the
 * corrupted run give the clean logits exactly. */
static void patch_reproduces_clean(int llama)
{
    m = load(&(fx_opts){.llama = llama});
    lp_run_opts all = {.cache_all = 1};
    lp_run clean = run(&TOK[0][0], 1, 6, &all);
    const char *points[] = {"blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.1.hook_resid_mid",
                            "blocks.1.hook_resid_post", "ln_final.hook_normalized"};
    for (size_t i = 0; i < sizeof points / sizeof *points; i++) {
        lp_hook h = {.name = points[i], .kind = LP_HOOK_PATCH, .value = lp_run_get(&clean, points[i]),
                     .head = -1, .pos = -1};
        lp_run_opts o = {.hooks = &h, .nhooks = 1};
        lp_run r = run(&TOK[1][0], 1, 6, &o);
        assert_equal(r.logits, clean.logits, points[i]);
        lp_run_clear(&r);
    }
    /* every head's z and every layer's mlp_out together */
    lp_hook hs[4] = {
        {.name = "blocks.0.attn.hook_z", .kind = LP_HOOK_PATCH, .head = -1, .pos = -1},
        {.name = "blocks.1.attn.hook_z", .kind = LP_HOOK_PATCH, .head = -1, .pos = -1},
        {.name = "blocks.0.hook_mlp_out", .kind = LP_HOOK_PATCH, .head = -1, .pos = -1},
        {.name = "blocks.1.hook_mlp_out", .kind = LP_HOOK_PATCH, .head = -1, .pos = -1}};
    for (int i = 0; i < 4; i++)
        hs[i].value = lp_run_get(&clean, hs[i].name);
    lp_run_opts o = {.hooks = hs, .nhooks = 4, .cache_all = 1};
    lp_run r = run(&TOK[1][0], 1, 6, &o);
    /* the corrupted embedding still flows through the residual stream: logits differ */
    cr_assert(max_diff(r.logits->data, clean.logits->data, 6 * FX_V) > 1e-4);
    assert_equal(lp_run_get(&r, "blocks.1.attn.hook_z"), lp_run_get(&clean, "blocks.1.attn.hook_z"), "patched z");
    lp_run_clear(&r);
    /* patching one position of resid_pre 0 only changes that position onward */
    lp_hook p = {.name = "blocks.0.hook_resid_pre", .kind = LP_HOOK_PATCH,
                 .value = lp_run_get(&clean, "blocks.0.hook_resid_pre"), .head = -1, .pos = 3};
    lp_run_opts po = {.hooks = &p, .nhooks = 1, .cache_all = 1};
    lp_run corrupt = run(&TOK[1][0], 1, 6, NULL);
    r = run(&TOK[1][0], 1, 6, &po);
    cr_assert(max_diff(r.logits->data, corrupt.logits->data, 3 * FX_V) == 0, "positions before 3 unchanged");
    cr_assert(max_diff(r.logits->data + 3 * FX_V, corrupt.logits->data + 3 * FX_V, FX_V) > 1e-4);
    /* the patch does not write into the cached embedding it shares storage with */
    lp_tensor *e = lp_run_get(&r, llama ? "hook_embed" : "hook_pos_embed");
    lp_tensor *pre = lp_run_get(&r, "blocks.0.hook_resid_pre");
    cr_assert(e->data != pre->data);
    lp_run_clear(&r);
    lp_run_clear(&corrupt);
    lp_run_clear(&clean);
}

Test(model, patch_reproduces_clean_gpt2) { patch_reproduces_clean(0); }
Test(model, patch_reproduces_clean_llama) { patch_reproduces_clean(1); }

/* Zero-ablating the last MLP leaves resid_post == resid_mid: logits from resid_mid. */
static void ablate_and_steer(int llama)
{
    m = load(&(fx_opts){.llama = llama});
    lp_run_opts all = {.cache_all = 1};
    lp_run clean = run(&TOK[0][0], 1, 6, &all);
    float want[FX_V];
    lp_hook h = {.name = "blocks.1.hook_mlp_out", .kind = LP_HOOK_ZERO, .head = -1, .pos = -1};
    lp_run_opts o = {.hooks = &h, .nhooks = 1};
    lp_run r = run(&TOK[0][0], 1, 6, &o);
    const lp_tensor *mid = lp_run_get(&clean, "blocks.1.hook_resid_mid");
    for (int t = 0; t < 6; t++) {
        unembed_row(mid->data + t * FX_D, want);
        cr_assert(max_diff(want, r.logits->data + t * FX_V, FX_V) < 1e-4, "ablated logits at %d", t);
    }
    lp_run_clear(&r);
    /* steering: resid_post of the last layer + 2.5 * v at every position */
    float vec[FX_D];
    for (int c = 0; c < FX_D; c++)
        vec[c] = (float)sin(c + 1.0);
    lp_tensor *v = lp_tensor_from_data(1, (int64_t[]){FX_D}, vec, LP_DEVICE_CPU);
    lp_hook s = {.name = "blocks.1.hook_resid_post", .kind = LP_HOOK_ADD, .value = v, .scale = 2.5f, .head = -1,
                 .pos = -1};
    lp_run_opts so = {.hooks = &s, .nhooks = 1};
    r = run(&TOK[0][0], 1, 6, &so);
    const lp_tensor *post = lp_run_get(&clean, "blocks.1.hook_resid_post");
    for (int t = 0; t < 6; t++) {
        float x[FX_D];
        for (int c = 0; c < FX_D; c++)
            x[c] = post->data[t * FX_D + c] + 2.5f * vec[c];
        unembed_row(x, want);
        cr_assert(max_diff(want, r.logits->data + t * FX_V, FX_V) < 1e-4, "steered logits at %d", t);
    }
    lp_run_clear(&r);
    /* per-position steering: only position 4 moves */
    s.pos = 4;
    r = run(&TOK[0][0], 1, 6, &so);
    cr_assert(max_diff(r.logits->data, clean.logits->data, 4 * FX_V) == 0);
    cr_assert(max_diff(r.logits->data + 4 * FX_V, clean.logits->data + 4 * FX_V, FX_V) > 1e-3);
    lp_run_clear(&r);
    lp_tensor_free(v);
    /* per-head zero ablation of z: that head is 0, attn_out drops by z_h @ W_O[h] */
    lp_hook zh = {.name = "blocks.1.attn.hook_z", .kind = LP_HOOK_ZERO, .head = 2, .pos = -1};
    lp_run_opts zo = {.hooks = &zh, .nhooks = 1, .cache_all = 1};
    r = run(&TOK[0][0], 1, 6, &zo);
    const lp_tensor *z = lp_run_get(&clean, "blocks.1.attn.hook_z"), *z2 = lp_run_get(&r, "blocks.1.attn.hook_z");
    const lp_tensor *ao = lp_run_get(&clean, "blocks.1.hook_attn_out"), *ao2 = lp_run_get(&r, "blocks.1.hook_attn_out");
    int S = FX_D / FX_H;
    const lp_linear *O = &m->blocks[1].o;
    for (int t = 0; t < 6; t++)
        for (int hh = 0; hh < FX_H; hh++)
            for (int k = 0; k < S; k++) {
                float a = z->data[(t * FX_H + hh) * S + k], b = z2->data[(t * FX_H + hh) * S + k];
                cr_assert(hh == 2 ? b == 0 : a == b);
            }
    for (int t = 0; t < 6; t++)
        for (int c = 0; c < FX_D; c++) {
            double d = 0;
            for (int k = 0; k < S; k++) {
                int in = 2 * S + k;
                float w = O->trans ? O->w->data[(size_t)c * O->in + in] : O->w->data[(size_t)in * O->out + c];
                d += z->data[(t * FX_H + 2) * S + k] * w;
            }
            cr_assert(fabs(ao->data[t * FX_D + c] - d - ao2->data[t * FX_D + c]) < 1e-4);
        }
    lp_run_clear(&r);
    /* mean ablation: every position gets the mean over positions */
    lp_hook mh = {.name = "blocks.0.hook_mlp_out", .kind = LP_HOOK_MEAN, .head = -1, .pos = -1};
    lp_run_opts mo = {.hooks = &mh, .nhooks = 1, .cache_all = 1};
    r = run(&TOK[0][0], 1, 6, &mo);
    const lp_tensor *mc = lp_run_get(&clean, "blocks.0.hook_mlp_out"), *ma = lp_run_get(&r, "blocks.0.hook_mlp_out");
    for (int c = 0; c < FX_D; c++) {
        double mean = 0;
        for (int t = 0; t < 6; t++)
            mean += mc->data[t * FX_D + c] / 6.0;
        for (int t = 0; t < 6; t++)
            cr_assert(fabs(ma->data[t * FX_D + c] - mean) < 1e-5);
    }
    lp_run_clear(&r);
    lp_run_clear(&clean);
}

Test(model, ablate_and_steer_gpt2) { ablate_and_steer(0); }
Test(model, ablate_and_steer_llama) { ablate_and_steer(1); }

static int doubler(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    (*(int *)ud)++;
    *out = lp_tensor_clone(act);
    for (int64_t i = 0; i < lp_tensor_numel(*out); i++)
        (*out)->data[i] *= 2;
    return 0;
}

static int failing(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    return lp_set_error("my hook failed");
}

static int wrong_shape(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    *out = lp_tensor_zeros(1, (int64_t[]){3}, LP_DEVICE_CPU);
    return 0;
}

Test(model, callback_hooks)
{
    m = load(&(fx_opts){0});
    lp_run_opts all = {.cache_all = 1};
    lp_run clean = run(&TOK[0][0], 1, 6, &all);
    int calls = 0;
    lp_hook h = {.name = "blocks.0.attn.hook_pattern", .kind = LP_HOOK_FN, .fn = doubler, .ud = &calls,
                 .head = -1, .pos = -1};
    lp_run_opts o = {.hooks = &h, .nhooks = 1, .cache_all = 1};
    lp_run r = run(&TOK[0][0], 1, 6, &o);
    cr_assert_eq(calls, 1);
    const lp_tensor *a = lp_run_get(&clean, h.name), *b = lp_run_get(&r, h.name);
    for (int64_t i = 0; i < lp_tensor_numel(a); i++)
        cr_assert_eq(b->data[i], 2 * a->data[i]);
    lp_run_clear(&r);
    h.fn = failing;
    cr_assert_eq(lp_model_run(m, &TOK[0][0], 1, 6, &o, &r), -1);
    cr_assert_str_eq(lp_last_error(), "my hook failed");
    cr_assert_eq(r.n, 0);
    h.fn = wrong_shape;
    cr_assert_eq(lp_model_run(m, &TOK[0][0], 1, 6, &o, &r), -1);
    cr_assert(strstr(lp_last_error(), "returned shape [3]"), "%s", lp_last_error());
    lp_run_clear(&clean);
}

Test(model, run_errors)
{
    m = load(&(fx_opts){0});
    lp_run r;
    lp_hook h = {.name = "blocks.9.hook_resid_pre", .kind = LP_HOOK_ZERO, .head = -1, .pos = -1};
    lp_run_opts o = {.hooks = &h, .nhooks = 1};
    cr_assert_eq(lp_model_run(m, &TOK[0][0], 1, 6, &o, &r), -1);
    cr_assert(strstr(lp_last_error(), "unknown hook point 'blocks.9.hook_resid_pre'"), "%s", lp_last_error());
    h.name = "blocks.0.attn.hook_z", h.head = FX_H;
    cr_assert_eq(lp_model_run(m, &TOK[0][0], 1, 6, &o, &r), -1);
    cr_assert(strstr(lp_last_error(), "head 4 is out of range (heads count from 0)"), "%s", lp_last_error());
    h.name = "blocks.0.hook_resid_pre", h.head = 0;
    cr_assert_eq(lp_model_run(m, &TOK[0][0], 1, 6, &o, &r), -1);
    cr_assert(strstr(lp_last_error(), "no head dimension"), "%s", lp_last_error());
    h.head = -1, h.pos = 6;
    cr_assert_eq(lp_model_run(m, &TOK[0][0], 1, 6, &o, &r), -1);
    cr_assert(strstr(lp_last_error(), "position 7 is past the sequence"), "%s", lp_last_error());
    h.kind = LP_HOOK_PATCH, h.pos = -1;
    cr_assert_eq(lp_model_run(m, &TOK[0][0], 1, 6, &o, &r), -1);
    cr_assert(strstr(lp_last_error(), "needs a value"), "%s", lp_last_error());
    lp_tensor *bad = lp_tensor_zeros(3, (int64_t[]){1, 5, FX_D}, LP_DEVICE_CPU);
    h.value = bad;
    cr_assert_eq(lp_model_run(m, &TOK[0][0], 1, 6, &o, &r), -1);
    cr_assert(strstr(lp_last_error(), "does not fit"), "%s", lp_last_error());
    lp_tensor_free(bad);
    int32_t toks[20] = {0};
    toks[2] = FX_V;
    cr_assert_eq(lp_model_run(m, toks, 1, 6, NULL, &r), -1);
    cr_assert(strstr(lp_last_error(), "outside the vocabulary"), "%s", lp_last_error());
    toks[2] = 0;
    cr_assert_eq(lp_model_run(m, toks, 1, FX_CTX + 1, NULL, &r), -1);
    cr_assert(strstr(lp_last_error(), "longer than the model's context of 12"), "%s", lp_last_error());
    lp_interrupt_request();
    cr_assert_eq(lp_model_run(m, toks, 1, 6, NULL, &r), -1);
    lp_interrupt_clear();
    cr_assert(strstr(lp_last_error(), "interrupted"), "%s", lp_last_error());
}

static void load_fails(const fx_opts *o, const char *want1, const char *want2)
{
    fx_make(dir, o);
    cr_assert_null(lp_model_load(dir));
    cr_assert(strstr(lp_last_error(), want1) && (!want2 || strstr(lp_last_error(), want2)), "%s", lp_last_error());
}

Test(model, missing_tensor_names_it)
{
    load_fails(&(fx_opts){.drop = "transformer.h.1.mlp.c_fc.bias"}, "tensor 'transformer.h.1.mlp.c_fc.bias' is missing",
               dir);
}

Test(model, misshapen_tensor_names_it_and_the_file)
{
    load_fails(&(fx_opts){.llama = 1, .warp = "model.layers.0.self_attn.k_proj.weight"},
               "model.safetensors: tensor 'model.layers.0.self_attn.k_proj.weight' has shape [9, 16], expected [8, 16]", NULL);
}

Test(model, missing_lm_head)
{
    load_fails(&(fx_opts){.llama = 1, .drop = "lm_head.weight"}, "tensor 'lm_head.weight' is missing", NULL);
}

Test(model, unknown_architecture_lists_supported)
{
    load_fails(&(fx_opts){.config = "{\"architectures\":[\"BertForMaskedLM\"],\"model_type\":\"bert\"}"},
               "unsupported architecture 'BertForMaskedLM'", "LlamaForCausalLM");
}

Test(model, bad_configs)
{
    load_fails(&(fx_opts){.config = "{\"model_type\":\"gpt2\",\"n_embd\":16}"}, "\"n_layer\" is missing", "config.json");
    fx_remove(dir);
    load_fails(&(fx_opts){.config = "{\"model_type\":\"gpt2\",\"n_layer\":-2,\"n_embd\":16,\"n_head\":4,\"vocab_size\":9}"},
               "\"n_layer\" must be a positive integer", NULL);
    fx_remove(dir);
    load_fails(&(fx_opts){.config = "{\"model_type\":\"llama\",\"num_hidden_layers\":1,\"hidden_size\":16,"
                                    "\"num_attention_heads\":4,\"num_key_value_heads\":3,\"intermediate_size\":8,"
                                    "\"vocab_size\":9}"},
               "not a multiple of num_key_value_heads", NULL);
    fx_remove(dir);
    load_fails(&(fx_opts){.config = "{\"model_type\":\"llama\",\"num_hidden_layers\":1,\"hidden_size\":16,"
                                    "\"num_attention_heads\":4,\"intermediate_size\":8,\"vocab_size\":9,"
                                    "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":2}}"},
               "rope scaling type 'yarn' is not supported", NULL);
    fx_remove(dir);
    load_fails(&(fx_opts){.config = "{\"model_type\":\"gpt2\",\"n_layer\":1,\"n_embd\":1073741824,\"n_head\":1,\"vocab_size\":9}"},
               "sizes beyond what loupe supports", NULL);
    fx_remove(dir);
    load_fails(&(fx_opts){.config = "{not json"}, "not valid JSON", NULL);
    fx_remove(dir);
    cr_assert_null(lp_model_load("/nonexistent/model"));
    cr_assert(strstr(lp_last_error(), "/nonexistent/model/config.json: cannot open"), "%s", lp_last_error());
}

Test(model, rope_scaling_forms)
{
    lp_model_config c;
    const char *base = "{\"model_type\":\"llama\",\"num_hidden_layers\":1,\"hidden_size\":64,\"num_attention_heads\":4,"
                       "\"intermediate_size\":8,\"vocab_size\":9,\"max_position_embeddings\":32,%s}";
    char buf[512];
    float plain[8], scaled[8];
    snprintf(buf, sizeof buf, base, "\"rope_theta\":10000");
    cr_assert_eq(lp_model_config_parse(buf, strlen(buf), "c", &c), 0, "%s", lp_last_error());
    lp_rope_inv_freq(&c, 8, plain);
    cr_assert_float_eq(plain[0], 1.0f, 0);
    cr_assert_float_eq(plain[1], powf(10000.0f, -2.0f / 16), 1e-7);
    snprintf(buf, sizeof buf, base, "\"rope_scaling\":{\"type\":\"linear\",\"factor\":4}");
    cr_assert_eq(lp_model_config_parse(buf, strlen(buf), "c", &c), 0);
    lp_rope_inv_freq(&c, 8, scaled);
    for (int i = 0; i < 8; i++)
        cr_assert_float_eq(scaled[i], plain[i] / 4, 1e-9);
    /* transformers 5 form */
    snprintf(buf, sizeof buf, base, "\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":10000,\"factor\":8,"
                                    "\"low_freq_factor\":1,\"high_freq_factor\":4,\"original_max_position_embeddings\":8192}");
    cr_assert_eq(lp_model_config_parse(buf, strlen(buf), "c", &c), 0, "%s", lp_last_error());
    cr_assert_eq(c.rope, LP_ROPE_LLAMA3);
    lp_rope_inv_freq(&c, 8, scaled);
    cr_assert_float_eq(scaled[0], plain[0], 0); /* high frequencies unchanged */
    cr_assert_float_eq(scaled[7], plain[7] / 8, 1e-9); /* low ones divided by the factor */
    snprintf(buf, sizeof buf, base, "\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2}");
    cr_assert_eq(lp_model_config_parse(buf, strlen(buf), "c", &c), 0);
    lp_rope_inv_freq(&c, 32, scaled);
    cr_assert_float_eq(scaled[3], plain[3], 0); /* within the context: unchanged */
    lp_rope_inv_freq(&c, 64, scaled);
    cr_assert(scaled[3] < plain[3]);
}
