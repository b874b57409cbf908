/* A training run: batches, steps, validation on the trainer's own weights, the progress
 * callback, interrupts and resume, the history (see train.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "train/train_impl.h"

struct lp_training {
    lp_trainer *t;
    lp_training_opts o;
    int32_t *x, *y;     /* one B x T batch of inputs and targets */
    int reported;       /* the last step whose validation and report were done (or begun) */
    long long tokens;
    double seconds;
    /* the history: cap entries reserved for each */
    size_t n, n_val, cap, cap_val;
    int *step, *val_step;
    double *loss, *lr, *grad_norm, *val_loss;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int check_data(const lp_model *m, int T, const lp_dataset *d, const lp_rng *g, const char *what)
{
    if (!g)
        return lp_set_error("training: the %s has no generator to draw batches with", what);
    if (lp_dataset_size(d) < (size_t)T + 1)
        return lp_set_error("training: the %s has %zu tokens, fewer than a window of ctx + 1 = %d", what,
                            lp_dataset_size(d), T + 1);
    if (lp_dataset_max_id(d) >= m->cfg.d_vocab)
        return lp_set_error("the %s has token id %d but the model's vocabulary has %d ids", what,
                            (int)lp_dataset_max_id(d), m->cfg.d_vocab);
    return 0;
}

int lp_training_check(const lp_model *m, int T, const lp_training_opts *o)
{
    if (!o->data)
        return lp_set_error("training: no data");
    if (o->eval_every < 1 || o->eval_batches < 1)
        return lp_set_error("training: eval_every (%d) and eval_batches (%d) must be at least 1", o->eval_every,
                            o->eval_batches);
    if (check_data(m, T, o->data, o->data_rng, "data") < 0)
        return -1;
    return o->val ? check_data(m, T, o->val, o->val_rng, "validation data") : 0;
}

lp_training *lp_training_new(lp_trainer *t, const lp_training_opts *o)
{
    if (lp_training_check(t->m, t->T, o) < 0) {
        lp_trainer_free(t);
        return NULL;
    }
    lp_training *r = lp_calloc(1, sizeof *r, "a training");
    int32_t *x = lp_malloc(2 * (size_t)t->N * sizeof *x, "a training batch");
    if (!r || !x) {
        free(r), free(x);
        lp_trainer_free(t);
        return NULL;
    }
    r->t = t, r->o = *o, r->x = x, r->y = x + t->N;
    r->reported = t->steps;
    return r;
}

static void history_free(lp_training *r)
{
    free(r->step), free(r->loss), free(r->lr), free(r->grad_norm);
    free(r->val_step), free(r->val_loss);
}

void lp_training_free(lp_training *r)
{
    if (!r)
        return;
    lp_trainer_free(r->t);
    history_free(r);
    free(r->x);
    free(r);
}

/* Grows *p (of elem-byte entries) to cap entries; the old array stays on failure. */
static int grow(void *p, size_t cap, size_t elem)
{
    void *q = lp_realloc(*(void **)p, cap * elem, "a training history");
    if (!q)
        return -1;
    *(void **)p = q;
    return 0;
}

/* Room for every step and validation up to `total`, so that a finished step is never lost
 * for want of memory to record it. */
static int history_reserve(lp_training *r, int total)
{
    size_t want = r->n + (size_t)(total - r->t->steps) + 1;
    if (want > r->cap) {
        if (grow(&r->step, want, sizeof *r->step) < 0 || grow(&r->loss, want, sizeof *r->loss) < 0 ||
            grow(&r->lr, want, sizeof *r->lr) < 0 || grow(&r->grad_norm, want, sizeof *r->grad_norm) < 0)
            return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate the history of %zu training steps", want);
        r->cap = want;
    }
    want = r->n_val + (size_t)(total - r->t->steps) + 1;
    if (r->o.val && want > r->cap_val) {
        if (grow(&r->val_step, want, sizeof *r->val_step) < 0 || grow(&r->val_loss, want, sizeof *r->val_loss) < 0)
            return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate the history of %zu validations", want);
        r->cap_val = want;
    }
    return 0;
}

/* One step: accum micro-batches and the update. On failure nothing of it remains: the
 * gradients are discarded and the generator is set back. */
