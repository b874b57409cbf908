/* Exact attribution edges (replace.h): for each target row, the gradient of its
 * pre-activation (or logit direction) backpropagated through the frozen linear model
 * (norm scales and attention patterns fixed, attention's OV path only, the MLPs replaced
 * by the transcoders' skip), read against every source at every layer:
 *   feature s at layer l:  a_s <g_l[pos_s], W_dec[s]>    g_l the gradient at mlp.hook_out l
 *   error (l, p):          <g_l[p], e_{l,p}>
 *   embedding p:           <g_embed[p], W_E[tok_p]>
 * `batch` rows go through each pass together (the products by BLAS); batches run in
 * parallel. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/replace.h"
#include "core/error.h"
#include "core/parallel.h"

typedef struct frozen_w {
    float *wv; /* n_layers x (D x K*S): the value projection, row-major */
    float *wo; /* n_layers x (H*S x D): the output projection, row-major */
} frozen_w;

typedef struct edge_ctx {
    const lp_replacement *r;
    frozen_w w;
    int *layer_start; /* n_layers + 1: the first feature node of each layer */
    float *A;
    int n_nodes, batch, n_rows;
    int failed;
} edge_ctx;

static float lin_at(const lp_linear *l, int i, int j) /* W[in i, out j] */
{
    return l->trans ? l->w->data[(size_t)j * l->in + i] : l->w->data[(size_t)i * l->out + j];
}

static int frozen_weights(const lp_model *m, frozen_w *w)
{
    const lp_model_config *c = &m->cfg;
    int D = c->d_model, H = c->n_heads, K = c->n_kv_heads > 0 ? c->n_kv_heads : H, S = c->d_head, L = c->n_layers;
    size_t nv = (size_t)D * K * S, no = (size_t)H * S * D;
    w->wv = lp_malloc((size_t)L * nv * sizeof(float), "frozen value weights");
    w->wo = lp_malloc((size_t)L * no * sizeof(float), "frozen output weights");
    if (!w->wv || !w->wo)
        return -1;
    for (int l = 0; l < L; l++) {
        const lp_block *b = &m->blocks[l];
        const lp_linear *v = c->arch == LP_ARCH_GPT2 ? &b->qkv : &b->v;
        int off = c->arch == LP_ARCH_GPT2 ? 2 * D : 0;
        for (int i = 0; i < D; i++)
            for (int j = 0; j < K * S; j++)
                w->wv[l * nv + (size_t)i * K * S + j] = lin_at(v, i, off + j);
        for (int j = 0; j < H * S; j++)
            for (int d = 0; d < D; d++)
                w->wo[l * no + (size_t)j * D + d] = lin_at(&b->o, j, d);
    }
    return 0;
}

