/* The SAE trainer of sae_train.h: schedules, Adam with clipping, batchtopk's threshold,
 * unit decoders, dead-feature counters and resampling. */
#include "dict/sae_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/parallel.h"
#include "dict/clt_ops.h"
#include "dict/sae_work.h"

#if defined(__GNUC__) && !defined(__clang__)
/* no-trapping-math and no-math-errno let the compares and sqrtf vectorize; no value changes */
#define HOT __attribute__((optimize("O3", "no-trapping-math", "no-math-errno")))
#else
#define HOT
#endif

struct lp_sae_trainer {
    lp_sae *s;
    lp_sae_train_opts o;
    lp_sae_grads *g, *m, *v; /* gradients and Adam's moments, one layout */
    lp_sae_work *w;
    long step;
    int *since_fired; /* (d_sae) */
    uint8_t *dead;    /* (d_sae) */
    double *tokloss;  /* (batch) resampling's weights */
    lp_rng rng;
    /* a CLT's trainer (s NULL): its work, gradients and moments in lp_clt_grads' layout,
     * the parameter list, the last step's explained variance and L0 per layer;
     * since_fired and dead then hold n_layers x d_tc (layer-major) */
    lp_clt *clt;
    lp_clt_work *cw;
    lp_clt_grads *cg, *cm, *cv;
    float **pp;
    size_t *pn;
    double *layer_ev, *layer_l0;
};

lp_sae_train_opts lp_sae_train_defaults(const lp_sae_config *c)
{
    lp_sae_train_opts o = {.loss = lp_sae_loss_defaults(c), .lr = c->arch == LP_SAE_STANDARD ? 5e-5f : 3e-4f,
                           .beta1 = 0.9f, .beta2 = 0.999f, .adam_eps = 1e-8f, .clip = 1.0f, .dead_window = 1000,
                           .batch = 4096};
    return o;
}

void lp_sae_trainer_free(lp_sae_trainer *t)
{
    if (!t)
        return;
    lp_sae_grads_free(t->g), lp_sae_grads_free(t->m), lp_sae_grads_free(t->v), lp_sae_work_free(t->w);
    lp_clt_grads_free(t->cg), lp_clt_grads_free(t->cm), lp_clt_grads_free(t->cv), lp_clt_work_free(t->cw);
    free(t->pp), free(t->pn), free(t->layer_ev), free(t->layer_l0);
    free(t->since_fired), free(t->dead), free(t->tokloss), free(t);
}

static int check_opts(const lp_sae_train_opts *o)
{
    if (!(o->lr > 0) || !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) || !(o->clip >= 0) ||
        o->batch < 1 || o->dead_window < 1 || o->warmup < 0 || o->l1_warmup < 0 || o->steps < 0)
        return lp_set_error("SAE training: lr must be positive, betas in [0, 1), clip >= 0, batch and dead_window >= 1 "
                            "(got lr %g, betas %g %g, clip %g, batch %d, dead_window %d)",
                            o->lr, o->beta1, o->beta2, o->clip, o->batch, o->dead_window);
    return 0;
}

lp_sae_trainer *lp_sae_trainer_new(lp_sae *s, const lp_sae_train_opts *o)
{
    const lp_sae_config *c = &s->cfg;
    if (check_opts(o) < 0)
        return NULL;
    lp_sae_trainer *t = lp_calloc(1, sizeof *t, "an SAE trainer");
    if (!t)
        return NULL;
    t->s = s, t->o = *o;
    t->o.loss.dead = NULL;
    lp_rng_seed(&t->rng, o->seed);
    int ok = (t->g = lp_sae_grads_new(c)) && (t->m = lp_sae_grads_new(c)) && (t->v = lp_sae_grads_new(c)) &&
             (t->w = lp_sae_work_new(c, o->batch, o->loss.k_aux)) &&
             (t->since_fired = lp_calloc((size_t)c->d_sae, sizeof(int), "dead-feature counters")) &&
             (t->dead = lp_calloc((size_t)c->d_sae, 1, "dead-feature flags")) &&
             (t->tokloss = lp_malloc((size_t)o->batch * sizeof(double), "resampling weights"));
    if (!ok) {
        lp_error_prefix("SAE training (batch %d, d_sae %d): ", o->batch, c->d_sae);
        lp_sae_trainer_free(t);
        return NULL;
    }
    return t;
}

