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
 *   blocks.L.mlp.hook_in (B,T,D)         the MLP's input: ln2's output with its weight (and
 *                                        bias) applied (Llama: post_attention_layernorm's)
 *   blocks.L.mlp.hook_pre (B,T,F)        blocks.L.mlp.hook_pre_linear (B,T,F)  Llama only (up)
 *   blocks.L.mlp.hook_post (B,T,F)       blocks.L.mlp.hook_out (B,T,D)   the MLP's output
 *   blocks.L.hook_mlp_out (B,T,D)        the same values, after mlp.hook_out's hooks (its
 *                                        own hooks do not change a cached mlp.hook_out)
 *   blocks.L.hook_resid_post (B,T,D)     ln_final.hook_scale (B,T,1)
 *   ln_final.hook_normalized (B,T,D)
 * Attention-only models (cfg.attn_only) have no hook_resid_mid, ln2.*, mlp.* or hook_mlp_out:
 * resid_post = resid_pre + attn_out.
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

typedef struct lp_tokenizer lp_tokenizer; /* tokenizer/tokenizer.h */

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
 * weights, zero biases), for benchmarks and tests. With cfg->attn_only (GPT-2 family only;
 * an error otherwise) the blocks get no ln2 and no MLP. */
lp_model *lp_model_random(const lp_model_config *cfg, uint64_t seed);

/* Writes m as a Hugging Face folder that lp_model_load and transformers'
 * AutoModelForCausalLM.from_pretrained both read (backend/model/save.c):
 *   config.json        GPT2LMHeadModel or LlamaForCausalLM, "torch_dtype": "float32"
 *   model.safetensors  f32, the names lp_model_load reads ("transformer." / "model." prefix,
 *                      GPT-2 Conv1D weights as (in,out)); a tied unembedding stored once
 *   tokenizer.json, tokenizer_config.json   when tok is not NULL (lp_tokenizer_save)
 * An attention-only model (cfg.attn_only) is written as a GPT-2 with n_inner 1, ln_2 weights
 * one and biases zero and all-zero MLP weights, plus "loupe_attn_only": true: transformers
 * computes the same function (gelu(0) = 0), and lp_model_load reads it back attention-only.
 * Its d_mlp reads back as 1.
 *
 * Atomic: everything is written into a temporary folder beside `folder`, then renamed into
 * place (the whole folder when it is new; file by file, config.json last, when it exists),
 * so a failure leaves no half-written checkpoint and overwrites nothing. Missing parent
 * folders are created (and removed again on failure). Files of the folder that are not
 * written (an older shard index, say) are left alone.
 * 0, or -1 with an error naming the folder ("cannot save the model to 'x': ..."). */
int lp_model_save(const lp_model *m, const char *folder, const lp_tokenizer *tok);

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
/* lp_model_run stopped after blocks 0..nblocks-1 (nblocks >= the model's layers, or 0: the
 * whole run): the cache holds what those blocks and the embeddings made, no ln_final hook
 * point runs and out->logits is NULL. For callers that want early hook points only (the
 * activation stream of backend/dict/). */
int lp_model_run_blocks(const lp_model *m, const int32_t *tokens, int B, int T, const lp_run_opts *opts, int nblocks,
                        lp_run *out);
void lp_run_clear(lp_run *r);
/* The cached activation called name (borrowed), or NULL. */
lp_tensor *lp_run_get(const lp_run *r, const char *name);
/* Adds t to r's cache as name (a new reference to t, no copy): for code that runs hook points
 * of its own inside a run (backend/dict/splice.c). 0, or -1 on no memory. */
int lp_run_add(lp_run *r, const char *name, const lp_tensor *t);
/* Applies one hook to act in place, as a run does at a hook point (headdim, posdim: the
 * head and position dimensions, -1 for none). 0, or -1 with an error naming the hook. */
int lp_hook_apply(const lp_hook *h, lp_tensor *act, int headdim, int posdim);

/* ---- incremental runs (generation) ----
 * A key/value cache holds, per layer, the keys (after the rotary embedding for Llama) and
 * values of every position run so far; lp_model_run_cached runs only new positions against
 * them, for one new token per step of generation instead of the whole sequence:
 *
 *   lp_kv_cache *kv = lp_kv_cache_new(m, 1, 0);
 *   lp_model_run_cached(m, kv, prompt, 1, T, NULL, &r);   // logits (1,T,V); kv holds T
 *   ... pick next from r.logits' last row, lp_run_clear(&r) ...
 *   lp_model_run_cached(m, kv, &next, 1, 1, NULL, &r);    // logits (1,1,V) of position T
 *   lp_kv_cache_free(kv);
 *
 * The logits equal those of lp_model_run on the whole sequence (to float rounding). */
typedef struct lp_kv_cache lp_kv_cache;

/* A cache for m and a batch of B sequences, with room for cap positions to start with (0: a
 * few; it grows as needed up to the model's context). NULL and an error on bad arguments or
 * allocation. The cache may only be used with m (or a model of the same shape). */
lp_kv_cache *lp_kv_cache_new(const lp_model *m, int B, int cap);
void lp_kv_cache_free(lp_kv_cache *kv); /* NULL is a no-op */
int lp_kv_cache_len(const lp_kv_cache *kv);   /* positions held */
int lp_kv_cache_limit(const lp_kv_cache *kv); /* most positions: the model's context */
void lp_kv_cache_reset(lp_kv_cache *kv);      /* back to no positions (memory kept) */
/* Forgets the positions from len on (len <= lp_kv_cache_len): to rerun from there. */
int lp_kv_cache_truncate(lp_kv_cache *kv, int len);

/* Runs T new positions per sequence (tokens (B,T), B the cache's batch) after the P that kv
 * holds, and appends their keys and values to kv. The new tokens sit at positions P..P+T-1
 * (GPT-2's position embedding rows, Llama's rotary angles); out->logits is (B,T,V), for the
 * new positions only. Hooks run at the new positions only: every hook point is (B,T,...) of
 * the new positions, except attn_scores and pattern, (B,H,T,P+T): the new queries against
 * every key. A hook's pos counts from the first new position. Hooks on k and v (and rot_k)
 * change what is cached, for the later runs too. P + T beyond the model's context is an
 * error naming the limit; so is a cache made for another shape or batch. On error *out is
 * cleared and kv keeps its P positions. */
int lp_model_run_cached(const lp_model *m, lp_kv_cache *kv, const int32_t *tokens, int B, int T,
                        const lp_run_opts *opts, lp_run *out);

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
