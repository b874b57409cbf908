/* The SAE trainer of sae_train.h: schedules, Adam with clipping, batchtopk's threshold,
 * unit decoders, dead-feature counters and resampling. */
#include "dict/sae_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/parallel.h"
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
    free(t->since_fired), free(t->dead), free(t->tokloss), free(t);
}

lp_sae_trainer *lp_sae_trainer_new(lp_sae *s, const lp_sae_train_opts *o)
{
    const lp_sae_config *c = &s->cfg;
    if (!(o->lr > 0) || !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) || !(o->clip >= 0) ||
        o->batch < 1 || o->dead_window < 1 || o->warmup < 0 || o->l1_warmup < 0 || o->steps < 0) {
        lp_set_error("SAE training: lr must be positive, betas in [0, 1), clip >= 0, batch and dead_window >= 1 "
                     "(got lr %g, betas %g %g, clip %g, batch %d, dead_window %d)",
                     o->lr, o->beta1, o->beta2, o->clip, o->batch, o->dead_window);
        return NULL;
    }
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

lp_sae_trainer *lp_sae_trainer_clone(const lp_sae_trainer *t, lp_sae *s)
{
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

int lp_sae_trainer_step(lp_sae_trainer *t, const float *x, const float *y, int N, lp_sae_step_stats *st)
{
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
    /* Adam, bias-corrected, on the clipped gradients */
    float lr = schedule_lr(&t->o, t->step);
    float sc = t->o.clip > 0 && gn > t->o.clip ? (float)(t->o.clip / gn) : 1.0f;
    float b1 = t->o.beta1, b2 = t->o.beta2, eps = t->o.adam_eps;
    float c1 = 1.0f - powf(b1, (float)step), c2 = 1.0f - powf(b2, (float)step);
    float *p[6];
    size_t np[6];
    int k = params(t, p, np);
    size_t off = 0;
    for (int q = 0; q < k; q++) {
        struct adam_ctx a = {p[q], t->g->mem + off, t->m->mem + off, t->v->mem + off, sc, b1, b2, c1, c2, eps, lr};
        lp_par_for(np[q], 16384, adam_range, &a);
        off += np[q];
    }
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
    for (int i = 0; i < ds; i++)
        t->since_fired[i]++;
    const lp_sae_work *w = t->w;
    if (!w->dense) /* the active lists: every feature that fired, and few others */
        for (int q = 0; q < w->rowptr[N]; q++)
            if (w->cval[q] != 0)
                t->since_fired[w->idx[q]] = 0;
    if (w->dense) {
        uint8_t *fired = t->dead; /* borrowed: the flags are made again from since_fired below */
        memset(fired, 0, (size_t)ds);
        fired_dense(fired, w->f, N, ds);
        for (int i = 0; i < ds; i++)
            if (fired[i])
                t->since_fired[i] = 0;
    }
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
