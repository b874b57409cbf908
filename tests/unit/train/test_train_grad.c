/* The trainer's gradients against central finite differences of its own loss, for every
 * parameter tensor of tiny GPT-2 (tanh and erf GELU, attention-only) and Llama (grouped-
 * query heads, tied and untied, with and without biases) models; and its loss against the
 * cross-entropy of lp_model_run's logits (the function trained is the function run).
 *
 * Finite differences: eps 1e-3 on the weight (the step actually taken after rounding to
 * f32 is used), the loss of lp_trainer_eval in f32. At each tensor's largest-gradient
 * coordinate and 3 random ones: |fd - g| <= 3e-4 + 2e-2 * max(|fd|, |g|). The absolute part
 * is the f32 noise of a loss near 3 divided by 2 eps (about 1.5e-4); the relative part
 * covers the O(eps^2) truncation error. A wrong gradient (a missing term, a transposed
 * weight, a wrong head) is off by far more. */
#include "helpers.h"

#define EPS 1e-3
#define ATOL 3e-4
#define RTOL 2e-2

static void check_grads(const lp_model_config *c, uint64_t seed)
{
    enum { B = 2, T = 6 };
    lp_model *m = tmodel(c, seed);
    lp_trainer *t = ttrainer(m, 1e-3f, 1, B, T);
    int32_t x[B * T], y[B * T];
    ttokens(x, y, B * T, seed + 100);
    y[3] = -1; /* an ignored target */
    float loss;
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, &loss), 0, "%s", lp_last_error());
    cr_assert(isfinite(loss) && loss > 0);
    lp_rng g;
    lp_rng_seed(&g, seed + 200);
    size_t np = lp_trainer_param_count(t);
    cr_assert_eq(np, lp_model_param_count(m));
    double worst = 0;
    char worst_name[96] = "";
    for (size_t i = 0; i < np; i++) {
        char name[96];
        lp_tensor *w;
        cr_assert_eq(lp_model_param(m, i, name, sizeof name, &w), 0);
        const float *gr = lp_trainer_grad(t, i);
        size_t n = (size_t)lp_tensor_numel(w), top = 0;
        for (size_t j = 1; j < n; j++)
            if (fabsf(gr[j]) > fabsf(gr[top]))
                top = j;
        cr_assert(gr[top] != 0.0f, "%s: gradient is zero everywhere", name);
        for (int k = 0; k < 4; k++) {
            size_t j = k == 0 ? top : (size_t)lp_rng_below(&g, n);
            float w0 = w->data[j], lp, lm;
            w->data[j] = (float)(w0 + EPS);
            double hp = (double)w->data[j] - w0;
            cr_assert_eq(lp_trainer_eval(t, x, y, &lp), 0, "%s", lp_last_error());
            w->data[j] = (float)(w0 - EPS);
            double hm = w0 - (double)w->data[j];
            cr_assert_eq(lp_trainer_eval(t, x, y, &lm), 0, "%s", lp_last_error());
            w->data[j] = w0;
            double fd = ((double)lp - lm) / (hp + hm), an = gr[j];
            double err = fabs(fd - an), lim = ATOL + RTOL * fmax(fabs(fd), fabs(an));
            cr_assert(err <= lim, "%s[%zu]: gradient %.6g, finite difference %.6g (|diff| %.3g > %.3g)", name, j, an,
                      fd, err, lim);
            if (err / lim > worst)
                worst = err / lim, snprintf(worst_name, sizeof worst_name, "%s", name);
        }
    }
    /* the evaluations did not disturb the gradients or the pending step */
    cr_assert_eq(lp_trainer_step(t, NULL, NULL), 0, "%s", lp_last_error());
    cr_log_info("%s%s: %zu tensors, worst |diff| at %.2f of the tolerance (%s)", lp_arch_name(c->arch),
                c->attn_only ? " attn-only" : "", np, worst, worst_name);
    lp_trainer_free(t);
    lp_model_free(m);
}

Test(train_grad, gpt2)
{
    lp_model_config c = tcfg_gpt2(0, LP_GELU_TANH);
    check_grads(&c, 1);
}

Test(train_grad, gpt2_erf_gelu)
{
    lp_model_config c = tcfg_gpt2(0, LP_GELU_ERF);
    check_grads(&c, 2);
}