lp_sae_trainer *lp_clt_trainer_new(lp_clt *c, const lp_sae_train_opts *o)
{
    if (check_opts(o) < 0)
        return NULL;
    if (o->loss.pre_act > 0 && !c->threshold) {
        lp_set_error("CLT training: the pre-activation loss is for a JumpReLU CLT");
        return NULL;
    }
    lp_sae_trainer *t = lp_calloc(1, sizeof *t, "a CLT trainer");
    if (!t)
        return NULL;
    const int L = c->n_layers;
    size_t nf = (size_t)L * c->d_tc;
    t->clt = c, t->o = *o;
    t->o.loss.dead = NULL, t->o.loss.dxhat = NULL, t->o.loss.n_prefix = 0, t->o.loss.aux_alpha = 0;
    lp_rng_seed(&t->rng, o->seed);
    int ok = (t->cg = lp_clt_grads_new(c)) && (t->cm = lp_clt_grads_new(c)) && (t->cv = lp_clt_grads_new(c)) &&
             (t->cw = lp_clt_work_new(c, o->batch)) &&
             (t->pp = lp_calloc((size_t)L * 5, sizeof *t->pp, "a CLT trainer")) &&
             (t->pn = lp_calloc((size_t)L * 5, sizeof *t->pn, "a CLT trainer")) &&
             (t->layer_ev = lp_calloc((size_t)L, sizeof(double), "a CLT trainer")) &&
             (t->layer_l0 = lp_calloc((size_t)L, sizeof(double), "a CLT trainer")) &&
             (t->since_fired = lp_calloc(nf, sizeof(int), "dead-feature counters")) &&
             (t->dead = lp_calloc(nf, 1, "dead-feature flags"));
    if (!ok) {
        lp_error_prefix("CLT training (batch %d, %d layers, d_tc %d): ", o->batch, L, c->d_tc);
        lp_sae_trainer_free(t);
        return NULL;
    }
    return t;
}

int lp_sae_trainer_layers(const lp_sae_trainer *t) { return t->clt ? t->clt->n_layers : 0; }

void lp_clt_trainer_layer_stats(const lp_sae_trainer *t, int l, double *ev, double *l0)
{
    *ev = t->clt && l >= 0 && l < t->clt->n_layers ? t->layer_ev[l] : NAN;
    *l0 = t->clt && l >= 0 && l < t->clt->n_layers ? t->layer_l0[l] : NAN;
}

lp_sae_trainer *lp_sae_trainer_clone(const lp_sae_trainer *t, lp_sae *s)
{
    if (t->clt) {
        lp_set_error("SAE training: a CLT's trainer cannot be cloned");
        return NULL;
    }
    lp_sae_trainer *c = lp_sae_trainer_new(s, &t->o);
    if (!c)
        return NULL;
    memcpy(c->m->mem, t->m->mem, t->m->n * sizeof(float));
    memcpy(c->v->mem, t->v->mem, t->v->n * sizeof(float));
    memcpy(c->since_fired, t->since_fired, (size_t)s->cfg.d_sae * sizeof(int));
    c->step = t->step, c->rng = t->rng;
    return c;
}

long lp_sae_trainer_steps(const lp_sae_trainer *t) { return t->step; }
const int *lp_sae_trainer_since_fired(const lp_sae_trainer *t) { return t->since_fired; }

