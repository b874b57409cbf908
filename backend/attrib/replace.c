/* The replacement model of one prompt (replace.h): one forward pass with the caches the
 * frozen model needs, the transcoders encoded on every layer's MLP input, error vectors,
 * and the logit nodes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/replace.h"
#include "core/error.h"
#include "dict/clt_ops.h"
#include "dict/sae_ops.h"

lp_attrib_opts lp_attrib_defaults(void)
{
    return (lp_attrib_opts){.max_n_logits = 10, .desired_logit_prob = 0.95f, .batch = 32, .update_interval = 4};
}

void lp_replacement_free(lp_replacement *r)
{
    if (!r)
        return;
    free(r->tokens);
    free(r->features);
    free(r->errors);
    free(r->logit_tokens);
    free(r->logit_probs);
    free(r->logit_dirs);
    free(r->ln1_scale);
    free(r->ln2_scale);
    free(r->lnf_scale);
    free(r->pattern);
    free(r->logits);
    free(r);
}

int lp_replacement_n_nodes(const lp_replacement *r)
{
    return r->n_features + r->n_layers * r->T + r->T + r->n_logits;
}
int lp_replacement_error_node(const lp_replacement *r, int layer, int pos)
{
    return r->n_features + layer * r->T + pos;
}
int lp_replacement_embed_node(const lp_replacement *r, int pos)
{
    return r->n_features + r->n_layers * r->T + pos;
}
int lp_replacement_logit_node(const lp_replacement *r, int i)
{
    return r->n_features + r->n_layers * r->T + r->T + i;
}

static int wanted(void *ud, const char *name)
{
    (void)ud;
    static const char *const suffixes[] = {"ln1.hook_scale", "ln2.hook_scale", "attn.hook_pattern", "mlp.hook_in",
                                           "mlp.hook_out", "ln_final.hook_scale"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && !strcmp(name + n - k, suffixes[i]))
            return 1;
    }
    return 0;
}

static const float *cached(const lp_run *run, const char *fmt, int L)
{
    char name[96];
    snprintf(name, sizeof name, fmt, L);
    lp_tensor *t = lp_run_get(run, name);
    if (!t)
        lp_set_error("attribution: the forward pass did not give '%s'", name);
    return t ? t->data : NULL;
}

static int check_set(const lp_model *m, const lp_transcoder_set *tcs)
{
    const lp_model_config *c = &m->cfg;
    if (c->attn_only)
        return lp_set_error("attribution: an attention-only model has no MLPs to replace");
    if (!tcs || tcs->n_layers != c->n_layers)
        return lp_set_error("attribution: the transcoder set has %d layers, the model %d", tcs ? tcs->n_layers : 0,
                            c->n_layers);
    if (strcmp(tcs->feature_input_hook, "mlp.hook_in") || strcmp(tcs->feature_output_hook, "mlp.hook_out"))
        return lp_set_error("attribution: the transcoders read '%s' and write '%s'; only mlp.hook_in -> "
                            "mlp.hook_out is supported",
                            tcs->feature_input_hook, tcs->feature_output_hook);
    for (int l = 0; l < c->n_layers; l++) {
        const lp_sae *s = tcs->layers[l];
        if (!s || s->cfg.d_in != c->d_model || s->cfg.d_out != c->d_model)
            return lp_set_error("attribution: the transcoder of layer %d does not map d_model %d to d_model", l,
                                c->d_model);
    }
    return 0;
}

static int check_clt(const lp_model *m, const lp_clt *clt)
{
    const lp_model_config *c = &m->cfg;
    if (c->attn_only)
        return lp_set_error("attribution: an attention-only model has no MLPs to replace");
    if (!clt || clt->n_layers != c->n_layers)
        return lp_set_error("attribution: the cross-layer transcoder has %d layers, the model %d",
                            clt ? clt->n_layers : 0, c->n_layers);
    if (strcmp(clt->feature_input_hook, "mlp.hook_in") || strcmp(clt->feature_output_hook, "mlp.hook_out"))
        return lp_set_error("attribution: the cross-layer transcoder reads '%s' and writes '%s'; only mlp.hook_in -> "
                            "mlp.hook_out is supported",
                            clt->feature_input_hook, clt->feature_output_hook);
    if (clt->d_model != c->d_model)
        return lp_set_error("attribution: the cross-layer transcoder's d_model is %d, the model's %d", clt->d_model,
                            c->d_model);
    return 0;
}

/* appends (l, t, i, a) to the feature list */
static int add_feature(lp_replacement *r, size_t *cap, int l, int t, int i, float a)
{
    if ((size_t)r->n_features == *cap) {
        size_t nc = *cap ? 2 * *cap : 256;
        lp_attrib_feature *p = realloc(r->features, nc * sizeof *p);
        if (!p)
            return lp_set_error_code(LP_ERR_NOMEM, "attribution: cannot allocate the feature list");
        r->features = p;
        *cap = nc;
    }
    r->features[r->n_features++] = (lp_attrib_feature){l, t, i, a};
    return 0;
}

