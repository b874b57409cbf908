/* The SAE trainer (backend/dict/sae_train.h): planted features recovered by standard, topk
 * and jumprelu SAEs; a NaN stops a step and changes nothing; a trainer resumed from a copy
 * of another's state ends where an uninterrupted one does. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "dict/sae_train.h"
#include "rng.h"

enum { D = 16, F = 32, B = 256 };

/* F random unit directions in R^D */
static void directions(float *dirs, uint64_t seed)
{
    lp_rng g;
    lp_rng_seed(&g, seed);
    for (int f = 0; f < F; f++) {
        double n = 0;
        for (int d = 0; d < D; d++)
            dirs[f * D + d] = (float)lp_rng_normal(&g), n += (double)dirs[f * D + d] * dirs[f * D + d];
        for (int d = 0; d < D; d++)
            dirs[f * D + d] /= (float)sqrt(n);
    }
}

/* B samples: each feature on with probability 3/F, magnitude U[0.5, 1.5], plus noise 0.01. */
static void batch(float *x, const float *dirs, lp_rng *g)
{
    for (int n = 0; n < B; n++) {
        float *r = x + n * D;
        for (int d = 0; d < D; d++)
            r[d] = 0.01f * (float)lp_rng_normal(g);
        for (int f = 0; f < F; f++)
            if (lp_rng_uniform(g) < 3.0f / F) {
                float a = 0.5f + lp_rng_uniform(g);
                for (int d = 0; d < D; d++)
                    r[d] += a * dirs[f * D + d];
            }
    }
}

/* Mean over true features of the best |cosine| with a decoder row. */
static double recovery(const lp_sae *s, const float *dirs)
{
    double sum = 0;
    for (int f = 0; f < F; f++) {
        double best = -1;
        for (int i = 0; i < s->cfg.d_sae; i++) {
            const float *r = s->W_dec->data + i * D;
            double dot = 0, n = 0;
            for (int d = 0; d < D; d++)
                dot += (double)r[d] * dirs[f * D + d], n += (double)r[d] * r[d];
            if (n > 0 && dot / sqrt(n) > best)
                best = dot / sqrt(n);
        }
        sum += best;
    }
    return sum / F;
}

static double train_planted(lp_sae_config c, lp_sae_train_opts o, long steps, float theta0, lp_sae_step_stats *st)
{
    float dirs[F * D], x[B * D];
    directions(dirs, 1);
    lp_sae *s = lp_sae_new(&c);
    cr_assert_not_null(s, "%s", lp_last_error());
    cr_assert_eq(lp_sae_init_random(s, 2, 0.1f, theta0), 0);
    o.batch = B, o.steps = steps;
    lp_sae_trainer *t = lp_sae_trainer_new(s, &o);
    cr_assert_not_null(t, "%s", lp_last_error());
    lp_rng g;
    lp_rng_seed(&g, 3);
    double before = recovery(s, dirs);
    for (long k = 0; k < steps; k++) {
        batch(x, dirs, &g);
        cr_assert_eq(lp_sae_trainer_step(t, x, NULL, B, st), 0, "%s", lp_last_error());
    }
    double r = recovery(s, dirs);
    cr_log_info("%s: recovery %.3f (%.3f at init), mse %.4g, l0 %.2f, explained variance %.3f, dead %d",
                lp_sae_arch_name(c.arch), r, before, st->loss.mse, st->loss.l0, st->explained_variance, st->dead);
    cr_assert(before < 0.8, "the initialisation already finds the features (%.3f): the test tests nothing", before);
    lp_sae_trainer_free(t);
    lp_sae_free(s);
    return r;
}

Test(sae_train, topk_recovers_planted_features)
{
    lp_sae_config c = {.arch = LP_SAE_TOPK, .d_in = D, .d_sae = 2 * F, .d_out = D, .k = 4, .apply_b_dec_to_input = 1};
    lp_sae_train_opts o = lp_sae_train_defaults(&c);
    o.lr = 3e-3f, o.warmup = 50, o.dead_window = 200, o.unit_decoder = 1;
    lp_sae_step_stats st;
    double r = train_planted(c, o, 3000, 0, &st);
    cr_assert(r >= 0.9, "topk recovered %.3f", r);
    cr_assert(st.explained_variance > 0.8, "explained variance %.3f", st.explained_variance);
}

