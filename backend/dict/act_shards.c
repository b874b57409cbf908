/* Activation shards on disk: a stream's batches written as safetensors files and read back
 * in order (see activations.h), so that a sweep harvests once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "dict/activations.h"
#include "model/safetensors.h"

#define MAXH 64

static void shard_path(char *buf, size_t cap, const char *dir, int64_t i)
{
    snprintf(buf, cap, "%s/acts_%05lld.safetensors", dir, (long long)i);
}

int lp_act_stream_save(lp_act_stream *s, const char *dir, int64_t nbatches, int64_t per_shard)
{
    size_t nh = lp_act_stream_nhooks(s);
    int64_t B = lp_act_stream_batch(s);
    if (nbatches < 1 || per_shard < 1)
        return lp_set_error("activations: save needs at least one batch and one batch per shard");
    if (nh > MAXH)
        return lp_set_error("activations: at most %d hooks to save", MAXH);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return lp_set_error("activations: cannot make the folder '%s': %s", dir, strerror(errno));
    int64_t n = per_shard < nbatches ? per_shard : nbatches;
    lp_tensor *t[MAXH] = {0};
    char keys[MAXH + 1][48], vals[MAXH + 1][32], path[4096];
    const char *kp[MAXH + 1], *vp[MAXH + 1], *names[MAXH];
    int rc = -1;
    for (size_t h = 0; h < nh; h++) {
        if (!(t[h] = lp_tensor_empty(2, (int64_t[]){n * B, lp_act_stream_dim(s, h)}, LP_DEVICE_CPU)))
            goto done;
        names[h] = lp_act_stream_hook(s, h);
        snprintf(keys[h], sizeof keys[h], "loupe_acts_scale.%zu", h);
        snprintf(vals[h], sizeof vals[h], "%.9g", (double)lp_act_stream_scale(s, h));
    }
    snprintf(keys[nh], sizeof keys[nh], "loupe_acts_batch");
    snprintf(vals[nh], sizeof vals[nh], "%lld", (long long)B);
    for (size_t i = 0; i <= nh; i++)
        kp[i] = keys[i], vp[i] = vals[i];
    for (int64_t done = 0, shard = 0; done < nbatches; shard++) {
        int64_t k = nbatches - done < n ? nbatches - done : n;
        for (int64_t b = 0; b < k; b++) {
            float *rows[MAXH];
            for (size_t h = 0; h < nh; h++)
                rows[h] = t[h]->data + b * B * t[h]->shape[1];
            if (lp_act_stream_next(s, rows) < 0)
                goto done;
        }
        lp_tensor *v[MAXH] = {0};
        int vrc = 0;
        for (size_t h = 0; h < nh; h++) /* the rows filled (a last, shorter shard) */
            if (!(v[h] = lp_tensor_slice(t[h], 0, 0, k * B, 1)))
                vrc = -1;
        shard_path(path, sizeof path, dir, shard);
        if (vrc == 0)
            vrc = lp_safetensors_write(path, names, (const lp_tensor *const *)v, nh, LP_DTYPE_F32, kp, vp, nh + 1);
        for (size_t h = 0; h < nh; h++)
            lp_tensor_free(v[h]);
        if (vrc < 0)
            goto done;
        done += k;
    }
    rc = 0;
done:
    for (size_t h = 0; h < nh; h++)
        lp_tensor_free(t[h]);
    return rc;
}

struct lp_act_shards {
    char *dir;
    size_t nh;
    char *names[MAXH];
    int64_t d[MAXH], batch, nshards, total;
    int64_t cur, row, rows; /* the mapped shard, the next row in it, its rows */
    lp_safetensors *st;
    const float *src[MAXH];
};

