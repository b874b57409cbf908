/* safetensors reader (mmap, full header validation) and writer. See safetensors.h. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

struct lp_safetensors {
    char *path;
    void *map;    /* mmap'ed file, or NULL when the bytes are borrowed */
    size_t mapsz;
    const uint8_t *data; /* data section */
    uint64_t datasz;
    lp_st_entry *e; /* sorted by name */
    size_t n;
    json_t *meta; /* "__metadata__" object or NULL */
    json_t *header; /* keeps entry names alive */
};

const char *lp_dtype_name(lp_dtype d)
{
    return d == LP_DTYPE_F32 ? "F32" : d == LP_DTYPE_F16 ? "F16" : d == LP_DTYPE_BF16 ? "BF16" : "?";
}

static size_t dtype_size(lp_dtype d) { return d == LP_DTYPE_F32 ? 4 : 2; }

/* Where the first invalid UTF-8 sequence starts, or -1 when s[0..n) is valid. */
static long utf8_invalid_at(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07;
        } else {
            return (long)i;
        }
        if (i + len > n)
            return (long)i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return (long)i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return (long)i;
        i += len;
    }
    return -1;
}

static int parse_dtype(const char *label, const char *name, const char *s, lp_dtype *out)
{
    if (!strcmp(s, "F32"))
        *out = LP_DTYPE_F32;
    else if (!strcmp(s, "F16"))
        *out = LP_DTYPE_F16;
    else if (!strcmp(s, "BF16"))
        *out = LP_DTYPE_BF16;
    else
        return lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s' has dtype %s, which loupe does not read (supported: "
                            "F32, F16, BF16)", label, name, s);
    return 0;
}

/* Reads a non-negative integer that fits int64. */
static int get_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_entry(lp_safetensors *st, const char *label, const char *name, json_t *obj,
                       lp_st_entry *e)
{
    if (!json_is_object(obj))
        return lp_set_error_code(LP_ERR_FORMAT, "%s: header entry '%s' is not an object", label, name);
    json_t *dt = json_object_get(obj, "dtype"), *shape = json_object_get(obj, "shape"),
           *off = json_object_get(obj, "data_offsets");
    if (!json_is_string(dt))
        return lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s' has no \"dtype\" string", label, name);
    if (!json_is_array(shape))
        return lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s' has no \"shape\" array", label, name);
    if (!json_is_array(off) || json_array_size(off) != 2)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s' needs \"data_offsets\": [begin, end]", label, name);
    if (parse_dtype(label, name, json_string_value(dt), &e->dtype) < 0)
        return -1;
    size_t nd = json_array_size(shape);
    if (nd > LP_MAX_DIMS)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s' has %zu dims (at most %d)", label, name, nd,
                                 LP_MAX_DIMS);
    e->ndim = (int)nd;
    uint64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (get_u64(json_array_get(shape, i), &d) < 0)
            return lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s': shape entry %zu is not a non-negative integer",
                                     label, name, i);
        e->shape[i] = (int64_t)d;
        if (d != 0 && numel > (UINT64_MAX / 4) / d)
            return lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s': shape is too large", label, name);
        numel *= d;
    }
    if (get_u64(json_array_get(off, 0), &e->begin) < 0 || get_u64(json_array_get(off, 1), &e->end) < 0)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s': data_offsets must be non-negative integers", label,
                                 name);
    if (e->begin > e->end)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] run backwards", label, name,
                            (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > st->datasz)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] go past the end of the data "
                            "section (%llu bytes; the file may be truncated)", label, name,
                            (unsigned long long)e->begin, (unsigned long long)e->end,
                            (unsigned long long)st->datasz);
    uint64_t want = numel * dtype_size(e->dtype);
    if (want != e->end - e->begin) {
        char sh[128];
        return lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s': shape %s x %s (%zu bytes each) is %llu bytes, but "
                            "data_offsets span %llu", label, name, lp_shape_str(e->ndim, e->shape, sh, sizeof sh),
                            lp_dtype_name(e->dtype), dtype_size(e->dtype), (unsigned long long)want,
                            (unsigned long long)(e->end - e->begin));
    }
    e->name = name;
    return 0;
}

static int cmp_begin(const void *a, const void *b)
{
    const lp_st_entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const lp_st_entry *)a)->name, ((const lp_st_entry *)b)->name);
}

