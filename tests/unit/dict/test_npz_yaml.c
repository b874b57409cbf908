/* The YAML subset (backend/dict/yaml.c) and the .npz reader (npz.c, gemmascope.c): what
 * circuit-tracer's and numpy's writers produce is read; corrupt bytes give errors, never
 * crashes. The archives are built here byte by byte (stored and deflate members, CRC-32 from
 * zlib), as np.savez and np.savez_compressed write them. */
#include <math.h>
#include <zlib.h>

#include "core/buf.h"
#include "core/error.h"
#include "dict/npz.h"
#include "dict/sae_io.h"
#include "dict/yaml.h"
#include "dict_fixtures.h"

Test(yaml, the_forms_config_files_use_are_read)
{
    const char *t = "# circuit-tracer\n---\nmodel_kind: transcoder_set\nfeature_input_hook: \"blocks.\\\"x\\\"\"\n"
                    "feature_output_hook: 'it''s'   # comment\nrevision: null\nempty:\nnested:\n  a: 1\n  b: [1, 2]\n"
                    "transcoders:\n- hf://a/layer_0.safetensors\n-   \"layer_1.safetensors\"\n"
                    "flow: [a, 'b c', \"d\"]\nk: 32\r\n";
    lp_yaml *y = lp_yaml_parse(t, strlen(t), "config.yaml");
    cr_assert_not_null(y, "%s", lp_last_error());
    cr_assert_str_eq(lp_yaml_get(y, "model_kind"), "transcoder_set");
    cr_assert_str_eq(lp_yaml_get(y, "feature_input_hook"), "blocks.\"x\"");
    cr_assert_str_eq(lp_yaml_get(y, "feature_output_hook"), "it's");
    cr_assert_str_eq(lp_yaml_get(y, "revision"), "");
    cr_assert_str_eq(lp_yaml_get(y, "empty"), "");
    cr_assert_null(lp_yaml_get(y, "nested"), "a nested mapping is skipped");
    cr_assert_str_eq(lp_yaml_get(y, "k"), "32");
    size_t n = 0;
    const char *const *l = lp_yaml_list(y, "transcoders", &n);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(l[0], "hf://a/layer_0.safetensors");
    cr_assert_str_eq(l[1], "layer_1.safetensors");
    l = lp_yaml_list(y, "flow", &n);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(l[1], "b c");
    cr_assert_str_eq(l[2], "d");
    cr_assert_null(lp_yaml_list(y, "k", &n));
    lp_yaml_free(y);
}

Test(yaml, what_it_does_not_read_is_refused_with_the_line)
{
    struct {
        const char *text, *says;
    } bad[] = {
        {"a: 1\n  b: 2\n", ":2: unexpected indentation"},
        {"a: 1\na: 2\n", ":2: a key appears twice"},
        {"a: \"open\n", ":1: a quoted string does not end"},
        {"a: [1, 2\n", ":1: a flow list must end"},
        {"a: &x 1\n", ":1: anchors"},
        {"a: |\n  text\n", ":1: anchors"},
        {"- 1\n", ":1: a list item outside a list"},
        {"just words\n", ":1: expected 'key: value'"},
        {"a:\n\t- 1\n", ":2: a tab"},
        {"a: \"\\q\"\n", ":1: an escape"},
        {"a: 1\n---\nb: 2\n", ":2: only one document"},
        {"a: 'x' y\n", ":1: unexpected text after a value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        lp_yaml *y = lp_yaml_parse(bad[i].text, strlen(bad[i].text), "c.yaml");
        cr_assert_null(y, "case %zu was accepted", i);
        cr_assert(strstr(lp_last_error(), bad[i].says) && strstr(lp_last_error(), "c.yaml"), "case %zu: %s", i,
                  lp_last_error());
        cr_assert_eq(lp_last_error_code(), LP_ERR_FORMAT);
    }
}

/* ---- building .npz archives ---- */

static void put16(lp_buf *b, unsigned v) { lp_buf_append(b, (unsigned char[]){v & 255, (v >> 8) & 255}, 2); }
static void put32(lp_buf *b, uint32_t v) { put16(b, v & 0xFFFF), put16(b, v >> 16); }

/* An .npy file (version 1) of float32 values. */
static void npy(lp_buf *b, const float *v, int ndim, const int64_t *shape, const char *descr)
{
    char h[256];
    int o = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int d = 0; d < ndim; d++)
        o += snprintf(h + o, sizeof h - (size_t)o, "%lld,%s", (long long)shape[d], d + 1 < ndim ? " " : "");
    o += snprintf(h + o, sizeof h - (size_t)o, "), }");
    while ((10 + o + 1) % 64)
        h[o++] = ' ';
    h[o++] = '\n';
    lp_buf_append(b, "\x93NUMPY\x01\x00", 8);
    put16(b, (unsigned)o);
    lp_buf_append(b, h, (size_t)o);
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    lp_buf_append(b, v, (size_t)n * 4);
}

