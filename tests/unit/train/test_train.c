/* The trainer's semantics: parameter names, sizes and errors, gradient accumulation
 * (2 micro-batches of B = 1 batch of 2B), NaN and interrupt handling (the weights are left
 * unchanged), the schedule, and optimizer state round trips. Gradients themselves are
 * test_train_grad.c; agreement with PyTorch is tests/peer/test_train.py. */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "core/interrupt.h"
#include "helpers.h"

static void assert_same(const float *a, const float *b, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        cr_assert(a[i] == b[i] || (isnan(a[i]) && isnan(b[i])), "%s: element %zu %.9g vs %.9g", what, i, a[i], b[i]);
}

Test(train, parameter_names)
{
    lp_model_config cg = tcfg_gpt2(0, LP_GELU_TANH), ca = tcfg_gpt2(1, LP_GELU_TANH);
    lp_model_config cl = tcfg_llama(0, 2, 0), ct = tcfg_llama(1, 2, 1);
    lp_model *g = tmodel(&cg, 1), *a = tmodel(&ca, 1), *l = tmodel(&cl, 1), *t = tmodel(&ct, 1);
    char name[96];
    lp_tensor *w;
    /* GPT-2: wte, wpe, 12 per layer, ln_f weight and bias; the unembedding is wte */
    cr_assert_eq(lp_model_param_count(g), 2 + 12 * 2 + 2);
    cr_assert_eq(lp_model_param(g, 0, name, sizeof name, &w), 0);
    cr_assert_str_eq(name, "wte.weight");
    cr_assert_eq(w, g->wte);
    lp_model_param(g, 4, name, sizeof name, &w);
    cr_assert_str_eq(name, "h.0.attn.c_attn.weight");
    cr_assert_eq(w, g->blocks[0].qkv.w);
    lp_model_param(g, 25, name, sizeof name, NULL);
    cr_assert_str_eq(name, "h.1.mlp.c_proj.bias");
    lp_model_param(g, 27, name, sizeof name, NULL);
    cr_assert_str_eq(name, "ln_f.bias");
    cr_assert_eq(lp_model_param(g, 28, name, sizeof name, &w), -1);
    /* attention-only: 6 per layer */
    cr_assert_eq(lp_model_param_count(a), 2 + 6 * 2 + 2);
    lp_model_param(a, 8, name, sizeof name, NULL);
    cr_assert_str_eq(name, "h.1.ln_1.weight");
    /* Llama untied: embed, 9 per layer, norm, lm_head */
    cr_assert_eq(lp_model_param_count(l), 1 + 9 * 2 + 2);
    lp_model_param(l, 1, name, sizeof name, NULL);
    cr_assert_str_eq(name, "model.layers.0.self_attn.q_proj.weight");
    lp_model_param(l, 9, name, sizeof name, NULL);
    cr_assert_str_eq(name, "model.layers.0.post_attention_layernorm.weight");
    lp_model_param(l, 20, name, sizeof name, &w);
    cr_assert_str_eq(name, "lm_head.weight");
    cr_assert_eq(w, l->unembed.w);
    /* Llama tied with biases: 16 per layer, no lm_head */
    cr_assert_eq(lp_model_param_count(t), 1 + 16 * 2 + 1);
    lp_model_param(t, 2, name, sizeof name, NULL);
    cr_assert_str_eq(name, "model.layers.0.self_attn.q_proj.bias");
    lp_model_param(t, 33, name, sizeof name, NULL);
    cr_assert_str_eq(name, "model.norm.weight");
    lp_model_free(g), lp_model_free(a), lp_model_free(l), lp_model_free(t);
}