/* The parameters and their slices of the gradient layout, in lp_sae_grads' order. */
static int params(const lp_sae_trainer *t, float **p, size_t *n)
{
    const lp_sae *s = t->s;
    lp_tensor *T[] = {s->W_enc, s->b_enc, s->W_dec, s->b_dec, t->g->threshold ? s->threshold : NULL, s->W_skip};
    int k = 0;
    for (int i = 0; i < 6; i++)
        if (T[i])
            p[k] = T[i]->data, n[k++] = (size_t)lp_tensor_numel(T[i]);
    return k;
}

/* Adam on one parameter slice, from the gradients scaled by sc, in ranges on lp_par_for. */
struct adam_ctx {
    float *p, *g, *m, *v;
    float sc, b1, b2, c1, c2, eps, lr;
};

HOT static void adam_range(void *ctx, size_t lo, size_t hi)
{
    const struct adam_ctx *a = ctx;
    float *restrict p = a->p, *restrict m = a->m, *restrict v = a->v;
    const float *restrict g = a->g;
    const float sc = a->sc, b1 = a->b1, b2 = a->b2, c1 = a->c1, c2 = a->c2, eps = a->eps, lr = a->lr;
    for (size_t i = lo; i < hi; i++) {
        float gi = g[i] * sc;
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        p[i] -= lr * (m[i] / c1) / (sqrtf(v[i] / c2) + eps);
    }
}

struct sumsq_ctx {
    const float *g;
    double *part; /* one per 64K block */
};

HOT static void sumsq_range(void *ctx, size_t lo, size_t hi)
{
    const struct sumsq_ctx *a = ctx;
    for (size_t b = lo; b < hi; b++) {
        double s = 0;
        for (size_t i = b << 16; i < ((b + 1) << 16); i++)
            s += (double)a->g[i] * a->g[i];
        a->part[b] = s;
    }
}

/* The gradients' squared norm: 64K blocks in parallel, each summed in order, then the rest. */
static double grad_sumsq(const float *g, size_t n)
{
    size_t nb = n >> 16;
    double part[nb ? nb : 1], s = 0;
    if (nb) {
        struct sumsq_ctx c = {g, part};
        lp_par_for(nb, 1, sumsq_range, &c);
    }
    for (size_t b = 0; b < nb; b++)
        s += part[b];
    for (size_t i = nb << 16; i < n; i++)
        s += (double)g[i] * g[i];
    return s;
}

/* A dense batch's features (N,d_sae): fired[i] = 1 where any token's is non-zero. */
HOT static void fired_dense(uint8_t *restrict fired, const float *restrict f, int N, int ds)
{
    for (int n = 0; n < N; n++)
        for (int i = 0; i < ds; i++)
            fired[i] |= f[(size_t)n * ds + i] != 0;
}

static float schedule_lr(const lp_sae_train_opts *o, long step)
{
    float lr = o->lr;
    if (o->warmup > 0 && step < o->warmup)
        lr *= (float)(step + 1) / (float)o->warmup;
    if (o->decay && o->steps > 0) {
        long start = o->steps - o->steps / 5;
        if (step >= start)
            lr *= fmaxf(0.0f, (float)(o->steps - step) / (float)(o->steps - start));
    }
    return lr;
}

/* Resampling (Towards Monosemanticity): each dead feature re-pointed at an input chosen
 * with probability ~ its reconstruction loss squared; encoder norm 0.2 x the mean live one. */
