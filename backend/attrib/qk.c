/* QK attribution (qk.h): backward passes through the frozen linear model from the head's
 * query (and key) coordinates, d_head rows each, read against every term, as edges.c does
 * for feature targets. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "attrib/graph.h"
#include "attrib/qk.h"
#include "core/error.h"
#include "dict/sae_ops.h"

static float lin_at(const lp_linear *l, int i, int j) /* W[in i, out j] */
{
    return l->trans ? l->w->data[(size_t)j * l->in + i] : l->w->data[(size_t)i * l->out + j];
}

static float dotf(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return (float)s;
}

/* gradient through a frozen norm x -> (x [- mean x]) / s * w (+ b); adds into gx */
static void norm_back(float *gx, const float *gy, const float *w, float s, int centered, int D)
{
    double mean = 0;
    if (centered) {
        for (int d = 0; d < D; d++)
            mean += (double)gy[d] * w[d];
        mean /= D;
    }
    for (int d = 0; d < D; d++)
        gx[d] += (float)((gy[d] * w[d] - mean) / s);
}

static int keep_hook(void *ud, const char *name)
{
    (void)ud;
    static const char *const sfx[] = {"ln1.hook_scale", "ln2.hook_scale", "attn.hook_pattern", "attn.hook_attn_scores",
                                      "mlp.hook_in", "mlp.hook_out"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++) {
        size_t k = strlen(sfx[i]);
        if (n >= k && !strcmp(name + n - k, sfx[i]))
            return 1;
    }
    return 0;
}

static const float *cached(const lp_run *run, const char *fmt, int l)
{
    char name[96];
    snprintf(name, sizeof name, fmt, l);
    lp_tensor *t = lp_run_get(run, name);
    if (!t)
        lp_set_error("QK attribution: the forward pass did not give '%s'", name);
    return t ? t->data : NULL;
}

void lp_qk_free(lp_qk *q)
{
    if (!q)
        return;
    free(q->terms);
    free(q->qv);
    free(q->kv);
    free(q->q_marg);
    free(q->k_marg);
    free(q);
}

double lp_qk_pair(const lp_qk *q, int i, int j)
{
    int S = q->d_head;
    double s = 0;
    for (int e = 0; e < S; e++)
        s += (double)q->qv[(size_t)i * S + e] * q->kv[(size_t)j * S + e];
    return s / sqrt((double)S);
}

static int add_term(lp_qk *q, int *cap, lp_qk_term t)
{
    if (q->n_terms == *cap) {
        int nc = *cap ? 2 * *cap : 256;
        lp_qk_term *p = realloc(q->terms, (size_t)nc * sizeof *p);
        if (!p)
            return lp_set_error_code(LP_ERR_NOMEM, "QK attribution: cannot allocate the term list");
        q->terms = p;
        *cap = nc;
    }
    q->terms[q->n_terms++] = t;
    return 0;
}

/* the term's id: the graph's node id (graph.h's forms) */
static void node_id(lp_qk_term *t, lp_node_kind kind, int32_t token)
{
    lp_graph_node d = {.kind = kind, .layer = t->layer, .pos = t->pos, .feature = t->feature, .token = token};
    lp_graph_node_id(&d, 0);
    memcpy(t->id, d.id, sizeof t->id);
}

typedef struct qk_work {
    const lp_model *m;
    const lp_transcoder_set *tcs;
    const int32_t *tokens;
    int T, layer;
    const float **s1, **s2, **pat; /* per layer < layer+1 */
    float **f;                     /* per layer < layer: T x F activations */
    float **bos;                   /* per layer < layer: D, the MLP output at position 0 minus b_dec and skip */
    float **err;                   /* per layer < layer: T x D */
    int *term_start;               /* per layer < layer + 1: first feature term of the layer */
    int err0, emb0, t_pos, t_bias, t_bos;
} qk_work;

/* R = d_head rows backward from coordinate columns wcol (D x (R) read as W[:, col0 + e]) at
 * position pos of the head's layer; writes out (n_terms x R) */
