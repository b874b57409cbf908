/* Hook points: their names, and what happens at each during a run (patch, ablate, steer,
 * callback, then cache). See model.h for the list and the shapes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/forward_impl.h"
#include "ops/ops.h"
#include "tensor_ops.h"

static const char *const GLOBAL_PRE[] = {"hook_embed", "hook_pos_embed"};
static const char *const GLOBAL_POST[] = {"ln_final.hook_scale", "ln_final.hook_normalized"};
static const char *const BLOCK_GPT2[] = {
    "hook_resid_pre", "ln1.hook_scale", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
    "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid",
    "ln2.hook_scale", "ln2.hook_normalized", "mlp.hook_in", "mlp.hook_pre", "mlp.hook_post", "mlp.hook_out",
    "hook_mlp_out", "hook_resid_post"};
static const char *const BLOCK_LLAMA[] = {
    "hook_resid_pre", "ln1.hook_scale", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
    "attn.hook_rot_q", "attn.hook_rot_k", "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z",
    "hook_attn_out", "hook_resid_mid", "ln2.hook_scale", "ln2.hook_normalized", "mlp.hook_in", "mlp.hook_pre",
    "mlp.hook_pre_linear", "mlp.hook_post", "mlp.hook_out", "hook_mlp_out", "hook_resid_post"};
/* attention-only blocks (TransformerLens' attn_only): no resid_mid, ln2, mlp */
static const char *const BLOCK_ATTN_ONLY[] = {
    "hook_resid_pre", "ln1.hook_scale", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
    "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_post"};
#define COUNT(a) (sizeof(a) / sizeof *(a))

/* The hook points of one block of m, and their count. */
static const char *const *block_names(const lp_model *m, size_t *n)
{
    if (m->cfg.arch != LP_ARCH_GPT2) {
        *n = COUNT(BLOCK_LLAMA);
        return BLOCK_LLAMA;
    }
    if (m->cfg.attn_only) {
        *n = COUNT(BLOCK_ATTN_ONLY);
        return BLOCK_ATTN_ONLY;
    }
    *n = COUNT(BLOCK_GPT2);
    return BLOCK_GPT2;
}

int lp_model_hook_name(const lp_model *m, size_t i, char *buf, size_t cap)
{
    int gpt2 = m->cfg.arch == LP_ARCH_GPT2;
    size_t npre = gpt2 ? 2 : 1, nb;
    const char *const *blk = block_names(m, &nb);
    if (i < npre) {
        snprintf(buf, cap, "%s", GLOBAL_PRE[i]);
        return 0;
    }
    i -= npre;
    if (i < nb * (size_t)m->cfg.n_layers) {
        snprintf(buf, cap, "blocks.%zu.%s", i / nb, blk[i % nb]);
        return 0;
    }
    i -= nb * (size_t)m->cfg.n_layers;
    if (i < COUNT(GLOBAL_POST)) {
        snprintf(buf, cap, "%s", GLOBAL_POST[i]);
        return 0;
    }
    return -1;
}

bool lp_model_has_hook(const lp_model *m, const char *name)
{
    int gpt2 = m->cfg.arch == LP_ARCH_GPT2;
    for (size_t i = 0; i < (gpt2 ? 2u : 1u); i++)
        if (!strcmp(name, GLOBAL_PRE[i]))
            return true;
    for (size_t i = 0; i < COUNT(GLOBAL_POST); i++)
        if (!strcmp(name, GLOBAL_POST[i]))
            return true;
    if (strncmp(name, "blocks.", 7))
        return false;
    if (name[7] < '0' || name[7] > '9') /* strtol would take " 1" and "+1" */
        return false;
    char *end;
    long L = strtol(name + 7, &end, 10);
    if (end == name + 7 || *end != '.' || L < 0 || L >= m->cfg.n_layers || (name[7] == '0' && end != name + 8))
        return false;
    const char *rest = end + 1;
    size_t nb;
    const char *const *blk = block_names(m, &nb);
    for (size_t i = 0; i < nb; i++)
        if (!strcmp(rest, blk[i]))
            return true;
    return false;
}

