/* Test-only driver for tests/peer/test_peer_sae_evals.py: trains a small TopK SAE briefly on
 * a model's activations (so that it is not degenerate) and saves it in SAELens' layout.
 *
 *   sae_tool MODEL_DIR CORPUS.txt HOOK D_SAE K STEPS OUT_DIR IDS.txt
 *
 * The corpus is tokenized with the model's tokenizer; its ids are written to IDS.txt (one per
 * line) so that both tools evaluate the same tokens. Activations: loupe's stream (ctx 64, BOS
 * first, BOS/EOS positions left out), batches of 1024. Errors go to stderr, exit status 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/dataset.h"
#include "dict/activations.h"
#include "dict/sae_io.h"
#include "dict/sae_train.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

static int fail(void)
{
    fprintf(stderr, "sae_tool: %s\n", lp_last_error());
    return 2;
}

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr, "usage: sae_tool MODEL_DIR CORPUS.txt HOOK D_SAE K STEPS OUT_DIR IDS.txt\n");
        return 2;
    }
    lp_model *m = lp_model_load(argv[1]);
    lp_tokenizer *tok = m ? lp_tokenizer_load(argv[1]) : NULL;
    const char *paths[] = {argv[2]};
    lp_dataset *ds = tok ? lp_dataset_from_files(tok, paths, 1) : NULL;
    if (!ds)
        return fail();
    FILE *f = fopen(argv[8], "w");
    if (!f)
        return fprintf(stderr, "sae_tool: cannot write %s\n", argv[8]), 2;
    for (size_t i = 0; i < lp_dataset_size(ds); i++)
        fprintf(f, "%d\n", lp_dataset_ids(ds)[i]);
    fclose(f);
    const char *hooks[] = {argv[3]};
    lp_act_opts ao = {.hooks = hooks, .nhooks = 1, .data = ds, .ctx = 64, .batch = 1024, .buffer = 8, .seed = 1,
                      .prepend_bos = m->cfg.bos >= 0};
    lp_act_stream *st = lp_act_stream_new(m, &ao);
    if (!st)
        return fail();
    lp_sae_config c = {.arch = LP_SAE_TOPK, .d_in = m->cfg.d_model, .d_sae = atoi(argv[4]), .d_out = m->cfg.d_model,
                       .k = atoi(argv[5]), .apply_b_dec_to_input = 1, .layer = -1};
    snprintf(c.hook_in, sizeof c.hook_in, "%s", argv[3]);
    snprintf(c.hook_out, sizeof c.hook_out, "%s", argv[3]);
    lp_sae *s = lp_sae_new(&c);
    if (!s || lp_sae_init_random(s, 1, 0.1f, 0) < 0)
        return fail();
    lp_sae_train_opts o = lp_sae_train_defaults(&c);
    o.steps = atol(argv[6]);
    o.lr = 1e-3f;
    o.batch = 1024;
    lp_sae_trainer *t = lp_sae_trainer_new(s, &o);
    float *x = malloc(1024 * sizeof(float) * (size_t)c.d_in);
    if (!t || !x)
        return fail();
    lp_sae_step_stats ss;
    for (long i = 0; i < o.steps; i++) {
        float *rows[1] = {x};
        if (lp_act_stream_next(st, rows) < 0 || lp_sae_trainer_step(t, x, NULL, 1024, &ss) < 0)
            return fail();
    }
    fprintf(stderr, "sae_tool: %ld steps, last batch explained variance %.4f, l0 %.2f\n", o.steps,
            ss.explained_variance, ss.loss.l0);
    lp_sae_meta meta = {.context_size = 64, .prepend_bos = ao.prepend_bos, .hook_head_index = -1};
    snprintf(meta.model_name, sizeof meta.model_name, "default");
    if (lp_sae_save(s, argv[7], &meta) < 0)
        return fail();
    free(x);
    lp_sae_trainer_free(t);
    lp_sae_free(s);
    lp_act_stream_free(st);
    lp_dataset_free(ds);
    lp_tokenizer_free(tok);
    lp_model_free(m);
    return 0;
}
