/* Reductions over one dim (sum, mean, max, min, L2 norm), argmax, top-k of rows (a bounded
 * min-heap, O(C log k)), and row-wise cosine similarity, on the CPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "ops_impl.h"

// inp is (outer,n,inner), out is (outer,inner)
static int reduce_forward(float *out, const float *inp, int64_t outer, int64_t n, int64_t inner, int op)
{
    long chunk = lp_chunk_rows((double)(n * inner));
    for (int64_t o = 0; o < outer; o++) {
        if (o % chunk == 0 && lp_interrupt_check() < 0)
            return -1;
        const float *x = inp + o * n * inner;
        float *y = out + o * inner;
        if (inner == 1) { /* contiguous row: double accumulator */
            double s = (op == LP_REDUCE_MAX || op == LP_REDUCE_MIN) ? x[0] : 0.0;
            for (int64_t i = 0; i < n; i++) {
                double v = x[i];
                if (op == LP_REDUCE_MAX)
                    s = v > s ? v : s;
                else if (op == LP_REDUCE_MIN)
                    s = v < s ? v : s;
                else
                    s += op == LP_REDUCE_NORM ? v * v : v;
            }
            y[0] = (float)(op == LP_REDUCE_MEAN ? s / (double)n : op == LP_REDUCE_NORM ? sqrt(s) : s);
            continue;
        }
        /* strided: accumulate whole rows of length inner */
        memcpy(y, x, (size_t)inner * sizeof(float));
        if (op == LP_REDUCE_NORM)
            for (int64_t j = 0; j < inner; j++)
                y[j] *= y[j];
        for (int64_t i = 1; i < n; i++) {
            const float *r = x + i * inner;
            switch (op) {
            case LP_REDUCE_MAX: for (int64_t j = 0; j < inner; j++) y[j] = r[j] > y[j] ? r[j] : y[j]; break;
            case LP_REDUCE_MIN: for (int64_t j = 0; j < inner; j++) y[j] = r[j] < y[j] ? r[j] : y[j]; break;
            case LP_REDUCE_NORM: for (int64_t j = 0; j < inner; j++) y[j] += r[j] * r[j]; break;
            default: for (int64_t j = 0; j < inner; j++) y[j] += r[j]; break;
            }
        }
        if (op == LP_REDUCE_MEAN)
            for (int64_t j = 0; j < inner; j++)
                y[j] /= (float)n;
        if (op == LP_REDUCE_NORM)
            for (int64_t j = 0; j < inner; j++)
                y[j] = sqrtf(y[j]);
    }
    return 0;
}

static int argmax_forward(int32_t *idx, const float *inp, int64_t outer, int64_t n, int64_t inner)
{
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            const float *x = inp + o * n * inner + j;
            int64_t best = 0;
            for (int64_t i = 1; i < n; i++)
                if (x[i * inner] > x[best * inner])
                    best = i;
            idx[o * inner + j] = (int32_t)best;
        }
    return 0;
}

/* a before b in top-k order: larger value, then lower index */
static inline int before(float va, int32_t ia, float vb, int32_t ib) { return va > vb || (va == vb && ia < ib); }

static void sift_down(float *hv, int32_t *hi, int64_t k, int64_t i)
{
    for (;;) { /* min-heap on "before": the root is the entry that comes last */
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < k && before(hv[m], hi[m], hv[l], hi[l]))
            m = l;
        if (r < k && before(hv[m], hi[m], hv[r], hi[r]))
            m = r;
        if (m == i)
            return;
        float tv = hv[i];
        int32_t ti = hi[i];
        hv[i] = hv[m], hi[i] = hi[m], hv[m] = tv, hi[m] = ti;
        i = m;
    }
}

// inp is (R,C); vals, idx are (R,k), descending
static int topk_forward(float *vals, int32_t *idx, const float *inp, int64_t R, int64_t C, int64_t k)
{
    if (k < 0 || k > C)
        return lp_set_error("topk: k = %lld with rows of %lld", (long long)k, (long long)C);
    long chunk = lp_chunk_rows((double)C * 4);
    for (int64_t r = 0; r < R; r++) {
        if (r % chunk == 0 && lp_interrupt_check() < 0)
            return -1;
        const float *x = inp + r * C;
        float *hv = vals + r * k;
        int32_t *hi = idx + r * k;
        if (k == 0)
            continue;
        for (int64_t i = 0; i < k; i++)
            hv[i] = x[i], hi[i] = (int32_t)i;
        for (int64_t i = k / 2 - 1; i >= 0; i--)
            sift_down(hv, hi, k, i);
        for (int64_t i = k; i < C; i++)
            if (before(x[i], (int32_t)i, hv[0], hi[0])) {
                hv[0] = x[i], hi[0] = (int32_t)i;
                sift_down(hv, hi, k, 0);
            }
        /* heap sort: repeatedly move the last-in-order root to the end */
        for (int64_t n = k - 1; n > 0; n--) {
            float tv = hv[0];
            int32_t ti = hi[0];
            hv[0] = hv[n], hi[0] = hi[n], hv[n] = tv, hi[n] = ti;
            sift_down(hv, hi, n, 0);
        }
    }
    return 0;
}

// a, b are (R,C); out is (R)
static int cosine_forward(float *out, const float *a, const float *b, int64_t R, int64_t C, float eps)
{
    for (int64_t r = 0; r < R; r++) {
        const float *x = a + r * C, *y = b + r * C;
        float d = 0, nx = 0, ny = 0;
        for (int64_t i = 0; i < C; i++) {
            d += x[i] * y[i];
            nx += x[i] * x[i];
            ny += y[i] * y[i];
        }
        float den = sqrtf(nx) * sqrtf(ny);
        out[r] = d / (den > eps ? den : eps);
    }
    return 0;
}

void lp_cpu_fill_reduce(lp_ops *t)
{
    t->reduce_forward = reduce_forward;
    t->argmax_forward = argmax_forward;
    t->topk_forward = topk_forward;
    t->cosine_forward = cosine_forward;
}