static int backward(const qk_work *w, lp_qk *q, const lp_linear *wl, int col0, const float *bcol, int pos, float *out)
{
    const lp_model *m = w->m;
    const lp_model_config *c = &m->cfg;
    int D = c->d_model, H = c->n_heads, K = c->n_kv_heads > 0 ? c->n_kv_heads : H, S = c->d_head, T = w->T;
    int R = S, M = R * T, HS = H * S, KS = K * S, N = q->n_terms;
    float *g = lp_calloc((size_t)M * D, sizeof(float), "QK gradients");
    float *gin = lp_calloc((size_t)M * D, sizeof(float), "QK gradients");
    float *gz = lp_malloc((size_t)M * HS * sizeof(float), "QK gradients");
    float *gv = lp_malloc((size_t)M * KS * sizeof(float), "QK gradients");
    float *wo = lp_malloc((size_t)HS * D * sizeof(float), "QK weights");
    float *wv = lp_malloc((size_t)D * KS * sizeof(float), "QK weights");
    int rc = -1;
    if (!g || !gin || !gz || !gv || !wo || !wv)
        goto done;
#define OUT(t, r) out[(size_t)(t) * R + (r)]
    memset(out, 0, (size_t)N * R * sizeof(float));
    const lp_block *bt = &m->blocks[w->layer];
    for (int r = 0; r < R; r++) {
        float *gi = gin + ((size_t)r * T + pos) * D;
        for (int d = 0; d < D; d++)
            gi[d] = lin_at(wl, d, col0 + r);
        OUT(w->t_bias, r) += (bcol ? bcol[r] : 0) + (bt->ln1_b ? dotf(gi, bt->ln1_b->data, D) : 0);
        norm_back(g + ((size_t)r * T + pos) * D, gi, bt->ln1_w->data, w->s1[w->layer][pos], bt->ln1_b != NULL, D);
    }
    for (int l = w->layer - 1; l >= 0; l--) {
        const lp_block *bl = &m->blocks[l];
        const lp_sae *tc = w->tcs->layers[l];
        int F = tc->cfg.d_sae;
        /* g: the gradient at mlp.hook_out l */
        for (int r = 0; r < R; r++) {
            const float *gr = g + (size_t)r * T * D;
            for (int t = w->term_start[l]; t < w->term_start[l + 1]; t++) {
                const lp_qk_term *tm = &q->terms[t];
                OUT(t, r) += tm->act * dotf(gr + (size_t)tm->pos * D, tc->W_dec->data + (size_t)tm->feature * D, D);
            }
            for (int p = 1; p < T; p++)
                OUT(w->err0 + l * (T - 1) + p - 1, r) += dotf(gr + (size_t)p * D, w->err[l] + (size_t)p * D, D);
            OUT(w->t_bos, r) += dotf(gr, w->bos[l], D);
            if (tc->b_dec)
                for (int p = 0; p < T; p++)
                    OUT(w->t_bias, r) += dotf(gr + (size_t)p * D, tc->b_dec->data, D);
        }
        if (tc->W_skip)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, D, D, 1.0f, g, D, tc->W_skip->data, D, 0.0f, gin,
                        D);
        else
            memset(gin, 0, (size_t)M * D * sizeof(float));
        (void)F;
        for (int r = 0; r < R; r++)
            for (int p = 0; p < T; p++) {
                float *gi = gin + ((size_t)r * T + p) * D;
                if (bl->ln2_b)
                    OUT(w->t_bias, r) += dotf(gi, bl->ln2_b->data, D);
                norm_back(g + ((size_t)r * T + p) * D, gi, bl->ln2_w->data, w->s2[l][p], bl->ln2_b != NULL, D);
            }
        /* attention, OV path with the frozen pattern */
        const lp_linear *vl = &bl->qkv;
        for (int i = 0; i < D; i++)
            for (int j = 0; j < KS; j++)
                wv[(size_t)i * KS + j] = lin_at(vl, i, 2 * D + j);
        for (int j = 0; j < HS; j++)
            for (int d = 0; d < D; d++)
                wo[(size_t)j * D + d] = lin_at(&bl->o, j, d);
        if (bl->o.b)
            for (int r = 0; r < R; r++)
                for (int p = 0; p < T; p++)
                    OUT(w->t_bias, r) += dotf(g + ((size_t)r * T + p) * D, bl->o.b->data, D);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, HS, D, 1.0f, g, D, wo, D, 0.0f, gz, HS);
        memset(gv, 0, (size_t)M * KS * sizeof(float));
        const float *P = w->pat[l];
        for (int r = 0; r < R; r++)
            for (int h = 0; h < H; h++)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, S, T, 1.0f, P + (size_t)h * T * T, T,
                            gz + (size_t)r * T * HS + h * S, HS, 1.0f, gv + (size_t)r * T * KS + (h / (H / K)) * S, KS);
        if (vl->b)
            for (int r = 0; r < R; r++)
                for (int p = 0; p < T; p++)
                    OUT(w->t_bias, r) += dotf(gv + ((size_t)r * T + p) * KS, vl->b->data + 2 * D, KS);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, D, KS, 1.0f, gv, KS, wv, KS, 0.0f, gin, D);
        for (int r = 0; r < R; r++)
            for (int p = 0; p < T; p++) {
                float *gi = gin + ((size_t)r * T + p) * D;
                if (bl->ln1_b)
                    OUT(w->t_bias, r) += dotf(gi, bl->ln1_b->data, D);
                norm_back(g + ((size_t)r * T + p) * D, gi, bl->ln1_w->data, w->s1[l][p], bl->ln1_b != NULL, D);
            }
    }
    /* g: the gradient at the embeddings */
    for (int r = 0; r < R; r++)
        for (int p = 0; p < T; p++) {
            const float *gp = g + ((size_t)r * T + p) * D;
            OUT(w->emb0 + p, r) += dotf(gp, m->wte->data + (size_t)w->tokens[p] * D, D);
            OUT(w->t_pos, r) += dotf(gp, m->wpe->data + (size_t)p * D, D);
        }
