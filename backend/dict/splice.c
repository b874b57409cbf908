/* Splicing dictionaries into a run (splice.h): each one becomes a callback hook at its hook
 * point (and, for a transcoder, a second one at hook_in that keeps a copy of its input); the
 * callback runs the hook points of its parts itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "dict/clt_ops.h"
#include "dict/sae_ops.h"
#include "dict/splice.h"

enum { P_INPUT, P_PRE, P_POST, P_RECONS, P_ERROR, P_OUTPUT, N_PARTS };
const char *const lp_splice_suffixes[N_PARTS] = {"hook_sae_input",  "hook_sae_acts_pre", "hook_sae_acts_post",
                                                  "hook_sae_recons", "hook_sae_error",    "hook_sae_output"};

/* A CLT's features of the layers done so far in this run: as encoded, and after the hooks. */
typedef struct clt_state {
    const lp_clt *clt;
    lp_tensor **fclean, **fpost; /* n_layers each, NULL until the layer is reached */
} clt_state;

typedef struct entry {
    const lp_sae *s;
    lp_tensor *x_in; /* a transcoder's input of this run (a copy), or NULL */
    struct ctx *c;
    const char *hook;  /* <hook> of the part names */
    clt_state *cs;     /* a CLT's layer (s NULL): the CLT's state, and the layer */
    int layer;
    char buf[2][128];  /* a CLT layer's hook names: the one read, the one written */
} entry;

typedef struct ctx {
    const lp_run_opts *user;
    lp_run *out;
    int error_term;
    entry *e;
} ctx;

/* The name <hook>.<suffix> into buf. */
static void part_name(char *buf, size_t cap, const entry *e, int part)
{
    snprintf(buf, cap, "%s.%s", e->hook, lp_splice_suffixes[part]);
}

/* blocks.<l>.<hook> into buf */
static void layer_hook(char *buf, size_t cap, int l, const char *hook)
{
    snprintf(buf, cap, "blocks.%d.%s", l, hook);
}

int lp_splice_has_hook(const lp_splice_opts *so, const char *name)
{
    char buf[160];
    entry e = {0};
    for (int i = 0; so && i < so->n; i++)
        for (int p = 0; p < N_PARTS; p++) {
            e.hook = so->saes[i]->cfg.hook_out;
            part_name(buf, sizeof buf, &e, p);
            if (!strcmp(buf, name))
                return 1;
        }
    for (int i = 0; so && i < so->nclt; i++)
        for (int l = 0; l < so->clts[i]->n_layers; l++) {
            layer_hook(e.buf[1], sizeof e.buf[1], l, so->clts[i]->feature_output_hook);
            e.hook = e.buf[1];
            for (int p = 0; p < N_PARTS; p++) {
                part_name(buf, sizeof buf, &e, p);
                if (!strcmp(buf, name))
                    return 1;
            }
        }
    return 0;
}

/* The user's hooks on one part, then the cache. */
static int part_hooks(entry *e, int part, lp_tensor *t)
{
    char name[160];
    part_name(name, sizeof name, e, part);
    const lp_run_opts *o = e->c->user;
    for (size_t i = 0; o && i < o->nhooks; i++)
        if (!strcmp(o->hooks[i].name, name) && lp_hook_apply(&o->hooks[i], t, -1, 1) < 0)
            return -1;
    if (o && (o->cache_all || (o->filter && o->filter(o->filter_ud, name))))
        return lp_run_add(e->c->out, name, t);
    return 0;
}

/* A new contiguous (B,T,d) tensor. */
static lp_tensor *btd(int64_t B, int64_t T, int64_t d)
{
    int64_t shape[3] = {B, T, d};
    return lp_tensor_empty_for("a spliced dictionary's activations", 3, shape, LP_DEVICE_CPU);
}

static int capture(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    (void)name, (void)out;
    entry *e = ud;
    lp_tensor_free(e->x_in);
    e->x_in = lp_tensor_contiguous(act);
    return e->x_in ? 0 : -1;
}

