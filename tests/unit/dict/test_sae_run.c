/* The SAE training run (backend/dict/sae_run.h): an interrupted-then-resumed run equals an
 * uninterrupted one bit for bit (from a synthetic source and from an activation stream over
 * a tiny random model), a sweep's SAEs equal the same SAEs trained alone on the same
 * batches, a NaN stops the run naming the step with the last good weights kept, the
 * history, the callback's stop, and bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "dict/sae_run.h"
#include "dict_fixtures.h"
#include "../model/random_model.h"

enum { D = 16, F = 64, B = 64 };

/* The source: sparse sums of 3 of D random directions (as the trainer's tests), deterministic
 * in its generator; `poison` > 0 puts a NaN in batch number poison. */
typedef struct src {
    lp_rng g;
    int drawn, poison;
} src;

static int draw(void *ud, float *x, float *y, int N)
{
    (void)y;
    src *s = ud;
    s->drawn++;
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++) {
            float v = 0.02f * (float)lp_rng_normal(&s->g);
            if (lp_rng_uniform(&s->g) < 0.2f)
                v += 1.0f + (float)lp_rng_uniform(&s->g);
            x[n * D + d] = v;
        }
    if (s->poison && s->drawn == s->poison)
        x[5] = NAN;
    return 0;
}

static lp_sae *sae(lp_sae_arch a, int k)
{
    lp_sae_config c = {.arch = a, .d_in = D, .d_sae = F, .d_out = D, .k = k, .apply_b_dec_to_input = 1, .layer = -1};
    lp_sae *s = lp_sae_new(&c);
    cr_assert_not_null(s, "%s", lp_last_error());
    cr_assert_eq(lp_sae_init_random(s, 7, 0.1f, 0), 0);
    return s;
}

static lp_sae_trainer *trainer(lp_sae *s, float l1)
{
    lp_sae_train_opts o = lp_sae_train_defaults(&s->cfg);
    o.batch = B, o.steps = 60, o.lr = 1e-3f, o.warmup = 5, o.l1_warmup = 3, o.dead_window = 10;
    if (l1 > 0)
        o.loss.l1 = l1;
    lp_sae_trainer *t = lp_sae_trainer_new(s, &o);
    cr_assert_not_null(t, "%s", lp_last_error());
    return t;
}

static lp_sae_run *run_of(lp_sae **s, const float *l1, int n, src *g)
{
    lp_sae_trainer *t[4];
    for (int i = 0; i < n; i++)
        t[i] = trainer(s[i], l1 ? l1[i] : 0);
    lp_sae_run_opts o = {.source = draw, .source_ud = g, .batch = B, .d_in = D};
    lp_sae_run *r = lp_sae_run_new(t, n, &o);
    cr_assert_not_null(r, "%s", lp_last_error());
    return r;
}

static void same_sae(const lp_sae *a, const lp_sae *b)
{
    same(a->W_enc, b->W_enc, "W_enc"), same(a->b_enc, b->b_enc, "b_enc");
    same(a->W_dec, b->W_dec, "W_dec"), same(a->b_dec, b->b_dec, "b_dec");
    same(a->threshold, b->threshold, "threshold");
}

static void same_history(lp_sae_history a, lp_sae_history b)
{
    cr_assert_eq(a.n, b.n);
    for (size_t i = 0; i < a.n; i++) {
        cr_assert_eq(a.step[i], b.step[i]);
        cr_assert_eq(a.tokens[i], b.tokens[i]);
        cr_assert_eq(memcmp(&a.loss[i], &b.loss[i], sizeof(double)), 0, "loss of step %ld", a.step[i]);
        cr_assert_eq(memcmp(&a.explained_variance[i], &b.explained_variance[i], sizeof(double)), 0);
        cr_assert_eq(a.dead[i], b.dead[i]);
    }
}

/* stops by an interrupt after step `at` */
static int interrupt_at(void *ud, const lp_sae_progress *p)
{
    if (p->step == *(long *)ud)
        lp_interrupt_request();
    return 0;
}

