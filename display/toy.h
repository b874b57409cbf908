/* Figures of toy models of superposition; see toy.c. Bundles are new references, NULL with
 * lp_last_error() on failure. */
#ifndef LP_DISPLAY_TOY_H
#define LP_DISPLAY_TOY_H

#include <jansson.h>
#include <stddef.h>

#include "toy/superposition.h"

/* "S = 0.99" for instance labels. */
void lp_toy_sparsity_label(char *buf, size_t cap, float S);
/* The m = 2 picture of instance k: each feature's column W_i as a spoke from the origin. */
json_t *lp_display_toy_geometry(const lp_toy_model *t, int k);
/* The summary of every instance; last_loss (per instance, may be NULL) is shown with it. */
json_t *lp_display_toy_summary(const lp_toy_model *t, const float *last_loss);

#endif
