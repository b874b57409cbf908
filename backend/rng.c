#include "rng.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void lp_rng_seed(lp_rng *g, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        g->s[i] = splitmix64(&seed);
    g->has_spare = false;
    g->spare = 0.0;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t lp_rng_next(lp_rng *g)
{
    uint64_t *s = g->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float lp_rng_uniform(lp_rng *g) { return (float)(lp_rng_next(g) >> 40) * (1.0f / 16777216.0f); }

double lp_rng_normal(lp_rng *g)
{
    if (g->has_spare) {
        g->has_spare = false;
        return g->spare;
    }
    /* u1 in (0, 1] so that log(u1) is finite */
    double u1 = ((double)(lp_rng_next(g) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(lp_rng_next(g) >> 11) * (1.0 / 9007199254740992.0);
    double r = sqrt(-2.0 * log(u1)), a = 2.0 * M_PI * u2;
    g->spare = r * sin(a);
    g->has_spare = true;
    return r * cos(a);
}

uint64_t lp_rng_below(lp_rng *g, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n, x;
    do
        x = lp_rng_next(g);
    while (x >= limit);
    return x % n;
}

lp_rng *lp_rng_default(void)
{
    static lp_rng g;
    static int seeded;
    if (!seeded) {
        lp_rng_seed(&g, 0);
        seeded = 1;
    }
    return &g;
}

static lp_tensor *fill_random(int ndim, const int64_t *shape, lp_rng *g, float a, float b, int normal,
                              lp_device dev)
{
    if (!g)
        g = lp_rng_default();
    lp_tensor *h = lp_tensor_empty_for(normal ? "randn" : "rand", ndim, shape, LP_DEVICE_CPU);
    if (!h)
        return NULL;
    int64_t n = lp_tensor_numel(h);
    for (int64_t i = 0; i < n; i++)
        h->data[i] = normal ? (float)(a + b * lp_rng_normal(g)) : a + (b - a) * lp_rng_uniform(g);
    if (dev == LP_DEVICE_CPU)
        return h;
    lp_tensor *d = lp_tensor_to(h, dev);
    lp_tensor_free(h);
    return d;
}

lp_tensor *lp_tensor_rand(int ndim, const int64_t *shape, lp_rng *g, float lo, float hi, lp_device dev)
{
    return fill_random(ndim, shape, g, lo, hi, 0, dev);
}

lp_tensor *lp_tensor_randn(int ndim, const int64_t *shape, lp_rng *g, float mean, float std, lp_device dev)
{
    return fill_random(ndim, shape, g, mean, std, 1, dev);
}
