/* SAELens' folder (backend/dict/sae_io.c): every architecture saves and loads back with
 * identical tensors and configuration; the normalisation scale is folded; bad folders (missing,
 * misshapen or unexpected tensors, truncated files, bad cfg.json, a d_in that does not match)
 * give errors naming the file and the tensor, and nothing is returned. */
#include <jansson.h>
#include <math.h>

#include "core/error.h"
#include "dict/sae_io.h"
#include "dict_fixtures.h"
#include "model/safetensors.h"

typedef struct arch_case {
    lp_sae_config c;
    const char *saelens; /* cfg.json's architecture */
} arch_case;

static const arch_case CASES[] = {
    {{.arch = LP_SAE_STANDARD, .d_in = 6, .d_sae = 10, .d_out = 6, .apply_b_dec_to_input = 1}, "standard"},
    {{.arch = LP_SAE_TOPK, .d_in = 6, .d_sae = 10, .d_out = 6, .k = 3, .apply_b_dec_to_input = 1}, "topk"},
    {{.arch = LP_SAE_TOPK, .d_in = 6, .d_sae = 10, .d_out = 6, .k = 4, .rescale_acts_by_decoder_norm = 1}, "topk"},
    {{.arch = LP_SAE_JUMPRELU, .d_in = 6, .d_sae = 10, .d_out = 6, .apply_b_dec_to_input = 1}, "jumprelu"},
    {{.arch = LP_SAE_BATCHTOPK, .d_in = 6, .d_sae = 10, .d_out = 6, .k = 3, .apply_b_dec_to_input = 1}, "jumprelu"},
    {{.arch = LP_SAE_MATRYOSHKA, .d_in = 6, .d_sae = 10, .d_out = 6, .k = 3}, "jumprelu"},
    {{.arch = LP_SAE_STANDARD, .d_in = 6, .d_sae = 10, .d_out = 5, .transcoder = 1}, "transcoder"},
    {{.arch = LP_SAE_STANDARD, .d_in = 6, .d_sae = 10, .d_out = 5, .transcoder = 1, .skip = 1}, "skip_transcoder"},
    {{.arch = LP_SAE_JUMPRELU, .d_in = 6, .d_sae = 10, .d_out = 5, .transcoder = 1}, "jumprelu_transcoder"},
    {{.arch = LP_SAE_JUMPRELU, .d_in = 6, .d_sae = 10, .d_out = 6, .transcoder = 1, .skip = 1},
     "jumprelu_skip_transcoder"},
};

static lp_sae *make(const lp_sae_config *c0, uint64_t seed)
{
    lp_sae_config c = *c0;
    c.layer = 3;
    snprintf(c.hook_in, sizeof c.hook_in, "blocks.3.%s", c.transcoder ? "mlp.hook_in" : "hook_resid_post");
    snprintf(c.hook_out, sizeof c.hook_out, "blocks.3.%s", c.transcoder ? "mlp.hook_out" : "hook_resid_post");
    lp_sae *s = lp_sae_new(&c);
    cr_assert_not_null(s, "%s", lp_last_error());
    randomise(s, seed);
    return s;
}

static json_t *load_cfg(const char *dir)
{
    char p[512];
    snprintf(p, sizeof p, "%s/cfg.json", dir);
    json_t *j = json_load_file(p, 0, NULL);
    cr_assert_not_null(j);
    return j;
}