int lp_fwd_check_hooks(const lp_model *m, const lp_run_opts *o)
{
    for (size_t i = 0; o && i < o->nhooks; i++) {
        const lp_hook *h = &o->hooks[i];
        if (!h->name || !lp_model_has_hook(m, h->name))
            return lp_set_error("unknown hook point '%s' (this %s model has e.g. hook_embed, "
                                "blocks.0.hook_resid_pre, blocks.%d.attn.hook_z, ln_final.hook_normalized)",
                                h->name ? h->name : "(null)", lp_arch_name(m->cfg.arch), m->cfg.n_layers - 1);
        if ((h->kind == LP_HOOK_PATCH || h->kind == LP_HOOK_ADD) && !h->value)
            return lp_set_error("hook '%s': %s needs a value", h->name, h->kind == LP_HOOK_PATCH ? "patch" : "add");
        if (h->kind == LP_HOOK_FN && !h->fn)
            return lp_set_error("hook '%s': no function", h->name);
        if (h->value && h->value->device != LP_DEVICE_CPU)
            return lp_set_error("hook '%s': the value must be on the CPU (models run on the CPU)", h->name);
    }
    return 0;
}

int lp_run_add(lp_run *r, const char *name, const lp_tensor *t)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        char **nn = lp_realloc(r->names, cap * sizeof *nn, "the activation cache");
        if (!nn)
            return lp_set_error_code(LP_ERR_NOMEM, "out of memory caching '%s'", name);
        r->names = nn;
        lp_tensor **na = lp_realloc(r->acts, cap * sizeof *na, "the activation cache");
        if (!na)
            return lp_set_error_code(LP_ERR_NOMEM, "out of memory caching '%s'", name);
        r->acts = na;
        r->cap = cap;
    }
    char *s = lp_strdup(name, "the activation cache");
    lp_tensor *a = lp_tensor_alias(t);
    if (!s || !a) {
        free(s);
        lp_tensor_free(a);
        return lp_set_error_code(LP_ERR_NOMEM, "out of memory caching '%s'", name);
    }
    r->names[r->n] = s;
    r->acts[r->n++] = a;
    return 0;
}

void lp_run_clear(lp_run *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->names[i]);
        lp_tensor_free(r->acts[i]);
    }
    free(r->names);
    free(r->acts);
    lp_tensor_free(r->logits);
    memset(r, 0, sizeof *r);
}

lp_tensor *lp_run_get(const lp_run *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->names[i], name))
            return r->acts[i];
    return NULL;
}

/* The part of t a hook with (head, pos) touches: a view with those dims narrowed to 1. */
static lp_tensor *region(const lp_tensor *t, const lp_hook *h, int headdim, int posdim)
{
    lp_tensor *v = lp_tensor_alias(t);
    if (v && h->head >= 0) {
        lp_tensor *s = lp_tensor_slice(v, headdim, h->head, h->head + 1, 1);
        lp_tensor_free(v);
        v = s;
    }
    if (v && h->pos >= 0) {
        lp_tensor *s = lp_tensor_slice(v, posdim, h->pos, h->pos + 1, 1);
        lp_tensor_free(v);
        v = s;
    }
    return v;
}

/* Copies src (broadcast to dst's shape) into dst. */
static int copy_bcast(lp_tensor *dst, const lp_tensor *src, const char *name)
{
    lp_tensor *e = lp_tensor_expand(src, dst->ndim, dst->shape);
    if (!e) {
        char a[96], b[96];
        return lp_set_error("hook '%s': a value of shape %s does not fit the activation's %s", name,
                            lp_tensor_shape_str(src, a, sizeof a), lp_tensor_shape_str(dst, b, sizeof b));
    }
    int rc = lp_tensor_copy_(dst, e);
    lp_tensor_free(e);
    return rc;
}