static float dot(const float *a, const float *b, int n)
{
    float s = 0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* gradient through a frozen norm: x -> (x [- mean x]) / s * w (+ b); adds into gx */
static void norm_back(float *gx, const float *gy, const float *w, float s, int centered, int D)
{
    float mean = 0;
    if (centered) {
        for (int d = 0; d < D; d++)
            mean += gy[d] * w[d];
        mean /= (float)D;
    }
    for (int d = 0; d < D; d++)
        gx[d] += (gy[d] * w[d] - mean) / s;
}

typedef struct batch_buf {
    float *g, *gin, *gz, *gv, *pf; /* R*T x D, R*T x D, R*T x H*S, R*T x K*S, R*T x F */
    int *top;                      /* R: each row's layer */
} batch_buf;

static int row_node(const lp_replacement *r, int k)
{
    return k < r->n_features ? k : lp_replacement_logit_node(r, k - r->n_features);
}

/* rows k0 .. k0+R-1 (feature targets in node order, then logits): their layers are
 * non-decreasing, so the rows a layer concerns are a suffix of the batch */
static void one_batch(edge_ctx *c, batch_buf *b, int k0, int R)
{
    const lp_replacement *r = c->r;
    const lp_model *m = r->m;
    const lp_model_config *mc = &m->cfg;
    int D = r->d_model, L = r->n_layers, H = mc->n_heads, K = mc->n_kv_heads > 0 ? mc->n_kv_heads : H,
        S = mc->d_head, T = r->T, HS = H * S, KS = K * S;
    int *top = b->top;
    for (int i = 0; i < R; i++)
        top[i] = k0 + i < r->n_features ? r->features[k0 + i].layer : L - 1;
    memset(b->g, 0, (size_t)R * T * D * sizeof(float));
    for (int i = 0; i < R; i++)
        if (k0 + i >= r->n_features) /* a logit: its direction through the frozen final norm */
            norm_back(b->g + ((size_t)i * T + T - 1) * D, r->logit_dirs + (size_t)(k0 + i - r->n_features) * D,
                      m->lnf_w->data, r->lnf_scale[T - 1], m->lnf_b != NULL, D);
    for (int l = L - 1; l >= 0; l--) {
        int i0 = 0;
        while (i0 < R && top[i0] < l)
            i0++;
        if (i0 == R)
            continue;
        int nR = R - i0, M = nR * T;
        float *g = b->g + (size_t)i0 * T * D;
        const lp_block *bl = &m->blocks[l];
        const lp_sae *tc = r->tcs->layers[l];
        int F = tc->cfg.d_sae;
        /* g is the gradient at mlp.hook_out l (zero for a target of this layer, and after each
         * target's position): read the sources that write there */
        if (c->layer_start[l] < c->layer_start[l + 1]) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, F, D, 1.0f, g, D, tc->W_dec->data, D, 0.0f, b->pf, F);
            for (int i = 0; i < nR; i++) {
                float *A = c->A + (size_t)row_node(r, k0 + i0 + i) * c->n_nodes;
                for (int s = c->layer_start[l]; s < c->layer_start[l + 1]; s++) {
                    const lp_attrib_feature *f = &r->features[s];
                    A[s] = f->act * b->pf[((size_t)i * T + f->pos) * F + f->feature];
                }
            }
        }
        for (int i = 0; i < nR; i++) {
            float *A = c->A + (size_t)row_node(r, k0 + i0 + i) * c->n_nodes;
            for (int p = 0; p < T; p++)
                A[lp_replacement_error_node(r, l, p)] =
                    dot(g + ((size_t)i * T + p) * D, r->errors + ((size_t)l * T + p) * D, D);
        }
        /* the MLP: its skip (or nothing), and each target's own encoder column */
        if (tc->W_skip)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, D, D, 1.0f, g, D, tc->W_skip->data, D, 0.0f,
                        b->gin, D);
        else
            memset(b->gin, 0, (size_t)M * D * sizeof(float));
        for (int i = 0; i < nR; i++)
            if (top[i0 + i] == l && k0 + i0 + i < r->n_features) {
                const lp_attrib_feature *f = &r->features[k0 + i0 + i];
                float *gi = b->gin + ((size_t)i * T + f->pos) * D;
                for (int d = 0; d < D; d++)
                    gi[d] += tc->W_enc->data[(size_t)d * F + f->feature];
            }
        for (int i = 0; i < nR; i++)
            for (int p = 0; p < T; p++)
                norm_back(g + ((size_t)i * T + p) * D, b->gin + ((size_t)i * T + p) * D, bl->ln2_w->data,
                          r->ln2_scale[(size_t)l * T + p], bl->ln2_b != NULL, D);
        /* attention's OV path with the frozen pattern: gv[k] = sum_q P[q, k] gz[q] per head */
        const float *wo = c->w.wo + (size_t)l * HS * D, *wv = c->w.wv + (size_t)l * D * KS;
        const float *P = r->pattern + (size_t)l * H * T * T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, HS, D, 1.0f, g, D, wo, D, 0.0f, b->gz, HS);
        memset(b->gv, 0, (size_t)M * KS * sizeof(float));
        for (int i = 0; i < nR; i++)
            for (int h = 0; h < H; h++)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, S, T, 1.0f, P + (size_t)h * T * T, T,
                            b->gz + (size_t)i * T * HS + h * S, HS, 1.0f, b->gv + (size_t)i * T * KS + (h / (H / K)) * S,
                            KS);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, D, KS, 1.0f, b->gv, KS, wv, KS, 0.0f, b->gin, D);
        for (int i = 0; i < nR; i++)
            for (int p = 0; p < T; p++)
                norm_back(g + ((size_t)i * T + p) * D, b->gin + ((size_t)i * T + p) * D, bl->ln1_w->data,
                          r->ln1_scale[(size_t)l * T + p], bl->ln1_b != NULL, D);
    }
    /* g: the gradient at hook_embed */
    for (int i = 0; i < R; i++) {
        float *A = c->A + (size_t)row_node(r, k0 + i) * c->n_nodes;
        for (int p = 0; p < T; p++)
            A[lp_replacement_embed_node(r, p)] =
                dot(b->g + ((size_t)i * T + p) * D, m->wte->data + (size_t)r->tokens[p] * D, D);
    }
}

