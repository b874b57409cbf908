/* A harvest's file, loupe_harvest.safetensors beside the dictionary's weights (harvest.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "dict/harvest.h"
#include "dict/io_impl.h"

#define HARVEST_FILE "loupe_harvest.safetensors"

enum { EXF = 3 + 2 * LP_HARVEST_W, NEX = 1 + LP_HARVEST_INTERVALS, NT = 7 };

static const char *const NAMES[NT] = {"count", "max", "hist", "examples", "n_examples", "intervals", "corr"};

static void put_example(float *o, const lp_harvest_example *e)
{
    o[0] = e->value, o[1] = (float)e->window, o[2] = (float)e->pos;
    for (int k = 0; k < LP_HARVEST_W; k++)
        o[3 + k] = (float)e->tok[k], o[3 + LP_HARVEST_W + k] = e->act[k];
}

int lp_harvest_save(const lp_harvest *h, const char *dir)
{
    char *path = NULL;
    int rc = -1;
    if (lp_dict_mkdir(dir) == 0 && (path = lp_dict_join(dir, HARVEST_FILE)))
        rc = lp_harvest_save_file(h, path);
    free(path);
    return rc;
}

int lp_harvest_save_file(const lp_harvest *h, const char *path)
{
    int64_t d = h->d_sae;
    int64_t shapes[NT][3] = {{d}, {d}, {d, LP_HARVEST_HIST}, {d, LP_HARVEST_EXAMPLES, EXF}, {d, NEX},
                             {d, LP_HARVEST_INTERVALS, 3}, {d, LP_HARVEST_CORR, 2}};
    static const int ndim[NT] = {1, 1, 2, 3, 2, 3, 3};
    lp_tensor *t[NT] = {0};
    int rc = -1;
    for (int k = 0; k < NT; k++)
        if (!(t[k] = lp_tensor_empty_for("the harvest file", ndim[k], shapes[k], LP_DEVICE_CPU)))
            goto out;
    for (int64_t i = 0; i < d; i++) {
        t[0]->data[i] = (float)h->count[i];
        t[1]->data[i] = h->max[i];
        for (int b = 0; b < LP_HARVEST_HIST; b++)
            t[2]->data[i * LP_HARVEST_HIST + b] = (float)h->hist[i * LP_HARVEST_HIST + b];
        for (int e = 0; e < LP_HARVEST_EXAMPLES; e++)
            put_example(t[3]->data + (i * LP_HARVEST_EXAMPLES + e) * EXF, &h->ex[i * LP_HARVEST_EXAMPLES + e]);
        t[4]->data[i * NEX] = (float)h->n_top[i];
        for (int k = 0; k < LP_HARVEST_INTERVALS; k++) {
            const lp_harvest_interval *v = &h->iv[i * LP_HARVEST_INTERVALS + k];
            t[4]->data[i * NEX + 1 + k] = (float)v->n;
            float *o = t[5]->data + (i * LP_HARVEST_INTERVALS + k) * 3;
            o[0] = v->lo, o[1] = v->hi, o[2] = (float)v->count;
        }
        for (int k = 0; k < LP_HARVEST_CORR; k++) {
            t[6]->data[(i * LP_HARVEST_CORR + k) * 2] = (float)h->corr[i * LP_HARVEST_CORR + k];
            t[6]->data[(i * LP_HARVEST_CORR + k) * 2 + 1] = h->corr_score[i * LP_HARVEST_CORR + k];
        }
    }
    char ntok[32], ctx[32], wins[32];
    snprintf(ntok, sizeof ntok, "%lld", (long long)h->n_tokens);
    snprintf(ctx, sizeof ctx, "%d", h->ctx);
    snprintf(wins, sizeof wins, "%lld", (long long)h->windows);
    const char *mk[5] = {"loupe_harvest", "n_tokens", "ctx", "windows", "hook"};
    const char *mv[5] = {"1", ntok, ctx, wins, h->hook};
    rc = lp_safetensors_write(path, NAMES, (const lp_tensor *const *)t, NT, LP_DTYPE_F32, mk, mv, 5);
out:
    for (int k = 0; k < NT; k++)
        lp_tensor_free(t[k]);
    return rc;
}

int lp_harvest_exists(const char *dir)
{
    char *path = lp_dict_join(dir, HARVEST_FILE);
    int ok = path && access(path, F_OK) == 0;
    free(path);
    return ok;
}

static int meta_int(const lp_safetensors *st, const char *key, long long lo, long long *out)
{
    const char *v = lp_safetensors_meta(st, key);
    char *end;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || end == v || *end || x < lo)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: metadata '%s' is missing or not a number",
                                 lp_safetensors_path(st), key);
    *out = x;
    return 0;
}

/* A stored integer: finite, whole, in [lo, hi]. */
static int whole(float v, double lo, double hi)
{
    return isfinite(v) && v == floorf(v) && v >= lo && v <= hi;
}

