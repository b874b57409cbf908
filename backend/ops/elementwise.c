/* Elementwise arithmetic with broadcasting, scalar affine maps, strided gathers and fills on
 * the CPU. Loops run over the innermost dim with the outer index advanced by counters. */
#include <string.h>

#include "core/interrupt.h"
#include "ops_impl.h"

static inline float apply(int op, float x, float y)
{
    switch (op) {
    case LP_BIN_ADD: return x + y;
    case LP_BIN_SUB: return x - y;
    case LP_BIN_MUL: return x * y;
    default: return x / y;
    }
}

static void inner(float *o, const float *a, const float *b, int64_t n, int64_t sa, int64_t sb, int op)
{
    if (sa == 1 && sb == 1) {
        switch (op) {
        case LP_BIN_ADD: for (int64_t i = 0; i < n; i++) o[i] = a[i] + b[i]; break;
        case LP_BIN_SUB: for (int64_t i = 0; i < n; i++) o[i] = a[i] - b[i]; break;
        case LP_BIN_MUL: for (int64_t i = 0; i < n; i++) o[i] = a[i] * b[i]; break;
        default: for (int64_t i = 0; i < n; i++) o[i] = a[i] / b[i]; break;
        }
    } else if (sa == 1 && sb == 0) {
        float y = *b;
        for (int64_t i = 0; i < n; i++)
            o[i] = apply(op, a[i], y);
    } else {
        for (int64_t i = 0; i < n; i++)
            o[i] = apply(op, a[i * sa], b[i * sb]);
    }
}

// out has `shape` (contiguous); a, b are read with strides sa, sb (0 broadcasts)
static int binary_forward(float *out, const float *a, const float *b, int op, int ndim, const int64_t *shape,
                          const int64_t *sa, const int64_t *sb)
{
    if (ndim == 0) {
        *out = apply(op, *a, *b);
        return 0;
    }
    int64_t n = shape[ndim - 1], rows = 1, idx[LP_BIN_MAX_DIMS] = {0};
    for (int i = 0; i < ndim - 1; i++)
        rows *= shape[i];
    if (n == 0 || rows == 0)
        return 0;
    long chunk = lp_chunk_rows((double)n);
    for (int64_t r = 0; r < rows; r++) {
        if (r % chunk == 0 && lp_interrupt_check() < 0)
            return -1;
        int64_t oa = 0, ob = 0;
        for (int i = 0; i < ndim - 1; i++) {
            oa += idx[i] * sa[i];
            ob += idx[i] * sb[i];
        }
        inner(out + r * n, a + oa, b + ob, n, sa[ndim - 1], sb[ndim - 1], op);
        for (int i = ndim - 2; i >= 0; i--) {
            if (++idx[i] < shape[i])
                break;
            idx[i] = 0;
        }
    }
    return 0;
}

static int affine_forward(float *out, const float *a, float alpha, float beta, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] * alpha + beta;
    return 0;
}

static int strided_copy(float *out, const float *inp, int ndim, const int64_t *shape, const int64_t *strides)
{
    if (ndim == 0) {
        *out = *inp;
        return 0;
    }
    int64_t n = shape[ndim - 1], s = strides[ndim - 1], rows = 1, idx[LP_BIN_MAX_DIMS] = {0};
    for (int i = 0; i < ndim - 1; i++)
        rows *= shape[i];
    if (n == 0 || rows == 0)
        return 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t off = 0;
        for (int i = 0; i < ndim - 1; i++)
            off += idx[i] * strides[i];
        const float *p = inp + off;
        float *o = out + r * n;
        if (s == 1)
            memcpy(o, p, (size_t)n * sizeof(float));
        else
            for (int64_t j = 0; j < n; j++)
                o[j] = p[j * s];
        for (int i = ndim - 2; i >= 0; i--) {
            if (++idx[i] < shape[i])
                break;
            idx[i] = 0;
        }
    }
    return 0;
}

static int fill(float *out, float value, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = value;
    return 0;
}

void lp_cpu_fill_elementwise(lp_ops *t)
{
    t->binary_forward = binary_forward;
    t->affine_forward = affine_forward;
    t->strided_copy = strided_copy;
    t->fill = fill;
}