/* x (N,d_in) -> z, f, recons (N,d_out), in the model's units. */
static int encode_decode(const lp_sae *s, const float *x, float *xs, float *z, float *f, float *r, int N)
{
    size_t nin = (size_t)N * s->cfg.d_in;
    for (size_t i = 0; i < nin; i++)
        xs[i] = x[i] * s->scale;
    if (lp_sae_encode(z, f, s, xs, N, 0) < 0 || lp_sae_decode(r, s, f, xs, N) < 0)
        return -1;
    size_t nout = (size_t)N * s->cfg.d_out;
    for (size_t i = 0; i < nout && s->scale != 1.0f; i++)
        r[i] /= s->scale;
    return 0;
}

/* f = act(z) for one row, as lp_sae_encode's inference path computes it (sae_ops.h): ReLU
 * (standard), the k largest of z (times ||W_dec,i|| when rescaled; ties: the lower index) then
 * ReLU (topk), z * 1[z > threshold] (jumprelu, batchtopk, matryoshka). norms (d_sae) for topk. */
static void act_row(float *f, const float *z, const lp_sae *s, const double *norms)
{
    const lp_sae_config *c = &s->cfg;
    int n = c->d_sae;
    if (c->arch == LP_SAE_STANDARD) {
        for (int i = 0; i < n; i++)
            f[i] = z[i] > 0 ? z[i] : 0;
        return;
    }
    if (c->arch != LP_SAE_TOPK) {
        for (int i = 0; i < n; i++)
            f[i] = z[i] > s->threshold->data[i] ? z[i] : 0;
        return;
    }
    for (int i = 0; i < n; i++)
        f[i] = 0;
    for (int r = 0; r < c->k; r++) { /* k passes: k is small */
        int best = -1;
        double bv = 0;
        for (int i = 0; i < n; i++) {
            double v = c->rescale_acts_by_decoder_norm ? z[i] * norms[i] : z[i];
            if (f[i] == 0 && (best < 0 || v > bv)) /* f[i] != 0: already kept */
                best = i, bv = v;
        }
        if (best < 0 || bv <= 0)
            break;
        f[best] = (float)bv;
    }
}

/* After a hook changed z: f from it again. */
static int refeature(float *f, const float *z, const lp_sae *s, int N)
{
    double *norms = NULL;
    if (s->cfg.arch == LP_SAE_TOPK) {
        if (!(norms = lp_malloc((size_t)s->cfg.d_sae * sizeof *norms, "decoder norms")))
            return -1;
        lp_sae_decoder_norms(norms, s);
    }
    for (int t = 0; t < N; t++)
        act_row(f + (size_t)t * s->cfg.d_sae, z + (size_t)t * s->cfg.d_sae, s, norms);
    free(norms);
    return 0;
}

/* Whether the user's opts hook e's part. */
static int part_hooked(const entry *e, int part)
{
    char name[160];
    part_name(name, sizeof name, e, part);
    const lp_run_opts *o = e->c->user;
    for (size_t i = 0; o && i < o->nhooks; i++)
        if (!strcmp(o->hooks[i].name, name))
            return 1;
    return 0;
}

