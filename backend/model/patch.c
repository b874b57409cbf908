/* Activation patching sweeps (see patch.h). */
#include "model/patch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"

static const lp_patch_kind KINDS[] = {
    {"resid_pre", "blocks.%d.hook_resid_pre", -1, 1}, {"resid_mid", "blocks.%d.hook_resid_mid", -1, 1},
    {"resid_post", "blocks.%d.hook_resid_post", -1, 1}, {"attn_out", "blocks.%d.hook_attn_out", -1, 1},
    {"mlp_out", "blocks.%d.hook_mlp_out", -1, 1}, {"z", "blocks.%d.attn.hook_z", 2, 1},
    {"q", "blocks.%d.attn.hook_q", 2, 1}, {"k", "blocks.%d.attn.hook_k", 2, 1},
    {"v", "blocks.%d.attn.hook_v", 2, 1}, {"pattern", "blocks.%d.attn.hook_pattern", 1, 2},
};

const lp_patch_kind *lp_patch_kind_find(const char *key)
{
    const char *k = key && !strncmp(key, "hook_", 5) ? key + 5 : key;
    for (size_t i = 0; k && i < sizeof KINDS / sizeof *KINDS; i++)
        if (!strcmp(k, KINDS[i].key))
            return &KINDS[i];
    lp_set_error("hook must be one of resid_pre, resid_mid, resid_post, attn_out, mlp_out, z, q, k, v, pattern "
                 "(got '%s')", key ? key : "(null)");
    return NULL;
}

void lp_patch_result_free(lp_patch_result *r)
{
    if (!r)
        return;
    free(r->values); /* one allocation holds both */
    r->values = r->raw = NULL;
}

/* ---- regions ---- */

/* t narrowed to [at, at+1) along dim (at < 0: t itself); consumes t. */
static lp_tensor *narrow(lp_tensor *t, int dim, int at)
{
    if (!t || at < 0)
        return t;
    lp_tensor *s = lp_tensor_slice(t, dim, at, at + 1, 1);
    lp_tensor_free(t);
    return s;
}

static lp_tensor *region_of(const lp_tensor *t, const lp_patch_kind *k, int head, int pos)
{
    return narrow(narrow(lp_tensor_alias(t), k->headdim, head), k->posdim, pos);
}

/* Whether the (head, pos) region of a and b (same shape, batch 1) holds equal values: 1, 0,
 * or -1 with the error set (allocation). */
static int same_region(const lp_tensor *a, const lp_tensor *b, const lp_patch_kind *k, int head, int pos)
{
    lp_tensor *va = region_of(a, k, head, pos), *vb = region_of(b, k, head, pos);
    lp_tensor *ca = va ? lp_tensor_contiguous(va) : NULL, *cb = vb ? lp_tensor_contiguous(vb) : NULL;
    int rc = -1;
    if (ca && cb && lp_tensor_same_shape(ca, cb))
        rc = memcmp(ca->data, cb->data, (size_t)lp_tensor_numel(ca) * sizeof(float)) == 0;
    lp_tensor_free(va), lp_tensor_free(vb), lp_tensor_free(ca), lp_tensor_free(cb);
    return rc;
}

/* The regions one forward pass patches: batch row r takes (head[r], pos[r]) (-1: all). */
typedef struct {
    const lp_tensor *clean; /* the clean activation of this layer, batch 1 */
    const lp_patch_kind *kind;
    const int *head, *pos;
    int n;
} patch_job;

static int patch_rows(void *ud, const char *name, const lp_tensor *act, lp_tensor **out)
{
    (void)name;
    patch_job *j = ud;
    lp_tensor *o = lp_tensor_clone(act);
    if (!o)
        return -1;
    for (int r = 0; r < j->n; r++) {
        lp_tensor *dst = region_of(o, j->kind, j->head[r], j->pos[r]);
        dst = narrow(dst, 0, r);
        lp_tensor *src = region_of(j->clean, j->kind, j->head[r], j->pos[r]);
        int rc = dst && src ? lp_tensor_copy_(dst, src) : -1;
        lp_tensor_free(dst);
        lp_tensor_free(src);
        if (rc < 0) {
            lp_tensor_free(o);
            return -1;
        }
    }
    *out = o;
    return 0;
}

static int keep_kind(void *ud, const char *name)
{
    const char *suffix = ud;
    size_t n = strlen(name), k = strlen(suffix);
    return n > k && strcmp(name + n - k, suffix) == 0 && !strncmp(name, "blocks.", 7);
}

