/* Test-only driver for tests/peer/test_checkpoints.py: makes a random model of a given
 * config.json, writes it with lp_model_save, and runs it (the model in memory, before any
 * file is read back) on a batch of tokens.
 *
 *   save_tool [--tokenizer DIR] CONFIG.json SEED OUT_FOLDER LOGITS.safetensors B T id id ...
 *
 * Weights are random and larger than lp_model_random's so that every part of the model
 * matters (as test_models.py's randomize): norm weights 1 + 0.2 N(0,1), everything else
 * 0.2 N(0,1). With --tokenizer, the tokenizer loaded from DIR is saved along. LOGITS gets
 * one tensor, "logits" (B,T,V). Errors go to stderr with exit status 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "rng.h"
#include "tokenizer/tokenizer.h"

static void fill(lp_tensor *t, lp_rng *g, float mean)
{
    for (int64_t i = 0; t && i < lp_tensor_numel(t); i++)
        t->data[i] = mean + 0.2f * (float)lp_rng_normal(g);
}

static void randomize(lp_model *m, uint64_t seed)
{
    lp_rng g;
    lp_rng_seed(&g, seed);
    fill(m->wte, &g, 0), fill(m->wpe, &g, 0), fill(m->lnf_w, &g, 1), fill(m->lnf_b, &g, 0);
    if (m->unembed.w && m->unembed.w->data != m->wte->data)
        fill(m->unembed.w, &g, 0);
    for (int L = 0; L < m->cfg.n_layers; L++) {
        lp_block *b = &m->blocks[L];
        fill(b->ln1_w, &g, 1), fill(b->ln1_b, &g, 0), fill(b->ln2_w, &g, 1), fill(b->ln2_b, &g, 0);
        lp_linear *ls[] = {&b->qkv, &b->q, &b->k, &b->v, &b->o, &b->fc, &b->proj, &b->gate, &b->up, &b->down};
        for (size_t i = 0; i < sizeof ls / sizeof *ls; i++)
            fill(ls[i]->w, &g, 0), fill(ls[i]->b, &g, 0);
    }
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    char *s = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (s && fread(s, 1, (size_t)len, f) != (size_t)len) {
        free(s);
        s = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return s;
}

int main(int argc, char **argv)
{
    const char *tokdir = NULL;
    int a = 1;
    if (argc > 2 && !strcmp(argv[1], "--tokenizer"))
        tokdir = argv[2], a = 3;
    if (argc - a < 6) {
        fprintf(stderr, "usage: save_tool [--tokenizer DIR] CONFIG.json SEED OUT_FOLDER LOGITS.safetensors B T ids...\n");
        return 1;
    }
    const char *cfg_path = argv[a], *out = argv[a + 2], *logits_path = argv[a + 3];
    uint64_t seed = strtoull(argv[a + 1], NULL, 10);
    int B = atoi(argv[a + 4]), T = atoi(argv[a + 5]);
    if (B <= 0 || T <= 0 || argc - a - 6 != B * T) {
        fprintf(stderr, "save_tool: need B*T = %d ids, got %d\n", B * T, argc - a - 6);
        return 1;
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(B * T));
    for (int i = 0; i < B * T; i++)
        ids[i] = atoi(argv[a + 6 + i]);
    size_t n = 0;
    char *text = slurp(cfg_path, &n);
    lp_model_config cfg;
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    lp_run r = {0};
    int rc = 2;
    if (!text) {
        fprintf(stderr, "save_tool: cannot read %s\n", cfg_path);
        goto out;
    }
    if (lp_model_config_parse(text, n, cfg_path, &cfg) < 0 || !(m = lp_model_random(&cfg, seed)) ||
        (tokdir && !(tok = lp_tokenizer_load(tokdir))))
        goto fail;
    randomize(m, seed + 1);
    if (lp_model_save(m, out, tok) < 0 || lp_model_run(m, ids, B, T, NULL, &r) < 0)
        goto fail;
    const char *names[] = {"logits"};
    const lp_tensor *ts[] = {r.logits};
    if (lp_safetensors_write(logits_path, names, ts, 1, LP_DTYPE_F32, NULL, NULL, 0) < 0)
        goto fail;
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "save_tool: %s\n", lp_last_error());
out:
    lp_run_clear(&r);
    lp_tokenizer_free(tok);
    lp_model_free(m);
    free(text);
    free(ids);
    return rc;
}
