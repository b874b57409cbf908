/* Interventions on dictionary features (the team's ATTRIBUTION.md, "Interventions";
 * DICTIONARY.md's steering): set, add to or ablate features of a per-layer transcoder set
 * (or a cross-layer transcoder: lp_intervene_clt) at chosen positions and rerun the model.
 * (Here rather than in attrib/ so that steering needs no attribution graph; the attribution
 * engine's edges are what a constrained intervention reproduces: tests/unit/dict/test_intervene.c.)
 *
 *   lp_feature_edit e = {.layer = 1, .pos = 3, .feature = 17, .kind = LP_FEAT_SET, .value = 2.5f};
 *   lp_intervene_opts o = {.edits = &e, .n_edits = 1, .freeze_attention = 1,
 *                          .constrained = 1, .c_first = 0, .c_last = m->cfg.n_layers - 1};
 *   lp_intervention r = {0};
 *   if (lp_intervene(m, tcs, toks, T, &o, &r) < 0) report(lp_last_error());
 *   ... r.logits (1,T,V), r.acts[l] (T,d_sae) ...
 *   lp_intervention_clear(&r);
 *
 * What a run computes, per layer l of the set (x its hook_in, y its hook_out, f its features,
 * edit(f) the features with the edits of layer l applied, W_dec and W_skip its decoder and
 * skip, s its scale):
 *   free layer (not constrained): the MLP runs; its output becomes
 *     y + (edit(f) - f) W_dec / s, f encoded from this run's x: the transcoder spliced in
 *     with its error term kept, so only the edits move the output;
 *   constrained layer (c_first <= l <= c_last): the output is frozen at the clean run's y
 *     plus the direct effect of the edits, (edit(f_clean) - f_clean) W_dec / s, plus the
 *     skip's response (x - x_clean) W_skip^T: the change propagates linearly, as the
 *     attribution graph's edges say;
 *   freeze_attention: every layer's attention pattern is the clean run's;
 *   constrained: the norm scales (ln1, ln2) of the constrained layers are the clean run's,
 *     and ln_final's too when c_last is the last layer. With every layer constrained and
 *     attention frozen, the change of a logit direction is the sum over the edited features
 *     of A_{s -> logit} * delta_s / a_s (lp_attrib_edges).
 * acts[l] holds edit(f) with f encoded from the run's x (pre[l] the pre-activations), for
 * constrained layers too (what the features would read: the pre-activations change by the
 * graph's edges); clean_acts[l] the clean run's f.
 *
 * Positions count from 0 here (the Lua bindings add 1). Errors (-1, *out cleared): a set
 * that does not fit the model (layers, widths, hooks), an edit's layer, feature or position
 * out of range (the message names the edit), no memory, a failed run.
 */
#ifndef LP_DICT_INTERVENE_H
#define LP_DICT_INTERVENE_H

#include <limits.h>

#include "dict/sae.h"
#include "model/model.h"

typedef enum lp_feature_edit_kind {
    LP_FEAT_SET = 0, /* f = value */
    LP_FEAT_ADD,     /* f += value (steering: adds value * W_dec,i / scale to the output) */
    LP_FEAT_ABLATE   /* f = 0 */
} lp_feature_edit_kind;

typedef struct lp_feature_edit {
    int layer;   /* the transcoder's index in the set (from 0) */
    int pos;     /* from 0; -1: every position */
    int feature; /* from 0 */
    lp_feature_edit_kind kind;
    float value;
} lp_feature_edit;

/* edit to one feature value */
float lp_feature_edit_apply(lp_feature_edit_kind kind, float value, float f);

typedef struct lp_intervene_opts {
    const lp_feature_edit *edits;
    int n_edits;
    int freeze_attention;     /* 1: every layer's attention pattern is the clean run's */
    int constrained;          /* 1: layers c_first..c_last constrained */
    int c_first, c_last;
} lp_intervene_opts;

typedef struct lp_intervention {
    int n_layers, T;
    lp_tensor *clean_logits; /* (1,T,V) */
    lp_tensor *logits;       /* (1,T,V) */
    lp_tensor **acts;        /* n_layers of (T,d_sae) */
    lp_tensor **pre;         /* n_layers of (T,d_sae) */
    lp_tensor **clean_acts;  /* n_layers of (T,d_sae) */
} lp_intervention;

/* Checks that tcs fits m: one transcoder per layer, each reading and writing hook points
 * of m. 0, or -1 with an error naming the layer. */
int lp_intervene_check_set(const lp_model *m, const lp_transcoder_set *tcs);

int lp_intervene(const lp_model *m, const lp_transcoder_set *tcs, const int32_t *tokens, int T,
                 const lp_intervene_opts *o, lp_intervention *out);

/* The same with a cross-layer transcoder: layer l's features read blocks.l.<feature_input_hook>
 * and write every layer l' >= l (blocks.l'.<feature_output_hook>), so an edit of a layer-l
 * feature moves the outputs of l and of every later layer by delta * W_dec[l][l' - l] (in
 * free and constrained layers alike). */
int lp_intervene_check_clt(const lp_model *m, const lp_clt *clt);
int lp_intervene_clt(const lp_model *m, const lp_clt *clt, const int32_t *tokens, int T, const lp_intervene_opts *o,
                     lp_intervention *out);
void lp_intervention_clear(lp_intervention *r);

/* A callback hook (lp_hook_fn) that edits one feature of a dictionary's features
 * (<hook>.hook_sae_acts_post, (B,T,d_sae)) at one position, or all: for m:run's and
 * m:generate's `features`. A row t of the run is at absolute position offset + t; it is
 * edited when pos is -1, offset + t == pos, or offset + t >= from (the generated tokens;
 * INT_MAX: none). */
typedef struct lp_feature_hook {
    int feature, pos;
    lp_feature_edit_kind kind;
    float value;
    int offset, from;
} lp_feature_hook;

int lp_feature_hook_fn(void *ud, const char *name, const lp_tensor *act, lp_tensor **out);

#endif
