/* .npz reader: the zip container (central directory, zip64, stored and deflate members) and
 * the .npy arrays inside it. See npz.h. */
#include "dict/npz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/error.h"

#define MAX_MEMBERS 4096
#define MAX_NAME 1024

typedef struct member {
    char *name; /* without ".npy" */
    int method; /* 0 stored, 8 deflate */
    uint32_t crc;
    uint64_t csize, usize, data; /* data: offset of the member's bytes */
} member;

struct lp_npz {
    const uint8_t *bytes;
    size_t n;
    void *map;
    char *path;
    member *m;
    size_t count;
};

static uint16_t u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t u64(const uint8_t *p) { return (uint64_t)u32(p) | (uint64_t)u32(p + 4) << 32; }

static int bad(const lp_npz *z, const char *what)
{
    return lp_set_error_code(LP_ERR_FORMAT, "%s: %s", z->path, what);
}

/* off + len within the file. */
static int within(const lp_npz *z, uint64_t off, uint64_t len) { return off <= z->n && len <= z->n - off; }

void lp_npz_close(lp_npz *z)
{
    if (!z)
        return;
    for (size_t i = 0; i < z->count; i++)
        free(z->m[i].name);
    free(z->m);
    if (z->map)
        munmap(z->map, z->n);
    free(z->path);
    free(z);
}

/* Applies a zip64 extra field (id 1) to the sizes and offset that are 0xFFFFFFFF. */
static int zip64_extra(const lp_npz *z, const uint8_t *x, size_t xlen, uint64_t *usize, uint64_t *csize, uint64_t *loff)
{
    size_t i = 0;
    while (i + 4 <= xlen) {
        uint16_t id = u16(x + i), sz = u16(x + i + 2);
        if (i + 4 + sz > xlen)
            return bad(z, "an extra field runs past its entry");
        if (id == 1) {
            const uint8_t *p = x + i + 4, *end = p + sz;
            uint64_t *f[3] = {usize, csize, loff};
            for (int k = 0; k < 3; k++) {
                if (*f[k] != 0xFFFFFFFFu)
                    continue;
                if (p + 8 > end)
                    return bad(z, "a zip64 extra field is too short");
                *f[k] = u64(p);
                p += 8;
            }
        }
        i += 4 + (size_t)sz;
    }
    return 0;
}