Test(train, bad_sizes_and_options)
{
    lp_model_config c = tcfg_gpt2(0, LP_GELU_TANH);
    lp_model *m = tmodel(&c, 2);
    lp_train_opts o;
    lp_train_opts_default(&o);
    cr_assert_null(lp_trainer_new(m, &o, 1, TCTX + 1));
    cr_assert(strstr(lp_last_error(), "context of 8"), "%s", lp_last_error());
    cr_assert_null(lp_trainer_new(m, &o, 0, 4));
    cr_assert(strstr(lp_last_error(), "batch 0 x 4"), "%s", lp_last_error());
    o.lr = NAN;
    cr_assert_null(lp_trainer_new(m, &o, 1, 4));
    cr_assert(strstr(lp_last_error(), "learning rate nan"), "%s", lp_last_error());
    lp_train_opts_default(&o);
    o.beta2 = 1.0f;
    cr_assert_null(lp_trainer_new(m, &o, 1, 4));
    cr_assert(strstr(lp_last_error(), "betas"), "%s", lp_last_error());
    lp_train_opts_default(&o);
    o.schedule = LP_SCHED_COSINE, o.warmup_steps = 10, o.total_steps = 5;
    cr_assert_null(lp_trainer_new(m, &o, 1, 4));
    cr_assert(strstr(lp_last_error(), "cosine"), "%s", lp_last_error());
    lp_train_opts_default(&o);
    lp_trainer *t = lp_trainer_new(m, &o, 2, 4);
    cr_assert_not_null(t, "%s", lp_last_error());
    int32_t x[8] = {0}, y[8] = {0};
    x[5] = TV;
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, NULL), -1);
    cr_assert(strstr(lp_last_error(), "token 23 at row 2 position 2"), "%s", lp_last_error());
    x[5] = 0, y[1] = -2;
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, NULL), -1);
    cr_assert(strstr(lp_last_error(), "target -2"), "%s", lp_last_error());
    cr_assert_eq(lp_trainer_step(t, NULL, NULL), -1);
    cr_assert(strstr(lp_last_error(), "no gradients"), "%s", lp_last_error());
    y[1] = 0;
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, NULL), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, NULL), -1);
    cr_assert(strstr(lp_last_error(), "step first"), "%s", lp_last_error());
    /* a NaN learning rate is refused, and the options stay as they were */
    lp_train_opts bad = o;
    bad.lr = NAN;
    cr_assert_eq(lp_trainer_set_opts(t, &bad), -1);
    cr_assert(strstr(lp_last_error(), "learning rate nan"), "%s", lp_last_error());
    cr_assert_eq(lp_trainer_opts(t)->lr, o.lr);
    cr_assert_eq(lp_trainer_step(t, NULL, NULL), 0, "%s", lp_last_error());
    lp_trainer_free(t);
    lp_model_free(m);
}

/* Two micro-batches of B accumulate the gradient of one batch of 2B (equal counts of
 * ignored targets, so that the mean of the means is the mean), and step to the same
 * weights. */
static void check_accumulation(const lp_model_config *c)
{
    enum { B = 2, T = 5 };
    lp_model *m1 = tmodel(c, 3), *m2 = tmodel(c, 3);
    lp_trainer *t1 = ttrainer(m1, 1e-2f, 2, B, T), *t2 = ttrainer(m2, 1e-2f, 1, 2 * B, T);
    int32_t x[2 * B * T], y[2 * B * T];
    ttokens(x, y, 2 * B * T, 4);
    y[1] = y[B * T + 7] = -1;
    float l1a, l1b, l2;
    cr_assert_eq(lp_trainer_forward_backward(t1, x, y, &l1a), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_step(t1, NULL, NULL), -1); /* one of two */
    cr_assert(strstr(lp_last_error(), "1 of 2 micro-batches"), "%s", lp_last_error());
    cr_assert_eq(lp_trainer_forward_backward(t1, x + B * T, y + B * T, &l1b), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_forward_backward(t2, x, y, &l2), 0, "%s", lp_last_error());
    cr_assert(fabsf((l1a + l1b) / 2 - l2) <= 1e-6f * fmaxf(1, l2), "losses %g, %g vs %g", l1a, l1b, l2);
    for (size_t i = 0; i < lp_trainer_param_count(t1); i++) {
        char name[96];
        lp_tensor *w;
        lp_model_param(m1, i, name, sizeof name, &w);
        const float *g1 = lp_trainer_grad(t1, i), *g2 = lp_trainer_grad(t2, i);
        size_t n = (size_t)lp_tensor_numel(w);
        float mx = 0, d = 0;
        for (size_t j = 0; j < n; j++)
            mx = fmaxf(mx, fabsf(g2[j])), d = fmaxf(d, fabsf(g1[j] - g2[j]));
        cr_assert(d <= 1e-5f * fmaxf(mx, 1e-3f), "%s: accumulated gradients differ by %g (max %g)", name, d, mx);
    }
    float n1, n2;
    cr_assert_eq(lp_trainer_step(t1, &n1, NULL), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_step(t2, &n2, NULL), 0, "%s", lp_last_error());
    cr_assert(fabsf(n1 - n2) <= 1e-5f * n2, "gradient norms %g vs %g", n1, n2);
    size_t n, n_;
    float *w1 = tsnapshot(m1, &n), *w2 = tsnapshot(m2, &n_);
    /* GPT-2's key bias has a zero gradient up to rounding, which AdamW's first step turns
     * into +-lr: those entries are held to 2 lr, every other weight to 1e-5. */
    int kv = c->arch == LP_ARCH_GPT2 ? c->n_heads * c->d_head : 0;
    for (size_t i = 0, off = 0; i < lp_trainer_param_count(t1); i++) {
        char name[96];
        lp_tensor *w;
        lp_model_param(m1, i, name, sizeof name, &w);
        size_t cnt = (size_t)lp_tensor_numel(w);
        int key_bias = kv && strstr(name, "c_attn.bias");
        for (size_t j = off; j < off + cnt; j++) {
            int key = key_bias && j - off >= (size_t)kv && j - off < 2 * (size_t)kv;
            cr_assert(fabsf(w1[j] - w2[j]) <= (key ? 2 * 1e-2f : 1e-5f), "%s: weights differ after the step at %zu: %g vs %g",
                      name, j - off, w1[j], w2[j]);
        }
        off += cnt;
    }
    free(w1), free(w2);
    lp_trainer_free(t1), lp_trainer_free(t2);
    lp_model_free(m1), lp_model_free(m2);
}

