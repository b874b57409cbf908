/* The prompt view (r:features(sae)): which dictionary features fire on each token of a
 * prompt, sanitizer-safe:
 *   - the tokens as a strip, each shaded by its strongest feature's activation (relative to
 *     the prompt's largest), with a title tooltip listing its top features (index, label,
 *     activation); where scripts run (display/js/prompt.js) hovering a token shows the same
 *     in a readout line and a click pins it;
 *   - a table of the top features of each token (the first LP_PROMPT_ROWS positions);
 *   - the strongest features of the prompt as a table (index, label, max, where, positions).
 * Every token and label is escaped (tokens cut to 24 code points, labels to 60). */
#ifndef LP_DISPLAY_PROMPT_FEATURES_H
#define LP_DISPLAY_PROMPT_FEATURES_H

#include <jansson.h>

enum { LP_PROMPT_ROWS = 256 };

typedef struct lp_prompt_feat {
    int feature;       /* -1: none */
    float act;
    const char *label; /* or NULL */
} lp_prompt_feat;

typedef struct lp_prompt_strong {
    int feature;
    float max;
    int pos;           /* where the max is (0-based) */
    int fired;         /* positions where it fires */
    const char *label;
} lp_prompt_strong;

typedef struct lp_prompt_view {
    const char *what;               /* our own text: the dictionary */
    int T;
    const char *const *tokens;      /* T token texts (NULL entries: "?") */
    int K;
    const lp_prompt_feat *per_token; /* [T][K], by activation, feature -1 after the last */
    int n_strong;
    const lp_prompt_strong *strong;
} lp_prompt_view;

/* A new bundle, or NULL with lp_last_error(). */
json_t *lp_display_prompt_features(const lp_prompt_view *v);

#endif
