#include "tensor.h"
#include "tensor_impl.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"

/* ---- shapes ---- */

const char *lp_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (n < cap)
        n += (size_t)snprintf(buf + n, cap - n, "]");
    if (n >= cap && cap >= 4)
        memcpy(buf + cap - 4, "...", 4);
    return buf;
}

const char *lp_tensor_shape_str(const lp_tensor *t, char *buf, size_t cap)
{
    return lp_shape_str(t->ndim, t->shape, buf, cap);
}

/* numel of a shape, or -1 with an error when a dim is negative or the product overflows. */
static int64_t shape_numel(int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > LP_MAX_DIMS) {
        lp_set_error("tensor: %d dims (at most %d)", ndim, LP_MAX_DIMS);
        return -1;
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            char b[128];
            lp_set_error("tensor: negative size in shape %s", lp_shape_str(ndim, shape, b, sizeof b));
            return -1;
        }
        if (shape[i] && n > INT64_MAX / 4 / shape[i]) {
            char b[128];
            lp_set_error("tensor: shape %s is too large", lp_shape_str(ndim, shape, b, sizeof b));
            return -1;
        }
        n *= shape[i];
    }
    return n;
}

int64_t lp_tensor_numel(const lp_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

static void contiguous_strides(int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

bool lp_tensor_is_contiguous(const lp_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != s)
            return false;
        s *= t->shape[i];
    }
    return true;
}

bool lp_tensor_same_shape(const lp_tensor *a, const lp_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

int lp_tensor_storage_refs(const lp_tensor *t) { return atomic_load(&t->storage->refs); }

/* ---- construction ---- */

lp_tensor *lp_tensor_empty_for(const char *what, int ndim, const int64_t *shape, lp_device dev)
{
    int64_t n = shape_numel(ndim, shape);
    if (n < 0)
        return NULL;
    const lp_backend *be = lp_backend_get(dev);
    if (!be)
        return NULL;
    char sb[160], wb[256];
    snprintf(wb, sizeof wb, "%s of shape %s", what ? what : "tensor", lp_shape_str(ndim, shape, sb, sizeof sb));
    size_t nbytes = (size_t)n * sizeof(float);
    lp_storage *s = lp_malloc(sizeof *s, wb);
    lp_tensor *t = lp_malloc(sizeof *t, wb);
    void *data = (s && t) ? be->alloc(nbytes, wb) : NULL;
    if (!data) {
        free(s);
        free(t);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->be = be;
    s->data = data;
    s->nbytes = nbytes;
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    contiguous_strides(ndim, shape, t->strides);
    t->data = data;
    t->device = dev;
    t->storage = s;
    return t;
}

lp_tensor *lp_tensor_empty(int ndim, const int64_t *shape, lp_device dev)
{
    return lp_tensor_empty_for("tensor", ndim, shape, dev);
}

lp_tensor *lp_tensor_full(int ndim, const int64_t *shape, float value, lp_device dev)
{
    lp_tensor *t = lp_tensor_empty(ndim, shape, dev);
    if (t && lp_tensor_fill_(t, value) < 0) {
        lp_tensor_free(t);
        return NULL;
    }
    return t;
}

lp_tensor *lp_tensor_zeros(int ndim, const int64_t *shape, lp_device dev)
{
    return lp_tensor_full(ndim, shape, 0.0f, dev);
}

lp_tensor *lp_tensor_from_data(int ndim, const int64_t *shape, const float *data, lp_device dev)
{
    lp_tensor *t = lp_tensor_empty(ndim, shape, dev);
    if (!t)
        return NULL;
    size_t nbytes = (size_t)lp_tensor_numel(t) * sizeof(float);
    if (nbytes && t->storage->be->to_device(t->data, data, nbytes) < 0) {
        lp_tensor_free(t);
        return NULL;
    }
    return t;
}

lp_tensor *lp_tensor_arange(int64_t n, float start, float step, lp_device dev)
{
    float *h = lp_malloc((size_t)(n > 0 ? n : 0) * sizeof(float), "arange");
    if (!h)
        return NULL;
    for (int64_t i = 0; i < n; i++)
        h[i] = start + (float)i * step;
    int64_t shape[1] = {n};
    lp_tensor *t = lp_tensor_from_data(1, shape, h, dev);
    free(h);
    return t;
}

void lp_tensor_free(lp_tensor *t)
{
    if (!t)
        return;
    lp_storage *s = t->storage;
    if (atomic_fetch_sub(&s->refs, 1) == 1) {
        s->be->free(s->data);
        free(s);
    }
    free(t);
}

/* ---- dtype conversion ---- */

void lp_bf16_to_f32(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &u, 4);
    }
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void lp_f16_to_f32(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = half_to_float(src[i]);
}

uint16_t lp_f32_to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

uint16_t lp_f32_to_f16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t sign = (u >> 16) & 0x8000, mag = u & 0x7fffffffu;
    if (mag > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00);
    if (mag >= 0x477ff000u) /* rounds to >= 65520: infinity */
        return (uint16_t)(sign | 0x7c00);
    if (mag < 0x38800000u) { /* subnormal or zero in f16 */
        float f;
        memcpy(&f, &mag, 4);
        uint32_t m = (uint32_t)(f * 16777216.0f + 0.5f); /* f / 2^-24, rounded */
        return (uint16_t)(sign | m);
    }
    uint32_t r = mag + 0xfffu + ((mag >> 13) & 1);
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

lp_tensor *lp_tensor_from_bytes(int ndim, const int64_t *shape, lp_dtype dtype, const void *bytes,
                                lp_device dev)
{
    if (dtype == LP_DTYPE_F32) {
        int64_t n = shape_numel(ndim, shape);
        if (n < 0)
            return NULL;
        float *h = lp_malloc((size_t)n * 4, "f32 load");
        if (!h)
            return NULL;
        memcpy(h, bytes, (size_t)n * 4); /* unaligned source is fine */
        lp_tensor *t = lp_tensor_from_data(ndim, shape, h, dev);
        free(h);
        return t;
    }
    if (dtype != LP_DTYPE_F16 && dtype != LP_DTYPE_BF16) {
        lp_set_error("tensor: unknown dtype %d", (int)dtype);
        return NULL;
    }
    lp_tensor *t = lp_tensor_empty_for(dtype == LP_DTYPE_F16 ? "f16 load" : "bf16 load", ndim, shape,
                                       LP_DEVICE_CPU);
    if (!t)
        return NULL;
    size_t n = (size_t)lp_tensor_numel(t);
    const unsigned char *p = bytes;
    for (size_t i = 0; i < n; i++) {
        uint16_t v = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
        if (dtype == LP_DTYPE_F16)
            lp_f16_to_f32(&t->data[i], &v, 1);
        else
            lp_bf16_to_f32(&t->data[i], &v, 1);
    }
    if (dev == LP_DEVICE_CPU)
        return t;
    lp_tensor *d = lp_tensor_to(t, dev);
    lp_tensor_free(t);
    return d;
}
