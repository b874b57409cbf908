/* The trainer's device path (the op table of a backend on that backend's memory: how it
 * trains on a GPU) against its CPU path, on the same models and batches.
 *
 * Suite device_cpu runs the device path on the CPU backend, everywhere: the passes, the
 * buffers, the weight copies (push/pull), the update and the optimizer state of the path
 * the GPU takes, checked on any machine. Suite device_cuda runs the same checks with the
 * CUDA backend; where no GPU is present every test prints "skipped: no GPU" and skips. On a
 * GPU machine: ctest -R train_device --output-on-failure (from the build dir). */
#include "helpers.h"
#include "train/train_impl.h"

enum { B = 2, T = 6, STEPS = 3, ACCUM = 2 };

static const lp_backend *cpu_be(void) { return lp_backend_get(LP_DEVICE_CPU); }

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

static lp_train_opts topts(void)
{
    lp_train_opts o;
    lp_train_opts_default(&o);
    /* clipping active (the random models' gradient norms are above 0.5), decay, warm-up */
    o.lr = 1e-2f, o.accum = ACCUM, o.grad_clip = 0.5f, o.weight_decay = 0.1f, o.warmup_steps = 1;
    o.schedule = LP_SCHED_COSINE, o.total_steps = 10;
    return o;
}

static float max_abs(const float *a, size_t n)
{
    float m = 0;
    for (size_t j = 0; j < n; j++)
        m = fmaxf(m, fabsf(a[j]));
    return m;
}

/* The CPU path and the device path on be train copies of one model for STEPS steps of
 * ACCUM micro-batches: every loss, gradient (first step), gradient norm, moment and weight
 * agree within tol (relative to the tensor's largest entry); the model the device path
 * trains keeps its weights until lp_trainer_pull. */
