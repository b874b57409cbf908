/* Transformer language models from Hugging Face folders (GPT-2, Llama family), run with
 * TransformerLens hook points that can be cached, patched, ablated, steered or handed to a
 * callback.
 *
 *   lp_model *m = lp_model_load("models/gpt2");
 *   int32_t toks[] = {464, 3139, 286};
 *   lp_run r = {0};
 *   lp_run_opts o = {.cache_all = 1};
 *   if (!m || lp_model_run(m, toks, 1, 3, &o, &r) < 0) report(lp_last_error());
 *   lp_tensor *resid = lp_run_get(&r, "blocks.0.hook_resid_post");  // borrowed, (1,3,768)
 *   lp_run_clear(&r);
 *
 * Hook points, with their shapes (B batch, T positions, D d_model, H heads, K kv heads,
 * S d_head, F d_mlp, V vocab). Every one is one tensor per run; a cache keeps a reference
 * (no copy) to those the filter asks for, and nothing else is kept.
 *   hook_embed (B,T,D)                   hook_pos_embed (B,T,D)          GPT-2 only
 *   blocks.L.hook_resid_pre (B,T,D)      blocks.L.ln1.hook_scale (B,T,1)
 *   blocks.L.ln1.hook_normalized (B,T,D) (before the norm's weight and bias)
 *   blocks.L.attn.hook_q (B,T,H,S)       blocks.L.attn.hook_k / hook_v (B,T,K,S)
 *   blocks.L.attn.hook_rot_q (B,T,H,S)   blocks.L.attn.hook_rot_k (B,T,K,S)   Llama only
 *   blocks.L.attn.hook_attn_scores (B,H,T,T) (scaled, masked entries -inf)
 *   blocks.L.attn.hook_pattern (B,H,T,T) blocks.L.attn.hook_z (B,T,H,S)
 *   blocks.L.hook_attn_out (B,T,D)       blocks.L.hook_resid_mid (B,T,D)
 *   blocks.L.ln2.hook_scale (B,T,1)      blocks.L.ln2.hook_normalized (B,T,D)
 *   blocks.L.mlp.hook_pre (B,T,F)        blocks.L.mlp.hook_pre_linear (B,T,F)  Llama only (up)
 *   blocks.L.mlp.hook_post (B,T,F)       blocks.L.hook_mlp_out (B,T,D)
 *   blocks.L.hook_resid_post (B,T,D)     ln_final.hook_scale (B,T,1)
 *   ln_final.hook_normalized (B,T,D)
 * Heads are dim 2 of (B,T,H,S) and dim 1 of (B,H,T,T); positions are dim 1, or dim 2 (the
 * query) of (B,H,T,T).
 *
 * Ownership: lp_model_load returns a model the caller frees with lp_model_free; it owns
 * its weights (one f32 copy; the files are closed after loading). lp_model_run fills an
 * lp_run the caller clears. Hook values are borrowed for the duration of the run.
 * The model is read-only during runs: several runs may share it on different threads.
 */
#ifndef LP_MODEL_H
#define LP_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/config.h"
#include "tensor.h"

typedef struct lp_linear {
    lp_tensor *w; /* (out,in) when trans, else (in,out) (GPT-2's Conv1D) */
    lp_tensor *b; /* (out) or NULL */
    int trans;
    int in, out;
} lp_linear;

typedef struct lp_block {
    lp_tensor *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* biases NULL for RMSNorm */
    lp_linear qkv;                            /* GPT-2: fused c_attn, out 3D */
    lp_linear q, k, v;                        /* Llama */
    lp_linear o;
    lp_linear fc, proj;                       /* GPT-2 MLP */
    lp_linear gate, up, down;                 /* Llama MLP */
} lp_block;