/* A CLT: every layer's features (none at position 0), then each layer's error: the true MLP
 * output - b_dec - the decoders into it of the active features of that layer and the earlier
 * ones (circuit-tracer's reconstruction from its sparse features). */
static int encode_clt(lp_replacement *r, const lp_run *run)
{
    const lp_clt *c = r->clt;
    int T = r->T, D = r->d_model, L = r->n_layers, F = c->d_tc;
    size_t cap = 0;
    float *f = lp_malloc((size_t)T * F * sizeof(float), "transcoder activations");
    if (!f)
        return -1;
    for (int l = 0; l < L; l++) {
        const float *x = cached(run, "blocks.%d.mlp.hook_in", l);
        if (!x || lp_clt_encode_layer(NULL, f, c, l, x, T) < 0) {
            free(f);
            return -1;
        }
        for (int t = 1; t < T; t++)
            for (int i = 0; i < F; i++)
                if (f[(size_t)t * F + i] != 0.0f && add_feature(r, &cap, l, t, i, f[(size_t)t * F + i]) < 0) {
                    free(f);
                    return -1;
                }
    }
    free(f);
    for (int l = 0; l < L; l++) {
        const float *y = cached(run, "blocks.%d.mlp.hook_out", l);
        if (!y)
            return -1;
        float *e = r->errors + (size_t)l * T * D;
        for (int t = 1; t < T; t++) /* position 0 (BOS) stays zero */
            for (int d = 0; d < D; d++)
                e[(size_t)t * D + d] = y[(size_t)t * D + d] - c->b_dec[l]->data[d];
    }
    for (int k = 0; k < r->n_features; k++) {
        const lp_attrib_feature *ft = &r->features[k];
        const float *w = c->W_dec[ft->layer]->data + (size_t)ft->feature * (L - ft->layer) * D;
        for (int l = ft->layer; l < L; l++, w += D) {
            float *e = r->errors + ((size_t)l * T + ft->pos) * D;
            for (int d = 0; d < D; d++)
                e[d] -= ft->act * w[d];
        }
    }
    return 0;
}

/* (layer, pos, feature) ascending: the order of the feature nodes */
static int encode_layers(lp_replacement *r, const lp_run *run)
{
    int T = r->T, D = r->d_model;
    size_t cap = 0;
    float *xhat = lp_malloc((size_t)T * D * sizeof(float), "transcoder output");
    if (!xhat)
        return -1;
    for (int l = 0; l < r->n_layers; l++) {
        const lp_sae *s = r->tcs->layers[l];
        int F = s->cfg.d_sae;
        const float *x = cached(run, "blocks.%d.mlp.hook_in", l), *y = cached(run, "blocks.%d.mlp.hook_out", l);
        float *f = lp_malloc((size_t)T * F * sizeof(float), "transcoder activations");
        if (!x || !y || !f || lp_sae_encode(NULL, f, s, x, T, 0) < 0 || lp_sae_decode(xhat, s, f, x, T) < 0) {
            free(f);
            free(xhat);
            return -1;
        }
        float *e = r->errors + (size_t)l * T * D;
        for (int t = 1; t < T; t++) /* position 0 (BOS) stays zero */
            for (int d = 0; d < D; d++)
                e[(size_t)t * D + d] = y[(size_t)t * D + d] - xhat[(size_t)t * D + d];
        for (int t = 1; t < T; t++)
            for (int i = 0; i < F; i++) {
                float a = f[(size_t)t * F + i];
                if (a != 0.0f && add_feature(r, &cap, l, t, i, a) < 0) {
                    free(f);
                    free(xhat);
                    return -1;
                }
            }
        free(f);
    }
    free(xhat);
    return 0;
}

static float unembed_at(const lp_model *m, int v, int d)
{
    const lp_linear *u = &m->unembed; /* out V, in D */
    return u->trans ? u->w->data[(size_t)v * u->in + d] : u->w->data[(size_t)d * u->out + v];
}

static int choose_logits(lp_replacement *r, const lp_attrib_opts *o)
{
    const lp_model *m = r->m;
    int V = m->cfg.d_vocab, D = r->d_model, K = o->max_n_logits < V ? o->max_n_logits : V;
    if (K < 1)
        return lp_set_error("attribution: max_n_logits must be at least 1 (got %d)", o->max_n_logits);
    const float *lg = r->logits + (size_t)(r->T - 1) * V;
    double mx = -INFINITY, z = 0;
    for (int v = 0; v < V; v++)
        mx = lg[v] > mx ? lg[v] : mx;
    for (int v = 0; v < V; v++)
        z += exp(lg[v] - mx);
    r->logit_tokens = lp_malloc((size_t)K * sizeof(int32_t), "logit nodes");
    r->logit_probs = lp_malloc((size_t)K * sizeof(float), "logit nodes");
    r->logit_dirs = lp_malloc((size_t)K * D * sizeof(float), "logit directions");
    double *mean = lp_calloc((size_t)D, sizeof(double), "mean unembedding");
    if (!r->logit_tokens || !r->logit_probs || !r->logit_dirs || !mean) {
        free(mean);
        return -1;
    }
    /* the K most probable, probability descending (ties: lower id first), cut where the
     * cumulative probability reaches desired_logit_prob */
    double cum = 0;
    int n = 0;
    while (n < K) {
        int best = -1;
        for (int v = 0; v < V; v++) {
            int taken = 0;
            for (int j = 0; j < n && !taken; j++)
                taken = r->logit_tokens[j] == v;
            if (!taken && (best < 0 || lg[v] > lg[best]))
                best = v;
        }
        double p = exp(lg[best] - mx) / z;
        r->logit_tokens[n] = best;
        r->logit_probs[n++] = (float)p;
        cum += p;
        if (cum >= o->desired_logit_prob)
            break;
    }
    r->n_logits = n;
    for (int v = 0; v < V; v++)
        for (int d = 0; d < D; d++)
            mean[d] += unembed_at(m, v, d);
    for (int i = 0; i < n; i++)
        for (int d = 0; d < D; d++)
            r->logit_dirs[(size_t)i * D + d] = (float)(unembed_at(m, r->logit_tokens[i], d) - mean[d] / V);
    free(mean);
    return 0;
}

