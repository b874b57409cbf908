/* The trainer: options and schedule, the layout of its buffers, micro-batches and the
 * AdamW step (see train.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "core/error.h"
#include "core/parallel.h"
#include "device.h"
#include "train/train_impl.h"

/* ---- options ---- */

void lp_train_opts_default(lp_train_opts *o)
{
    *o = (lp_train_opts){.lr = 3e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                         .grad_clip = 1.0f, .warmup_steps = 0, .total_steps = 0, .schedule = LP_SCHED_CONSTANT,
                         .min_lr_frac = 0.1f, .accum = 1};
}

int lp_train_opts_check(const lp_train_opts *o)
{
    if (!isfinite(o->lr) || o->lr < 0)
        return lp_set_error("learning rate %g is not a finite number >= 0", (double)o->lr);
    if (!(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1))
        return lp_set_error("AdamW betas (%g, %g) must be in [0, 1)", (double)o->beta1, (double)o->beta2);
    if (!isfinite(o->eps) || o->eps <= 0)
        return lp_set_error("AdamW eps %g must be a finite number > 0", (double)o->eps);
    if (!isfinite(o->weight_decay) || o->weight_decay < 0)
        return lp_set_error("weight decay %g is not a finite number >= 0", (double)o->weight_decay);
    if (!isfinite(o->grad_clip) || o->grad_clip < 0)
        return lp_set_error("gradient clip %g is not a finite number >= 0 (0 turns clipping off)",
                            (double)o->grad_clip);
    if (o->warmup_steps < 0 || o->total_steps < 0 || o->accum < 0)
        return lp_set_error("warm-up steps (%d), total steps (%d) and accumulation (%d) cannot be negative",
                            o->warmup_steps, o->total_steps, o->accum);
    if (o->schedule != LP_SCHED_CONSTANT && o->schedule != LP_SCHED_COSINE)
        return lp_set_error("unknown learning-rate schedule %d (constant %d, cosine %d)", o->schedule,
                            LP_SCHED_CONSTANT, LP_SCHED_COSINE);
    if (o->schedule == LP_SCHED_COSINE && o->total_steps <= o->warmup_steps)
        return lp_set_error("the cosine schedule needs total steps (%d) beyond the warm-up (%d)", o->total_steps,
                            o->warmup_steps);
    if (!(o->min_lr_frac >= 0 && o->min_lr_frac <= 1))
        return lp_set_error("minimum learning-rate fraction %g must be in [0, 1]", (double)o->min_lr_frac);
    return 0;
}

float lp_train_lr_at(const lp_train_opts *o, int s)
{
    double lr = o->lr;
    if (o->warmup_steps > 0 && s < o->warmup_steps)
        return (float)(lr * (s + 1) / o->warmup_steps);
    if (o->schedule == LP_SCHED_COSINE) {
        double lo = lr * o->min_lr_frac;
        if (s >= o->total_steps)
            return (float)lo;
        double r = (double)(s - o->warmup_steps) / (double)(o->total_steps - o->warmup_steps);
        return (float)(lo + 0.5 * (1.0 + cos(3.14159265358979323846 * r)) * (lr - lo));
    }
    return o->lr;
}

static int accum_of(const lp_train_opts *o) { return o->accum > 0 ? o->accum : 1; }

/* ---- layout ---- */

/* Floats for the saved activations and the activation gradients; with base, also the
 * views. Every view starts on a 64-byte boundary. */
#define TAKE(n) (off += ((size_t)(n) + 15) / 16 * 16, base ? base + off - ((size_t)(n) + 15) / 16 * 16 : NULL)

