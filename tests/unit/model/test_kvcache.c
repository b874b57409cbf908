/* Incremental runs (lp_model_run_cached): the logits and hook points of new positions run
 * against a key/value cache equal those of a full run of the whole sequence, for GPT-2 and
 * for Llama with grouped-query attention and every rotary scaling form, in chunks of any size;
 * greedy generation with and without the cache picks the same tokens; the context limit and
 * a mismatched cache are errors that say so; hooks on k and v change what is cached. */
#include <criterion/criterion.h>
#include <math.h>

#include "fixtures.h"
#include "model/model.h"

static char dir[64];
static lp_model *m;

static void fini(void)
{
    lp_model_free(m);
    m = NULL;
    if (dir[0])
        fx_remove(dir);
    dir[0] = 0;
}

TestSuite(kvcache, .fini = fini);

#define LLAMA_CFG                                                                                              \
    "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":16,"                   \
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":24,\"vocab_size\":37,"         \
    "\"num_hidden_layers\":2,\"max_position_embeddings\":12,\"rms_norm_eps\":1e-5,\"rope_theta\":%s,"        \
    "\"tie_word_embeddings\":false%s}"

static void load(int llama, const char *rope_theta, const char *extra)
{
    char cfg[1024];
    fx_opts o = {.llama = llama};
    if (extra) {
        snprintf(cfg, sizeof cfg, LLAMA_CFG, rope_theta, extra);
        o.config = cfg;
    }
    fx_make(dir, &o);
    m = lp_model_load(dir);
    cr_assert_not_null(m, "%s", lp_last_error());
}

/* A random model with weights scaled up so that attention is far from uniform. */
static lp_model *random_model(lp_model_config c)
{
    lp_model *r = lp_model_random(&c, 11);
    cr_assert_not_null(r, "%s", lp_last_error());
    for (int L = 0; L < c.n_layers; L++) {
        lp_block *b = &r->blocks[L];
        lp_linear *ls[] = {&b->qkv, &b->q, &b->k, &b->v, &b->o, &b->fc, &b->proj, &b->gate, &b->up, &b->down};
        for (size_t i = 0; i < sizeof ls / sizeof *ls; i++)
            for (int64_t k = 0; ls[i]->w && k < lp_tensor_numel(ls[i]->w); k++)
                ls[i]->w->data[k] *= 10;
    }
    for (int64_t k = 0; k < lp_tensor_numel(r->wte); k++)
        r->wte->data[k] *= 20;
    return r;
}

/* The largest difference, relative to the largest magnitude when that exceeds 1: the scaled-up
 * models' logits reach tens, where float rounding in a different summation order (the fused
 * attention's vector width differs between machines) is larger than 1e-5 absolute. */
static float max_diff(const float *a, const float *b, size_t n)
{
    float d = 0, mx = 1;
    for (size_t i = 0; i < n; i++)
        d = fmaxf(d, fabsf(a[i] - b[i])), mx = fmaxf(mx, fmaxf(fabsf(a[i]), fabsf(b[i])));
    return d / mx;
}

static const lp_run_opts ALL = {.cache_all = 1};

/* Runs tok (B,T) in full and in chunks through a cache (opts NULL and cache_all); the
 * logits, and with cache_all every hook point, of each chunk match the full run's rows. */
