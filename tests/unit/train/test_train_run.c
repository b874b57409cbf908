/* The training loop (lp_training_run, backend/train/run.c) on tiny models: it learns; the
 * validation loss it reports is the current weights' on the CPU path, on the device path (run
 * on the CPU backend everywhere, on CUDA where a GPU is present) where the model's tensors
 * are stale between pulls; an interrupt anywhere, then a resume, equals an uninterrupted run;
 * a NaN stops with the step named and the last good weights; the callback's stop; bad input. */
#include <pthread.h>
#include <time.h>

#include "core/interrupt.h"
#include "helpers.h"
#include "train/train_impl.h"

enum { B = 4, T = TCTX, NDATA = 3000 };

static const lp_backend *cuda_be(void)
{
    return lp_device_available(LP_DEVICE_CUDA) ? lp_backend_get(LP_DEVICE_CUDA) : NULL;
}

#define NEED(be)                                                                                              \
    do {                                                                                                      \
        if (!(be)) {                                                                                          \
            printf("skipped: no GPU\n");                                                                      \
            cr_skip_test("skipped: no GPU");                                                                  \
        }                                                                                                     \
    } while (0)

/* Learnable tokens: each id is a fixed function of the one before (a bigram table), with
 * one position in eight drawn at random so the loss cannot reach zero. */
static lp_dataset *tdata(uint64_t seed, size_t n)
{
    lp_rng g;
    lp_rng_seed(&g, seed);
    int32_t *ids = malloc(n * sizeof *ids);
    cr_assert_not_null(ids);
    ids[0] = 0;
    for (size_t i = 1; i < n; i++)
        ids[i] = i % 8 == 0 ? (int32_t)lp_rng_below(&g, TV) : (ids[i - 1] * 7 + 3) % TV;
    lp_dataset *d = lp_dataset_from_ids(ids, n);
    cr_assert_not_null(d, "%s", lp_last_error());
    free(ids);
    return d;
}

static lp_train_opts run_opts(float lr, int accum)
{
    lp_train_opts o;
    lp_train_opts_default(&o);
    o.lr = lr, o.accum = accum, o.warmup_steps = 2, o.schedule = LP_SCHED_COSINE, o.total_steps = 40;
    return o;
}

/* A training of m on be (NULL: the CPU path) with data seeded 1 and validation seeded 2. */
typedef struct {
    lp_dataset *data, *val;
    lp_rng g, gv;
    lp_training *r;
} fixture;

static void fx_open(fixture *f, lp_model *m, const lp_train_opts *o, const lp_backend *be, int with_val,
                    int eval_every, int eval_batches)
{
    memset(f, 0, sizeof *f);
    f->data = tdata(1, NDATA);
    f->val = with_val ? tdata(2, 500) : NULL;
    lp_rng_seed(&f->g, 11);
    lp_rng_seed(&f->gv, 12);
    lp_trainer *t = lp_trainer_new_backend(m, o, B, T, be);
    cr_assert_not_null(t, "%s", lp_last_error());
    lp_training_opts ro = {.data = f->data, .data_rng = &f->g, .val = f->val, .val_rng = with_val ? &f->gv : NULL,
                           .eval_every = eval_every, .eval_batches = eval_batches};
    f->r = lp_training_new(t, &ro);
    cr_assert_not_null(f->r, "%s", lp_last_error());
}

static void fx_close(fixture *f)
{
    lp_training_free(f->r);
    lp_dataset_free(f->data);
    lp_dataset_free(f->val);
}

/* ---- it learns, and reports every step ---- */

typedef struct {
    int calls, last_step;
    long long last_tokens;
    double last_elapsed;
    const lp_train_opts *o;
} count_ctx;

