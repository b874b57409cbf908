/* circuit-tracer's layouts (backend/dict/tc_io.c): transcoder sets (relu, jumprelu, topk, with
 * and without W_skip) and CLTs round-trip with identical tensors; W_enc is stored one row per
 * feature; bad folders (missing or misshapen tensors, bad config.yaml, a truncated layer)
 * give errors naming the file and tensor. */
#include "core/error.h"
#include "dict/sae_io.h"
#include "dict_fixtures.h"
#include "model/safetensors.h"

static lp_transcoder_set *make_set(lp_sae_arch a, int skip, uint64_t seed)
{
    lp_sae_config c = {.arch = a, .d_in = 8, .d_sae = 12, .d_out = 8, .k = a == LP_SAE_TOPK ? 3 : 0, .skip = skip};
    lp_transcoder_set *t = lp_transcoder_set_new(3, &c, "mlp.hook_in", "mlp.hook_out");
    cr_assert_not_null(t, "%s", lp_last_error());
    for (int l = 0; l < 3; l++)
        randomise(t->layers[l], seed + (uint64_t)l);
    return t;
}

Test(tc_io, transcoder_sets_round_trip)
{
    struct {
        lp_sae_arch a;
        int skip;
        const char *act;
    } cases[] = {{LP_SAE_STANDARD, 0, "relu"}, {LP_SAE_JUMPRELU, 0, "jumprelu"}, {LP_SAE_TOPK, 0, "topk"},
                 {LP_SAE_JUMPRELU, 1, "jumprelu"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *dir = tmpdir();
        lp_transcoder_set *t = make_set(cases[i].a, cases[i].skip, 10 * i);
        cr_assert_eq(lp_transcoder_set_save(t, dir), 0, "%s", lp_last_error());
        size_t n;
        char *yaml = read_all(dir, "config.yaml", &n);
        cr_assert(strstr(yaml, "model_kind: transcoder_set\n"), "%s", yaml);
        char want[64];
        snprintf(want, sizeof want, "activation: %s\n", cases[i].act);
        cr_assert(strstr(yaml, want), "%s", yaml);
        cr_assert(strstr(yaml, "  - layer_2.safetensors\n"), "%s", yaml);
        free(yaml);
        cr_assert_eq(lp_dict_dir_kind(dir), 1);
        /* W_enc is one row per feature in the file */
        char p[512];
        snprintf(p, sizeof p, "%s/layer_1.safetensors", dir);
        lp_safetensors *st = lp_safetensors_open(p);
        const lp_st_entry *e = lp_safetensors_find(st, "W_enc");
        cr_assert_eq(e->shape[0], 12);
        cr_assert_eq(e->shape[1], 8);
        lp_tensor *we = lp_safetensors_tensor(st, e, LP_DEVICE_CPU);
        cr_assert_eq(we->data[5 * 8 + 2], t->layers[1]->W_enc->data[2 * 12 + 5], "feature 5, dim 2");
        cr_assert_eq(lp_safetensors_find(st, "activation_function.threshold") != NULL, cases[i].a == LP_SAE_JUMPRELU);
        lp_tensor_free(we);
        lp_safetensors_close(st);

        lp_transcoder_set *r = lp_transcoder_set_load(dir);
        cr_assert_not_null(r, "case %zu: %s", i, lp_last_error());
        cr_assert_eq(r->n_layers, 3);
        cr_assert_str_eq(r->feature_input_hook, "mlp.hook_in");
        cr_assert_str_eq(r->feature_output_hook, "mlp.hook_out");
        for (int l = 0; l < 3; l++) {
            const lp_sae *a = t->layers[l], *b = r->layers[l];
            cr_assert_eq(b->cfg.arch, a->cfg.arch, "case %zu", i);
            cr_assert_eq(b->cfg.k, a->cfg.k);
            cr_assert_eq(b->cfg.skip, a->cfg.skip);
            cr_assert_eq(b->cfg.transcoder, 1);
            cr_assert_eq(b->cfg.layer, l);
            cr_assert_str_eq(b->cfg.hook_in, a->cfg.hook_in);
            cr_assert_str_eq(b->cfg.hook_out, a->cfg.hook_out);
            same(b->W_enc, a->W_enc, "W_enc");
            same(b->W_dec, a->W_dec, "W_dec");
            same(b->b_enc, a->b_enc, "b_enc");
            same(b->b_dec, a->b_dec, "b_dec");
            same(b->threshold, a->threshold, "threshold");
            same(b->W_skip, a->W_skip, "W_skip");
        }
        lp_transcoder_set_free(r);
        lp_transcoder_set_free(t);
        rmtree(dir);
    }
}

Test(tc_io, clts_round_trip)
{
    for (int jump = 0; jump < 2; jump++) {
        lp_clt *c = lp_clt_new(3, 8, 5, jump);
        cr_assert_not_null(c);
        snprintf(c->feature_input_hook, sizeof c->feature_input_hook, "mlp.hook_in");
        snprintf(c->feature_output_hook, sizeof c->feature_output_hook, "mlp.hook_out");
        lp_rng g;
        lp_rng_seed(&g, 4 + jump);
        for (int l = 0; l < 3; l++) {
            fill(c->W_enc[l], &g), fill(c->b_enc[l], &g), fill(c->b_dec[l], &g), fill(c->W_dec[l], &g);
            if (jump)
                fill(c->threshold[l], &g);
        }
        char *dir = tmpdir();
        cr_assert_eq(lp_clt_save(c, dir), 0, "%s", lp_last_error());
        cr_assert_eq(lp_dict_dir_kind(dir), 2);
        char p[512];
        snprintf(p, sizeof p, "%s/W_dec_1.safetensors", dir);
        lp_safetensors *st = lp_safetensors_open(p);
        const lp_st_entry *e = lp_safetensors_find(st, "W_dec_1");
        cr_assert_not_null(e);
        cr_assert_eq(e->ndim, 3);
        cr_assert_eq(e->shape[0], 5);
        cr_assert_eq(e->shape[1], 2);
        cr_assert_eq(e->shape[2], 8);
        lp_safetensors_close(st);
        lp_clt *r = lp_clt_load(dir);
        cr_assert_not_null(r, "%s", lp_last_error());
        cr_assert_eq(r->n_layers, 3);
        cr_assert_eq(r->d_model, 8);
        cr_assert_eq(r->d_tc, 5);
        cr_assert_eq(r->threshold != NULL, jump);
        cr_assert_str_eq(r->feature_input_hook, "mlp.hook_in");
        for (int l = 0; l < 3; l++) {
            same(r->W_enc[l], c->W_enc[l], "W_enc");
            same(r->b_enc[l], c->b_enc[l], "b_enc");
            same(r->b_dec[l], c->b_dec[l], "b_dec");
            same(r->W_dec[l], c->W_dec[l], "W_dec");
            if (jump)
                same(r->threshold[l], c->threshold[l], "threshold");
        }
        cr_assert_null(lp_transcoder_set_load(dir), "a CLT is not a transcoder set");
        cr_assert(strstr(lp_last_error(), "not transcoder_set"), "%s", lp_last_error());
        lp_clt_free(r);
        lp_clt_free(c);
        rmtree(dir);
    }
}

static lp_tensor *transpose(const lp_tensor *t)
{
    lp_tensor *o = lp_tensor_zeros(2, (int64_t[]){t->shape[1], t->shape[0]}, LP_DEVICE_CPU);
    for (int64_t i = 0; i < t->shape[0]; i++)
        for (int64_t j = 0; j < t->shape[1]; j++)
            o->data[j * t->shape[0] + i] = t->data[i * t->shape[1] + j];
    return o;
}

static void expect_set_error(const char *dir, const char *a, const char *b)
{
    lp_transcoder_set *r = lp_transcoder_set_load(dir);
    cr_assert_null(r, "a damaged set was loaded");
    cr_assert(strstr(lp_last_error(), a) && (!b || strstr(lp_last_error(), b)), "want '%s' and '%s' in: %s", a,
              b ? b : "", lp_last_error());
}

Test(tc_io, bad_transcoder_folders_name_the_file_and_tensor)
{
    char *dir = tmpdir();
    lp_transcoder_set *t = make_set(LP_SAE_JUMPRELU, 0, 1);
    cr_assert_eq(lp_transcoder_set_save(t, dir), 0);
    char p[512];
    snprintf(p, sizeof p, "%s/layer_1.safetensors", dir);

    /* a misshapen W_dec in layer 1 */
    lp_tensor *bad = lp_tensor_zeros(2, (int64_t[]){12, 7}, LP_DEVICE_CPU);
    lp_tensor *we = transpose(t->layers[1]->W_enc);
    {
        const char *names[] = {"W_enc", "W_dec", "b_enc", "b_dec", "activation_function.threshold"};
        const lp_tensor *ts[] = {we, bad, t->layers[1]->b_enc, t->layers[1]->b_dec, t->layers[1]->threshold};
        cr_assert_eq(lp_safetensors_write(p, names, ts, 5, LP_DTYPE_F32, NULL, NULL, 0), 0);
        expect_set_error(dir, "layer_1.safetensors: tensor 'W_dec' has shape [12, 7], expected [12, 8]", NULL);
    }
    { /* no threshold although config.yaml says jumprelu */
        const char *names[] = {"W_enc", "W_dec", "b_enc", "b_dec"};
        const lp_tensor *ts[] = {we, t->layers[1]->W_dec, t->layers[1]->b_enc, t->layers[1]->b_dec};
        cr_assert_eq(lp_safetensors_write(p, names, ts, 4, LP_DTYPE_F32, NULL, NULL, 0), 0);
        expect_set_error(dir, "layer_1.safetensors", "'activation_function.threshold' is missing");
    }
    { /* no b_dec */
        const char *names[] = {"W_enc", "W_dec", "b_enc"};
        const lp_tensor *ts[] = {we, t->layers[1]->W_dec, t->layers[1]->b_enc};
        cr_assert_eq(lp_safetensors_write(p, names, ts, 3, LP_DTYPE_F32, NULL, NULL, 0), 0);
        expect_set_error(dir, "layer_1.safetensors", "'b_dec'");
    }
    truncate_to(dir, "layer_1.safetensors", 100);
    expect_set_error(dir, "layer_1.safetensors", NULL);
    write_text(dir, "config.yaml", "model_kind: transcoder_set\nfeature_input_hook: [mlp.hook_in\n");
    expect_set_error(dir, "config.yaml:2", "']'");
    write_text(dir, "config.yaml", "model_kind: transcoder_set\nfeature_input_hook: mlp.hook_in\n");
    expect_set_error(dir, "config.yaml", "feature_output_hook");
    write_text(dir, "config.yaml", "model_kind: transcoder_set\nfeature_input_hook: a\nfeature_output_hook: b\n"
                                   "activation: topk\n");
    expect_set_error(dir, "needs k", NULL);
    lp_tensor_free(bad);
    lp_tensor_free(we);
    lp_transcoder_set_free(t);
    rmtree(dir);
}

Test(tc_io, circuit_tracers_cached_config_without_a_list_is_read)
{
    char *dir = tmpdir();
    lp_transcoder_set *t = make_set(LP_SAE_STANDARD, 0, 2);
    cr_assert_eq(lp_transcoder_set_save(t, dir), 0);
    /* what yaml.dump writes in circuit-tracer's cache: sorted keys, no transcoders list */
    write_text(dir, "config.yaml", "feature_input_hook: mlp.hook_in\nfeature_output_hook: mlp.hook_out\n"
                                   "model_kind: transcoder_set\nmodel_name: gpt2\nrevision: null\n"
                                   "scan: 'loupe/default' # a comment\n");
    lp_transcoder_set *r = lp_transcoder_set_load(dir);
    cr_assert_not_null(r, "%s", lp_last_error());
    cr_assert_eq(r->n_layers, 3);
    same(r->layers[2]->W_enc, t->layers[2]->W_enc, "W_enc");
    lp_transcoder_set_free(r);
    lp_transcoder_set_free(t);
    rmtree(dir);
}