static size_t layout_acts(lp_trainer *t, float *base)
{
    const lp_model_config *c = &t->m->cfg;
    size_t N = (size_t)t->N, D = (size_t)c->d_model, F = (size_t)c->d_mlp, off = 0;
    int gpt2 = c->arch == LP_ARCH_GPT2;
    for (int l = 0; l < c->n_layers; l++) {
        lp_tlayer a = {0};
        a.res = l == 0 || !c->attn_only ? TAKE(N * D) : t->L[l - 1].mid;
        a.ln1 = TAKE(N * D), a.ln1_mean = TAKE(N), a.ln1_rstd = TAKE(N);
        if (gpt2) {
            a.qkv = TAKE(N * 3 * t->QD);
            a.q = a.qkv, a.k = a.qkv ? a.qkv + t->QD : NULL, a.v = a.qkv ? a.qkv + 2 * t->QD : NULL;
        } else {
            a.q = TAKE(N * t->QD), a.k = TAKE(N * t->KD), a.v = TAKE(N * t->KD);
        }
        a.att = TAKE((size_t)t->B * t->H * t->T * t->T);
        a.z = TAKE(N * t->QD);
        a.mid = TAKE(N * D);
        if (!c->attn_only) {
            a.ln2 = TAKE(N * D), a.ln2_mean = TAKE(N), a.ln2_rstd = TAKE(N);
            if (gpt2)
                a.h = TAKE(N * F), a.hg = TAKE(N * F);
            else
                a.gate = TAKE(N * F), a.up = TAKE(N * F), a.act = TAKE(N * F);
        }
        if (base)
            t->L[l] = a;
    }
    float *fin = c->attn_only && c->n_layers > 0 ? (base ? t->L[c->n_layers - 1].mid : NULL) : TAKE(N * D);
    float *lnf = TAKE(N * D), *mean = TAKE(N), *rstd = TAKE(N), *logits = TAKE(N * (size_t)c->d_vocab);
    float *losses = TAKE(N), *cs = TAKE((size_t)t->T * (t->S / 2)), *sn = TAKE((size_t)t->T * (t->S / 2));
    if (base) {
        t->res_final = fin, t->lnf = lnf, t->lnf_mean = mean, t->lnf_rstd = rstd, t->logits = logits;
        t->losses = losses, t->rope_cos = cs, t->rope_sin = sn;
    }
    return off;
}

static size_t layout_scratch(lp_trainer *t, float *base)
{
    const lp_model_config *c = &t->m->cfg;
    size_t N = (size_t)t->N, D = (size_t)c->d_model, F = c->attn_only ? 0 : (size_t)c->d_mlp, off = 0;
    float *dres = TAKE(N * D), *dx = TAKE(N * D), *dln = TAKE(N * D), *dz = TAKE(N * t->QD);
    float *dh = TAKE(N * F), *dh2 = TAKE(N * F), *dq, *dk, *dv;
    if (c->arch == LP_ARCH_GPT2) {
        dq = TAKE(N * 3 * t->QD);
        dk = dq ? dq + t->QD : NULL, dv = dq ? dq + 2 * t->QD : NULL;
    } else {
        dq = TAKE(N * t->QD), dk = TAKE(N * t->KD), dv = TAKE(N * t->KD);
    }
    /* the device path's own: q, k, v regrouped and their gradient (GPT-2), the loss's
     * gradient per row, the gradient's partial norms */
    int regroup = t->be && c->arch == LP_ARCH_GPT2;
    float *qkv3 = TAKE(regroup ? N * 3 * t->QD : 0), *dqkv3 = TAKE(regroup ? N * 3 * t->QD : 0);
    float *dloss = TAKE(t->be ? N : 0), *part = TAKE(t->be ? LP_NORM_PARTS : 0);
    if (base) {
        t->dres = dres, t->dx = dx, t->dln = dln, t->dz = dz, t->dh = dh, t->dh2 = dh2;
        t->dq = dq, t->dk = dk, t->dv = dv;
        if (t->be)
            t->qkv3 = regroup ? qkv3 : NULL, t->dqkv3 = regroup ? dqkv3 : NULL, t->dloss = dloss, t->norm_part = part;
    }
    return off;
}

#undef TAKE

