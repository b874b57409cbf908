/* config.json -> lp_model_config. See config.h. */
#include "model/config.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"

const char *lp_arch_name(lp_arch a) { return a == LP_ARCH_GPT2 ? "gpt2" : "llama"; }

/* A positive integer at key (or the first of two spellings); def < 0 means required. */
static int get_int(json_t *root, const char *label, const char *key, const char *alt, int def, int *out)
{
    json_t *v = json_object_get(root, key);
    if ((!v || json_is_null(v)) && alt)
        v = json_object_get(root, alt);
    if (!v || json_is_null(v)) {
        if (def < 0)
            return lp_set_error_code(LP_ERR_FORMAT, "%s: \"%s\" is missing", label, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 30))
        return lp_set_error_code(LP_ERR_FORMAT, "%s: \"%s\" must be a positive integer", label, key);
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_num(json_t *obj, const char *label, const char *key, double def, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return lp_set_error_code(LP_ERR_FORMAT, "%s: \"%s\" must be a number", label, key);
    *out = json_number_value(v);
    return 0;
}

static int get_bool(json_t *obj, const char *key, int def)
{
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static int token_id(json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);
    if (json_is_array(v))
        v = json_array_get(v, 0);
    return json_is_integer(v) ? (int)json_integer_value(v) : -1;
}

static int parse_arch(json_t *root, const char *label, lp_arch *out)
{
    const char *mt = json_string_value(json_object_get(root, "model_type"));
    json_t *archs = json_object_get(root, "architectures");
    const char *a0 = json_string_value(json_array_get(archs, 0));
    if ((mt && !strcmp(mt, "gpt2")) || (a0 && (!strcmp(a0, "GPT2LMHeadModel") || !strcmp(a0, "GPT2Model"))))
        *out = LP_ARCH_GPT2;
    else if ((mt && !strcmp(mt, "llama")) || (a0 && !strcmp(a0, "LlamaForCausalLM")))
        *out = LP_ARCH_LLAMA;
    else
        return lp_set_error_code(
            LP_ERR_FORMAT, "%s: unsupported architecture %s%s%s (model_type %s); loupe supports %s", label,
            a0 ? "'" : "", a0 ? a0 : "(none given)", a0 ? "'" : "", mt ? mt : "(none)", LP_SUPPORTED_ARCHS);
    return 0;
}

static int parse_rope(json_t *root, const char *label, lp_model_config *c)
{
    /* transformers 5 writes rope_parameters (theta inside); 4.x rope_theta + rope_scaling. */
    json_t *rp = json_object_get(root, "rope_parameters");
    json_t *rs = json_is_object(rp) ? rp : json_object_get(root, "rope_scaling");
    if (get_num(root, label, "rope_theta", 10000.0, &c->rope_theta) < 0)
        return -1;
    if (json_is_object(rp) && get_num(rp, label, "rope_theta", c->rope_theta, &c->rope_theta) < 0)
        return -1;
    if (c->rope_theta <= 0)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: rope_theta must be positive", label);
    c->rope = LP_ROPE_DEFAULT;
    c->rope_factor = 1.0;
    c->rope_orig_ctx = c->n_ctx;
    if (!json_is_object(rs))
        return 0;
    const char *t = json_string_value(json_object_get(rs, "rope_type"));
    if (!t)
        t = json_string_value(json_object_get(rs, "type"));
    if (!t || !strcmp(t, "default"))
        return 0;
    if (!strcmp(t, "linear"))
        c->rope = LP_ROPE_LINEAR;
    else if (!strcmp(t, "dynamic"))
        c->rope = LP_ROPE_DYNAMIC;
    else if (!strcmp(t, "llama3"))
        c->rope = LP_ROPE_LLAMA3;
    else
        return lp_set_error_code(
            LP_ERR_FORMAT, "%s: rope scaling type '%s' is not supported (default, linear, dynamic, llama3)", label, t);
    if (get_num(rs, label, "factor", 1.0, &c->rope_factor) < 0 || c->rope_factor <= 0)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: rope scaling needs a positive \"factor\"", label);
    if (c->rope == LP_ROPE_LLAMA3) {
        if (get_num(rs, label, "low_freq_factor", 1.0, &c->rope_low_freq) < 0 ||
            get_num(rs, label, "high_freq_factor", 4.0, &c->rope_high_freq) < 0)
            return -1;
        if (c->rope_high_freq <= c->rope_low_freq || c->rope_low_freq <= 0)
            return lp_set_error_code(LP_ERR_FORMAT, "%s: llama3 rope needs 0 < low_freq_factor < high_freq_factor",
                                     label);
        if (get_int(rs, label, "original_max_position_embeddings", NULL, 8192, &c->rope_orig_ctx) < 0)
            return -1;
    }
    return 0;
}