/* ---- the metric ---- */

/* The metric of batch row `row` of logits (B, T, V). */
static int metric_of(const lp_patch_opts *o, int pos, const lp_tensor *logits, int row, double *value)
{
    if (!o->metric) {
        int64_t at[3] = {row, pos, o->token};
        float a, b = 0;
        if (lp_tensor_get(logits, at, &a) < 0)
            return -1;
        at[2] = o->baseline;
        if (o->baseline >= 0 && lp_tensor_get(logits, at, &b) < 0)
            return -1;
        *value = (double)a - b;
        return 0;
    }
    if (logits->shape[0] == 1)
        return o->metric(o->metric_ud, logits, value);
    lp_tensor *one = lp_tensor_slice(logits, 0, row, row + 1, 1);
    if (!one)
        return -1;
    int rc = o->metric(o->metric_ud, one, value);
    lp_tensor_free(one);
    return rc;
}

/* ---- the sweep ---- */

typedef struct {
    const lp_model *m;
    const lp_patch_opts *o;
    const lp_patch_kind *kind;
    int T, pos, nreg, chunk;
    int *rhead, *rpos, *todo, *th, *tp; /* regions; one layer's to do; one pass's */
    int32_t *toks;                      /* chunk copies of the corrupt prompt */
    double *raw;                        /* layers x regions */
    double m_corrupt;
    long done, total, runs;
} sweep;

static void progress(const sweep *s, int state)
{
    if (s->o->progress)
        s->o->progress(s->o->progress_ud, s->done, s->total, state);
}

/* Layer l: the regions that differ, in batches; the others get the corrupt metric. */
static int sweep_layer(sweep *s, int l, const lp_tensor *cl, const lp_tensor *xl, const char *name)
{
    int nt = 0;
    for (int i = 0; i < s->nreg; i++) {
        int same = same_region(cl, xl, s->kind, s->rhead[i], s->rpos[i]);
        if (same < 0)
            return -1;
        if (same) /* patching in what is already there: the corrupt run itself */
            s->raw[(size_t)l * s->nreg + i] = s->m_corrupt;
        else
            s->todo[nt++] = i;
    }
    s->done += s->nreg - nt;
    s->runs += nt;
    for (int r0 = 0; r0 < nt; r0 += s->chunk) {
        if (lp_interrupt_check() < 0)
            return -1;
        int n = nt - r0 < s->chunk ? nt - r0 : s->chunk;
        for (int r = 0; r < n; r++)
            s->th[r] = s->rhead[s->todo[r0 + r]], s->tp[r] = s->rpos[s->todo[r0 + r]];
        patch_job job = {cl, s->kind, s->th, s->tp, n};
        lp_hook h = {.name = name, .kind = LP_HOOK_FN, .head = -1, .pos = -1, .fn = patch_rows, .ud = &job};
        lp_run_opts ro = {&h, 1, 0, NULL, NULL};
        lp_run rr;
        if (lp_model_run(s->m, s->toks, n, s->T, &ro, &rr) < 0)
            return -1;
        int rc = 0;
        for (int r = 0; r < n && rc == 0; r++)
            rc = metric_of(s->o, s->pos, rr.logits, r, &s->raw[(size_t)l * s->nreg + s->todo[r0 + r]]);
        lp_run_clear(&rr);
        if (rc < 0)
            return -1;
        s->done += n;
        progress(s, 0);
    }
    return 0;
}

static int check_opts(const lp_model *m, const lp_patch_opts *o, int T)
{
    int V = m->cfg.d_vocab;
    if (T < 1)
        return lp_set_error("the prompts have no tokens");
    if (!o->metric) {
        if (o->token < 0 || o->token >= V || o->baseline >= V)
            return lp_set_error("metric token %d is not an id in 0..%d",
                                o->token < 0 || o->token >= V ? o->token : o->baseline, V - 1);
        if (o->pos >= T || o->pos < -T)
            return lp_set_error("metric pos %d is outside the %d positions", o->pos, T);
    }
    if (o->batch < 0)
        return lp_set_error("batch must be at least 1 (or 0 for the default), not %d", o->batch);
    return 0;
}

