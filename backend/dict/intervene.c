/* Interventions on transcoder features (intervene.h): a clean run that keeps what the
 * intervened run freezes, then the intervened run with callback hooks at every transcoder's
 * hook_in (a copy of its input) and hook_out (the output, edited or frozen), and patches of
 * the attention patterns and norm scales. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "dict/intervene.h"
#include "dict/sae_ops.h"

float lp_feature_edit_apply(lp_feature_edit_kind kind, float value, float f)
{
    switch (kind) {
    case LP_FEAT_SET:
        return value;
    case LP_FEAT_ADD:
        return f + value;
    default:
        return 0.0f;
    }
}

int lp_feature_hook_fn(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    const lp_feature_hook *h = ud;
    if (act->ndim != 3 || h->feature < 0 || h->feature >= act->shape[2])
        return lp_set_error("features: feature %d is out of range for '%s' (%lld features)", h->feature, name,
                            (long long)act->shape[act->ndim - 1]);
    lp_tensor *t = lp_tensor_clone(act);
    if (!t)
        return -1;
    int64_t B = t->shape[0], T = t->shape[1], F = t->shape[2];
    for (int64_t b = 0; b < B; b++)
        for (int64_t p = 0; p < T; p++) {
            int64_t abs = h->offset + p;
            if (h->pos >= 0 && abs != h->pos && abs < h->from)
                continue;
            float *v = t->data + (b * T + p) * F + h->feature;
            *v = lp_feature_edit_apply(h->kind, h->value, *v);
        }
    *out = t;
    return 0;
}

int lp_intervene_check_set(const lp_model *m, const lp_transcoder_set *tcs)
{
    if (!tcs || tcs->n_layers < 1 || !tcs->layers)
        return lp_set_error("intervene: no transcoders");
    if (tcs->n_layers != m->cfg.n_layers)
        return lp_set_error("intervene: the transcoder set has %d layers, the model %d", tcs->n_layers,
                            m->cfg.n_layers);
    for (int l = 0; l < tcs->n_layers; l++) {
        const lp_sae_config *c = &tcs->layers[l]->cfg;
        const char *in = c->transcoder ? c->hook_in : c->hook_out;
        if (!lp_model_has_hook(m, in) || !lp_model_has_hook(m, c->hook_out))
            return lp_set_error("intervene: transcoder %d reads '%s' and writes '%s', which this model does not have",
                                l, in, c->hook_out);
        if (c->d_in != m->cfg.d_model || c->d_out != m->cfg.d_model)
            return lp_set_error("intervene: transcoder %d reads %d and writes %d dimensions, the model has %d", l,
                                c->d_in, c->d_out, m->cfg.d_model);
    }
    return 0;
}

/* ---- the dictionary: a per-layer transcoder set or a CLT ---- */

typedef struct dict {
    const lp_transcoder_set *tcs; /* exactly one of the two */
    const lp_clt *clt;
    int n_layers;
    char (*in)[128], (*out)[128]; /* hook names per layer */
} dict;

static int dict_F(const dict *d, int l)
{
    return d->tcs ? d->tcs->layers[l]->cfg.d_sae : d->clt->d_tc;
}

static int dict_D(const dict *d, int l, int out)
{
    if (!d->tcs)
        return d->clt->d_model;
    return out ? d->tcs->layers[l]->cfg.d_out : d->tcs->layers[l]->cfg.d_in;
}

/* z, f (T x F) of layer l's input x (T x d_in) */
static int dict_encode(const dict *d, int l, const float *x, int T, float *z, float *f)
{
    if (d->tcs) {
        const lp_sae *s = d->tcs->layers[l];
        size_t n = (size_t)T * s->cfg.d_in;
        float *xs = lp_malloc(n * sizeof *xs, "a transcoder's input");
        if (!xs)
            return -1;
        for (size_t i = 0; i < n; i++)
            xs[i] = x[i] * s->scale;
        int rc = lp_sae_encode(z, f, s, xs, T, 0);
        free(xs);
        return rc;
    }
    const lp_clt *c = d->clt;
    int D = c->d_model, F = c->d_tc;
    const float *W = c->W_enc[l]->data, *b = c->b_enc[l]->data, *th = c->threshold ? c->threshold[l]->data : NULL;
    double *acc = lp_malloc((size_t)F * sizeof *acc, "a CLT's pre-activations");
    if (!acc)
        return -1;
    for (int p = 0; p < T; p++) {
        for (int i = 0; i < F; i++)
            acc[i] = b[i];
        for (int k = 0; k < D; k++) {
            double xv = x[(size_t)p * D + k];
            const float *row = W + (size_t)k * F;
            for (int i = 0; i < F; i++)
                acc[i] += xv * row[i];
        }
        for (int i = 0; i < F; i++) {
            float zi = (float)acc[i];
            z[(size_t)p * F + i] = zi;
            f[(size_t)p * F + i] = th ? (zi > th[i] ? zi : 0.0f) : (zi > 0 ? zi : 0.0f);
        }
    }
    free(acc);
    return 0;
}

