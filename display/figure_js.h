/* The scripts figures carry where scripts run (display/js/<name>.js), embedded at build
 * time by embed_js.cmake: comments and indentation stripped, NUL-terminated, "@ID@" still
 * in them for lp_fig_script to replace. Internal to display/. */
#ifndef LP_DISPLAY_FIGURE_JS_H
#define LP_DISPLAY_FIGURE_JS_H

extern const char lp_js_heatmap[]; /* heatmap.c: hover readout, click-to-zoom */
extern const char lp_js_tokens[];  /* tokens.c: hover readout line */
extern const char lp_js_circuit[]; /* circuit.c: hover a node for its label and numbers */
extern const char lp_js_browser[];   /* browser.c: search, sort, dashboards opened in place */
extern const char lp_js_prompt[];    /* prompt_features.c: a token's features in a readout */
extern const char lp_js_dashboard[]; /* dashboard.c: hover readout with the promoted tokens */

#endif