static void cached_equals_full(const lp_model *mm, const int32_t *tok, int B, int T, const int *chunks, int nch)
{
    int V = mm->cfg.d_vocab, H = mm->cfg.n_heads;
    for (int pass = 0; pass < 2; pass++) {
        const lp_run_opts *o = pass ? &ALL : NULL;
        lp_run full, r;
        cr_assert_eq(lp_model_run(mm, tok, B, T, o, &full), 0, "%s", lp_last_error());
        lp_kv_cache *kv = lp_kv_cache_new(mm, B, 0);
        cr_assert_not_null(kv, "%s", lp_last_error());
        int32_t sub[256];
        for (int c = 0, p = 0; c < nch; p += chunks[c++]) {
            int n = chunks[c];
            for (int b = 0; b < B; b++)
                memcpy(sub + b * n, tok + b * T + p, (size_t)n * sizeof *sub);
            cr_assert_eq(lp_model_run_cached(mm, kv, sub, B, n, o, &r), 0, "%s", lp_last_error());
            cr_assert_eq(lp_kv_cache_len(kv), p + n);
            cr_assert_eq(r.logits->shape[1], n);
            for (int b = 0; b < B; b++) {
                float d = max_diff(r.logits->data + (size_t)b * n * V, full.logits->data + ((size_t)b * T + p) * V,
                                   (size_t)n * V);
                cr_assert(d <= 1e-5f, "chunk %d (positions %d..%d) batch %d: logits differ by %g", c, p, p + n - 1,
                          b, d);
            }
            if (o) { /* every hook point at the new positions */
                cr_assert_eq(r.n, full.n, "%zu hook points vs %zu", r.n, full.n);
                for (size_t i = 0; i < r.n; i++) {
                    const lp_tensor *a = r.acts[i], *f = lp_run_get(&full, r.names[i]);
                    cr_assert_str_eq(r.names[i], full.names[i]);
                    int pattern = strstr(r.names[i], "attn_scores") || strstr(r.names[i], "pattern");
                    float big = 0; /* to float rounding of the activation's scale */
                    for (int64_t e = 0; e < lp_tensor_numel(f); e++)
                        big = isfinite(f->data[e]) ? fmaxf(big, fabsf(f->data[e])) : big;
                    if (pattern) { /* (B,H,n,p+n) against rows p.. of (B,H,T,T) */
                        cr_assert(a->shape[2] == n && a->shape[3] == p + n, "%s", r.names[i]);
                        for (int bh = 0; bh < B * H; bh++)
                            for (int i2 = 0; i2 < n; i2++) {
                                const float *x = a->data + ((size_t)bh * n + i2) * (p + n);
                                const float *y = f->data + ((size_t)bh * T + p + i2) * T;
                                for (int j = 0; j < p + n; j++)
                                    cr_assert(x[j] == y[j] || fabsf(x[j] - y[j]) <= 1e-5f * (1 + big), "%s [%d,%d,%d]: %g vs %g",
                                              r.names[i], bh, p + i2, j, x[j], y[j]);
                            }
                        continue;
                    }
                    /* (B,n,...) against rows p.. of (B,T,...) */
                    /* (the products of one row and of many may round differently) */
                    size_t row = (size_t)(lp_tensor_numel(a) / B / n);
                    cr_assert_eq(a->shape[1], n, "%s", r.names[i]);
                    for (int b = 0; b < B; b++) {
                        float d = max_diff(a->data + (size_t)b * n * row, f->data + ((size_t)b * T + p) * row,
                                           (size_t)n * row);
                        cr_assert(d <= 1e-5f * (1 + big), "%s differs by %g (scale %g) at chunk %d", r.names[i], d,
                                  big, c);
                    }
                }
            }
            lp_run_clear(&r);
        }
        lp_kv_cache_free(kv);
        lp_run_clear(&full);
    }
}

static const int32_t TOK[2][12] = {{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8}, {2, 7, 18, 28, 18, 28, 4, 5, 9, 0, 4, 5}};

Test(kvcache, gpt2_chunks_match_full_run)
{
    load(0, NULL, NULL);
    int32_t tok[24];
    memcpy(tok, TOK, sizeof tok);
    static const int one[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, mixed[] = {5, 1, 3, 1, 2};
    cached_equals_full(m, tok, 1, 12, one, 12);
    cached_equals_full(m, tok, 2, 12, mixed, 5);
    cached_equals_full(m, tok, 2, 12, (const int[]){12}, 1);
}

Test(kvcache, llama_gqa_and_rope_scaling_match_full_run)
{
    static const char *const scaling[] = {
        "",
        ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}",
        (",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,"
         "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":4}"),
        ",\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2.0}",
    };
    int32_t tok[24];
    memcpy(tok, TOK, sizeof tok);
    static const int chunks[] = {4, 1, 1, 3, 1, 2};
    for (size_t i = 0; i < sizeof scaling / sizeof *scaling; i++) {
        load(1, i == 2 ? "500000.0" : "10000.0", scaling[i]);
        cr_assert_eq(m->cfg.n_kv_heads, 2);
        cached_equals_full(m, tok, 2, 12, chunks, 6);
        fini();
    }
}