static void batches_range(void *p, size_t lo, size_t hi)
{
    edge_ctx *c = p;
    const lp_replacement *r = c->r;
    size_t RT = (size_t)c->batch * r->T, D = (size_t)r->d_model, HS = (size_t)r->m->cfg.n_heads * r->m->cfg.d_head;
    int Fmax = 1;
    for (int l = 0; l < r->n_layers; l++)
        Fmax = r->tcs->layers[l]->cfg.d_sae > Fmax ? r->tcs->layers[l]->cfg.d_sae : Fmax;
    batch_buf b = {malloc(RT * D * sizeof(float)), malloc(RT * D * sizeof(float)), malloc(RT * HS * sizeof(float)),
                   malloc(RT * HS * sizeof(float)), malloc(RT * (size_t)Fmax * sizeof(float)),
                   malloc((size_t)c->batch * sizeof(int))};
    if (!b.g || !b.gin || !b.gz || !b.gv || !b.pf || !b.top) {
        c->failed = 1; /* no lp_set_error here: errors are per thread */
    } else {
        for (size_t k = lo; k < hi; k++) {
            int k0 = (int)k * c->batch, R = c->n_rows - k0 < c->batch ? c->n_rows - k0 : c->batch;
            one_batch(c, &b, k0, R);
        }
    }
    free(b.g);
    free(b.gin);
    free(b.gz);
    free(b.gv);
    free(b.pf);
    free(b.top);
}

int lp_attrib_edges(const lp_replacement *r, int batch, float **out)
{
    *out = NULL;
    if (batch < 1)
        return lp_set_error("attribution: batch must be at least 1 (got %d)", batch);
    int N = lp_replacement_n_nodes(r), L = r->n_layers;
    edge_ctx c = {.r = r, .n_nodes = N, .batch = batch, .n_rows = r->n_features + r->n_logits};
    c.A = lp_calloc((size_t)N * N, sizeof(float), "the adjacency matrix");
    c.layer_start = lp_calloc((size_t)L + 1, sizeof(int), "feature ranges");
    int rc = -1;
    if (!c.A || !c.layer_start || frozen_weights(r->m, &c.w) < 0)
        goto done;
    for (int s = 0, l = 0; l <= L; l++) {
        while (s < r->n_features && r->features[s].layer < l)
            s++;
        c.layer_start[l] = s;
    }
    c.layer_start[L] = r->n_features;
    lp_par_for(((size_t)c.n_rows + batch - 1) / batch, 1, batches_range, &c);
    if (c.failed) {
        lp_set_error_code(LP_ERR_NOMEM, "attribution: out of memory for the backward passes");
        goto done;
    }
    *out = c.A;
    c.A = NULL;
    rc = 0;
done:
    free(c.A);
    free(c.layer_start);
    free(c.w.wv);
    free(c.w.wo);
    return rc;
}
