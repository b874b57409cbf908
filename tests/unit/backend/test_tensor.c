/* lp_tensor: construction, views and shared storage, copies, conversions, RNG, errors. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/error.h"
#include "helpers.h"
#include "rng.h"
#include "tensor.h"

static lp_tensor *iota(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    lp_tensor *t = lp_tensor_arange(n, 0.0f, 1.0f, LP_DEVICE_CPU);
    cr_assert_not_null(t, "%s", lp_last_error());
    lp_tensor *r = lp_tensor_reshape(t, ndim, shape);
    lp_tensor_free(t);
    cr_assert_not_null(r, "%s", lp_last_error());
    return r;
}

static float at(const lp_tensor *t, int64_t i0, int64_t i1, int64_t i2)
{
    int64_t idx[3] = {i0, i1, i2};
    float v = -1;
    cr_assert_eq(lp_tensor_get(t, idx, &v), 0, "%s", lp_last_error());
    return v;
}

Test(tensor, zeros_has_shape_strides_and_is_contiguous)
{
    int64_t shape[3] = {2, 3, 4};
    lp_tensor *t = lp_tensor_zeros(3, shape, LP_DEVICE_CPU);
    cr_assert_not_null(t);
    cr_assert_eq(lp_tensor_numel(t), 24);
    cr_assert_eq(t->strides[0], 12);
    cr_assert_eq(t->strides[1], 4);
    cr_assert_eq(t->strides[2], 1);
    cr_assert(lp_tensor_is_contiguous(t));
    cr_assert_eq(at(t, 1, 2, 3), 0.0f);
    char b[64];
    cr_assert_str_eq(lp_tensor_shape_str(t, b, sizeof b), "[2, 3, 4]");
    lp_tensor_free(t);
    lp_tensor_free(NULL);
}

Test(tensor, views_share_storage_and_keep_it_alive)
{
    int64_t shape[3] = {2, 3, 4};
    lp_tensor *t = iota(3, shape);
    cr_assert_eq(lp_tensor_storage_refs(t), 1);
    lp_tensor *row = lp_tensor_select(t, 0, 1);             /* (3,4) */
    lp_tensor *col = lp_tensor_slice(t, 2, 1, 4, 2);        /* (2,3,2): columns 1 and 3 */
    lp_tensor *tr = lp_tensor_transpose(t, 0, 2);           /* (4,3,2) */
    cr_assert_eq(lp_tensor_storage_refs(t), 4);
    cr_assert_eq(row->ndim, 2);
    int64_t i2[2] = {2, 3};
    float v;
    cr_assert_eq(lp_tensor_get(row, i2, &v), 0);
    cr_assert_eq(v, 23.0f);
    cr_assert_eq(col->shape[2], 2);
    cr_assert_eq(at(col, 1, 2, 1), 1 * 12 + 2 * 4 + 3);
    cr_assert_eq(at(tr, 3, 1, 0), 0 * 12 + 1 * 4 + 3);
    cr_assert_not(lp_tensor_is_contiguous(tr));
    /* writes through a view are seen by the others */
    int64_t z[2] = {0, 0};
    cr_assert_eq(lp_tensor_set(row, z, 100.0f), 0);
    cr_assert_eq(at(t, 1, 0, 0), 100.0f);
    lp_tensor_free(t); /* the views keep the storage */
    cr_assert_eq(lp_tensor_storage_refs(row), 3);
    cr_assert_eq(at(tr, 0, 0, 1), 100.0f);
    lp_tensor_free(row);
    lp_tensor_free(col);
    lp_tensor_free(tr);
}

Test(tensor, contiguous_copies_only_when_needed)
{
    int64_t shape[2] = {3, 5};
    lp_tensor *t = iota(2, shape);
    lp_tensor *same = lp_tensor_contiguous(t);
    cr_assert_eq(same->data, t->data);
    lp_tensor *tr = lp_tensor_transpose(t, 0, 1);
    lp_tensor *c = lp_tensor_contiguous(tr);
    cr_assert_neq(c->data, t->data);
    cr_assert(lp_tensor_is_contiguous(c));
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 3; j++)
            cr_assert_eq(c->data[i * 3 + j], (float)(j * 5 + i));
    /* reshape of a non-contiguous tensor copies; of a contiguous one it is a view */
    int64_t flat[1] = {-1};
    lp_tensor *r1 = lp_tensor_reshape(tr, 1, flat), *r2 = lp_tensor_reshape(t, 1, flat);
    cr_assert_eq(r1->shape[0], 15);
    cr_assert_neq(r1->data, t->data);
    cr_assert_eq(r2->data, t->data);
    cr_assert_eq(r1->data[1], 5.0f);
    lp_tensor *tv[] = {t, same, tr, c, r1, r2};
    for (int i = 0; i < 6; i++)
        lp_tensor_free(tv[i]);
}

