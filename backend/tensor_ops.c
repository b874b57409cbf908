#include "tensor_ops.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static const char *bin_name(int op)
{
    static const char *n[] = {"add", "sub", "mul", "div"};
    return op >= 0 && op < 4 ? n[op] : "binary op";
}

static const char *reduce_name(int op)
{
    static const char *n[] = {"sum", "mean", "max", "norm", "min"};
    return op >= 0 && op < 5 ? n[op] : "reduce";
}

/* The op table for two operands on one device, or NULL with an error. */
static const lp_ops *ops_for(const char *what, const lp_tensor *a, const lp_tensor *b)
{
    if (b && a->device != b->device) {
        lp_set_error("%s: tensors on different devices (%s and %s)", what, lp_device_name(a->device),
                     lp_device_name(b->device));
        return NULL;
    }
    const lp_backend *be = lp_backend_get(a->device);
    return be ? be->ops : NULL;
}

static int norm_dim(const lp_tensor *t, int dim, const char *what)
{
    int d = dim < 0 ? dim + t->ndim : dim;
    if (d < 0 || d >= t->ndim) {
        char b[128];
        return lp_set_error("%s: dim %d out of range for shape %s", what, dim, lp_tensor_shape_str(t, b, sizeof b));
    }
    return d;
}

static int too_big(int64_t v, const char *what)
{
    return v > INT_MAX ? lp_set_error("%s: size %lld is too large", what, (long long)v) : 0;
}

/* A tensor whose last two dims are stored contiguously, either as is (*trans 0) or
 * transposed (*trans 1, the storage holds (..., cols, rows)); copies otherwise. */
static lp_tensor *matrix_operand(const lp_tensor *t, int *trans)
{
    *trans = 0;
    if (lp_tensor_is_contiguous(t))
        return lp_tensor_alias(t);
    lp_tensor *tt = lp_tensor_transpose(t, t->ndim - 1, t->ndim - 2);
    if (!tt)
        return NULL;
    int ok = lp_tensor_is_contiguous(tt);
    lp_tensor_free(tt);
    if (ok) {
        *trans = 1;
        return lp_tensor_alias(t);
    }
    return lp_tensor_contiguous(t);
}

lp_tensor *lp_tensor_matmul(const lp_tensor *a, const lp_tensor *b)
{
    char s1[128], s2[128];
    const lp_ops *ops = ops_for("matmul", a, b);
    if (!ops)
        return NULL;
    if (a->ndim == 0 || b->ndim == 0) {
        lp_set_error("matmul: operands must have at least 1 dim (shapes %s and %s)",
                     lp_tensor_shape_str(a, s1, sizeof s1), lp_tensor_shape_str(b, s2, sizeof s2));
        return NULL;
    }
    lp_tensor *a2 = a->ndim == 1 ? lp_tensor_unsqueeze(a, 0) : lp_tensor_alias(a);
    lp_tensor *b2 = b->ndim == 1 ? lp_tensor_unsqueeze(b, 1) : lp_tensor_alias(b);
    lp_tensor *ac = NULL, *bc = NULL, *out = NULL;
    if (!a2 || !b2)
        goto done;
    int na = a2->ndim, nb = b2->ndim;
    int64_t M = a2->shape[na - 2], K = a2->shape[na - 1], N = b2->shape[nb - 1], batch = 1;
    if (b2->shape[nb - 2] != K) {
        lp_set_error("matmul: shapes %s and %s do not match (%lld != %lld)", lp_tensor_shape_str(a, s1, sizeof s1),
                     lp_tensor_shape_str(b, s2, sizeof s2), (long long)K, (long long)b2->shape[nb - 2]);
        goto done;
    }
    int share = nb == 2;
    if (!share) {
        int same = na == nb;
        for (int i = 0; same && i < na - 2; i++)
            same = a2->shape[i] == b2->shape[i];
        if (!same) {
            lp_set_error("matmul: batch dims of shapes %s and %s differ", lp_tensor_shape_str(a, s1, sizeof s1),
                         lp_tensor_shape_str(b, s2, sizeof s2));
            goto done;
        }
    }
    for (int i = 0; i < na - 2; i++)
        batch *= a2->shape[i];
    if (too_big(M, "matmul") || too_big(K, "matmul") || too_big(N, "matmul") || too_big(batch, "matmul"))
        goto done;
    int ta, tb;
    ac = matrix_operand(a2, &ta);
    bc = matrix_operand(b2, &tb);
    if (!ac || !bc)
        goto done;
    int64_t shape[LP_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < na - 2; i++)
        shape[nd++] = a2->shape[i];
    if (a->ndim > 1)
        shape[nd++] = M;
    if (b->ndim > 1)
        shape[nd++] = N;
    out = lp_tensor_empty_for("matmul", nd, shape, a->device);
    if (!out)
        goto done;
    int flags = (ta ? LP_TRANS_A : 0) | (tb ? LP_TRANS_B : 0) | (share ? LP_SHARE_B : 0);
    if (ops->matmul_forward(out->data, ac->data, bc->data, NULL, (int)batch, (int)M, (int)K, (int)N, flags) < 0) {
        lp_tensor_free(out);
        out = NULL;
    }
done:
    lp_tensor_free(a2);
    lp_tensor_free(b2);
    lp_tensor_free(ac);
    lp_tensor_free(bc);
    return out;
}