typedef struct lp_model {
    lp_model_config cfg;
    char *folder;
    lp_tensor *wte;          /* (V,D) */
    lp_tensor *wpe;          /* (n_ctx,D), GPT-2 */
    lp_tensor *lnf_w, *lnf_b;
    lp_linear unembed;       /* (V,D), trans; shares wte's storage when tied */
    lp_block *blocks;
    size_t param_bytes;      /* f32 bytes held (tied weights counted once) */
} lp_model;

/* Loads folder/config.json and the safetensors weights. Errors name the file and tensor. */
lp_model *lp_model_load(const char *folder);
void lp_model_free(lp_model *m); /* NULL is a no-op */
/* A model of the given configuration with random weights (N(0, 0.02) matrices, unit norm
 * weights, zero biases), for benchmarks and tests. */
lp_model *lp_model_random(const lp_model_config *cfg, uint64_t seed);

/* ---- hooks ---- */

typedef enum lp_hook_kind {
    LP_HOOK_PATCH = 0, /* copy `value` in: same shape as the activation, or batch 1 */
    LP_HOOK_ZERO = 1,
    LP_HOOK_MEAN = 2,  /* `value` (broadcast), or when NULL the mean over batch and positions */
    LP_HOOK_ADD = 3,   /* += scale * value (broadcast: a (D) vector steers every position) */
    LP_HOOK_FN = 4     /* fn may return a replacement of the same shape */
} lp_hook_kind;

/* A callback hook: act is borrowed (do not keep it past the call); set *out to a new tensor
 * of act's shape to replace it, or leave it NULL to keep act. Return 0, or -1 with an error
 * (the run stops with that error). */
typedef int (*lp_hook_fn)(void *ud, const char *name, const lp_tensor *act, lp_tensor **out);

typedef struct lp_hook {
    const char *name; /* exact hook point name */
    lp_hook_kind kind;
    const lp_tensor *value; /* borrowed */
    float scale;            /* LP_HOOK_ADD */
    int head;               /* -1: all heads; else only this head (hooks with a head dim) */
    int pos;                /* -1: all positions; else only this one */
    lp_hook_fn fn;
    void *ud;
} lp_hook;

/* Which hook points to keep: return non-zero to keep name. */
typedef int (*lp_cache_filter)(void *ud, const char *name);

typedef struct lp_run_opts {
    const lp_hook *hooks;
    size_t nhooks;
    int cache_all;          /* keep every hook point */
    lp_cache_filter filter; /* else keep those the filter accepts (NULL: none) */
    void *filter_ud;
} lp_run_opts;

typedef struct lp_run {
    lp_tensor *logits; /* (B,T,V) */
    size_t n, cap;
    char **names;      /* in the order the forward pass reached them */
    lp_tensor **acts;
} lp_run;

/* Runs tokens (B,T), row-major ids in [0, d_vocab). opts may be NULL (no cache, no
 * hooks). Hook names are checked first (an unknown one is an error listing examples);
 * T beyond the context of a GPT-2 model is an error naming the limit. Polls the interrupt
 * flag between layers. On error *out is left cleared. */
int lp_model_run(const lp_model *m, const int32_t *tokens, int B, int T, const lp_run_opts *opts,
                 lp_run *out);
void lp_run_clear(lp_run *r);
/* The cached activation called name (borrowed), or NULL. */
lp_tensor *lp_run_get(const lp_run *r, const char *name);

/* Whether name is a hook point of this model. */
bool lp_model_has_hook(const lp_model *m, const char *name);
/* The i-th hook point name in forward order into buf; 0, or -1 when i is past the end. */
int lp_model_hook_name(const lp_model *m, size_t i, char *buf, size_t cap);

/* The logits the model would give if the residual stream ended here: the final norm and the
 * unembedding applied to N residual vectors (resid: N x d_model) into logits (N x d_vocab).
 * For the logit lens. No hooks run. Returns 0, or -1 with an error (allocation). */
int lp_model_unembed(const lp_model *m, const float *resid, int N, float *logits);

/* Approximate forward FLOPs for B x T tokens (matrix products and attention). */
double lp_model_flops(const lp_model *m, int B, int T);

#endif
