/* Progress bars for long work (training steps, harvesting, attribution passes). The kernel
 * publishes the bundle with a display_id and updates it a few times a second; the last
 * state (finished != 0) stays in the saved notebook.
 *
 * text/plain, tqdm-like:
 *   "train  45% |█████████           | 45/100 [00:02<00:03, 21.5 it/s]"
 *   "harvest 45 it [00:02, 21.5 it/s]"                (total <= 0: total unknown)
 * text/html: a div bar with inline styles only (survives the notebook sanitizer). */
#ifndef LP_DISPLAY_PROGRESS_H
#define LP_DISPLAY_PROGRESS_H

#include <jansson.h>

/* label: untrusted (escaped), may be NULL. done, total: counts (total <= 0 or not finite:
 * unknown). elapsed_s: seconds since the start. finished != 0: the final state (100% when the
 * total is known, and the total time). Returns a new bundle, or NULL (error set) on OOM. */
json_t *lp_display_progress(const char *label, double done, double total, double elapsed_s,
                            int finished);

/* Appends "mm:ss" or "h:mm:ss" for t seconds ("?" when t is not finite or negative). Used by
 * the progress bar; exposed for tests. */
void lp_progress_format_time(char *buf, size_t cap, double t);

#endif