Test(train_grad, gpt2_attn_only)
{
    lp_model_config c = tcfg_gpt2(1, LP_GELU_TANH);
    check_grads(&c, 3);
}

Test(train_grad, llama_gqa_untied)
{
    lp_model_config c = tcfg_llama(0, 2, 0);
    check_grads(&c, 4);
}

Test(train_grad, llama_gqa_tied_biases)
{
    lp_model_config c = tcfg_llama(1, 2, 1);
    check_grads(&c, 5);
}

Test(train_grad, llama_mha_tied)
{
    lp_model_config c = tcfg_llama(1, 4, 0);
    check_grads(&c, 6);
}

/* ---- the trained function is lp_model_run's ---- */

/* Mean cross-entropy of lp_model_run's logits, in double. */
static double run_loss(const lp_model *m, const int32_t *x, const int32_t *y, int B, int T)
{
    lp_run r;
    cr_assert_eq(lp_model_run(m, x, B, T, NULL, &r), 0, "%s", lp_last_error());
    int V = m->cfg.d_vocab, valid = 0;
    double sum = 0;
    for (int n = 0; n < B * T; n++) {
        if (y[n] < 0)
            continue;
        const float *l = r.logits->data + (size_t)n * V;
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < V; j++)
            mx = fmax(mx, l[j]);
        for (int j = 0; j < V; j++)
            s += exp(l[j] - mx);
        sum += log(s) + mx - l[y[n]];
        valid++;
    }
    lp_run_clear(&r);
    return sum / valid;
}

static void check_same_function(lp_model *m, lp_model *run_model, uint64_t seed)
{
    enum { B = 3, T = 8 };
    int32_t x[B * T], y[B * T];
    ttokens(x, y, B * T, seed);
    y[0] = y[T + 5] = -1;
    double want = run_loss(run_model, x, y, B, T);
    lp_trainer *t = ttrainer(m, 1e-3f, 1, B, T);
    float fb, ev;
    cr_assert_eq(lp_trainer_eval(t, x, y, &ev), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, &fb), 0, "%s", lp_last_error());
    cr_assert_eq(fb, ev, "forward_backward's loss %.9g, eval's %.9g", fb, ev);
    cr_assert(fabs(fb - want) <= 2e-6 * fmax(1, want), "%s: trainer loss %.9g, lp_model_run's %.9g",
              lp_arch_name(m->cfg.arch), fb, want);
    lp_trainer_free(t);
}

Test(train_grad, loss_is_lp_model_run_cross_entropy)
{
    lp_model_config cs[] = {tcfg_gpt2(0, LP_GELU_TANH), tcfg_gpt2(0, LP_GELU_ERF), tcfg_gpt2(1, LP_GELU_TANH),
                            tcfg_llama(0, 2, 0), tcfg_llama(1, 2, 1), tcfg_llama(1, 4, 0)};
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        lp_model *m = tmodel(&cs[i], 10 + i);
        check_same_function(m, m, 20 + i);
        lp_model_free(m);
    }
}

Test(train_grad, llama_scaled_rope_is_lp_model_run)
{
    lp_model_config c = tcfg_llama(0, 2, 0);
    c.rope = LP_ROPE_LINEAR, c.rope_factor = 4.0, c.rope_theta = 500.0;
    lp_model *m = tmodel(&c, 30);
    check_same_function(m, m, 31);
    lp_model_free(m);
}

/* An attention-only model computes what a full one does with a zero MLP: the full model,
 * run by lp_model_run, against the same weights stripped of ln_2 and the MLP, trained. */
Test(train_grad, attn_only_is_zero_mlp_model)
{
    lp_model_config c = tcfg_gpt2(0, LP_GELU_TANH);
    lp_model *full = tmodel(&c, 40), *ao = tmodel(&c, 40);
    for (int L = 0; L < c.n_layers; L++) {
        lp_block *b = &full->blocks[L];
        lp_linear *ls[] = {&b->fc, &b->proj};
        for (int k = 0; k < 2; k++) {
            memset(ls[k]->w->data, 0, (size_t)lp_tensor_numel(ls[k]->w) * sizeof(float));
            memset(ls[k]->b->data, 0, (size_t)lp_tensor_numel(ls[k]->b) * sizeof(float));
        }
    }
    make_attn_only(ao);
    check_same_function(ao, full, 41);
    lp_model_free(full);
    lp_model_free(ao);
}
