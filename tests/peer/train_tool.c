/* Test-only driver for tests/peer/test_train.py: loads a model folder and trains it on one
 * batch for a few steps with loupe's trainer (backend/train), writing what PyTorch is
 * compared with to a safetensors file.
 *
 *   train_tool FOLDER OUT.safetensors B T STEPS LR BETA1 BETA2 EPS WD CLIP ids... targets...
 *   (B*T input ids, then B*T targets, row-major; a target of -1 is ignored)
 *
 * Every step is one forward_backward on the batch and one AdamW step (constant learning
 * rate, no warm-up). Tensors in OUT: "losses" and "grad_norms" (STEPS), "grad.<name>" for
 * every parameter after the first forward_backward (before any step), "param.<name>" after
 * the last step. A load or training error is printed to stderr with exit status 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "train/train.h"

#define FIXED 12 /* argv entries before the ids */

static lp_tensor *copy_of(const float *data, const lp_tensor *like)
{
    return lp_tensor_from_data(like->ndim, like->shape, data, LP_DEVICE_CPU);
}

int main(int argc, char **argv)
{
    if (argc < FIXED) {
        fprintf(stderr, "usage: train_tool FOLDER OUT.safetensors B T STEPS LR BETA1 BETA2 EPS WD CLIP ids... "
                        "targets...\n");
        return 1;
    }
    int B = atoi(argv[3]), T = atoi(argv[4]), steps = atoi(argv[5]);
    if (B <= 0 || T <= 0 || steps <= 0 || argc != FIXED + 2 * B * T) {
        fprintf(stderr, "train_tool: need 2*B*T = %d ids and targets, got %d\n", 2 * B * T, argc - FIXED);
        return 1;
    }
    lp_train_opts o;
    lp_train_opts_default(&o);
    o.lr = (float)atof(argv[6]), o.beta1 = (float)atof(argv[7]), o.beta2 = (float)atof(argv[8]);
    o.eps = (float)atof(argv[9]), o.weight_decay = (float)atof(argv[10]), o.grad_clip = (float)atof(argv[11]);
    int n = B * T, rc = 2;
    int32_t *x = malloc(sizeof(int32_t) * (size_t)n), *y = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n; i++)
        x[i] = atoi(argv[FIXED + i]), y[i] = atoi(argv[FIXED + n + i]);
    lp_model *m = lp_model_load(argv[1]);
    lp_trainer *t = m ? lp_trainer_new(m, &o, B, T) : NULL;
    size_t np = m ? lp_model_param_count(m) : 0, nout = 2 + 2 * np, k = 0;
    char **names = calloc(nout, sizeof *names);
    lp_tensor **ts = calloc(nout, sizeof *ts);
    float *losses = malloc(sizeof(float) * (size_t)steps), *norms = malloc(sizeof(float) * (size_t)steps);
    if (!t)
        goto done;
    for (int s = 0; s < steps; s++) {
        if (lp_trainer_forward_backward(t, x, y, &losses[s]) < 0)
            goto done;
        for (size_t i = 0; s == 0 && i < np; i++, k++) {
            lp_tensor *w;
            char name[96];
            lp_model_param(m, i, name, sizeof name, &w);
            names[k] = malloc(strlen(name) + 8);
            sprintf(names[k], "grad.%s", name);
            if (!(ts[k] = copy_of(lp_trainer_grad(t, i), w)))
                goto done;
        }
        if (lp_trainer_step(t, &norms[s], NULL) < 0)
            goto done;
    }
    for (size_t i = 0; i < np; i++, k++) {
        lp_tensor *w;
        char name[96];
        lp_model_param(m, i, name, sizeof name, &w);
        names[k] = malloc(strlen(name) + 8);
        sprintf(names[k], "param.%s", name);
        if (!(ts[k] = copy_of(w->data, w)))
            goto done;
    }
    int64_t shape[1] = {steps};
    names[k] = strdup("losses"), ts[k++] = lp_tensor_from_data(1, shape, losses, LP_DEVICE_CPU);
    names[k] = strdup("grad_norms"), ts[k++] = lp_tensor_from_data(1, shape, norms, LP_DEVICE_CPU);
    if (!ts[k - 1] || !ts[k - 2])
        goto done;
    if (lp_safetensors_write(argv[2], (const char *const *)names, (const lp_tensor *const *)ts, k, LP_DTYPE_F32, NULL,
                             NULL, 0) == 0)
        rc = 0;
done:
    if (rc)
        fprintf(stderr, "train_tool: %s\n", lp_last_error());
    for (size_t i = 0; i < nout; i++)
        free(names[i]), lp_tensor_free(ts[i]);
    free(names), free(ts), free(losses), free(norms), free(x), free(y);
    lp_trainer_free(t);
    lp_model_free(m);
    return rc;
}