static int resample(lp_sae_trainer *t, const float *x, const float *y, int N)
{
    lp_sae *s = t->s;
    const lp_sae_config *c = &s->cfg;
    const int di = c->d_in, ds = c->d_sae, dout = c->d_out;
    const float *xh = t->w->x_hat;
    y = y ? y : x;
    double tot = 0, live = 0;
    int nlive = 0, done = 0;
    for (int n = 0; n < N; n++) {
        double l = 0;
        for (int d = 0; d < dout; d++)
            l += ((double)xh[(size_t)n * dout + d] - y[(size_t)n * dout + d]) *
                 ((double)xh[(size_t)n * dout + d] - y[(size_t)n * dout + d]);
        t->tokloss[n] = l * l, tot += l * l;
    }
    for (int i = 0; i < ds; i++)
        if (!t->dead[i]) {
            double a = 0;
            for (int j = 0; j < di; j++)
                a += (double)s->W_enc->data[(size_t)j * ds + i] * s->W_enc->data[(size_t)j * ds + i];
            live += sqrt(a), nlive++;
        }
    double enc = 0.2 * (nlive ? live / nlive : 1.0);
    if (!(tot > 0))
        return 0;
    float *p[6];
    size_t np[6];
    params(t, p, np);
    for (int i = 0; i < ds; i++) {
        if (!t->dead[i])
            continue;
        double u = lp_rng_uniform(&t->rng) * tot, acc = 0;
        int n = 0;
        while (n < N - 1 && (acc += t->tokloss[n]) < u)
            n++;
        const float *v = y + (size_t)n * dout, *xi = x + (size_t)n * di;
        double nv = 0, nx = 0;
        for (int d = 0; d < dout; d++)
            nv += (double)v[d] * v[d];
        for (int j = 0; j < di; j++)
            nx += (double)xi[j] * xi[j];
        if (!(nv > 0) || !(nx > 0))
            continue;
        for (int d = 0; d < dout; d++) {
            s->W_dec->data[(size_t)i * dout + d] = (float)(v[d] / sqrt(nv));
            t->m->W_dec[(size_t)i * dout + d] = t->v->W_dec[(size_t)i * dout + d] = 0;
        }
        for (int j = 0; j < di; j++) {
            s->W_enc->data[(size_t)j * ds + i] = (float)(enc * xi[j] / sqrt(nx));
            t->m->W_enc[(size_t)j * ds + i] = t->v->W_enc[(size_t)j * ds + i] = 0;
        }
        s->b_enc->data[i] = 0, t->m->b_enc[i] = t->v->b_enc[i] = 0;
        t->since_fired[i] = 0, t->dead[i] = 0;
        done++;
    }
    return done;
}

/* Adam, bias-corrected, on the gradients clipped to norm clip (gn their norm), over the k
 * parameters p (np floats each) laid end to end in g, m, v. The learning rate used. */
static float adam(lp_sae_trainer *t, float **p, const size_t *np, int k, const float *g, float *m, float *v, double gn,
                  long step)
{
    float lr = schedule_lr(&t->o, t->step);
    float sc = t->o.clip > 0 && gn > t->o.clip ? (float)(t->o.clip / gn) : 1.0f;
    float b1 = t->o.beta1, b2 = t->o.beta2, eps = t->o.adam_eps;
    float c1 = 1.0f - powf(b1, (float)step), c2 = 1.0f - powf(b2, (float)step);
    size_t off = 0;
    for (int q = 0; q < k; q++) {
        struct adam_ctx a = {p[q], (float *)g + off, m + off, v + off, sc, b1, b2, c1, c2, eps, lr};
        lp_par_for(np[q], 16384, adam_range, &a);
        off += np[q];
    }
    return lr;
}

/* Steps since each feature of s's work last fired: +1, 0 for those active in the batch.
 * fired: ds bytes of scratch for the dense case (its contents are overwritten), or NULL. */
static void count_fired(int *since, const lp_sae_work *w, int N, int ds, uint8_t *fired)
{
    for (int i = 0; i < ds; i++)
        since[i]++;
    if (!w->dense) /* the active lists: every feature that fired, and few others */
        for (int q = 0; q < w->rowptr[N]; q++)
            if (w->cval[q] != 0)
                since[w->idx[q]] = 0;
    if (w->dense && fired) {
        memset(fired, 0, (size_t)ds);
        fired_dense(fired, w->f, N, ds);
        for (int i = 0; i < ds; i++)
            if (fired[i])
                since[i] = 0;
    }
    for (int n = 0; w->dense && !fired && n < N; n++) {
        const float *f = w->f + (size_t)n * ds;
        for (int i = 0; i < ds; i++)
            if (f[i] != 0)
                since[i] = 0;
    }
}