Test(sae_train, standard_recovers_planted_features)
{
    lp_sae_config c = {.arch = LP_SAE_STANDARD, .d_in = D, .d_sae = 2 * F, .d_out = D, .apply_b_dec_to_input = 1};
    lp_sae_train_opts o = lp_sae_train_defaults(&c);
    o.lr = 3e-3f, o.warmup = 50, o.loss.l1 = 0.3f, o.l1_warmup = 150, o.dead_window = 200, o.resample_every = 500;
    lp_sae_step_stats st;
    double r = train_planted(c, o, 3000, 0, &st);
    cr_assert(r >= 0.9, "standard recovered %.3f", r);
}

Test(sae_train, jumprelu_recovers_planted_features)
{
    lp_sae_config c = {.arch = LP_SAE_JUMPRELU, .d_in = D, .d_sae = 2 * F, .d_out = D, .apply_b_dec_to_input = 1};
    lp_sae_train_opts o = lp_sae_train_defaults(&c);
    o.lr = 3e-3f, o.warmup = 50, o.loss.l1 = 0.1f, o.l1_warmup = 150, o.loss.bandwidth = 0.1f;
    lp_sae_step_stats st;
    double r = train_planted(c, o, 3000, 0.01f, &st);
    cr_assert(r >= 0.9, "jumprelu recovered %.3f", r);
    cr_assert(st.loss.l0 < 8, "L0 %.2f: the sparsity term did nothing", st.loss.l0);
}

Test(sae_train, a_nan_fails_the_step_and_keeps_everything)
{
    lp_sae_config c = {.arch = LP_SAE_TOPK, .d_in = D, .d_sae = F, .d_out = D, .k = 4, .apply_b_dec_to_input = 1};
    float dirs[F * D], x[B * D];
    directions(dirs, 1);
    lp_sae *s = lp_sae_new(&c);
    lp_sae_init_random(s, 4, 0.1f, 0);
    lp_sae_train_opts o = lp_sae_train_defaults(&c);
    o.batch = B;
    lp_sae_trainer *t = lp_sae_trainer_new(s, &o);
    lp_rng g;
    lp_rng_seed(&g, 5);
    lp_sae_step_stats st;
    for (int k = 0; k < 2; k++) {
        batch(x, dirs, &g);
        cr_assert_eq(lp_sae_trainer_step(t, x, NULL, B, &st), 0);
    }
    lp_sae *before = lp_sae_clone(s);
    lp_sae_trainer *tb = lp_sae_trainer_clone(t, before);
    batch(x, dirs, &g);
    x[5 * D + 3] = NAN;
    cr_assert_eq(lp_sae_trainer_step(t, x, NULL, B, &st), -1);
    cr_assert(strstr(lp_last_error(), "step 3"), "%s", lp_last_error());
    cr_assert(strstr(lp_last_error(), "kept as of step 2"), "%s", lp_last_error());
    cr_assert_eq(lp_sae_trainer_steps(t), 2);
    cr_assert_eq(memcmp(s->W_enc->data, before->W_enc->data, D * F * sizeof(float)), 0);
    cr_assert_eq(memcmp(s->W_dec->data, before->W_dec->data, D * F * sizeof(float)), 0);
    cr_assert_eq(memcmp(s->b_enc->data, before->b_enc->data, F * sizeof(float)), 0);
    cr_assert_eq(memcmp(s->b_dec->data, before->b_dec->data, D * sizeof(float)), 0);
    /* the moments too: the next good step goes exactly where the untouched copy goes */
    x[5 * D + 3] = 0;
    cr_assert_eq(lp_sae_trainer_step(t, x, NULL, B, &st), 0);
    cr_assert_eq(lp_sae_trainer_step(tb, x, NULL, B, &st), 0);
    cr_assert_eq(memcmp(s->W_enc->data, before->W_enc->data, D * F * sizeof(float)), 0, "moments changed");
    cr_assert_eq(memcmp(s->W_dec->data, before->W_dec->data, D * F * sizeof(float)), 0, "moments changed");
    lp_sae_trainer_free(t), lp_sae_trainer_free(tb), lp_sae_free(s), lp_sae_free(before);
}

