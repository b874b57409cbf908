/* Fuzzes the tokenizer loader: the input becomes tokenizer.json in a private folder; when it
 * loads, a short text is encoded and decoded with it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokenizer/tokenizer.h"

static char dir[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/loupe-fuzz-tok-%d", (int)getpid());
        mkdir(dir, 0700);
    }
    char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    lp_tokenizer *t = lp_tokenizer_load(dir);
    if (t) {
        int32_t *ids = NULL;
        size_t n = 0, len = 0;
        const char *text = "Hello, world! 123 \xc3\xa9t\xc3\xa9 <|endoftext|>";
        if (lp_tokenizer_encode(t, text, strlen(text), 1, &ids, &n) == 0) {
            free(lp_tokenizer_decode(t, ids, n, &len));
            free(ids);
        }
        lp_tokenizer_free(t);
    }
    return 0;
}