Test(tensor, permute_unsqueeze_expand_and_stepped_slices)
{
    int64_t shape[3] = {2, 3, 4};
    lp_tensor *t = iota(3, shape);
    int perm[3] = {2, 0, 1};
    lp_tensor *p = lp_tensor_permute(t, perm); /* (4,2,3) */
    cr_assert_eq(p->shape[0], 4);
    cr_assert_eq(at(p, 3, 1, 2), 1 * 12 + 2 * 4 + 3);
    lp_tensor *u = lp_tensor_unsqueeze(t, 1);
    cr_assert_eq(u->ndim, 4);
    cr_assert_eq(u->shape[1], 1);
    int64_t big[3] = {5, 3, 4}, one[3] = {1, 3, 4};
    lp_tensor *sel = lp_tensor_select(t, 0, 1);
    lp_tensor *s = lp_tensor_reshape(sel, 3, one);
    cr_assert_eq(s->data, sel->data);
    lp_tensor_free(sel);
    lp_tensor_free(s);
    lp_tensor *first = lp_tensor_slice(t, 0, 0, 1, 1);
    lp_tensor *e = lp_tensor_expand(first, 3, big);
    cr_assert_eq(e->strides[0], 0);
    cr_assert_eq(at(e, 4, 2, 3), 11.0f);
    lp_tensor *st = lp_tensor_slice(t, 2, 0, 4, 3); /* columns 0, 3 */
    cr_assert_eq(st->shape[2], 2);
    cr_assert_eq(at(st, 0, 0, 1), 3.0f);
    lp_tensor *empty = lp_tensor_slice(t, 1, 2, 2, 1);
    cr_assert_eq(lp_tensor_numel(empty), 0);
    lp_tensor *tv[] = {t, p, u, first, e, st, empty};
    for (int i = 0; i < 7; i++)
        lp_tensor_free(tv[i]);
}

Test(tensor, bad_views_are_errors_not_aborts)
{
    int64_t shape[2] = {3, 4};
    lp_tensor *t = iota(2, shape);
    cr_assert_null(lp_tensor_select(t, 0, 3));
    cr_assert(strstr(lp_last_error(), "index 3 out of range for dim 0 of shape [3, 4]"), "%s", lp_last_error());
    cr_assert_null(lp_tensor_slice(t, 1, 2, 9, 1));
    cr_assert(strstr(lp_last_error(), "out of range"), "%s", lp_last_error());
    cr_assert_null(lp_tensor_transpose(t, 0, 2));
    int64_t bad[2] = {5, -1};
    cr_assert_null(lp_tensor_reshape(t, 2, bad));
    cr_assert(strstr(lp_last_error(), "cannot reshape [3, 4]"), "%s", lp_last_error());
    int64_t idx[2] = {0, 4};
    float v;
    cr_assert_eq(lp_tensor_get(t, idx, &v), -1);
    int perm[2] = {0, 0};
    cr_assert_null(lp_tensor_permute(t, perm));
    int64_t to[2] = {3, 5};
    cr_assert_null(lp_tensor_expand(t, 2, to));
    cr_assert_eq(lp_tensor_item(t, &v), -1);
    int64_t neg[1] = {-2};
    cr_assert_null(lp_tensor_zeros(1, neg, LP_DEVICE_CPU));
    lp_tensor_free(t);
}

Test(tensor, huge_allocation_names_op_shape_and_bytes)
{
    int64_t shape[2] = {1 << 20, 1 << 20}; /* 4 TiB */
    lp_tensor *t = lp_tensor_empty_for("activations", 2, shape, LP_DEVICE_CPU);
    cr_assert_null(t);
    const char *e = lp_last_error();
    cr_assert(strstr(e, "cannot allocate 4.0 TiB for activations of shape [1048576, 1048576]"), "%s", e);
    int64_t over[3] = {1LL << 40, 1LL << 40, 1LL << 40};
    cr_assert_null(lp_tensor_zeros(3, over, LP_DEVICE_CPU));
    cr_assert(strstr(lp_last_error(), "too large"), "%s", lp_last_error());
}

Test(tensor, wrong_device_is_an_error_when_cuda_is_missing)
{
    if (lp_device_available(LP_DEVICE_CUDA))
        cr_skip_test("skipped: a GPU is present (this test covers its absence)");
    int64_t shape[1] = {4};
    lp_tensor *t = lp_tensor_zeros(1, shape, LP_DEVICE_CUDA);
    cr_assert_null(t);
    cr_assert(strstr(lp_last_error(), "CUDA is not available"), "%s", lp_last_error());
    lp_tensor *c = lp_tensor_zeros(1, shape, LP_DEVICE_CPU);
    cr_assert_null(lp_tensor_to(c, LP_DEVICE_CUDA));
    lp_tensor_free(c);
    lp_device d;
    cr_assert_eq(lp_device_parse("tpu", &d), -1);
    cr_assert_eq(lp_default_device(), LP_DEVICE_CPU);
}