/* Maps shard i and checks it; sets r->src, rows. */
static int map_shard(lp_act_shards *r, int64_t i)
{
    char path[4096];
    shard_path(path, sizeof path, r->dir, i);
    lp_safetensors_close(r->st);
    r->st = lp_safetensors_open(path);
    if (!r->st)
        return -1;
    const char *b = lp_safetensors_meta(r->st, "loupe_acts_batch");
    int64_t batch = b ? strtoll(b, NULL, 10) : 0;
    if (batch < 1)
        return lp_set_error("activations: '%s' is no activation shard (no loupe_acts_batch)", path);
    if (r->batch && batch != r->batch)
        return lp_set_error("activations: '%s' has batches of %lld rows, the first shard %lld", path,
                            (long long)batch, (long long)r->batch);
    r->batch = batch;
    for (size_t h = 0; h < r->nh; h++) {
        const lp_st_entry *e = lp_safetensors_find(r->st, r->names[h]);
        if (!e)
            return lp_set_error("activations: '%s' has no tensor '%s'", path, r->names[h]);
        int64_t rows = e->ndim == 2 ? e->shape[0] : -1;
        if (e->dtype != LP_DTYPE_F32 || rows < batch || rows % batch || (h && rows != r->rows) ||
            (r->d[h] && e->shape[1] != r->d[h]))
            return lp_set_error("activations: '%s': tensor '%s' is %s of %d dims (%lld rows): f32 (rows x d) "
                                "expected, rows a multiple of %lld%s", path, r->names[h], lp_dtype_name(e->dtype),
                                e->ndim, (long long)rows, (long long)batch, h ? " and alike for every hook" : "");
        r->rows = rows;
        r->d[h] = e->shape[1];
        r->src[h] = lp_safetensors_bytes(r->st, e);
    }
    r->cur = i, r->row = 0;
    return 0;
}

lp_act_shards *lp_act_shards_open(const char *dir, const char *const *hooks, size_t nhooks)
{
    if (nhooks < 1 || nhooks > MAXH) {
        lp_set_error("activations: 1 to %d hooks to read", MAXH);
        return NULL;
    }
    lp_act_shards *r = lp_calloc(1, sizeof *r, "activation shards");
    if (!r || !(r->dir = lp_strdup(dir, "activation shards")))
        goto fail;
    r->nh = nhooks;
    for (size_t h = 0; h < nhooks; h++)
        if (!(r->names[h] = lp_strdup(hooks[h], "activation shards")))
            goto fail;
    char path[4096];
    struct stat sb;
    for (;; r->nshards++) {
        shard_path(path, sizeof path, dir, r->nshards);
        if (stat(path, &sb) != 0)
            break;
    }
    if (!r->nshards) {
        lp_set_error("activations: no shard in '%s' (acts_00000.safetensors)", dir);
        goto fail;
    }
    for (int64_t i = r->nshards - 1; i >= 0; i--) { /* every shard checked; the first left mapped */
        if (map_shard(r, i) < 0)
            goto fail;
        r->total += r->rows / r->batch;
    }
    return r;
fail:
    lp_act_shards_free(r);
    return NULL;
}

void lp_act_shards_free(lp_act_shards *r)
{
    if (!r)
        return;
    lp_safetensors_close(r->st);
    for (size_t h = 0; h < r->nh; h++)
        free(r->names[h]);
    free(r->dir);
    free(r);
}

int lp_act_shards_next(lp_act_shards *r, float *const *rows)
{
    if (lp_interrupt_check() < 0)
        return -1;
    if (r->row == r->rows && map_shard(r, (r->cur + 1) % r->nshards) < 0)
        return -1;
    for (size_t h = 0; h < r->nh; h++)
        memcpy(rows[h], r->src[h] + r->row * r->d[h], (size_t)(r->batch * r->d[h]) * sizeof(float));
    r->row += r->batch;
    return 0;
}

int64_t lp_act_shards_batch(const lp_act_shards *r) { return r->batch; }
int64_t lp_act_shards_dim(const lp_act_shards *r, size_t h) { return h < r->nh ? r->d[h] : 0; }
int64_t lp_act_shards_batches(const lp_act_shards *r) { return r->total; }