Test(sae_run, interrupted_then_resumed_equals_uninterrupted)
{
    lp_sae_arch archs[] = {LP_SAE_TOPK, LP_SAE_STANDARD, LP_SAE_BATCHTOPK};
    for (int a = 0; a < 3; a++) {
        lp_sae *s1 = sae(archs[a], 4), *s2 = sae(archs[a], 4);
        src g1 = {0}, g2 = {0};
        lp_rng_seed(&g1.g, 11), lp_rng_seed(&g2.g, 11);
        lp_sae_run *r1 = run_of(&s1, NULL, 1, &g1), *r2 = run_of(&s2, NULL, 1, &g2);
        cr_assert_eq(lp_sae_run_go(r1, 40, NULL, NULL), 0, "%s", lp_last_error());
        long at = 17;
        lp_interrupt_clear();
        cr_assert_eq(lp_sae_run_go(r2, 40, interrupt_at, &at), -1);
        cr_assert(strstr(lp_last_error(), "interrupt"), "%s", lp_last_error());
        cr_assert_eq(lp_sae_run_steps(r2), 17, "stopped after the last finished step");
        cr_assert_eq(lp_sae_run_history(r2, 0).n, 17);
        lp_interrupt_clear();
        cr_assert_eq(lp_sae_run_go(r2, 40, NULL, NULL), 0, "%s", lp_last_error());
        cr_assert_eq(lp_sae_run_steps(r2), 40);
        cr_assert_eq(lp_sae_run_tokens(r2), 40 * B);
        same_sae(s1, s2);
        same_history(lp_sae_run_history(r1, 0), lp_sae_run_history(r2, 0));
        lp_sae_run_free(r1), lp_sae_run_free(r2);
        lp_sae_free(s1), lp_sae_free(s2);
    }
}

Test(sae_run, sweep_equals_each_trained_alone)
{
    /* two topk of different k, and two standard of different l1 */
    lp_sae *sw[2] = {sae(LP_SAE_TOPK, 2), sae(LP_SAE_TOPK, 8)};
    src g = {0};
    lp_rng_seed(&g.g, 5);
    lp_sae_run *r = run_of(sw, NULL, 2, &g);
    cr_assert_eq(lp_sae_run_go(r, 30, NULL, NULL), 0, "%s", lp_last_error());
    cr_assert_eq(g.drawn, 30, "one batch per step for the whole sweep");
    for (int i = 0; i < 2; i++) {
        lp_sae *alone = sae(LP_SAE_TOPK, i ? 8 : 2);
        src ga = {0};
        lp_rng_seed(&ga.g, 5);
        lp_sae_run *ra = run_of(&alone, NULL, 1, &ga);
        cr_assert_eq(lp_sae_run_go(ra, 30, NULL, NULL), 0);
        same_sae(sw[i], alone);
        same_history(lp_sae_run_history(r, i), lp_sae_run_history(ra, 0));
        lp_sae_run_free(ra), lp_sae_free(alone);
    }
    cr_assert_neq(memcmp(sw[0]->W_enc->data, sw[1]->W_enc->data, sizeof(float) * D * F), 0);
    lp_sae_run_free(r), lp_sae_free(sw[0]), lp_sae_free(sw[1]);

    float l1[2] = {0.5f, 5.0f};
    lp_sae *st[2] = {sae(LP_SAE_STANDARD, 0), sae(LP_SAE_STANDARD, 0)};
    lp_rng_seed(&g.g, 6), g.drawn = 0;
    r = run_of(st, l1, 2, &g);
    cr_assert_eq(lp_sae_run_go(r, 20, NULL, NULL), 0, "%s", lp_last_error());
    for (int i = 0; i < 2; i++) {
        lp_sae *alone = sae(LP_SAE_STANDARD, 0);
        src ga = {0};
        lp_rng_seed(&ga.g, 6);
        lp_sae_run *ra = run_of(&alone, &l1[i], 1, &ga);
        cr_assert_eq(lp_sae_run_go(ra, 20, NULL, NULL), 0);
        same_sae(st[i], alone);
        lp_sae_run_free(ra), lp_sae_free(alone);
    }
    lp_sae_run_free(r), lp_sae_free(st[0]), lp_sae_free(st[1]);
}