static void check_paths_agree(const lp_model_config *c, const lp_backend *be, float tol)
{
    lp_model *m1 = tmodel(c, 5), *m2 = tmodel(c, 5);
    lp_train_opts o = topts();
    lp_trainer *t1 = lp_trainer_new(m1, &o, B, T), *t2 = lp_trainer_new_backend(m2, &o, B, T, be);
    cr_assert_not_null(t1, "%s", lp_last_error());
    cr_assert_not_null(t2, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_device(t2), be->device);
    size_t n0;
    float *w0 = tsnapshot(m2, &n0);
    int32_t x[B * T], y[B * T];
    for (int s = 0; s < STEPS; s++) {
        for (int a = 0; a < ACCUM; a++) {
            ttokens(x, y, B * T, (uint64_t)(100 + 10 * s + a));
            y[3] = -1; /* an ignored target */
            float l1, l2;
            cr_assert_eq(lp_trainer_forward_backward(t1, x, y, &l1), 0, "%s", lp_last_error());
            cr_assert_eq(lp_trainer_forward_backward(t2, x, y, &l2), 0, "%s", lp_last_error());
            cr_assert(fabsf(l1 - l2) <= tol * fmaxf(1, l1), "step %d micro-batch %d: loss %.7g vs %.7g", s + 1, a + 1,
                      l1, l2);
        }
        if (s == 0)
            for (size_t i = 0; i < lp_trainer_param_count(t1); i++) {
                char name[96];
                lp_tensor *w;
                lp_model_param(m1, i, name, sizeof name, &w);
                size_t n = (size_t)lp_tensor_numel(w);
                const float *g1 = lp_trainer_grad(t1, i), *g2 = lp_trainer_grad(t2, i);
                cr_assert_not_null(g2, "%s", lp_last_error());
                float mx = fmaxf(max_abs(g1, n), 1e-3f), d = 0;
                for (size_t j = 0; j < n; j++)
                    d = fmaxf(d, fabsf(g1[j] - g2[j]));
                cr_assert(d <= tol * mx, "%s: gradients differ by %g (largest %g)", name, d, mx);
            }
        float n1, n2, lr1, lr2;
        cr_assert_eq(lp_trainer_step(t1, &n1, &lr1), 0, "%s", lp_last_error());
        cr_assert_eq(lp_trainer_step(t2, &n2, &lr2), 0, "%s", lp_last_error());
        cr_assert(n1 > o.grad_clip, "clipping was not exercised (norm %g)", n1);
        cr_assert(fabsf(n1 - n2) <= tol * n1, "step %d: gradient norms %g vs %g", s + 1, n1, n2);
        cr_assert_eq(lr1, lr2);
    }
    cr_assert_eq(lp_trainer_steps(t2), STEPS);
    /* the device path's model is untouched until pulled */
    size_t n;
    float *w2 = tsnapshot(m2, &n);
    cr_assert_eq(memcmp(w0, w2, n * sizeof *w0), 0, "the model changed before lp_trainer_pull");
    free(w2);
    cr_assert_eq(lp_trainer_pull(t2), 0, "%s", lp_last_error());
    float *w1 = tsnapshot(m1, &n);
    w2 = tsnapshot(m2, &n);
    /* GPT-2's key bias has a zero gradient up to rounding (it adds the same q.b to every
     * score of a query), and AdamW turns rounding into steps of +-lr: those entries are only
     * held to that bound; every other weight must agree. */
    float d = 0, moved = 0, dkey = 0;
    int kv = c->arch == LP_ARCH_GPT2 ? c->n_heads * c->d_head : 0;
    for (size_t i = 0, off = 0; i < lp_trainer_param_count(t1); i++) {
        char name[96];
        lp_tensor *w;
        lp_model_param(m1, i, name, sizeof name, &w);
        size_t cnt = (size_t)lp_tensor_numel(w);
        int key_bias = kv && strstr(name, "c_attn.bias");
        for (size_t j = 0; j < cnt; j++) {
            float dj = fabsf(w1[off + j] - w2[off + j]);
            moved = fmaxf(moved, fabsf(w2[off + j] - w0[off + j]));
            if (key_bias && j >= (size_t)kv && j < 2 * (size_t)kv)
                dkey = fmaxf(dkey, dj);
            else if (dj > d)
                d = dj;
        }
        off += cnt;
    }
    cr_assert(dkey <= 2 * o.lr * STEPS, "key biases differ by %g", dkey);
    cr_assert(d <= tol, "weights differ by %g after %d steps", d, STEPS);
    for (size_t i = 0; i < lp_trainer_param_count(t1); i++)
        for (int k = 0; k < 2; k++) {
            lp_tensor *w;
            lp_model_param(m1, i, NULL, 0, &w);
            size_t cnt = (size_t)lp_tensor_numel(w);
            const float *a = lp_trainer_moment(t1, i, k), *b = lp_trainer_moment(t2, i, k);
            cr_assert_not_null(b, "%s", lp_last_error());
            float mx = fmaxf(max_abs(a, cnt), 1e-6f), dm = 0;
            for (size_t j = 0; j < cnt; j++)
                dm = fmaxf(dm, fabsf(a[j] - b[j]));
            cr_assert(dm <= 10 * tol * mx, "moment %d of parameter %zu differs by %g (largest %g)", k, i, dm, mx);
        }
    /* validation loss on both paths */
    ttokens(x, y, B * T, 999);
    float e1, e2;
    cr_assert_eq(lp_trainer_eval(t1, x, y, &e1), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_eval(t2, x, y, &e2), 0, "%s", lp_last_error());
    cr_assert(fabsf(e1 - e2) <= tol * fmaxf(1, e1), "eval loss %g vs %g", e1, e2);
    free(w0), free(w1), free(w2);
    lp_trainer_free(t1), lp_trainer_free(t2);
    lp_model_free(m1), lp_model_free(m2);
}

static lp_model_config llama_scaled(void)
{
    lp_model_config c = tcfg_llama(1, 4, 0);
    c.rope = LP_ROPE_LINEAR, c.rope_factor = 2.0;
    return c;
}

/* one test per configuration and backend */
#define CONFIGS(X)                                                                   \
    X(gpt2_tanh, tcfg_gpt2(0, LP_GELU_TANH))                                         \
    X(gpt2_erf, tcfg_gpt2(0, LP_GELU_ERF))                                           \
    X(gpt2_attn_only, tcfg_gpt2(1, LP_GELU_TANH))                                    \
    X(llama_gqa_untied_bias, tcfg_llama(0, 2, 1))                                    \
    X(llama_tied_linear_rope, llama_scaled())

#define ON_CPU(name, cfg)                                                            \
    Test(device_cpu, name)                                                           \
    {                                                                                \
        lp_model_config c = cfg;                                                     \
        check_paths_agree(&c, cpu_be(), 2e-5f);                                      \
    }
#define ON_CUDA(name, cfg)                                                           \
    Test(device_cuda, name)                                                          \
    {                                                                                \
        const lp_backend *be = cuda_be();                                            \
        NEED(be);                                                                    \
        lp_model_config c = cfg;                                                     \
        check_paths_agree(&c, be, 2e-4f);                                            \
    }
CONFIGS(ON_CPU)
CONFIGS(ON_CUDA)

/* The frozen backward (attention patterns and norm scales constant, each flag and both) on
 * the device path gives the CPU path's gradients, the input gradient included. */
