/* A dictionary evaluated over model runs: clean, reconstruction patched in, hook zero-
 * ablated (eval.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "dict/eval.h"
#include "dict/sae_ops.h"

typedef struct sums {
    double ce[3], kl[2]; /* clean, sae, zero; sae, zero */
    double n_ce, n_kl;
} sums;

static int keep_hooks(void *ud, const char *name)
{
    const lp_sae *s = ud;
    return !strcmp(name, s->cfg.hook_in) || !strcmp(name, s->cfg.hook_out);
}

/* log-softmax of one row of logits into lp (V), in double. */
static void log_softmax(double *lp, const float *z, int V)
{
    double mx = -INFINITY, sum = 0;
    for (int v = 0; v < V; v++)
        mx = z[v] > mx ? z[v] : mx;
    for (int v = 0; v < V; v++)
        sum += exp((double)z[v] - mx);
    double lse = mx + log(sum);
    for (int v = 0; v < V; v++)
        lp[v] = (double)z[v] - lse;
}

/* CE and KL of one batch's three runs (logits (R,T,V)), over positions not special. */
static void add_losses(sums *a, const float *const lg[3], const int32_t *ids, const uint8_t *special, int R, int T,
                       int V, double *lp)
{
    double *l0 = lp, *l1 = lp + V;
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)r * T + t;
            if (special[i])
                continue;
            log_softmax(l0, lg[0] + i * V, V);
            for (int k = 0; k < 3; k++) {
                if (k)
                    log_softmax(l1, lg[k] + i * V, V);
                const double *l = k ? l1 : l0;
                if (t < T - 1)
                    a->ce[k] -= l[ids[i + 1]];
                if (k) {
                    double kl = 0;
                    for (int v = 0; v < V; v++)
                        kl += exp(l0[v]) * (l0[v] - l1[v]);
                    a->kl[k - 1] += kl;
                }
            }
            a->n_ce += t < T - 1;
            a->n_kl += 1;
        }
}

/* One batch: the three runs and every sum. */
static int eval_batch(const lp_model *m, const lp_sae *s, lp_sae_eval *acc, sums *a, const int32_t *ids,
                      const uint8_t *special, int R, int T, double *lp)
{
    const lp_sae_config *c = &s->cfg;
    size_t N = (size_t)R * T;
    lp_run runs[3] = {{0}};
    lp_tensor *P = NULL;
    float *xs = NULL, *z = NULL, *f = NULL;
    int rc = -1;
    lp_run_opts oc = {.filter = keep_hooks, .filter_ud = (void *)s};
    if (lp_model_run(m, ids, R, T, &oc, &runs[0]) < 0)
        return -1;
    const lp_tensor *x = lp_run_get(&runs[0], c->transcoder ? c->hook_in : c->hook_out);
    const lp_tensor *y = lp_run_get(&runs[0], c->hook_out);
    if (!x || !y || !lp_tensor_is_contiguous(x) || !lp_tensor_is_contiguous(y) ||
        lp_tensor_numel(x) != (int64_t)N * c->d_in || lp_tensor_numel(y) != (int64_t)N * c->d_out) {
        lp_set_error("evaluate: the hooks '%s' -> '%s' do not have the dictionary's %d -> %d dimensions per token",
                     c->hook_in, c->hook_out, c->d_in, c->d_out);
        goto done;
    }
    int64_t shape[3] = {R, T, c->d_out};
    P = lp_tensor_empty_for("the reconstruction", 3, shape, LP_DEVICE_CPU);
    xs = lp_malloc(N * c->d_in * sizeof *xs, "the evaluation's inputs");
    z = lp_malloc(N * c->d_sae * sizeof *z, "the evaluation's features");
    f = lp_malloc(N * c->d_sae * sizeof *f, "the evaluation's features");
    if (!P || !xs || !z || !f)
        goto done;
    for (size_t i = 0; i < N * c->d_in; i++)
        xs[i] = x->data[i] * s->scale;
    if (lp_sae_encode(z, f, s, xs, (int)N, 0) < 0 || lp_sae_decode(P->data, s, f, xs, (int)N) < 0)
        goto done;
    for (size_t i = 0; i < N; i++) {
        float *row = P->data + i * c->d_out;
        const float *yr = y->data + i * c->d_out;
        if (special[i]) { /* keeps its clean activation */
            memcpy(row, yr, (size_t)c->d_out * sizeof *row);
            continue;
        }
        for (int j = 0; j < c->d_out && s->scale != 1.0f; j++)
            row[j] /= s->scale;
        if (lp_sae_eval_add(acc, yr, row, f + i * c->d_sae, 1) < 0)
            goto done;
    }
    lp_hook hp = {.name = c->hook_out, .kind = LP_HOOK_PATCH, .value = P, .head = -1, .pos = -1};
    lp_hook hz = {.name = c->hook_out, .kind = LP_HOOK_ZERO, .head = -1, .pos = -1};
    lp_run_opts op = {.hooks = &hp, .nhooks = 1}, oz = {.hooks = &hz, .nhooks = 1};
    if (lp_interrupt_check() < 0 || lp_model_run(m, ids, R, T, &op, &runs[1]) < 0 || lp_interrupt_check() < 0 ||
        lp_model_run(m, ids, R, T, &oz, &runs[2]) < 0)
        goto done;
    const float *lg[3] = {runs[0].logits->data, runs[1].logits->data, runs[2].logits->data};
    add_losses(a, lg, ids, special, R, T, m->cfg.d_vocab, lp);
    rc = 0;
done:
    for (int k = 0; k < 3; k++)
        lp_run_clear(&runs[k]);
    lp_tensor_free(P);
    free(xs), free(z), free(f);
    return rc;
}

