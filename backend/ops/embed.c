/* Embedding lookup (a row gather) and its backward (a scatter-add), on the CPU. */
#include <string.h>

#include "core/error.h"
#include "ops_impl.h"

// out is (N,C), ids (N), table (V,C)
static int embed_forward(float *out, const int32_t *ids, const float *table, int N, int C, int V)
{
    for (int n = 0; n < N; n++) {
        if (ids[n] < 0 || ids[n] >= V)
            return lp_set_error("embedding: id %d at position %d out of range [0, %d)", ids[n], n, V);
        memcpy(out + (size_t)n * C, table + (size_t)ids[n] * C, (size_t)C * sizeof(float));
    }
    return 0;
}

// dtable (V,C) += rows of dout (N,C)
static int embed_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C, int V)
{
    for (int n = 0; n < N; n++) {
        if (ids[n] < 0 || ids[n] >= V)
            return lp_set_error("embedding: id %d at position %d out of range [0, %d)", ids[n], n, V);
        float *d = dtable + (size_t)ids[n] * C;
        const float *g = dout + (size_t)n * C;
        for (int c = 0; c < C; c++)
            d[c] += g[c];
    }
    return 0;
}

void lp_cpu_fill_embed(lp_ops *t)
{
    t->embed_forward = embed_forward;
    t->embed_backward = embed_backward;
}
