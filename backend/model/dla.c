/* Direct logit attribution of one position of a cached run (see analysis.h). */
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#include "model/analysis.h"

/* Element (in i, out j) of a Linear (out,in) or Conv1D (in,out) weight. */
static inline float lin_w(const lp_linear *l, int i, int j)
{
    return l->trans ? l->w->data[(size_t)j * l->in + i] : l->w->data[(size_t)i * l->out + j];
}

/* The d values of t at (row, pos, ...) (a (B,T,d) or (B,T,n,S) hook point) into out. */
static int read_vec(const lp_run *r, const char *name, int row, int pos, double *out, int64_t n)
{
    const lp_tensor *t = lp_run_get(r, name);
    if (!t)
        return lp_set_error("dla: the run did not cache %s (run with cache = true, the default)", name);
    if (t->ndim < 3 || t->shape[0] <= row || t->shape[1] <= pos)
        return lp_set_error("dla: %s does not have the run's shape", name);
    int64_t inner = 1;
    for (int i = 2; i < t->ndim; i++)
        inner *= t->shape[i];
    if (inner != n)
        return lp_set_error("dla: %s has %lld values per position, expected %lld", name, (long long)inner,
                            (long long)n);
    int64_t idx[LP_MAX_DIMS] = {row, pos};
    for (int64_t k = 0; k < n; k++) {
        int64_t rem = k;
        for (int i = t->ndim - 1; i >= 2; i--) {
            idx[i] = rem % t->shape[i];
            rem /= t->shape[i];
        }
        float v;
        if (lp_tensor_get(t, idx, &v) < 0)
            return -1;
        out[k] = v;
    }
    return 0;
}

static double dot(const double *a, const double *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

void lp_dla_free(lp_dla *d)
{
    if (!d)
        return;
    free(d->attn); /* one allocation holds every array */
    d->attn = d->mlp = d->attn_bias = d->heads = NULL;
}

int lp_dla_compute(const lp_model *m, const lp_run *r, int row, int pos, int32_t token, int32_t baseline,
                   lp_dla *out)
{
    const lp_model_config *c = &m->cfg;
    int L = c->n_layers, H = c->n_heads, D = c->d_model, S = c->d_head, V = c->d_vocab;
    if (token < 0 || token >= V || baseline >= V)
        return lp_set_error("dla: token %d is outside the vocabulary (0..%d)", token < 0 || token >= V ? token : baseline,
                            V - 1);
    const lp_tensor *lg = r->logits;
    if (!lg || lg->ndim != 3 || row < 0 || row >= lg->shape[0] || pos < 0 || pos >= lg->shape[1])
        return lp_set_error("dla: row %d, position %d is outside the run", row + 1, pos + 1);
    lp_dla d = {.n_layers = L, .n_heads = H};
    double *arrays = lp_malloc(((size_t)3 * L + (size_t)L * H) * sizeof(double), "attribution");
    int HS = H * S, VN = D > HS ? D : HS;
    double *dir = lp_malloc(((size_t)2 * D + (size_t)VN + (size_t)HS) * sizeof(double), "attribution vectors");
    if (!arrays || !dir)
        goto fail;
    d.attn = arrays, d.mlp = d.attn + L, d.attn_bias = d.mlp + L, d.heads = d.attn_bias + L;
    double *u = dir + D, *vec = u + D, *wod = vec + VN;
    /* the frozen scale, the unembedding direction, the constant */
    double scale;
    if (read_vec(r, "ln_final.hook_scale", row, pos, &scale, 1) < 0)
        goto fail;
    if (!(scale > 0)) {
        lp_set_error("dla: the final norm's scale is %g", scale);
        goto fail;
    }
    const lp_linear *U = &m->unembed;
    for (int k = 0; k < D; k++)
        u[k] = lin_w(U, k, token) - (baseline >= 0 ? lin_w(U, k, baseline) : 0.0);
    double mean = 0;
    for (int k = 0; k < D; k++) {
        dir[k] = m->lnf_w->data[k] * u[k];
        mean += dir[k];
    }
    mean /= D;
    for (int k = 0; k < D; k++)
        dir[k] = (dir[k] - (m->lnf_b ? mean : 0.0)) / scale; /* LayerNorm centres; RMSNorm does not */
    d.scale = scale;
    d.bias = 0;
    if (m->lnf_b)
        for (int k = 0; k < D; k++)
            d.bias += m->lnf_b->data[k] * u[k];
    if (U->b)
        d.bias += U->b->data[token] - (baseline >= 0 ? U->b->data[baseline] : 0.0f);
    /* the parts */
    if (read_vec(r, "hook_embed", row, pos, vec, D) < 0)
        goto fail;
    d.embed = dot(vec, dir, D);
    if (c->arch == LP_ARCH_GPT2) {
        if (read_vec(r, "hook_pos_embed", row, pos, vec, D) < 0)
            goto fail;
        d.pos_embed = dot(vec, dir, D);
    }
    d.total = d.embed + d.pos_embed + d.bias;
    for (int l = 0; l < L; l++) {
        char name[96];
        snprintf(name, sizeof name, "blocks.%d.hook_attn_out", l);
        if (read_vec(r, name, row, pos, vec, D) < 0)
            goto fail;
        d.attn[l] = dot(vec, dir, D);
        snprintf(name, sizeof name, "blocks.%d.hook_mlp_out", l);
        if (read_vec(r, name, row, pos, vec, D) < 0)
            goto fail;
        d.mlp[l] = dot(vec, dir, D);
        d.total += d.attn[l] + d.mlp[l];
        /* heads: z_h . (W_O^h dir) */
        const lp_linear *o = &m->blocks[l].o;
        for (int i = 0; i < HS; i++) {
            double s = 0;
            for (int k = 0; k < D; k++)
                s += lin_w(o, i, k) * dir[k];
            wod[i] = s;
        }
        d.attn_bias[l] = 0;
        if (o->b)
            for (int k = 0; k < D; k++)
                d.attn_bias[l] += o->b->data[k] * dir[k];
        snprintf(name, sizeof name, "blocks.%d.attn.hook_z", l);
        if (read_vec(r, name, row, pos, vec, HS) < 0)
            goto fail;
        for (int h = 0; h < H; h++)
            d.heads[(size_t)l * H + h] = dot(vec + (size_t)h * S, wod + (size_t)h * S, S);
    }
    int64_t at[3] = {row, pos, token};
    float a, b = 0;
    if (lp_tensor_get(lg, at, &a) < 0)
        goto fail;
    at[2] = baseline;
    if (baseline >= 0 && lp_tensor_get(lg, at, &b) < 0)
        goto fail;
    d.actual = (double)a - b;
    free(dir);
    *out = d;
    return 0;
fail:
    free(arrays);
    free(dir);
    return -1;
}
