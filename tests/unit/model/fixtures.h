/* Tiny random GPT-2 and Llama model folders for the model tests, written with loupe's own
 * safetensors writer: config.json + model.safetensors in a fresh /tmp folder. */
#ifndef LP_MODEL_FIXTURES_H
#define LP_MODEL_FIXTURES_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/safetensors.h"
#include "rng.h"

enum { FX_D = 16, FX_H = 4, FX_KV = 2, FX_F = 24, FX_V = 37, FX_CTX = 12, FX_L = 2 };

typedef struct {
    int llama;
    int tied;           /* Llama only (GPT-2 is always tied) */
    int no_prefix;      /* GPT-2 keys without "transformer." */
    const char *drop;   /* a tensor name to leave out */
    const char *warp;   /* a tensor name to write with a wrong shape */
    const char *config; /* config.json text to use instead */
} fx_opts;

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[4];
    float scale, offset;
} fx_spec;

static inline int fx_add(fx_spec *s, int n, float scale, float offset, int ndim, int64_t a, int64_t b,
                         const char *fmt, int L)
{
    snprintf(s[n].name, sizeof s[n].name, fmt, L);
    s[n].ndim = ndim, s[n].shape[0] = a, s[n].shape[1] = b, s[n].scale = scale, s[n].offset = offset;
    return n + 1;
}

/* Makes the folder (path written into dir, cap >= 64). */
static inline void fx_make(char *dir, const fx_opts *o)
{
    snprintf(dir, 64, "/tmp/lp_model_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    if (o->config)
        fputs(o->config, f);
    else if (o->llama)
        fprintf(f, "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":%d,"
                   "\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"intermediate_size\":%d,"
                   "\"vocab_size\":%d,\"num_hidden_layers\":%d,\"max_position_embeddings\":%d,"
                   "\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,\"tie_word_embeddings\":%s}",
                FX_D, FX_H, FX_KV, FX_F, FX_V, FX_L, FX_CTX, o->tied ? "true" : "false");
    else
        fprintf(f, "{\"architectures\":[\"GPT2LMHeadModel\"],\"model_type\":\"gpt2\",\"n_embd\":%d,\"n_head\":%d,"
                   "\"vocab_size\":%d,\"n_layer\":%d,\"n_positions\":%d,\"n_inner\":%d,\"activation_function\":\"gelu_new\"}",
                FX_D, FX_H, FX_V, FX_L, FX_CTX, FX_F);
    fclose(f);
    fx_spec s[64];
    int n = 0, D = FX_D, S = FX_D / FX_H;
    if (o->llama) {
        n = fx_add(s, n, 0.5f, 0, 2, FX_V, D, "model.embed_tokens.weight", 0);
        n = fx_add(s, n, 0.2f, 1, 1, D, 0, "model.norm.weight", 0);
        if (!o->tied)
            n = fx_add(s, n, 0.3f, 0, 2, FX_V, D, "lm_head.weight", 0);
        for (int L = 0; L < FX_L; L++) {
            n = fx_add(s, n, 0.2f, 1, 1, D, 0, "model.layers.%d.input_layernorm.weight", L);
            n = fx_add(s, n, 0.2f, 1, 1, D, 0, "model.layers.%d.post_attention_layernorm.weight", L);
            n = fx_add(s, n, 0.3f, 0, 2, FX_H * S, D, "model.layers.%d.self_attn.q_proj.weight", L);
            n = fx_add(s, n, 0.3f, 0, 2, FX_KV * S, D, "model.layers.%d.self_attn.k_proj.weight", L);
            n = fx_add(s, n, 0.3f, 0, 2, FX_KV * S, D, "model.layers.%d.self_attn.v_proj.weight", L);
            n = fx_add(s, n, 0.3f, 0, 2, D, FX_H * S, "model.layers.%d.self_attn.o_proj.weight", L);
            n = fx_add(s, n, 0.3f, 0, 2, FX_F, D, "model.layers.%d.mlp.gate_proj.weight", L);
            n = fx_add(s, n, 0.3f, 0, 2, FX_F, D, "model.layers.%d.mlp.up_proj.weight", L);
            n = fx_add(s, n, 0.3f, 0, 2, D, FX_F, "model.layers.%d.mlp.down_proj.weight", L);
        }
    } else {
        const char *p = o->no_prefix ? "" : "transformer.";
        char fmt[96];
#define G(scale, off, nd, a, b, suffix, L)                                 \
        snprintf(fmt, sizeof fmt, "%s%s", p, suffix);                      \
        n = fx_add(s, n, scale, off, nd, a, b, fmt, L);
        G(0.5f, 0, 2, FX_V, D, "wte.weight", 0)
        G(0.2f, 0, 2, FX_CTX, D, "wpe.weight", 0)
        G(0.2f, 1, 1, D, 0, "ln_f.weight", 0)
        G(0.2f, 0, 1, D, 0, "ln_f.bias", 0)
        for (int L = 0; L < FX_L; L++) {
            G(0.2f, 1, 1, D, 0, "h.%d.ln_1.weight", L)
            G(0.2f, 0, 1, D, 0, "h.%d.ln_1.bias", L)
            G(0.2f, 1, 1, D, 0, "h.%d.ln_2.weight", L)
            G(0.2f, 0, 1, D, 0, "h.%d.ln_2.bias", L)
            G(0.3f, 0, 2, D, 3 * D, "h.%d.attn.c_attn.weight", L)
            G(0.1f, 0, 1, 3 * D, 0, "h.%d.attn.c_attn.bias", L)
            G(0.3f, 0, 2, D, D, "h.%d.attn.c_proj.weight", L)
            G(0.1f, 0, 1, D, 0, "h.%d.attn.c_proj.bias", L)
            G(0.3f, 0, 2, D, FX_F, "h.%d.mlp.c_fc.weight", L)
            G(0.1f, 0, 1, FX_F, 0, "h.%d.mlp.c_fc.bias", L)
            G(0.3f, 0, 2, FX_F, D, "h.%d.mlp.c_proj.weight", L)
            G(0.1f, 0, 1, D, 0, "h.%d.mlp.c_proj.bias", L)
            n = fx_add(s, n, 0, 1, 2, FX_CTX, FX_CTX, "h.%d.attn.bias", L); /* the mask buffer */
        }
#undef G
    }
    lp_rng gs, *g = &gs;
    lp_rng_seed(g, 1234);
    const char *names[64];
    lp_tensor *ts[64];
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (o->drop && !strcmp(o->drop, s[i].name))
            continue;
        if (o->warp && !strcmp(o->warp, s[i].name))
            s[i].shape[0] += 1;
        ts[m] = lp_tensor_empty(s[i].ndim, s[i].shape, LP_DEVICE_CPU);
        for (int64_t k = 0; k < lp_tensor_numel(ts[m]); k++)
            ts[m]->data[k] = s[i].offset + s[i].scale * (float)lp_rng_normal(g);
        names[m++] = s[i].name;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(lp_safetensors_write(path, names, (const lp_tensor *const *)ts, (size_t)m, LP_DTYPE_F32, NULL,
                                      NULL, 0), 0, "%s", lp_last_error());
    for (int i = 0; i < m; i++)
        lp_tensor_free(ts[i]);
}

static inline void fx_remove(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

#endif
