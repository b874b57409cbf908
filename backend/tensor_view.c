/* Views (new headers over shared storage), copies between layouts and devices, and single
 * elements. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"
#include "tensor.h"
#include "tensor_impl.h"

static lp_tensor *header_copy(const lp_tensor *t)
{
    lp_tensor *v = lp_malloc(sizeof *v, "tensor view");
    if (!v)
        return NULL;
    *v = *t;
    atomic_fetch_add(&v->storage->refs, 1);
    return v;
}

static int check_dim(const lp_tensor *t, int dim, const char *op)
{
    if (dim < 0 || dim >= t->ndim) {
        char b[128];
        return lp_set_error("%s: dim %d out of range for shape %s", op, dim, lp_tensor_shape_str(t, b, sizeof b));
    }
    return 0;
}

lp_tensor *lp_tensor_alias(const lp_tensor *t) { return header_copy(t); }

lp_tensor *lp_tensor_slice(const lp_tensor *t, int dim, int64_t start, int64_t stop, int64_t step)
{
    if (check_dim(t, dim, "slice") < 0)
        return NULL;
    int64_t n = t->shape[dim];
    if (step < 1 || start < 0 || stop < start || stop > n) {
        char b[128];
        lp_set_error("slice: range %lld:%lld:%lld out of range for dim %d of shape %s", (long long)start,
                     (long long)stop, (long long)step, dim, lp_tensor_shape_str(t, b, sizeof b));
        return NULL;
    }
    lp_tensor *v = header_copy(t);
    if (!v)
        return NULL;
    v->shape[dim] = (stop - start + step - 1) / step;
    if (v->shape[dim] > 0)
        v->data += start * t->strides[dim];
    v->strides[dim] = t->strides[dim] * step;
    return v;
}

lp_tensor *lp_tensor_select(const lp_tensor *t, int dim, int64_t index)
{
    if (check_dim(t, dim, "select") < 0)
        return NULL;
    if (index < 0 || index >= t->shape[dim]) {
        char b[128];
        lp_set_error("index %lld out of range for dim %d of shape %s", (long long)index, dim,
                     lp_tensor_shape_str(t, b, sizeof b));
        return NULL;
    }
    lp_tensor *v = header_copy(t);
    if (!v)
        return NULL;
    v->data += index * t->strides[dim];
    for (int i = dim; i < t->ndim - 1; i++) {
        v->shape[i] = t->shape[i + 1];
        v->strides[i] = t->strides[i + 1];
    }
    v->ndim--;
    return v;
}

lp_tensor *lp_tensor_transpose(const lp_tensor *t, int d0, int d1)
{
    if (check_dim(t, d0, "transpose") < 0 || check_dim(t, d1, "transpose") < 0)
        return NULL;
    lp_tensor *v = header_copy(t);
    if (!v)
        return NULL;
    v->shape[d0] = t->shape[d1];
    v->shape[d1] = t->shape[d0];
    v->strides[d0] = t->strides[d1];
    v->strides[d1] = t->strides[d0];
    return v;
}

lp_tensor *lp_tensor_permute(const lp_tensor *t, const int *perm)
{
    int seen[LP_MAX_DIMS] = {0};
    for (int i = 0; i < t->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= t->ndim || seen[perm[i]]++) {
            char b[128];
            lp_set_error("permute: not a permutation of the %d dims of shape %s", t->ndim,
                         lp_tensor_shape_str(t, b, sizeof b));
            return NULL;
        }
    }
    lp_tensor *v = header_copy(t);
    if (!v)
        return NULL;
    for (int i = 0; i < t->ndim; i++) {
        v->shape[i] = t->shape[perm[i]];
        v->strides[i] = t->strides[perm[i]];
    }
    return v;
}

lp_tensor *lp_tensor_reshape(const lp_tensor *t, int ndim, const int64_t *shape)
{
    char b1[128], b2[128];
    if (ndim < 0 || ndim > LP_MAX_DIMS) {
        lp_set_error("reshape: %d dims (at most %d)", ndim, LP_MAX_DIMS);
        return NULL;
    }
    int64_t sh[LP_MAX_DIMS], known = 1, numel = lp_tensor_numel(t);
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (shape[i] == -1 && infer < 0)
            infer = i;
        else if (shape[i] < 0)
            goto bad;
        else
            known *= shape[i];
    }
    if (infer >= 0) {
        if (known == 0 || numel % known)
            goto bad;
        sh[infer] = numel / known;
    } else if (known != numel) {
        goto bad;
    }
    lp_tensor *src = lp_tensor_contiguous(t);
    if (!src)
        return NULL;
    src->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        src->shape[i] = sh[i];
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        src->strides[i] = s;
        s *= sh[i] > 0 ? sh[i] : 1;
    }
    return src;
bad:
    lp_set_error("reshape: cannot reshape %s (%lld elements) to %s", lp_tensor_shape_str(t, b1, sizeof b1),
                 (long long)numel, lp_shape_str(ndim, shape, b2, sizeof b2));
    return NULL;
}

lp_tensor *lp_tensor_unsqueeze(const lp_tensor *t, int dim)
{
    if (dim < 0 || dim > t->ndim || t->ndim == LP_MAX_DIMS) {
        char b[128];
        lp_set_error("unsqueeze: dim %d out of range for shape %s", dim, lp_tensor_shape_str(t, b, sizeof b));
        return NULL;
    }
    lp_tensor *v = header_copy(t);
    if (!v)
        return NULL;
    for (int i = t->ndim; i > dim; i--) {
        v->shape[i] = t->shape[i - 1];
        v->strides[i] = t->strides[i - 1];
    }
    v->shape[dim] = 1;
    v->strides[dim] = dim < t->ndim ? t->strides[dim] * t->shape[dim] : 1;
    v->ndim++;
    return v;
}

lp_tensor *lp_tensor_expand(const lp_tensor *t, int ndim, const int64_t *shape)
{
    char b1[128], b2[128];
    if (ndim < t->ndim || ndim > LP_MAX_DIMS)
        goto bad;
    lp_tensor *v = header_copy(t);
    if (!v)
        return NULL;
    v->ndim = ndim;
    for (int i = ndim - 1, j = t->ndim - 1; i >= 0; i--, j--) {
        int64_t have = j >= 0 ? t->shape[j] : 1, st = j >= 0 ? t->strides[j] : 0;
        if (have == shape[i]) {
            v->shape[i] = have;
            v->strides[i] = st;
        } else if (have == 1) {
            v->shape[i] = shape[i];
            v->strides[i] = 0;
        } else {
            lp_tensor_free(v);
            goto bad;
        }
    }
    return v;
bad:
    lp_set_error("expand: shape %s does not broadcast to %s", lp_tensor_shape_str(t, b1, sizeof b1),
                 lp_shape_str(ndim, shape, b2, sizeof b2));
    return NULL;
}

/* ---- copies ---- */