static int validate(lp_safetensors *st, const uint8_t *bytes, size_t n, const char *label)
{
    if (n < 8)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: file is %zu bytes, too short for a safetensors header (8-byte "
                            "length first)", label, n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | bytes[i];
    if (hlen > LP_ST_MAX_HEADER)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: header length %llu is absurd (limit %llu); not a safetensors file?",
                            label, (unsigned long long)hlen, (unsigned long long)LP_ST_MAX_HEADER);
    if (hlen > n - 8)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes); the "
                            "file is truncated", label, (unsigned long long)hlen, n);
    if (hlen < 2)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: header length %llu is too short for a JSON object", label,
                            (unsigned long long)hlen);
    const uint8_t *h = bytes + 8;
    long bad = utf8_invalid_at(h, hlen);
    if (bad >= 0)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: header is not valid UTF-8 (byte %ld)", label, bad);
    json_error_t jerr;
    st->header = json_loadb((const char *)h, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!st->header)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: header is not valid JSON: %s (at byte %d)", label, jerr.text,
                            jerr.position);
    if (!json_is_object(st->header))
        return lp_set_error_code(LP_ERR_FORMAT, "%s: header is not a JSON object", label);
    st->data = h + hlen;
    st->datasz = n - 8 - hlen;
    size_t cap = json_object_size(st->header);
    st->e = lp_calloc(cap ? cap : 1, sizeof *st->e, "a safetensors file");
    if (!st->e)
        return lp_set_error_code(LP_ERR_NOMEM, "%s: cannot allocate the header's %zu entries", label, cap);
    const char *key;
    json_t *val;
    json_object_foreach(st->header, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val))
                return lp_set_error_code(LP_ERR_FORMAT, "%s: __metadata__ is not an object", label);
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv))
                    return lp_set_error_code(LP_ERR_FORMAT, "%s: __metadata__ value '%s' is not a string", label, mk);
            }
            st->meta = val;
            continue;
        }
        if (!key[0])
            return lp_set_error_code(LP_ERR_FORMAT, "%s: a tensor has an empty name", label);
        if (parse_entry(st, label, key, val, &st->e[st->n]) < 0)
            return -1;
        st->n++;
    }
    /* No overlaps: sorted by start, each range begins at or after the previous end.
     * Empty tensors take no bytes and cannot overlap. */
    qsort(st->e, st->n, sizeof *st->e, cmp_begin);
    const lp_st_entry *prev = NULL;
    for (size_t i = 0; i < st->n; i++) {
        const lp_st_entry *e = &st->e[i];
        if (e->begin == e->end)
            continue;
        if (prev && e->begin < prev->end)
            return lp_set_error_code(LP_ERR_FORMAT, "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", label,
                                prev->name, (unsigned long long)prev->begin,
                                (unsigned long long)prev->end, e->name, (unsigned long long)e->begin,
                                (unsigned long long)e->end);
        prev = e;
    }
    qsort(st->e, st->n, sizeof *st->e, cmp_name);
    return 0;
}

lp_safetensors *lp_safetensors_parse(const void *bytes, size_t n, const char *label)
{
    lp_safetensors *st = lp_calloc(1, sizeof *st, "a safetensors file");
    if (!st || !(st->path = lp_strdup(label ? label : "safetensors", "a safetensors file"))) {
        free(st);
        lp_set_error_code(LP_ERR_NOMEM, "cannot allocate a safetensors reader");
        return NULL;
    }
    if (validate(st, bytes, n, st->path) < 0) {
        lp_safetensors_close(st);
        return NULL;
    }
    return st;
}