#undef OUT
    rc = 0;
done:
    if (rc < 0 && !g)
        (void)0;
    free(g), free(gin), free(gz), free(gv), free(wo), free(wv);
    return rc;
}

lp_qk *lp_qk_compute(const lp_model *m, const lp_transcoder_set *tcs, const int32_t *tokens, int T, int layer,
                     int head, int query, int key)
{
    const lp_model_config *c = &m->cfg;
    if (c->arch != LP_ARCH_GPT2 || !m->wpe) {
        lp_set_error("QK attribution: only GPT-2-family models (learned positions, no rotary embedding) are "
                     "supported");
        return NULL;
    }
    if (c->attn_only) {
        lp_set_error("QK attribution: an attention-only model has no MLPs to replace");
        return NULL;
    }
    if (layer < 0 || layer >= c->n_layers) {
        lp_set_error("QK attribution: layer %d out of range (0..%d)", layer, c->n_layers - 1);
        return NULL;
    }
    if (head < 0 || head >= c->n_heads) {
        lp_set_error("QK attribution: head %d out of range (0..%d)", head, c->n_heads - 1);
        return NULL;
    }
    if (T < 1 || query < 0 || query >= T || key < 0 || key > query) {
        lp_set_error("QK attribution: need 0 <= key <= query < %d positions (got query %d, key %d)", T, query, key);
        return NULL;
    }
    if (!tcs || tcs->n_layers != c->n_layers || strcmp(tcs->feature_input_hook, "mlp.hook_in") ||
        strcmp(tcs->feature_output_hook, "mlp.hook_out")) {
        lp_set_error("QK attribution: need a per-layer transcoder set of %d layers on mlp.hook_in -> mlp.hook_out",
                     c->n_layers);
        return NULL;
    }
    for (int l = 0; l < c->n_layers; l++)
        if (!tcs->layers[l] || tcs->layers[l]->cfg.d_in != c->d_model || tcs->layers[l]->cfg.d_out != c->d_model) {
            lp_set_error("QK attribution: the transcoder of layer %d does not map d_model to d_model", l);
            return NULL;
        }
    int D = c->d_model, S = c->d_head, H = c->n_heads, K = c->n_kv_heads > 0 ? c->n_kv_heads : H;
    lp_qk *q = lp_calloc(1, sizeof *q, "QK attribution");
    if (!q)
        return NULL;
    q->layer = layer, q->head = head, q->query = query, q->key = key, q->d_head = S;
    qk_work w = {.m = m, .tcs = tcs, .tokens = tokens, .T = T, .layer = layer};
    int nl = layer + 1, cap = 0, ok = 0;
    w.s1 = calloc((size_t)nl, sizeof *w.s1), w.s2 = calloc((size_t)nl, sizeof *w.s2);
    w.pat = calloc((size_t)nl, sizeof *w.pat);
    w.f = calloc((size_t)nl, sizeof *w.f), w.bos = calloc((size_t)nl, sizeof *w.bos);
    w.err = calloc((size_t)nl, sizeof *w.err), w.term_start = calloc((size_t)nl + 1, sizeof(int));
    lp_run run = {0};
    lp_run_opts ro = {.filter = keep_hook};
    float *xhat = lp_malloc((size_t)T * D * sizeof(float), "QK scratch");
    if (!w.s1 || !w.s2 || !w.pat || !w.f || !w.bos || !w.err || !w.term_start || !xhat) {
        lp_set_error_code(LP_ERR_NOMEM, "QK attribution: out of memory");
        goto done;
    }
    if (lp_model_run(m, tokens, 1, T, &ro, &run) < 0)
        goto done;
    for (int l = 0; l <= layer; l++) {
        if (!(w.s1[l] = cached(&run, "blocks.%d.ln1.hook_scale", l)) ||
            !(w.s2[l] = cached(&run, "blocks.%d.ln2.hook_scale", l)) ||
            !(w.pat[l] = cached(&run, "blocks.%d.attn.hook_pattern", l)))
            goto done;
    }
    const float *sc = cached(&run, "blocks.%d.attn.hook_attn_scores", layer);
    if (!sc)
        goto done;
    q->score = sc[((size_t)head * T + query) * T + key];
    /* the features (layer, pos >= 1, feature ascending), errors and position-0 outputs */
    for (int l = 0; l < layer; l++) {
        const lp_sae *s = tcs->layers[l];
        int F = s->cfg.d_sae;
        const float *x = cached(&run, "blocks.%d.mlp.hook_in", l), *y = cached(&run, "blocks.%d.mlp.hook_out", l);
        w.f[l] = lp_malloc((size_t)T * F * sizeof(float), "QK transcoder activations");
        w.err[l] = lp_calloc((size_t)T * D, sizeof(float), "QK error vectors");
        w.bos[l] = lp_calloc((size_t)D, sizeof(float), "QK position-0 outputs");
        if (!x || !y || !w.f[l] || !w.err[l] || !w.bos[l] || lp_sae_encode(NULL, w.f[l], s, x, T, 0) < 0 ||
            lp_sae_decode(xhat, s, w.f[l], x, T) < 0)
            goto done;
        for (size_t i = 0; i < (size_t)T * D; i++)
            w.err[l][i] = y[i] - xhat[i];
        /* position 0: the features' and the error's part (the decoder's output minus b_dec
         * and the skip), as one term */
        for (int d = 0; d < D; d++)
            w.bos[l][d] = w.err[l][d];
        for (int i = 0; i < F; i++) {
            float a = w.f[l][i];
            if (a != 0.0f)
                cblas_saxpy(D, a, s->W_dec->data + (size_t)i * D, 1, w.bos[l], 1);
        }
        w.term_start[l] = q->n_terms;
        for (int t = 1; t < T; t++)
            for (int i = 0; i < F; i++) {
                float a = w.f[l][(size_t)t * F + i];
                if (a == 0.0f)
                    continue;
                lp_qk_term tm = {LP_QK_FEATURE, l, t, i, a, {0}};
                node_id(&tm, LP_NODE_FEATURE, -1);
                if (add_term(q, &cap, tm) < 0)
                    goto done;
            }
    }
    w.term_start[layer] = q->n_terms;
    w.err0 = q->n_terms;
    for (int l = 0; l < layer; l++)
        for (int p = 1; p < T; p++) {
            lp_qk_term tm = {LP_QK_ERROR, l, p, -1, 0, {0}};
            node_id(&tm, LP_NODE_ERROR, -1);
            if (add_term(q, &cap, tm) < 0)
                goto done;
        }
    w.emb0 = q->n_terms;
    for (int p = 0; p < T; p++) {
        lp_qk_term tm = {LP_QK_EMBEDDING, -1, p, -1, 0, {0}};
        node_id(&tm, LP_NODE_EMBEDDING, tokens[p]);
        if (add_term(q, &cap, tm) < 0)
            goto done;
    }
    w.t_pos = q->n_terms;
    if (add_term(q, &cap, (lp_qk_term){LP_QK_POS_EMBED, -1, -1, -1, 0, "pos_embed"}) < 0)
        goto done;
    w.t_bias = q->n_terms;
    if (add_term(q, &cap, (lp_qk_term){LP_QK_BIAS, -1, -1, -1, 0, "bias"}) < 0)
        goto done;
    w.t_bos = q->n_terms;
    if (add_term(q, &cap, (lp_qk_term){LP_QK_BOS_MLP, -1, 0, -1, 0, "bos_mlp"}) < 0)
        goto done;
    int N = q->n_terms;
    q->qv = lp_malloc((size_t)N * S * sizeof(float), "QK query vectors");
    q->kv = lp_malloc((size_t)N * S * sizeof(float), "QK key vectors");
    q->q_marg = lp_calloc((size_t)N, sizeof(double), "QK marginals");
    q->k_marg = lp_calloc((size_t)N, sizeof(double), "QK marginals");
    if (!q->qv || !q->kv || !q->q_marg || !q->k_marg)
        goto done;
    const lp_linear *wl = &m->blocks[layer].qkv;
    const float *b = wl->b ? wl->b->data : NULL;
    int kh = head / (H / K);
    if (backward(&w, q, wl, head * S, b ? b + head * S : NULL, query, q->qv) < 0 ||
        backward(&w, q, wl, D + kh * S, b ? b + D + kh * S : NULL, key, q->kv) < 0)
        goto done;
    /* totals and marginals */
    double *qs = lp_calloc((size_t)S, sizeof(double), "QK sums"), *ks = lp_calloc((size_t)S, sizeof(double), "QK sums");
    if (!qs || !ks) {
        free(qs), free(ks);
        goto done;
    }
    for (int i = 0; i < N; i++)
        for (int e = 0; e < S; e++)
            qs[e] += q->qv[(size_t)i * S + e], ks[e] += q->kv[(size_t)i * S + e];
    double tot = 0, rs = 1.0 / sqrt((double)S);
    for (int e = 0; e < S; e++)
        tot += qs[e] * ks[e];
    q->total = tot * rs;
    for (int i = 0; i < N; i++) {
        double a = 0, bb = 0;
        for (int e = 0; e < S; e++)
            a += q->qv[(size_t)i * S + e] * ks[e], bb += qs[e] * q->kv[(size_t)i * S + e];
        q->q_marg[i] = a * rs, q->k_marg[i] = bb * rs;
    }
    free(qs), free(ks);
    ok = 1;
done:
    lp_run_clear(&run);
    for (int l = 0; l < nl; l++) {
        if (w.f)
            free(w.f[l]);
        if (w.err)
            free(w.err[l]);
        if (w.bos)
            free(w.bos[l]);
    }
    free(w.s1), free(w.s2), free(w.pat), free(w.f), free(w.err), free(w.bos), free(w.term_start), free(xhat);
    if (!ok) {
        lp_qk_free(q);
        return NULL;
    }
    return q;
}