Test(sae_run, nan_stops_naming_the_step_and_keeps_the_last_good_weights)
{
    lp_sae *s = sae(LP_SAE_TOPK, 4), *ref = sae(LP_SAE_TOPK, 4);
    src g = {.poison = 13}, gr = {0};
    lp_rng_seed(&g.g, 9), lp_rng_seed(&gr.g, 9);
    lp_sae_run *r = run_of(&s, NULL, 1, &g), *rr = run_of(&ref, NULL, 1, &gr);
    cr_assert_eq(lp_sae_run_go(r, 30, NULL, NULL), -1);
    cr_assert(strstr(lp_last_error(), "step 13"), "%s", lp_last_error());
    cr_assert(strstr(lp_last_error(), "kept as of step 12"), "%s", lp_last_error());
    cr_assert_eq(lp_sae_run_steps(r), 12);
    cr_assert_eq(lp_sae_run_history(r, 0).n, 12);
    cr_assert_eq(lp_sae_run_go(rr, 12, NULL, NULL), 0);
    same_sae(s, ref);
    lp_sae_run_free(r), lp_sae_run_free(rr), lp_sae_free(s), lp_sae_free(ref);

    /* in a sweep, the error names the SAE */
    lp_sae *sw[2] = {sae(LP_SAE_TOPK, 2), sae(LP_SAE_STANDARD, 0)};
    src gs = {.poison = 3};
    lp_rng_seed(&gs.g, 9);
    r = run_of(sw, NULL, 2, &gs);
    cr_assert_eq(lp_sae_run_go(r, 30, NULL, NULL), -1);
    cr_assert(strstr(lp_last_error(), "SAE 1 of 2") && strstr(lp_last_error(), "step 3"), "%s", lp_last_error());
    cr_assert_eq(lp_sae_run_go(r, 30, NULL, NULL), -1, "a stopped sweep does not go on out of step");
    cr_assert(strstr(lp_last_error(), "cannot go on") && strstr(lp_last_error(), "step 3"), "%s", lp_last_error());
    cr_assert_eq(gs.drawn, 3);
    lp_sae_run_free(r), lp_sae_free(sw[0]), lp_sae_free(sw[1]);
}

typedef struct seen {
    int calls;
    long last_step;
    int64_t last_tokens;
    double l0, ev;
    long stop_at;
} seen;

static int watch(void *ud, const lp_sae_progress *p)
{
    seen *s = ud;
    s->calls++;
    cr_assert_eq(p->step, s->last_step + 1);
    cr_assert_eq(p->n, 1);
    cr_assert_eq(p->stats[0].step, p->step);
    s->last_step = p->step, s->last_tokens = p->tokens;
    s->l0 = p->stats[0].loss.l0, s->ev = p->stats[0].explained_variance;
    return p->step == s->stop_at;
}

Test(sae_run, history_and_the_callback)
{
    lp_sae *s = sae(LP_SAE_TOPK, 4);
    src g = {0};
    lp_rng_seed(&g.g, 3);
    lp_sae_run *r = run_of(&s, NULL, 1, &g);
    seen w = {.stop_at = 25};
    cr_assert_eq(lp_sae_run_go(r, 60, watch, &w), 1, "the callback stops the run");
    cr_assert_eq(w.calls, 25);
    cr_assert_eq(lp_sae_run_go(r, 60, watch, &w), 0, "%s", lp_last_error());
    cr_assert_eq(w.calls, 60);
    cr_assert_eq(w.last_tokens, 60 * B);
    lp_sae_history h = lp_sae_run_history(r, 0);
    cr_assert_eq(h.n, 60);
    for (size_t i = 0; i < h.n; i++) {
        cr_assert_eq(h.step[i], (long)i + 1);
        cr_assert_eq(h.tokens[i], (int64_t)(i + 1) * B);
        cr_assert(h.l0[i] > 0 && h.l0[i] <= 4.0 + 1e-9, "topk k = 4: L0 %g", h.l0[i]);
        cr_assert(h.mse[i] >= 0 && h.dead[i] >= 0 && h.dead[i] <= F);
        cr_assert(h.loss[i] >= h.mse[i]);
    }
    cr_assert_eq(h.l0[59], w.l0);
    cr_assert_eq(h.explained_variance[59], w.ev);
    cr_assert(h.explained_variance[59] > h.explained_variance[0] + 0.2, "explained variance %g -> %g",
              h.explained_variance[0], h.explained_variance[59]);
    cr_assert_eq(lp_sae_run_go(r, 10, NULL, NULL), -1, "cannot run back to an earlier step");
    cr_assert(strstr(lp_last_error(), "already done"), "%s", lp_last_error());
    lp_sae_run_free(r), lp_sae_free(s);
}

