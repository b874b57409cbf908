/* Out of memory, everywhere: for each backend operation that allocates, the failing allocator
 * (lp_alloc_fail_after) makes its n-th checked allocation fail, for n = 0, 1, 2, ... until the
 * operation succeeds without the failure having happened. Every failure must return an error
 * with code LP_ERR_NOMEM and leave nothing behind (the ASan build checks for leaks), and none
 * may crash. An operation may also get over a failure (an optional cache): that is counted,
 * not failed. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/fixtures.h"
#include "../tokenizer/fixtures.h"
#include "core/error.h"
#include "data/dataset.h"
#include "helpers.h"
#include "model/model.h"
#include "tensor.h"
#include "tokenizer/tokenizer.h"
#include "train/train.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
/* Under the ASan build: 1 when memory is leaked now (LeakSanitizer prints where from). Criterion
 * does not fail a test for the report LeakSanitizer prints at exit, so the sweep asks. */
static int leaked(void) { return __lsan_do_recoverable_leak_check() != 0; }
#else
static int leaked(void) { return 0; }
#endif

/* An operation: 0 on success, -1 with the error set; frees everything it made either way. */
typedef int (*op_fn)(void *ctx);

typedef struct sweep_stats {
    long failures;  /* n at which the operation failed (each with LP_ERR_NOMEM) */
    long recovered; /* n at which an allocation failed and the operation succeeded anyway */
} sweep_stats;

static sweep_stats sweep(const char *name, op_fn op, void *ctx)
{
    sweep_stats s = {0, 0};
    for (long n = 0; n < 200000; n++) {
        lp_clear_error();
        lp_alloc_fail_after(n);
        int rc = op(ctx);
        int fired = lp_alloc_fail_fired();
        lp_alloc_fail_after(-1);
        if (rc < 0) {
            cr_assert(fired, "%s: failed at n = %ld without the planned failure: %s", name, n, lp_last_error());
            cr_assert_eq(lp_last_error_code(), LP_ERR_NOMEM, "%s: allocation %ld failed, and the error is '%s' (%s)",
                         name, n, lp_last_error(), lp_error_code_name(lp_last_error_code()));
            cr_assert(lp_last_error()[0], "%s: allocation %ld: an empty message", name, n);
            s.failures++;
        } else if (!fired) {
            cr_assert(s.failures > 0, "%s: no allocation failure made it fail (it allocates nothing checked?)", name);
            cr_assert(!leaked(), "%s: memory leaked (see LeakSanitizer's report above)", name);
            fprintf(stderr, "%s: %ld allocations, %ld failures reported, %ld recovered from\n", name, n, s.failures,
                    s.recovered);
            return s;
        } else {
            s.recovered++;
        }
    }
    cr_assert_fail("%s: never succeeded", name);
    return s;
}

/* ---- the operations ---- */

static int op_tensors(void *ctx)
{
    (void)ctx;
    int64_t shape[2] = {7, 5};
    lp_tensor *a = lp_tensor_zeros(2, shape, LP_DEVICE_CPU);
    lp_tensor *b = a ? lp_tensor_transpose(a, 0, 1) : NULL;
    lp_tensor *c = b ? lp_tensor_contiguous(b) : NULL;
    lp_tensor *d = c ? lp_tensor_clone(c) : NULL;
    int rc = d ? 0 : -1;
    lp_tensor_free(d), lp_tensor_free(c), lp_tensor_free(b), lp_tensor_free(a);
    return rc;
}

static int op_model_load(void *ctx)
{
    lp_model *m = lp_model_load(ctx);
    lp_model_free(m);
    return m ? 0 : -1;
}

typedef struct run_ctx {
    lp_model *m;
    int cache; /* 1: cache every hook point */
    int kv;    /* 1: through a key/value cache, in two steps */
} run_ctx;

static int op_run(void *p)
{
    run_ctx *c = p;
    int32_t tokens[2 * 6];
    for (int i = 0; i < 12; i++)
        tokens[i] = (i * 7 + 3) % c->m->cfg.d_vocab;
    lp_run_opts o = {.cache_all = c->cache};
    lp_run r;
    memset(&r, 0, sizeof r);
    if (!c->kv) {
        int rc = lp_model_run(c->m, tokens, 2, 6, &o, &r);
        lp_run_clear(&r);
        return rc;
    }
    lp_kv_cache *kv = lp_kv_cache_new(c->m, 1, 0);
    if (!kv)
        return -1;
    int rc = lp_model_run_cached(c->m, kv, tokens, 1, 4, &o, &r);
    lp_run_clear(&r);
    if (rc == 0)
        rc = lp_model_run_cached(c->m, kv, tokens + 4, 1, 2, &o, &r);
    lp_run_clear(&r);
    lp_kv_cache_free(kv);
    return rc;
}

static int op_train_step(void *p)
{
    lp_model *m = p;
    lp_train_opts o;
    lp_train_opts_default(&o);
    lp_trainer *t = lp_trainer_new(m, &o, 2, 4);
    if (!t)
        return -1;
    int32_t x[8], y[8];
    ttokens(x, y, 8, 5);
    float loss, gn, lr;
    int rc = lp_trainer_forward_backward(t, x, y, &loss);
    if (rc == 0)
        rc = lp_trainer_step(t, &gn, &lr);
    if (rc == 0)
        rc = lp_trainer_eval(t, x, y, &loss);
    lp_trainer_free(t);
    return rc;
}

