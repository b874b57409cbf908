/* Cross-entropy over logits (softmax fused), on the CPU. */
#include <math.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "ops_impl.h"

// losses (N), probs (N,V), logits (N,V), targets (N)
static int crossentropy_forward(float *losses, float *probs, const float *logits, const int32_t *targets, int N,
                                int V)
{
    long chunk = lp_chunk_rows(4.0 * V);
    for (int n = 0; n < N; n++) {
        if (n % chunk == 0 && lp_interrupt_check() < 0)
            return -1;
        int tg = targets[n];
        if (tg < -1 || tg >= V)
            return lp_set_error("cross-entropy: target %d at position %d out of range [0, %d)", tg, n, V);
        const float *x = logits + (size_t)n * V;
        float *p = probs + (size_t)n * V, m = -INFINITY;
        double s = 0;
        for (int j = 0; j < V; j++)
            m = x[j] > m ? x[j] : m;
        float xt = tg < 0 ? 0.0f : x[tg]; /* read before p (which may alias x) is written */
        for (int j = 0; j < V; j++) {
            p[j] = expf(x[j] - m);
            s += p[j];
        }
        float inv = (float)(1.0 / s);
        for (int j = 0; j < V; j++)
            p[j] *= inv;
        /* -log p[t] computed from the logits, so that tiny probabilities keep their precision */
        losses[n] = tg < 0 ? 0.0f : (float)(log(s) + m - xt);
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
        float g = tg < 0 ? 0.0f : dlosses[n];
        const float *p = probs + (size_t)n * V;
        float *d = dlogits + (size_t)n * V;
        for (int j = 0; j < V; j++)
            d[j] = p[j] * g;
        if (tg >= 0)
            d[tg] -= g;
    }
    return 0;
}

void lp_cpu_fill_loss(lp_ops *t)
{
    t->crossentropy_forward = crossentropy_forward;
    t->crossentropy_backward = crossentropy_backward;
}