/* Calls f(dst_elem, src_elem) over every index of shape, CPU memory. */
static void cpu_copy_strided(float *dst, const int64_t *ds, const float *src, const int64_t *ss, int ndim,
                             const int64_t *shape)
{
    int64_t idx[LP_MAX_DIMS] = {0}, n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    const float *s = src;
    float *d = dst;
    for (int64_t e = 0; e < n; e++) {
        *d = *s;
        for (int i = ndim - 1; i >= 0; i--) {
            if (++idx[i] < shape[i]) {
                s += ss[i];
                d += ds[i];
                break;
            }
            s -= ss[i] * (shape[i] - 1);
            d -= ds[i] * (shape[i] - 1);
            idx[i] = 0;
        }
    }
}

int lp_tensor_copy_(lp_tensor *dst, const lp_tensor *src)
{
    char b1[128], b2[128];
    if (!lp_tensor_same_shape(dst, src))
        return lp_set_error("copy: shape %s into shape %s", lp_tensor_shape_str(src, b1, sizeof b1),
                            lp_tensor_shape_str(dst, b2, sizeof b2));
    if (dst->device != src->device)
        return lp_set_error("copy: tensors on different devices (%s and %s)", lp_device_name(src->device),
                            lp_device_name(dst->device));
    if (lp_tensor_numel(dst) == 0)
        return 0;
    const lp_backend *be = lp_backend_get(dst->device);
    if (!be)
        return -1;
    if (lp_tensor_is_contiguous(dst))
        return be->ops->strided_copy(dst->data, src->data, src->ndim, src->shape, src->strides);
    if (dst->device != LP_DEVICE_CPU)
        return lp_set_error("copy: writing into a non-contiguous %s tensor is not supported",
                            lp_device_name(dst->device));
    cpu_copy_strided(dst->data, dst->strides, src->data, src->strides, src->ndim, src->shape);
    return 0;
}