/* k steps, a copy of the state, m more steps on the copy == k + m steps straight. */
static void resume_equals_straight(lp_sae_config c, lp_sae_train_opts o, int want_resampled)
{
    float dirs[F * D], x[B * D];
    directions(dirs, 1);
    lp_sae *a = lp_sae_new(&c), *b = lp_sae_new(&c);
    lp_sae_init_random(a, 6, 0.1f, 0.15f), lp_sae_init_random(b, 6, 0.1f, 0.15f);
    o.batch = B, o.steps = 60, o.dead_window = 5, o.warmup = 10, o.decay = 1, o.l1_warmup = 10;
    lp_sae_trainer *ta = lp_sae_trainer_new(a, &o), *tb = lp_sae_trainer_new(b, &o);
    lp_rng ga, gb;
    lp_rng_seed(&ga, 7), lp_rng_seed(&gb, 7);
    lp_sae_step_stats st;
    int resampled = 0, dead = 0;
    for (int k = 0; k < 60; k++) {
        batch(x, dirs, &ga);
        cr_assert_eq(lp_sae_trainer_step(ta, x, NULL, B, &st), 0, "%s", lp_last_error());
        resampled += k >= 25 ? st.resampled : 0, dead += st.dead; /* resampled after the copy */
    }
    for (int k = 0; k < 25; k++) {
        batch(x, dirs, &gb);
        cr_assert_eq(lp_sae_trainer_step(tb, x, NULL, B, &st), 0);
    }
    lp_sae *b2 = lp_sae_clone(b);
    lp_sae_trainer *tb2 = lp_sae_trainer_clone(tb, b2);
    lp_sae_trainer_free(tb), lp_sae_free(b);
    for (int k = 25; k < 60; k++) {
        batch(x, dirs, &gb);
        cr_assert_eq(lp_sae_trainer_step(tb2, x, NULL, B, &st), 0);
    }
    cr_assert_eq(lp_sae_trainer_steps(tb2), 60);
    cr_assert_eq(memcmp(a->W_enc->data, b2->W_enc->data, D * c.d_sae * sizeof(float)), 0);
    cr_assert_eq(memcmp(a->W_dec->data, b2->W_dec->data, D * c.d_sae * sizeof(float)), 0);
    cr_assert_eq(memcmp(a->b_enc->data, b2->b_enc->data, c.d_sae * sizeof(float)), 0);
    cr_assert_eq(memcmp(a->b_dec->data, b2->b_dec->data, D * sizeof(float)), 0);
    if (a->threshold)
        cr_assert_eq(memcmp(a->threshold->data, b2->threshold->data, c.d_sae * sizeof(float)), 0);
    cr_assert_eq(memcmp(lp_sae_trainer_since_fired(ta), lp_sae_trainer_since_fired(tb2), c.d_sae * sizeof(int)), 0);
    cr_log_info("%s: %d resampled, %d dead-feature steps", lp_sae_arch_name(c.arch), resampled, dead);
    cr_assert(dead > 0, "%s: no feature died: the dead counters are not tested", lp_sae_arch_name(c.arch));
    cr_assert(!want_resampled || resampled > 0, "nothing was resampled after the copy: its random state is not tested");
    lp_sae_trainer_free(ta), lp_sae_trainer_free(tb2), lp_sae_free(a), lp_sae_free(b2);
}

Test(sae_train, resume_from_a_copy_equals_an_uninterrupted_run)
{
    lp_sae_config c = {.arch = LP_SAE_TOPK, .d_in = D, .d_sae = 4 * F, .d_out = D, .k = 2, .apply_b_dec_to_input = 1};
    lp_sae_train_opts o = lp_sae_train_defaults(&c);
    resume_equals_straight(c, o, 0);
    c.arch = LP_SAE_STANDARD;
    o = lp_sae_train_defaults(&c);
    o.resample_every = 20, o.loss.l1 = 5.0f, o.lr = 3e-3f;
    resume_equals_straight(c, o, 1);
    c.arch = LP_SAE_BATCHTOPK;
    o = lp_sae_train_defaults(&c);
    resume_equals_straight(c, o, 0);
    c.arch = LP_SAE_JUMPRELU;
    o = lp_sae_train_defaults(&c);
    o.loss.l1 = 1.0f, o.lr = 3e-3f;
    resume_equals_straight(c, o, 0);
}

Test(sae_train, bad_options_and_batches_are_errors)
{
    lp_sae_config c = {.arch = LP_SAE_TOPK, .d_in = D, .d_sae = F, .d_out = D, .k = 4};
    lp_sae *s = lp_sae_new(&c);
    lp_sae_train_opts o = lp_sae_train_defaults(&c);
    o.lr = -1;
    cr_assert_null(lp_sae_trainer_new(s, &o));
    cr_assert(strstr(lp_last_error(), "lr must be positive"), "%s", lp_last_error());
    o = lp_sae_train_defaults(&c);
    o.batch = 8;
    lp_sae_trainer *t = lp_sae_trainer_new(s, &o);
    float x[9 * D] = {0};
    cr_assert_eq(lp_sae_trainer_step(t, x, NULL, 9, NULL), -1);
    cr_assert(strstr(lp_last_error(), "step 1 got 9 tokens"), "%s", lp_last_error());
    lp_sae_trainer_free(t), lp_sae_free(s);
}

/* After a step, exactly the features that fired on that batch (as lp_sae_encode_ref sees them
 * with the weights before the step) have a counter of 0. */