static int count_progress(void *ud, const lp_train_progress *p)
{
    count_ctx *c = ud;
    c->calls++;
    cr_assert_eq(p->step, c->last_step + 1, "steps reported out of order");
    cr_assert_eq(p->tokens, (long long)p->step * B * T * c->o->accum);
    cr_assert_eq((float)p->lr, lp_train_lr_at(c->o, p->step - 1), "step %d: lr %g", p->step, p->lr);
    cr_assert(isfinite(p->loss) && p->grad_norm > 0, "step %d: loss %g, norm %g", p->step, p->loss, p->grad_norm);
    cr_assert(p->elapsed >= c->last_elapsed);
    cr_assert(!p->validated && isnan(p->val_loss));
    c->last_step = p->step, c->last_tokens = p->tokens, c->last_elapsed = p->elapsed;
    return 0;
}

Test(train_run, loss_falls_on_learnable_data)
{
    enum { STEPS = 150 };
    lp_model_config c = tcfg_gpt2(0, LP_GELU_TANH);
    lp_model *m = tmodel(&c, 3);
    lp_train_opts o = run_opts(1e-2f, 2);
    o.total_steps = STEPS;
    fixture f;
    fx_open(&f, m, &o, NULL, 0, 1, 1);
    count_ctx cc = {.o = &o};
    cr_assert_eq(lp_training_run(f.r, STEPS, count_progress, &cc), 0, "%s", lp_last_error());
    cr_assert_eq(cc.calls, STEPS);
    lp_train_history h = lp_training_history(f.r);
    cr_assert_eq(h.n, STEPS);
    cr_assert_eq(h.n_val, 0);
    double first = 0, last = 0;
    for (int i = 0; i < 10; i++)
        first += h.loss[i] / 10, last += h.loss[STEPS - 10 + i] / 10;
    for (size_t i = 0; i < h.n; i++)
        cr_assert_eq(h.step[i], (int)i + 1);
    cr_log_info("loss %.3f -> %.3f", first, last);
    /* 7 tokens in 8 follow from the one before: the floor is about log(23) / 8 = 0.4 */
    cr_assert(last < first - 1.5 && last < 1.2, "loss %.3f -> %.3f", first, last);
    cr_assert_eq(lp_training_tokens(f.r), (long long)STEPS * B * T * 2);
    cr_assert(lp_training_seconds(f.r) > 0);
    fx_close(&f);
    lp_model_free(m);
}

/* ---- validation is the current weights' ---- */

/* Mean cross-entropy of lp_model_run's logits on the model's tensors, in double. */
static double run_loss(const lp_model *m, const int32_t *x, const int32_t *y)
{
    lp_run r;
    cr_assert_eq(lp_model_run(m, x, B, T, NULL, &r), 0, "%s", lp_last_error());
    int V = m->cfg.d_vocab;
    double sum = 0;
    for (int n = 0; n < B * T; n++) {
        const float *l = r.logits->data + (size_t)n * V;
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < V; j++)
            mx = fmax(mx, l[j]);
        for (int j = 0; j < V; j++)
            s += exp(l[j] - mx);
        sum += log(s) + mx - l[y[n]];
    }
    lp_run_clear(&r);
    return sum / (B * T);
}

typedef struct {
    fixture *f;
    lp_model *m;
    lp_rng shadow; /* follows the validation generator: the same batches */
    double tol;
    int validations, stale_differs;
} val_ctx;

/* At each validation: the batches the run drew, measured on the model's tensors as they are
 * (stale on the device path: what evaluating the model, not the trainer, gave) and after
 * pulling the trainer's weights (the current ones), which the report must equal. */
