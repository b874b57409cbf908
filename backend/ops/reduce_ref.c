/* Reference reductions: straightforward double-precision loops; top-k by a full sort. */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "ops_impl.h"

static int reduce_forward(float *out, const float *inp, int64_t outer, int64_t n, int64_t inner, int op)
{
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            const float *x = inp + o * n * inner + j;
            double s = 0, m = x[0];
            for (int64_t i = 0; i < n; i++) {
                double v = x[i * inner];
                s += op == LP_REDUCE_NORM ? v * v : v;
                if (op == LP_REDUCE_MAX && v > m)
                    m = v;
                if (op == LP_REDUCE_MIN && v < m)
                    m = v;
            }
            double r = op == LP_REDUCE_SUM ? s : op == LP_REDUCE_MEAN ? s / (double)n
                     : op == LP_REDUCE_NORM ? sqrt(s) : m;
            out[o * inner + j] = (float)r;
        }
    return 0;
}

static int argmax_forward(int32_t *idx, const float *inp, int64_t outer, int64_t n, int64_t inner)
{
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            int64_t best = 0;
            for (int64_t i = 0; i < n; i++)
                if (inp[(o * n + i) * inner + j] > inp[(o * n + best) * inner + j])
                    best = i;
            idx[o * inner + j] = (int32_t)best;
        }
    return 0;
}

static const float *sort_row;

static int cmp(const void *pa, const void *pb)
{
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    if (sort_row[a] != sort_row[b])
        return sort_row[a] > sort_row[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

static int topk_forward(float *vals, int32_t *idx, const float *inp, int64_t R, int64_t C, int64_t k)
{
    if (k < 0 || k > C)
        return lp_set_error("topk: k = %lld with rows of %lld", (long long)k, (long long)C);
    int32_t *order = lp_malloc((size_t)(C ? C : 1) * sizeof *order, "topk scratch");
    if (!order)
        return lp_set_error_code(LP_ERR_NOMEM, "cannot allocate topk scratch");
    for (int64_t r = 0; r < R; r++) {
        for (int64_t i = 0; i < C; i++)
            order[i] = (int32_t)i;
        sort_row = inp + r * C;
        qsort(order, (size_t)C, sizeof *order, cmp);
        for (int64_t i = 0; i < k; i++) {
            idx[r * k + i] = order[i];
            vals[r * k + i] = sort_row[order[i]];
        }
    }
    free(order);
    return 0;
}

static int cosine_forward(float *out, const float *a, const float *b, int64_t R, int64_t C, float eps)
{
    for (int64_t r = 0; r < R; r++) {
        double d = 0, nx = 0, ny = 0;
        for (int64_t i = 0; i < C; i++) {
            d += (double)a[r * C + i] * b[r * C + i];
            nx += (double)a[r * C + i] * a[r * C + i];
            ny += (double)b[r * C + i] * b[r * C + i];
        }
        double den = sqrt(nx) * sqrt(ny);
        out[r] = (float)(d / (den > eps ? den : eps));
    }
    return 0;
}

void lp_ref_fill_reduce(lp_ops *t)
{
    t->reduce_forward = reduce_forward;
    t->argmax_forward = argmax_forward;
    t->topk_forward = topk_forward;
    t->cosine_forward = cosine_forward;
}
