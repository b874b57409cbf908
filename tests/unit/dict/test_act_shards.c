/* Activation shards (backend/dict/act_shards.c): a stream written to disk and read back gives
 * the stream's batches in order, cycling; bad shards are errors naming the file and tensor. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "dict/activations.h"
#include "model/safetensors.h"
#include "../model/random_model.h"

enum { D_ = 16, V_ = 37, CTX = 10, BATCH = 24 };
static const char *const HOOKS[] = {"blocks.0.mlp.hook_in", "blocks.0.mlp.hook_out"};
static char dir[64];

static void cleanup(void)
{
    char path[128];
    for (int i = 0; i < 8; i++) {
        snprintf(path, sizeof path, "%s/acts_%05d.safetensors", dir, i);
        unlink(path);
    }
    rmdir(dir);
}

static lp_act_stream *stream(const lp_model *m, const int32_t *tok, size_t n)
{
    lp_act_opts o = {.hooks = HOOKS, .nhooks = 2, .tokens = tok, .ntokens = n, .ctx = CTX, .batch = BATCH,
                     .buffer = 4, .seed = 9, .normalize = 1, .norm_batches = 2};
    lp_act_stream *s = lp_act_stream_new(m, &o);
    cr_assert_not_null(s, "%s", lp_last_error());
    return s;
}

Test(act_shards, written_and_read_back_in_order, .fini = cleanup)
{
    snprintf(dir, sizeof dir, "/tmp/lp_acts_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    lp_model *m = rm_model(0, 1, D_, 4, 4, V_, 5);
    int32_t tok[800];
    for (int i = 0; i < 800; i++)
        tok[i] = (i * 13 + i / 7) % V_;
    lp_act_stream *s = stream(m, tok, 800), *t = stream(m, tok, 800);
    cr_assert_eq(lp_act_stream_save(s, dir, 7, 3), 0, "%s", lp_last_error()); /* shards of 3, 3, 1 */
    lp_act_shards *r = lp_act_shards_open(dir, HOOKS, 2);
    cr_assert_not_null(r, "%s", lp_last_error());
    cr_assert_eq(lp_act_shards_batches(r), 7);
    cr_assert_eq(lp_act_shards_batch(r), BATCH);
    cr_assert_eq(lp_act_shards_dim(r, 1), D_);
    float a[BATCH * D_], b[BATCH * D_], x[BATCH * D_], y[BATCH * D_], first[BATCH * D_];
    float *got[2] = {a, b}, *want[2] = {x, y};
    for (int k = 0; k < 7; k++) {
        cr_assert_eq(lp_act_shards_next(r, got), 0, "%s", lp_last_error());
        cr_assert_eq(lp_act_stream_next(t, want), 0, "%s", lp_last_error());
        cr_assert_eq(memcmp(a, x, sizeof a), 0, "batch %d of hook 0 differs", k);
        cr_assert_eq(memcmp(b, y, sizeof b), 0, "batch %d of hook 1 differs", k);
        if (!k)
            memcpy(first, a, sizeof a);
    }
    cr_assert_eq(lp_act_shards_next(r, got), 0, "%s", lp_last_error());
    cr_assert_eq(memcmp(a, first, sizeof a), 0, "after the last shard comes the first");
    lp_act_shards_free(r);

    const char *other[] = {"blocks.0.hook_resid_post"};
    cr_assert_null(lp_act_shards_open(dir, other, 1));
    cr_assert(strstr(lp_last_error(), ".safetensors' has no tensor 'blocks.0.hook_resid_post'"), "%s",
              lp_last_error());
    /* a shard truncated */
    char path[128];
    snprintf(path, sizeof path, "%s/acts_00001.safetensors", dir);
    cr_assert_eq(truncate(path, 200), 0);
    cr_assert_null(lp_act_shards_open(dir, HOOKS, 2));
    cr_assert(strstr(lp_last_error(), "acts_00001.safetensors"), "%s", lp_last_error());
    cr_assert_null(lp_act_shards_open("/tmp/lp_no_such_acts", HOOKS, 2));
    cr_assert(strstr(lp_last_error(), "no shard in"), "%s", lp_last_error());
    lp_act_stream_free(s), lp_act_stream_free(t);
    lp_model_free(m);
}
