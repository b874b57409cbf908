/* safetensors reader and writer (backend/model/safetensors.c, weights.c): round trips in
 * every dtype, sharded folders, and corrupt files, each refused with a clear error. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "model/safetensors.h"
#include "model/weights.h"

/* A file image: 8-byte length, header text, datalen bytes of data (0x11 each). */
static uint8_t *image(const char *hdr, uint64_t hlen_field, size_t datalen, size_t *n)
{
    size_t hl = strlen(hdr);
    *n = 8 + hl + datalen;
    uint8_t *b = malloc(*n + 1);
    cr_assert_not_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(hlen_field >> (8 * i));
    memcpy(b + 8, hdr, hl);
    memset(b + 8 + hl, 0x11, datalen);
    return b;
}

/* Parses hdr + datalen bytes; asserts failure whose message contains want. */
static void refused(const char *hdr, size_t datalen, const char *want)
{
    size_t n;
    uint8_t *b = image(hdr, strlen(hdr), datalen, &n);
    lp_clear_error();
    lp_safetensors *st = lp_safetensors_parse(b, n, "bad.safetensors");
    cr_assert_null(st, "accepted: %s", hdr);
    cr_assert(strstr(lp_last_error(), want), "error '%s' does not say '%s'", lp_last_error(), want);
    cr_assert(strstr(lp_last_error(), "bad.safetensors"), "error '%s' does not name the file", lp_last_error());
    free(b);
}

static void accepted(const char *hdr, size_t datalen)
{
    size_t n;
    uint8_t *b = image(hdr, strlen(hdr), datalen, &n);
    lp_safetensors *st = lp_safetensors_parse(b, n, "ok.safetensors");
    cr_assert_not_null(st, "refused %s: %s", hdr, lp_last_error());
    lp_safetensors_close(st);
    free(b);
}

#define T1(dt, shape, b, e) "{\"a\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}}"

Test(st_corrupt, empty_file) { refused("", 0, "too short"); }

Test(st_corrupt, seven_bytes)
{
    uint8_t b[7] = {1, 0, 0, 0, 0, 0, 0};
    cr_assert_null(lp_safetensors_parse(b, 7, "bad.safetensors"));
    cr_assert(strstr(lp_last_error(), "too short"), "%s", lp_last_error());
}

Test(st_corrupt, header_length_past_end)
{
    size_t n;
    uint8_t *b = image("{}", 1000, 0, &n);
    cr_assert_null(lp_safetensors_parse(b, n, "bad.safetensors"));
    cr_assert(strstr(lp_last_error(), "runs past the end of the file"), "%s", lp_last_error());
    free(b);
}

Test(st_corrupt, absurd_header_length)
{
    size_t n;
    uint8_t *b = image("{}", (uint64_t)1 << 62, 0, &n);
    cr_assert_null(lp_safetensors_parse(b, n, "bad.safetensors"));
    cr_assert(strstr(lp_last_error(), "absurd"), "%s", lp_last_error());
    free(b);
    b = image("{}", UINT64_MAX, 0, &n); /* would wrap 8 + N */
    cr_assert_null(lp_safetensors_parse(b, n, "bad.safetensors"));
    cr_assert(strstr(lp_last_error(), "absurd"), "%s", lp_last_error());
    free(b);
}