int lp_patch_sweep(const lp_model *m, const int32_t *clean, const int32_t *corrupt, int T,
                   const lp_patch_opts *o, lp_patch_result *out)
{
    if (check_opts(m, o, T) < 0)
        return -1;
    const lp_patch_kind *kind = o->kind ? o->kind : &KINDS[0];
    int NL = m->cfg.n_layers, per_head = kind->headdim >= 0;
    int positions = o->positions < 0 ? !per_head : o->positions != 0;
    sweep s = {.m = m, .o = o, .kind = kind, .T = T, .pos = o->pos < 0 ? o->pos + T : o->pos};
    char suffix[64], name[96];
    snprintf(suffix, sizeof suffix, "%s", strchr(kind->fmt + 7, '.') + 1);
    lp_run cr = {0}, xr = {0};
    lp_run_opts copts = {NULL, 0, 0, keep_kind, suffix};
    float *res = NULL;
    double m_clean = 0;
    int rc = -1, NH = 1;
    if (lp_model_run(m, clean, 1, T, &copts, &cr) < 0 || metric_of(o, s.pos, cr.logits, 0, &m_clean) < 0)
        goto done;
    if (lp_model_run(m, corrupt, 1, T, &copts, &xr) < 0 || metric_of(o, s.pos, xr.logits, 0, &s.m_corrupt) < 0)
        goto done;
    snprintf(name, sizeof name, kind->fmt, 0);
    const lp_tensor *c0 = lp_run_get(&cr, name);
    if (!c0) {
        lp_set_error("the clean run did not cache %s", name);
        goto done;
    }
    NH = per_head ? (int)c0->shape[kind->headdim] : 1;
    s.nreg = per_head ? (positions ? NH * T : NH) : (positions ? T : 1);
    s.chunk = o->batch > 0 ? o->batch : 2048 / T;
    s.chunk = s.chunk < 1 ? 1 : o->batch <= 0 && s.chunk > 64 ? 64 : s.chunk;
    if (s.chunk > s.nreg)
        s.chunk = s.nreg;
    size_t N = (size_t)NL * s.nreg;
    s.rhead = lp_malloc(((size_t)3 * s.nreg + 2 * (size_t)s.chunk) * sizeof(int), "patch regions");
    s.toks = lp_malloc((size_t)s.chunk * T * sizeof *s.toks, "patched prompts");
    s.raw = lp_malloc(N * sizeof *s.raw, "patch results");
    res = lp_malloc(2 * N * sizeof *res, "patch results");
    if (!s.rhead || !s.toks || !s.raw || !res)
        goto done;
    s.rpos = s.rhead + s.nreg, s.todo = s.rpos + s.nreg, s.th = s.todo + s.nreg, s.tp = s.th + s.chunk;
    for (int i = 0; i < s.nreg; i++) {
        s.rhead[i] = per_head ? (positions ? i / T : i) : -1;
        s.rpos[i] = positions ? i % T : -1;
    }
    for (int r = 0; r < s.chunk; r++)
        memcpy(s.toks + (size_t)r * T, corrupt, (size_t)T * sizeof *s.toks);
    s.total = (long)N;
    for (int l = 0; l < NL; l++) {
        snprintf(name, sizeof name, kind->fmt, l);
        const lp_tensor *cl = lp_run_get(&cr, name), *xl = lp_run_get(&xr, name);
        if (!cl || !xl) {
            lp_set_error("the runs did not cache %s", name);
            goto done;
        }
        if (sweep_layer(&s, l, cl, xl, name) < 0)
            goto done;
    }
    double span = m_clean - s.m_corrupt;
    for (size_t i = 0; i < N; i++) {
        res[N + i] = (float)s.raw[i];
        res[i] = !o->normalize ? (float)s.raw[i] : span != 0 ? (float)((s.raw[i] - s.m_corrupt) / span) : NAN;
    }
    *out = (lp_patch_result){
        .kind = kind, .per_head = per_head, .positions = positions, .n_layers = NL, .n_heads = per_head ? NH : 0,
        .n_regions = s.nreg, .rows = per_head && positions ? NL * NH : NL, .cols = per_head && positions ? T : s.nreg,
        .values = res, .raw = res + N, .clean = m_clean, .corrupt = s.m_corrupt, .runs = s.runs};
    res = NULL;
    rc = 0;
    progress(&s, 1);
done:
    if (rc < 0 && s.total) { /* where it stopped; the callback may not clobber the error */
        char why[1024];
        lp_err code = lp_last_error_code();
        snprintf(why, sizeof why, "%s", lp_last_error());
        progress(&s, -1);
        lp_set_error_code(code, "%s", why);
    }
    lp_run_clear(&cr);
    lp_run_clear(&xr);
    free(s.rhead);
    free(s.toks);
    free(s.raw);
    free(res);
    return rc;
}