Test(train, accumulation_gpt2)
{
    lp_model_config c = tcfg_gpt2(0, LP_GELU_TANH);
    check_accumulation(&c);
}

Test(train, accumulation_llama)
{
    lp_model_config c = tcfg_llama(0, 2, 1);
    check_accumulation(&c);
}

/* A NaN loss (a poisoned weight) fails the step and changes neither the weights nor the
 * moments; so does a learning rate large enough to blow the model up. */
Test(train, nan_loss_leaves_weights_unchanged)
{
    enum { B = 2, T = 6 };
    lp_model_config c = tcfg_gpt2(0, LP_GELU_TANH);
    lp_model *m = tmodel(&c, 5);
    lp_trainer *t = ttrainer(m, 1e-2f, 1, B, T);
    int32_t x[B * T], y[B * T];
    ttokens(x, y, B * T, 6);
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, NULL), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_step(t, NULL, NULL), 0, "%s", lp_last_error());
    float keep = m->wte->data[(size_t)x[0] * c.d_model];
    m->wte->data[(size_t)x[0] * c.d_model] = NAN;
    size_t n, n2;
    float *before = tsnapshot(m, &n), loss;
    const float *m0 = lp_trainer_moment(t, 0, 0), *v0 = lp_trainer_moment(t, 0, 1);
    size_t nw = (size_t)lp_tensor_numel(m->wte);
    float *mom = malloc(nw * sizeof *mom), *vel = malloc(nw * sizeof *vel);
    memcpy(mom, m0, nw * sizeof *mom), memcpy(vel, v0, nw * sizeof *vel);
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, &loss), 0, "%s", lp_last_error());
    cr_assert(isnan(loss));
    cr_assert_eq(lp_trainer_step(t, NULL, NULL), -1);
    cr_assert_str_eq(lp_last_error(), "step 2: loss is NaN (learning rate too high?)");
    float *after = tsnapshot(m, &n2);
    assert_same(before, after, n, "weights");
    assert_same(mom, m0, nw, "first moment"), assert_same(vel, v0, nw, "second moment");
    cr_assert_eq(lp_trainer_steps(t), 1);
    /* repaired, the same step goes through */
    m->wte->data[(size_t)x[0] * c.d_model] = keep;
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, &loss), 0, "%s", lp_last_error());
    cr_assert(isfinite(loss));
    cr_assert_eq(lp_trainer_step(t, NULL, NULL), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_steps(t), 2);
    free(before), free(after), free(mom), free(vel);
    lp_trainer_free(t);

    /* lr 1e35: within a few steps the loss or the gradients stop being finite */
    t = ttrainer(m, 1e35f, 1, B, T);
    int failed = 0;
    for (int s = 0; s < 20 && !failed; s++) {
        cr_assert_eq(lp_trainer_forward_backward(t, x, y, NULL), 0, "%s", lp_last_error());
        float *w0 = tsnapshot(m, &n);
        if (lp_trainer_step(t, NULL, NULL) < 0) {
            failed = 1;
            cr_assert(strstr(lp_last_error(), "(learning rate too high?)"), "%s", lp_last_error());
            float *w1 = tsnapshot(m, &n2);
            assert_same(w0, w1, n, "weights after a failed step");
            free(w1);
        }
        free(w0);
    }
    cr_assert(failed, "a learning rate of 1e35 never gave a NaN");
    lp_trainer_free(t);
    lp_model_free(m);
}