Test(sae_io, every_architecture_round_trips)
{
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        char *dir = tmpdir();
        lp_sae *s = make(&CASES[i].c, 100 + i);
        int dens = i % 2 == 0;
        if (dens) {
            s->log_density = lp_tensor_zeros(1, (int64_t[]){10}, LP_DEVICE_CPU);
            for (int f = 0; f < 10; f++)
                s->log_density->data[f] = -(float)f / 3;
        }
        lp_sae_meta m = {.model_name = "loupe-default", .dataset_path = "corpus.txt", .context_size = 128,
                         .prepend_bos = 1, .hook_head_index = -1};
        cr_assert_eq(lp_sae_save(s, dir, &m), 0, "case %zu: %s", i, lp_last_error());
        json_t *j = load_cfg(dir);
        cr_assert_str_eq(json_string_value(json_object_get(j, "architecture")), CASES[i].saelens, "case %zu", i);
        cr_assert_str_eq(json_string_value(json_object_get(j, "normalize_activations")), "none");
        json_t *md = json_object_get(j, "metadata");
        cr_assert_str_eq(json_string_value(json_object_get(md, "hook_name")), s->cfg.hook_in);
        cr_assert_str_eq(json_string_value(json_object_get(md, "model_name")), "loupe-default");
        cr_assert_eq(json_integer_value(json_object_get(md, "context_size")), 128);
        cr_assert_eq(json_object_get(j, "d_out") != NULL, s->cfg.transcoder != 0);
        json_decref(j);

        lp_sae_meta m2;
        lp_sae *r = lp_sae_load(dir, &m2);
        cr_assert_not_null(r, "case %zu: %s", i, lp_last_error());
        lp_sae_arch want = s->cfg.arch == LP_SAE_BATCHTOPK || s->cfg.arch == LP_SAE_MATRYOSHKA ? LP_SAE_JUMPRELU : s->cfg.arch;
        cr_assert_eq(r->cfg.arch, want, "case %zu", i);
        cr_assert_eq(r->cfg.d_in, 6);
        cr_assert_eq(r->cfg.d_sae, 10);
        cr_assert_eq(r->cfg.d_out, s->cfg.d_out);
        cr_assert_eq(r->cfg.transcoder, s->cfg.transcoder);
        cr_assert_eq(r->cfg.skip, s->cfg.skip);
        cr_assert_eq(r->cfg.apply_b_dec_to_input, s->cfg.apply_b_dec_to_input, "case %zu", i);
        cr_assert_eq(r->cfg.rescale_acts_by_decoder_norm, s->cfg.rescale_acts_by_decoder_norm);
        if (want == LP_SAE_TOPK)
            cr_assert_eq(r->cfg.k, s->cfg.k);
        cr_assert_str_eq(r->cfg.hook_in, s->cfg.hook_in);
        cr_assert_str_eq(r->cfg.hook_out, s->cfg.hook_out);
        cr_assert_eq(r->cfg.layer, 3);
        cr_assert_str_eq(m2.model_name, "loupe-default");
        cr_assert_str_eq(m2.dataset_path, "corpus.txt");
        cr_assert_eq(m2.context_size, 128);
        cr_assert_eq(m2.hook_head_index, -1);
        same(r->W_enc, s->W_enc, "W_enc");
        same(r->W_dec, s->W_dec, "W_dec");
        same(r->b_enc, s->b_enc, "b_enc");
        same(r->b_dec, s->b_dec, "b_dec");
        same(r->threshold, s->threshold, "threshold");
        same(r->W_skip, s->W_skip, "W_skip");
        same(r->log_density, s->log_density, "sparsity");
        lp_sae_free(r);
        lp_sae_free(s);
        rmtree(dir);
    }
}

Test(sae_io, the_scale_is_folded_into_the_weights)
{
    char *dir = tmpdir();
    lp_sae *s = make(&CASES[3].c, 7);
    s->scale = 4.0f;
    cr_assert_eq(lp_sae_save(s, dir, NULL), 0, "%s", lp_last_error());
    cr_assert_eq(s->scale, 4.0f, "the caller's SAE is left alone");
    lp_sae *r = lp_sae_load(dir, NULL);
    cr_assert_not_null(r, "%s", lp_last_error());
    cr_assert_eq(r->scale, 1.0f);
    for (int i = 0; i < 60; i++) {
        cr_assert_eq(r->W_enc->data[i], s->W_enc->data[i] * 4.0f);
        cr_assert_eq(r->W_dec->data[i], s->W_dec->data[i] / 4.0f);
    }
    for (int i = 0; i < 6; i++)
        cr_assert_eq(r->b_dec->data[i], s->b_dec->data[i] / 4.0f);
    same(r->b_enc, s->b_enc, "b_enc");
    same(r->threshold, s->threshold, "threshold");
    /* the folded SAE on raw x equals the trained one on s x, divided by s (jumprelu) */
    float x[6] = {0.3f, -1.2f, 0.5f, 2.0f, -0.7f, 0.1f};
    for (int f = 0; f < 10; f++) {
        double z1 = s->b_enc->data[f], z2 = r->b_enc->data[f];
        for (int d = 0; d < 6; d++) {
            z1 += (4.0 * x[d] - s->b_dec->data[d]) * s->W_enc->data[d * 10 + f];
            z2 += (x[d] - r->b_dec->data[d]) * r->W_enc->data[d * 10 + f];
        }
        cr_assert(fabs(z1 - z2) < 1e-4 * (1 + fabs(z1)), "feature %d: %g vs %g", f, z1, z2);
    }
    lp_sae_free(r);
    lp_sae_free(s);
    rmtree(dir);
}