int lp_model_config_parse(const char *text, size_t len, const char *label, lp_model_config *c)
{
    memset(c, 0, sizeof *c);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (!root)
        return lp_set_error_code(LP_ERR_FORMAT, "%s: not valid JSON: %s (line %d)", label, jerr.text, jerr.line);
    int rc = -1;
    if (!json_is_object(root)) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: not a JSON object", label);
        goto out;
    }
    if (parse_arch(root, label, &c->arch) < 0)
        goto out;
    json_t *ao = json_object_get(root, "loupe_attn_only");
    if (ao && !json_is_null(ao) && !json_is_boolean(ao)) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: \"loupe_attn_only\" must be true or false", label);
        goto out;
    }
    int attn_only = json_is_true(ao);
    c->attn_only = attn_only;
    c->bos = token_id(root, "bos_token_id");
    c->eos = token_id(root, "eos_token_id");
    double eps;
    if (c->arch == LP_ARCH_GPT2) {
        if (get_int(root, label, "n_layer", NULL, -1, &c->n_layers) < 0 ||
            get_int(root, label, "n_embd", NULL, -1, &c->d_model) < 0 ||
            get_int(root, label, "n_head", NULL, -1, &c->n_heads) < 0 ||
            get_int(root, label, "vocab_size", NULL, -1, &c->d_vocab) < 0 ||
            get_int(root, label, "n_positions", "n_ctx", 1024, &c->n_ctx) < 0 ||
            get_int(root, label, "n_inner", NULL, 0, &c->d_mlp) < 0 ||
            get_num(root, label, "layer_norm_epsilon", 1e-5, &eps) < 0)
            goto out;
        if (c->d_mlp == 0) /* 4 x d_model, saturated: absurd sizes are refused below */
            c->d_mlp = c->d_model > (1 << 28) ? (1 << 30) : 4 * c->d_model;
        c->n_kv_heads = c->n_heads;
        c->tied = 1; /* GPT-2 always ties the unembedding */
        const char *act = json_string_value(json_object_get(root, "activation_function"));
        if (!act || !strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh") || !strcmp(act, "gelu_fast"))
            c->act = LP_GELU_TANH;
        else if (!strcmp(act, "gelu"))
            c->act = LP_GELU_ERF;
        else {
            lp_set_error_code(LP_ERR_FORMAT, "%s: activation_function '%s' is not supported (gelu_new, gelu)", label,
                              act);
            goto out;
        }
        if (c->d_model % c->n_heads) {
            lp_set_error_code(LP_ERR_FORMAT, "%s: n_embd %d is not a multiple of n_head %d", label, c->d_model,
                              c->n_heads);
            goto out;
        }
        c->d_head = c->d_model / c->n_heads;
    } else {
        if (attn_only) {
            lp_set_error_code(LP_ERR_FORMAT,
                              "%s: \"loupe_attn_only\" is for the GPT-2 family only (this is a llama config)", label);
            goto out;
        }
        if (get_int(root, label, "num_hidden_layers", NULL, -1, &c->n_layers) < 0 ||
            get_int(root, label, "hidden_size", NULL, -1, &c->d_model) < 0 ||
            get_int(root, label, "num_attention_heads", NULL, -1, &c->n_heads) < 0 ||
            get_int(root, label, "num_key_value_heads", NULL, 0, &c->n_kv_heads) < 0 ||
            get_int(root, label, "intermediate_size", NULL, -1, &c->d_mlp) < 0 ||
            get_int(root, label, "vocab_size", NULL, -1, &c->d_vocab) < 0 ||
            get_int(root, label, "max_position_embeddings", NULL, 2048, &c->n_ctx) < 0 ||
            get_int(root, label, "head_dim", NULL, 0, &c->d_head) < 0 ||
            get_num(root, label, "rms_norm_eps", 1e-6, &eps) < 0)
            goto out;
        if (c->n_kv_heads == 0)
            c->n_kv_heads = c->n_heads;
        if (c->d_head == 0) {
            if (c->d_model % c->n_heads) {
                lp_set_error_code(LP_ERR_FORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d", label,
                             c->d_model, c->n_heads);
                goto out;
            }
            c->d_head = c->d_model / c->n_heads;
        }
        if (c->n_heads % c->n_kv_heads) {
            lp_set_error_code(LP_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                              label, c->n_heads, c->n_kv_heads);
            goto out;
        }
        if (c->d_head % 2) {
            lp_set_error_code(LP_ERR_FORMAT, "%s: head_dim %d must be even for rotary embeddings", label, c->d_head);
            goto out;
        }
        const char *act = json_string_value(json_object_get(root, "hidden_act"));
        if (act && strcmp(act, "silu")) {
            lp_set_error_code(LP_ERR_FORMAT, "%s: hidden_act '%s' is not supported (silu)", label, act);
            goto out;
        }
        c->tied = get_bool(root, "tie_word_embeddings", 0);
        c->attn_bias = get_bool(root, "attention_bias", 0);
        c->mlp_bias = get_bool(root, "mlp_bias", 0);
        if (parse_rope(root, label, c) < 0)
            goto out;
    }
    /* sizes beyond any released model would overflow products of ints downstream */
    if (c->n_layers > 4096 || c->d_model > (1 << 20) || c->d_mlp > (1 << 22) || c->d_vocab > (1 << 24) ||
        c->n_ctx > (1 << 24) || (int64_t)c->n_heads * c->d_head > (1 << 22) || c->d_head > (1 << 16)) {
        lp_set_error_code(LP_ERR_FORMAT,
                          "%s: sizes beyond what loupe supports (%d layers, d_model %d, d_mlp %d, vocab %d, %d heads "
                          "of %d, context %d)",
                          label, c->n_layers, c->d_model, c->d_mlp, c->d_vocab, c->n_heads, c->d_head, c->n_ctx);
        goto out;
    }
    c->eps = (float)eps;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int lp_model_config_load(const char *folder, lp_model_config *c)
{
    size_t n = strlen(folder) + 16;
    char *path = lp_malloc(n, "config.json");
    if (!path)
        return lp_set_error_code(LP_ERR_NOMEM, "out of memory");
    snprintf(path, n, "%s/config.json", folder);
    FILE *f = fopen(path, "rb");
    int rc = -1;
    char *buf = NULL;
    if (!f) {
        lp_set_error_code(LP_ERR_IO, "%s: cannot open (a model folder needs config.json)", path);
        goto out;
    }
    if (fseek(f, 0, SEEK_END) < 0) {
        lp_set_error_code(LP_ERR_IO, "%s: cannot read", path);
        goto out;
    }
    long sz = ftell(f);
    if (sz < 0 || sz > (16 << 20)) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: unreadable or larger than 16 MiB", path);
        goto out;
    }
    rewind(f);
    buf = lp_malloc((size_t)sz + 1, "config.json");
    if (!buf)
        goto out;
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        lp_set_error_code(LP_ERR_IO, "%s: cannot read", path);
        goto out;
    }
    rc = lp_model_config_parse(buf, (size_t)sz, path, c);