static int val_progress(void *ud, const lp_train_progress *p)
{
    val_ctx *v = ud;
    if (!p->validated)
        return 0;
    int32_t x[B * T], y[B * T];
    double stale = 0, fresh = 0;
    lp_rng again = v->shadow;
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(lp_dataset_batch(v->f->val, &v->shadow, B, T, x, y), 0);
        stale += run_loss(v->m, x, y) / 2;
    }
    cr_assert_eq(lp_trainer_pull(lp_training_trainer(v->f->r)), 0, "%s", lp_last_error());
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(lp_dataset_batch(v->f->val, &again, B, T, x, y), 0);
        fresh += run_loss(v->m, x, y) / 2;
    }
    cr_assert(fabs(p->val_loss - fresh) <= v->tol * fmax(1, fresh),
              "step %d: reported validation loss %.7g, the current weights' %.7g (the model's tensors before the pull: "
              "%.7g)", p->step, p->val_loss, fresh, stale);
    if (fabs(stale - fresh) > 1e-3)
        v->stale_differs++;
    v->validations++;
    return 0;
}

static void check_val_is_current(const lp_backend *be)
{
    lp_model_config c = tcfg_gpt2(0, LP_GELU_TANH);
    lp_model *m = tmodel(&c, 4);
    lp_train_opts o = run_opts(1e-2f, 1);
    fixture f;
    fx_open(&f, m, &o, be, 1, 5, 2);
    /* the trainer's passes against lp_model_run: rounding only (a GPU's differs more) */
    val_ctx v = {.f = &f, .m = m, .shadow = f.gv, .tol = be && be->device == LP_DEVICE_CUDA ? 2e-4 : 2e-5};
    cr_assert_eq(lp_training_run(f.r, 23, val_progress, &v), 0, "%s", lp_last_error());
    /* steps 5, 10, 15, 20 and the last */
    cr_assert_eq(v.validations, 5);
    lp_train_history h = lp_training_history(f.r);
    cr_assert_eq(h.n_val, 5);
    int want[] = {5, 10, 15, 20, 23};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(h.val_step[i], want[i]);
    cr_assert(h.val_loss[4] < h.val_loss[0], "validation loss %g -> %g", h.val_loss[0], h.val_loss[4]);
    /* on the device path the model's tensors lag the trainer's weights at every validation:
     * a report made from them (the bug this guards against) would have failed above */
    if (be)
        cr_assert_eq(v.stale_differs, 5, "the model's tensors were current at %d of 5 validations",
                     5 - v.stale_differs);
    fx_close(&f);
    lp_model_free(m);
}

Test(train_run, validation_is_current_weights_cpu_path) { check_val_is_current(NULL); }
Test(train_run, validation_is_current_weights_device_path_on_cpu)
{
    check_val_is_current(lp_backend_get(LP_DEVICE_CPU));
}
Test(train_run_cuda, validation_is_current_weights)
{
    NEED(cuda_be());
    check_val_is_current(cuda_be());
}

/* ---- interrupt, then resume = uninterrupted ---- */

typedef struct {
    int interrupt_at; /* raise the flag in the report of this step */
} intr_ctx;

static int intr_progress(void *ud, const lp_train_progress *p)
{
    intr_ctx *c = ud;
    if (p->step == c->interrupt_at)
        lp_interrupt_request();
    return 0;
}

static void *interrupt_after(void *p)
{
    struct timespec ts = {0, *(long *)p};
    nanosleep(&ts, NULL);
    lp_interrupt_request();
    return NULL;
}

/* Two trainings of copies of one model must be the same: weights, moments, history, the
 * generators. */
