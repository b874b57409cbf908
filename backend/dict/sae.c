/* Dictionaries: configuration checks, construction, initialisation, copies (see sae.h). */
#include "dict/sae.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "rng.h"

static const char *const ARCH_NAMES[] = {"standard", "topk", "batchtopk", "jumprelu", "matryoshka_batchtopk"};

const char *lp_sae_arch_name(lp_sae_arch a)
{
    return (unsigned)a < sizeof ARCH_NAMES / sizeof *ARCH_NAMES ? ARCH_NAMES[a] : "unknown";
}

int lp_sae_arch_parse(const char *name)
{
    for (size_t i = 0; name && i < sizeof ARCH_NAMES / sizeof *ARCH_NAMES; i++)
        if (strcmp(name, ARCH_NAMES[i]) == 0)
            return (int)i;
    return -1;
}

static int has_k(lp_sae_arch a) { return a == LP_SAE_TOPK || a == LP_SAE_BATCHTOPK || a == LP_SAE_MATRYOSHKA; }
static int has_threshold(lp_sae_arch a) { return a == LP_SAE_JUMPRELU || a == LP_SAE_BATCHTOPK || a == LP_SAE_MATRYOSHKA; }

int lp_sae_config_check(const lp_sae_config *c)
{
    if ((unsigned)c->arch > LP_SAE_MATRYOSHKA)
        return lp_set_error("dictionary: unknown architecture %d", (int)c->arch);
    if (c->d_in < 1 || c->d_sae < 1 || c->d_out < 1)
        return lp_set_error("dictionary: d_in, d_sae and d_out must be positive (got %d, %d, %d)", c->d_in, c->d_sae,
                            c->d_out);
    if (has_k(c->arch) && (c->k < 1 || c->k > c->d_sae))
        return lp_set_error("dictionary: k must be in 1..%d (d_sae) for %s (got %d)", c->d_sae,
                            lp_sae_arch_name(c->arch), c->k);
    if (!c->transcoder && c->d_out != c->d_in)
        return lp_set_error("dictionary: an SAE reconstructs its input: d_out (%d) must equal d_in (%d)", c->d_out,
                            c->d_in);
    if (c->skip && !c->transcoder)
        return lp_set_error("dictionary: a skip connection (W_skip) is for transcoders only");
    if (c->transcoder && c->apply_b_dec_to_input)
        return lp_set_error("dictionary: a transcoder never subtracts b_dec from its input");
    return 0;
}

static lp_tensor *zeros1(int64_t a) { return lp_tensor_zeros(1, &a, LP_DEVICE_CPU); }
static lp_tensor *zeros2(int64_t a, int64_t b) { return lp_tensor_zeros(2, (int64_t[]){a, b}, LP_DEVICE_CPU); }

lp_sae *lp_sae_new(const lp_sae_config *c)
{
    if (lp_sae_config_check(c) < 0)
        return NULL;
    lp_sae *s = lp_calloc(1, sizeof *s, "a dictionary");
    if (!s)
        return NULL;
    s->cfg = *c;
    s->scale = 1.0f;
    s->W_enc = zeros2(c->d_in, c->d_sae);
    s->b_enc = zeros1(c->d_sae);
    s->W_dec = zeros2(c->d_sae, c->d_out);
    s->b_dec = zeros1(c->d_out);
    int ok = s->W_enc && s->b_enc && s->W_dec && s->b_dec;
    if (ok && has_threshold(c->arch))
        ok = (s->threshold = zeros1(c->d_sae)) != NULL;
    if (ok && c->skip)
        ok = (s->W_skip = zeros2(c->d_out, c->d_in)) != NULL;
    if (!ok) {
        lp_sae_free(s);
        return NULL;
    }
    return s;
}

void lp_sae_free(lp_sae *s)
{
    if (!s)
        return;
    lp_tensor_free(s->W_enc), lp_tensor_free(s->b_enc), lp_tensor_free(s->W_dec), lp_tensor_free(s->b_dec);
    lp_tensor_free(s->threshold), lp_tensor_free(s->W_skip), lp_tensor_free(s->log_density);
    free(s);
}

/* Fills row r (n floats) with a random direction of norm `norm`. */
static void random_row(lp_rng *g, float *row, int n, float norm)
{
    double ss = 0;
    for (int j = 0; j < n; j++) {
        row[j] = (float)lp_rng_normal(g);
        ss += (double)row[j] * row[j];
    }
    float f = ss > 0 ? (float)(norm / sqrt(ss)) : 0.0f;
    for (int j = 0; j < n; j++)
        row[j] *= f;
}