Test(st_corrupt, zero_header_length) { refused("", 16, "too short for a JSON object"); }
Test(st_corrupt, header_not_json) { refused("{\"a\": [1, 2", 0, "not valid JSON"); }
Test(st_corrupt, header_not_object) { refused("[1, 2, 3]", 0, "not a JSON object"); }
Test(st_corrupt, name_not_utf8)
{
    refused("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "not valid UTF-8");
}
Test(st_corrupt, name_overlong_utf8)
{
    refused("{\"\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "not valid UTF-8");
}
Test(st_corrupt, name_utf8_surrogate)
{
    refused("{\"\xed\xa0\x80\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "not valid UTF-8");
}
Test(st_corrupt, name_truncated_utf8) { refused("{\"\xe2\x82", 0, "not valid UTF-8"); }
Test(st_corrupt, name_escaped_lone_surrogate)
{
    refused("{\"\\ud800\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "not valid JSON");
}
Test(st_corrupt, unsupported_dtype) { refused(T1("I64", "[2]", 0, 16), 16, "dtype I64, which loupe does not read (supported: F32, F16, BF16)"); }
Test(st_corrupt, unknown_dtype) { refused(T1("Q4", "[2]", 0, 16), 16, "dtype Q4"); }
Test(st_corrupt, missing_dtype) { refused("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "no \"dtype\""); }
Test(st_corrupt, shape_not_array) { refused(T1("F32", "3", 0, 12), 12, "no \"shape\" array"); }
Test(st_corrupt, negative_dim) { refused(T1("F32", "[-1]", 0, 4), 4, "shape entry 0 is not a non-negative integer"); }
Test(st_corrupt, fractional_dim) { refused(T1("F32", "[1.5]", 0, 4), 4, "shape entry 0"); }
Test(st_corrupt, too_many_dims) { refused(T1("F32", "[1,1,1,1,1,1,1,1,1]", 0, 4), 4, "9 dims"); }
Test(st_corrupt, shape_overflows) { refused(T1("F32", "[4294967296,4294967296,16]", 0, 4), 4, "too large"); }
Test(st_corrupt, offsets_wrong_count) { refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets"); }
Test(st_corrupt, offsets_negative) { refused(T1("F32", "[1]", -4, 0), 4, "non-negative integers"); }
Test(st_corrupt, offsets_backwards) { refused(T1("F32", "[0]", 8, 4), 8, "run backwards"); }
Test(st_corrupt, offsets_past_end) { refused(T1("F32", "[4]", 0, 16), 12, "past the end of the data section"); }
Test(st_corrupt, offsets_far_past_end) { refused(T1("F32", "[1]", 9223372036854775800, 9223372036854775804), 4, "past the end of the data section"); }
Test(st_corrupt, wrong_byte_length) { refused(T1("F32", "[2,3]", 0, 20), 24, "is 24 bytes, but data_offsets span 20"); }
Test(st_corrupt, f16_with_f32_size) { refused(T1("F16", "[4]", 0, 16), 16, "is 8 bytes, but data_offsets span 16"); }
Test(st_corrupt, bf16_odd_length) { refused(T1("BF16", "[3]", 0, 5), 6, "is 6 bytes"); }
Test(st_corrupt, overlapping)
{
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "overlap");
}
Test(st_corrupt, overlap_contained)
{
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "overlap");
}
Test(st_corrupt, duplicate_name)
{
    refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate");
}
Test(st_corrupt, entry_not_object) { refused("{\"a\": 3}", 0, "is not an object"); }
Test(st_corrupt, empty_name) { refused("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "empty name"); }
Test(st_corrupt, metadata_not_object) { refused("{\"__metadata__\": [1]}", 0, "__metadata__ is not an object"); }
Test(st_corrupt, metadata_value_not_string) { refused("{\"__metadata__\": {\"format\": 1}}", 0, "not a string"); }

Test(st_ok, edge_cases_accepted)
{
    accepted("{}", 0);
    accepted("{}      ", 0);                                /* padded header */
    accepted(T1("F32", "[0, 5]", 0, 0), 0);                  /* empty tensor */
    accepted(T1("F32", "[]", 4, 8), 8);                      /* scalar, a hole before it */
    accepted("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8); /* empty inside another */
    accepted("{\"__metadata__\":{\"format\":\"pt\"},\"caf\xc3\xa9\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
}

static char tmpdir[256];

static void mktmp(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lp_st_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void rmtmp(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(st_file, .init = mktmp, .fini = rmtmp);

static lp_tensor *ramp(int64_t r, int64_t c, float scale)
{
    int64_t shape[2] = {r, c};
    lp_tensor *t = lp_tensor_empty(2, shape, LP_DEVICE_CPU);
    for (int64_t i = 0; i < r * c; i++)
        t->data[i] = scale * (float)(i - 3) / 7.0f;
    return t;
}

Test(st_file, round_trip_each_dtype)
{
    lp_tensor *a = ramp(3, 5, 1.0f), *b = ramp(1, 7, -2.5f);
    const char *names[] = {"z.weight", "a.bias"};
    const lp_tensor *ts[] = {a, b};
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    lp_dtype dts[] = {LP_DTYPE_F32, LP_DTYPE_F16, LP_DTYPE_BF16};
    for (int d = 0; d < 3; d++) {
        char path[300];
        snprintf(path, sizeof path, "%s/m%d.safetensors", tmpdir, d);
        cr_assert_eq(lp_safetensors_write(path, names, ts, 2, dts[d], mk, mv, 1), 0, "%s", lp_last_error());
        lp_safetensors *st = lp_safetensors_open(path);
        cr_assert_not_null(st, "%s", lp_last_error());
        cr_assert_eq(lp_safetensors_count(st), 2);
        cr_assert_str_eq(lp_safetensors_entry(st, 0)->name, "a.bias"); /* sorted */
        cr_assert_str_eq(lp_safetensors_meta(st, "format"), "pt");
        const lp_st_entry *e = lp_safetensors_find(st, "z.weight");
        cr_assert_not_null(e);
        cr_assert_eq(e->dtype, dts[d]);
        cr_assert_eq(e->ndim, 2);
        cr_assert_eq(e->shape[0], 3);
        lp_tensor *got = lp_safetensors_tensor(st, e, LP_DEVICE_CPU);
        cr_assert_not_null(got);
        for (int i = 0; i < 15; i++) {
            float want = a->data[i], tol = d == 0 ? 0.0f : d == 1 ? 1e-3f * fabsf(want) : 8e-3f * fabsf(want);
            cr_assert(fabsf(got->data[i] - want) <= tol, "dtype %d element %d: %g vs %g", d, i, got->data[i], want);
        }
        lp_tensor_free(got);
        lp_safetensors_close(st);
    }
    lp_tensor_free(a);
    lp_tensor_free(b);
}

Test(st_file, writer_refuses_duplicates_and_leaves_nothing)
{
    lp_tensor *a = ramp(2, 2, 1.0f);
    const char *names[] = {"x", "x"};
    const lp_tensor *ts[] = {a, a};
    char path[300];
    snprintf(path, sizeof path, "%s/dup.safetensors", tmpdir);
    cr_assert_eq(lp_safetensors_write(path, names, ts, 2, LP_DTYPE_F32, NULL, NULL, 0), -1);
    cr_assert(strstr(lp_last_error(), "used twice"), "%s", lp_last_error());
    cr_assert_neq(access(path, F_OK), 0);
    lp_tensor_free(a);
}

Test(st_file, truncated_file_on_disk)
{
    lp_tensor *a = ramp(16, 16, 1.0f);
    const char *names[] = {"w"};
    const lp_tensor *ts[] = {a};
    char path[300];
    snprintf(path, sizeof path, "%s/t.safetensors", tmpdir);
    cr_assert_eq(lp_safetensors_write(path, names, ts, 1, LP_DTYPE_F32, NULL, NULL, 0), 0);
    cr_assert_eq(truncate(path, 600), 0);
    cr_assert_null(lp_safetensors_open(path));
    cr_assert(strstr(lp_last_error(), "truncated") && strstr(lp_last_error(), path), "%s", lp_last_error());
    cr_assert_eq(truncate(path, 20), 0);
    cr_assert_null(lp_safetensors_open(path));
    cr_assert(strstr(lp_last_error(), "truncated"), "%s", lp_last_error());
    lp_tensor_free(a);
}

Test(st_file, missing_file_and_directory)
{
    char path[300];
    snprintf(path, sizeof path, "%s/nope.safetensors", tmpdir);
    cr_assert_null(lp_safetensors_open(path));
    cr_assert(strstr(lp_last_error(), "cannot open"), "%s", lp_last_error());
    cr_assert_null(lp_safetensors_open(tmpdir));
    cr_assert(strstr(lp_last_error(), "not a regular file"), "%s", lp_last_error());
    cr_assert_null(lp_weights_open(tmpdir));
    cr_assert(strstr(lp_last_error(), "no model.safetensors"), "%s", lp_last_error());
}

static void write_text(const char *name, const char *text)
{
    char path[300];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void write_shard(const char *file, const char *name, int64_t r, int64_t c)
{
    char path[300];
    snprintf(path, sizeof path, "%s/%s", tmpdir, file);
    lp_tensor *a = ramp(r, c, 1.0f);
    const char *names[] = {name};
    const lp_tensor *ts[] = {a};
    cr_assert_eq(lp_safetensors_write(path, names, ts, 1, LP_DTYPE_BF16, NULL, NULL, 0), 0);
    lp_tensor_free(a);
}

Test(st_file, sharded_index)
{
    write_shard("s1.safetensors", "a", 2, 3);
    write_shard("s2.safetensors", "b", 4, 1);
    write_text("model.safetensors.index.json", "{\"metadata\":{},\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
    lp_weights *w = lp_weights_open(tmpdir);
    cr_assert_not_null(w, "%s", lp_last_error());
    cr_assert_eq(lp_weights_count(w), 2);
    cr_assert_str_eq(lp_weights_source(w), "2 shards");
    lp_tensor *b = lp_weights_get(w, "b", 2, (int64_t[]){4, 1}, LP_DEVICE_CPU);
    cr_assert_not_null(b, "%s", lp_last_error());
    lp_tensor_free(b);
    cr_assert_null(lp_weights_get(w, "b", 2, (int64_t[]){1, 4}, LP_DEVICE_CPU));
    cr_assert(strstr(lp_last_error(), "s2.safetensors: tensor 'b' has shape [4, 1], expected [1, 4]"), "%s",
              lp_last_error());
    cr_assert_null(lp_weights_get(w, "c", 0, NULL, LP_DEVICE_CPU));
    cr_assert(strstr(lp_last_error(), "tensor 'c' is missing"), "%s", lp_last_error());
    lp_weights_close(w);
}

Test(st_file, sharded_index_errors)
{
    write_shard("s1.safetensors", "a", 2, 3);
    write_text("model.safetensors.index.json", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\"}}");
    cr_assert_null(lp_weights_open(tmpdir));
    cr_assert(strstr(lp_last_error(), "'b' is listed in s1.safetensors but missing"), "%s", lp_last_error());
    write_text("model.safetensors.index.json", "{\"weight_map\":{\"a\":\"../s1.safetensors\"}}");
    cr_assert_null(lp_weights_open(tmpdir));
    cr_assert(strstr(lp_last_error(), "not a file name in the folder"), "%s", lp_last_error());
    write_text("model.safetensors.index.json", "{\"weight_map\":{\"a\":\"gone.safetensors\"}}");
    cr_assert_null(lp_weights_open(tmpdir));
    cr_assert(strstr(lp_last_error(), "gone.safetensors: cannot open"), "%s", lp_last_error());
    write_text("model.safetensors.index.json", "{\"weight_map\": 3}");
    cr_assert_null(lp_weights_open(tmpdir));
    cr_assert(strstr(lp_last_error(), "no \"weight_map\""), "%s", lp_last_error());
    write_text("model.safetensors.index.json", "{\"weight_map\":");
    cr_assert_null(lp_weights_open(tmpdir));
    cr_assert(strstr(lp_last_error(), "not valid JSON"), "%s", lp_last_error());
}
Test(st_corrupt, offsets_beyond_int64) { refused(T1("F32", "[1]", 18446744073709551608, 18446744073709551612), 4, "not valid JSON"); }