lp_safetensors *lp_safetensors_open(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        lp_set_error_code(LP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        lp_set_error_code(LP_ERR_IO, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t sz = (size_t)sb.st_size;
    void *map = NULL;
    if (sz > 0) {
        map = mmap(NULL, sz, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            lp_set_error_code(LP_ERR_IO, "%s: cannot map %zu bytes: %s", path, sz, strerror(errno));
            close(fd);
            return NULL;
        }
    }
    close(fd);
    static const uint8_t empty[1];
    lp_safetensors *st = lp_safetensors_parse(map ? map : empty, sz, path);
    if (!st) {
        if (map)
            munmap(map, sz);
        return NULL;
    }
    st->map = map;
    st->mapsz = sz;
    return st;
}

void lp_safetensors_close(lp_safetensors *st)
{
    if (!st)
        return;
    if (st->map)
        munmap(st->map, st->mapsz);
    json_decref(st->header);
    free(st->e);
    free(st->path);
    free(st);
}

size_t lp_safetensors_count(const lp_safetensors *st) { return st->n; }
const lp_st_entry *lp_safetensors_entry(const lp_safetensors *st, size_t i)
{
    return i < st->n ? &st->e[i] : NULL;
}
const char *lp_safetensors_path(const lp_safetensors *st) { return st->path; }

const lp_st_entry *lp_safetensors_find(const lp_safetensors *st, const char *name)
{
    lp_st_entry key = {.name = name};
    return bsearch(&key, st->e, st->n, sizeof *st->e, cmp_name);
}

const void *lp_safetensors_bytes(const lp_safetensors *st, const lp_st_entry *e)
{
    return st->data + e->begin;
}

const char *lp_safetensors_meta(const lp_safetensors *st, const char *key)
{
    return st->meta ? json_string_value(json_object_get(st->meta, key)) : NULL;
}

lp_tensor *lp_safetensors_tensor(const lp_safetensors *st, const lp_st_entry *e, lp_device dev)
{
    const void *src = lp_safetensors_bytes(st, e);
    if (e->dtype == LP_DTYPE_F32 && dev == LP_DEVICE_CPU) { /* one copy, straight from the map */
        lp_tensor *t = lp_tensor_empty_for(e->name, e->ndim, e->shape, dev);
        if (t)
            memcpy(t->data, src, (size_t)(e->end - e->begin));
        return t;
    }
    return lp_tensor_from_bytes(e->ndim, e->shape, e->dtype, src, dev);
}

/* ---- writer ---- */

static int write_all(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

int lp_safetensors_write(const char *path, const char *const *names, const lp_tensor *const *tensors,
                         size_t n, lp_dtype dtype, const char *const *meta_keys,
                         const char *const *meta_vals, size_t nmeta)
{
    if (dtype != LP_DTYPE_F32 && dtype != LP_DTYPE_F16 && dtype != LP_DTYPE_BF16)
        return lp_set_error("%s: cannot write dtype %d (F32, F16 or BF16)", path, (int)dtype);
    json_t *h = json_object();
    if (!h)
        return lp_set_error_code(LP_ERR_NOMEM, "%s: out of memory", path);
    int rc = -1;
    uint64_t off = 0;
    size_t es = dtype_size(dtype);
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !names[i][0] || !strcmp(names[i], "__metadata__")) {
            lp_set_error("%s: tensor %zu has no usable name", path, i);
            goto out;
        }
        if (json_object_get(h, names[i])) {
            lp_set_error("%s: tensor name '%s' is used twice", path, names[i]);
            goto out;
        }
        const lp_tensor *t = tensors[i];
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++)
            json_array_append_new(shape, json_integer(t->shape[d]));
        uint64_t nb = (uint64_t)lp_tensor_numel(t) * es;
        json_t *e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", lp_dtype_name(dtype), "shape", shape,
                              "data_offsets", (json_int_t)off, (json_int_t)(off + nb));
        if (!e || json_object_set_new(h, names[i], e) < 0) {
            lp_set_error_code(LP_ERR_NOMEM, "%s: out of memory (or a name that is not UTF-8: '%s')", path, names[i]);
            goto out;
        }
        off += nb;
    }
    if (nmeta) {
        json_t *m = json_object();
        for (size_t i = 0; i < nmeta; i++)
            json_object_set_new(m, meta_keys[i], json_string(meta_vals[i]));
        json_object_set_new(h, "__metadata__", m);
    }
    char *hs = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    if (!hs) {
        lp_set_error("%s: cannot encode the header", path);
        goto out;
    }
    size_t hl = strlen(hs), padded = (hl + 7) / 8 * 8; /* data section 8-byte aligned */
    size_t plen = strlen(path) + 5;
    char *tmp = lp_malloc(plen, "a safetensors file");
    FILE *f = NULL;
    float *buf = NULL;
    uint16_t *half = NULL;
    if (!tmp)
        goto done;
    snprintf(tmp, plen, "%s.tmp", path);
    f = fopen(tmp, "wb");
    if (!f) {
        lp_set_error_code(LP_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
        goto done;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)(((uint64_t)padded >> (8 * i)) & 0xFF);
    int bad = write_all(f, len8, 8) || write_all(f, hs, hl);
    for (size_t i = hl; i < padded && !bad; i++)
        bad = fputc(' ', f) == EOF;
    for (size_t i = 0; i < n && !bad; i++) {
        size_t cnt = (size_t)lp_tensor_numel(tensors[i]);
        free(buf);
        free(half);
        half = NULL;
        buf = lp_malloc(cnt ? cnt * 4 : 4, "safetensors write");
        if (!buf || lp_tensor_to_host(tensors[i], buf) < 0)
            goto done_close;
        if (dtype == LP_DTYPE_F32) {
            bad = write_all(f, buf, cnt * 4); /* little-endian hosts only (x86-64, arm64) */
        } else {
            half = lp_malloc(cnt ? cnt * 2 : 2, "safetensors write");
            if (!half)
                goto done_close;
            for (size_t k = 0; k < cnt; k++)
                half[k] = dtype == LP_DTYPE_F16 ? lp_f32_to_f16(buf[k]) : lp_f32_to_bf16(buf[k]);
            bad = write_all(f, half, cnt * 2);
        }
    }
    if (bad) {
        lp_set_error_code(LP_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        goto done_close;
    }
    if (fclose(f) != 0) {
        f = NULL;
        lp_set_error_code(LP_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        goto done;
    }
    f = NULL;
    if (rename(tmp, path) < 0) {
        lp_set_error_code(LP_ERR_IO, "%s: cannot rename from %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    rc = 0;
done_close:
    if (f)
        fclose(f);
    f = NULL;
done:
    if (rc < 0 && tmp)
        unlink(tmp);
    free(tmp);
    free(buf);
    free(half);
    free(hs);
out:
    json_decref(h);
    return rc;
}