int lp_sae_evaluate(const lp_model *m, const lp_sae *s, const lp_sae_eval_opts *o, lp_sae_eval_result *out)
{
    memset(out, 0, sizeof *out);
    const lp_model_config *mc = &m->cfg;
    const lp_sae_config *c = &s->cfg;
    int T = o->ctx, pre = o->prepend_bos ? 1 : 0;
    if (!lp_model_has_hook(m, c->hook_in) || !lp_model_has_hook(m, c->hook_out))
        return lp_set_error("evaluate: the model has no hook point '%s'",
                            lp_model_has_hook(m, c->hook_in) ? c->hook_out : c->hook_in);
    if (T < 2 || (mc->n_ctx > 0 && T > mc->n_ctx))
        return lp_set_error("evaluate: ctx %d must be in 2..%d", T, mc->n_ctx > 0 ? mc->n_ctx : 1 << 20);
    if (pre && mc->bos < 0)
        return lp_set_error("evaluate: prepend_bos, but the model has no BOS token");
    size_t per = (size_t)(T - pre);
    size_t nwin = o->ntokens / per;
    if (nwin == 0)
        return lp_set_error("evaluate: the corpus (%zu tokens) is shorter than one window of %zu", o->ntokens, per);
    int64_t want = o->want > 0 ? o->want : T;
    size_t wins = (size_t)((want + T - 1) / T);
    if (wins > nwin)
        wins = nwin;
    int B = o->batch > 0 ? o->batch : 8;
    /* at most about 256 MB of logits (three runs) */
    int64_t cap = (int64_t)(256 << 20) / (3 * (int64_t)T * mc->d_vocab * (int64_t)sizeof(float));
    if (cap < 1)
        cap = 1;
    if (B > cap)
        B = (int)cap;
    int32_t *ids = lp_malloc((size_t)B * T * sizeof *ids, "the evaluation's tokens");
    uint8_t *special = lp_malloc((size_t)B * T, "the evaluation's mask");
    double *lp = lp_malloc(2 * (size_t)mc->d_vocab * sizeof *lp, "the evaluation's log-probabilities");
    lp_sae_eval *acc = lp_sae_eval_new(c->d_out, c->d_sae);
    sums a;
    memset(&a, 0, sizeof a);
    int rc = -1;
    if (!ids || !special || !lp || !acc)
        goto done;
    for (size_t w0 = 0; w0 < wins; w0 += (size_t)B) {
        int R = (int)(wins - w0 < (size_t)B ? wins - w0 : (size_t)B);
        for (int r = 0; r < R; r++) {
            int32_t *row = ids + (size_t)r * T;
            if (pre)
                row[0] = mc->bos;
            memcpy(row + pre, o->tokens + (w0 + r) * per, per * sizeof *row);
        }
        for (size_t i = 0; i < (size_t)R * T; i++)
            special[i] = !o->keep_special && ((mc->bos >= 0 && ids[i] == mc->bos) || (mc->eos >= 0 && ids[i] == mc->eos));
        if (lp_interrupt_check() < 0 || eval_batch(m, s, acc, &a, ids, special, R, T, lp) < 0)
            goto done;
        out->positions += (int64_t)R * T;
        if (o->progress && o->progress(o->ud, out->positions, (int64_t)wins * T)) {
            lp_set_error_code(LP_ERR_INTERRUPTED, "evaluate: interrupted");
            goto done;
        }
    }
    if (a.n_ce <= 0 || a.n_kl <= 0 || lp_sae_eval_metrics(acc, &out->m) < 0) {
        lp_set_error("evaluate: every position was a special token");
        goto done;
    }
    out->ce_clean = a.ce[0] / a.n_ce, out->ce_sae = a.ce[1] / a.n_ce, out->ce_zero = a.ce[2] / a.n_ce;
    out->kl_sae = a.kl[0] / a.n_kl, out->kl_zero = a.kl[1] / a.n_kl;
    out->ce_loss_score = (out->ce_zero - out->ce_sae) / (out->ce_zero - out->ce_clean);
    out->kl_div_score = (out->kl_zero - out->kl_sae) / out->kl_zero;
    out->d_sae = c->d_sae;
    if (!(out->density = lp_malloc((size_t)c->d_sae * sizeof *out->density, "feature densities")) ||
        lp_sae_eval_density(acc, out->density) < 0)
        goto done;
    rc = 0;
done:
    if (rc < 0) {
        free(out->density);
        out->density = NULL;
    }
    free(ids), free(special), free(lp);
    lp_sae_eval_free(acc);
    return rc;
}