static void check_frozen_agree(const lp_model_config *c, const lp_backend *be, float tol)
{
    lp_model *m = tmodel(c, 7);
    lp_train_opts o = topts();
    o.accum = 1;
    int32_t x[B * T], y[B * T];
    ttokens(x, y, B * T, 70);
    for (int f = 1; f < 4; f++) {
        lp_trainer *t1 = lp_trainer_new(m, &o, B, T), *t2 = lp_trainer_new_backend(m, &o, B, T, be);
        cr_assert_not_null(t1, "%s", lp_last_error());
        cr_assert_not_null(t2, "%s", lp_last_error());
        cr_assert_eq(lp_trainer_set_frozen(t1, f), 0, "%s", lp_last_error());
        cr_assert_eq(lp_trainer_set_frozen(t2, f), 0, "%s", lp_last_error());
        cr_assert_eq(lp_trainer_forward_backward(t1, x, y, NULL), 0, "%s", lp_last_error());
        cr_assert_eq(lp_trainer_forward_backward(t2, x, y, NULL), 0, "%s", lp_last_error());
        for (size_t i = 0; i <= lp_trainer_param_count(t1); i++) {
            char name[96] = "input gradient";
            size_t n = (size_t)B * T * c->d_model;
            const float *g1, *g2;
            if (i < lp_trainer_param_count(t1)) {
                lp_tensor *w;
                lp_model_param(m, i, name, sizeof name, &w);
                n = (size_t)lp_tensor_numel(w);
                g1 = lp_trainer_grad(t1, i), g2 = lp_trainer_grad(t2, i);
            } else {
                g1 = lp_trainer_input_grad(t1), g2 = lp_trainer_input_grad(t2);
            }
            cr_assert(g1 && g2, "%s", lp_last_error());
            float mx = fmaxf(max_abs(g1, n), 1e-3f), d = 0;
            for (size_t j = 0; j < n; j++)
                d = fmaxf(d, fabsf(g1[j] - g2[j]));
            cr_assert(d <= tol * mx, "frozen %d: %s differs by %g (largest %g)", f, name, d, mx);
        }
        lp_trainer_free(t1), lp_trainer_free(t2);
    }
    lp_model_free(m);
}

#define FROZEN_ON_CPU(name, cfg)                                                     \
    Test(device_cpu, frozen_##name)                                                  \
    {                                                                                \
        lp_model_config c = cfg;                                                     \
        check_frozen_agree(&c, cpu_be(), 2e-5f);                                     \
    }
#define FROZEN_ON_CUDA(name, cfg)                                                    \
    Test(device_cuda, frozen_##name)                                                 \
    {                                                                                \
        const lp_backend *be = cuda_be();                                            \
        NEED(be);                                                                    \
        lp_model_config c = cfg;                                                     \
        check_frozen_agree(&c, be, 2e-4f);                                           \
    }
CONFIGS(FROZEN_ON_CPU)
CONFIGS(FROZEN_ON_CUDA)

/* Saving a device trainer's state and loading it into a fresh one continues the same run;
 * push after changing the model's weights trains from the new ones. */
static void check_state_round_trip(const lp_backend *be)
{
    lp_model_config c = tcfg_gpt2(0, LP_GELU_TANH);
    lp_model *m = tmodel(&c, 9);
    lp_train_opts o = topts();
    o.accum = 1;
    lp_trainer *t = lp_trainer_new_backend(m, &o, B, T, be);
    cr_assert_not_null(t, "%s", lp_last_error());
    int32_t x[B * T], y[B * T];
    for (int s = 0; s < 2; s++) {
        ttokens(x, y, B * T, (uint64_t)(20 + s));
        cr_assert_eq(lp_trainer_forward_backward(t, x, y, NULL), 0, "%s", lp_last_error());
        cr_assert_eq(lp_trainer_step(t, NULL, NULL), 0, "%s", lp_last_error());
    }
    char path[] = "/tmp/loupe-devstate-XXXXXX";
    ttmpfile(path);
    cr_assert_eq(lp_trainer_save_state(t, path), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_pull(t), 0, "%s", lp_last_error());
    lp_trainer *u = lp_trainer_new_backend(m, &o, B, T, be); /* pushes the pulled weights */
    cr_assert_not_null(u, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_load_state(u, path), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_steps(u), 2);
    ttokens(x, y, B * T, 77);
    float l1, l2, n1, n2;
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, &l1), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_forward_backward(u, x, y, &l2), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_step(t, &n1, NULL), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_step(u, &n2, NULL), 0, "%s", lp_last_error());
    /* equal on the CPU; a GPU sums some gradients with atomics, in no fixed order */
    cr_assert(fabsf(l1 - l2) <= 1e-6f * l1, "losses %.9g vs %.9g", l1, l2);
    cr_assert(fabsf(n1 - n2) <= 1e-5f * n1, "gradient norms %.9g vs %.9g", n1, n2);
    size_t n;
    cr_assert_eq(lp_trainer_pull(t), 0, "%s", lp_last_error());
    float *wt = tsnapshot(m, &n);
    cr_assert_eq(lp_trainer_pull(u), 0, "%s", lp_last_error());
    float *wu = tsnapshot(m, &n);
    for (size_t j = 0; j < n; j++)
        cr_assert(fabsf(wt[j] - wu[j]) <= 1e-5f, "resumed training diverged at %zu: %g vs %g", j, wt[j], wu[j]);
    /* push: the model's weights (here zeroed embeddings) are what the next pass reads */
    memset(m->wte->data, 0, (size_t)lp_tensor_numel(m->wte) * sizeof(float));
    cr_assert_eq(lp_trainer_push(u), 0, "%s", lp_last_error());
    float e0, e1;
    cr_assert_eq(lp_trainer_eval(u, x, y, &e0), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_eval(t, x, y, &e1), 0, "%s", lp_last_error());
    cr_assert_neq(e0, e1, "push did not reach the device copy");
    free(wt), free(wu);
    unlink(path);
    lp_trainer_free(t), lp_trainer_free(u);
    lp_model_free(m);
}

