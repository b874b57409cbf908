/* The frozen backward (lp_trainer_set_frozen: attention patterns and normalisation scales
 * held constant, attribution's local replacement model) against central finite differences
 * of frozen_ref.h's forward in double, whose patterns and scales are the ones the trainer's
 * forward pass recorded: every coordinate of every parameter's gradient and of the gradient
 * at the embedding output (lp_trainer_input_grad), for tiny GPT-2 and Llama models and each
 * combination of flags (none included: then the oracle computes patterns and scales itself,
 * and checks the ordinary backward).
 *
 * Finite differences in double with step 1e-5 are exact to about 1e-9 here; the trainer
 * computes in f32 (and GELU with a fast tanh), so each tensor's gradient must match within
 * 1e-5 of the largest entry of that tensor's gradient plus 1e-4 relative (measured: at most
 * a tenth of that). Every coordinate is checked with both flags (attribution's case), the
 * largest and 8 random ones of each tensor otherwise, to keep the test to seconds. The flags also
 * change what they should: with frozen attention the query and key weights get exactly
 * zero, and every flag changes the input gradient by far more than that tolerance. */
#include "frozen_ref.h"
#include "train/train_impl.h"

enum { B = 2, T = 6 };
#define H_STEP 1e-5
#define ATOL 1e-5
#define RTOL 1e-4

static const char *flag_name(int f)
{
    static const char *n[] = {"none", "attention", "norms", "attention+norms"};
    return n[f & 3];
}

/* Copies of what t's forward pass froze: patterns and scales of every layer. */
typedef struct {
    float **att, **s1, **s2, *sf;
    int L;
} frozen_vals;

static float *dup_floats(const float *p, size_t n)
{
    float *d = malloc(n * sizeof *d);
    memcpy(d, p, n * sizeof *d);
    return d;
}

static void record(frozen_vals *v, const lp_trainer *t)
{
    const lp_model_config *c = &t->m->cfg;
    int L = c->n_layers, N = t->N;
    v->L = L;
    v->att = calloc((size_t)L, sizeof *v->att), v->s1 = calloc((size_t)L, sizeof *v->s1);
    v->s2 = calloc((size_t)L, sizeof *v->s2);
    for (int l = 0; l < L; l++) {
        v->att[l] = dup_floats(t->L[l].att, (size_t)t->B * t->H * t->T * t->T);
        v->s1[l] = dup_floats(t->L[l].ln1_rstd, (size_t)N);
        v->s2[l] = c->attn_only ? NULL : dup_floats(t->L[l].ln2_rstd, (size_t)N);
    }
    v->sf = dup_floats(t->lnf_rstd, (size_t)N);
}

static void release(frozen_vals *v)
{
    for (int l = 0; l < v->L; l++)
        free(v->att[l]), free(v->s1[l]), free(v->s2[l]);
    free(v->att), free(v->s1), free(v->s2), free(v->sf);
}

/* |fd - g| within ATOL * (the tensor's largest |g|, at least 1e-2) + RTOL * |fd| at every
 * coordinate (all), or at the largest and 8 random ones; returns the worst ratio to that
 * bound. */
static double compare(const char *what, double *x, size_t n, const float *g, fref *r, const int32_t *ids,
                      const int32_t *tg, int all, lp_rng *rng)
{
    double mx = 1e-2, worst = 0;
    size_t top = 0;
    for (size_t j = 0; j < n; j++) {
        mx = fmax(mx, fabs(g[j]));
        if (fabs(g[j]) > fabs(g[top]))
            top = j;
    }
    for (size_t k = 0; k < (all ? n : 9); k++) {
        size_t j = all ? k : k == 0 ? top : (size_t)lp_rng_below(rng, n);
        double x0 = x[j];
        x[j] = x0 + H_STEP;
        double lp = fref_loss(r, ids, tg);
        x[j] = x0 - H_STEP;
        double lm = fref_loss(r, ids, tg);
        x[j] = x0;
        double fd = (lp - lm) / (2 * H_STEP), lim = ATOL * mx + RTOL * fabs(fd), err = fabs(fd - g[j]);
        cr_assert(err <= lim, "%s[%zu]: gradient %.7g, finite difference %.7g (|diff| %.3g > %.3g)", what, j,
                  (double)g[j], fd, err, lim);
        worst = fmax(worst, err / lim);
    }
    return worst;
}

