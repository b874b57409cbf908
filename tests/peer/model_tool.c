/* Test-only driver for tests/peer/test_models.py: loads a model folder, runs a batch of
 * tokens with every hook point cached, and writes the logits and the cache to a
 * safetensors file (the reader of the Python side is the `safetensors` library, so this
 * also checks loupe's writer).
 *
 *   model_tool FOLDER OUT.safetensors B T id id id ...   (B*T ids, row-major)
 *
 * Tensors in OUT: "logits" (B,T,V) and one per hook point, by its name. A load or run
 * error is printed to stderr with exit status 2. */
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#include "model/model.h"
#include "model/safetensors.h"

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: model_tool FOLDER OUT.safetensors B T ids...\n");
        return 1;
    }
    int B = atoi(argv[3]), T = atoi(argv[4]);
    if (B <= 0 || T <= 0 || argc != 5 + B * T) {
        fprintf(stderr, "model_tool: need B*T = %d ids, got %d\n", B * T, argc - 5);
        return 1;
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(B * T));
    for (int i = 0; i < B * T; i++)
        ids[i] = atoi(argv[5 + i]);
    lp_model *m = lp_model_load(argv[1]);
    lp_run r = {0};
    lp_run_opts o = {.cache_all = 1};
    if (!m || lp_model_run(m, ids, B, T, &o, &r) < 0) {
        fprintf(stderr, "model_tool: %s\n", lp_last_error());
        lp_model_free(m);
        free(ids);
        return 2;
    }
    size_t n = r.n + 1;
    const char **names = malloc(n * sizeof *names);
    const lp_tensor **ts = malloc(n * sizeof *ts);
    names[0] = "logits", ts[0] = r.logits;
    for (size_t i = 0; i < r.n; i++)
        names[i + 1] = r.names[i], ts[i + 1] = r.acts[i];
    int rc = lp_safetensors_write(argv[2], names, ts, n, LP_DTYPE_F32, NULL, NULL, 0);
    if (rc < 0)
        fprintf(stderr, "model_tool: %s\n", lp_last_error());
    free(names);
    free(ts);
    lp_run_clear(&r);
    lp_model_free(m);
    free(ids);
    return rc < 0 ? 2 : 0;
}