/* The model's shapes as the passes need them; -1 with an error for a model they cannot run. */
static int check_model(lp_trainer *t)
{
    const lp_model *m = t->m;
    const lp_model_config *c = &m->cfg;
    int gpt2 = c->arch == LP_ARCH_GPT2;
    t->H = c->n_heads, t->K = gpt2 ? c->n_heads : c->n_kv_heads, t->S = c->d_head;
    t->QD = t->H * t->S, t->KD = t->K * t->S;
    t->ldq = gpt2 ? 3 * t->QD : t->QD, t->ldk = gpt2 ? 3 * t->QD : t->KD;
    if (t->K <= 0 || t->H % t->K || t->S <= 0 || (!gpt2 && t->S % 2))
        return lp_set_error("trainer: %d heads of %d with %d key/value heads are not supported", t->H, t->S, t->K);
    if (!m->wte || !m->lnf_w || !m->unembed.w || (gpt2 && (!m->wpe || !m->lnf_b)))
        return lp_set_error("trainer: the model lacks its embedding or final norm");
    for (int l = 0; l < c->n_layers; l++) {
        const lp_block *b = &m->blocks[l];
        int ok = b->ln1_w && b->o.w && (gpt2 ? b->qkv.w && b->qkv.out == 3 * t->QD && b->ln1_b : b->q.w && b->k.w && b->v.w);
        if (!c->attn_only)
            ok = ok && b->ln2_w && (gpt2 ? b->fc.w && b->proj.w && b->ln2_b : b->gate.w && b->up.w && b->down.w);
        if (!ok)
            return lp_set_error("trainer: layer %d lacks weights the %s%s forward pass needs", l, lp_arch_name(c->arch),
                                c->attn_only ? " attention-only" : "");
    }
    return 0;
}

/* n floats of the trainer's memory: host on the CPU path, the backend's on the device path;
 * zeroed. */
static float *alloc_floats(lp_trainer *t, size_t n, const char *what)
{
    if (!t->be)
        return lp_calloc(n ? n : 1, sizeof(float), what);
    float *p = t->be->alloc((n ? n : 1) * sizeof(float), what);
    if (p && t->ops->fill(p, 0.0f, n) < 0) {
        t->be->free(p);
        return NULL;
    }
    return p;
}

static void free_floats(const lp_trainer *t, void *p)
{
    if (t->be)
        t->be->free(p);
    else
        free(p);
}

/* The rotary table, as forward.c builds it, into t->rope_cos / rope_sin (either memory). */
static int rope_tables(lp_trainer *t)
{
    int half = t->S / 2, T = t->T;
    size_t n = (size_t)T * half;
    float *inv = lp_malloc((size_t)half * sizeof *inv + 1, "rotary table");
    float *cs = t->be ? lp_malloc(2 * n * sizeof *cs + 1, "rotary table") : t->rope_cos;
    int rc = -1;
    if (inv && cs) {
        float *sn = t->be ? cs + n : t->rope_sin;
        lp_rope_inv_freq(&t->m->cfg, T, inv);
        for (int p = 0; p < T; p++)
            for (int i = 0; i < half; i++) {
                float a = (float)p * inv[i];
                cs[p * half + i] = cosf(a);
                sn[p * half + i] = sinf(a);
            }
        rc = t->be ? (t->be->to_device(t->rope_cos, cs, n * sizeof *cs) < 0 ||
                      t->be->to_device(t->rope_sin, sn, n * sizeof *sn) < 0 ? -1 : 0)
                   : 0;
    }
    free(inv);
    if (t->be)
        free(cs);
    return rc;
}

int lp_trainer_check(const lp_model *m, const lp_train_opts *o, int B, int T)
{
    const lp_model_config *c = &m->cfg;
    if (lp_train_opts_check(o) < 0)
        return -1;
    if (B < 1 || T < 1)
        return lp_set_error("trainer: batch %d x %d tokens (need at least 1 x 1)", B, T);
    /* as lp_model_run: only dynamic rotary scaling is meant for sequences past the context */
    if (T > c->n_ctx && (c->arch == LP_ARCH_GPT2 || c->rope != LP_ROPE_DYNAMIC))
        return lp_set_error("trainer: sequences of %d tokens are longer than the model's context of %d (%s)", T,
                            c->n_ctx, c->arch == LP_ARCH_GPT2 ? "n_positions" : "max_position_embeddings");
    if ((int64_t)B * T > (1 << 24))
        return lp_set_error("trainer: batch %d x %d tokens is too large", B, T);
    lp_trainer shapes = {.m = (lp_model *)m};
    return check_model(&shapes);
}