static int parse_dir(lp_npz *z)
{
    if (z->n < 22)
        return bad(z, "too short to be a zip archive (an .npz is one)");
    size_t lo = z->n > 22 + 65535 ? z->n - 22 - 65535 : 0, e = z->n - 22 + 1;
    int found = 0;
    while (e-- > lo)
        if (u32(z->bytes + e) == 0x06054b50 && e + 22 + (size_t)u16(z->bytes + e + 20) == z->n) {
            found = 1;
            break;
        }
    if (!found)
        return bad(z, "no end of central directory: not a zip archive, or truncated");
    const uint8_t *p = z->bytes + e;
    uint64_t count = u16(p + 10), cd_size = u32(p + 12), cd_off = u32(p + 16);
    if (count == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        if (e < 20 || u32(z->bytes + e - 20) != 0x07064b50)
            return bad(z, "a zip64 archive without its zip64 locator");
        uint64_t off = u64(z->bytes + e - 20 + 8);
        if (!within(z, off, 56) || u32(z->bytes + off) != 0x06064b50)
            return bad(z, "the zip64 end of central directory is not where its locator says");
        count = u64(z->bytes + off + 32), cd_size = u64(z->bytes + off + 40), cd_off = u64(z->bytes + off + 48);
    }
    if (!within(z, cd_off, cd_size))
        return bad(z, "the central directory lies outside the file (truncated?)");
    if (count > MAX_MEMBERS)
        return bad(z, "more than 4096 members");
    if (!(z->m = lp_calloc(count ? count : 1, sizeof *z->m, "an .npz directory")))
        return -1;
    uint64_t q = cd_off, end = cd_off + cd_size;
    for (uint64_t i = 0; i < count; i++) {
        if (q + 46 > end || u32(z->bytes + q) != 0x02014b50)
            return bad(z, "a corrupt central directory entry");
        const uint8_t *h = z->bytes + q;
        uint16_t flags = u16(h + 8), method = u16(h + 10), nlen = u16(h + 28), xlen = u16(h + 30), clen = u16(h + 32);
        uint64_t csize = u32(h + 20), usize = u32(h + 24), loff = u32(h + 42);
        if (q + 46 + nlen + xlen + clen > end)
            return bad(z, "a central directory entry runs past the directory");
        if (zip64_extra(z, h + 46 + nlen, xlen, &usize, &csize, &loff) < 0)
            return -1;
        if (flags & 1)
            return bad(z, "an encrypted member");
        if (method != 0 && method != 8)
            return bad(z, "a member compressed with a method other than stored or deflate");
        if (method == 0 && csize != usize)
            return bad(z, "a stored member whose sizes differ");
        if (nlen < 5 || nlen > MAX_NAME || memcmp(h + 46 + nlen - 4, ".npy", 4) != 0 || memchr(h + 46, 0, nlen))
            return bad(z, "a member that is not an .npy array");
        if (!within(z, loff, 30) || u32(z->bytes + loff) != 0x04034b50)
            return bad(z, "a member's local header is missing (truncated?)");
        uint64_t data = loff + 30 + u16(z->bytes + loff + 26) + u16(z->bytes + loff + 28);
        if (!within(z, data, csize))
            return bad(z, "a member's data runs past the end of the file (truncated?)");
        member *m = &z->m[z->count];
        if (!(m->name = lp_malloc((size_t)nlen - 3, "an .npz member name")))
            return -1;
        memcpy(m->name, h + 46, (size_t)nlen - 4);
        m->name[nlen - 4] = 0;
        m->method = method, m->crc = u32(h + 16), m->csize = csize, m->usize = usize, m->data = data;
        z->count++;
        for (size_t j = 0; j + 1 < z->count; j++)
            if (!strcmp(z->m[j].name, m->name))
                return bad(z, "two members have the same name");
        q += 46 + (uint64_t)nlen + xlen + clen;
    }
    return 0;
}

lp_npz *lp_npz_parse(const void *bytes, size_t n, const char *label)
{
    lp_npz *z = lp_calloc(1, sizeof *z, "an .npz archive");
    if (!z)
        return NULL;
    z->bytes = bytes, z->n = n;
    if (!(z->path = lp_strdup(label ? label : "params.npz", "an .npz archive")) || parse_dir(z) < 0) {
        lp_npz_close(z);
        return NULL;
    }
    return z;
}

lp_npz *lp_npz_open(const char *path)
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
    void *map = sz ? mmap(NULL, sz, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (map == MAP_FAILED) {
        lp_set_error_code(LP_ERR_IO, "%s: cannot map %zu bytes: %s", path, sz, strerror(errno));
        return NULL;
    }
    static const uint8_t empty[1];
    lp_npz *z = lp_npz_parse(map ? map : empty, sz, path);
    if (!z) {
        if (map)
            munmap(map, sz);
        return NULL;
    }
    z->map = map;
    return z;
}

size_t lp_npz_count(const lp_npz *z) { return z->count; }
const char *lp_npz_name(const lp_npz *z, size_t i) { return i < z->count ? z->m[i].name : NULL; }

