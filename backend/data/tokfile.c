/* Token files: loupe's format and llm.c's (see dataset.h), read with every length checked. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/dataset_impl.h"

#define LLMC_MAGIC 20240520
#define LLMC_HEADER 256

static uint32_t rd32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

lp_dataset *lp_dataset_load_tokens(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        lp_set_error_code(LP_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    int32_t *ids = NULL;
    unsigned char *raw = NULL;
    unsigned char h[LLMC_HEADER * 4];
    fseek(f, 0, SEEK_END);
    long fsize = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (fsize < 0) {
        lp_set_error_code(LP_ERR_IO, "%s: cannot tell its size", path);
        goto fail;
    }
    size_t got = fread(h, 1, 32, f);
    uint64_t count, width, hdr;
    if (got >= 32 && memcmp(h, "LOUPETOK", 8) == 0) {
        uint32_t version = rd32(h + 8);
        width = rd32(h + 12);
        count = rd64(h + 16);
        hdr = 32;
        if (version != 1) {
            lp_set_error_code(LP_ERR_FORMAT, "%s: token file version %u is not supported (this build reads version 1)",
                              path, version);
            goto fail;
        }
        if (width != 2 && width != 4) {
            lp_set_error_code(LP_ERR_FORMAT, "%s: corrupt token file: token width %llu (must be 2 or 4)", path,
                              (unsigned long long)width);
            goto fail;
        }
    } else if (got >= 12 && rd32(h) == LLMC_MAGIC) {
        if (fread(h + 32, 1, sizeof h - 32, f) != sizeof h - 32) {
            lp_set_error_code(LP_ERR_FORMAT, "%s: corrupt llm.c token file: the header is truncated", path);
            goto fail;
        }
        if (rd32(h + 4) != 1) {
            lp_set_error_code(LP_ERR_FORMAT,
                              "%s: llm.c token file version %u is not supported (version 1: uint16 tokens)", path,
                              rd32(h + 4));
            goto fail;
        }
        width = 2;
        count = rd32(h + 8);
        hdr = sizeof h;
    } else {
        lp_set_error_code(LP_ERR_FORMAT, "%s: not a token file (no LOUPETOK or llm.c magic at the start)", path);
        goto fail;
    }
    if (count == 0) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: the token file holds no tokens", path);
        goto fail;
    }
    if (count > ((uint64_t)fsize - hdr) / width || (uint64_t)fsize != hdr + count * width) {
        lp_set_error_code(LP_ERR_FORMAT,
                          "%s: corrupt token file: the header says %llu tokens (%llu bytes) but %llu bytes follow it",
                          path, (unsigned long long)count, (unsigned long long)(count * width),
                          (unsigned long long)((uint64_t)fsize - hdr));
        goto fail;
    }
    ids = lp_malloc((size_t)count * sizeof *ids, "the tokens of a token file");
    raw = lp_malloc((size_t)(count * width), "a token file");
    if (!ids || !raw)
        goto fail;
    if (fseek(f, (long)hdr, SEEK_SET) != 0 || fread(raw, 1, (size_t)(count * width), f) != count * width) {
        lp_set_error_code(LP_ERR_IO, "%s: read error", path);
        goto fail;
    }
    for (size_t i = 0; i < count; i++) {
        uint32_t v = width == 2 ? (uint32_t)(raw[2 * i] | raw[2 * i + 1] << 8) : rd32(raw + 4 * i);
        if (v > INT32_MAX) {
            lp_set_error_code(LP_ERR_FORMAT, "%s: corrupt token file: token %zu has id %u", path, i, v);
            goto fail;
        }
        ids[i] = (int32_t)v;
    }
    free(raw);
    fclose(f);
    return lp_dataset_adopt(ids, (size_t)count);
fail:
    free(ids);
    free(raw);
    fclose(f);
    return NULL;
}

int lp_dataset_save_tokens(const lp_dataset *d, const char *path, lp_tokfile_format fmt)
{
    const int32_t *ids = lp_dataset_ids(d);
    size_t n = lp_dataset_size(d);
    int32_t maxid = lp_dataset_max_id(d);
    int width = maxid < 65536 ? 2 : 4;
    if (fmt == LP_TOKFILE_LLMC && (width != 2 || n > UINT32_MAX))
        return lp_set_error("%s: llm.c's token format holds uint16 ids and < 2^32 tokens (largest id here: %ld)", path,
                            (long)maxid);
    unsigned char h[LLMC_HEADER * 4];
    memset(h, 0, sizeof h);
    size_t hdr;
    if (fmt == LP_TOKFILE_LLMC) {
        wr32(h, LLMC_MAGIC);
        wr32(h + 4, 1);
        wr32(h + 8, (uint32_t)n);
        hdr = sizeof h;
    } else {
        memcpy(h, "LOUPETOK", 8);
        wr32(h + 8, 1);
        wr32(h + 12, (uint32_t)width);
        wr32(h + 16, (uint32_t)n);
        wr32(h + 20, (uint32_t)((uint64_t)n >> 32));
        wr32(h + 24, (uint32_t)(maxid + 1));
        hdr = 32;
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return lp_set_error_code(LP_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    int ok = fwrite(h, 1, hdr, f) == hdr;
    unsigned char buf[4096];
    size_t per = sizeof buf / (size_t)width;
    for (size_t i = 0; i < n && ok; i += per) {
        size_t k = n - i < per ? n - i : per;
        for (size_t j = 0; j < k; j++) {
            uint32_t v = (uint32_t)ids[i + j];
            if (width == 2) {
                buf[2 * j] = (unsigned char)v;
                buf[2 * j + 1] = (unsigned char)(v >> 8);
            } else {
                wr32(buf + 4 * j, v);
            }
        }
        ok = fwrite(buf, (size_t)width, k, f) == k;
    }
    if (fclose(f) != 0)
        ok = 0;
    if (!ok)
        return lp_set_error_code(LP_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    return 0;
}