lp_trainer *lp_trainer_new_backend(lp_model *m, const lp_train_opts *o, int B, int T, const lp_backend *be)
{
    const lp_model_config *c = &m->cfg;
    if (lp_trainer_check(m, o, B, T) < 0)
        return NULL;
    lp_trainer *t = lp_calloc(1, sizeof *t, "a trainer");
    if (!t) {
        lp_set_error_code(LP_ERR_NOMEM, "out of memory");
        return NULL;
    }
    t->m = m, t->o = *o, t->B = B, t->T = T, t->N = B * T;
    t->be = be, t->ops = be ? be->ops : lp_cpu_ops();
    if (check_model(t) < 0)
        goto fail;
    t->np = lp_train_params(m, NULL, NULL, NULL);
    size_t nl = (size_t)(c->n_layers ? c->n_layers : 1);
    t->p = lp_calloc(t->np, sizeof *t->p, "parameter list");
    t->g.blocks = lp_calloc(nl, sizeof *t->g.blocks, "gradient views");
    t->w.blocks = lp_calloc(nl, sizeof *t->w.blocks, "weight views");
    t->L = lp_calloc(nl, sizeof *t->L, "activation views");
    if (!t->p || !t->g.blocks || !t->w.blocks || !t->L)
        goto fail;
    lp_train_params(m, t->p, &t->g, &t->w);
    for (size_t i = 0; i < t->np; i++)
        t->p[i].off = t->total, t->total += t->p[i].n;
    char what[96];
    snprintf(what, sizeof what, "the gradients of %zu parameters", t->total);
    if (!(t->grads = alloc_floats(t, t->total, what)))
        goto fail;
    if (be) {
        snprintf(what, sizeof what, "the weights and AdamW moments of %zu parameters", t->total);
        if (!(t->params = alloc_floats(t, t->total, what)) || !(t->mom = alloc_floats(t, t->total, what)) ||
            !(t->vel = alloc_floats(t, t->total, what)))
            goto fail;
    } else {
        /* the moments are tensors so that saving them writes views, not copies */
        int64_t shape[1] = {(int64_t)(t->total ? t->total : 1)};
        if (!(t->mom_t = lp_tensor_zeros(1, shape, LP_DEVICE_CPU)) ||
            !(t->vel_t = lp_tensor_zeros(1, shape, LP_DEVICE_CPU)))
            goto fail;
        t->mom = t->mom_t->data, t->vel = t->vel_t->data;
    }
    for (size_t i = 0; i < t->np; i++) {
        *t->p[i].slot = t->grads + t->p[i].off;
        *t->p[i].wslot = be ? t->params + t->p[i].off : t->p[i].w->data;
    }
    if (!t->g.unembed.w) /* tied: the unembedding is the embedding */
        t->g.unembed.w = t->g.wte, t->w.unembed.w = t->w.wte;
    double bytes = 4.0 * ((double)layout_acts(t, NULL) + (double)layout_scratch(t, NULL));
    if (bytes > 1e15) {
        lp_set_error("trainer: batch %d x %d needs %.3g bytes of activations", B, T, bytes);
        goto fail;
    }
    snprintf(what, sizeof what, "training activations of batch %d x %d", B, T);
    if (!(t->acts = alloc_floats(t, layout_acts(t, NULL), what)) ||
        !(t->scratch = alloc_floats(t, layout_scratch(t, NULL), what)))
        goto fail;
    layout_acts(t, t->acts);
    layout_scratch(t, t->scratch);
    if (be) {
        size_t n = (size_t)t->N;
        if (!(t->ids = (int32_t *)alloc_floats(t, n, "token ids")) || !(t->tgts = (int32_t *)alloc_floats(t, n, "targets")) ||
            !(t->losses_h = lp_calloc(n, sizeof(float), "losses")) || lp_trainer_push(t) < 0)
            goto fail;
    }
    if (c->arch == LP_ARCH_LLAMA && rope_tables(t) < 0)
        goto fail;
    return t;
fail:
    lp_trainer_free(t);
    return NULL;
}

lp_trainer *lp_trainer_new(lp_model *m, const lp_train_opts *o, int B, int T)
{
    return lp_trainer_new_backend(m, o, B, T, NULL);
}