/* Head sizes that use the kernels' full blocks (64) and partial ones (80), longer sequences. */
Test(kvcache, larger_heads_match_full_run)
{
    lp_model_config g = {.arch = LP_ARCH_GPT2, .n_layers = 2, .d_model = 128, .n_heads = 2, .n_kv_heads = 2,
                         .d_head = 64, .d_mlp = 96, .d_vocab = 53, .n_ctx = 80, .eps = 1e-5f, .tied = 1,
                         .bos = -1, .eos = -1};
    lp_model_config l = {.arch = LP_ARCH_LLAMA, .n_layers = 2, .d_model = 160, .n_heads = 2, .n_kv_heads = 1,
                         .d_head = 80, .d_mlp = 64, .d_vocab = 53, .n_ctx = 80, .eps = 1e-5f, .rope_theta = 10000,
                         .bos = -1, .eos = -1};
    int32_t tok[2 * 70];
    for (int i = 0; i < 140; i++)
        tok[i] = (int32_t)((i * 2654435761u) % 53u);
    static const int chunks[] = {33, 1, 20, 16};
    lp_model *a = random_model(g), *b = random_model(l);
    cached_equals_full(a, tok, 2, 70, chunks, 4);
    cached_equals_full(b, tok, 2, 70, chunks, 4);
    lp_model_free(a);
    lp_model_free(b);
}

/* Greedy decoding: with the cache (one token per step) and without (the whole sequence every
 * step) the same tokens, and the same logits to 1e-5. */
static void greedy_same(const lp_model *mm, int steps)
{
    int V = mm->cfg.d_vocab, n = 3;
    int32_t seq[128] = {1, 2, 3};
    lp_kv_cache *kv = lp_kv_cache_new(mm, 1, 0);
    cr_assert_not_null(kv);
    int fed = 0;
    for (int s = 0; s < steps; s++) {
        lp_run a, b;
        cr_assert_eq(lp_model_run(mm, seq, 1, n, NULL, &a), 0, "%s", lp_last_error());
        cr_assert_eq(lp_model_run_cached(mm, kv, seq + fed, 1, n - fed, NULL, &b), 0, "%s", lp_last_error());
        const float *la = a.logits->data + (size_t)(n - 1) * V, *lb = b.logits->data + (size_t)(n - fed - 1) * V;
        float d = max_diff(la, lb, (size_t)V);
        cr_assert(d <= 1e-5f, "step %d: logits differ by %g", s, d);
        int ia = 0, ib = 0;
        for (int v = 1; v < V; v++) {
            ia = la[v] > la[ia] ? v : ia;
            ib = lb[v] > lb[ib] ? v : ib;
        }
        cr_assert_eq(ia, ib, "step %d: token %d without the cache, %d with", s, ia, ib);
        fed = n;
        seq[n++] = ia;
        lp_run_clear(&a);
        lp_run_clear(&b);
    }
    lp_kv_cache_free(kv);
}

Test(kvcache, greedy_generation_same_with_and_without_cache)
{
    load(0, NULL, NULL);
    greedy_same(m, 9);
    fini();
    load(1, "10000.0", ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}");
    greedy_same(m, 9);
    lp_model_config g = {.arch = LP_ARCH_GPT2, .n_layers = 2, .d_model = 128, .n_heads = 2, .n_kv_heads = 2,
                         .d_head = 64, .d_mlp = 96, .d_vocab = 53, .n_ctx = 80, .eps = 1e-5f, .tied = 1,
                         .bos = -1, .eos = -1};
    lp_model *a = random_model(g);
    greedy_same(a, 40);
    lp_model_free(a);
}