Test(sae_io, topk_transcoders_are_refused_with_the_alternative)
{
    lp_sae_config c = {.arch = LP_SAE_TOPK, .d_in = 6, .d_sae = 10, .d_out = 6, .k = 2, .transcoder = 1};
    lp_sae *s = lp_sae_new(&c);
    char *dir = tmpdir();
    cr_assert_eq(lp_sae_save(s, dir, NULL), -1);
    cr_assert(strstr(lp_last_error(), "no topk transcoder") && strstr(lp_last_error(), "transcoder set"), "%s",
              lp_last_error());
    lp_sae_free(s);
    rmtree(dir);
}

/* Saves a jumprelu SAE, then lets `damage` change its folder; the load must fail with an
 * error containing each of `says` (NULL-terminated). */
static void expect_bad(void (*damage)(const char *dir), const char *const *says, lp_err code)
{
    char *dir = tmpdir();
    lp_sae *s = make(&CASES[3].c, 5);
    cr_assert_eq(lp_sae_save(s, dir, NULL), 0, "%s", lp_last_error());
    damage(dir);
    lp_sae *r = lp_sae_load(dir, NULL);
    cr_assert_null(r, "a damaged folder was loaded");
    for (int i = 0; says[i]; i++)
        cr_assert(strstr(lp_last_error(), says[i]), "missing '%s' in: %s", says[i], lp_last_error());
    if (code != LP_ERR_NONE)
        cr_assert_eq(lp_last_error_code(), code, "%s", lp_last_error());
    lp_sae_free(s);
    rmtree(dir);
}

/* Rewrites sae_weights.safetensors with the tensors of a jumprelu SAE changed by `edit`. */
static void rewrite(const char *dir, const char *drop, const char *reshape, lp_dtype dtype, const char *extra)
{
    char p[512];
    snprintf(p, sizeof p, "%s/sae_weights.safetensors", dir);
    lp_safetensors *st = lp_safetensors_open(p);
    cr_assert_not_null(st, "%s", lp_last_error());
    const char *names[8];
    lp_tensor *ts[8];
    size_t n = 0;
    for (size_t i = 0; i < lp_safetensors_count(st); i++) {
        const lp_st_entry *e = lp_safetensors_entry(st, i);
        if (drop && !strcmp(e->name, drop))
            continue;
        names[n] = strdup(e->name);
        ts[n] = lp_safetensors_tensor(st, e, LP_DEVICE_CPU);
        if (reshape && !strcmp(e->name, reshape)) { /* one row fewer */
            lp_tensor *t = lp_tensor_zeros(e->ndim, (int64_t[]){e->shape[0] - 1, e->ndim > 1 ? e->shape[1] : 0}, LP_DEVICE_CPU);
            lp_tensor_free(ts[n]);
            ts[n] = t;
        }
        n++;
    }
    if (extra) {
        names[n] = strdup(extra);
        ts[n++] = lp_tensor_zeros(1, (int64_t[]){3}, LP_DEVICE_CPU);
    }
    lp_safetensors_close(st);
    cr_assert_eq(lp_safetensors_write(p, names, (const lp_tensor *const *)ts, n, dtype, NULL, NULL, 0), 0, "%s",
                 lp_last_error());
    for (size_t i = 0; i < n; i++)
        free((char *)names[i]), lp_tensor_free(ts[i]);
}