static int run_step(lp_training *r)
{
    lp_trainer *t = r->t;
    int accum = t->o.accum > 0 ? t->o.accum : 1;
    lp_rng start = *r->o.data_rng;
    double sum = 0;
    float gn = 0, lr = 0;
    for (int a = 0; a < accum; a++) {
        float l;
        if (lp_interrupt_check() < 0 || lp_dataset_batch(r->o.data, r->o.data_rng, t->B, t->T, r->x, r->y) < 0 ||
            lp_trainer_forward_backward(t, r->x, r->y, &l) < 0)
            goto fail;
        sum += l;
    }
    if (lp_trainer_step(t, &gn, &lr) < 0)
        goto fail;
    r->tokens += (long long)t->N * accum;
    r->step[r->n] = t->steps;
    r->loss[r->n] = sum / accum;
    r->lr[r->n] = lr;
    r->grad_norm[r->n] = gn;
    r->n++;
    return 0;
fail:
    lp_trainer_discard(t);
    *r->o.data_rng = start;
    return -1;
}

/* The mean loss of the trainer's current weights over eval_batches validation batches. On
 * failure the generator is set back. */
static int validate(lp_training *r, double *out)
{
    lp_trainer *t = r->t;
    lp_rng start = *r->o.val_rng;
    double sum = 0;
    for (int k = 0; k < r->o.eval_batches; k++) {
        float l;
        if (lp_interrupt_check() < 0 || lp_dataset_batch(r->o.val, r->o.val_rng, t->B, t->T, r->x, r->y) < 0 ||
            lp_trainer_eval(t, r->x, r->y, &l) < 0) {
            *r->o.val_rng = start;
            return -1;
        }
        sum += l;
    }
    *out = sum / r->o.eval_batches;
    return 0;
}

/* The validation (when due) and the report of the trainer's last step; *t0 is where the time
 * not yet added to r->seconds began. */
static int finish_step(lp_training *r, int total, lp_train_progress_fn cb, void *ud, double *t0)
{
    int s = r->t->steps;
    lp_train_progress p = {.step = s, .total = total, .val_loss = NAN};
    if (r->o.val && (s % r->o.eval_every == 0 || s == total)) {
        if (validate(r, &p.val_loss) < 0)
            return -1;
        p.validated = 1;
        r->val_step[r->n_val] = s;
        r->val_loss[r->n_val] = p.val_loss;
        r->n_val++;
    }
    r->reported = s;
    if (!cb)
        return 0;
    if (r->n && r->step[r->n - 1] == s) {
        p.loss = r->loss[r->n - 1], p.lr = r->lr[r->n - 1], p.grad_norm = r->grad_norm[r->n - 1];
    } else { /* a trainer that came with steps made elsewhere (loaded state) */
        p.loss = p.lr = p.grad_norm = NAN;
    }
    double now = now_s();
    r->seconds += now - *t0;
    *t0 = now;
    p.tokens = r->tokens, p.elapsed = r->seconds;
    return cb(ud, &p) ? 1 : 0;
}

int lp_training_run(lp_training *r, int total, lp_train_progress_fn cb, void *ud)
{
    lp_trainer *t = r->t;
    if (total < t->steps)
        return lp_set_error("training: cannot run to step %d, %d steps are already done", total, t->steps);
    if (history_reserve(r, total) < 0)
        return -1;
    double t0 = now_s();
    int rc = lp_trainer_push(t);
    /* a step of an earlier call whose validation or report was cut short */
    if (rc == 0 && r->reported < t->steps)
        rc = finish_step(r, total, cb, ud, &t0);
    while (rc == 0 && t->steps < total) {
        rc = run_step(r);
        if (rc == 0)
            rc = finish_step(r, total, cb, ud, &t0);
    }
    /* the model holds the weights of the last finished step, whatever happened */
    if (lp_trainer_pull(t) < 0 && rc >= 0)
        rc = -1;
    r->seconds += now_s() - t0;
    return rc;
}

lp_trainer *lp_training_trainer(const lp_training *r) { return r->t; }

lp_train_history lp_training_history(const lp_training *r)
{
    return (lp_train_history){.n = r->n, .n_val = r->n_val, .step = r->step, .loss = r->loss, .lr = r->lr,
                              .grad_norm = r->grad_norm, .val_step = r->val_step, .val_loss = r->val_loss};
}

long long lp_training_tokens(const lp_training *r) { return r->tokens; }
double lp_training_seconds(const lp_training *r) { return r->seconds; }
