/* Helpers of the dictionary files (io_impl.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "dict/io_impl.h"

char *lp_dict_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = lp_malloc(n, "a file name");
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int lp_dict_mkdir(const char *dir)
{
    char *p = lp_strdup(dir, "a folder name");
    if (!p)
        return -1;
    int rc = 0;
    size_t n = strlen(p);
    for (size_t i = 1; i <= n && rc == 0; i++) {
        if (p[i] != '/' && p[i] != 0)
            continue;
        char saved = p[i];
        p[i] = 0;
        struct stat sb;
        if (stat(p, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode))
                rc = lp_set_error_code(LP_ERR_IO, "'%s' is not a folder", p);
        } else if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            rc = lp_set_error_code(LP_ERR_IO, "cannot create the folder '%s': %s", p, strerror(errno));
        }
        p[i] = saved;
    }
    free(p);
    return rc;
}

char *lp_dict_read_text(const char *path, size_t max, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        lp_set_error_code(LP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = lp_malloc(max + 1, "a configuration file");
    size_t got = buf ? fread(buf, 1, max + 1, f) : 0;
    int err = ferror(f);
    fclose(f);
    if (!buf)
        return NULL;
    if (err || got > max) {
        free(buf);
        lp_set_error_code(err ? LP_ERR_IO : LP_ERR_FORMAT, "%s: %s", path,
                          err ? "cannot read" : "larger than a configuration file can be");
        return NULL;
    }
    buf[got] = 0;
    *n = got;
    return buf;
}

const char *lp_dict_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
    return buf;
}

lp_tensor *lp_dict_tensor(const lp_safetensors *st, const char *name, int ndim, const int64_t *shape,
                          int *absent)
{
    const lp_st_entry *e = lp_safetensors_find(st, name);
    if (absent)
        *absent = !e;
    if (!e) {
        if (!absent)
            lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s' is missing", lp_safetensors_path(st), name);
        return NULL;
    }
    int same = e->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = e->shape[d] == shape[d];
    if (!same) {
        char got[128], want[128];
        lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", lp_safetensors_path(st), name,
                          lp_dict_shape_str(got, sizeof got, e->ndim, e->shape),
                          lp_dict_shape_str(want, sizeof want, ndim, shape));
        return NULL;
    }
    lp_tensor *t = lp_safetensors_tensor(st, e, LP_DEVICE_CPU);
    if (!t)
        lp_error_prefix("%s: tensor '%s': ", lp_safetensors_path(st), name);
    return t;
}

int lp_dict_no_extra(const lp_safetensors *st, const char *const *names, int n)
{
    for (size_t i = 0; i < lp_safetensors_count(st); i++) {
        const char *have = lp_safetensors_entry(st, i)->name;
        int known = 0;
        for (int j = 0; j < n && !known; j++)
            known = names[j] && !strcmp(names[j], have);
        if (!known)
            return lp_set_error_code(LP_ERR_FORMAT, "%s: unexpected tensor '%s'", lp_safetensors_path(st), have);
    }
    return 0;
}

int lp_dict_hook_layer(const char *hook)
{
    if (!hook || strncmp(hook, "blocks.", 7) != 0)
        return -1;
    char *end;
    long l = strtol(hook + 7, &end, 10);
    return end != hook + 7 && *end == '.' && l >= 0 && l < 100000 ? (int)l : -1;
}

lp_sae *lp_dict_folded(const lp_sae *s)
{
    if (!(s->scale > 0) || !isfinite(s->scale)) {
        lp_set_error("the normalisation scale %g is not a positive number", s->scale);
        return NULL;
    }
    lp_sae *c = lp_sae_clone(s);
    if (!c)
        return NULL;
    float k = s->scale;
    int64_t ne = lp_tensor_numel(c->W_enc), nd = lp_tensor_numel(c->W_dec), nb = lp_tensor_numel(c->b_dec);
    for (int64_t i = 0; i < ne; i++)
        c->W_enc->data[i] *= k;
    for (int64_t i = 0; i < nd; i++)
        c->W_dec->data[i] /= k;
    for (int64_t i = 0; i < nb; i++)
        c->b_dec->data[i] /= k;
    c->scale = 1.0f;
    return c;
}

lp_tensor *lp_dict_transpose(const lp_tensor *t)
{
    int64_t r = t->shape[0], c = t->shape[1];
    lp_tensor *o = lp_tensor_zeros(2, (int64_t[]){c, r}, LP_DEVICE_CPU);
    if (!o)
        return NULL;
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < c; j++)
            o->data[j * r + i] = t->data[i * c + j];
    return o;
}