lp_trainer *lp_trainer_new_on(lp_model *m, const lp_train_opts *o, int B, int T, lp_device dev)
{
    if (dev == LP_DEVICE_CPU)
        return lp_trainer_new(m, o, B, T);
    const lp_backend *be = lp_backend_get(dev);
    return be ? lp_trainer_new_backend(m, o, B, T, be) : NULL;
}

void lp_trainer_free(lp_trainer *t)
{
    if (!t)
        return;
    free(t->p), free(t->g.blocks), free(t->w.blocks), free(t->L);
    free_floats(t, t->grads), free_floats(t, t->acts), free_floats(t, t->scratch);
    lp_tensor_free(t->mom_t), lp_tensor_free(t->vel_t);
    if (t->be) {
        free_floats(t, t->params), free_floats(t, t->mom), free_floats(t, t->vel);
        free_floats(t, t->ids), free_floats(t, t->tgts);
    }
    free(t->losses_h), free(t->grads_h), free(t->dres_h);
    free(t);
}

lp_device lp_trainer_device(const lp_trainer *t) { return t->be ? t->be->device : LP_DEVICE_CPU; }

/* ---- weights between the model and the device ---- */

int lp_trainer_push(lp_trainer *t)
{
    for (size_t i = 0; t->be && i < t->np; i++)
        if (t->be->to_device(t->params + t->p[i].off, t->p[i].w->data, t->p[i].n * sizeof(float)) < 0)
            return -1;
    return 0;
}

int lp_trainer_pull(lp_trainer *t)
{
    if (!t->be)
        return 0;
    if (t->be->synchronize() < 0)
        return -1;
    for (size_t i = 0; i < t->np; i++)
        if (t->be->to_host(t->p[i].w->data, t->params + t->p[i].off, t->p[i].n * sizeof(float)) < 0)
            return -1;
    return 0;
}

/* ---- micro-batches ---- */

struct zero_ctx {
    float *x;
};

static void zero_range(void *p, size_t lo, size_t hi)
{
    struct zero_ctx *c = p;
    memset(c->x + lo, 0, (hi - lo) * sizeof(float));
}

/* Drops the step's gradients: zeroed before the next micro-batch. */
void lp_trainer_discard(lp_trainer *t)
{
    t->micro = 0;
    t->loss_sum = 0;
    t->dirty = 1;
}

static int check_tokens(const lp_trainer *t, const char *fn, const int32_t *inputs, const int32_t *targets)
{
    int V = t->m->cfg.d_vocab;
    for (int i = 0; i < t->N; i++) {
        if (inputs[i] < 0 || inputs[i] >= V)
            return lp_set_error("%s: token %d at row %d position %d is outside the vocabulary (0..%d)", fn, inputs[i],
                                i / t->T + 1, i % t->T + 1, V - 1);
        if (targets[i] < -1 || targets[i] >= V)
            return lp_set_error("%s: target %d at row %d position %d is outside the vocabulary (0..%d, or -1 to "
                                "ignore)", fn, targets[i], i / t->T + 1, i % t->T + 1, V - 1);
    }
    return 0;
}

/* One pass with the BLAS threads the model's width calls for (device.h). */
static int pass(lp_trainer *t, const int32_t *inputs, const int32_t *targets, float scale, int backward, double *sum,
                int *valid)
{
    int saved = lp_blas_threads_begin(t->m->cfg.d_model);
    int rc = lp_train_pass(t, inputs, targets, scale, backward, sum, valid);
    lp_blas_threads_end(saved);
    return rc;
}

int lp_trainer_forward_backward(lp_trainer *t, const int32_t *inputs, const int32_t *targets, float *loss)
{
    int accum = accum_of(&t->o);
    if (t->micro >= accum)
        return lp_set_error("forward_backward: %d micro-batch%s already accumulated (accum %d): step first",
                            t->micro, t->micro == 1 ? "" : "es", accum);
    if (check_tokens(t, "forward_backward", inputs, targets) < 0)
        return -1;
    if (t->micro == 0 && t->dirty) {
        if (t->be) {
            if (t->ops->fill(t->grads, 0.0f, t->total) < 0)
                return -1;
        } else {
            struct zero_ctx z = {t->grads};
            lp_par_for(t->total, 1 << 16, zero_range, &z);
        }
        t->dirty = 0;
    }
    double sum;
    int valid;
    if (pass(t, inputs, targets, 1.0f / (float)accum, 1, &sum, &valid) < 0) {
        lp_trainer_discard(t);
        return -1;
    }
    double mean = valid ? sum / valid : 0.0;
    t->micro++;
    t->loss_sum += mean;
    if (loss)
        *loss = (float)mean;
    return 0;
}