lp_harvest *lp_harvest_load(const char *dir, int d_sae)
{
    char *path = lp_dict_join(dir, HARVEST_FILE);
    lp_harvest *h = path ? lp_harvest_load_file(path, d_sae) : NULL;
    free(path);
    return h;
}

lp_harvest *lp_harvest_load_file(const char *path, int d_sae)
{
    int64_t d = d_sae;
    int64_t shapes[NT][3] = {{d}, {d}, {d, LP_HARVEST_HIST}, {d, LP_HARVEST_EXAMPLES, EXF}, {d, NEX},
                             {d, LP_HARVEST_INTERVALS, 3}, {d, LP_HARVEST_CORR, 2}};
    static const int ndim[NT] = {1, 1, 2, 3, 2, 3, 3};
    lp_tensor *t[NT] = {0};
    lp_harvest *h = NULL;
    lp_safetensors *st = lp_safetensors_open(path);
    int ok = 0;
    long long ntok, ctx, wins;
    if (!st)
        goto out;
    if (meta_int(st, "n_tokens", 1, &ntok) < 0 || meta_int(st, "ctx", 2, &ctx) < 0 ||
        meta_int(st, "windows", 1, &wins) < 0 || ctx > (1 << 24))
        goto out;
    for (int k = 0; k < NT; k++)
        if (!(t[k] = lp_dict_tensor(st, NAMES[k], ndim[k], shapes[k], NULL)))
            goto out;
    if (!(h = lp_harvest_alloc(d_sae)))
        goto out;
    h->n_tokens = ntok, h->ctx = (int)ctx, h->windows = wins;
    const char *hook = lp_safetensors_meta(st, "hook");
    snprintf(h->hook, sizeof h->hook, "%s", hook ? hook : "");
    const char *bad = NULL;
    for (int64_t i = 0; i < d && !bad; i++) {
        h->count[i] = t[0]->data[i], h->max[i] = t[1]->data[i];
        if (!whole(t[0]->data[i], 0, (double)ntok) || !(h->max[i] >= 0) || !isfinite(h->max[i]))
            bad = "count or max";
        for (int b = 0; b < LP_HARVEST_HIST; b++)
            h->hist[i * LP_HARVEST_HIST + b] = t[2]->data[i * LP_HARVEST_HIST + b];
        const float *ne = t[4]->data + i * NEX;
        if (!whole(ne[0], 0, LP_HARVEST_TOP))
            bad = "n_examples";
        h->n_top[i] = (int)ne[0];
        for (int e = 0; e < LP_HARVEST_EXAMPLES; e++) {
            const float *o = t[3]->data + (i * LP_HARVEST_EXAMPLES + e) * EXF;
            lp_harvest_example *x = &h->ex[i * LP_HARVEST_EXAMPLES + e];
            if (!whole(o[1], 0, 16777216.0) || !whole(o[2], 0, (double)ctx) || !isfinite(o[0]))
                bad = "examples";
            x->value = o[0], x->window = (int32_t)o[1], x->pos = (int32_t)o[2];
            for (int k = 0; k < LP_HARVEST_W; k++) {
                if (!whole(o[3 + k], -1, 16777216.0) || !isfinite(o[3 + LP_HARVEST_W + k]))
                    bad = "examples";
                x->tok[k] = (int32_t)o[3 + k], x->act[k] = o[3 + LP_HARVEST_W + k];
            }
        }
        for (int k = 0; k < LP_HARVEST_INTERVALS; k++) {
            lp_harvest_interval *v = &h->iv[i * LP_HARVEST_INTERVALS + k];
            const float *o = t[5]->data + (i * LP_HARVEST_INTERVALS + k) * 3;
            if (!whole(ne[1 + k], 0, LP_HARVEST_SAMPLES) || !isfinite(o[0]) || !isfinite(o[1]) || !(o[2] >= 0))
                bad = "intervals";
            v->n = (int)ne[1 + k], v->lo = o[0], v->hi = o[1], v->count = o[2];
        }
        for (int k = 0; k < LP_HARVEST_CORR; k++) {
            const float *o = t[6]->data + (i * LP_HARVEST_CORR + k) * 2;
            if (!whole(o[0], -1, (double)d - 1))
                bad = "corr";
            h->corr[i * LP_HARVEST_CORR + k] = (int32_t)o[0], h->corr_score[i * LP_HARVEST_CORR + k] = o[1];
        }
    }
    if (bad) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s' holds values out of range", path, bad);
        goto out;
    }
    ok = 1;
out:
    for (int k = 0; k < NT; k++)
        lp_tensor_free(t[k]);
    lp_safetensors_close(st);
    if (!ok) {
        lp_harvest_free(h);
        return NULL;
    }
    return h;
}