lp_tensor *lp_tensor_binary(const lp_tensor *a, const lp_tensor *b, int op)
{
    char s1[128], s2[128];
    const lp_ops *ops = ops_for(bin_name(op), a, b);
    if (!ops)
        return NULL;
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t shape[LP_MAX_DIMS];
    for (int i = nd - 1, ia = a->ndim - 1, ib = b->ndim - 1; i >= 0; i--, ia--, ib--) {
        int64_t x = ia >= 0 ? a->shape[ia] : 1, y = ib >= 0 ? b->shape[ib] : 1;
        if (x != y && x != 1 && y != 1) {
            lp_set_error("%s: shapes %s and %s do not broadcast", bin_name(op), lp_tensor_shape_str(a, s1, sizeof s1),
                         lp_tensor_shape_str(b, s2, sizeof s2));
            return NULL;
        }
        shape[i] = x == 1 ? y : x;
    }
    lp_tensor *ea = lp_tensor_expand(a, nd, shape), *eb = lp_tensor_expand(b, nd, shape), *out = NULL;
    if (ea && eb)
        out = lp_tensor_empty_for(bin_name(op), nd, shape, a->device);
    if (out && lp_tensor_numel(out) &&
        ops->binary_forward(out->data, ea->data, eb->data, op, nd, shape, ea->strides, eb->strides) < 0) {
        lp_tensor_free(out);
        out = NULL;
    }
    lp_tensor_free(ea);
    lp_tensor_free(eb);
    return out;
}

lp_tensor *lp_tensor_binary_scalar(const lp_tensor *a, float s, int op, int scalar_first)
{
    lp_tensor *st = lp_tensor_from_data(0, NULL, &s, a->device);
    if (!st)
        return NULL;
    lp_tensor *out = scalar_first ? lp_tensor_binary(st, a, op) : lp_tensor_binary(a, st, op);
    lp_tensor_free(st);
    return out;
}

/* outer/n/inner of a reduction over dim (or over everything). */
static int split_dims(const lp_tensor *t, int *dim, const char *what, int64_t *outer, int64_t *n, int64_t *inner)
{
    if (*dim == LP_ALL_DIMS) {
        *outer = 1, *n = lp_tensor_numel(t), *inner = 1;
    } else {
        if ((*dim = norm_dim(t, *dim, what)) < 0)
            return -1;
        *outer = 1, *inner = 1, *n = t->shape[*dim];
        for (int i = 0; i < *dim; i++)
            *outer *= t->shape[i];
        for (int i = *dim + 1; i < t->ndim; i++)
            *inner *= t->shape[i];
    }
    if (*n == 0) {
        char b[128];
        return lp_set_error("%s: reducing an empty dim of shape %s", what, lp_tensor_shape_str(t, b, sizeof b));
    }
    return 0;
}

static int reduced_shape(const lp_tensor *t, int dim, int keepdim, int64_t *shape)
{
    if (dim == LP_ALL_DIMS)
        return 0;
    int nd = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i != dim)
            shape[nd++] = t->shape[i];
        else if (keepdim)
            shape[nd++] = 1;
    }
    return nd;
}

lp_tensor *lp_tensor_reduce(const lp_tensor *t, int dim, int op, int keepdim)
{
    const char *what = reduce_name(op);
    const lp_ops *ops = ops_for(what, t, NULL);
    int64_t outer, n, inner, shape[LP_MAX_DIMS];
    if (!ops || split_dims(t, &dim, what, &outer, &n, &inner) < 0)
        return NULL;
    lp_tensor *c = lp_tensor_contiguous(t);
    lp_tensor *out = c ? lp_tensor_empty_for(what, reduced_shape(t, dim, keepdim, shape), shape, t->device) : NULL;
    if (out && ops->reduce_forward(out->data, c->data, outer, n, inner, op) < 0) {
        lp_tensor_free(out);
        out = NULL;
    }
    lp_tensor_free(c);
    return out;
}

