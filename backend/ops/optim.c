/* AdamW on the CPU: one flat loop over every parameter. */
#include <math.h>

#include "core/error.h"
#include "ops_impl.h"

// params, grads, m, v are (n)
static int adamw_step(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1,
                      float beta2, float eps, float weight_decay, int t)
{
    if (t < 1)
        return lp_set_error("adamw: step %d (steps count from 1)", t);
    float c1 = 1.0f - powf(beta1, (float)t), c2 = 1.0f - powf(beta2, (float)t);
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        float mh = m[i] / c1, vh = v[i] / c2;
        params[i] -= lr * (mh / (sqrtf(vh) + eps) + weight_decay * params[i]);
    }
    return 0;
}

void lp_cpu_fill_optim(lp_ops *t) { t->adamw_step = adamw_step; }
