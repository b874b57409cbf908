/* Private to backend/model/: the state of one forward pass, shared by forward.c (the
 * layers) and hooks.c (what happens at each hook point). */
#ifndef LP_FORWARD_IMPL_H
#define LP_FORWARD_IMPL_H

#include "model/model.h"

typedef struct lp_fwd {
    const lp_model *m;
    const lp_run_opts *o; /* may be NULL */
    lp_run *r;
    int B, T;
} lp_fwd;

/* Runs the hooks named `name` on act (contiguous, owned by the forward pass; modified in
 * place), then caches a reference when the options ask. headdim / posdim: the dims of heads
 * and positions in act (-1: none). 0, or -1 with an error. */
int lp_fwd_hook(lp_fwd *f, const char *name, lp_tensor *act, int headdim, int posdim);
/* Whether a hook (not just the cache) acts on name. */
int lp_fwd_hooked(const lp_fwd *f, const char *name);
/* Checks every hook's name and arguments before a run. */
int lp_fwd_check_hooks(const lp_model *m, const lp_run_opts *o);
/* Appends a reference to t under name. */
int lp_run_add(lp_run *r, const char *name, const lp_tensor *t);

#endif