/* A CLT's step: x and y (n_layers, N, d_model). */
static int clt_step(lp_sae_trainer *t, const float *x, const float *y, int N, lp_sae_step_stats *st)
{
    lp_clt *c = t->clt;
    const int L = c->n_layers, T = c->d_tc;
    long step = t->step + 1;
    if (N < 1 || N > t->o.batch)
        return lp_set_error("CLT training: step %ld got %d tokens (1..%d)", step, N, t->o.batch);
    if (!y)
        return lp_set_error("CLT training: a CLT needs its targets (step %ld)", step);
    lp_sae_loss_opts lo = t->o.loss;
    float l1 = lo.l1;
    if (t->o.l1_warmup > 0 && t->step < t->o.l1_warmup)
        l1 *= (float)(t->step + 1) / (float)t->o.l1_warmup;
    lo.l1 = l1;
    lp_clt_losses Lc;
    if (lp_clt_forward(&Lc, t->cw, c, x, y, N, &lo) < 0)
        return lp_error_prefix("CLT training, step %ld: ", step);
    if (!isfinite(Lc.total))
        return lp_set_error("CLT training: the loss is %g at step %ld (NaN or Inf); the weights are kept as of step %ld",
                            Lc.total, step, t->step);
    double sse[L], sst[L], l0[L];
    for (int l = 0; l < L; l++)
        lp_clt_work_layer(t->cw, l, &sse[l], &sst[l], &l0[l], NULL);
    lp_clt_grads_zero(t->cg);
    if (lp_clt_backward(t->cg, t->cw, c, x, y, N, &lo) < 0)
        return lp_error_prefix("CLT training, step %ld: ", step);
    double gn = 0;
    for (size_t i = 0; i < t->cg->n; i++)
        gn += (double)t->cg->mem[i] * t->cg->mem[i];
    gn = sqrt(gn);
    if (!isfinite(gn))
        return lp_set_error("CLT training: the gradient norm is %g at step %ld (NaN or Inf); the weights are kept as "
                            "of step %ld", gn, step, t->step);
    int k = 0;
    for (int l = 0; l < L; l++) { /* lp_clt_grads' order */
        lp_tensor *P[] = {c->W_enc[l], c->b_enc[l], c->W_dec[l], c->b_dec[l], c->threshold ? c->threshold[l] : NULL};
        for (int q = 0; q < 5; q++)
            if (P[q])
                t->pp[k] = P[q]->data, t->pn[k++] = (size_t)lp_tensor_numel(P[q]);
    }
    float lr = adam(t, t->pp, t->pn, k, t->cg->mem, t->cm->mem, t->cv->mem, gn, step);
    int ndead = 0;
    for (int l = 0; l < L; l++) {
        count_fired(t->since_fired + (size_t)l * T, lp_clt_work_layer_work(t->cw, l), N, T, NULL);
        t->layer_ev[l] = sst[l] > 0 ? 1.0 - sse[l] / sst[l] : 0.0, t->layer_l0[l] = l0[l];
    }
    for (size_t i = 0; i < (size_t)L * T; i++)
        ndead += t->since_fired[i] >= t->o.dead_window;
    t->step = step;
    if (st) {
        memset(&st->loss, 0, sizeof st->loss);
        st->loss.mse = Lc.mse, st->loss.sparsity = Lc.sparsity, st->loss.pre_act = Lc.pre_act;
        st->loss.total = Lc.total, st->loss.l0 = Lc.l0, st->loss.sse = Lc.sse, st->loss.sst = Lc.sst;
        st->explained_variance = Lc.sst > 0 ? 1.0 - Lc.sse / Lc.sst : 0.0;
        st->dead = ndead, st->resampled = 0, st->step = step, st->lr = lr, st->l1 = l1;
    }
    return 0;
}

