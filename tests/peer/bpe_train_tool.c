/* Test-only driver for tests/peer/test_bpe_trainer.py: trains a byte-level BPE tokenizer
 * with loupe's trainer (backend/tokenizer/train.h) and saves it.
 *
 *   bpe_train_tool OUT_FOLDER VOCAB_SIZE MIN_FREQUENCY [-s SPECIAL]... FILE...
 *
 * prints one JSON object: {"seconds": ..., "bytes": ..., "words": ..., "vocab_size": ...,
 * "merges": ...}. An error is printed to stderr with exit status 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/error.h"
#include "tokenizer/train.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s OUT_FOLDER VOCAB_SIZE MIN_FREQUENCY [-s SPECIAL]... FILE...\n", argv[0]);
        return 2;
    }
    const char *special[16];
    size_t ns = 0;
    int i = 4;
    while (i + 1 < argc && strcmp(argv[i], "-s") == 0 && ns < 16) {
        special[ns++] = argv[i + 1];
        i += 2;
    }
    double t0 = now();
    lp_bpe_trainer *tr = lp_bpe_trainer_new(special, ns);
    long long bytes = 0;
    int rc = tr ? 0 : -1;
    for (; rc == 0 && i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0)
            bytes += st.st_size;
        rc = lp_bpe_trainer_add_file(tr, argv[i]);
    }
    double t1 = now();
    lp_bpe_train_opts o = {.vocab_size = atoi(argv[2]), .min_frequency = atoll(argv[3])};
    if (rc == 0)
        rc = lp_bpe_trainer_train(tr, &o);
    double t2 = now();
    if (rc == 0)
        rc = lp_bpe_trainer_save(tr, argv[1]);
    if (rc < 0) {
        fprintf(stderr, "bpe_train_tool: %s\n", lp_last_error());
        lp_bpe_trainer_free(tr);
        return 2;
    }
    printf("{\"seconds\": %.3f, \"count_seconds\": %.3f, \"merge_seconds\": %.3f, \"bytes\": %lld, \"words\": %zu, "
           "\"vocab_size\": %d, \"merges\": %zu}\n",
           t2 - t0, t1 - t0, t2 - t1, bytes, lp_bpe_trainer_n_words(tr), (int)lp_bpe_trainer_vocab_size(tr),
           lp_bpe_trainer_n_merges(tr));
    lp_bpe_trainer_free(tr);
    return 0;
}