static int copy_frozen(lp_replacement *r, const lp_run *run)
{
    int T = r->T, H = r->m->cfg.n_heads, L = r->n_layers;
    r->ln1_scale = lp_malloc((size_t)L * T * sizeof(float), "frozen norm scales");
    r->ln2_scale = lp_malloc((size_t)L * T * sizeof(float), "frozen norm scales");
    r->lnf_scale = lp_malloc((size_t)T * sizeof(float), "frozen norm scales");
    r->pattern = lp_malloc((size_t)L * H * T * T * sizeof(float), "frozen attention patterns");
    if (!r->ln1_scale || !r->ln2_scale || !r->lnf_scale || !r->pattern)
        return -1;
    for (int l = 0; l < L; l++) {
        const float *s1 = cached(run, "blocks.%d.ln1.hook_scale", l), *s2 = cached(run, "blocks.%d.ln2.hook_scale", l),
                    *p = cached(run, "blocks.%d.attn.hook_pattern", l);
        if (!s1 || !s2 || !p)
            return -1;
        memcpy(r->ln1_scale + (size_t)l * T, s1, (size_t)T * sizeof(float));
        memcpy(r->ln2_scale + (size_t)l * T, s2, (size_t)T * sizeof(float));
        memcpy(r->pattern + (size_t)l * H * T * T, p, (size_t)H * T * T * sizeof(float));
    }
    const float *sf = cached(run, "ln_final.hook_scale", 0);
    if (!sf)
        return -1;
    memcpy(r->lnf_scale, sf, (size_t)T * sizeof(float));
    return 0;
}

static lp_replacement *build(const lp_model *m, const lp_transcoder_set *tcs, const lp_clt *clt,
                             const int32_t *tokens, int T, const lp_attrib_opts *o)
{
    lp_attrib_opts def = lp_attrib_defaults();
    if (!o)
        o = &def;
    if (T < 1) {
        lp_set_error("attribution: the prompt has no tokens");
        return NULL;
    }
    if (clt ? check_clt(m, clt) < 0 : check_set(m, tcs) < 0)
        return NULL;
    lp_replacement *r = lp_calloc(1, sizeof *r, "replacement model");
    if (!r)
        return NULL;
    r->m = m;
    r->tcs = clt ? NULL : tcs;
    r->clt = clt;
    r->T = T;
    r->n_layers = m->cfg.n_layers;
    r->d_model = m->cfg.d_model;
    r->tokens = lp_malloc((size_t)T * sizeof(int32_t), "prompt");
    r->errors = lp_calloc((size_t)r->n_layers * T * r->d_model, sizeof(float), "error vectors");
    r->logits = lp_malloc((size_t)T * m->cfg.d_vocab * sizeof(float), "logits");
    if (!r->tokens || !r->errors || !r->logits)
        goto fail;
    memcpy(r->tokens, tokens, (size_t)T * sizeof(int32_t));
    lp_run run = {0};
    lp_run_opts ro = {.filter = wanted};
    if (lp_model_run(m, tokens, 1, T, &ro, &run) < 0)
        goto fail;
    memcpy(r->logits, run.logits->data, (size_t)T * m->cfg.d_vocab * sizeof(float));
    int rc = copy_frozen(r, &run) < 0 || (clt ? encode_clt(r, &run) : encode_layers(r, &run)) < 0 ? -1 : 0;
    lp_run_clear(&run);
    if (rc < 0 || choose_logits(r, o) < 0)
        goto fail;
    return r;
fail:
    lp_replacement_free(r);
    return NULL;
}

lp_replacement *lp_replacement_build(const lp_model *m, const lp_transcoder_set *tcs, const int32_t *tokens, int T,
                                     const lp_attrib_opts *o)
{
    return build(m, tcs, NULL, tokens, T, o);
}

lp_replacement *lp_replacement_build_clt(const lp_model *m, const lp_clt *clt, const int32_t *tokens, int T,
                                         const lp_attrib_opts *o)
{
    if (!clt) {
        lp_set_error("attribution: no cross-layer transcoder");
        return NULL;
    }
    return build(m, NULL, clt, tokens, T, o);
}
