/* Single-file and sharded safetensors checkpoints of a folder. See weights.h. */
#include "model/weights.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"

struct lp_weights {
    char *folder;
    lp_safetensors **files;
    size_t nfiles;
    char source[64];
};

static char *join(const char *folder, const char *name)
{
    size_t n = strlen(folder) + strlen(name) + 2;
    char *p = lp_malloc(n, "the weights' files");
    if (p)
        snprintf(p, n, "%s/%s", folder, name);
    return p;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static int add_file(lp_weights *w, const char *name)
{
    char *path = join(w->folder, name);
    if (!path)
        return lp_set_error_code(LP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < w->nfiles; i++)
        if (!strcmp(lp_safetensors_path(w->files[i]), path)) {
            free(path);
            return (int)i;
        }
    lp_safetensors *st = lp_safetensors_open(path);
    free(path);
    if (!st)
        return -1;
    lp_safetensors **nf = lp_realloc(w->files, (w->nfiles + 1) * sizeof *nf, "the weights' files");
    if (!nf) {
        lp_safetensors_close(st);
        return lp_set_error_code(LP_ERR_NOMEM, "out of memory");
    }
    w->files = nf;
    w->files[w->nfiles] = st;
    return (int)w->nfiles++;
}

static int open_index(lp_weights *w, const char *index_path)
{
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: not valid JSON: %s (line %d)", index_path, jerr.text, jerr.line);
    int rc = -1;
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map)) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: no \"weight_map\" object", index_path);
        goto out;
    }
    const char *name;
    json_t *file;
    json_object_foreach(map, name, file) {
        const char *fn = json_string_value(file);
        if (!fn || !fn[0] || strchr(fn, '/') || !strcmp(fn, ".") || !strcmp(fn, "..")) {
            lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s' maps to %s, not a file name in the folder", index_path,
                              name, fn ? fn : "a non-string");
            goto out;
        }
        int i = add_file(w, fn);
        if (i < 0)
            goto out;
        if (!lp_safetensors_find(w->files[i], name)) {
            lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s' is listed in %s but missing from that file", index_path,
                              name, fn);
            goto out;
        }
    }
    if (w->nfiles == 0) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: the weight map is empty", index_path);
        goto out;
    }
    snprintf(w->source, sizeof w->source, "%zu shards", w->nfiles);
    rc = 0;
out:
    json_decref(root);
    return rc;
}

lp_weights *lp_weights_open(const char *folder)
{
    lp_weights *w = lp_calloc(1, sizeof *w, "the weights' files");
    if (!w || !(w->folder = lp_strdup(folder, "the weights' files"))) {
        free(w);
        lp_set_error_code(LP_ERR_NOMEM, "out of memory");
        return NULL;
    }
    char *single = join(folder, "model.safetensors"), *index = join(folder, "model.safetensors.index.json");
    int rc = -1;
    if (!single || !index)
        lp_set_error_code(LP_ERR_NOMEM, "out of memory");
    else if (exists(single)) {
        rc = add_file(w, "model.safetensors") < 0 ? -1 : 0;
        snprintf(w->source, sizeof w->source, "model.safetensors");
    } else if (exists(index))
        rc = open_index(w, index);
    else
        lp_set_error_code(LP_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json (loupe reads "
                     "safetensors checkpoints only)", folder);
    free(single);
    free(index);
    if (rc < 0) {
        lp_weights_close(w);
        return NULL;
    }
    return w;
}

void lp_weights_close(lp_weights *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->nfiles; i++)
        lp_safetensors_close(w->files[i]);
    free(w->files);
    free(w->folder);
    free(w);
}

const lp_st_entry *lp_weights_find(const lp_weights *w, const char *name, const lp_safetensors **file)
{
    for (size_t i = 0; i < w->nfiles; i++) {
        const lp_st_entry *e = lp_safetensors_find(w->files[i], name);
        if (e) {
            if (file)
                *file = w->files[i];
            return e;
        }
    }
    return NULL;
}

size_t lp_weights_count(const lp_weights *w)
{
    size_t n = 0;
    for (size_t i = 0; i < w->nfiles; i++)
        n += lp_safetensors_count(w->files[i]);
    return n;
}

const char *lp_weights_name(const lp_weights *w, size_t i)
{
    for (size_t f = 0; f < w->nfiles; f++) {
        size_t c = lp_safetensors_count(w->files[f]);
        if (i < c)
            return lp_safetensors_entry(w->files[f], i)->name;
        i -= c;
    }
    return NULL;
}

const char *lp_weights_source(const lp_weights *w) { return w->source; }

lp_tensor *lp_weights_get(const lp_weights *w, const char *name, int ndim, const int64_t *shape,
                          lp_device dev)
{
    const lp_safetensors *st = NULL;
    const lp_st_entry *e = lp_weights_find(w, name, &st);
    if (!e) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s' is missing (looked in %s)", w->folder, name, w->source);
        return NULL;
    }
    if (ndim > 0) {
        int ok = e->ndim == ndim;
        for (int i = 0; ok && i < ndim; i++)
            ok = e->shape[i] == shape[i];
        if (!ok) {
            char a[96], b[96];
            lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", lp_safetensors_path(st), name,
                         lp_shape_str(e->ndim, e->shape, a, sizeof a), lp_shape_str(ndim, shape, b, sizeof b));
            return NULL;
        }
    }
    return lp_safetensors_tensor(st, e, dev);
}
