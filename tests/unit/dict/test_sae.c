/* Dictionaries' data (backend/dict/sae.h): configuration checks, shapes, the initialisation
 * of DICTIONARY.md (decoder rows of the given norm, W_enc = W_dec^T), copies, CLT shapes. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "dict/sae.h"

static lp_sae_config cfg(lp_sae_arch a)
{
    return (lp_sae_config){.arch = a, .d_in = 6, .d_sae = 10, .d_out = 6, .k = 3, .apply_b_dec_to_input = 1,
                           .layer = -1};
}

Test(sae, bad_configurations_say_which_field)
{
    struct {
        lp_sae_config c;
        const char *says;
    } bad[] = {
        {{.arch = LP_SAE_TOPK, .d_in = 6, .d_sae = 10, .d_out = 6, .k = 0}, "k must be in 1..10"},
        {{.arch = LP_SAE_TOPK, .d_in = 6, .d_sae = 10, .d_out = 6, .k = 11}, "k must be in 1..10"},
        {{.arch = LP_SAE_STANDARD, .d_in = 0, .d_sae = 10, .d_out = 6}, "must be positive"},
        {{.arch = LP_SAE_STANDARD, .d_in = 6, .d_sae = 10, .d_out = 5}, "d_out (5) must equal d_in (6)"},
        {{.arch = LP_SAE_STANDARD, .d_in = 6, .d_sae = 10, .d_out = 6, .skip = 1}, "transcoders only"},
        {{.arch = LP_SAE_STANDARD, .d_in = 6, .d_sae = 10, .d_out = 5, .transcoder = 1, .apply_b_dec_to_input = 1},
         "never subtracts"},
        {{.arch = (lp_sae_arch)9, .d_in = 6, .d_sae = 10, .d_out = 6}, "unknown architecture"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_null(lp_sae_new(&bad[i].c), "case %zu was accepted", i);
        cr_assert(strstr(lp_last_error(), bad[i].says), "case %zu: %s", i, lp_last_error());
        cr_assert_eq(lp_last_error_code(), LP_ERR_INPUT);
    }
}

Test(sae, shapes_follow_the_architecture)
{
    for (int a = LP_SAE_STANDARD; a <= LP_SAE_MATRYOSHKA; a++) {
        lp_sae_config c = cfg((lp_sae_arch)a);
        lp_sae *s = lp_sae_new(&c);
        cr_assert_not_null(s, "%s", lp_last_error());
        cr_assert_eq(s->W_enc->shape[0], 6); cr_assert_eq(s->W_enc->shape[1], 10);
        cr_assert_eq(s->W_dec->shape[0], 10); cr_assert_eq(s->W_dec->shape[1], 6);
        cr_assert_eq(s->b_enc->shape[0], 10); cr_assert_eq(s->b_dec->shape[0], 6);
        int thr = a == LP_SAE_JUMPRELU || a == LP_SAE_BATCHTOPK || a == LP_SAE_MATRYOSHKA;
        cr_assert_eq(s->threshold != NULL, thr, "%s", lp_sae_arch_name((lp_sae_arch)a));
        cr_assert_null(s->W_skip);
        cr_assert_eq(s->scale, 1.0f);
        cr_assert_eq(lp_sae_arch_parse(lp_sae_arch_name((lp_sae_arch)a)), a);
        lp_sae_free(s);
    }
    cr_assert_eq(lp_sae_arch_parse("gated"), -1);
    lp_sae_config t = {.arch = LP_SAE_JUMPRELU, .d_in = 6, .d_sae = 10, .d_out = 4, .transcoder = 1, .skip = 1};
    lp_sae *s = lp_sae_new(&t);
    cr_assert_not_null(s, "%s", lp_last_error());
    cr_assert_eq(s->W_skip->shape[0], 4); cr_assert_eq(s->W_skip->shape[1], 6);
    cr_assert_eq(s->W_dec->shape[1], 4);
    lp_sae_free(s);
}

Test(sae, random_init_has_unit_direction_rows_and_a_tied_encoder)
{
    lp_sae_config c = cfg(LP_SAE_JUMPRELU);
    lp_sae *s = lp_sae_new(&c), *s2 = lp_sae_new(&c);
    cr_assert_eq(lp_sae_init_random(s, 7, 0.1f, 0.01f), 0, "%s", lp_last_error());
    cr_assert_eq(lp_sae_init_random(s2, 7, 0.1f, 0.01f), 0);
    cr_assert_eq(memcmp(s->W_dec->data, s2->W_dec->data, 60 * sizeof(float)), 0, "not deterministic in the seed");
    for (int i = 0; i < 10; i++) {
        double n = 0;
        for (int j = 0; j < 6; j++) {
            float w = s->W_dec->data[i * 6 + j];
            n += (double)w * w;
            cr_assert_eq(s->W_enc->data[j * 10 + i], w, "W_enc is not W_dec^T at (%d, %d)", j, i);
        }
        cr_assert(fabs(sqrt(n) - 0.1) < 1e-6, "row %d has norm %g", i, sqrt(n));
        cr_assert_eq(s->threshold->data[i], 0.01f);
        cr_assert_eq(s->b_enc->data[i], 0.0f);
    }
    cr_assert_eq(lp_sae_init_random(s, 8, 0.1f, 0.01f), 0);
    cr_assert_neq(memcmp(s->W_dec->data, s2->W_dec->data, 60 * sizeof(float)), 0, "another seed, the same weights");
    cr_assert_eq(lp_sae_init_random(s, 8, 0.0f, 0.0f), -1);
    lp_sae_free(s), lp_sae_free(s2);
}

Test(sae, clone_is_deep_and_equal)
{
    lp_sae_config c = cfg(LP_SAE_TOPK);
    lp_sae *s = lp_sae_new(&c);
    lp_sae_init_random(s, 3, 0.1f, 0);
    s->b_dec->data[2] = 0.5f, s->scale = 2.0f;
    lp_sae *d = lp_sae_clone(s);
    cr_assert_not_null(d, "%s", lp_last_error());
    cr_assert_neq(d->W_dec->data, s->W_dec->data);
    cr_assert_eq(memcmp(d->W_enc->data, s->W_enc->data, 60 * sizeof(float)), 0);
    cr_assert_eq(d->b_dec->data[2], 0.5f); cr_assert_eq(d->scale, 2.0f); cr_assert_eq(d->cfg.k, 3);
    lp_sae_free(s), lp_sae_free(d);
}

Test(sae, clt_shapes)
{
    lp_clt *c = lp_clt_new(3, 8, 5, 1);
    cr_assert_not_null(c, "%s", lp_last_error());
    for (int l = 0; l < 3; l++) {
        cr_assert_eq(c->W_enc[l]->shape[0], 8); cr_assert_eq(c->W_enc[l]->shape[1], 5);
        cr_assert_eq(c->W_dec[l]->ndim, 3);
        cr_assert_eq(c->W_dec[l]->shape[0], 5); cr_assert_eq(c->W_dec[l]->shape[1], 3 - l);
        cr_assert_eq(c->W_dec[l]->shape[2], 8); cr_assert_eq(c->threshold[l]->shape[0], 5);
    }
    lp_clt_free(c);
    cr_assert_null(lp_clt_new(0, 8, 5, 0));
    cr_assert(strstr(lp_last_error(), "must be positive"), "%s", lp_last_error());
    lp_clt_free(NULL), lp_sae_free(NULL), lp_transcoder_set_free(NULL);
}