int lp_sae_init_random(lp_sae *s, uint64_t seed, float dec_norm, float threshold)
{
    const lp_sae_config *c = &s->cfg;
    if (!(dec_norm > 0) || !isfinite(dec_norm))
        return lp_set_error("dictionary: the decoder norm at initialisation must be positive (got %g)", dec_norm);
    lp_rng g;
    lp_rng_seed(&g, seed);
    float *wd = s->W_dec->data, *we = s->W_enc->data;
    for (int i = 0; i < c->d_sae; i++)
        random_row(&g, wd + (size_t)i * c->d_out, c->d_out, dec_norm);
    if (c->d_out == c->d_in) { /* W_enc = W_dec^T */
        for (int i = 0; i < c->d_sae; i++)
            for (int j = 0; j < c->d_in; j++)
                we[(size_t)j * c->d_sae + i] = wd[(size_t)i * c->d_out + j];
    } else {
        float *col = lp_malloc((size_t)c->d_in * sizeof *col, "an encoder column");
        if (!col)
            return -1;
        for (int i = 0; i < c->d_sae; i++) {
            random_row(&g, col, c->d_in, dec_norm);
            for (int j = 0; j < c->d_in; j++)
                we[(size_t)j * c->d_sae + i] = col[j];
        }
        free(col);
    }
    memset(s->b_enc->data, 0, (size_t)c->d_sae * sizeof(float));
    memset(s->b_dec->data, 0, (size_t)c->d_out * sizeof(float));
    if (s->W_skip)
        memset(s->W_skip->data, 0, (size_t)c->d_out * c->d_in * sizeof(float));
    if (s->threshold)
        for (int i = 0; i < c->d_sae; i++)
            s->threshold->data[i] = c->arch == LP_SAE_JUMPRELU ? threshold : 0.0f;
    return 0;
}

static int copy_into(lp_tensor *dst, const lp_tensor *src)
{
    if (!src)
        return 0;
    memcpy(dst->data, src->data, (size_t)lp_tensor_numel(src) * sizeof(float));
    return 0;
}

lp_sae *lp_sae_clone(const lp_sae *s)
{
    lp_sae *c = lp_sae_new(&s->cfg);
    if (!c)
        return NULL;
    copy_into(c->W_enc, s->W_enc), copy_into(c->b_enc, s->b_enc);
    copy_into(c->W_dec, s->W_dec), copy_into(c->b_dec, s->b_dec);
    if (s->threshold && c->threshold)
        copy_into(c->threshold, s->threshold);
    if (s->W_skip && c->W_skip)
        copy_into(c->W_skip, s->W_skip);
    if (s->log_density && !(c->log_density = lp_tensor_clone(s->log_density))) {
        lp_sae_free(c);
        return NULL;
    }
    c->scale = s->scale;
    return c;
}

void lp_transcoder_set_free(lp_transcoder_set *t)
{
    if (!t)
        return;
    for (int l = 0; t->layers && l < t->n_layers; l++)
        lp_sae_free(t->layers[l]);
    free(t->layers);
    free(t);
}

lp_clt *lp_clt_new(int n_layers, int d_model, int d_tc, int jumprelu)
{
    if (n_layers < 1 || d_model < 1 || d_tc < 1) {
        lp_set_error("cross-layer transcoder: n_layers, d_model and d_tc must be positive (got %d, %d, %d)", n_layers,
                     d_model, d_tc);
        return NULL;
    }
    lp_clt *c = lp_calloc(1, sizeof *c, "a cross-layer transcoder");
    if (!c)
        return NULL;
    c->n_layers = n_layers, c->d_model = d_model, c->d_tc = d_tc;
    int ok = (c->W_enc = lp_calloc((size_t)n_layers, sizeof *c->W_enc, "CLT encoders")) &&
             (c->b_enc = lp_calloc((size_t)n_layers, sizeof *c->b_enc, "CLT encoder biases")) &&
             (c->b_dec = lp_calloc((size_t)n_layers, sizeof *c->b_dec, "CLT decoder biases")) &&
             (c->W_dec = lp_calloc((size_t)n_layers, sizeof *c->W_dec, "CLT decoders")) &&
             (!jumprelu || (c->threshold = lp_calloc((size_t)n_layers, sizeof *c->threshold, "CLT thresholds")));
    for (int l = 0; ok && l < n_layers; l++) {
        ok = (c->W_enc[l] = zeros2(d_model, d_tc)) && (c->b_enc[l] = zeros1(d_tc)) && (c->b_dec[l] = zeros1(d_model)) &&
             (c->W_dec[l] = lp_tensor_zeros(3, (int64_t[]){d_tc, n_layers - l, d_model}, LP_DEVICE_CPU)) &&
             (!jumprelu || (c->threshold[l] = zeros1(d_tc)));
    }
    if (!ok) {
        lp_clt_free(c);
        return NULL;
    }
    return c;
}

void lp_clt_free(lp_clt *c)
{
    if (!c)
        return;
    for (int l = 0; l < c->n_layers; l++) {
        if (c->W_enc)
            lp_tensor_free(c->W_enc[l]);
        if (c->b_enc)
            lp_tensor_free(c->b_enc[l]);
        if (c->b_dec)
            lp_tensor_free(c->b_dec[l]);
        if (c->W_dec)
            lp_tensor_free(c->W_dec[l]);
        if (c->threshold)
            lp_tensor_free(c->threshold[l]);
    }
    free(c->W_enc), free(c->b_enc), free(c->b_dec), free(c->W_dec), free(c->threshold);
    free(c);
}
