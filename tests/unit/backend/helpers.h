/* Helpers for the backend tests: random arrays, tolerant comparison with a readable failure,
 * and a finite-difference gradient of a scalar function of one array. */
#ifndef LP_TEST_HELPERS_H
#define LP_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

static inline float *rand_array(lp_rng *g, size_t n, float scale)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(lp_rng_normal(g) * scale);
    return p;
}

static inline float *zeros_array(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    cr_assert_not_null(p);
    return p;
}

static inline float *copy_array(const float *src, size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    cr_assert_not_null(p);
    memcpy(p, src, n * sizeof(float));
    return p;
}

/* Asserts |got - want| <= atol + rtol * |want| everywhere; reports the worst element. */
#define assert_close(got, want, n, atol, rtol, what)                                                         \
    do {                                                                                                      \
        size_t _worst = 0;                                                                                    \
        double _excess = -1;                                                                                  \
        for (size_t _i = 0; _i < (size_t)(n); _i++) {                                                        \
            double _d = fabs((double)(got)[_i] - (double)(want)[_i]);                                         \
            double _e = _d - ((atol) + (rtol) * fabs((double)(want)[_i]));                                    \
            if (isnan((double)(got)[_i]) != isnan((double)(want)[_i]))                                        \
                _e = INFINITY;                                                                                \
            if (_e > _excess)                                                                                 \
                _excess = _e, _worst = _i;                                                                    \
        }                                                                                                     \
        cr_assert(_excess <= 0, "%s: element %zu of %zu: got %.8g, want %.8g", what, _worst, (size_t)(n),    \
                  (double)(got)[_worst], (double)(want)[_worst]);                                             \
    } while (0)

#endif
