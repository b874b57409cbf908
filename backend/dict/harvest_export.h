/* A harvested feature as the JSON other viewers read (DICTIONARY.md, "Feature dashboards"):
 *
 * Neuronpedia's feature JSON: modelId, layer, index, pos_str / pos_values and neg_str /
 * neg_values (the 10 largest and smallest direct logit effects), frac_nonzero (density),
 * freq_hist_data_bar_heights / _values (the activation histogram: counts, and bin centres
 * in activation units), logits_hist_data_bar_heights / _values (the histogram of the logit
 * effects over the vocabulary), activations [{tokens, values, maxValue, maxValueTokenIndex,
 * minValue, bin_min, bin_max, bin_contains}]: the top examples (bin_min = bin_max =
 * bin_contains = -1, as SAEDashboard marks them) then each interval's samples (its bounds
 * and the share of activations in it).
 *
 * circuit-tracer's feature JSON (circuit_tracer.frontend.feature_models.Model, what its
 * feature view reads from features/<scan>/<index>.json): transcoder_id, index,
 * examples_quantiles [{quantile_name, examples [{tokens, tokens_acts_list, train_token_ind,
 * is_repeated_datapoint}]}] ("Top activations", then "Subsample Interval k" from the
 * highest), top_logits / bottom_logits (token texts), act_min, act_max, quantile_values
 * (the intervals' upper bounds, highest first), histogram (the activation histogram's
 * counts), activation_frequency.
 *
 * Examples keep the context tokens the harvest has (positions past a window's ends are
 * left out, so train_token_ind / maxValueTokenIndex is the firing token's place among them).
 * logits may be NULL (a dictionary that does not write the residual stream): the logit
 * fields are then empty lists. tok_text as lp_harvest_label's (NULL: "#id"). New JSON, or
 * NULL with an error (no memory, i out of range). */
#ifndef LP_DICT_HARVEST_EXPORT_H
#define LP_DICT_HARVEST_EXPORT_H

#include <jansson.h>

#include "dict/harvest.h"

json_t *lp_feature_json_neuronpedia(const lp_harvest *h, int i, const float *logits, int n_vocab,
                                    lp_token_text_fn tok_text, void *ud, const char *model_id,
                                    const char *layer_id);
json_t *lp_feature_json_circuit_tracer(const lp_harvest *h, int i, const float *logits, int n_vocab,
                                       lp_token_text_fn tok_text, void *ud, const char *transcoder_id);

#endif