static void drop_threshold(const char *d) { rewrite(d, "threshold", NULL, LP_DTYPE_F32, NULL); }
static void drop_W_dec(const char *d) { rewrite(d, "W_dec", NULL, LP_DTYPE_F32, NULL); }
static void short_W_enc(const char *d) { rewrite(d, NULL, "W_enc", LP_DTYPE_F32, NULL); }
static void short_b_dec(const char *d) { rewrite(d, NULL, "b_dec", LP_DTYPE_F32, NULL); }
static void extra_tensor(const char *d) { rewrite(d, NULL, NULL, LP_DTYPE_F32, "W_gate"); }
static void cut_weights(const char *d) { truncate_to(d, "sae_weights.safetensors", 300); }
static void no_weights(const char *d)
{
    char p[512];
    snprintf(p, sizeof p, "%s/sae_weights.safetensors", d);
    unlink(p);
}
static void bad_json(const char *d) { write_text(d, "cfg.json", "{\"d_in\": 6, \"d_sae\": "); }
static void bad_arch(const char *d)
{
    write_text(d, "cfg.json", "{\"d_in\": 6, \"d_sae\": 10, \"architecture\": \"gated\"}");
}
static void no_d_sae(const char *d) { write_text(d, "cfg.json", "{\"d_in\": 6, \"architecture\": \"jumprelu\"}"); }
static void wrong_d_in(const char *d)
{
    write_text(d, "cfg.json", "{\"d_in\": 7, \"d_sae\": 10, \"architecture\": \"jumprelu\"}");
}
static void normalised(const char *d)
{
    write_text(d, "cfg.json", "{\"d_in\": 6, \"d_sae\": 10, \"architecture\": \"jumprelu\", "
                              "\"normalize_activations\": \"expected_average_only_in\"}");
}
/* The first tensor of the header (W_dec: keys are sorted) declared I32: same size, other dtype. */
static void int_dtype(const char *d)
{
    size_t n;
    char *b = read_all(d, "sae_weights.safetensors", &n);
    char *at = strstr(b + 8, "\"F32\"");
    cr_assert_not_null(at);
    at[1] = 'I';
    char p[512];
    snprintf(p, sizeof p, "%s/sae_weights.safetensors", d);
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    free(b);
}
static void cut_sparsity(const char *d) { write_text(d, "sparsity.safetensors", "\x10\0\0\0\0\0\0\0{\"sparsity\":"); }

Test(sae_io, a_missing_tensor_is_named)
{
    expect_bad(drop_threshold, (const char *[]){"sae_weights.safetensors", "'threshold'", "missing", NULL}, LP_ERR_FORMAT);
    expect_bad(drop_W_dec, (const char *[]){"sae_weights.safetensors", "'W_dec'", "missing", NULL}, LP_ERR_FORMAT);
}

Test(sae_io, a_wrong_shape_is_named_with_both_shapes)
{
    expect_bad(short_W_enc, (const char *[]){"sae_weights.safetensors", "'W_enc'", "[5, 10]", "expected [6, 10]", NULL},
               LP_ERR_FORMAT);
    expect_bad(short_b_dec, (const char *[]){"'b_dec'", "[5]", "expected [6]", NULL}, LP_ERR_FORMAT);
}

Test(sae_io, a_wrong_dtype_is_named)
{
    expect_bad(int_dtype, (const char *[]){"sae_weights.safetensors", "'W_dec'", "dtype I32", NULL}, LP_ERR_FORMAT);
}

Test(sae_io, an_unexpected_tensor_is_named)
{
    expect_bad(extra_tensor, (const char *[]){"sae_weights.safetensors", "unexpected tensor 'W_gate'", NULL}, LP_ERR_FORMAT);
}

Test(sae_io, truncated_and_missing_files_are_refused)
{
    expect_bad(cut_weights, (const char *[]){"sae_weights.safetensors", NULL}, LP_ERR_NONE);
    expect_bad(no_weights, (const char *[]){"sae_weights.safetensors", "cannot open", NULL}, LP_ERR_IO);
    expect_bad(cut_sparsity, (const char *[]){"sparsity.safetensors", NULL}, LP_ERR_NONE);
}

Test(sae_io, bad_cfg_json_is_refused_by_name)
{
    expect_bad(bad_json, (const char *[]){"cfg.json", "not valid JSON", NULL}, LP_ERR_FORMAT);
    expect_bad(bad_arch, (const char *[]){"cfg.json", "architecture 'gated'", NULL}, LP_ERR_FORMAT);
    expect_bad(no_d_sae, (const char *[]){"cfg.json", "'d_sae' is missing", NULL}, LP_ERR_FORMAT);
    expect_bad(wrong_d_in, (const char *[]){"sae_weights.safetensors", "'W_enc'", "[6, 10]", "expected [7, 10]", NULL},
               LP_ERR_FORMAT);
    expect_bad(normalised, (const char *[]){"cfg.json", "expected_average_only_in", NULL}, LP_ERR_FORMAT);
}

