/* Token datasets: shared token arrays, splits and random-window batches. */
#include "data/dataset.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "data/dataset_impl.h"
#include "data/text.h"

lp_dataset *lp_dataset_adopt(int32_t *ids, size_t n)
{
    lp_tok_store *s = lp_calloc(1, sizeof *s, "a dataset");
    lp_dataset *d = lp_calloc(1, sizeof *d, "a dataset");
    if (!s || !d) {
        free(s);
        free(d);
        free(ids);
        return NULL;
    }
    s->ids = ids;
    s->n = n;
    atomic_init(&s->refs, 1);
    d->store = s;
    d->off = 0;
    d->n = n;
    return d;
}

lp_dataset *lp_dataset_from_ids(const int32_t *ids, size_t n)
{
    if (n == 0) {
        lp_set_error("a dataset needs at least one token");
        return NULL;
    }
    int32_t *c = lp_malloc(n * sizeof *c, "dataset tokens");
    if (!c)
        return NULL;
    memcpy(c, ids, n * sizeof *c);
    return lp_dataset_adopt(c, n);
}

lp_dataset *lp_dataset_from_text(const lp_tokenizer *t, const char *text, size_t len)
{
    int32_t *ids;
    size_t n;
    if (len == 0) {
        lp_set_error("the text is empty");
        return NULL;
    }
    if (lp_tokenizer_encode(t, text, len, 0, &ids, &n) < 0)
        return NULL;
    if (n == 0) {
        free(ids);
        lp_set_error("the text gives no tokens");
        return NULL;
    }
    return lp_dataset_adopt(ids, n);
}

lp_dataset *lp_dataset_from_files(const lp_tokenizer *t, const char *const *paths, size_t nfiles)
{
    if (nfiles == 0) {
        lp_set_error("no data files given");
        return NULL;
    }
    int32_t eos = lp_tokenizer_eos(t);
    int32_t *all = NULL;
    size_t n = 0, cap = 0;
    for (size_t f = 0; f < nfiles; f++) {
        char *text;
        size_t len;
        int32_t *ids = NULL;
        size_t k = 0;
        if (lp_interrupt_check() < 0 || lp_text_read_file(paths[f], &text, &len) < 0)
            goto fail;
        int rc = lp_tokenizer_encode(t, text, len, 0, &ids, &k);
        free(text);
        if (rc < 0) {
            lp_error_prefix("%s: ", paths[f]);
            goto fail;
        }
        size_t need = n + k + 1;
        if (need > cap) {
            size_t nc = cap ? cap : 1024;
            while (nc < need)
                nc *= 2;
            int32_t *na = lp_realloc(all, nc * sizeof *na, "a dataset's tokens");
            if (!na) {
                free(ids);
                char b[32];
                lp_set_error_code(LP_ERR_NOMEM, "cannot allocate %s for the tokens of %s",
                                  lp_format_bytes(nc * 4, b, sizeof b), paths[f]);
                goto fail;
            }
            all = na;
            cap = nc;
        }
        memcpy(all + n, ids, k * sizeof *ids);
        n += k;
        free(ids);
        if (eos >= 0)
            all[n++] = eos;
    }
    if (n == 0) {
        lp_set_error("the data files give no tokens");
        goto fail;
    }
    return lp_dataset_adopt(all, n);
fail:
    free(all);
    return NULL;
}

void lp_dataset_free(lp_dataset *d)
{
    if (!d)
        return;
    if (atomic_fetch_sub(&d->store->refs, 1) == 1) {
        free(d->store->ids);
        free(d->store);
    }
    free(d);
}

size_t lp_dataset_size(const lp_dataset *d) { return d->n; }
const int32_t *lp_dataset_ids(const lp_dataset *d) { return d->store->ids + d->off; }

int32_t lp_dataset_max_id(const lp_dataset *d)
{
    const int32_t *ids = lp_dataset_ids(d);
    int32_t m = -1;
    for (size_t i = 0; i < d->n; i++)
        if (ids[i] > m)
            m = ids[i];
    return m;
}

static lp_dataset *view(const lp_dataset *d, size_t off, size_t n)
{
    lp_dataset *v = lp_calloc(1, sizeof *v, "a dataset");
    if (!v)
        return NULL;
    v->store = d->store;
    atomic_fetch_add(&d->store->refs, 1);
    v->off = d->off + off;
    v->n = n;
    return v;
}

int lp_dataset_split(const lp_dataset *d, double val_fraction, lp_dataset **train, lp_dataset **val)
{
    *train = *val = NULL;
    if (!(val_fraction > 0 && val_fraction < 1))
        return lp_set_error("the validation fraction must be between 0 and 1 (exclusive), not %g", val_fraction);
    size_t nv = (size_t)((double)d->n * val_fraction + 0.5);
    if (nv == 0 || nv >= d->n)
        return lp_set_error("a split of %zu tokens with validation fraction %g leaves a part empty", d->n, val_fraction);
    *train = view(d, 0, d->n - nv);
    *val = *train ? view(d, d->n - nv, nv) : NULL;
    if (!*val) {
        lp_dataset_free(*train);
        *train = NULL;
        return -1;
    }
    return 0;
}

int lp_dataset_batch(const lp_dataset *d, lp_rng *g, int64_t B, int64_t ctx, int32_t *inputs, int32_t *targets)
{
    if (B < 1 || ctx < 1)
        return lp_set_error("batch size and context must be at least 1 (got %lld and %lld)", (long long)B,
                            (long long)ctx);
    if ((uint64_t)ctx + 1 > d->n)
        return lp_set_error("the dataset has %zu tokens: too few for a window of context %lld + 1", d->n,
                            (long long)ctx);
    const int32_t *ids = lp_dataset_ids(d);
    uint64_t starts = d->n - (uint64_t)ctx; /* windows [s, s + ctx] with s in [0, n - ctx - 1] */
    for (int64_t b = 0; b < B; b++) {
        uint64_t s = lp_rng_below(g, starts);
        memcpy(inputs + b * ctx, ids + s, (size_t)ctx * sizeof *ids);
        memcpy(targets + b * ctx, ids + s + 1, (size_t)ctx * sizeof *ids);
    }
    return 0;
}