Test(sae_run, bad_input)
{
    lp_sae *s = sae(LP_SAE_TOPK, 4);
    lp_sae_trainer *t = trainer(s, 0);
    lp_sae_run_opts o = {.batch = B, .d_in = D};
    cr_assert_null(lp_sae_run_new(&t, 1, &o), "no source");
    cr_assert(strstr(lp_last_error(), "source"), "%s", lp_last_error());
    /* a trainer for fewer tokens than the batch fails its first step, nothing changed */
    lp_sae *s2 = sae(LP_SAE_TOPK, 4);
    lp_sae_train_opts to = lp_sae_train_defaults(&s2->cfg);
    to.batch = B / 2;
    t = lp_sae_trainer_new(s2, &to);
    src g = {0};
    lp_rng_seed(&g.g, 1);
    o.source = draw, o.source_ud = &g;
    lp_sae_run *r = lp_sae_run_new(&t, 1, &o);
    cr_assert_not_null(r);
    cr_assert_eq(lp_sae_run_go(r, 5, NULL, NULL), -1);
    cr_assert(strstr(lp_last_error(), "tokens"), "%s", lp_last_error());
    cr_assert_eq(lp_sae_run_steps(r), 0);
    lp_sae_run_free(r);
    /* trainers at different steps do not make a sweep */
    lp_sae_trainer *ts[2] = {trainer(s, 0), trainer(s2, 0)};
    float x[B * D];
    lp_sae_step_stats st;
    draw(&g, x, NULL, B);
    cr_assert_eq(lp_sae_trainer_step(ts[1], x, NULL, B, &st), 0);
    cr_assert_null(lp_sae_run_new(ts, 2, &o));
    cr_assert(strstr(lp_last_error(), "in step"), "%s", lp_last_error());
    lp_sae_free(s), lp_sae_free(s2);
}

/* From the activation stream over a tiny random model: interrupted twice and resumed equals
 * uninterrupted (the stream's own interrupt between model runs is test_activations'). */
enum { L_ = 2, DM = 16, V_ = 37, CTX = 12 };
static const char *const HOOK[] = {"blocks.0.hook_resid_post"};

static int32_t *corpus(size_t n)
{
    int32_t *t = malloc(n * sizeof *t);
    lp_rng g;
    lp_rng_seed(&g, 4);
    for (size_t i = 0; i < n; i++)
        t[i] = 1 + (int32_t)lp_rng_below(&g, V_ - 1);
    return t;
}

static int interrupt_inside(void *ud, const lp_sae_progress *p)
{
    (void)ud;
    if (p->step == 9 || p->step == 23)
        lp_interrupt_request();
    return 0;
}

Test(sae_run, stream_resume_equals_uninterrupted)
{
    lp_model *m = rm_model(0, L_, DM, 4, 4, V_, 21);
    size_t n = 3000;
    int32_t *tok = corpus(n);
    lp_act_opts ao = {.hooks = HOOK, .nhooks = 1, .tokens = tok, .ntokens = n, .ctx = CTX, .batch = B,
                      .buffer = 4, .seed = 3, .normalize = 1};
    lp_sae *s[2];
    lp_sae_run *r[2];
    lp_act_stream *as[2];
    for (int i = 0; i < 2; i++) {
        as[i] = lp_act_stream_new(m, &ao);
        cr_assert_not_null(as[i], "%s", lp_last_error());
        s[i] = sae(LP_SAE_TOPK, 4);
        lp_sae_trainer *t = trainer(s[i], 0);
        lp_sae_run_opts o = {.stream = as[i], .batch = B, .d_in = DM};
        r[i] = lp_sae_run_new(&t, 1, &o);
        cr_assert_not_null(r[i], "%s", lp_last_error());
    }
    lp_interrupt_clear();
    cr_assert_eq(lp_sae_run_go(r[0], 40, NULL, NULL), 0, "%s", lp_last_error());
    int stops = 0;
    while (lp_sae_run_go(r[1], 40, interrupt_inside, NULL) < 0) {
        cr_assert(strstr(lp_last_error(), "interrupt"), "%s", lp_last_error());
        lp_interrupt_clear();
        cr_assert(++stops <= 2);
    }
    cr_assert_eq(stops, 2);
    same_sae(s[0], s[1]);
    same_history(lp_sae_run_history(r[0], 0), lp_sae_run_history(r[1], 0));
    cr_assert_eq(lp_act_stream_tokens_seen(as[0]), lp_act_stream_tokens_seen(as[1]));
    /* a stream of the wrong dimension is refused */
    lp_sae_config c = s[0]->cfg;
    c.d_in = c.d_out = 8;
    lp_sae *small = lp_sae_new(&c);
    lp_sae_train_opts to = lp_sae_train_defaults(&c);
    lp_sae_trainer *t = lp_sae_trainer_new(small, &to);
    lp_sae_run_opts o = {.stream = as[0], .batch = B, .d_in = 8};
    cr_assert_null(lp_sae_run_new(&t, 1, &o));
    cr_assert(strstr(lp_last_error(), "blocks.0.hook_resid_post has 16 dimensions"), "%s", lp_last_error());
    lp_sae_free(small);
    for (int i = 0; i < 2; i++)
        lp_sae_run_free(r[i]), lp_act_stream_free(as[i]), lp_sae_free(s[i]);
    free(tok);
    lp_model_free(m);
}