int lp_trainer_eval(lp_trainer *t, const int32_t *inputs, const int32_t *targets, float *loss)
{
    double sum;
    int valid;
    if (check_tokens(t, "eval", inputs, targets) < 0 || pass(t, inputs, targets, 0.0f, 0, &sum, &valid) < 0)
        return -1;
    if (loss)
        *loss = valid ? (float)(sum / valid) : 0.0f;
    return 0;
}

/* ---- the step ---- */

#define NORM_CHUNKS 64

struct step_ctx {
    lp_trainer *t;
    double part[NORM_CHUNKS];
    float lr, clip, b1, b2, eps, step_size, bc2_sqrt, decay; /* decay: 1 - lr * wd */
};

/* The squared norm of grads over fixed chunks, so that the sum does not depend on threads. */
static void sumsq_range(void *p, size_t lo, size_t hi)
{
    struct step_ctx *c = p;
    size_t n = c->t->total;
    for (size_t k = lo; k < hi; k++) {
        const float *g = c->t->grads;
        size_t a = n * k / NORM_CHUNKS, b = n * (k + 1) / NORM_CHUNKS;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        size_t i = a;
        for (; i + 4 <= b; i += 4) {
            s0 += (double)g[i] * g[i], s1 += (double)g[i + 1] * g[i + 1];
            s2 += (double)g[i + 2] * g[i + 2], s3 += (double)g[i + 3] * g[i + 3];
        }
        for (; i < b; i++)
            s0 += (double)g[i] * g[i];
        c->part[k] = (s0 + s1) + (s2 + s3);
    }
}

/* AdamW over the flat index range [lo, hi), parameter by parameter; zeroes the gradients.
 * torch.optim.AdamW's arithmetic: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). Four at a time with SSE:
 * without -fno-math-errno (a per-file flag this module does not set) the compiler keeps
 * sqrtf scalar, and the scalar loop was bound by sqrt and division, not memory. The
 * vector and scalar paths do the same IEEE operations in the same order. */
static void adamw_range(void *p, size_t lo, size_t hi)
{
    struct step_ctx *c = p;
    lp_trainer *t = c->t;
    for (size_t k = 0; k < t->np; k++) {
        const lp_tparam *pr = &t->p[k];
        size_t a = pr->off > lo ? pr->off : lo, b = pr->off + pr->n < hi ? pr->off + pr->n : hi;
        if (a >= b)
            continue;
        float *restrict w = pr->w->data + (a - pr->off);
        float *restrict g = t->grads + a, *restrict m = t->mom + a, *restrict v = t->vel + a;
        float decay = pr->decay ? c->decay : 1.0f, clip = c->clip, b1 = c->b1, b2 = c->b2;
        float ss = c->step_size, bc = c->bc2_sqrt, eps = c->eps;
        size_t i = 0, n = b - a;
#ifdef __SSE2__
        __m128 vclip = _mm_set1_ps(clip), vb1 = _mm_set1_ps(b1), vb1c = _mm_set1_ps(1.0f - b1);
        __m128 vb2 = _mm_set1_ps(b2), vb2c = _mm_set1_ps(1.0f - b2), vbc = _mm_set1_ps(bc), veps = _mm_set1_ps(eps);
        __m128 vss = _mm_set1_ps(ss), vdecay = _mm_set1_ps(decay), zero = _mm_setzero_ps();
        for (; i + 4 <= n; i += 4) {
            __m128 gi = _mm_mul_ps(_mm_loadu_ps(g + i), vclip);
            __m128 mi = _mm_add_ps(_mm_mul_ps(vb1, _mm_loadu_ps(m + i)), _mm_mul_ps(vb1c, gi));
            __m128 vi = _mm_add_ps(_mm_mul_ps(vb2, _mm_loadu_ps(v + i)), _mm_mul_ps(_mm_mul_ps(vb2c, gi), gi));
            _mm_storeu_ps(m + i, mi), _mm_storeu_ps(v + i, vi), _mm_storeu_ps(g + i, zero);
            __m128 den = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(vi), vbc), veps);
            __m128 wi = _mm_sub_ps(_mm_mul_ps(_mm_loadu_ps(w + i), vdecay), _mm_mul_ps(vss, _mm_div_ps(mi, den)));
            _mm_storeu_ps(w + i, wi);
        }
