/* Toy models of superposition (backend/toy/superposition.c): the backward against finite
 * differences, determinism, the paper's two regimes (dense: the m most important features;
 * sparse: the pentagon), the metrics on hand-made weights, and bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "toy/superposition.h"

#define PI 3.14159265358979323846

static lp_toy_model *make(int n, int m, const float *S, int instances, float imp_ratio,
                          float lr, uint64_t seed)
{
    static float imp[64];
    for (int i = 0; i < n; i++)
        imp[i] = powf(imp_ratio, (float)i);
    lp_toy_config c = lp_toy_defaults(n, m);
    c.instances = instances;
    c.sparsity = S;
    c.importance = imp;
    c.lr = lr;
    c.seed = seed;
    lp_toy_model *t = lp_toy_new(&c);
    cr_assert_not_null(t, "lp_toy_new: %s", lp_last_error());
    return t;
}

Test(toy, backward_matches_finite_differences)
{
    enum { B = 6, m = 2, n = 4 };
    lp_rng g;
    lp_rng_seed(&g, 3);
    float x[B * n], W[m * n], b[n], imp[n], h[B * m], out[B * n], dpre[B * n], dh[B * m];
    float dW[m * n] = {0}, db[n] = {0};
    lp_toy_sample(x, &g, 0.3f, B, n);
    for (int k = 0; k < m * n; k++)
        W[k] = (float)lp_rng_normal(&g) * 0.7f;
    for (int i = 0; i < n; i++) {
        b[i] = 0.05f * (float)(i - 1); /* one negative bias */
        imp[i] = powf(0.8f, (float)i);
    }
    lp_toy_forward(h, out, x, W, b, imp, B, m, n);
    lp_toy_backward(dW, db, dpre, dh, x, h, out, W, imp, B, m, n);
    /* parameters accumulate: a second backward doubles them */
    float dW2[m * n], db2[n];
    memcpy(dW2, dW, sizeof dW);
    memcpy(db2, db, sizeof db);
    lp_toy_backward(dW2, db2, dpre, dh, x, h, out, W, imp, B, m, n);
    for (int k = 0; k < m * n; k++)
        cr_assert_float_eq(dW2[k], 2 * dW[k], 1e-6, "gradients accumulate");

    const float eps = 1e-3f;
    int checked = 0;
    for (int k = 0; k < m * n + n; k++) {
        float *p = k < m * n ? &W[k] : &b[k - m * n];
        float an = k < m * n ? dW[k] : db[k - m * n], save = *p;
        *p = save + eps;
        double lp = lp_toy_forward(h, out, x, W, b, imp, B, m, n);
        *p = save - eps;
        double lm = lp_toy_forward(h, out, x, W, b, imp, B, m, n);
        *p = save;
        double fd = (lp - lm) / (2 * eps);
        cr_assert(fabs(fd - an) <= 2e-3 + 1e-2 * fabs(fd),
                  "param %d: analytic %g, finite differences %g", k, an, fd);
        checked += fabs(an) > 1e-3;
    }
    cr_assert_gt(checked, 6, "most gradients are non-zero (%d)", checked);
}

Test(toy, training_is_deterministic_for_a_seed)
{
    float S[2] = {0.5f, 0.9f};
    lp_toy_model *a = make(5, 2, S, 2, 0.9f, 1e-2f, 11), *b = make(5, 2, S, 2, 0.9f, 1e-2f, 11),
                 *c = make(5, 2, S, 2, 0.9f, 1e-2f, 12);
    cr_assert_eq(lp_toy_train(a, 60, NULL, NULL), 0);
    cr_assert_eq(lp_toy_train(b, 35, NULL, NULL), 0);
    cr_assert_eq(lp_toy_train(b, 25, NULL, NULL), 0, "resuming continues the same run");
    cr_assert_eq(lp_toy_train(c, 60, NULL, NULL), 0);
    cr_assert_eq(a->step, 60);
    cr_assert_eq(memcmp(a->params, b->params, a->nparams * sizeof(float)), 0);
    cr_assert_neq(memcmp(a->params, c->params, a->nparams * sizeof(float)), 0);
    lp_toy_free(a);
    lp_toy_free(b);
    lp_toy_free(c);
}