static void check_frozen(const lp_model_config *c, uint64_t seed, int flags)
{
    lp_model *m = tmodel(c, seed);
    lp_trainer *t = ttrainer(m, 1e-3f, 1, B, T);
    cr_assert_eq(lp_trainer_set_frozen(t, flags), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_frozen(t), flags);
    int32_t x[B * T], y[B * T];
    ttokens(x, y, B * T, seed + 100);
    y[3] = -1;
    float loss;
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, &loss), 0, "%s", lp_last_error());
    frozen_vals v;
    record(&v, t);
    fref r;
    fref_init(&r, m, B, T);
    if (flags & LP_FREEZE_ATTENTION)
        r.att = (const float **)v.att;
    if (flags & LP_FREEZE_NORM)
        r.s1 = (const float **)v.s1, r.s2 = (const float **)v.s2, r.sf = v.sf;
    double l0 = fref_loss(&r, x, y);
    cr_assert(fabs(l0 - loss) <= 1e-5 * fmax(1, l0), "the oracle's loss %.9g, the trainer's %.9g", l0, (double)loss);
    double worst = 0;
    char worst_name[96] = "";
    int all = flags == (LP_FREEZE_ATTENTION | LP_FREEZE_NORM);
    lp_rng g;
    lp_rng_seed(&g, seed + 200);
    for (int i = 0; i < r.np; i++) {
        char name[96];
        lp_model_param(m, (size_t)i, name, sizeof name, NULL);
        double w = compare(name, r.val[i], r.n[i], lp_trainer_grad(t, (size_t)i), &r, x, y, all, &g);
        if (w > worst)
            worst = w, snprintf(worst_name, sizeof worst_name, "%s", name);
    }
    const float *gin = lp_trainer_input_grad(t);
    cr_assert_not_null(gin, "%s", lp_last_error());
    double w = compare("input gradient", r.dx0, (size_t)B * T * c->d_model, gin, &r, x, y, all, &g);
    if (w > worst)
        worst = w, snprintf(worst_name, sizeof worst_name, "input gradient");
    cr_log_info("%s%s frozen %s: worst |diff| at %.2f of the tolerance (%s)", lp_arch_name(c->arch),
                c->attn_only ? " attn-only" : "", flag_name(flags), worst, worst_name);
    fref_free(&r);
    release(&v);
    lp_trainer_free(t);
    lp_model_free(m);
}

#define CONFIGS(X)                                                \
    X(gpt2_tanh, tcfg_gpt2(0, LP_GELU_TANH), 1)                   \
    X(gpt2_erf, tcfg_gpt2(0, LP_GELU_ERF), 2)                     \
    X(gpt2_attn_only, tcfg_gpt2(1, LP_GELU_TANH), 3)              \
    X(llama_gqa_untied_bias, tcfg_llama(0, 2, 1), 4)              \
    X(llama_mha_tied, tcfg_llama(1, 4, 0), 5)

#define GRAD_TEST(name, cfg, seed)                                \
    Test(train_frozen, name)                                      \
    {                                                             \
        lp_model_config c = cfg;                                  \
        for (int f = 0; f < 4; f++)                               \
            check_frozen(&c, seed, f);                            \
    }
CONFIGS(GRAD_TEST)

/* ---- the flags change what they should ---- */

/* Gradients (every parameter, then the input) of one micro-batch under flags. */
static float *grads_under(lp_model *m, int flags, const int32_t *x, const int32_t *y, size_t *count)
{
    lp_trainer *t = ttrainer(m, 1e-3f, 1, B, T);
    cr_assert_eq(lp_trainer_set_frozen(t, flags), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, NULL), 0, "%s", lp_last_error());
    size_t n = 0, np = lp_trainer_param_count(t), nin = (size_t)B * T * m->cfg.d_model;
    for (size_t i = 0; i < np; i++)
        n += t->p[i].n;
    float *g = malloc((n + nin) * sizeof *g);
    memcpy(g, lp_trainer_grad(t, 0), n * sizeof *g); /* the CPU path's gradients are one flat buffer */
    memcpy(g + n, lp_trainer_input_grad(t), nin * sizeof *g);
    *count = n;
    lp_trainer_free(t);
    return g;
}