static void assert_same_training(fixture *a, lp_model *ma, fixture *b, lp_model *mb)
{
    lp_trainer *ta = lp_training_trainer(a->r), *tb = lp_training_trainer(b->r);
    cr_assert_eq(lp_trainer_steps(ta), lp_trainer_steps(tb));
    size_t n;
    float *wa = tsnapshot(ma, &n), *wb = tsnapshot(mb, &n);
    cr_assert_eq(memcmp(wa, wb, n * sizeof *wa), 0, "the resumed run's weights differ");
    free(wa), free(wb);
    for (size_t i = 0; i < lp_trainer_param_count(ta); i++)
        for (int k = 0; k < 2; k++) {
            lp_tensor *w;
            lp_model_param(ma, i, NULL, 0, &w);
            const float *x = lp_trainer_moment(ta, i, k), *y = lp_trainer_moment(tb, i, k);
            cr_assert(x && y, "%s", lp_last_error());
            cr_assert_eq(memcmp(x, y, (size_t)lp_tensor_numel(w) * sizeof *x), 0, "moment %d of %zu differs", k, i);
        }
    lp_train_history ha = lp_training_history(a->r), hb = lp_training_history(b->r);
    cr_assert_eq(ha.n, hb.n);
    cr_assert_eq(ha.n_val, hb.n_val);
    for (size_t i = 0; i < ha.n; i++)
        cr_assert(ha.step[i] == hb.step[i] && ha.loss[i] == hb.loss[i] && ha.lr[i] == hb.lr[i] &&
                      ha.grad_norm[i] == hb.grad_norm[i],
                  "history entry %zu differs", i);
    for (size_t i = 0; i < ha.n_val; i++)
        cr_assert(ha.val_step[i] == hb.val_step[i] && ha.val_loss[i] == hb.val_loss[i],
                  "validation %zu differs: step %d %.9g, step %d %.9g", i, ha.val_step[i], ha.val_loss[i],
                  hb.val_step[i], hb.val_loss[i]);
    cr_assert_eq(lp_training_tokens(a->r), lp_training_tokens(b->r));
    cr_assert_eq(memcmp(&a->g, &b->g, sizeof a->g), 0, "the data generators differ");
    cr_assert_eq(memcmp(&a->gv, &b->gv, sizeof a->gv), 0, "the validation generators differ");
}

enum { TOTAL = 14 };

/* A training of a fresh copy of the model, interrupted by another thread at arbitrary
 * moments (inside micro-batches, between them, inside validation), each call continuing
 * where the last stopped, must end as the uninterrupted one did. Returns the interrupts that
 * landed (where they land is up to the scheduler). */
static int interrupted_training(const lp_backend *be, const lp_train_opts *o, fixture *ref, lp_model *mref)
{
    lp_model_config c = tcfg_llama(0, 2, 1);
    lp_model *m = tmodel(&c, 6);
    fixture d;
    fx_open(&d, m, o, be, 1, 3, 2);
    int interrupts = 0, rc = -1;
    for (long delay = 1000; rc != 0; delay = delay * 9 / 8 + 5000) {
        pthread_t th;
        long ns = delay < 900000000 ? delay : 900000000;
        cr_assert_eq(pthread_create(&th, NULL, interrupt_after, &ns), 0);
        rc = lp_training_run(d.r, TOTAL, NULL, NULL);
        pthread_join(th, NULL);
        lp_interrupt_clear();
        if (rc < 0) {
            cr_assert_str_eq(lp_last_error(), "interrupted");
            interrupts++;
        }
    }
    assert_same_training(ref, mref, &d, m);
    fx_close(&d);
    lp_model_free(m);
    return interrupts;
}

static void check_interrupt_resume(const lp_backend *be)
{
    lp_model_config c = tcfg_llama(0, 2, 1);
    lp_model *ma = tmodel(&c, 6), *mb = tmodel(&c, 6);
    lp_train_opts o = run_opts(1e-2f, 2);
    fixture a, b;
    fx_open(&a, ma, &o, be, 1, 3, 2);
    fx_open(&b, mb, &o, be, 1, 3, 2);
    cr_assert_eq(lp_training_run(a.r, TOTAL, NULL, NULL), 0, "%s", lp_last_error());

    /* the flag raised in a report: the run stops before the next step, the model holds the
     * weights of the last one */
    lp_interrupt_clear();
    intr_ctx ic = {.interrupt_at = 5};
    cr_assert_eq(lp_training_run(b.r, TOTAL, intr_progress, &ic), -1);
    cr_assert_str_eq(lp_last_error(), "interrupted");
    lp_interrupt_clear();
    cr_assert_eq(lp_trainer_steps(lp_training_trainer(b.r)), 5);
    cr_assert_eq(lp_training_history(b.r).n, 5);
    cr_assert_eq(lp_training_run(b.r, TOTAL, NULL, NULL), 0, "%s", lp_last_error());
    assert_same_training(&a, ma, &b, mb);

    /* the flag raised at arbitrary moments, until enough have landed */
    int landed = 0, runs = 0;
    for (; runs < 100 && landed < 20; runs++)
        landed += interrupted_training(be, &o, &a, ma);
    cr_log_info("%d interrupts in %d runs", landed, runs);
    cr_assert(landed >= 20, "only %d interrupts landed in %d runs", landed, runs);
    fx_close(&a), fx_close(&b);
    lp_model_free(ma), lp_model_free(mb);
}

