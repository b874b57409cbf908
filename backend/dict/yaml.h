/* A small YAML subset: what circuit-tracer's config.yaml files use (one top-level mapping of
 * plain, single- or double-quoted scalars, block sequences "- item" and flow sequences
 * "[a, b]" of scalars, comments, "---"). A value that is a nested mapping is accepted and
 * skipped (lp_yaml_get reports it as absent). Anything else (anchors, tags, block scalars,
 * multi-line flow collections, tabs for indentation) is refused with the line number.
 *
 *   lp_yaml *y = lp_yaml_parse(text, n, "dir/config.yaml");
 *   const char *kind = lp_yaml_get(y, "model_kind");          // NULL when absent or a list
 *   size_t n; const char *const *files = lp_yaml_list(y, "transcoders", &n);
 *   lp_yaml_free(y);
 *
 * Ownership: the lp_yaml owns every string; pointers returned are borrowed until free.
 * Errors: NULL with "<label>:<line>: <what>" (LP_ERR_FORMAT), LP_ERR_NOMEM on no memory.
 */
#ifndef LP_DICT_YAML_H
#define LP_DICT_YAML_H

#include <stddef.h>
#include <stdio.h>

typedef struct lp_yaml lp_yaml;

/* Parses text[0..n) (need not be NUL-terminated). Documents larger than 1 MiB are refused. */
lp_yaml *lp_yaml_parse(const char *text, size_t n, const char *label);
void lp_yaml_free(lp_yaml *y); /* NULL is a no-op */

/* The scalar value of key (null, ~ and an empty value give ""), or NULL when the key is
 * absent or not a scalar. */
const char *lp_yaml_get(const lp_yaml *y, const char *key);
/* The items of a sequence value (count in *n), or NULL when key is absent or not a list. */
const char *const *lp_yaml_list(const lp_yaml *y, const char *key, size_t *n);

/* Writes s as a double-quoted YAML scalar (JSON escapes: valid YAML), for writers. */
void lp_yaml_write_str(FILE *f, const char *s);

#endif