/* out (T x D) += delta (T x F, features of layer src) decoded into layer dst (src <= dst) */
static void dict_add_decoded(const dict *d, int src, int dst, const float *delta, int T, float *out)
{
    int F = dict_F(d, src), D = dict_D(d, dst, 1);
    const float *Wd;
    size_t stride;
    float div = 1.0f;
    if (d->tcs) {
        if (src != dst)
            return;
        Wd = d->tcs->layers[src]->W_dec->data, stride = (size_t)D, div = d->tcs->layers[src]->scale;
    } else {
        /* W_dec[src]: [F, n_layers - src, D] */
        stride = (size_t)(d->n_layers - src) * D;
        Wd = d->clt->W_dec[src]->data + (size_t)(dst - src) * D;
    }
    for (int p = 0; p < T; p++)
        for (int i = 0; i < F; i++) {
            float v = delta[(size_t)p * F + i];
            if (v == 0.0f)
                continue;
            const float *w = Wd + (size_t)i * stride;
            float *row = out + (size_t)p * D;
            for (int od = 0; od < D; od++)
                row[od] += v * w[od] / div;
        }
}

static const lp_tensor *dict_skip(const dict *d, int l)
{
    return d->tcs ? d->tcs->layers[l]->W_skip : NULL;
}

typedef struct ictx ictx;

typedef struct layer_ctx {
    ictx *c;
    int l;
    int seen;     /* the input was captured in this run */
    float *x;     /* T x d_in: this run's input */
    float *x0;    /* T x d_in: the clean run's */
    float *delta; /* T x F: edit(f) - f of this layer in this run, or NULL (none) */
} layer_ctx;

struct ictx {
    const lp_model *m;
    dict d;
    const lp_intervene_opts *o;
    lp_run clean;
    int T;
    float **clean_f; /* n_layers of T x F */
    lp_tensor **acts, **pre;
    layer_ctx *lc;
};

static int layer_constrained(const ictx *c, int l)
{
    return c->o->constrained && l >= c->o->c_first && l <= c->o->c_last;
}

/* applies layer l's edits, in order, to g (T x F) */
static void apply_edits(const ictx *c, int l, float *g)
{
    int F = dict_F(&c->d, l);
    for (int k = 0; k < c->o->n_edits; k++) {
        const lp_feature_edit *e = &c->o->edits[k];
        if (e->layer != l)
            continue;
        for (int p = 0; p < c->T; p++)
            if (e->pos < 0 || e->pos == p) {
                float *v = g + (size_t)p * F + e->feature;
                *v = lp_feature_edit_apply(e->kind, e->value, *v);
            }
    }
}

static int capture(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    (void)out;
    layer_ctx *lc = ud;
    int D = dict_D(&lc->c->d, lc->l, 0);
    if (act->ndim != 3 || act->shape[0] != 1 || act->shape[1] != lc->c->T || act->shape[2] != D)
        return lp_set_error("intervene: '%s' does not have the %d dimensions transcoder %d reads", name, D, lc->l);
    if (lp_tensor_to_host(act, lc->x) < 0)
        return -1;
    lc->seen = 1;
    return 0;
}