typedef struct heap {
    lp_qk_pair_t *a;
    int n, k;
} heap;

static void sift_down(heap *h, int i) /* min-heap by |value| */
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, s = i;
        if (l < h->n && fabs(h->a[l].value) < fabs(h->a[s].value))
            s = l;
        if (r < h->n && fabs(h->a[r].value) < fabs(h->a[s].value))
            s = r;
        if (s == i)
            return;
        lp_qk_pair_t t = h->a[i];
        h->a[i] = h->a[s], h->a[s] = t;
        i = s;
    }
}

static int by_abs_desc(const void *a, const void *b)
{
    double x = fabs(((const lp_qk_pair_t *)a)->value), y = fabs(((const lp_qk_pair_t *)b)->value);
    return x < y ? 1 : x > y ? -1 : 0;
}

int lp_qk_top_pairs(const lp_qk *q, int k, lp_qk_pair_t **out)
{
    *out = NULL;
    if (k < 1)
        return lp_set_error("QK attribution: k must be at least 1 (got %d)", k);
    heap h = {lp_malloc((size_t)k * sizeof(lp_qk_pair_t), "QK pairs"), 0, k};
    if (!h.a)
        return -1;
    for (int i = 0; i < q->n_terms; i++)
        for (int j = 0; j < q->n_terms; j++) {
            double v = lp_qk_pair(q, i, j);
            if (v == 0)
                continue;
            if (h.n < k) {
                h.a[h.n++] = (lp_qk_pair_t){i, j, v};
                if (h.n == k)
                    for (int s = k / 2 - 1; s >= 0; s--)
                        sift_down(&h, s);
            } else if (fabs(v) > fabs(h.a[0].value)) {
                h.a[0] = (lp_qk_pair_t){i, j, v};
                sift_down(&h, 0);
            }
        }
    qsort(h.a, (size_t)h.n, sizeof *h.a, by_abs_desc);
    *out = h.a;
    return h.n;
}

