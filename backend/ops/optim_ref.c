/* Reference AdamW, written out from Loshchilov & Hutter in double precision. */
#include <math.h>

#include "core/error.h"
#include "ops_impl.h"

static int adamw_step(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1,
                      float beta2, float eps, float weight_decay, int t)
{
    if (t < 1)
        return lp_set_error("adamw: step %d (steps count from 1)", t);
    for (size_t i = 0; i < n; i++) {
        double g = grads[i], mi = beta1 * (double)m[i] + (1.0 - beta1) * g;
        double vi = beta2 * (double)v[i] + (1.0 - beta2) * g * g;
        double mh = mi / (1.0 - pow(beta1, t)), vh = vi / (1.0 - pow(beta2, t));
        double p = params[i];
        params[i] = (float)(p - lr * (mh / (sqrt(vh) + eps) + weight_decay * p));
        m[i] = (float)mi;
        v[i] = (float)vi;
    }
    return 0;
}

void lp_ref_fill_optim(lp_ops *t) { t->adamw_step = adamw_step; }