Test(device_cpu, state_round_trip_and_push) { check_state_round_trip(cpu_be()); }
Test(device_cuda, state_round_trip_and_push)
{
    NEED(cuda_be());
    check_state_round_trip(cuda_be());
}

/* A learning rate that blows the model up stops with the step named; the device copy keeps
 * the weights of the last finished step. */
static void check_nan(const lp_backend *be)
{
    lp_model_config c = tcfg_llama(0, 2, 1);
    lp_model *m = tmodel(&c, 4);
    lp_train_opts o = topts();
    o.accum = 1, o.grad_clip = 0, o.lr = 1e30f, o.warmup_steps = 0, o.schedule = LP_SCHED_CONSTANT;
    lp_trainer *t = lp_trainer_new_backend(m, &o, B, T, be);
    cr_assert_not_null(t, "%s", lp_last_error());
    int32_t x[B * T], y[B * T];
    int failed_at = 0;
    size_t n;
    float *before = NULL;
    for (int s = 1; s <= 5 && !failed_at; s++) {
        free(before);
        cr_assert_eq(lp_trainer_pull(t), 0, "%s", lp_last_error());
        before = tsnapshot(m, &n);
        ttokens(x, y, B * T, (uint64_t)s);
        if (lp_trainer_forward_backward(t, x, y, NULL) < 0 || lp_trainer_step(t, NULL, NULL) < 0)
            failed_at = s;
    }
    cr_assert(failed_at > 1, "no step failed (or the first did)");
    char want[32];
    snprintf(want, sizeof want, "step %d:", failed_at);
    cr_assert(strstr(lp_last_error(), want) && strstr(lp_last_error(), "learning rate too high"), "%s",
              lp_last_error());
    cr_assert_eq(lp_trainer_steps(t), failed_at - 1);
    cr_assert_eq(lp_trainer_pull(t), 0, "%s", lp_last_error());
    float *after = tsnapshot(m, &n);
    cr_assert_eq(memcmp(before, after, n * sizeof *after), 0, "the failed step changed the weights");
    free(before), free(after);
    lp_trainer_free(t);
    lp_model_free(m);
}

Test(device_cpu, nan_names_the_step) { check_nan(cpu_be()); }
Test(device_cuda, nan_names_the_step)
{
    NEED(cuda_be());
    check_nan(cuda_be());
}

/* Asking for CUDA where there is none is an error that says why, never a crash. */
Test(device_cuda, new_on_cuda_without_gpu_is_an_error)
{
    lp_model_config c = tcfg_gpt2(1, LP_GELU_TANH);
    lp_model *m = tmodel(&c, 1);
    lp_train_opts o = topts();
    lp_trainer *t = lp_trainer_new_on(m, &o, B, T, LP_DEVICE_CUDA);
    if (lp_device_available(LP_DEVICE_CUDA)) {
        cr_assert_not_null(t, "%s", lp_last_error());
        cr_assert_eq(lp_trainer_device(t), LP_DEVICE_CUDA);
    } else {
        cr_assert_null(t);
        cr_assert(strstr(lp_last_error(), "CUDA is not available"), "%s", lp_last_error());
    }
    lp_trainer_free(t);
    lp_model_free(m);
}