Test(sae_io, f16_and_bf16_weights_load_as_f32)
{
    lp_dtype dts[2] = {LP_DTYPE_F16, LP_DTYPE_BF16};
    for (int k = 0; k < 2; k++) {
        char *dir = tmpdir();
        lp_sae *s = make(&CASES[0].c, 9);
        cr_assert_eq(lp_sae_save(s, dir, NULL), 0);
        rewrite(dir, NULL, NULL, dts[k], NULL);
        lp_sae *r = lp_sae_load(dir, NULL);
        cr_assert_not_null(r, "%s", lp_last_error());
        float tol = k == 0 ? 1e-3f : 8e-3f;
        for (int i = 0; i < 60; i++)
            cr_assert(fabsf(r->W_enc->data[i] - s->W_enc->data[i]) <= tol * (1 + fabsf(s->W_enc->data[i])),
                      "%s: %g vs %g", lp_dtype_name(dts[k]), r->W_enc->data[i], s->W_enc->data[i]);
        cr_assert_neq(memcmp(r->W_enc->data, s->W_enc->data, 240), 0, "the file was not rewritten");
        lp_sae_free(r);
        lp_sae_free(s);
        rmtree(dir);
    }
}

Test(sae_io, older_files_hook_point_and_log_threshold_are_read)
{
    char *dir = tmpdir();
    lp_sae *s = make(&CASES[3].c, 3);
    cr_assert_eq(lp_sae_save(s, dir, NULL), 0);
    write_text(dir, "cfg.json", "{\"d_in\": 6, \"d_sae\": 10, \"architecture\": \"jumprelu\", "
                                "\"hook_point\": \"blocks.2.hook_resid_pre\", \"model_name\": \"gpt2\"}");
    char p[512];
    snprintf(p, sizeof p, "%s/sae_weights.safetensors", dir);
    lp_tensor *lt = lp_tensor_zeros(1, (int64_t[]){10}, LP_DEVICE_CPU);
    for (int i = 0; i < 10; i++)
        lt->data[i] = logf(s->threshold->data[i]);
    const char *names[] = {"W_enc", "W_dec", "b_enc", "b_dec", "log_threshold"};
    const lp_tensor *ts[] = {s->W_enc, s->W_dec, s->b_enc, s->b_dec, lt};
    cr_assert_eq(lp_safetensors_write(p, names, ts, 5, LP_DTYPE_F32, NULL, NULL, 0), 0);
    lp_sae_meta m;
    lp_sae *r = lp_sae_load(dir, &m);
    cr_assert_not_null(r, "%s", lp_last_error());
    cr_assert_str_eq(r->cfg.hook_in, "blocks.2.hook_resid_pre");
    cr_assert_eq(r->cfg.layer, 2);
    cr_assert_str_eq(m.model_name, "gpt2");
    cr_assert_eq(r->cfg.apply_b_dec_to_input, 1, "SAELens' default for older files");
    for (int i = 0; i < 10; i++)
        cr_assert(fabsf(r->threshold->data[i] - s->threshold->data[i]) < 1e-5f);
    lp_tensor_free(lt);
    lp_sae_free(r);
    lp_sae_free(s);
    rmtree(dir);
}

Test(sae_io, a_d_in_that_does_not_match_the_model_is_refused)
{
    char *dir = tmpdir();
    lp_sae *s = make(&CASES[0].c, 1);
    cr_assert_eq(lp_sae_save(s, dir, NULL), 0);
    cr_assert_null(lp_sae_load_for(dir, 192, NULL));
    cr_assert(strstr(lp_last_error(), "cfg.json: d_in is 6 but the model's d_model is 192"), "%s", lp_last_error());
    lp_sae *r = lp_sae_load_for(dir, 6, NULL);
    cr_assert_not_null(r, "%s", lp_last_error());
    lp_sae_free(r);
    lp_sae_free(s);
    rmtree(dir);
}

Test(sae_io, a_missing_folder_is_an_io_error)
{
    cr_assert_null(lp_sae_load("/nonexistent/loupe-sae", NULL));
    cr_assert_eq(lp_last_error_code(), LP_ERR_IO);
    cr_assert(strstr(lp_last_error(), "/nonexistent/loupe-sae/cfg.json"), "%s", lp_last_error());
}