static int edit_out(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    layer_ctx *lc = ud;
    ictx *c = lc->c;
    const dict *d = &c->d;
    int l = lc->l, T = c->T;
    int F = dict_F(d, l), Din = dict_D(d, l, 0), Dout = dict_D(d, l, 1);
    if (act->ndim != 3 || act->shape[0] != 1 || act->shape[1] != T || act->shape[2] != Dout)
        return lp_set_error("intervene: '%s' does not have the %d dimensions transcoder %d writes", name, Dout, l);
    if (!lc->seen)
        return lp_set_error("intervene: transcoder %d did not see its input '%s' before '%s'", l, d->in[l], name);
    float *pre = c->pre[l]->data, *f = c->acts[l]->data;
    if (dict_encode(d, l, lc->x, T, pre, f) < 0)
        return -1;
    int frozen = layer_constrained(c, l);
    /* the features the edits start from: the clean run's (constrained) or this run's */
    size_t nf = (size_t)T * F;
    const float *ref = frozen ? c->clean_f[l] : f;
    float *g = lp_malloc(nf * sizeof *g, "edited features");
    if (!g)
        return -1;
    memcpy(g, ref, nf * sizeof *g);
    apply_edits(c, l, g);
    /* g - ref, kept for the layers this one writes to (ref may be f: before f changes) */
    int any = 0;
    for (size_t i = 0; i < nf; i++) {
        float v = g[i];
        g[i] = v - ref[i];
        any |= g[i] != 0.0f;
        if (!frozen)
            f[i] = v;
    }
    if (frozen)
        apply_edits(c, l, f); /* what the features read: this run's, with the edits */
    free(lc->delta);
    lc->delta = NULL;
    if (any)
        lc->delta = g;
    else
        free(g);
    lp_tensor *o = NULL;
    if (frozen) {
        const lp_tensor *y = lp_run_get(&c->clean, d->out[l]);
        if (!y)
            return lp_set_error("intervene: the clean run kept no '%s'", d->out[l]);
        o = lp_tensor_clone(y);
        const lp_tensor *sk = dict_skip(d, l);
        if (o && sk) { /* the skip's response to the change of the input */
            const float *W = sk->data, *x0 = lc->x0;
            for (int p = 0; p < T; p++)
                for (int od = 0; od < Dout; od++) {
                    double v = 0;
                    for (int i = 0; i < Din; i++)
                        v += (double)(lc->x[(size_t)p * Din + i] - x0[(size_t)p * Din + i]) * W[(size_t)od * Din + i];
                    o->data[(size_t)p * Dout + od] += (float)v;
                }
        }
    } else {
        o = lp_tensor_clone(act);
    }
    if (!o)
        return -1;
    /* the edits of this layer and of the earlier layers that write here (a CLT) */
    for (int src = 0; src <= l; src++)
        if (c->lc[src].delta)
            dict_add_decoded(d, src, l, c->lc[src].delta, T, o->data);
    *out = o;
    return 0;
}

static int keep_clean(void *ud, const char *name)
{
    const ictx *c = ud;
    if (strstr(name, "attn.hook_pattern") || strstr(name, "hook_scale"))
        return 1;
    for (int l = 0; l < c->d.n_layers; l++)
        if (!strcmp(name, c->d.in[l]) || !strcmp(name, c->d.out[l]))
            return 1;
    return 0;
}

static lp_tensor *mat(int64_t r, int64_t k)
{
    int64_t shape[2] = {r, k};
    return lp_tensor_empty_for("intervened features", 2, shape, LP_DEVICE_CPU);
}

void lp_intervention_clear(lp_intervention *r)
{
    if (!r)
        return;
    lp_tensor_free(r->clean_logits);
    lp_tensor_free(r->logits);
    for (int l = 0; l < r->n_layers; l++) {
        if (r->acts)
            lp_tensor_free(r->acts[l]);
        if (r->pre)
            lp_tensor_free(r->pre[l]);
        if (r->clean_acts)
            lp_tensor_free(r->clean_acts[l]);
    }
    free(r->acts), free(r->pre), free(r->clean_acts);
    memset(r, 0, sizeof *r);
}

static int check_opts(const dict *d, int T, const lp_intervene_opts *o)
{
    int L = d->n_layers;
    if (o->n_edits < 0 || (o->n_edits && !o->edits))
        return lp_set_error("intervene: no edits");
    for (int k = 0; k < o->n_edits; k++) {
        const lp_feature_edit *e = &o->edits[k];
        if (e->layer < 0 || e->layer >= L)
            return lp_set_error("intervene: edit %d: layer %d is not a layer of the transcoders (0..%d)", k + 1,
                                e->layer, L - 1);
        int F = dict_F(d, e->layer);
        if (e->feature < 0 || e->feature >= F)
            return lp_set_error("intervene: edit %d: feature %d is out of range (layer %d has features 0..%d)", k + 1,
                                e->feature, e->layer, F - 1);
        if (e->pos < -1 || e->pos >= T)
            return lp_set_error("intervene: edit %d: position %d is beyond the prompt (%d tokens)", k + 1, e->pos, T);
        if (e->kind < LP_FEAT_SET || e->kind > LP_FEAT_ABLATE)
            return lp_set_error("intervene: edit %d: unknown kind", k + 1);
    }
    if (o->constrained && (o->c_first < 0 || o->c_last >= L || o->c_first > o->c_last))
        return lp_set_error("intervene: constrained layers %d..%d are not a range of 0..%d", o->c_first, o->c_last,
                            L - 1);
    return 0;
}