/* n = 5, m = 2 after 3000 steps at lr 1e-2: measured norms 0.99-1.00 and <= 0.02 (dense),
 * 1.13-1.18 at neighbour angles 70-75 degrees (sparse), over seeds 0-2. */
Test(toy, dense_keeps_the_m_most_important_and_sparse_gives_the_pentagon, .timeout = 120)
{
    float S[2] = {0.0f, 0.99f};
    lp_toy_model *t = make(5, 2, S, 2, 0.9f, 1e-2f, 0);
    cr_assert_eq(lp_toy_train(t, 3000, NULL, NULL), 0, "%s", lp_last_error());
    float norms[5];
    lp_toy_feature_norms(norms, lp_toy_weights(t, 0), 2, 5);
    for (int i = 0; i < 5; i++) {
        if (i < 2)
            cr_assert(norms[i] > 0.9f && norms[i] < 1.1f, "dense: feature %d norm %g", i, norms[i]);
        else
            cr_assert(norms[i] < 0.1f, "dense: feature %d norm %g, not ~0", i, norms[i]);
    }
    cr_assert_float_eq(lp_toy_dims_per_feature(lp_toy_weights(t, 0), 2, 5), 1.0f, 0.05f);

    const float *W = lp_toy_weights(t, 1);
    lp_toy_feature_norms(norms, W, 2, 5);
    double ang[5];
    for (int i = 0; i < 5; i++) {
        cr_assert(norms[i] > 0.8f, "sparse: feature %d norm %g", i, norms[i]);
        ang[i] = atan2(W[5 + i], W[i]) * 180 / PI;
    }
    for (int i = 1; i < 5; i++) /* sort */
        for (int j = i; j > 0 && ang[j] < ang[j - 1]; j--) {
            double s = ang[j];
            ang[j] = ang[j - 1];
            ang[j - 1] = s;
        }
    for (int i = 0; i < 5; i++) {
        double d = i < 4 ? ang[i + 1] - ang[i] : ang[0] + 360 - ang[4];
        cr_assert(fabs(d - 72) < 8, "sparse: neighbour angle %g degrees", d);
    }
    float dim[5];
    lp_toy_dimensionality(dim, W, 2, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_float_eq(dim[i], 0.4f, 0.05f, "pentagon: D_%d = %g", i, dim[i]);
    lp_toy_free(t);
}

Test(toy, metrics_on_hand_made_weights)
{
    /* m = 2, n = 4: two orthogonal features, one antipodal to the first, one absent */
    const float W[8] = {1, 0, -1, 0, /* row 0 */
                        0, 2, 0, 0}; /* row 1 */
    float v[16];
    lp_toy_feature_norms(v, W, 2, 4);
    cr_assert(v[0] == 1 && v[1] == 2 && v[2] == 1 && v[3] == 0);
    lp_toy_superposition(v, W, 2, 4);
    cr_assert(v[0] == 1 && v[1] == 0 && v[2] == 1 && v[3] == 0, "%g %g %g %g", v[0], v[1], v[2], v[3]);
    lp_toy_dimensionality(v, W, 2, 4);
    cr_assert(v[0] == 0.5f && v[1] == 1 && v[2] == 0.5f && v[3] == 0);
    cr_assert_float_eq(lp_toy_dims_per_feature(W, 2, 4), 2.0f / 6.0f, 1e-6);
    lp_toy_wtw(v, W, 2, 4);
    cr_assert(v[0] == 1 && v[2] == -1 && v[5] == 4 && v[8] == -1 && v[10] == 1 && v[15] == 0);
    const float Z[4] = {0};
    cr_assert(isinf(lp_toy_dims_per_feature(Z, 2, 2)));

    /* the regular pentagon: superposition 2cos^2(72) + 2cos^2(144) = 1.5, D = 1/2.5 */
    float P[10];
    for (int i = 0; i < 5; i++) {
        P[i] = (float)cos(2 * PI * i / 5);
        P[5 + i] = (float)sin(2 * PI * i / 5);
    }
    lp_toy_superposition(v, P, 2, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_float_eq(v[i], 1.5f, 1e-5);
    lp_toy_dimensionality(v, P, 2, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_float_eq(v[i], 0.4f, 1e-5);
    cr_assert_float_eq(lp_toy_dims_per_feature(P, 2, 5), 0.4f, 1e-5);
}

typedef struct calls {
    int n;
    long steps[8], target;
    float first_loss;
} calls;

static int record(void *ud, long step, long target, const float *loss, int instances)
{
    calls *c = ud;
    if (c->n < 8)
        c->steps[c->n] = step;
    if (c->n == 0)
        c->first_loss = loss[instances - 1];
    c->n++;
    c->target = target;
    return 0;
}

static int stop_at_two(void *ud, long step, long target, const float *loss, int instances)
{
    lp_set_error("stopped by the callback");
    return ((calls *)ud)->n++ == 1;
}

Test(toy, progress_callback_interrupt_and_nan)
{
    float S[1] = {0.9f};
    lp_toy_model *t = make(5, 2, S, 1, 0.9f, 1e-2f, 0);
    calls c = {0};
    t->report_every = 10;
    cr_assert_eq(lp_toy_train(t, 25, record, &c), 0);
    cr_assert_eq(c.n, 3);
    cr_assert(c.steps[0] == 10 && c.steps[1] == 20 && c.steps[2] == 25 && c.target == 25);
    cr_assert(c.first_loss > 0 && isfinite(c.first_loss));

    calls s = {0};
    cr_assert_eq(lp_toy_train(t, 100, stop_at_two, &s), -1);
    cr_assert_eq(t->step, 45, "stopped after the second report");
    cr_assert_str_eq(lp_last_error(), "stopped by the callback");

    float *before = malloc(t->nparams * sizeof(float));
    memcpy(before, t->params, t->nparams * sizeof(float));
    lp_interrupt_request();
    cr_assert_eq(lp_toy_train(t, 100, NULL, NULL), -1);
    lp_interrupt_clear();
    cr_assert_str_eq(lp_last_error(), "interrupted");
    cr_assert_eq(t->step, 45);
    cr_assert_eq(memcmp(before, t->params, t->nparams * sizeof(float)), 0, "weights kept");
    free(before);

    t->lr = 1e30f; /* the weights blow up, then the loss is not finite */
    cr_assert_eq(lp_toy_train(t, 100, NULL, NULL), -1);
    cr_assert(strstr(lp_last_error(), "at step") && strstr(lp_last_error(), "learning rate"),
              "%s", lp_last_error());
    lp_toy_free(t);
}

Test(toy, bad_configurations_are_errors)
{
    float S[2] = {0.5f, 1.5f}, imp[3] = {1, NAN, 1};
    lp_toy_config c = lp_toy_defaults(3, 2);
    c.sparsity = S;
    c.instances = 2;
    cr_assert_null(lp_toy_new(&c));
    cr_assert(strstr(lp_last_error(), "sparsity 1.5"), "%s", lp_last_error());
    c.instances = 1;
    c.importance = imp;
    cr_assert_null(lp_toy_new(&c));
    cr_assert(strstr(lp_last_error(), "importance"), "%s", lp_last_error());
    c.importance = NULL;
    c.n = 0;
    cr_assert_null(lp_toy_new(&c));
    c.n = 3;
    c.lr = NAN;
    cr_assert_null(lp_toy_new(&c));
    cr_assert(strstr(lp_last_error(), "learning rate"), "%s", lp_last_error());
    c.lr = 1e-3f;
    c.batch = 0;
    cr_assert_null(lp_toy_new(&c));
    c.batch = 4;
    lp_toy_model *t = lp_toy_new(&c);
    cr_assert_not_null(t);
    cr_assert_eq(lp_toy_train(t, -1, NULL, NULL), -1);
    lp_toy_free(t);
    lp_toy_free(NULL);
}