typedef struct member_src {
    const char *name;
    lp_buf data;
} member_src;

/* A zip of the members, each stored (deflate = 0) or deflated. */
static lp_buf zip(member_src *m, int n, int deflated)
{
    lp_buf z = LP_BUF_INIT, cd = LP_BUF_INIT;
    for (int i = 0; i < n; i++) {
        uint32_t crc = (uint32_t)crc32(0, (const Bytef *)m[i].data.data, (uInt)m[i].data.len);
        unsigned char *out = (unsigned char *)m[i].data.data;
        size_t clen = m[i].data.len;
        unsigned char *tmp = NULL;
        if (deflated) {
            tmp = malloc(m[i].data.len + 1024);
            z_stream s = {0};
            cr_assert_eq(deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
            s.next_in = (Bytef *)m[i].data.data, s.avail_in = (uInt)m[i].data.len;
            s.next_out = tmp, s.avail_out = (uInt)m[i].data.len + 1024;
            cr_assert_eq(deflate(&s, Z_FINISH), Z_STREAM_END);
            clen = s.total_out;
            deflateEnd(&s);
            out = tmp;
        }
        char name[64];
        snprintf(name, sizeof name, "%s.npy", m[i].name);
        uint32_t off = (uint32_t)z.len;
        put32(&z, 0x04034b50), put16(&z, 20), put16(&z, 0), put16(&z, deflated ? 8 : 0), put32(&z, 0);
        put32(&z, crc), put32(&z, (uint32_t)clen), put32(&z, (uint32_t)m[i].data.len);
        put16(&z, (unsigned)strlen(name)), put16(&z, 0);
        lp_buf_puts(&z, name);
        lp_buf_append(&z, out, clen);
        put32(&cd, 0x02014b50), put16(&cd, 20), put16(&cd, 20), put16(&cd, 0), put16(&cd, deflated ? 8 : 0);
        put32(&cd, 0), put32(&cd, crc), put32(&cd, (uint32_t)clen), put32(&cd, (uint32_t)m[i].data.len);
        put16(&cd, (unsigned)strlen(name)), put16(&cd, 0), put16(&cd, 0), put16(&cd, 0), put16(&cd, 0);
        put32(&cd, 0), put32(&cd, off);
        lp_buf_puts(&cd, name);
        free(tmp);
    }
    uint32_t cd_off = (uint32_t)z.len;
    lp_buf_append(&z, cd.data, cd.len);
    put32(&z, 0x06054b50), put16(&z, 0), put16(&z, 0), put16(&z, (unsigned)n), put16(&z, (unsigned)n);
    put32(&z, (uint32_t)cd.len), put32(&z, cd_off), put16(&z, 0);
    lp_buf_free(&cd);
    return z;
}

/* Gemma Scope's five arrays for d_model 4, d_sae 6 (value i/10 + k of array k). */
static lp_buf gemma_scope(int deflate, const char *drop, int64_t w_dec_rows)
{
    static const char *names[5] = {"W_enc", "W_dec", "b_enc", "b_dec", "threshold"};
    int64_t shapes[5][2] = {{4, 6}, {w_dec_rows, 4}, {6, 0}, {4, 0}, {6, 0}};
    member_src m[5];
    int n = 0;
    float v[64];
    for (int k = 0; k < 5; k++) {
        if (drop && !strcmp(drop, names[k]))
            continue;
        for (int i = 0; i < 64; i++)
            v[i] = (float)i / 10 + (float)k;
        m[n].name = names[k];
        m[n].data = (lp_buf)LP_BUF_INIT;
        npy(&m[n].data, v, k < 2 ? 2 : 1, shapes[k], "<f4");
        n++;
    }
    lp_buf z = zip(m, n, deflate);
    for (int i = 0; i < n; i++)
        lp_buf_free(&m[i].data);
    return z;
}

static void write_bytes(const char *path, const lp_buf *b)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite(b->data, 1, b->len, f);
    fclose(f);
}

