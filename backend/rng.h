/* A seeded random generator (xoshiro256**, seeded through splitmix64) so that experiments
 * are reproducible: the same seed gives the same numbers on every machine and device
 * (tensors are filled on the CPU and copied). Uniform floats use the top 24 bits; normals
 * use Box-Muller (both values of a pair are used).
 *
 *   lp_rng g; lp_rng_seed(&g, 42);
 *   lp_tensor *w = lp_tensor_randn(2, shape, &g, 0.0f, 0.02f, LP_DEVICE_CPU);
 *
 * A generator is a plain value: no allocation, not thread-safe (one per thread).
 */
#ifndef LP_RNG_H
#define LP_RNG_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

typedef struct lp_rng {
    uint64_t s[4];
    bool has_spare; /* Box-Muller's second value */
    double spare;
} lp_rng;

void lp_rng_seed(lp_rng *g, uint64_t seed);
uint64_t lp_rng_next(lp_rng *g);
float lp_rng_uniform(lp_rng *g); /* [0, 1) */
double lp_rng_normal(lp_rng *g); /* mean 0, std 1 */
/* Uniform integer in [0, n), n >= 1 (unbiased). */
uint64_t lp_rng_below(lp_rng *g, uint64_t n);

/* The process-wide generator behind loupe.manual_seed and calls without a generator.
 * Seeded with 0 until lp_rng_seed(lp_rng_default(), n). Main thread only. Borrowed. */
lp_rng *lp_rng_default(void);

/* New tensors (new reference; NULL + error on a bad shape or allocation). g NULL means the
 * default generator. Uniform in [lo, hi); normal with the given mean and std. */
lp_tensor *lp_tensor_rand(int ndim, const int64_t *shape, lp_rng *g, float lo, float hi, lp_device dev);
lp_tensor *lp_tensor_randn(int ndim, const int64_t *shape, lp_rng *g, float mean, float std, lp_device dev);

#endif