#endif
        for (; i < n; i++) {
            float gi = g[i] * clip;
            float mi = b1 * m[i] + (1.0f - b1) * gi;
            float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
            m[i] = mi, v[i] = vi, g[i] = 0.0f;
            w[i] = w[i] * decay - ss * (mi / (sqrtf(vi) / bc + eps));
        }
    }
}

/* The device path's squared gradient norm: LP_NORM_PARTS column norms of the gradient seen
 * as (rows, LP_NORM_PARTS) (coalesced on a GPU), the tail as one more, summed here. */
static int device_sumsq(lp_trainer *t, double *sq)
{
    size_t rows = t->total / LP_NORM_PARTS, tail = t->total % LP_NORM_PARTS;
    float part[LP_NORM_PARTS + 1];
    int np = 0;
    if (rows) {
        if (t->ops->reduce_forward(t->norm_part, t->grads, 1, (int64_t)rows, LP_NORM_PARTS, LP_REDUCE_NORM) < 0 ||
            t->be->to_host(part, t->norm_part, LP_NORM_PARTS * sizeof(float)) < 0)
            return -1;
        np = LP_NORM_PARTS;
    }
    if (tail) {
        if (t->ops->reduce_forward(t->norm_part, t->grads + rows * LP_NORM_PARTS, 1, (int64_t)tail, 1,
                                   LP_REDUCE_NORM) < 0 ||
            t->be->to_host(part + np, t->norm_part, sizeof(float)) < 0)
            return -1;
        np++;
    }
    double s = 0;
    for (int k = 0; k < np; k++)
        s += (double)part[k] * part[k];
    *sq = s;
    return 0;
}

/* The device path's update: the clip factor applied to the gradient, the op table's AdamW per
 * parameter (weight decay on the 2-D ones), the gradient zeroed. */
static int device_adamw(lp_trainer *t, const struct step_ctx *c, int s)
{
    const lp_train_opts *o = &t->o;
    if (c->clip != 1.0f && t->ops->affine_forward(t->grads, t->grads, c->clip, 0.0f, t->total) < 0)
        return -1;
    for (size_t k = 0; k < t->np; k++) {
        const lp_tparam *p = &t->p[k];
        if (t->ops->adamw_step(t->params + p->off, t->grads + p->off, t->mom + p->off, t->vel + p->off, p->n, c->lr,
                               o->beta1, o->beta2, o->eps, p->decay ? o->weight_decay : 0.0f, s) < 0)
            return -1;
    }
    return t->ops->fill(t->grads, 0.0f, t->total);
}

