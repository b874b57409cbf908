/* lp_softmax_row: the softmax of one row, the one every CPU attention uses: the model's fused
 * attention (model/forward_attn.c), the op table's softmax and attention (ops/attention.c) and
 * the trainer's attention (train/kernels.c). They therefore give the same patterns for the
 * same scores, and a training step computes the function a run computes.
 *
 * Written in 16-lane GCC/clang vector extensions (the lanes map to one AVX-512 register, two
 * AVX2 or four SSE ones) with exp by Cephes' range reduction and polynomial (about 1 ulp from
 * expf). Everything here is always inlined, as core/tanh_fast.h, so each caller's target and
 * optimisation options apply (forward_attn.c builds it for AVX-512, AVX2 and the baseline):
 * no vector crosses a call. The 16-lane helpers are for those callers' own kernels too. */
#ifndef LP_OPS_SOFTMAX_ROW_H
#define LP_OPS_SOFTMAX_ROW_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* vectors are never passed across a call (always inlined), so the ABI note does not apply */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wunknown-warning-option"
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef float lp_v16 __attribute__((vector_size(64), aligned(4)));
typedef int32_t lp_vi16 __attribute__((vector_size(64), aligned(4)));
typedef uint32_t lp_vu16 __attribute__((vector_size(64), aligned(4)));

#define LP_VINLINE static inline __attribute__((always_inline))

LP_VINLINE lp_v16 lp_v16_load(const float *p)
{
    lp_v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* a where m is set (all ones), else b */
LP_VINLINE lp_v16 lp_v16_sel(lp_vi16 m, lp_v16 a, lp_v16 b) { return (lp_v16)(((lp_vi16)a & m) | ((lp_vi16)b & ~m)); }

/* exp (Cephes' range reduction and polynomial, about 1 ulp); 0 below -87.3, NaN kept. */
LP_VINLINE lp_v16 lp_v16_exp(lp_v16 x)
{
    const lp_v16 zero = {0};
    lp_vi16 under = x < -87.3f, nan = x != x;
    x = lp_v16_sel(x > 88.3f, zero + 88.3f, x);
    x = lp_v16_sel(under, zero - 87.3f, x);
    lp_v16 t = x * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2^23: rounds n to an integer */
    lp_v16 n = t - 12582912.0f;
    lp_v16 r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    lp_v16 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    lp_vu16 e = ((lp_vu16)t - 0x4B400000u) << 23; /* n, from t's bits, into the exponent */
    lp_v16 y = (lp_v16)((lp_vu16)p + e);
    y = lp_v16_sel(under, zero, y);
    return lp_v16_sel(nan, x, y);
}

/* y[0..C) = softmax of scale * x over its first `valid` entries (a causal row: the keys it
 * sees); the rest become 0, and a row with valid 0 is all 0. y may be x. */
LP_VINLINE void lp_softmax_row(float *y, const float *x, int valid, int C, float scale)
{
    const lp_v16 zero = {0};
    const lp_vi16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    lp_v16 mv = zero - INFINITY;
    int j = 0;
    for (; j + 16 <= valid; j += 16) {
        lp_v16 s = lp_v16_load(x + j) * scale;
        memcpy(y + j, &s, sizeof s);
        mv = lp_v16_sel(s > mv, s, mv);
    }
    int rem = valid - j;
    lp_v16 tail = zero - INFINITY;
    if (rem) {
        float tmp[16];
        memcpy(tmp, x + j, (size_t)rem * sizeof(float));
        for (int i = rem; i < 16; i++)
            tmp[i] = 0;
        tail = lp_v16_sel(lane < rem, lp_v16_load(tmp) * scale, zero - INFINITY);
        mv = lp_v16_sel(tail > mv, tail, mv);
    }
    float m = -INFINITY;
    for (int i = 0; i < 16; i++)
        m = mv[i] > m ? mv[i] : m;
    lp_v16 sv = zero;
    for (j = 0; j + 16 <= valid; j += 16) {
        lp_v16 e = lp_v16_exp(lp_v16_load(y + j) - m);
        memcpy(y + j, &e, sizeof e);
        sv += e;
    }
    if (rem) {
        lp_v16 e = lp_v16_sel(lane < rem, lp_v16_exp(tail - m), zero);
        memcpy(y + j, &e, (size_t)rem * sizeof(float));
        sv += e;
    }
    float s = 0;
    for (int i = 0; i < 16; i++)
        s += sv[i];
    float inv = 1.0f / s;
    for (j = 0; j + 16 <= valid; j += 16) {
        lp_v16 e = lp_v16_load(y + j) * inv;
        memcpy(y + j, &e, sizeof e);
    }
    for (; j < valid; j++)
        y[j] *= inv;
    for (; j < C; j++)
        y[j] = 0.0f;
}

#endif