/* ---- interrupts ---- */

static void *interrupt_soon(void *p)
{
    struct timespec ts = {0, *(long *)p};
    nanosleep(&ts, NULL);
    lp_interrupt_request();
    return NULL;
}

Test(train, interrupt_leaves_weights_unchanged)
{
    enum { B = 2, T = 6 };
    lp_model_config c = tcfg_llama(0, 2, 0);
    lp_model *m = tmodel(&c, 7), *ref = tmodel(&c, 7);
    lp_trainer *t = ttrainer(m, 1e-2f, 1, B, T), *tr = ttrainer(ref, 1e-2f, 1, B, T);
    int32_t x[B * T], y[B * T];
    ttokens(x, y, B * T, 8);
    size_t n, n2;
    float *before = tsnapshot(m, &n);
    lp_interrupt_request();
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, NULL), -1);
    lp_interrupt_clear();
    cr_assert_str_eq(lp_last_error(), "interrupted");
    float *after = tsnapshot(m, &n2);
    assert_same(before, after, n, "weights");
    cr_assert_eq(lp_trainer_step(t, NULL, NULL), -1); /* the interrupted micro-batch does not count */
    /* started again, the step is the one an uninterrupted trainer takes */
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, NULL), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_step(t, NULL, NULL), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_forward_backward(tr, x, y, NULL), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_step(tr, NULL, NULL), 0, "%s", lp_last_error());
    free(after);
    float *want = tsnapshot(ref, &n2);
    after = tsnapshot(m, &n2);
    assert_same(want, after, n, "weights after the resumed step");
    free(before), free(after), free(want);
    lp_trainer_free(t), lp_trainer_free(tr);
    lp_model_free(m), lp_model_free(ref);
}

/* The flag raised by another thread while micro-batches run: the one it lands in fails
 * with "interrupted" and the weights are untouched (no step can run: accum is large). */
Test(train, interrupt_from_another_thread)
{
    enum { B = 4, T = 8 };
    lp_model_config c = tcfg_gpt2(0, LP_GELU_TANH);
    c.d_model = 64, c.n_heads = 4, c.d_head = 16, c.d_mlp = 256, c.n_layers = 4;
    lp_model *m = tmodel(&c, 9);
    lp_trainer *t = ttrainer(m, 1e-2f, 1 << 20, B, T);
    int32_t x[B * T], y[B * T];
    ttokens(x, y, B * T, 10);
    size_t n, n2;
    float *before = tsnapshot(m, &n);
    long delay = 2000000; /* 2 ms */
    pthread_t th;
    lp_interrupt_clear();
    cr_assert_eq(pthread_create(&th, NULL, interrupt_soon, &delay), 0);
    int rc = 0, i;
    for (i = 0; i < 100000 && rc == 0; i++)
        rc = lp_trainer_forward_backward(t, x, y, NULL);
    pthread_join(th, NULL);
    lp_interrupt_clear();
    cr_assert_eq(rc, -1, "never interrupted");
    cr_assert_str_eq(lp_last_error(), "interrupted");
    float *after = tsnapshot(m, &n2);
    assert_same(before, after, n, "weights");
    cr_log_info("interrupted in micro-batch %d", i);
    free(before), free(after);
    lp_trainer_free(t);
    lp_model_free(m);
}

/* ---- schedule, optimizer state ---- */