static int replace(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    entry *e = ud;
    const lp_sae *s = e->s;
    const lp_sae_config *c = &s->cfg;
    if (act->ndim != 3 || act->shape[2] != c->d_out)
        return lp_set_error("saes: '%s' has %lld dimensions, the dictionary writes %d", name,
                            (long long)act->shape[act->ndim - 1], c->d_out);
    int64_t B = act->shape[0], T = act->shape[1];
    int N = (int)(B * T);
    lp_tensor *y = lp_tensor_contiguous(act), *x = NULL;
    lp_tensor *z = btd(B, T, c->d_sae), *f = btd(B, T, c->d_sae), *r = btd(B, T, c->d_out);
    lp_tensor *err = btd(B, T, c->d_out), *o = btd(B, T, c->d_out), *xs = btd(B, T, c->d_in);
    int rc = -1;
    if (!y || !z || !f || !r || !err || !o || !xs)
        goto done;
    if (c->transcoder) {
        if (!e->x_in)
            rc = lp_set_error("saes: the transcoder on '%s' did not see its input '%s'", name, c->hook_in);
        x = e->x_in ? lp_tensor_clone(e->x_in) : NULL;
    } else {
        x = lp_tensor_clone(y);
    }
    if (!x)
        goto done;
    if (x->ndim != 3 || x->shape[2] != c->d_in || x->shape[0] != B || x->shape[1] != T) {
        rc = lp_set_error("saes: '%s' does not have the %d dimensions the dictionary reads", c->hook_in, c->d_in);
        goto done;
    }
    if (part_hooks(e, P_INPUT, x) < 0 || encode_decode(s, x->data, xs->data, z->data, f->data, r->data, N) < 0)
        goto done;
    const float *target = c->transcoder ? y->data : x->data;
    size_t nout = (size_t)N * c->d_out;
    for (size_t i = 0; i < nout; i++)
        err->data[i] = target[i] - r->data[i];
    int pre = part_hooked(e, P_PRE), post = part_hooked(e, P_POST);
    if (part_hooks(e, P_PRE, z) < 0 || (pre && refeature(f->data, z->data, s, N) < 0) || part_hooks(e, P_POST, f) < 0)
        goto done;
    /* features a hook changed decode to a new reconstruction; the error stays */
    if (pre || post) {
        if (lp_sae_decode(r->data, s, f->data, xs->data, N) < 0)
            goto done;
        for (size_t i = 0; i < nout && s->scale != 1.0f; i++)
            r->data[i] /= s->scale;
    }
    if (part_hooks(e, P_RECONS, r) < 0 || part_hooks(e, P_ERROR, err) < 0)
        goto done;
    for (size_t i = 0; i < nout; i++)
        o->data[i] = r->data[i] + (e->c->error_term ? err->data[i] : 0.0f);
    if (part_hooks(e, P_OUTPUT, o) < 0)
        goto done;
    *out = o;
    o = NULL;
    rc = 0;
done:
    lp_tensor_free(y), lp_tensor_free(x), lp_tensor_free(z), lp_tensor_free(f);
    lp_tensor_free(r), lp_tensor_free(err), lp_tensor_free(o), lp_tensor_free(xs);
    return rc;
}

/* A CLT's layer: x captured at its input; its features (kept for the later layers), the
 * prediction from every layer's so far, the error against the features as encoded. */
static int replace_clt(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    entry *e = ud;
    clt_state *cs = e->cs;
    const lp_clt *c = cs->clt;
    const int l2 = e->layer, d = c->d_model, T = c->d_tc;
    if (act->ndim != 3 || act->shape[2] != d)
        return lp_set_error("saes: '%s' has %lld dimensions, the cross-layer transcoder writes %d", name,
                            (long long)act->shape[act->ndim - 1], d);
    int64_t B = act->shape[0], Tn = act->shape[1];
    int N = (int)(B * Tn);
    if (!e->x_in)
        return lp_set_error("saes: the cross-layer transcoder on '%s' did not see its input '%s'", name, e->buf[0]);
    for (int l = 0; l < l2; l++)
        if (!cs->fpost[l] || cs->fpost[l]->shape[0] * cs->fpost[l]->shape[1] != N)
            return lp_set_error("saes: the cross-layer transcoder reached '%s' before layer %d's features", name, l);
    lp_tensor *y = lp_tensor_contiguous(act), *x = lp_tensor_clone(e->x_in);
    lp_tensor *z = btd(B, Tn, T), *f = btd(B, Tn, T), *fc = btd(B, Tn, T), *r = btd(B, Tn, d);
    lp_tensor *err = btd(B, Tn, d), *o = btd(B, Tn, d);
    const float **fl = calloc((size_t)l2 + 1, sizeof *fl);
    int rc = -1;
    if (!y || !x || !z || !f || !fc || !r || !err || !o || !fl)
        goto done;
    if (x->ndim != 3 || x->shape[2] != d || x->shape[0] != B || x->shape[1] != Tn) {
        rc = lp_set_error("saes: '%s' does not have the %d dimensions the cross-layer transcoder reads", e->buf[0], d);
        goto done;
    }
    if (part_hooks(e, P_INPUT, x) < 0 || lp_clt_encode_layer(z->data, fc->data, c, l2, x->data, N) < 0)
        goto done;
    memcpy(f->data, fc->data, (size_t)N * T * sizeof(float));
    for (int l = 0; l < l2; l++)
        fl[l] = cs->fclean[l]->data;
    fl[l2] = fc->data;
    lp_clt_decode_layer(r->data, c, l2, fl, N);
    size_t nout = (size_t)N * d;
    for (size_t i = 0; i < nout; i++)
        err->data[i] = y->data[i] - r->data[i];
    int pre = part_hooked(e, P_PRE);
    if (part_hooks(e, P_PRE, z) < 0)
        goto done;
    if (pre)
        lp_clt_activate_layer(f->data, z->data, c, l2, N);
    if (part_hooks(e, P_POST, f) < 0)
        goto done;
    for (int l = 0; l < l2; l++)
        fl[l] = cs->fpost[l]->data;
    fl[l2] = f->data;
    lp_clt_decode_layer(r->data, c, l2, fl, N);
    if (part_hooks(e, P_RECONS, r) < 0 || part_hooks(e, P_ERROR, err) < 0)
        goto done;
    for (size_t i = 0; i < nout; i++)
        o->data[i] = r->data[i] + (e->c->error_term ? err->data[i] : 0.0f);
    if (part_hooks(e, P_OUTPUT, o) < 0)
        goto done;
    lp_tensor_free(cs->fclean[l2]), lp_tensor_free(cs->fpost[l2]);
    cs->fclean[l2] = fc, cs->fpost[l2] = f;
    fc = f = NULL;
    *out = o;
    o = NULL;
    rc = 0;
done:
    lp_tensor_free(y), lp_tensor_free(x), lp_tensor_free(z), lp_tensor_free(f), lp_tensor_free(fc);
    lp_tensor_free(r), lp_tensor_free(err), lp_tensor_free(o);
    free(fl);
    return rc;
}