Test(train_run, interrupt_then_resume_equals_uninterrupted_cpu_path) { check_interrupt_resume(NULL); }
Test(train_run, interrupt_then_resume_equals_uninterrupted_device_path_on_cpu)
{
    check_interrupt_resume(lp_backend_get(LP_DEVICE_CPU));
}

/* ---- NaN ---- */

typedef struct {
    lp_training *r;
    lp_model *m;
    float *last; /* the weights after the last finished step */
    size_t n;
    int steps;
} nan_ctx;

static int nan_progress(void *ud, const lp_train_progress *p)
{
    nan_ctx *c = ud;
    cr_assert_eq(lp_trainer_pull(lp_training_trainer(c->r)), 0, "%s", lp_last_error());
    free(c->last);
    c->last = tsnapshot(c->m, &c->n);
    c->steps = p->step;
    return 0;
}

static void check_nan(const lp_backend *be)
{
    lp_model_config c = tcfg_llama(0, 2, 1);
    lp_model *m = tmodel(&c, 4);
    lp_train_opts o = run_opts(1e30f, 1);
    o.grad_clip = 0, o.warmup_steps = 0, o.schedule = LP_SCHED_CONSTANT;
    fixture f;
    fx_open(&f, m, &o, be, 0, 1, 1);
    nan_ctx nc = {.r = f.r, .m = m};
    nc.last = tsnapshot(m, &nc.n);
    cr_assert_eq(lp_training_run(f.r, 50, nan_progress, &nc), -1, "a learning rate of 1e30 never gave a NaN");
    int bad = nc.steps + 1;
    char want[32];
    snprintf(want, sizeof want, "step %d:", bad);
    cr_assert(strstr(lp_last_error(), want) && strstr(lp_last_error(), "learning rate too high"),
              "%s (the last report was of step %d)", lp_last_error(), nc.steps);
    cr_assert(bad > 1, "the first step already failed: nothing to keep");
    cr_assert_eq(lp_trainer_steps(lp_training_trainer(f.r)), bad - 1);
    cr_assert_eq(lp_training_history(f.r).n, (size_t)bad - 1);
    /* the run gave the model back the weights of the last good step */
    size_t n;
    float *now = tsnapshot(m, &n);
    cr_assert_eq(memcmp(now, nc.last, n * sizeof *now), 0, "the model is not as after step %d", bad - 1);
    free(now);
    /* the failed step left no trace: running again fails at the same step, on the same batch */
    cr_assert_eq(lp_training_run(f.r, 50, NULL, NULL), -1);
    cr_assert(strstr(lp_last_error(), want), "%s", lp_last_error());
    free(nc.last);
    fx_close(&f);
    lp_model_free(m);
}

Test(train_run, nan_names_the_step_and_keeps_weights_cpu_path) { check_nan(NULL); }
Test(train_run, nan_names_the_step_and_keeps_weights_device_path_on_cpu) { check_nan(lp_backend_get(LP_DEVICE_CPU)); }

/* ---- the callback stops it ---- */

static int stop_at_3(void *ud, const lp_train_progress *p)
{
    (*(int *)ud)++;
    return p->step == 3;
}