Test(kvcache, errors_name_the_limit_and_keep_the_cache)
{
    load(0, NULL, NULL);
    int32_t tok[24];
    memcpy(tok, TOK, sizeof tok);
    lp_run r;
    lp_kv_cache *kv = lp_kv_cache_new(m, 1, 0);
    cr_assert_eq(lp_kv_cache_limit(kv), 12);
    cr_assert_eq(lp_model_run_cached(m, kv, tok, 1, 10, NULL, &r), 0, "%s", lp_last_error());
    lp_run_clear(&r);
    cr_assert_eq(lp_model_run_cached(m, kv, tok, 1, 3, NULL, &r), -1);
    cr_assert(strstr(lp_last_error(), "context of 12") && strstr(lp_last_error(), "n_positions"), "%s",
              lp_last_error());
    cr_assert_null(r.logits);
    cr_assert_eq(lp_kv_cache_len(kv), 10, "a failed run leaves the cache as it was");
    cr_assert_eq(lp_model_run_cached(m, kv, tok, 2, 1, NULL, &r), -1);
    cr_assert(strstr(lp_last_error(), "batch of 1"), "%s", lp_last_error());
    int32_t bad = 99;
    cr_assert_eq(lp_model_run_cached(m, kv, &bad, 1, 1, NULL, &r), -1);
    cr_assert(strstr(lp_last_error(), "vocabulary"), "%s", lp_last_error());
    cr_assert_eq(lp_kv_cache_len(kv), 10);
    cr_assert_eq(lp_model_run_cached(m, kv, tok + 10, 1, 2, NULL, &r), 0, "%s", lp_last_error());
    lp_run_clear(&r);
    cr_assert_eq(lp_kv_cache_len(kv), 12);
    cr_assert_eq(lp_kv_cache_truncate(kv, 13), -1);
    /* rerun from position 6: the same logits as the first time */
    lp_run full;
    cr_assert_eq(lp_model_run(m, tok, 1, 12, NULL, &full), 0);
    cr_assert_eq(lp_kv_cache_truncate(kv, 6), 0);
    cr_assert_eq(lp_model_run_cached(m, kv, tok + 6, 1, 6, NULL, &r), 0, "%s", lp_last_error());
    cr_assert(max_diff(r.logits->data, full.logits->data + 6 * 37, 6 * 37) <= 1e-5f);
    lp_run_clear(&r);
    lp_kv_cache_reset(kv);
    cr_assert_eq(lp_kv_cache_len(kv), 0);
    lp_run_clear(&full);
    /* a cache made for another model */
    lp_model_config c = m->cfg;
    c.n_layers = 1;
    lp_model *other = lp_model_random(&c, 1);
    cr_assert_eq(lp_model_run_cached(other, kv, tok, 1, 1, NULL, &r), -1);
    cr_assert(strstr(lp_last_error(), "another model"), "%s", lp_last_error());
    lp_model_free(other);
    lp_kv_cache_free(kv);
    cr_assert_null(lp_kv_cache_new(m, 0, 0));
    lp_kv_cache_free(NULL);
}

/* Zeroes positions < 4 of the activation (B,T,K,S), positions counted from `first`. */
static int zero_early(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    int first = *(const int *)ud;
    lp_tensor *c = lp_tensor_clone(act);
    int64_t T = act->shape[1], row = act->shape[2] * act->shape[3];
    for (int64_t b = 0; b < act->shape[0]; b++)
        for (int64_t t = 0; t < T; t++)
            if (first + t < 4)
                memset(c->data + (b * T + t) * row, 0, (size_t)row * sizeof(float));
    *out = c;
    return 0;
}

/* A hook on v while the prompt runs changes the cached values: the later positions, run
 * without hooks, see them, as in a full run with the hook at those positions. */
Test(kvcache, hooks_on_values_change_the_cache)
{
    load(0, NULL, NULL);
    int32_t tok[12];
    memcpy(tok, TOK[0], sizeof tok);
    int first = 0;
    lp_hook h = {.name = "blocks.0.attn.hook_v", .kind = LP_HOOK_FN, .head = -1, .pos = -1, .fn = zero_early,
                 .ud = &first};
    lp_run_opts o = {.hooks = &h, .nhooks = 1};
    lp_run full, a, b;
    cr_assert_eq(lp_model_run(m, tok, 1, 8, &o, &full), 0, "%s", lp_last_error());
    lp_kv_cache *kv = lp_kv_cache_new(m, 1, 4);
    cr_assert_eq(lp_model_run_cached(m, kv, tok, 1, 4, &o, &a), 0, "%s", lp_last_error());
    cr_assert_eq(lp_model_run_cached(m, kv, tok + 4, 1, 4, NULL, &b), 0, "%s", lp_last_error());
    float d = max_diff(b.logits->data, full.logits->data + 4 * 37, 4 * 37);
    cr_assert(d <= 1e-5f, "logits after the hooked prompt differ by %g", d);
    lp_run plain;
    cr_assert_eq(lp_model_run(m, tok, 1, 8, NULL, &plain), 0);
    cr_assert(max_diff(plain.logits->data + 4 * 37, full.logits->data + 4 * 37, 4 * 37) > 1e-3f,
              "the hook must matter");
    lp_run_clear(&full), lp_run_clear(&a), lp_run_clear(&b), lp_run_clear(&plain);
    lp_kv_cache_free(kv);
}
