/* Reference cross-entropy in double precision. */
#include <math.h>

#include "core/error.h"
#include "ops_impl.h"

static int crossentropy_forward(float *losses, float *probs, const float *logits, const int32_t *targets, int N,
                                int V)
{
    for (int n = 0; n < N; n++) {
        int tg = targets[n];
        if (tg < -1 || tg >= V)
            return lp_set_error("cross-entropy: target %d at position %d out of range [0, %d)", tg, n, V);
        const float *x = logits + (size_t)n * V;
        double m = -INFINITY, s = 0;
        for (int j = 0; j < V; j++)
            m = fmax(m, x[j]);
        for (int j = 0; j < V; j++)
            s += exp(x[j] - m);
        losses[n] = tg < 0 ? 0.0f : (float)(m + log(s) - x[tg]); /* before probs overwrite x (alias) */
        for (int j = 0; j < V; j++)
            probs[(size_t)n * V + j] = (float)(exp(x[j] - m) / s);
    }
    return 0;
}

static int crossentropy_backward(float *dlogits, const float *dlosses, const float *probs, const int32_t *targets,
                                 int N, int V)
{
    for (int n = 0; n < N; n++) {
        int tg = targets[n];
        if (tg < -1 || tg >= V)
            return lp_set_error("cross-entropy: target %d at position %d out of range [0, %d)", tg, n, V);
        for (int j = 0; j < V; j++)
            dlogits[(size_t)n * V + j] =
                tg < 0 ? 0.0f : (float)(((double)probs[(size_t)n * V + j] - (j == tg)) * dlosses[n]);
    }
    return 0;
}

void lp_ref_fill_loss(lp_ops *t)
{
    t->crossentropy_forward = crossentropy_forward;
    t->crossentropy_backward = crossentropy_backward;
}