Test(npz, gemma_scope_params_load_as_a_jumprelu_sae_stored_and_deflated)
{
    for (int deflate = 0; deflate < 2; deflate++) {
        char *dir = tmpdir(), p[512];
        snprintf(p, sizeof p, "%s/params.npz", dir);
        lp_buf z = gemma_scope(deflate, NULL, 6);
        write_bytes(p, &z);
        lp_buf_free(&z);
        lp_sae *s = lp_sae_load_npz(p, 0);
        cr_assert_not_null(s, "%s", lp_last_error());
        cr_assert_eq(s->cfg.arch, LP_SAE_JUMPRELU);
        cr_assert_eq(s->cfg.d_in, 4);
        cr_assert_eq(s->cfg.d_sae, 6);
        cr_assert_eq(s->cfg.apply_b_dec_to_input, 0);
        cr_assert_eq(s->W_enc->shape[0], 4);
        cr_assert_eq(s->W_enc->data[7], 0.7f);
        cr_assert_eq(s->W_dec->data[23], 2.3f + 1.0f);
        cr_assert_eq(s->threshold->data[5], 0.5f + 4.0f);
        cr_assert_eq(s->b_dec->data[3], 0.3f + 3.0f);
        lp_sae_free(s);
        rmtree(dir);
    }
}

static void expect_npz_error(lp_buf *z, const char *says)
{
    char *dir = tmpdir(), p[512];
    snprintf(p, sizeof p, "%s/params.npz", dir);
    write_bytes(p, z);
    cr_assert_null(lp_sae_load_npz(p, 0), "a bad archive was loaded");
    cr_assert(strstr(lp_last_error(), "params.npz") && strstr(lp_last_error(), says), "want '%s' in: %s", says,
              lp_last_error());
    rmtree(dir);
}

Test(npz, bad_archives_are_refused_by_name)
{
    lp_buf z = gemma_scope(0, "threshold", 6);
    expect_npz_error(&z, "array 'threshold' is missing");
    lp_buf_free(&z);
    z = gemma_scope(0, NULL, 5);
    expect_npz_error(&z, "array 'W_dec' has shape [5, 4], expected [6, 4]");
    lp_buf_free(&z);
    z = gemma_scope(1, NULL, 6);
    z.len -= 200; /* cut: the end of central directory is gone */
    expect_npz_error(&z, "truncated");
    lp_buf_free(&z);
    z = gemma_scope(0, NULL, 6);
    z.data[200] ^= 0x55; /* a flipped byte in W_enc's data */
    expect_npz_error(&z, "CRC-32");
    lp_buf_free(&z);
    z = gemma_scope(1, NULL, 6);
    z.data[60] ^= 0xFF; /* corrupt deflate data (or its CRC) */
    char *dir = tmpdir(), p[512];
    snprintf(p, sizeof p, "%s/params.npz", dir);
    write_bytes(p, &z);
    cr_assert_null(lp_sae_load_npz(p, 0));
    cr_assert_eq(lp_last_error_code(), LP_ERR_FORMAT, "%s", lp_last_error());
    rmtree(dir);
    lp_buf_free(&z);
}

Test(npz, every_prefix_of_an_archive_is_refused_or_read_without_a_crash)
{
    lp_buf z = gemma_scope(1, NULL, 6);
    for (size_t n = 0; n < z.len; n++) {
        lp_npz *a = lp_npz_parse(z.data, n, "cut.npz");
        cr_assert_null(a, "a prefix of %zu bytes of %zu parsed", n, z.len);
    }
    lp_npz *a = lp_npz_parse(z.data, z.len, "whole.npz");
    cr_assert_not_null(a, "%s", lp_last_error());
    cr_assert_eq(lp_npz_count(a), 5);
    lp_npz_close(a);
    lp_buf_free(&z);
}

/* Archives numpy wrote (tests/unit/dict/data: np.savez, np.savez_compressed, and float64 /
 * float16 arrays), with W_enc = arange(24).reshape(4, 6) / 10, W_dec = arange(24).reshape(6, 4)
 * / 100, b_enc = -arange(6), b_dec = arange(4) + 0.5, threshold 0.25. */
Test(npz, archives_numpy_wrote_are_read)
{
    const char *files[] = {"gemmascope_stored.npz", "gemmascope_deflate.npz", "gemmascope_mixed.npz"};
    for (int f = 0; f < 3; f++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", getenv("LOUPE_TEST_DATA"), files[f]);
        lp_sae *s = lp_sae_load_npz(p, 0);
        cr_assert_not_null(s, "%s", lp_last_error());
        cr_assert_eq(s->cfg.d_in, 4);
        cr_assert_eq(s->cfg.d_sae, 6);
        for (int i = 0; i < 24; i++) {
            cr_assert_eq(s->W_enc->data[i], (float)i / 10, "%s W_enc[%d]", files[f], i);
            float want = (float)i / 100;
            cr_assert(fabsf(s->W_dec->data[i] - want) <= (f == 2 ? 1e-3f * (1 + want) : 0), "%s W_dec[%d]", files[f], i);
        }
        cr_assert_eq(s->b_enc->data[5], -5.0f);
        cr_assert_eq(s->b_dec->data[2], 2.5f);
        cr_assert_eq(s->threshold->data[3], 0.25f);
        lp_sae_free(s);
    }
}
