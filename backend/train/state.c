/* Saving and restoring the optimizer state (the AdamW moments and the step count) for
 * resuming a run: a safetensors file with "exp_avg.<name>" and "exp_avg_sq.<name>" per
 * parameter, shaped like the parameter, and __metadata__ {"format": "loupe-adamw",
 * "step": "<n>"}. The weights themselves are a checkpoint of their own (the model's). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/safetensors.h"
#include "train/train_impl.h"

#define FORMAT "loupe-adamw"

/* A view of n floats at off of a 1-D tensor, in the shape of w. */
static lp_tensor *view(const lp_tensor *flat, const lp_tparam *p)
{
    lp_tensor *s = lp_tensor_slice(flat, 0, (int64_t)p->off, (int64_t)(p->off + p->n), 1);
    lp_tensor *r = s ? lp_tensor_reshape(s, p->w->ndim, p->w->shape) : NULL;
    lp_tensor_free(s);
    return r;
}

int lp_trainer_save_state(lp_trainer *t, const char *path)
{
    size_t n = 2 * t->np;
    if (lp_trainer_moments_to_host(t) < 0)
        return -1;
    char **names = lp_calloc(n ? n : 1, sizeof *names, "the optimizer state");
    lp_tensor **ts = lp_calloc(n ? n : 1, sizeof *ts, "the optimizer state");
    int rc = -1;
    if (!names || !ts) {
        lp_set_error_code(LP_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < t->np; i++)
        for (int k = 0; k < 2; k++) {
            size_t j = 2 * i + (size_t)k;
            size_t len = strlen(t->p[i].name) + 16;
            if (!(names[j] = lp_malloc(len, "the optimizer state")) ||
                !(ts[j] = view(k ? t->vel_t : t->mom_t, &t->p[i]))) {
                if (!names[j])
                    lp_set_error_code(LP_ERR_NOMEM, "out of memory");
                goto done;
            }
            snprintf(names[j], len, "%s.%s", k ? "exp_avg_sq" : "exp_avg", t->p[i].name);
        }
    char step[32];
    snprintf(step, sizeof step, "%d", t->steps);
    const char *keys[] = {"format", "step"}, *vals[] = {FORMAT, step};
    rc = lp_safetensors_write(path, (const char *const *)names, (const lp_tensor *const *)ts, n, LP_DTYPE_F32, keys,
                              vals, 2);
done:
    for (size_t j = 0; names && ts && j < n; j++)
        free(names[j]), lp_tensor_free(ts[j]);
    free(names);
    free(ts);
    return rc;
}

static const lp_st_entry *find(const lp_safetensors *st, const lp_tparam *p, int second, const char *path)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", second ? "exp_avg_sq" : "exp_avg", p->name);
    const lp_st_entry *e = lp_safetensors_find(st, name);
    if (!e) {
        lp_set_error("%s: optimizer state for '%s' is missing (saved from another model?)", path, p->name);
        return NULL;
    }
    int same = e->ndim == p->w->ndim;
    for (int d = 0; same && d < e->ndim; d++)
        same = e->shape[d] == p->w->shape[d];
    if (!same) {
        char a[64], b[64];
        lp_set_error("%s: '%s' has shape %s, the parameter %s", path, name, lp_shape_str(e->ndim, e->shape, a, sizeof a),
                     lp_tensor_shape_str(p->w, b, sizeof b));
        return NULL;
    }
    return e;
}

int lp_trainer_load_state(lp_trainer *t, const char *path)
{
    lp_safetensors *st = lp_safetensors_open(path);
    if (!st)
        return -1;
    int rc = -1;
    const char *fmt = lp_safetensors_meta(st, "format"), *step = lp_safetensors_meta(st, "step");
    if (!fmt || strcmp(fmt, FORMAT) != 0 || !step) {
        lp_set_error("%s: not a loupe optimizer state (no \"format\": \"" FORMAT "\" and step in its metadata)", path);
        goto done;
    }
    char *end;
    errno = 0;
    long s = strtol(step, &end, 10);
    if (errno || *end || end == step || s < 0 || s > (1L << 30)) {
        lp_set_error("%s: step '%s' is not a step count", path, step);
        goto done;
    }
    /* every entry checked before anything changes */
    for (size_t i = 0; i < t->np; i++)
        if (!find(st, &t->p[i], 0, path) || !find(st, &t->p[i], 1, path))
            goto done;
    /* a device trainer's moments go through its host copies, made first */
    if (lp_trainer_moments_to_host(t) < 0)
        goto done;
    for (size_t i = 0; i < t->np; i++) /* converted in place: nothing here can fail */
        for (int k = 0; k < 2; k++) {
            const lp_st_entry *e = find(st, &t->p[i], k, path);
            const void *src = lp_safetensors_bytes(st, e);
            float *dst = (k ? t->vel_t : t->mom_t)->data + t->p[i].off;
            if (e->dtype == LP_DTYPE_F32)
                memcpy(dst, src, t->p[i].n * sizeof(float));
            else if (e->dtype == LP_DTYPE_BF16)
                lp_bf16_to_f32(dst, src, t->p[i].n);
            else
                lp_f16_to_f32(dst, src, t->p[i].n);
        }
    if (t->be && (t->be->to_device(t->mom, t->mom_t->data, t->total * sizeof(float)) < 0 ||
                  t->be->to_device(t->vel, t->vel_t->data, t->total * sizeof(float)) < 0))
        goto done; /* the moments on the device may be half written: the error says so */
    t->steps = (int)s;
    t->micro = 0, t->loss_sum = 0, t->dirty = 1;
    rc = 0;
done:
    lp_safetensors_close(st);
    return rc;
}
