/* Reference embedding: element by element. */
#include "core/error.h"
#include "ops_impl.h"

static int embed_forward(float *out, const int32_t *ids, const float *table, int N, int C, int V)
{
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            if (ids[n] < 0 || ids[n] >= V)
                return lp_set_error("embedding: id %d at position %d out of range [0, %d)", ids[n], n, V);
            out[(size_t)n * C + c] = table[(size_t)ids[n] * C + c];
        }
    return 0;
}

static int embed_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C, int V)
{
    for (int v = 0; v < V; v++)
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int n = 0; n < N; n++)
                if (ids[n] == v)
                    s += dout[(size_t)n * C + c];
            dtable[(size_t)v * C + c] += (float)s;
        }
    for (int n = 0; n < N; n++)
        if (ids[n] < 0 || ids[n] >= V)
            return lp_set_error("embedding: id %d at position %d out of range [0, %d)", ids[n], n, V);
    return 0;
}

void lp_ref_fill_embed(lp_ops *t)
{
    t->embed_forward = embed_forward;
    t->embed_backward = embed_backward;
}