out:
    if (f)
        fclose(f);
    free(buf);
    free(path);
    return rc;
}

void lp_rope_inv_freq(const lp_model_config *c, int T, float *out)
{
    int dim = c->d_head, half = dim / 2;
    double base = c->rope_theta;
    if (c->rope == LP_ROPE_DYNAMIC && T > c->rope_orig_ctx) {
        double f = c->rope_factor;
        base *= pow(f * T / c->rope_orig_ctx - (f - 1), (double)dim / (dim - 2));
    }
    for (int i = 0; i < half; i++) {
        /* as transformers: float32 exponent, float32 power, float32 reciprocal */
        float e = (float)(2 * i) / (float)dim;
        float inv = 1.0f / (float)pow(base, (double)e);
        if (c->rope == LP_ROPE_LINEAR) {
            inv = (float)(inv / c->rope_factor);
        } else if (c->rope == LP_ROPE_LLAMA3) {
            double old = c->rope_orig_ctx, f = c->rope_factor;
            double low_wl = old / c->rope_low_freq, high_wl = old / c->rope_high_freq;
            double wl = 2 * M_PI / inv;
            if (wl > low_wl) {
                inv = (float)(inv / f);
            } else if (wl >= high_wl) { /* medium band: smooth between scaled and unscaled */
                double s = (old / wl - c->rope_low_freq) / (c->rope_high_freq - c->rope_low_freq);
                inv = (float)((1 - s) * inv / f + s * inv);
            }
        }
        out[i] = inv;
    }
}