/* ---- the graph's record (graph.h: lp_graph_add_qk) ---- */

typedef struct ranked {
    double v;
    int i;
} ranked;

static int by_abs_then_index(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    double u = fabs(x->v), w = fabs(y->v);
    return u < w ? 1 : u > w ? -1 : x->i - y->i;
}

static json_t *marginals(const lp_qk *q, const double *v, int k)
{
    int N = q->n_terms;
    ranked *r = lp_malloc((size_t)(N ? N : 1) * sizeof *r, "QK marginals");
    json_t *a = json_array();
    if (!r || !a) {
        free(r);
        json_decref(a);
        return NULL;
    }
    for (int i = 0; i < N; i++)
        r[i] = (ranked){v[i], i};
    qsort(r, (size_t)N, sizeof *r, by_abs_then_index);
    for (int i = 0; i < N && i < k && r[i].v != 0; i++)
        if (json_array_append_new(a, json_pack("[sf]", q->terms[r[i].i].id, r[i].v)) < 0) {
            free(r);
            json_decref(a);
            return NULL;
        }
    free(r);
    return a;
}

json_t *lp_qk_json(const lp_qk *q, int k)
{
    lp_qk_pair_t *p = NULL;
    int n = lp_qk_top_pairs(q, k, &p);
    if (n < 0)
        return NULL;
    json_t *pairs = json_array(), *qm = marginals(q, q->q_marg, k), *km = marginals(q, q->k_marg, k);
    int fail = !pairs || !qm || !km;
    for (int i = 0; i < n && !fail; i++)
        fail = json_array_append_new(pairs, json_pack("[ssf]", q->terms[p[i].q].id, q->terms[p[i].k].id, p[i].value)) < 0;
    free(p);
    json_t *o = fail ? NULL
                     : json_pack("{si si si si sf sf so so so}", "layer", q->layer, "head", q->head, "query_ctx_idx",
                                 q->query, "key_ctx_idx", q->key, "score", q->score, "total", q->total,
                                 "pair_wise_contributors", pairs, "top_q_marginal_contributors", qm,
                                 "top_k_marginal_contributors", km);
    if (!o) {
        if (fail)
            json_decref(pairs), json_decref(qm), json_decref(km);
        lp_set_error_code(LP_ERR_NOMEM, "QK attribution: cannot build the JSON");
    }
    return o;
}

