/* Reference elementwise ops: one flat loop over the multi-index, offsets recomputed. */
#include "ops_impl.h"

static int64_t offset_of(int64_t e, int ndim, const int64_t *shape, const int64_t *strides)
{
    int64_t off = 0;
    for (int i = ndim - 1; i >= 0; i--) {
        off += (e % shape[i]) * strides[i];
        e /= shape[i];
    }
    return off;
}

static int binary_forward(float *out, const float *a, const float *b, int op, int ndim, const int64_t *shape,
                          const int64_t *sa, const int64_t *sb)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    for (int64_t e = 0; e < n; e++) {
        double x = a[offset_of(e, ndim, shape, sa)], y = b[offset_of(e, ndim, shape, sb)];
        double r = op == LP_BIN_ADD ? x + y : op == LP_BIN_SUB ? x - y : op == LP_BIN_MUL ? x * y : x / y;
        out[e] = (float)r;
    }
    return 0;
}

static int affine_forward(float *out, const float *a, float alpha, float beta, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)((double)a[i] * alpha + beta);
    return 0;
}

static int strided_copy(float *out, const float *inp, int ndim, const int64_t *shape, const int64_t *strides)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    for (int64_t e = 0; e < n; e++)
        out[e] = inp[offset_of(e, ndim, shape, strides)];
    return 0;
}

static int fill(float *out, float value, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = value;
    return 0;
}

void lp_ref_fill_elementwise(lp_ops *t)
{
    t->binary_forward = binary_forward;
    t->affine_forward = affine_forward;
    t->strided_copy = strided_copy;
    t->fill = fill;
}