Test(train_run, callback_stop_and_continue)
{
    lp_model_config c = tcfg_gpt2(1, LP_GELU_TANH);
    lp_model *m = tmodel(&c, 8);
    lp_train_opts o = run_opts(1e-2f, 1);
    fixture f;
    fx_open(&f, m, &o, NULL, 1, 2, 1);
    int calls = 0;
    cr_assert_eq(lp_training_run(f.r, 10, stop_at_3, &calls), 1, "%s", lp_last_error());
    cr_assert_eq(calls, 3);
    cr_assert_eq(lp_trainer_steps(lp_training_trainer(f.r)), 3);
    lp_train_history h = lp_training_history(f.r);
    cr_assert(h.n == 3 && h.n_val == 1 && h.val_step[0] == 2, "%zu steps, %zu validations", h.n, h.n_val);
    cr_assert_eq(lp_training_run(f.r, 6, stop_at_3, &calls), 0, "%s", lp_last_error());
    cr_assert_eq(calls, 6);
    h = lp_training_history(f.r);
    cr_assert(h.n == 6 && h.n_val == 3 && h.val_step[2] == 6, "%zu steps, %zu validations", h.n, h.n_val);
    for (size_t i = 0; i < h.n; i++)
        cr_assert_eq(h.step[i], (int)i + 1);
    /* no step to take: nothing happens */
    cr_assert_eq(lp_training_run(f.r, 6, stop_at_3, &calls), 0, "%s", lp_last_error());
    cr_assert_eq(calls, 6);
    cr_assert_eq(lp_training_run(f.r, 5, NULL, NULL), -1);
    cr_assert(strstr(lp_last_error(), "6 steps are already done"), "%s", lp_last_error());
    fx_close(&f);
    lp_model_free(m);
}

/* ---- bad input ---- */

Test(train_run, bad_input_is_an_error)
{
    lp_model_config c = tcfg_gpt2(1, LP_GELU_TANH);
    lp_model *m = tmodel(&c, 8);
    lp_dataset *ok = tdata(1, 100);
    int32_t big[20];
    for (int i = 0; i < 20; i++)
        big[i] = i == 7 ? TV + 3 : i % TV;
    lp_dataset *wide = lp_dataset_from_ids(big, 20), *tiny = lp_dataset_from_ids(big, T);
    cr_assert(wide && tiny);
    lp_rng g;
    lp_rng_seed(&g, 1);
    struct {
        lp_training_opts o;
        const char *needle;
    } cases[] = {
        {{.data = ok, .data_rng = &g, .val = wide, .val_rng = &g, .eval_every = 1, .eval_batches = 1},
         "the validation data has token id 26 but the model's vocabulary has 23 ids"},
        {{.data = wide, .data_rng = &g, .eval_every = 1, .eval_batches = 1}, "the data has token id 26"},
        {{.data = tiny, .data_rng = &g, .eval_every = 1, .eval_batches = 1}, "fewer than a window"},
        {{.data = ok, .data_rng = &g, .eval_every = 0, .eval_batches = 1}, "eval_every (0)"},
        {{.data = ok, .data_rng = &g, .val = ok, .eval_every = 1, .eval_batches = 1}, "no generator"},
        {{.data_rng = &g, .eval_every = 1, .eval_batches = 1}, "no data"},
    };
    lp_train_opts o = run_opts(1e-2f, 1);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cr_assert_eq(lp_training_check(m, T, &cases[i].o), -1, "case %zu passed", i);
        cr_assert(strstr(lp_last_error(), cases[i].needle), "case %zu: %s", i, lp_last_error());
        lp_trainer *t = lp_trainer_new(m, &o, B, T);
        cr_assert_not_null(t, "%s", lp_last_error());
        cr_assert_null(lp_training_new(t, &cases[i].o)); /* frees t */
        cr_assert(strstr(lp_last_error(), cases[i].needle), "case %zu: %s", i, lp_last_error());
    }
    lp_dataset_free(ok), lp_dataset_free(wide), lp_dataset_free(tiny);
    lp_model_free(m);
}