int lp_trainer_step(lp_trainer *t, float *grad_norm, float *lr_used)
{
    int s = t->steps + 1, accum = accum_of(&t->o);
    if (t->micro == 0)
        return lp_set_error("step %d: no gradients (call forward_backward first)", s);
    if (t->micro < accum)
        return lp_set_error("step %d: %d of %d micro-batches accumulated", s, t->micro, accum);
    if (!isfinite(t->loss_sum)) {
        const char *what = isnan(t->loss_sum) ? "NaN" : "infinite";
        lp_trainer_discard(t);
        return lp_set_error("step %d: loss is %s (learning rate too high?)", s, what);
    }
    struct step_ctx c = {.t = t};
    double sq = 0;
    if (t->be) {
        if (device_sumsq(t, &sq) < 0) {
            lp_trainer_discard(t);
            return -1;
        }
    } else {
        lp_par_for(NORM_CHUNKS, 1, sumsq_range, &c);
        for (int k = 0; k < NORM_CHUNKS; k++)
            sq += c.part[k];
    }
    double norm = sqrt(sq);
    if (!isfinite(norm)) {
        const char *what = isnan(norm) ? "NaN" : "infinite";
        lp_trainer_discard(t);
        return lp_set_error("step %d: gradient norm is %s (learning rate too high?)", s, what);
    }
    const lp_train_opts *o = &t->o;
    float lr = lp_train_lr_at(o, t->steps);
    /* torch.nn.utils.clip_grad_norm_: scale by min(1, max_norm / (norm + 1e-6)) */
    c.clip = o->grad_clip > 0 ? (float)fmin(1.0, o->grad_clip / (norm + 1e-6)) : 1.0f;
    c.lr = lr, c.b1 = o->beta1, c.b2 = o->beta2, c.eps = o->eps;
    c.step_size = (float)(lr / (1.0 - pow(o->beta1, s)));
    c.bc2_sqrt = (float)sqrt(1.0 - pow(o->beta2, s));
    c.decay = (float)(1.0 - (double)lr * o->weight_decay);
    /* never interrupted: every parameter is updated or none */
    if (t->be) {
        if (device_adamw(t, &c, s) < 0) {
            lp_trainer_discard(t);
            return -1;
        }
    } else {
        lp_par_for(t->total, 1 << 14, adamw_range, &c);
    }
    t->steps = s;
    t->micro = 0;
    t->loss_sum = 0;
    t->dirty = 0;
    if (grad_norm)
        *grad_norm = (float)norm;
    if (lr_used)
        *lr_used = lr;
    return 0;
}

/* ---- accessors ---- */

int lp_trainer_set_opts(lp_trainer *t, const lp_train_opts *o)
{
    if (lp_train_opts_check(o) < 0)
        return -1;
    if (t->micro > 0 && accum_of(o) != accum_of(&t->o))
        return lp_set_error("cannot change the accumulation (%d -> %d) in the middle of a step", accum_of(&t->o),
                            accum_of(o));
    t->o = *o;
    return 0;
}

const lp_train_opts *lp_trainer_opts(const lp_trainer *t) { return &t->o; }
int lp_trainer_steps(const lp_trainer *t) { return t->steps; }
size_t lp_trainer_param_count(const lp_trainer *t) { return t->np; }

/* Parameter i of a flat device buffer, copied into *mirror (host, total floats, made on
 * first use). */
static const float *device_view(lp_trainer *t, float **mirror, const float *flat, size_t i)
{
    if (!*mirror && !(*mirror = lp_malloc((t->total ? t->total : 1) * sizeof(float), "a host copy of the trainer's state")))
        return NULL;
    float *h = *mirror + t->p[i].off;
    return t->be->to_host(h, flat + t->p[i].off, t->p[i].n * sizeof(float)) < 0 ? NULL : h;
}

const float *lp_trainer_grad(lp_trainer *t, size_t i)
{
    if (i >= t->np)
        return NULL;
    return t->be ? device_view(t, &t->grads_h, t->grads, i) : t->grads + t->p[i].off;
}

int lp_trainer_moments_to_host(lp_trainer *t)
{
    if (!t->be)
        return 0;
    int64_t shape[1] = {(int64_t)(t->total ? t->total : 1)};
    if ((!t->mom_t && !(t->mom_t = lp_tensor_zeros(1, shape, LP_DEVICE_CPU))) ||
        (!t->vel_t && !(t->vel_t = lp_tensor_zeros(1, shape, LP_DEVICE_CPU))))
        return -1;
    if (t->be->to_host(t->mom_t->data, t->mom, t->total * sizeof(float)) < 0 ||
        t->be->to_host(t->vel_t->data, t->vel, t->total * sizeof(float)) < 0)
        return -1;
    return 0;
}

const float *lp_trainer_moment(lp_trainer *t, size_t i, int second)
{
    if (i >= t->np || lp_trainer_moments_to_host(t) < 0)
        return NULL;
    return (second ? t->vel_t : t->mom_t)->data + t->p[i].off;
}
