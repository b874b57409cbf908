/* Temporary files for the data tests. */
#ifndef LP_TEST_DATA_FIXTURES_H
#define LP_TEST_DATA_FIXTURES_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char df_dir[64];

static inline void df_setup(void)
{
    strcpy(df_dir, "/tmp/loupe-data-test-XXXXXX");
    cr_assert(mkdtemp(df_dir));
}

static inline void df_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", df_dir);
    cr_expect_eq(system(cmd), 0);
}

/* df_dir/name (static buffer, one at a time per slot). */
static inline const char *df_path(const char *name)
{
    static char bufs[4][256];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, 256, "%s/%s", df_dir, name);
    return b;
}

static inline const char *df_write(const char *name, const void *bytes, size_t n)
{
    const char *p = df_path(name);
    FILE *f = fopen(p, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
    return p;
}

/* A small deterministic English-like corpus of about n bytes. */
static inline char *df_corpus(size_t n, unsigned seed)
{
    static const char *words[] = {"the", "cat", "sat", "on", "mat", "and", "dog", "ran", "to", "park", "Mara",
                                  "lives", "in", "Paris", "is", "France", "keys", "are", "cabinet", "one", "two",
                                  "three", "gave", "drink", "Mary", "John", "store", "went", "when", "it's", "café",
                                  "naïve", "42", "1999", "!", "?", "don't"};
    char *s = malloc(n + 64);
    s[0] = 0;
    size_t len = 0;
    unsigned x = seed * 2654435761u + 1;
    while (len < n) {
        x = x * 1103515245u + 12345u;
        static const char *syl[] = {"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "pe", "qua",
                                    "ber", "don", "fil", "gra", "hux", "jem", "tor", "wen", "zy", "xo"};
        if ((x >> 4) % 3 == 0) { /* a made-up word of 1-3 syllables: many distinct words */
            for (unsigned k = 0, m = 1 + (x >> 12) % 3; k < m; k++)
                len += (size_t)sprintf(s + len, "%s", syl[(x >> (14 + 5 * k)) % 20]);
            s[len++] = ' ';
            continue;
        }
        const char *w = words[(x >> 8) % (sizeof words / sizeof *words)];
        len += (size_t)sprintf(s + len, "%s%s", w, (x >> 20) % 9 == 0 ? ".\n" : " ");
    }
    s[len] = 0;
    return s;
}

#endif
