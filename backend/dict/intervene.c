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

typedef struct ictx ictx;

typedef struct layer_ctx {
    ictx *c;
    int l;
    int seen;  /* the input was captured in this run */
    float *x;  /* T x d_in: this run's input */
    float *x0; /* T x d_in: the clean run's */
} layer_ctx;

struct ictx {
    const lp_model *m;
    const lp_transcoder_set *tcs;
    const lp_intervene_opts *o;
    lp_run clean;
    int T;
    float **clean_f; /* n_layers of T x d_sae */
    lp_tensor **acts, **pre;
    layer_ctx *lc;
};

static const lp_sae *layer_sae(const ictx *c, int l)
{
    return c->tcs->layers[l];
}

static const char *in_hook(const lp_sae *s)
{
    return s->cfg.transcoder ? s->cfg.hook_in : s->cfg.hook_out;
}

/* z, f (T x d_sae) of x (T x d_in) */
static int encode_x(const lp_sae *s, const float *x, int T, float *z, float *f)
{
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

static int layer_constrained(const ictx *c, int l)
{
    return c->o->constrained && l >= c->o->c_first && l <= c->o->c_last;
}

/* applies layer l's edits, in order, to g (T x d_sae) */
static void apply_edits(const ictx *c, int l, float *g)
{
    int F = layer_sae(c, l)->cfg.d_sae;
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
    const lp_sae *s = layer_sae(lc->c, lc->l);
    if (act->ndim != 3 || act->shape[0] != 1 || act->shape[1] != lc->c->T || act->shape[2] != s->cfg.d_in)
        return lp_set_error("intervene: '%s' does not have the %d dimensions transcoder %d reads", name, s->cfg.d_in,
                            lc->l);
    if (lp_tensor_to_host(act, lc->x) < 0)
        return -1;
    lc->seen = 1;
    return 0;
}

static int edit_out(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    layer_ctx *lc = ud;
    ictx *c = lc->c;
    int l = lc->l, T = c->T;
    const lp_sae *s = layer_sae(c, l);
    int F = s->cfg.d_sae, Din = s->cfg.d_in, Dout = s->cfg.d_out;
    if (act->ndim != 3 || act->shape[0] != 1 || act->shape[1] != T || act->shape[2] != Dout)
        return lp_set_error("intervene: '%s' does not have the %d dimensions transcoder %d writes", name, Dout, l);
    if (!lc->seen)
        return lp_set_error("intervene: transcoder %d did not see its input '%s' before '%s'", l, in_hook(s), name);
    float *pre = c->pre[l]->data, *f = c->acts[l]->data;
    if (encode_x(s, lc->x, T, pre, f) < 0)
        return -1;
    int frozen = layer_constrained(c, l);
    /* the features the edits start from: the clean run's (constrained) or this run's */
    size_t nf = (size_t)T * F;
    float *ref = frozen ? c->clean_f[l] : f;
    float *g = lp_malloc(nf * sizeof *g, "edited features");
    lp_tensor *o = NULL;
    if (!g)
        return -1;
    memcpy(g, ref, nf * sizeof *g);
    apply_edits(c, l, g);
    if (frozen) {
        char cname[160];
        snprintf(cname, sizeof cname, "%s", s->cfg.hook_out);
        const lp_tensor *y = lp_run_get(&c->clean, cname);
        if (!y) {
            free(g);
            return lp_set_error("intervene: the clean run kept no '%s'", cname);
        }
        o = lp_tensor_clone(y);
        if (o && s->W_skip) { /* the skip's response to the change of the input */
            const float *W = s->W_skip->data, *x0 = lc->x0;
            for (int p = 0; p < T; p++)
                for (int od = 0; od < Dout; od++) {
                    double v = 0;
                    for (int i = 0; i < Din; i++)
                        v += (double)(lc->x[(size_t)p * Din + i] - x0[(size_t)p * Din + i]) * W[(size_t)od * Din + i];
                    o->data[(size_t)p * Dout + od] += (float)v;
                }
        }
        /* what the features read: this run's, with the edits */
        apply_edits(c, l, f);
    } else {
        o = lp_tensor_clone(act);
    }
    if (!o) {
        free(g);
        return -1;
    }
    const float *Wd = s->W_dec->data;
    for (int p = 0; p < T; p++)
        for (int i = 0; i < F; i++) {
            float d = g[(size_t)p * F + i] - ref[(size_t)p * F + i];
            if (d == 0.0f)
                continue;
            float *row = o->data + (size_t)p * Dout;
            for (int od = 0; od < Dout; od++)
                row[od] += d * Wd[(size_t)i * Dout + od] / s->scale;
        }
    if (!frozen)
        memcpy(f, g, nf * sizeof *f);
    free(g);
    *out = o;
    return 0;
}

static int keep_clean(void *ud, const char *name)
{
    const ictx *c = ud;
    if (strstr(name, "attn.hook_pattern") || strstr(name, "hook_scale"))
        return 1;
    for (int l = 0; l < c->tcs->n_layers; l++) {
        const lp_sae *s = layer_sae(c, l);
        if (!strcmp(name, in_hook(s)) || !strcmp(name, s->cfg.hook_out))
            return 1;
    }
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

static int check_opts(const lp_transcoder_set *tcs, int T, const lp_intervene_opts *o)
{
    int L = tcs->n_layers;
    if (o->n_edits < 0 || (o->n_edits && !o->edits))
        return lp_set_error("intervene: no edits");
    for (int k = 0; k < o->n_edits; k++) {
        const lp_feature_edit *e = &o->edits[k];
        if (e->layer < 0 || e->layer >= L)
            return lp_set_error("intervene: edit %d: layer %d is not a layer of the transcoder set (0..%d)", k + 1,
                                e->layer, L - 1);
        int F = tcs->layers[e->layer]->cfg.d_sae;
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

int lp_intervene(const lp_model *m, const lp_transcoder_set *tcs, const int32_t *tokens, int T,
                 const lp_intervene_opts *o, lp_intervention *out)
{
    memset(out, 0, sizeof *out);
    if (lp_intervene_check_set(m, tcs) < 0)
        return -1;
    if (T < 1)
        return lp_set_error("intervene: an empty prompt");
    static const lp_intervene_opts none = {0};
    if (!o)
        o = &none;
    if (check_opts(tcs, T, o) < 0)
        return -1;
    int L = tcs->n_layers, rc = -1;
    ictx c = {.m = m, .tcs = tcs, .o = o, .T = T};
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
        const lp_sae *s = layer_sae(&c, l);
        int F = s->cfg.d_sae;
        out->acts[l] = mat(T, F), out->pre[l] = mat(T, F), out->clean_acts[l] = mat(T, F);
        size_t nx = (size_t)T * s->cfg.d_in * sizeof(float);
        c.lc[l] = (layer_ctx){.c = &c, .l = l, .x = lp_malloc(nx, "inputs"), .x0 = lp_malloc(nx, "inputs")};
        if (!out->acts[l] || !out->pre[l] || !out->clean_acts[l] || !c.lc[l].x || !c.lc[l].x0)
            goto done;
        c.clean_f[l] = out->clean_acts[l]->data;
        const lp_tensor *x = lp_run_get(&c.clean, in_hook(s));
        if (!x || x->ndim != 3 || x->shape[2] != s->cfg.d_in) {
            lp_set_error("intervene: '%s' does not have the %d dimensions transcoder %d reads", in_hook(s),
                         s->cfg.d_in, l);
            goto done;
        }
        if (lp_tensor_to_host(x, c.lc[l].x0) < 0 || encode_x(s, c.lc[l].x0, T, out->pre[l]->data, c.clean_f[l]) < 0)
            goto done;
    }
    /* the intervened run */
    size_t n = 0;
    for (int l = 0; l < L; l++) {
        const lp_sae *s = layer_sae(&c, l);
        h[n++] = (lp_hook){.name = in_hook(s), .kind = LP_HOOK_FN, .fn = capture, .ud = &c.lc[l], .head = -1, .pos = -1};
        h[n++] = (lp_hook){.name = s->cfg.hook_out, .kind = LP_HOOK_FN, .fn = edit_out, .ud = &c.lc[l], .head = -1,
                           .pos = -1};
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
        free(c.lc[l].x), free(c.lc[l].x0);
    free(c.lc), free(c.clean_f), free(h), free(names);
    if (rc < 0)
        lp_intervention_clear(out);
    return rc;
}