int lp_sae_trainer_step(lp_sae_trainer *t, const float *x, const float *y, int N, lp_sae_step_stats *st)
{
    if (t->clt)
        return clt_step(t, x, y, N, st);
    lp_sae *s = t->s;
    const lp_sae_config *c = &s->cfg;
    const int ds = c->d_sae, dout = c->d_out;
    long step = t->step + 1;
    if (N < 1 || N > t->o.batch)
        return lp_set_error("SAE training: step %ld got %d tokens (1..%d)", step, N, t->o.batch);
    if (c->transcoder && !y)
        return lp_set_error("SAE training: a transcoder needs its targets (step %ld)", step);
    lp_sae_loss_opts lo = t->o.loss;
    float l1 = lo.l1;
    if (t->o.l1_warmup > 0 && t->step < t->o.l1_warmup)
        l1 *= (float)(t->step + 1) / (float)t->o.l1_warmup;
    lo.l1 = l1;
    int ndead = 0;
    for (int i = 0; i < ds; i++)
        ndead += t->dead[i] = t->since_fired[i] >= t->o.dead_window;
    lo.dead = t->dead;
    lp_sae_losses L;
    if (lp_sae_forward(&L, t->w, s, x, y, N, &lo) < 0)
        return lp_error_prefix("SAE training, step %ld: ", step);
    if (!isfinite(L.total))
        return lp_set_error("SAE training: the loss is %g at step %ld (NaN or Inf); the weights are kept as of step %ld",
                            L.total, step, t->step);
    lp_sae_grads_zero(t->g);
    if (lp_sae_backward(t->g, t->w, s, x, y, N, &lo) < 0)
        return lp_error_prefix("SAE training, step %ld: ", step);
    double gn = sqrt(grad_sumsq(t->g->mem, t->g->n));
    if (!isfinite(gn))
        return lp_set_error("SAE training: the gradient norm is %g at step %ld (NaN or Inf); the weights are kept as "
                            "of step %ld", gn, step, t->step);
    float *p[6];
    size_t np[6];
    int k = params(t, p, np);
    float lr = adam(t, p, np, k, t->g->mem, t->m->mem, t->v->mem, gn, step);
    if ((c->arch == LP_SAE_BATCHTOPK || c->arch == LP_SAE_MATRYOSHKA) && lo.batch_mode && L.min_active > 0)
        for (int i = 0; i < ds; i++)
            s->threshold->data[i] = 0.99f * s->threshold->data[i] + 0.01f * L.min_active;
    if (t->o.unit_decoder)
        for (int i = 0; i < ds; i++) {
            float *r = s->W_dec->data + (size_t)i * dout;
            double a = 0;
            for (int d = 0; d < dout; d++)
                a += (double)r[d] * r[d];
            if (a > 0)
                for (int d = 0; d < dout; d++)
                    r[d] = (float)(r[d] / sqrt(a));
        }
    /* dead-feature counters from this batch's features */
    count_fired(t->since_fired, t->w, N, ds, t->dead); /* t->dead: scratch, made again below */
    int resampled = 0;
    if (c->arch == LP_SAE_STANDARD && t->o.resample_every > 0 && step % t->o.resample_every == 0) {
        ndead = 0;
        for (int i = 0; i < ds; i++)
            ndead += t->dead[i] = t->since_fired[i] >= t->o.dead_window;
        resampled = resample(t, x, y, N);
    }
    ndead = 0;
    for (int i = 0; i < ds; i++)
        ndead += t->dead[i] = t->since_fired[i] >= t->o.dead_window;
    t->step = step;
    if (st) {
        st->loss = L;
        st->explained_variance = L.sst > 0 ? 1.0 - L.sse / L.sst : 0.0;
        st->dead = ndead, st->resampled = resampled, st->step = step, st->lr = lr, st->l1 = l1;
    }
    return 0;
}
