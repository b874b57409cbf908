/* Exact attribution edges (replace.h): for each target row, the gradient of its
 * pre-activation (or logit direction) backpropagated through the frozen linear model
 * (norm scales and attention patterns fixed, attention's OV path only, the MLPs replaced
 * by the transcoders' skip), read against every source at every layer:
 *   feature s at layer l:  a_s <g_l[pos_s], W_dec[s]>    g_l the gradient at mlp.hook_out l
 *   error (l, p):          <g_l[p], e_{l,p}>
 *   embedding p:           <g_embed[p], W_E[tok_p]>
 * Rows are independent; they run in parallel, `batch` rows per task. */
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

typedef struct row_buf {
    float *g, *gin, *gz, *gv;
} row_buf;

/* one target row: node index `node` (a feature or a logit) */
static void one_row(edge_ctx *c, row_buf *b, int node)
{
    const lp_replacement *r = c->r;
    const lp_model *m = r->m;
    const lp_model_config *mc = &m->cfg;
    int D = r->d_model, L = r->n_layers, H = mc->n_heads, K = mc->n_kv_heads > 0 ? mc->n_kv_heads : H,
        S = mc->d_head, Tall = r->T, centered = m->lnf_b != NULL;
    float *A = c->A + (size_t)node * c->n_nodes;
    int top, pt;
    if (node < r->n_features) {
        top = r->features[node].layer;
        pt = r->features[node].pos;
    } else {
        top = L - 1;
        pt = Tall - 1;
    }
    int T = pt + 1; /* causal: positions after the target get no gradient */
    memset(b->g, 0, (size_t)T * D * sizeof(float));
    if (node >= r->n_features) {
        int i = node - lp_replacement_logit_node(r, 0);
        norm_back(b->g + (size_t)pt * D, r->logit_dirs + (size_t)i * D, m->lnf_w->data, r->lnf_scale[pt], centered, D);
    }
    for (int l = top; l >= 0; l--) {
        const lp_block *bl = &m->blocks[l];
        const lp_sae *tc = r->tcs->layers[l];
        /* g: the gradient at resid_post l, = at mlp.hook_out l */
        if (l < top || node >= r->n_features) {
            for (int s = c->layer_start[l]; s < c->layer_start[l + 1]; s++) {
                const lp_attrib_feature *f = &r->features[s];
                if (f->pos < T)
                    A[s] = f->act * dot(b->g + (size_t)f->pos * D, tc->W_dec->data + (size_t)f->feature * D, D);
            }
            for (int p = 0; p < T; p++)
                A[lp_replacement_error_node(r, l, p)] =
                    dot(b->g + (size_t)p * D, r->errors + ((size_t)l * Tall + p) * D, D);
        }
        /* the MLP: skip (or nothing), and the target's own encoder column */
        memset(b->gin, 0, (size_t)T * D * sizeof(float));
        if (tc->W_skip && (l < top || node >= r->n_features))
            for (int p = 0; p < T; p++)
                for (int o = 0; o < D; o++) {
                    float go = b->g[(size_t)p * D + o];
                    const float *ws = tc->W_skip->data + (size_t)o * D;
                    for (int i = 0; i < D; i++)
                        b->gin[(size_t)p * D + i] += go * ws[i];
                }
        if (l == top && node < r->n_features) {
            int F = tc->cfg.d_sae, f = r->features[node].feature;
            for (int i = 0; i < D; i++)
                b->gin[(size_t)pt * D + i] += tc->W_enc->data[(size_t)i * F + f];
        }
        for (int p = 0; p < T; p++)
            norm_back(b->g + (size_t)p * D, b->gin + (size_t)p * D, bl->ln2_w->data, r->ln2_scale[(size_t)l * Tall + p],
                      bl->ln2_b != NULL, D);
        /* attention, OV path with the frozen pattern */
        const float *wo = c->w.wo + (size_t)l * H * S * D, *wv = c->w.wv + (size_t)l * D * K * S;
        const float *P = r->pattern + (size_t)l * H * Tall * Tall;
        for (int q = 0; q < T; q++)
            for (int j = 0; j < H * S; j++)
                b->gz[(size_t)q * H * S + j] = dot(b->g + (size_t)q * D, wo + (size_t)j * D, D);
        memset(b->gv, 0, (size_t)T * K * S * sizeof(float));
        for (int h = 0; h < H; h++) {
            int kv = h / (H / K);
            for (int q = 0; q < T; q++)
                for (int k = 0; k <= q; k++) {
                    float pw = P[((size_t)h * Tall + q) * Tall + k];
                    if (pw == 0.0f)
                        continue;
                    const float *gz = b->gz + (size_t)q * H * S + h * S;
                    float *gv = b->gv + (size_t)k * K * S + kv * S;
                    for (int s = 0; s < S; s++)
                        gv[s] += pw * gz[s];
                }
        }
        for (int p = 0; p < T; p++) {
            for (int i = 0; i < D; i++)
                b->gin[(size_t)p * D + i] = dot(b->gv + (size_t)p * K * S, wv + (size_t)i * K * S, K * S);
            norm_back(b->g + (size_t)p * D, b->gin + (size_t)p * D, bl->ln1_w->data, r->ln1_scale[(size_t)l * Tall + p],
                      bl->ln1_b != NULL, D);
        }
    }
    /* g: the gradient at hook_embed */
    for (int p = 0; p < T; p++)
        A[lp_replacement_embed_node(r, p)] = dot(b->g + (size_t)p * D, m->wte->data + (size_t)r->tokens[p] * D, D);
}

static void rows_range(void *p, size_t lo, size_t hi)
{
    edge_ctx *c = p;
    const lp_replacement *r = c->r;
    int D = r->d_model, T = r->T, H = r->m->cfg.n_heads;
    row_buf b;
    b.g = malloc((size_t)T * D * sizeof(float));
    b.gin = malloc((size_t)T * D * sizeof(float));
    b.gz = malloc((size_t)T * H * r->m->cfg.d_head * sizeof(float));
    b.gv = malloc((size_t)T * H * r->m->cfg.d_head * sizeof(float));
    if (!b.g || !b.gin || !b.gz || !b.gv) {
        c->failed = 1; /* no lp_set_error here: errors are per thread */
    } else {
        for (size_t k = lo * c->batch; k < hi * c->batch && k < (size_t)c->n_rows; k++) {
            int node = (int)k < r->n_features ? (int)k : lp_replacement_logit_node(r, (int)k - r->n_features);
            one_row(c, &b, node);
        }
    }
    free(b.g);
    free(b.gin);
    free(b.gz);
    free(b.gv);
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
    lp_par_for(((size_t)c.n_rows + batch - 1) / batch, 1, rows_range, &c);
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