static int apply(const lp_hook *h, lp_tensor *act, int headdim, int posdim)
{
    if (h->head >= 0 && (headdim < 0 || h->head >= act->shape[headdim]))
        return lp_set_error(headdim < 0 ? "hook '%s' has no head dimension (head %d asked)"
                                        : "hook '%s': head %d is out of range (heads count from 0)", h->name, h->head);
    if (h->pos >= 0 && h->pos >= act->shape[posdim])
        return lp_set_error("hook '%s': position %d is past the sequence (%lld)", h->name, h->pos + 1,
                            (long long)act->shape[posdim]);
    if (h->kind == LP_HOOK_FN) {
        lp_tensor *out = NULL;
        if (h->fn(h->ud, h->name, act, &out) < 0)
            return -1;
        if (!out)
            return 0;
        int rc = 0;
        if (!lp_tensor_same_shape(out, act)) {
            char a[96], b[96];
            rc = lp_set_error("hook '%s': the function returned shape %s, the activation is %s", h->name,
                              lp_tensor_shape_str(out, a, sizeof a), lp_tensor_shape_str(act, b, sizeof b));
        } else {
            rc = lp_tensor_copy_(act, out);
        }
        lp_tensor_free(out);
        return rc;
    }
    lp_tensor *v = region(act, h, headdim, posdim);
    if (!v)
        return -1;
    int rc = -1;
    lp_tensor *tmp = NULL, *tmp2 = NULL;
    switch (h->kind) {
    case LP_HOOK_ZERO:
        rc = lp_tensor_fill_(v, 0.0f);
        break;
    case LP_HOOK_PATCH: {
        /* value is the whole activation (or batch 1 of it): take the same region */
        if (h->value->ndim != act->ndim) {
            char a[96], b[96];
            rc = lp_set_error("hook '%s': patch value has shape %s, the activation is %s", h->name,
                              lp_tensor_shape_str(h->value, a, sizeof a), lp_tensor_shape_str(act, b, sizeof b));
            break;
        }
        tmp = region(h->value, h, headdim, posdim);
        rc = tmp ? copy_bcast(v, tmp, h->name) : -1;
        break;
    }
    case LP_HOOK_MEAN:
        if (h->value) {
            rc = copy_bcast(v, h->value, h->name);
            break;
        }
        tmp = lp_tensor_reduce(act, 0, LP_REDUCE_MEAN, 1);
        if (tmp && posdim > 0) {
            tmp2 = lp_tensor_reduce(tmp, posdim, LP_REDUCE_MEAN, 1);
            lp_tensor_free(tmp);
            tmp = tmp2;
            tmp2 = NULL;
        }
        if (tmp && h->head >= 0) {
            tmp2 = lp_tensor_slice(tmp, headdim, h->head, h->head + 1, 1);
            lp_tensor_free(tmp);
            tmp = tmp2;
            tmp2 = NULL;
        }
        rc = tmp ? copy_bcast(v, tmp, h->name) : -1;
        break;
    case LP_HOOK_ADD:
        tmp = lp_tensor_binary_scalar(h->value, h->scale, LP_BIN_MUL, 0);
        tmp2 = tmp ? lp_tensor_binary(v, tmp, LP_BIN_ADD) : NULL;
        if (tmp && !tmp2 && v->ndim >= 1) {
            char a[96], b[96];
            lp_set_error("hook '%s': a steering value of shape %s does not broadcast to %s", h->name,
                         lp_tensor_shape_str(h->value, a, sizeof a), lp_tensor_shape_str(v, b, sizeof b));
        }
        rc = tmp2 ? lp_tensor_copy_(v, tmp2) : -1;
        break;
    default:
        rc = lp_set_error("hook '%s': unknown kind %d", h->name, (int)h->kind);
    }
    lp_tensor_free(tmp);
    lp_tensor_free(tmp2);
    lp_tensor_free(v);
    return rc;
}

int lp_hook_apply(const lp_hook *h, lp_tensor *act, int headdim, int posdim)
{
    return apply(h, act, headdim, posdim);
}

int lp_fwd_hooked(const lp_fwd *f, const char *name)
{
    for (size_t i = 0; f->o && i < f->o->nhooks; i++)
        if (!strcmp(f->o->hooks[i].name, name))
            return 1;
    return 0;
}

int lp_fwd_wants(const lp_fwd *f, const char *name)
{
    const lp_run_opts *o = f->o;
    return o && (lp_fwd_hooked(f, name) || o->cache_all || (o->filter && o->filter(o->filter_ud, name)));
}

int lp_fwd_hook(lp_fwd *f, const char *name, lp_tensor *act, int headdim, int posdim)
{
    const lp_run_opts *o = f->o;
    if (!o)
        return 0;
    for (size_t i = 0; i < o->nhooks; i++)
        if (!strcmp(o->hooks[i].name, name) && apply(&o->hooks[i], act, headdim, posdim) < 0)
            return -1;
    if (o->cache_all || (o->filter && o->filter(o->filter_ud, name)))
        return lp_run_add(f->r, name, act);
    return 0;
}
