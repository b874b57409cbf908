/* A model's config.json, reduced to what the forward pass needs: the architecture (GPT-2 or
 * the Llama family), sizes, normalisation, activation, rotary embeddings and their
 * scaling. Both the transformers 4.x form (rope_theta, rope_scaling) and the 5.x form
 * (rope_parameters) are read.
 *
 * Errors (-1, lp_last_error()) name the file and the key: a missing or ill-typed size, an
 * unsupported architecture (the message lists the supported ones), an unknown rope type.
 */
#ifndef LP_MODEL_CONFIG_H
#define LP_MODEL_CONFIG_H

#include <stddef.h>

typedef enum lp_arch { LP_ARCH_GPT2 = 0, LP_ARCH_LLAMA = 1 } lp_arch;

typedef enum lp_rope_kind {
    LP_ROPE_DEFAULT = 0,
    LP_ROPE_LINEAR = 1,  /* positions / factor */
    LP_ROPE_DYNAMIC = 2, /* NTK-aware base growth past the original context */
    LP_ROPE_LLAMA3 = 3   /* per-frequency smoothing (Llama 3.1+) */
} lp_rope_kind;

/* The architectures loupe reads, for messages. */
#define LP_SUPPORTED_ARCHS "GPT2LMHeadModel / GPT2Model (model_type gpt2), LlamaForCausalLM (model_type llama)"

typedef struct lp_model_config {
    lp_arch arch;
    int n_layers, d_model, n_heads, n_kv_heads, d_head, d_mlp, d_vocab, n_ctx;
    float eps;
    int act;        /* LP_GELU_TANH or LP_GELU_ERF (GPT-2); Llama uses SiLU */
    int tied;       /* unembedding is the embedding matrix */
    int attn_bias;  /* Llama: q/k/v/o projections have biases */
    int mlp_bias;   /* Llama: gate/up/down have biases */
    int attn_only;  /* GPT-2 family: blocks have no ln2 and no MLP (config.json key
                     * "loupe_attn_only"; such checkpoints carry zero MLP weights with
                     * n_inner 1 so that transformers computes the same function) */
    /* rotary embeddings (Llama) */
    double rope_theta;
    lp_rope_kind rope;
    double rope_factor, rope_low_freq, rope_high_freq;
    int rope_orig_ctx; /* original_max_position_embeddings */
    int bos, eos;      /* -1 when absent */
} lp_model_config;

/* Parses config.json text; label names the source in messages. */
int lp_model_config_parse(const char *text, size_t len, const char *label, lp_model_config *out);
/* Reads folder/config.json. */
int lp_model_config_load(const char *folder, lp_model_config *out);

/* The rotary inverse frequencies (d_head/2 of them) for a sequence of T positions (only the
 * dynamic form depends on T), as transformers computes them. */
void lp_rope_inv_freq(const lp_model_config *c, int T, float *out);

const char *lp_arch_name(lp_arch a); /* "gpt2", "llama" */

#endif