static int op_tokenizer(void *ctx)
{
    lp_tokenizer *t = lp_tokenizer_load(ctx);
    if (!t)
        return -1;
    const char *text = "the theme of the other thesis: 12 + 345 = 357!";
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = lp_tokenizer_encode(t, text, strlen(text), 1, &ids, &n);
    char *back = rc == 0 ? lp_tokenizer_decode(t, ids, n, NULL) : NULL;
    if (rc == 0 && !back)
        rc = -1;
    free(back);
    free(ids);
    lp_tokenizer_free(t);
    return rc;
}

typedef struct data_ctx {
    lp_tokenizer *tok;
    const char *text;
} data_ctx;

static int op_dataset(void *p)
{
    data_ctx *c = p;
    lp_dataset *d = lp_dataset_from_text(c->tok, c->text, strlen(c->text));
    if (!d)
        return -1;
    lp_dataset *tr = NULL, *va = NULL;
    int rc = lp_dataset_split(d, 0.25, &tr, &va);
    if (rc == 0) {
        lp_rng g;
        lp_rng_seed(&g, 3);
        int32_t x[2 * 3], y[2 * 3];
        rc = lp_dataset_batch(tr, &g, 2, 3, x, y);
    }
    lp_dataset_free(tr), lp_dataset_free(va), lp_dataset_free(d);
    return rc;
}

typedef struct save_ctx {
    lp_model *m;
    lp_tokenizer *tok;
    char dir[64];
} save_ctx;

static int op_save_load(void *p)
{
    save_ctx *c = p;
    char folder[128];
    snprintf(folder, sizeof folder, "%s/saved", c->dir);
    int rc = lp_model_save(c->m, folder, c->tok);
    if (rc == 0) {
        lp_model *back = lp_model_load(folder);
        rc = back ? 0 : -1;
        lp_model_free(back);
    }
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", folder);
    cr_assert_eq(system(cmd), 0);
    return rc;
}

/* ---- the tests ---- */

Test(nomem, tensors) { sweep("tensors", op_tensors, NULL); }

Test(nomem, model_load)
{
    for (int llama = 0; llama < 2; llama++) {
        char dir[64];
        fx_make(dir, &(fx_opts){.llama = llama});
        sweep(llama ? "load llama" : "load gpt2", op_model_load, dir);
        fx_remove(dir);
    }
}

Test(nomem, model_run)
{
    lp_model_config cfgs[2] = {tcfg_gpt2(0, LP_GELU_TANH), tcfg_llama(0, 2, 0)};
    for (int a = 0; a < 2; a++) {
        lp_model *m = tmodel(&cfgs[a], 11);
        char name[64];
        for (int mode = 0; mode < 3; mode++) {
            run_ctx c = {m, mode >= 1, mode == 2};
            snprintf(name, sizeof name, "%s run%s", a ? "llama" : "gpt2",
                     mode == 0 ? "" : mode == 1 ? " with cache" : " with a key/value cache");
            sweep(name, op_run, &c);
        }
        lp_model_free(m);
    }
}

Test(nomem, train_step)
{
    lp_model_config cfgs[2] = {tcfg_gpt2(0, LP_GELU_TANH), tcfg_llama(1, 2, 1)};
    for (int a = 0; a < 2; a++) {
        lp_model *m = tmodel(&cfgs[a], 12);
        sweep(a ? "llama training step" : "gpt2 training step", op_train_step, m);
        lp_model_free(m);
    }
}

Test(nomem, tokenizer)
{
    char *gpt2 = tf_gpt2_folder(), *json = tf_json_folder();
    sweep("tokenizer vocab.json + merges.txt", op_tokenizer, gpt2);
    sweep("tokenizer.json", op_tokenizer, json);
    tf_rmdir(gpt2), tf_rmdir(json);
}

Test(nomem, dataset)
{
    char *dir = tf_json_folder();
    lp_tokenizer *tok = lp_tokenizer_load(dir);
    cr_assert_not_null(tok, "%s", lp_last_error());
    data_ctx c = {tok, "the theme of the thesis, then the other theme; the end. the start."};
    sweep("dataset from text", op_dataset, &c);
    lp_tokenizer_free(tok);
    tf_rmdir(dir);
}

Test(nomem, model_save)
{
    lp_model_config cfg = tcfg_llama(0, 2, 0);
    cfg.d_vocab = 261; /* the fixture tokenizer's */
    save_ctx c = {.m = tmodel(&cfg, 13)};
    char *tdir = tf_json_folder();
    c.tok = lp_tokenizer_load(tdir);
    cr_assert_not_null(c.tok, "%s", lp_last_error());
    snprintf(c.dir, sizeof c.dir, "/tmp/loupe-nomem-XXXXXX");
    cr_assert_not_null(mkdtemp(c.dir));
    sweep("model save and load", op_save_load, &c);
    rmdir(c.dir);
    lp_tokenizer_free(c.tok);
    lp_model_free(c.m);
    tf_rmdir(tdir);
}

/* The switch itself: the n-th allocation fails and only that one. */
Test(nomem, failing_allocator)
{
    lp_alloc_fail_after(2);
    void *a = lp_malloc(8, "a"), *b = lp_calloc(2, 4, "b"), *c = lp_malloc(8, "c"), *d = lp_strdup("d", "d");
    cr_assert(a && b && !c && d);
    cr_assert(lp_alloc_fail_fired());
    cr_assert_eq(lp_last_error_code(), LP_ERR_NOMEM);
    cr_assert(strstr(lp_last_error(), "cannot allocate 8 B for c"), "%s", lp_last_error());
    lp_alloc_fail_after(-1);
    cr_assert(!lp_alloc_fail_fired());
    void *e = lp_realloc(a, 64, "e");
    cr_assert_not_null(e);
    free(e), free(b), free(d);
}