/* a CLT's hooks, relative to blocks.L (circuit-tracer's defaults when empty, as tc_io.c reads them) */
static const char *clt_hook(const lp_clt *c, int out)
{
    const char *h = out ? c->feature_output_hook : c->feature_input_hook;
    return h[0] ? h : out ? "mlp.hook_out" : "mlp.hook_in";
}

int lp_intervene_check_clt(const lp_model *m, const lp_clt *clt)
{
    if (!clt || clt->n_layers < 1)
        return lp_set_error("intervene: no transcoders");
    if (clt->n_layers != m->cfg.n_layers)
        return lp_set_error("intervene: the cross-layer transcoder has %d layers, the model %d", clt->n_layers,
                            m->cfg.n_layers);
    if (clt->d_model != m->cfg.d_model)
        return lp_set_error("intervene: the cross-layer transcoder reads %d dimensions, the model has %d",
                            clt->d_model, m->cfg.d_model);
    char in[128], out[128];
    snprintf(in, sizeof in, "blocks.0.%s", clt_hook(clt, 0));
    snprintf(out, sizeof out, "blocks.0.%s", clt_hook(clt, 1));
    if (!lp_model_has_hook(m, in) || !lp_model_has_hook(m, out))
        return lp_set_error("intervene: the cross-layer transcoder reads '%s' and writes '%s', which this model does "
                            "not have", in, out);
    return 0;
}

static int run_intervention(const lp_model *m, dict *d, const int32_t *tokens, int T, const lp_intervene_opts *o,
                            lp_intervention *out)
{
    if (T < 1)
        return lp_set_error("intervene: an empty prompt");
    static const lp_intervene_opts none = {0};
    if (!o)
        o = &none;
    if (check_opts(d, T, o) < 0)
        return -1;
    int L = d->n_layers, rc = -1;
    ictx c = {.m = m, .d = *d, .o = o, .T = T};
    lp_run run = {0};
    /* hooks: capture + edit per layer, a pattern per layer, ln1 + ln2 per layer, ln_final */
    size_t cap = 5 * (size_t)L + 1;
    lp_hook *h = calloc(cap, sizeof *h);
    char(*names)[96] = calloc(cap, sizeof *names);
    c.lc = calloc((size_t)L, sizeof *c.lc);
    c.clean_f = calloc((size_t)L, sizeof *c.clean_f);
    out->n_layers = L, out->T = T;
    out->acts = calloc((size_t)L, sizeof *out->acts);
    out->pre = calloc((size_t)L, sizeof *out->pre);
    out->clean_acts = calloc((size_t)L, sizeof *out->clean_acts);
    if (!h || !names || !c.lc || !c.clean_f || !out->acts || !out->pre || !out->clean_acts) {
        lp_set_error_code(LP_ERR_NOMEM, "intervene: out of memory");
        goto done;
    }
    c.acts = out->acts, c.pre = out->pre;
    /* the clean run */
    lp_run_opts co = {.filter = keep_clean, .filter_ud = &c};
    if (lp_model_run(m, tokens, 1, T, &co, &c.clean) < 0)
        goto done;
    for (int l = 0; l < L; l++) {
        int F = dict_F(d, l), Din = dict_D(d, l, 0);
        out->acts[l] = mat(T, F), out->pre[l] = mat(T, F), out->clean_acts[l] = mat(T, F);
        size_t nx = (size_t)T * Din * sizeof(float);
        c.lc[l] = (layer_ctx){.c = &c, .l = l, .x = lp_malloc(nx, "inputs"), .x0 = lp_malloc(nx, "inputs")};
        if (!out->acts[l] || !out->pre[l] || !out->clean_acts[l] || !c.lc[l].x || !c.lc[l].x0)
            goto done;
        c.clean_f[l] = out->clean_acts[l]->data;
        const lp_tensor *x = lp_run_get(&c.clean, d->in[l]);
        if (!x || x->ndim != 3 || x->shape[2] != Din) {
            lp_set_error("intervene: '%s' does not have the %d dimensions transcoder %d reads", d->in[l], Din, l);
            goto done;
        }
        if (lp_tensor_to_host(x, c.lc[l].x0) < 0 || dict_encode(d, l, c.lc[l].x0, T, out->pre[l]->data, c.clean_f[l]) < 0)
            goto done;
    }
    /* the intervened run */
    size_t n = 0;
    for (int l = 0; l < L; l++) {
        h[n++] = (lp_hook){.name = d->in[l], .kind = LP_HOOK_FN, .fn = capture, .ud = &c.lc[l], .head = -1, .pos = -1};
        h[n++] = (lp_hook){.name = d->out[l], .kind = LP_HOOK_FN, .fn = edit_out, .ud = &c.lc[l], .head = -1, .pos = -1};
        char tmp[3][96];
        int k = 0;
        if (o->freeze_attention)
            snprintf(tmp[k++], 96, "blocks.%d.attn.hook_pattern", l);
        if (layer_constrained(&c, l)) {
            snprintf(tmp[k++], 96, "blocks.%d.ln1.hook_scale", l);
            snprintf(tmp[k++], 96, "blocks.%d.ln2.hook_scale", l);
        }
        for (int j = 0; j < k; j++) {
            const lp_tensor *v = lp_run_get(&c.clean, tmp[j]);
            if (!v)
                continue; /* not a hook point of this model (an attention-only model's ln2) */
            snprintf(names[n], 96, "%s", tmp[j]);
            h[n] = (lp_hook){.name = names[n], .kind = LP_HOOK_PATCH, .value = v, .head = -1, .pos = -1};
            n++;
        }
    }
    if (o->constrained && o->c_last == L - 1) {
        const lp_tensor *v = lp_run_get(&c.clean, "ln_final.hook_scale");
        if (v)
            h[n++] = (lp_hook){.name = "ln_final.hook_scale", .kind = LP_HOOK_PATCH, .value = v, .head = -1, .pos = -1};
    }
    lp_run_opts ro = {.hooks = h, .nhooks = n};
    if (lp_model_run(m, tokens, 1, T, &ro, &run) < 0)
        goto done;
    out->logits = run.logits, run.logits = NULL;
    out->clean_logits = c.clean.logits, c.clean.logits = NULL;
    rc = 0;
done:
    lp_run_clear(&run);
    lp_run_clear(&c.clean);
    for (int l = 0; c.lc && l < L; l++)
        free(c.lc[l].x), free(c.lc[l].x0), free(c.lc[l].delta);
    free(c.lc), free(c.clean_f), free(h), free(names);
    if (rc < 0)
        lp_intervention_clear(out);
    return rc;
}