/* int32 results of a device op -> a new f32 tensor of `shape` on dev. */
static lp_tensor *indices_tensor(const lp_backend *be, const int32_t *dev_idx, int nd, const int64_t *shape,
                                 int64_t count, lp_device dev)
{
    int32_t *h = lp_malloc((size_t)count * sizeof(int32_t) + 1, "indices");
    float *f = lp_malloc((size_t)count * sizeof(float) + 1, "indices");
    lp_tensor *out = NULL;
    if (h && f && be->to_host(h, dev_idx, (size_t)count * sizeof(int32_t)) == 0) {
        for (int64_t i = 0; i < count; i++)
            f[i] = (float)h[i];
        out = lp_tensor_from_data(nd, shape, f, dev);
    }
    free(h);
    free(f);
    return out;
}

lp_tensor *lp_tensor_argmax(const lp_tensor *t, int dim)
{
    const lp_ops *ops = ops_for("argmax", t, NULL);
    int64_t outer, n, inner, shape[LP_MAX_DIMS];
    if (!ops || split_dims(t, &dim, "argmax", &outer, &n, &inner) < 0)
        return NULL;
    const lp_backend *be = lp_backend_get(t->device);
    lp_tensor *c = lp_tensor_contiguous(t), *out = NULL;
    int32_t *idx = c ? be->alloc((size_t)(outer * inner) * sizeof(int32_t) + 4, "argmax") : NULL;
    if (idx && ops->argmax_forward(idx, c->data, outer, n, inner) == 0)
        out = indices_tensor(be, idx, reduced_shape(t, dim, 0, shape), shape, outer * inner, t->device);
    be->free(idx);
    lp_tensor_free(c);
    return out;
}

int lp_tensor_topk(const lp_tensor *t, int64_t k, lp_tensor **vals, lp_tensor **idx)
{
    char b[128];
    *vals = *idx = NULL;
    const lp_ops *ops = ops_for("topk", t, NULL);
    if (!ops)
        return -1;
    if (t->ndim == 0 || k < 0 || k > t->shape[t->ndim - 1])
        return lp_set_error("topk: k = %lld out of range for shape %s", (long long)k, lp_tensor_shape_str(t, b, sizeof b));
    int64_t C = t->shape[t->ndim - 1], R = C ? lp_tensor_numel(t) / C : 0, shape[LP_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[t->ndim - 1] = k;
    const lp_backend *be = lp_backend_get(t->device);
    lp_tensor *c = lp_tensor_contiguous(t);
    lp_tensor *v = c ? lp_tensor_empty_for("topk", t->ndim, shape, t->device) : NULL;
    int32_t *ix = v ? be->alloc((size_t)(R * k) * sizeof(int32_t) + 4, "topk") : NULL;
    int rc = -1;
    if (ix && (R * k == 0 || ops->topk_forward(v->data, ix, c->data, R, C, k) == 0)) {
        *idx = indices_tensor(be, ix, t->ndim, shape, R * k, t->device);
        if (*idx) {
            *vals = v;
            v = NULL;
            rc = 0;
        }
    }
    if (ix)
        be->free(ix);
    lp_tensor_free(v);
    lp_tensor_free(c);
    return rc;
}

lp_tensor *lp_tensor_cosine(const lp_tensor *a, const lp_tensor *b)
{
    char s1[128], s2[128];
    const lp_ops *ops = ops_for("cosine", a, b);
    if (!ops)
        return NULL;
    if (!lp_tensor_same_shape(a, b) || a->ndim == 0) {
        lp_set_error("cosine: shapes %s and %s differ", lp_tensor_shape_str(a, s1, sizeof s1),
                     lp_tensor_shape_str(b, s2, sizeof s2));
        return NULL;
    }
    int64_t C = a->shape[a->ndim - 1], R = C ? lp_tensor_numel(a) / C : 0;
    lp_tensor *ac = lp_tensor_contiguous(a), *bc = lp_tensor_contiguous(b), *out = NULL;
    if (ac && bc)
        out = lp_tensor_empty_for("cosine", a->ndim - 1, a->shape, a->device);
    if (out && R && ops->cosine_forward(out->data, ac->data, bc->data, R, C, 1e-8f) < 0) {
        lp_tensor_free(out);
        out = NULL;
    }
    lp_tensor_free(ac);
    lp_tensor_free(bc);
    return out;
}

lp_tensor *lp_tensor_softmax(const lp_tensor *t)
{
    const lp_ops *ops = ops_for("softmax", t, NULL);
    if (!ops)
        return NULL;
    int64_t C = t->ndim ? t->shape[t->ndim - 1] : 1, R = C ? lp_tensor_numel(t) / C : 0;
    if (too_big(R, "softmax") || too_big(C, "softmax"))
        return NULL;
    lp_tensor *c = lp_tensor_contiguous(t);
    lp_tensor *out = c ? lp_tensor_empty_for("softmax", t->ndim, t->shape, t->device) : NULL;
    if (out && R && ops->softmax_forward(out->data, c->data, (int)R, 1, (int)C, 0) < 0) {
        lp_tensor_free(out);
        out = NULL;
    }
    lp_tensor_free(c);
    return out;
}