Test(tensor, bf16_and_f16_bytes_convert_to_f32)
{
    /* 1.0, -2.0, 0.5 + smallest subnormal and inf for f16 */
    unsigned char f16[] = {0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38, 0x01, 0x00, 0x00, 0x7c};
    unsigned char bf16[] = {0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40};
    int64_t s5[1] = {5}, s3[1] = {3};
    lp_tensor *a = lp_tensor_from_bytes(1, s5, LP_DTYPE_F16, f16, LP_DEVICE_CPU);
    lp_tensor *b = lp_tensor_from_bytes(1, s3, LP_DTYPE_BF16, bf16, LP_DEVICE_CPU);
    cr_assert_eq(a->data[0], 1.0f);
    cr_assert_eq(a->data[1], -2.0f);
    cr_assert_eq(a->data[2], 0.5f);
    cr_assert_float_eq(a->data[3], 5.9604645e-8f, 1e-12);
    cr_assert(isinf(a->data[4]));
    cr_assert_eq(b->data[0], 1.0f);
    cr_assert_eq(b->data[1], -2.0f);
    cr_assert_float_eq(b->data[2], 3.140625f, 0);
    /* round trips */
    float xs[] = {0.0f, 1.0f, -3.5f, 65504.0f, 1e-5f, 0.3333f};
    for (int i = 0; i < 6; i++) {
        uint16_t h = lp_f32_to_f16(xs[i]), bb = lp_f32_to_bf16(xs[i]);
        float back, backb;
        lp_f16_to_f32(&back, &h, 1);
        lp_bf16_to_f32(&backb, &bb, 1);
        cr_assert(fabsf(back - xs[i]) <= 1e-3f * fabsf(xs[i]) + 1e-7f, "f16 %g -> %g", xs[i], back);
        cr_assert(fabsf(backb - xs[i]) <= 8e-3f * fabsf(xs[i]), "bf16 %g -> %g", xs[i], backb);
    }
    lp_tensor_free(a);
    lp_tensor_free(b);
}

Test(rng, same_seed_same_numbers_and_sane_moments)
{
    lp_rng g1, g2;
    lp_rng_seed(&g1, 42);
    lp_rng_seed(&g2, 42);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(lp_rng_next(&g1), lp_rng_next(&g2));
    int64_t shape[1] = {200000};
    lp_rng_seed(&g1, 7);
    lp_tensor *n = lp_tensor_randn(1, shape, &g1, 1.0f, 2.0f, LP_DEVICE_CPU);
    lp_tensor *u = lp_tensor_rand(1, shape, &g1, -1.0f, 3.0f, LP_DEVICE_CPU);
    double s = 0, ss = 0, umin = 1e9, umax = -1e9, us = 0;
    for (int i = 0; i < shape[0]; i++) {
        s += n->data[i];
        ss += (double)n->data[i] * n->data[i];
        us += u->data[i];
        umin = fmin(umin, u->data[i]);
        umax = fmax(umax, u->data[i]);
    }
    double mean = s / shape[0], var = ss / shape[0] - mean * mean;
    cr_assert(fabs(mean - 1.0) < 0.02, "mean %g", mean);
    cr_assert(fabs(sqrt(var) - 2.0) < 0.02, "std %g", sqrt(var));
    cr_assert(umin >= -1.0 && umax < 3.0);
    cr_assert(fabs(us / shape[0] - 1.0) < 0.02);
    lp_rng_seed(&g2, 7);
    lp_tensor *n2 = lp_tensor_randn(1, shape, &g2, 1.0f, 2.0f, LP_DEVICE_CPU);
    cr_assert_eq(memcmp(n->data, n2->data, sizeof(float) * 1000), 0);
    for (int i = 0; i < 1000; i++)
        cr_assert(lp_rng_below(&g2, 7) < 7);
    lp_tensor_free(n);
    lp_tensor_free(n2);
    lp_tensor_free(u);
}

Test(tensor, copy_fill_clone_and_host_transfer)
{
    int64_t shape[2] = {4, 3};
    lp_tensor *t = iota(2, shape);
    lp_tensor *tr = lp_tensor_transpose(t, 0, 1);
    float host[12];
    cr_assert_eq(lp_tensor_to_host(tr, host), 0);
    cr_assert_eq(host[1], 3.0f);
    lp_tensor *c = lp_tensor_clone(tr);
    cr_assert_eq(lp_tensor_fill_(tr, 2.0f), 0); /* non-contiguous fill writes through */
    cr_assert_eq(t->data[5], 2.0f);
    cr_assert_eq(c->data[1], 3.0f);
    cr_assert_eq(lp_tensor_copy_(tr, c), 0); /* non-contiguous destination */
    cr_assert_eq(t->data[5], 5.0f);
    cr_assert_eq(lp_tensor_copy_(t, c), -1);
    cr_assert(strstr(lp_last_error(), "copy: shape [3, 4] into shape [4, 3]"), "%s", lp_last_error());
    lp_tensor *s = lp_tensor_from_data(0, NULL, &(float){2.5f}, LP_DEVICE_CPU);
    float v;
    cr_assert_eq(lp_tensor_item(s, &v), 0);
    cr_assert_eq(v, 2.5f);
    lp_tensor_free(s);
    lp_tensor_free(t);
    lp_tensor_free(tr);
    lp_tensor_free(c);
}
