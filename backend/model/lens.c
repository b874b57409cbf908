/* The logit lens of one position of a cached run (see analysis.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/analysis.h"

void lp_lens_free(lp_lens *l)
{
    if (!l)
        return;
    free(l->top_prob); /* one allocation holds the probabilities and the ids */
    l->top_prob = l->next_prob = NULL;
    l->top = NULL;
}

/* The resid_post vector of every layer at (row, pos) into resid (n_layers x d_model). */
static int read_resid(const lp_model *m, const lp_run *r, int row, int pos, float *resid)
{
    int D = m->cfg.d_model;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        char name[96];
        snprintf(name, sizeof name, "blocks.%d.hook_resid_post", l);
        const lp_tensor *t = lp_run_get(r, name);
        if (!t)
            return lp_set_error("the run did not cache %s (the lens reads hook_resid_post of every layer)", name);
        if (t->ndim != 3 || t->shape[2] != D || row >= t->shape[0] || pos >= t->shape[1])
            return lp_set_error("%s does not have the run's shape", name);
        int64_t idx[3] = {row, pos, 0};
        for (int d = 0; d < D; d++) {
            idx[2] = d;
            if (lp_tensor_get(t, idx, &resid[(size_t)l * D + d]) < 0)
                return -1;
        }
    }
    return 0;
}

int lp_logit_lens(const lp_model *m, const lp_run *r, int row, int pos, int k, int32_t next, lp_lens *out)
{
    const lp_model_config *c = &m->cfg;
    int NL = c->n_layers, D = c->d_model, V = c->d_vocab;
    const lp_tensor *lg = r->logits;
    if (!lg || lg->ndim != 3 || row < 0 || row >= lg->shape[0] || pos < 0 || pos >= lg->shape[1])
        return lp_set_error("row %d, position %d is outside the run", row + 1, pos + 1);
    if (k < 1 || k > 50)
        return lp_set_error("k must be in 1..50, not %d", k);
    if (next >= V)
        return lp_set_error("token %d is outside the vocabulary (0..%d)", next, V - 1);
    size_t nk = (size_t)NL * k;
    float *resid = lp_malloc((size_t)NL * D * sizeof *resid, "logit lens residuals");
    float *logits = lp_malloc((size_t)NL * V * sizeof *logits, "logit lens logits");
    double *probs = lp_malloc((nk + (size_t)NL) * sizeof(double) + nk * sizeof(int32_t), "logit lens results");
    if (!resid || !logits || !probs || read_resid(m, r, row, pos, resid) < 0 ||
        lp_model_unembed(m, resid, NL, logits) < 0) {
        free(resid), free(logits), free(probs);
        return -1;
    }
    lp_lens o = {.n_layers = NL, .k = k, .top_prob = probs, .next_prob = next >= 0 ? probs + nk : NULL,
                 .top = (int32_t *)(probs + nk + NL)};
    for (int l = 0; l < NL; l++) {
        float *z = logits + (size_t)l * V;
        float mx = z[0];
        for (int v = 1; v < V; v++)
            mx = z[v] > mx ? z[v] : mx;
        double sum = 0;
        for (int v = 0; v < V; v++)
            sum += exp((double)z[v] - mx);
        if (o.next_prob)
            o.next_prob[l] = exp((double)z[next] - mx) / sum;
        for (int j = 0; j < k; j++) { /* k passes: k is small */
            int best = -1;
            for (int v = 0; v < V; v++)
                if (z[v] > -INFINITY && (best < 0 || z[v] > z[best]))
                    best = v;
            o.top[(size_t)l * k + j] = best;
            o.top_prob[(size_t)l * k + j] = best < 0 ? 0 : exp((double)z[best] - mx) / sum;
            if (best >= 0)
                z[best] = -INFINITY; /* taken */
        }
    }
    free(resid);
    free(logits);
    *out = o;
    return 0;
}