int lp_tensor_fill_(lp_tensor *t, float value)
{
    int64_t n = lp_tensor_numel(t);
    if (n == 0)
        return 0;
    const lp_backend *be = lp_backend_get(t->device);
    if (!be)
        return -1;
    if (lp_tensor_is_contiguous(t))
        return be->ops->fill(t->data, value, (size_t)n);
    if (t->device != LP_DEVICE_CPU)
        return lp_set_error("fill: non-contiguous %s tensor is not supported", lp_device_name(t->device));
    int64_t zero[LP_MAX_DIMS] = {0};
    cpu_copy_strided(t->data, t->strides, &value, zero, t->ndim, t->shape);
    return 0;
}

lp_tensor *lp_tensor_contiguous(const lp_tensor *t)
{
    if (lp_tensor_is_contiguous(t))
        return header_copy(t);
    return lp_tensor_clone(t);
}

lp_tensor *lp_tensor_clone(const lp_tensor *t)
{
    lp_tensor *c = lp_tensor_empty_for("copy", t->ndim, t->shape, t->device);
    if (c && lp_tensor_copy_(c, t) < 0) {
        lp_tensor_free(c);
        return NULL;
    }
    return c;
}

int lp_tensor_to_host(const lp_tensor *t, float *out)
{
    int64_t n = lp_tensor_numel(t);
    if (n == 0)
        return 0;
    if (t->device == LP_DEVICE_CPU) {
        if (lp_tensor_is_contiguous(t))
            memcpy(out, t->data, (size_t)n * sizeof(float));
        else
            lp_cpu_ops()->strided_copy(out, t->data, t->ndim, t->shape, t->strides);
        return 0;
    }
    lp_tensor *c = lp_tensor_contiguous(t);
    if (!c)
        return -1;
    const lp_backend *be = lp_backend_get(t->device);
    int rc = be ? be->to_host(out, c->data, (size_t)n * sizeof(float)) : -1;
    lp_tensor_free(c);
    return rc;
}

lp_tensor *lp_tensor_to(const lp_tensor *t, lp_device dev)
{
    if (t->device == dev)
        return header_copy(t);
    const lp_backend *dst_be = lp_backend_get(dev);
    if (!dst_be)
        return NULL;
    lp_tensor *out = lp_tensor_empty_for("to", t->ndim, t->shape, dev);
    if (!out)
        return NULL;
    size_t nbytes = (size_t)lp_tensor_numel(t) * sizeof(float);
    int rc = 0;
    if (nbytes == 0) {
        rc = 0;
    } else if (dev == LP_DEVICE_CPU) {
        rc = lp_tensor_to_host(t, out->data);
    } else {
        lp_tensor *c = lp_tensor_contiguous(t); /* on the CPU */
        rc = c ? dst_be->to_device(out->data, c->data, nbytes) : -1;
        lp_tensor_free(c);
    }
    if (rc < 0) {
        lp_tensor_free(out);
        return NULL;
    }
    return out;
}

/* ---- elements ---- */

static int element_ptr(const lp_tensor *t, const int64_t *idx, float **p)
{
    int64_t off = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (idx[i] < 0 || idx[i] >= t->shape[i]) {
            char b[128];
            return lp_set_error("index %lld out of range for dim %d of shape %s", (long long)idx[i], i,
                                lp_tensor_shape_str(t, b, sizeof b));
        }
        off += idx[i] * t->strides[i];
    }
    *p = t->data + off;
    return 0;
}

int lp_tensor_get(const lp_tensor *t, const int64_t *idx, float *out)
{
    float *p;
    if (element_ptr(t, idx, &p) < 0)
        return -1;
    if (t->device == LP_DEVICE_CPU) {
        *out = *p;
        return 0;
    }
    const lp_backend *be = lp_backend_get(t->device);
    return be ? be->to_host(out, p, sizeof(float)) : -1;
}

int lp_tensor_set(lp_tensor *t, const int64_t *idx, float value)
{
    float *p;
    if (element_ptr(t, idx, &p) < 0)
        return -1;
    if (t->device == LP_DEVICE_CPU) {
        *p = value;
        return 0;
    }
    const lp_backend *be = lp_backend_get(t->device);
    return be ? be->to_device(p, &value, sizeof(float)) : -1;
}

int lp_tensor_item(const lp_tensor *t, float *out)
{
    if (lp_tensor_numel(t) != 1) {
        char b[128];
        return lp_set_error("item: tensor of shape %s has %lld elements, not 1", lp_tensor_shape_str(t, b, sizeof b),
                            (long long)lp_tensor_numel(t));
    }
    int64_t idx[LP_MAX_DIMS] = {0};
    return lp_tensor_get(t, idx, out);
}
