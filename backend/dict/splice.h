/* Splicing dictionaries into a model's run: each SAE's reconstruction replaces its hook
 * point's activation (a transcoder reads hook_in and replaces hook_out with its prediction),
 * plus the error term when asked, so that with it the logits are unchanged. SAELens'
 * HookedSAETransformer names the parts, and these names are hook points of the run like
 * any other (cached, patched, ablated, steered, handed to a callback):
 *   <hook>.hook_sae_input      x, what the dictionary reads (a transcoder's hook_in value)
 *   <hook>.hook_sae_acts_pre   z (B,T,d_sae), the pre-activations
 *   <hook>.hook_sae_acts_post  f (B,T,d_sae), the features
 *   <hook>.hook_sae_recons     x_hat = decode(f) (in the model's units)
 *   <hook>.hook_sae_error      y - decode(f as encoded, before any hook), y the activation
 *                              replaced (x for an SAE)
 *   <hook>.hook_sae_output     what the model continues with: recons (+ error)
 * with <hook> the SAE's hook (a transcoder's hook_out). Hooks apply in that order; a hook on
 * acts_post changes recons (and so the output) and leaves the error as it was, as SAELens
 * does. A hook on acts_pre recomputes f from the changed z (the architecture's inference
 * activation: ReLU, top-k, or the JumpReLU threshold), then acts_post's hooks run.
 * The SAE's scale (activations normalised in training): it reads x * scale, and its
 * outputs are divided by scale.
 *
 *   const lp_sae *saes[] = {sae};
 *   lp_splice_opts so = {.saes = saes, .n = 1, .error_term = 0};
 *   lp_run_opts o = {.cache_all = 1};
 *   if (lp_model_run_spliced(m, toks, 1, T, &so, &o, &r) < 0) report(lp_last_error());
 *   lp_run_get(&r, "blocks.0.hook_resid_post.hook_sae_acts_post");   // (1,T,d_sae)
 *
 * Ownership: everything is borrowed; the run is the caller's to clear. Errors: -1 with
 * lp_last_error() (a hook name that neither the model nor a spliced SAE has, an SAE whose
 * d_in or d_out does not fit its hook, no memory); *out is left cleared.
 */
#ifndef LP_DICT_SPLICE_H
#define LP_DICT_SPLICE_H

#include "dict/sae.h"
#include "model/model.h"

typedef struct lp_splice_opts {
    const lp_sae *const *saes; /* SAEs and transcoders, borrowed */
    int n;
    /* cross-layer transcoders, borrowed: each reads blocks.L.<feature_input_hook> of every
     * layer and replaces blocks.L.<feature_output_hook> with the sum of the decoders of the
     * features of layers <= L; its parts are named per layer, <hook> = blocks.L.<feature_
     * output_hook> (acts_pre / acts_post: layer L's features; recons: layer L's prediction;
     * error: y - the prediction from the features as encoded). A hook on layer l's acts_post
     * changes every later layer's recons. */
    const lp_clt *const *clts;
    int nclt;
    int error_term; /* 1: add y - x_hat back (the model computes what it would without) */
} lp_splice_opts;

/* The suffixes of the names above, in the order they are reached (6). */
extern const char *const lp_splice_suffixes[6];

/* Whether name is <hook>.hook_sae_<part> of one of so's dictionaries. */
int lp_splice_has_hook(const lp_splice_opts *so, const char *name);

/* lp_model_run with so's dictionaries spliced in. opts as lp_model_run's (may be NULL): its
 * hooks may name the hook points above; cache_all or the filter decide which are kept. */
int lp_model_run_spliced(const lp_model *m, const int32_t *tokens, int B, int T, const lp_splice_opts *so,
                         const lp_run_opts *opts, lp_run *out);

/* The same over a key/value cache (lp_model_run_cached): for generation, T new positions after
 * those kv holds; the dictionaries see the new positions only. */
int lp_model_run_spliced_cached(const lp_model *m, lp_kv_cache *kv, const int32_t *tokens, int B, int T,
                                const lp_splice_opts *so, const lp_run_opts *opts, lp_run *out);

#endif