Test(train, schedule)
{
    lp_train_opts o;
    lp_train_opts_default(&o);
    o.lr = 1.0f, o.warmup_steps = 4, o.total_steps = 14, o.schedule = LP_SCHED_COSINE, o.min_lr_frac = 0.1f;
    cr_assert_float_eq(lp_train_lr_at(&o, 0), 0.25f, 1e-7);
    cr_assert_float_eq(lp_train_lr_at(&o, 3), 1.0f, 1e-7);
    cr_assert_float_eq(lp_train_lr_at(&o, 4), 1.0f, 1e-7);
    cr_assert_float_eq(lp_train_lr_at(&o, 9), 0.55f, 1e-6);
    cr_assert_float_eq(lp_train_lr_at(&o, 14), 0.1f, 1e-7);
    cr_assert_float_eq(lp_train_lr_at(&o, 100), 0.1f, 1e-7);
    o.schedule = LP_SCHED_CONSTANT;
    cr_assert_float_eq(lp_train_lr_at(&o, 1), 0.5f, 1e-7);
    cr_assert_float_eq(lp_train_lr_at(&o, 50), 1.0f, 1e-7);
    /* the trainer reports the learning rate it used */
    lp_model_config c = tcfg_llama(1, 2, 0);
    lp_model *m = tmodel(&c, 11);
    o.lr = 1e-3f;
    lp_trainer *t = lp_trainer_new(m, &o, 1, 4);
    cr_assert_not_null(t, "%s", lp_last_error());
    int32_t x[4] = {1, 2, 3, 4}, y[4] = {2, 3, 4, 5};
    float norm, lr;
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, NULL), 0);
    cr_assert_eq(lp_trainer_step(t, &norm, &lr), 0);
    cr_assert_float_eq(lr, 0.25e-3f, 1e-10);
    cr_assert(norm > 0 && isfinite(norm));
    lp_trainer_free(t);
    lp_model_free(m);
}

/* Save after 2 steps, load into a fresh trainer on a copy of the weights: both take the
 * same third step. */
Test(train, optimizer_state_round_trip)
{
    enum { B = 2, T = 5 };
    lp_model_config c = tcfg_gpt2(1, LP_GELU_TANH);
    lp_model *m = tmodel(&c, 12), *m2 = tmodel(&c, 99);
    lp_trainer *t = ttrainer(m, 1e-2f, 1, B, T);
    int32_t x[B * T], y[B * T];
    ttokens(x, y, B * T, 13);
    for (int s = 0; s < 2; s++) {
        cr_assert_eq(lp_trainer_forward_backward(t, x, y, NULL), 0, "%s", lp_last_error());
        cr_assert_eq(lp_trainer_step(t, NULL, NULL), 0, "%s", lp_last_error());
    }
    char path[] = "/tmp/lp_train_state_XXXXXX";
    ttmpfile(path);
    cr_assert_eq(lp_trainer_save_state(t, path), 0, "%s", lp_last_error());
    size_t n;
    float *w = tsnapshot(m, &n), *p = w;
    for (size_t i = 0; i < lp_model_param_count(m2); i++) { /* m2 := m's weights */
        lp_tensor *t2;
        lp_model_param(m2, i, NULL, 0, &t2);
        memcpy(t2->data, p, (size_t)lp_tensor_numel(t2) * sizeof(float));
        p += lp_tensor_numel(t2);
    }
    free(w);
    lp_trainer *t2 = ttrainer(m2, 1e-2f, 1, B, T);
    cr_assert_eq(lp_trainer_load_state(t2, path), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_steps(t2), 2);
    lp_trainer *trainers[] = {t, t2};
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(lp_trainer_forward_backward(trainers[k], x, y, NULL), 0, "%s", lp_last_error());
        cr_assert_eq(lp_trainer_step(trainers[k], NULL, NULL), 0, "%s", lp_last_error());
    }
    size_t n2;
    float *a = tsnapshot(m, &n), *b = tsnapshot(m2, &n2);
    assert_same(a, b, n, "weights after the resumed step");
    free(a), free(b);
    /* another model's state is refused, and nothing changes */
    lp_model_config cl = tcfg_llama(0, 2, 0);
    lp_model *ml = tmodel(&cl, 14);
    lp_trainer *tl = ttrainer(ml, 1e-2f, 1, B, T);
    cr_assert_eq(lp_trainer_load_state(tl, path), -1);
    cr_assert(strstr(lp_last_error(), "optimizer state for 'model.embed_tokens.weight' is missing"), "%s",
              lp_last_error());
    cr_assert_eq(lp_trainer_steps(tl), 0);
    unlink(path);
    lp_trainer_free(t), lp_trainer_free(t2), lp_trainer_free(tl);
    lp_model_free(m), lp_model_free(m2), lp_model_free(ml);
}