static void check_effects(const lp_model_config *c, uint64_t seed)
{
    lp_model *m = tmodel(c, seed);
    int32_t x[B * T], y[B * T];
    ttokens(x, y, B * T, seed);
    size_t n, nin = (size_t)B * T * c->d_model;
    float *g0 = grads_under(m, 0, x, y, &n);
    for (int f = 1; f < 4; f++) {
        float *g = grads_under(m, f, x, y, &n);
        /* the input gradient moves by much more than the tolerance of the finite differences */
        double d = 0, mx = 0;
        for (size_t j = 0; j < nin; j++)
            d = fmax(d, fabs(g[n + j] - g0[n + j])), mx = fmax(mx, fabs(g0[n + j]));
        cr_assert(d > 0.05 * mx, "frozen %s: input gradient moved by %g only (largest %g)", flag_name(f), d, mx);
        /* query and key weights: zero with frozen attention, not without */
        size_t off = 0;
        for (size_t i = 0; i < lp_model_param_count(m); i++) {
            char name[96];
            lp_tensor *w;
            lp_model_param(m, i, name, sizeof name, &w);
            size_t cnt = (size_t)lp_tensor_numel(w);
            int qk = strstr(name, "q_proj") || strstr(name, "k_proj");
            double s = 0, s0 = 0, sv = 0;
            if (strstr(name, "c_attn")) { /* fused: columns (or rows, transposed) [0, 2 QD) are q and k */
                int QD = c->n_heads * c->d_head;
                const lp_linear *l = &m->blocks[name[2] - '0'].qkv;
                for (size_t j = 0; j < cnt; j++) {
                    size_t o = w->ndim == 1 ? j : l->trans ? j / (size_t)l->in : j % (size_t)l->out;
                    if (o < 2 * (size_t)QD)
                        s += fabs(g[off + j]), s0 += fabs(g0[off + j]);
                    else
                        sv += fabs(g[off + j]);
                }
                cr_assert(sv > 0, "%s: the value part has no gradient", name);
                qk = 1;
            } else if (qk) {
                for (size_t j = 0; j < cnt; j++)
                    s += fabs(g[off + j]), s0 += fabs(g0[off + j]);
            }
            if (qk) {
                if (f & LP_FREEZE_ATTENTION)
                    cr_assert_eq(s, 0.0, "frozen %s: %s has query/key gradient %g", flag_name(f), name, s);
                else
                    cr_assert(s > 0, "frozen %s: %s has no query/key gradient", flag_name(f), name);
                cr_assert(s0 > 0, "%s: no query/key gradient unfrozen", name);
            }
            off += cnt;
        }
        free(g);
    }
    free(g0);
    lp_model_free(m);
}

Test(train_frozen, flags_change_what_they_should)
{
    lp_model_config cs[] = {tcfg_gpt2(0, LP_GELU_TANH), tcfg_llama(0, 2, 1)};
    for (int i = 0; i < 2; i++)
        check_effects(&cs[i], 40 + (uint64_t)i);
}

/* Flags 0 set explicitly are the default: the same gradients, bit for bit. */
Test(train_frozen, flags_off_is_the_default)
{
    lp_model_config c = tcfg_llama(0, 2, 1);
    lp_model *m = tmodel(&c, 50);
    int32_t x[B * T], y[B * T];
    ttokens(x, y, B * T, 51);
    size_t n;
    float *a = grads_under(m, 0, x, y, &n);
    lp_trainer *t = ttrainer(m, 1e-3f, 1, B, T);
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, NULL), 0, "%s", lp_last_error());
    cr_assert_eq(memcmp(a, lp_trainer_grad(t, 0), n * sizeof *a), 0);
    cr_assert_eq(memcmp(a + n, lp_trainer_input_grad(t), (size_t)B * T * c.d_model * sizeof *a), 0);
    free(a);
    lp_trainer_free(t);
    lp_model_free(m);
}

Test(train_frozen, errors)
{
    lp_model_config c = tcfg_gpt2(0, LP_GELU_TANH);
    lp_model *m = tmodel(&c, 60);
    lp_trainer *t = ttrainer(m, 1e-3f, 2, B, T);
    cr_assert_null(lp_trainer_input_grad(t));
    cr_assert(strstr(lp_last_error(), "forward_backward first"), "%s", lp_last_error());
    cr_assert_eq(lp_trainer_set_frozen(t, 4), -1);
    cr_assert(strstr(lp_last_error(), "unknown frozen flags"), "%s", lp_last_error());
    int32_t x[B * T], y[B * T];
    ttokens(x, y, B * T, 61);
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, NULL), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_set_frozen(t, LP_FREEZE_NORM), -1);
    cr_assert(strstr(lp_last_error(), "middle of a step"), "%s", lp_last_error());
    cr_assert_eq(lp_trainer_frozen(t), 0);
    cr_assert_eq(lp_trainer_forward_backward(t, x, y, NULL), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_step(t, NULL, NULL), 0, "%s", lp_last_error());
    cr_assert_eq(lp_trainer_set_frozen(t, LP_FREEZE_NORM), 0, "%s", lp_last_error());
    lp_trainer_free(t);
    lp_model_free(m);
}