int lp_graph_add_qk(lp_graph *g, const lp_qk *q, int k)
{
    json_error_t e;
    json_t *arr = g->qk_tracing ? json_loads(g->qk_tracing, 0, &e) : json_array();
    json_t *o = arr ? lp_qk_json(q, k) : NULL;
    if (!arr || !json_is_array(arr) || !o) {
        json_decref(arr), json_decref(o);
        return lp_set_error_code(LP_ERR_NOMEM, "QK attribution: cannot record the explanation in the graph");
    }
    size_t i, n = json_array_size(arr);
    for (i = 0; i < n; i++) {
        json_t *x = json_array_get(arr, i);
        if (json_integer_value(json_object_get(x, "layer")) == q->layer &&
            json_integer_value(json_object_get(x, "head")) == q->head &&
            json_integer_value(json_object_get(x, "query_ctx_idx")) == q->query &&
            json_integer_value(json_object_get(x, "key_ctx_idx")) == q->key)
            break;
    }
    int rc = i < n ? json_array_set_new(arr, i, o) : json_array_append_new(arr, o);
    char *s = rc < 0 ? NULL : json_dumps(arr, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(arr);
    if (!s)
        return lp_set_error_code(LP_ERR_NOMEM, "QK attribution: cannot record the explanation in the graph");
    free(g->qk_tracing);
    g->qk_tracing = s;
    return 0;
}