/* The uncompressed bytes of m: borrowed (*owned NULL) or inflated into *owned. */
static const uint8_t *member_bytes(const lp_npz *z, const member *m, uint8_t **owned)
{
    *owned = NULL;
    const uint8_t *src = z->bytes + m->data;
    if (m->method == 8) {
        if (m->usize > m->csize * 1100 + 1024 || m->usize > ((uint64_t)1 << 40)) {
            bad(z, "a member claims more data than deflate can give");
            return NULL;
        }
        uint8_t *out = lp_malloc(m->usize ? (size_t)m->usize : 1, "an inflated .npz member");
        if (!out)
            return NULL;
        z_stream s;
        memset(&s, 0, sizeof s);
        int ok = inflateInit2(&s, -15) == Z_OK;
        uint64_t in_done = 0, out_done = 0;
        int r = Z_OK;
        while (ok && r == Z_OK) { /* zlib counts in uInt: feed at most 1 GiB a call */
            uint64_t in_left = m->csize - in_done, out_left = m->usize - out_done;
            s.next_in = (Bytef *)(src + in_done), s.avail_in = (uInt)(in_left < (1u << 30) ? in_left : (1u << 30));
            s.next_out = out + out_done, s.avail_out = (uInt)(out_left < (1u << 30) ? out_left : (1u << 30));
            uInt ai = s.avail_in, ao = s.avail_out;
            r = inflate(&s, Z_NO_FLUSH);
            in_done += ai - s.avail_in, out_done += ao - s.avail_out;
            if (r == Z_OK && ai == s.avail_in && ao == s.avail_out)
                r = Z_BUF_ERROR; /* no progress: the stream is cut short */
        }
        if (ok)
            inflateEnd(&s);
        if (!ok || r != Z_STREAM_END || out_done != m->usize) {
            free(out);
            lp_set_error_code(LP_ERR_FORMAT, "%s: array '%s': corrupt or truncated deflate data", z->path, m->name);
            return NULL;
        }
        src = *owned = out;
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    for (uint64_t o = 0; o < m->usize; o += (1u << 30)) {
        uint64_t len = m->usize - o < (1u << 30) ? m->usize - o : (1u << 30);
        crc = crc32(crc, src + o, (uInt)len);
    }
    if ((uint32_t)crc != m->crc) {
        free(*owned);
        *owned = NULL;
        lp_set_error_code(LP_ERR_FORMAT, "%s: array '%s': CRC-32 mismatch (corrupt data)", z->path, m->name);
        return NULL;
    }
    return src;
}

/* Skips spaces; then whether s[*i] is ch (and consumes it). */
static int expect(const char *s, size_t n, size_t *i, char ch)
{
    while (*i < n && s[*i] == ' ')
        (*i)++;
    if (*i < n && s[*i] == ch) {
        (*i)++;
        return 1;
    }
    return 0;
}

/* A quoted Python string into out (cap bytes). */
static int pystr(const char *s, size_t n, size_t *i, char *out, size_t cap)
{
    while (*i < n && s[*i] == ' ')
        (*i)++;
    if (*i >= n || (s[*i] != '\'' && s[*i] != '"'))
        return -1;
    char q = s[(*i)++];
    size_t k = 0;
    while (*i < n && s[*i] != q) {
        if (k + 1 >= cap)
            return -1;
        out[k++] = s[(*i)++];
    }
    if (*i >= n)
        return -1;
    (*i)++;
    out[k] = 0;
    return 0;
}

/* The .npy header dict: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }. */
static int npy_header(const char *s, size_t n, char descr[16], int *fortran, int *ndim, int64_t shape[LP_MAX_DIMS])
{
    size_t i = 0;
    int seen = 0;
    if (!expect(s, n, &i, '{'))
        return -1;
    while (!expect(s, n, &i, '}')) {
        char key[32];
        if (pystr(s, n, &i, key, sizeof key) < 0 || !expect(s, n, &i, ':'))
            return -1;
        if (!strcmp(key, "descr")) {
            if (pystr(s, n, &i, descr, 16) < 0)
                return -1;
            seen |= 1;
        } else if (!strcmp(key, "fortran_order")) {
            while (i < n && s[i] == ' ')
                i++;
            if (n - i >= 4 && !memcmp(s + i, "True", 4))
                *fortran = 1, i += 4;
            else if (n - i >= 5 && !memcmp(s + i, "False", 5))
                *fortran = 0, i += 5;
            else
                return -1;
            seen |= 2;
        } else if (!strcmp(key, "shape")) {
            if (!expect(s, n, &i, '('))
                return -1;
            *ndim = 0;
            while (!expect(s, n, &i, ')')) {
                while (i < n && s[i] == ' ')
                    i++;
                int64_t v = 0;
                size_t st = i;
                while (i < n && s[i] >= '0' && s[i] <= '9') {
                    if (v > ((int64_t)1 << 40))
                        return -1;
                    v = v * 10 + (s[i++] - '0');
                }
                if (i == st || *ndim >= LP_MAX_DIMS)
                    return -1;
                shape[(*ndim)++] = v;
                if (!expect(s, n, &i, ',') && !(i < n && s[i] == ')'))
                    return -1;
            }
            seen |= 4;
        } else {
            return -1;
        }
        if (!expect(s, n, &i, ',') && !(i < n && s[i] == '}'))
            return -1;
    }
    return seen == 7 ? 0 : -1;
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1F, m = h & 0x3FF, bits;
    if (e == 0) {
        if (m == 0) {
            bits = sign;
        } else { /* subnormal */
            e = 113;
            while (!(m & 0x400))
                m <<= 1, e--;
            bits = sign | e << 23 | (m & 0x3FF) << 13;
        }
    } else if (e == 31) {
        bits = sign | 0x7F800000u | m << 13;
    } else {
        bits = sign | (e + 112) << 23 | m << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

lp_tensor *lp_npz_tensor(const lp_npz *z, const char *name)
{
    const member *m = NULL;
    for (size_t i = 0; i < z->count && !m; i++)
        if (!strcmp(z->m[i].name, name))
            m = &z->m[i];
    if (!m) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: array '%s' is missing", z->path, name);
        return NULL;
    }
    uint8_t *owned;
    const uint8_t *b = member_bytes(z, m, &owned);
    if (!b)
        return NULL;
    lp_tensor *t = NULL;
    uint64_t n = m->usize, hl, hs;
    if (n < 10 || memcmp(b, "\x93NUMPY", 6) != 0) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: array '%s' is not an .npy file", z->path, name);
        goto out;
    }
    if (b[6] == 1)
        hl = u16(b + 8), hs = 10;
    else if ((b[6] == 2 || b[6] == 3) && n >= 12)
        hl = u32(b + 8), hs = 12;
    else {
        lp_set_error_code(LP_ERR_FORMAT, "%s: array '%s': .npy version %d is not read", z->path, name, b[6]);
        goto out;
    }
    char descr[16] = "";
    int fortran = 0, ndim = 0;
    int64_t shape[LP_MAX_DIMS];
    if (hl > n - hs || npy_header((const char *)b + hs, (size_t)hl, descr, &fortran, &ndim, shape) < 0) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: array '%s': a corrupt .npy header", z->path, name);
        goto out;
    }
    size_t es = !strcmp(descr, "<f4") ? 4 : !strcmp(descr, "<f8") ? 8 : !strcmp(descr, "<f2") ? 2 : 0;
    if (!es || (fortran && ndim > 1)) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: array '%s': %s is not read (float32, float16 or float64 in C order)",
                          z->path, name, fortran && es ? "Fortran order" : descr);
        goto out;
    }
    uint64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] && numel > ((uint64_t)1 << 40) / (uint64_t)shape[d]) {
            numel = UINT64_MAX;
            break;
        }
        numel *= (uint64_t)shape[d];
    }
    uint64_t data = hs + hl;
    if (numel == UINT64_MAX || numel * es != n - data) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: array '%s': its data does not match its shape (truncated?)", z->path, name);
        goto out;
    }
    if (!(t = lp_tensor_zeros(ndim, shape, LP_DEVICE_CPU)))
        goto out;
    const uint8_t *d = b + data;
    for (uint64_t i = 0; i < numel; i++) {
        if (es == 4) {
            memcpy(&t->data[i], d + 4 * i, 4);
        } else if (es == 8) {
            double v;
            memcpy(&v, d + 8 * i, 8);
            t->data[i] = (float)v;
        } else {
            t->data[i] = f16_to_f32(u16(d + 2 * i));
        }
    }
out:
    free(owned);
    return t;
}
