/* Helpers of the dictionary file tests: temporary folders, random dictionaries, exact tensor
 * comparison, file surgery. */
#ifndef LP_TEST_DICT_FIXTURES_H
#define LP_TEST_DICT_FIXTURES_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dict/sae.h"
#include "rng.h"

/* A new empty folder under /tmp (caller rm -rf's it with rmtree). */
static inline char *tmpdir(void)
{
    char *d = strdup("/tmp/loupe-dict-XXXXXX");
    cr_assert_not_null(mkdtemp(d));
    return d;
}

static inline void rmtree(char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    cr_assert_eq(system(cmd), 0);
    free(d);
}

static inline void fill(lp_tensor *t, lp_rng *g)
{
    for (int64_t i = 0; t && i < lp_tensor_numel(t); i++)
        t->data[i] = (float)lp_rng_normal(g);
}

/* Every tensor random (thresholds positive). */
static inline void randomise(lp_sae *s, uint64_t seed)
{
    lp_rng g;
    lp_rng_seed(&g, seed);
    fill(s->W_enc, &g), fill(s->W_dec, &g), fill(s->b_enc, &g), fill(s->b_dec, &g), fill(s->W_skip, &g);
    if (s->threshold)
        for (int i = 0; i < s->cfg.d_sae; i++)
            s->threshold->data[i] = 0.1f + (float)lp_rng_uniform(&g);
}

/* Bit-identical tensors (both NULL counts as equal). */
static inline void same(const lp_tensor *a, const lp_tensor *b, const char *what)
{
    cr_assert_eq(a == NULL, b == NULL, "%s: one is missing", what);
    if (!a)
        return;
    cr_assert_eq(a->ndim, b->ndim, "%s: ndim", what);
    for (int d = 0; d < a->ndim; d++)
        cr_assert_eq(a->shape[d], b->shape[d], "%s: dim %d", what, d);
    cr_assert_eq(memcmp(a->data, b->data, (size_t)lp_tensor_numel(a) * 4), 0, "%s: values differ", what);
}

static inline void write_text(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f, "%s", p);
    fputs(text, f);
    fclose(f);
}

static inline char *read_all(const char *dir, const char *name, size_t *n)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    cr_assert_not_null(f, "%s", p);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    cr_assert_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    b[sz] = 0;
    *n = (size_t)sz;
    return b;
}

/* Cuts the file to n bytes. */
static inline void truncate_to(const char *dir, const char *name, long n)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    cr_assert_eq(truncate(p, n), 0);
}

#endif