static void counters_follow_firing(lp_sae_config c, float shift, int every)
{
    float dirs[F * D], x[B * D], *f = malloc((size_t)B * c.d_sae * sizeof(float));
    directions(dirs, 1);
    lp_sae *s = lp_sae_new(&c);
    lp_sae_init_random(s, 8, 0.1f, 0.05f);
    for (int i = 0; i < c.d_sae; i += every) /* features shifted down fire rarely or never */
        s->b_enc->data[i] -= shift;
    lp_sae_train_opts o = lp_sae_train_defaults(&c);
    o.batch = B;
    lp_sae_trainer *t = lp_sae_trainer_new(s, &o);
    lp_rng g;
    lp_rng_seed(&g, 9);
    for (int k = 0; k < 3; k++) {
        batch(x, dirs, &g);
        lp_sae_encode_ref(NULL, f, s, x, B, 1);
        cr_assert_eq(lp_sae_trainer_step(t, x, NULL, B, NULL), 0, "%s", lp_last_error());
    }
    const int *since = lp_sae_trainer_since_fired(t);
    int fired = 0;
    for (int i = 0; i < c.d_sae; i++) {
        int on = 0;
        for (int n = 0; n < B; n++)
            on |= f[n * c.d_sae + i] != 0;
        fired += on;
        cr_assert_eq(since[i] == 0, on, "%s: feature %d fired %d, counter %d", lp_sae_arch_name(c.arch), i, on,
                     since[i]);
    }
    cr_assert(fired > 0 && fired < c.d_sae, "%s: %d of %d fired: the case tests nothing", lp_sae_arch_name(c.arch),
              fired, c.d_sae);
    lp_sae_trainer_free(t), lp_sae_free(s), free(f);
}

Test(sae_train, dead_counters_follow_firing_in_sparse_and_dense_mode)
{
    lp_sae_config c = {.arch = LP_SAE_TOPK, .d_in = D, .d_sae = 8 * F, .d_out = D, .k = 1, .apply_b_dec_to_input = 1};
    counters_follow_firing(c, 0, 1); /* lists */
    c.arch = LP_SAE_JUMPRELU;
    counters_follow_firing(c, 0.06f, 1); /* lists, with pairs in the kernel's band */
    c.arch = LP_SAE_STANDARD, c.d_sae = F;
    counters_follow_firing(c, 1.0f, 2); /* dense: a quarter of the pairs active */
}

/* batchtopk learns the threshold that inference (threshold mode) uses: after training, the
 * threshold is positive, one value for all features, and keeps about k features per token. */
Test(sae_train, batchtopk_threshold_keeps_about_k_at_inference)
{
    lp_sae_config c = {.arch = LP_SAE_BATCHTOPK, .d_in = D, .d_sae = 2 * F, .d_out = D, .k = 4,
                       .apply_b_dec_to_input = 1};
    float dirs[F * D], x[B * D], *f = malloc((size_t)B * c.d_sae * sizeof(float));
    directions(dirs, 1);
    lp_sae *s = lp_sae_new(&c);
    lp_sae_init_random(s, 10, 0.1f, 0);
    lp_sae_train_opts o = lp_sae_train_defaults(&c);
    o.batch = B, o.lr = 3e-3f;
    lp_sae_trainer *t = lp_sae_trainer_new(s, &o);
    lp_rng g;
    lp_rng_seed(&g, 11);
    lp_sae_step_stats st;
    for (int k = 0; k < 600; k++) {
        batch(x, dirs, &g);
        cr_assert_eq(lp_sae_trainer_step(t, x, NULL, B, &st), 0, "%s", lp_last_error());
        cr_assert(fabs(st.loss.l0 - 4) < 1e-9, "batch mode keeps k*N: l0 %g", st.loss.l0);
    }
    float th = s->threshold->data[0];
    cr_assert(th > 0, "threshold %g", th);
    for (int i = 1; i < c.d_sae; i++)
        cr_assert_eq(s->threshold->data[i], th);
    batch(x, dirs, &g);
    cr_assert_eq(lp_sae_encode(NULL, f, s, x, B, 0), 0, "%s", lp_last_error());
    double l0 = 0;
    for (int p = 0; p < B * c.d_sae; p++)
        l0 += f[p] != 0;
    l0 /= B;
    cr_log_info("batchtopk: threshold %g, inference l0 %.2f (k 4)", th, l0);
    cr_assert(l0 > 2 && l0 < 8, "threshold mode keeps %.2f features per token (k 4)", l0);
    lp_sae_trainer_free(t), lp_sae_free(s), free(f);
}
