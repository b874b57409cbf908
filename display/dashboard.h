/* The feature dashboard (sae:feature(i)): what one dictionary feature fires on and what it
 * does, as sae_vis / SAEDashboard / Neuronpedia show it (DICTIONARY.md, "Feature
 * dashboards"), sanitizer-safe and bounded:
 *   - the title (feature, label), density ("ACTIVATIONS DENSITY = x %"), max;
 *   - a histogram of log10 activations (from the harvest);
 *   - the top 10 positive and negative logits of the direct effect and its histogram over
 *     the vocabulary;
 *   - the top activating examples and the interval samples, each as +/- 5 tokens of context
 *     shaded by the feature's activation (title tooltips; where scripts run, a readout line
 *     with the token, its activation and what the feature promotes: display/js/dashboard.js);
 *   - neuron alignment: the largest decoder entries |W_dec,i,d| (the output dimensions, MLP
 *     neurons for a dictionary writing an MLP's hidden layer), with their share of the L1 norm,
 *     and, when given, the MLP neurons n of the hook's layer with the largest |W_dec,i . W_out,n|;
 *   - the most correlated features (harvest co-occurrence, Jaccard), with their labels.
 * Without a harvest the examples, density and histogram are replaced by a note saying how
 * to make one; logits and alignment remain. Every token and label is escaped; tokens are
 * cut to 24 characters in the strips. At most about 300 KB of HTML whatever the tokens. */
#ifndef LP_DISPLAY_DASHBOARD_H
#define LP_DISPLAY_DASHBOARD_H

#include <jansson.h>

#include "dict/harvest.h"

typedef struct lp_dashboard {
    int feature, d_sae;
    const char *label;           /* the feature's label, or NULL */
    const char *what;            /* the dictionary in a few words ("SAE topk on blocks.1.hook_resid_post") */
    const lp_harvest *h;         /* NULL: no harvest */
    const char *how;             /* without a harvest: how to make one (our text) */
    const float *logits;         /* the direct effect on each of n_vocab tokens, or NULL */
    int n_vocab;
    const float *dec;            /* the decoder row (d_out), or NULL */
    int d_out;
    const char *dim_name;        /* "dimension" or "neuron" */
    lp_token_text_fn tok_text;   /* token id -> text (NULL: "#id") */
    void *ud;
    const char *const *corr_labels; /* labels of h's correlated features (CORR, entries may be NULL), or NULL */
    const int *neuron;           /* MLP neurons most aligned with the decoder row (n_neuron), or NULL */
    const float *neuron_dot;     /* their W_dec,i . W_out,n */
    int n_neuron, neuron_layer;
} lp_dashboard;

/* A new bundle, or NULL with lp_last_error() (no memory). */
json_t *lp_display_dashboard(const lp_dashboard *d);

#endif