int lp_intervene(const lp_model *m, const lp_transcoder_set *tcs, const int32_t *tokens, int T,
                 const lp_intervene_opts *o, lp_intervention *out)
{
    memset(out, 0, sizeof *out);
    if (lp_intervene_check_set(m, tcs) < 0)
        return -1;
    int L = tcs->n_layers;
    dict d = {.tcs = tcs, .n_layers = L, .in = calloc((size_t)L, 128), .out = calloc((size_t)L, 128)};
    if (!d.in || !d.out) {
        free(d.in), free(d.out);
        return lp_set_error_code(LP_ERR_NOMEM, "intervene: out of memory");
    }
    for (int l = 0; l < L; l++) {
        const lp_sae_config *c = &tcs->layers[l]->cfg;
        snprintf(d.in[l], 128, "%s", c->transcoder ? c->hook_in : c->hook_out);
        snprintf(d.out[l], 128, "%s", c->hook_out);
    }
    int rc = run_intervention(m, &d, tokens, T, o, out);
    free(d.in), free(d.out);
    return rc;
}

int lp_intervene_clt(const lp_model *m, const lp_clt *clt, const int32_t *tokens, int T, const lp_intervene_opts *o,
                     lp_intervention *out)
{
    memset(out, 0, sizeof *out);
    if (lp_intervene_check_clt(m, clt) < 0)
        return -1;
    int L = clt->n_layers;
    dict d = {.clt = clt, .n_layers = L, .in = calloc((size_t)L, 128), .out = calloc((size_t)L, 128)};
    if (!d.in || !d.out) {
        free(d.in), free(d.out);
        return lp_set_error_code(LP_ERR_NOMEM, "intervene: out of memory");
    }
    for (int l = 0; l < L; l++) {
        snprintf(d.in[l], 128, "blocks.%d.%s", l, clt_hook(clt, 0));
        snprintf(d.out[l], 128, "blocks.%d.%s", l, clt_hook(clt, 1));
    }
    int rc = run_intervention(m, &d, tokens, T, o, out);
    free(d.in), free(d.out);
    return rc;
}