static int run_spliced(const lp_model *m, lp_kv_cache *kv, const int32_t *tokens, int B, int T,
                       const lp_splice_opts *so, const lp_run_opts *opts, lp_run *out)
{
    memset(out, 0, sizeof *out);
    int n = so ? so->n : 0, nc = so ? so->nclt : 0, ncl = 0; /* ncl: every CLT's layers */
    size_t nuser = opts ? opts->nhooks : 0;
    for (int i = 0; i < nc; i++) {
        const lp_clt *cl = so->clts[i];
        char in[128], outh[128];
        if (cl->n_layers != m->cfg.n_layers)
            return lp_set_error("saes: cross-layer transcoder %d has %d layers, the model %d", i + 1, cl->n_layers,
                                m->cfg.n_layers);
        for (int l = 0; l < cl->n_layers; l++) {
            layer_hook(in, sizeof in, l, cl->feature_input_hook);
            layer_hook(outh, sizeof outh, l, cl->feature_output_hook);
            if (!lp_model_has_hook(m, in) || !lp_model_has_hook(m, outh))
                return lp_set_error("saes: cross-layer transcoder %d reads '%s' and writes '%s', which this model "
                                    "does not have", i + 1, in, outh);
        }
        ncl += cl->n_layers;
    }
    for (int i = 0; i < n; i++) {
        const lp_sae_config *c = &so->saes[i]->cfg;
        const char *in = c->transcoder ? c->hook_in : c->hook_out;
        if (!lp_model_has_hook(m, in) || !lp_model_has_hook(m, c->hook_out))
            return lp_set_error("saes: dictionary %d reads '%s' and writes '%s', which this model does not have",
                                i + 1, in, c->hook_out);
    }
    for (size_t i = 0; i < nuser; i++) {
        const char *name = opts->hooks[i].name;
        if (!name || lp_model_has_hook(m, name))
            continue;
        if (!lp_splice_has_hook(so, name))
            return lp_set_error("unknown hook point '%s' (neither the model nor a spliced dictionary has it; a "
                                "dictionary's are <hook>.hook_sae_input, ..._acts_post, ..._recons, ..._error)",
                                name);
    }
    ctx c = {.user = opts, .out = out, .error_term = so ? so->error_term : 0};
    entry *e = calloc((size_t)n + ncl + 1, sizeof *e);
    lp_hook *h = calloc(2 * ((size_t)n + ncl) + nuser + 1, sizeof *h);
    clt_state *cs = calloc((size_t)nc + 1, sizeof *cs);
    int rc = -1;
    if (!e || !h || !cs) {
        lp_set_error_code(LP_ERR_NOMEM, "saes: out of memory");
        goto done;
    }
    for (int i = 0; i < nc; i++) {
        cs[i].clt = so->clts[i];
        if (!(cs[i].fclean = calloc((size_t)so->clts[i]->n_layers, sizeof *cs[i].fclean)) ||
            !(cs[i].fpost = calloc((size_t)so->clts[i]->n_layers, sizeof *cs[i].fpost))) {
            lp_set_error_code(LP_ERR_NOMEM, "saes: out of memory");
            goto done;
        }
    }
    c.e = e;
    size_t nh = 0;
    /* replacements first, so the user's hooks on a spliced hook point see the output; the
     * transcoders' captures last, so they read what the MLP would */
    for (int i = 0; i < n; i++) {
        e[i].s = so->saes[i], e[i].c = &c, e[i].hook = so->saes[i]->cfg.hook_out;
        h[nh++] = (lp_hook){.name = so->saes[i]->cfg.hook_out, .kind = LP_HOOK_FN, .head = -1, .pos = -1,
                            .fn = replace, .ud = &e[i]};
    }
    for (int i = 0, k = n; i < nc; i++)
        for (int l = 0; l < so->clts[i]->n_layers; l++, k++) {
            entry *el = &e[k];
            el->c = &c, el->cs = &cs[i], el->layer = l;
            layer_hook(el->buf[0], sizeof el->buf[0], l, so->clts[i]->feature_input_hook);
            layer_hook(el->buf[1], sizeof el->buf[1], l, so->clts[i]->feature_output_hook);
            el->hook = el->buf[1];
            h[nh++] = (lp_hook){.name = el->buf[1], .kind = LP_HOOK_FN, .head = -1, .pos = -1, .fn = replace_clt,
                                .ud = el};
        }
    for (size_t i = 0; i < nuser; i++)
        if (lp_model_has_hook(m, opts->hooks[i].name))
            h[nh++] = opts->hooks[i];
    for (int i = 0; i < n; i++)
        if (so->saes[i]->cfg.transcoder)
            h[nh++] = (lp_hook){.name = so->saes[i]->cfg.hook_in, .kind = LP_HOOK_FN, .head = -1, .pos = -1,
                                .fn = capture, .ud = &e[i]};
    for (int k = n; k < n + ncl; k++)
        h[nh++] = (lp_hook){.name = e[k].buf[0], .kind = LP_HOOK_FN, .head = -1, .pos = -1, .fn = capture, .ud = &e[k]};
    lp_run_opts o = {.hooks = h, .nhooks = nh};
    if (opts)
        o.cache_all = opts->cache_all, o.filter = opts->filter, o.filter_ud = opts->filter_ud;
    rc = kv ? lp_model_run_cached(m, kv, tokens, B, T, &o, out) : lp_model_run(m, tokens, B, T, &o, out);
done:
    for (int i = 0; e && i < n + ncl; i++)
        lp_tensor_free(e[i].x_in);
    for (int i = 0; cs && i < nc; i++) {
        for (int l = 0; l < so->clts[i]->n_layers; l++) {
            if (cs[i].fclean)
                lp_tensor_free(cs[i].fclean[l]);
            if (cs[i].fpost)
                lp_tensor_free(cs[i].fpost[l]);
        }
        free(cs[i].fclean), free(cs[i].fpost);
    }
    free(cs);
    free(e);
    free(h);
    return rc;
}

int lp_model_run_spliced(const lp_model *m, const int32_t *tokens, int B, int T, const lp_splice_opts *so,
                         const lp_run_opts *opts, lp_run *out)
{
    return run_spliced(m, NULL, tokens, B, T, so, opts, out);
}

int lp_model_run_spliced_cached(const lp_model *m, lp_kv_cache *kv, const int32_t *tokens, int B, int T,
                                const lp_splice_opts *so, const lp_run_opts *opts, lp_run *out)
{
    if (!kv) {
        memset(out, 0, sizeof *out);
        return lp_set_error("saes: no key/value cache");
    }
    return run_spliced(m, kv, tokens, B, T, so, opts, out);
}
