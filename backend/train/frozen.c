/* The frozen backward's switches and the gradient at the model's input (train.h): what
 * attribution reads from the trainer. The passes themselves are pass.c's, with the frozen
 * kernels of kernels.c and the op table. */
#include "core/error.h"
#include "train/train_impl.h"

int lp_trainer_set_frozen(lp_trainer *t, int flags)
{
    if (flags & ~(LP_FREEZE_ATTENTION | LP_FREEZE_NORM))
        return lp_set_error("unknown frozen flags %#x (attention %d, norms %d)", (unsigned)flags, LP_FREEZE_ATTENTION,
                            LP_FREEZE_NORM);
    if (t->micro > 0 && flags != t->frozen)
        return lp_set_error("cannot change what the backward freezes in the middle of a step (%d micro-batch%s "
                            "accumulated)", t->micro, t->micro == 1 ? "" : "es");
    t->frozen = flags;
    return 0;
}

int lp_trainer_frozen(const lp_trainer *t) { return t->frozen; }

const float *lp_trainer_input_grad(lp_trainer *t)
{
    if (!t->has_dres) {
        lp_set_error("no input gradient: run forward_backward first");
        return NULL;
    }
    if (!t->be)
        return t->dres;
    size_t n = (size_t)t->N * (size_t)t->m->cfg.d_model;
    if (!t->dres_h && !(t->dres_h = lp_malloc(n * sizeof(float) + 1, "a host copy of the input gradient")))
        return NULL;
    if (t->be->synchronize() < 0 || t->be->to_host(t->dres_h, t->dres, n * sizeof(float)) < 0)
        return NULL;
    return t->dres_h;
}
