/* The feature browser (sae:features{...}): a table of a dictionary's features (index,
 * label, density, max activation, top tokens), sanitizer-safe:
 *   - without scripts: the table of the rows given (the caller picks and orders them: the
 *     first n of a sort, after a search), every label and token escaped;
 *   - where scripts run (display/js/browser.js): a search box filtering the rows, headers
 *     that sort them (index, density, max), and a click on a row opening that feature's
 *     dashboard in a row below it (a second click closes it). Only the dashboards given are
 *     embedded (as text in the figure's JSON data, inserted on click): the caller embeds
 *     those of the first rows, and this stops adding them past LP_BROWSER_DASH_BUDGET bytes
 *     (as embedded: JSON-escaped), so the output stays bounded; rows without one say "no dashboard embedded" on click. */
#ifndef LP_DISPLAY_BROWSER_H
#define LP_DISPLAY_BROWSER_H

#include <jansson.h>

#define LP_BROWSER_DASH_BUDGET (600u * 1024u)

typedef struct lp_browser_row {
    int index;
    const char *label; /* or NULL */
    double density;    /* fraction of tokens, or NaN when unknown */
    double max;        /* or NaN */
    const char *top;   /* top tokens as one line of text (shown as text), or NULL */
    const char *dash;  /* the feature's dashboard HTML (our own, from lp_display_dashboard), or NULL */
} lp_browser_row;

/* A new bundle, or NULL with lp_last_error(). title and note: our own text (escaped anyway). */
json_t *lp_display_browser(const char *title, const lp_browser_row *rows, int n, const char *note);

#endif
