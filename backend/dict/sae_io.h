/* Dictionaries' files: SAELens' folder, circuit-tracer's transcoder sets and CLTs, Gemma
 * Scope's params.npz. The layouts are DICTIONARY.md's "Files" (checked against SAELens 6.54
 * and circuit-tracer 0.5.0's own loading and saving code).
 *
 *   lp_sae_meta m = {.model_name = "gpt2", .context_size = 128, .prepend_bos = 1};
 *   if (lp_sae_save(sae, "saes/l1", &m) < 0) report(lp_last_error());
 *   lp_sae *s = lp_sae_load("saes/l1", &m);          // m may be NULL
 *
 * SAELens folder (lp_sae_save / lp_sae_load): cfg.json, sae_weights.safetensors (W_enc
 * [d_in, d_sae], W_dec [d_sae, d_out], b_enc, b_dec, threshold, W_skip [d_out, d_in]) and
 * sparsity.safetensors ("sparsity" [d_sae], log10 density) when the SAE has log_density.
 * Architectures: standard, topk, jumprelu (batchtopk and matryoshka are saved as jumprelu with
 * their threshold, as SAELens does), transcoder, skip_transcoder, jumprelu_transcoder,
 * jumprelu_skip_transcoder. A scale other than 1 (activations normalised in training) is
 * folded into the weights (W_enc * s, W_dec / s, b_dec / s) and cfg.json says
 * normalize_activations "none". Loading reads F32, F16 and BF16 tensors, cfg.json's
 * hook_name (or the older hook_point), and checks every tensor's presence, dtype and shape
 * against cfg.json: an error names the file, the tensor and the shapes. Nothing is kept on
 * an error.
 *
 * circuit-tracer (lp_transcoder_set_* / lp_clt_*): config.yaml {model_kind,
 * feature_input_hook, feature_output_hook, transcoders, activation, k} and
 * layer_{i}.safetensors (W_enc [d_tc, d_model]: one row per feature, so transposed against
 * lp_sae; W_dec [d_tc, d_model]; b_enc; b_dec; activation_function.threshold; W_skip), or
 * for a CLT W_enc_{i}.safetensors {W_enc_{i} [d_tc, d_model], b_enc_{i}, b_dec_{i},
 * threshold_{i}} and W_dec_{i}.safetensors {W_dec_{i} [d_tc, n_layers - i, d_model]}.
 *
 * Ownership: loaders return new objects the caller frees; savers borrow. Savers write each
 * file to a temporary name and rename it; the folder is made when missing.
 * Errors: NULL or -1 with lp_last_error() (LP_ERR_IO for files that cannot be opened or
 * written, LP_ERR_FORMAT for corrupt or inconsistent ones, LP_ERR_NOMEM).
 */
#ifndef LP_DICT_SAE_IO_H
#define LP_DICT_SAE_IO_H

#include "dict/sae.h"

/* The metadata SAELens keeps beside an SAE (cfg.json's "metadata"). Strings empty when
 * unknown; context_size 0 when unknown; hook_head_index -1 when none. */
typedef struct lp_sae_meta {
    char model_name[128];
    char dataset_path[256];
    char training_version[64]; /* sae_lens_training_version (loupe writes "loupe <version>") */
    int context_size;
    int prepend_bos;
    int exclude_special_tokens;
    int hook_head_index;
} lp_sae_meta;

/* Writes s in SAELens' layout into dir (made when missing). meta may be NULL. The hooks are
 * s->cfg.hook_in / hook_out. 0, or -1 with an error. */
int lp_sae_save(const lp_sae *s, const char *dir, const lp_sae_meta *meta);
/* Reads an SAELens folder. meta, when not NULL, receives cfg.json's metadata. */
lp_sae *lp_sae_load(const char *dir, lp_sae_meta *meta);
/* Like lp_sae_load, but also refuses an SAE whose d_in is not d_model (the model's width):
 * "<dir>/cfg.json: d_in is 64 but the model's d_model is 192". */
lp_sae *lp_sae_load_for(const char *dir, int d_model, lp_sae_meta *meta);

/* Reads Gemma Scope's params.npz (W_enc [d_model, d_sae], W_dec [d_sae, d_model], b_enc,
 * b_dec, threshold) as a JumpReLU SAE (apply_b_dec_to_input 0, as SAELens loads them), or
 * a JumpReLU transcoder when `transcoder` is non-zero (d_out from W_dec). */
lp_sae *lp_sae_load_npz(const char *path, int transcoder);

/* circuit-tracer's transcoder set. Every layer is a transcoder with d_in = d_out = d_model;
 * activation relu, jumprelu (thresholds) or topk (k in config.yaml). */
int lp_transcoder_set_save(const lp_transcoder_set *t, const char *dir);
lp_transcoder_set *lp_transcoder_set_load(const char *dir);
/* A set of n_layers zeroed transcoders of one configuration (layer l: hook_in / hook_out
 * "blocks.l.<feature_input_hook>"). NULL on a bad configuration or no memory. */
lp_transcoder_set *lp_transcoder_set_new(int n_layers, const lp_sae_config *c, const char *input_hook,
                                         const char *output_hook);

/* circuit-tracer's cross-layer transcoder. */
int lp_clt_save(const lp_clt *c, const char *dir);
lp_clt *lp_clt_load(const char *dir);

/* Which layout dir holds: 1 a transcoder set, 2 a CLT (config.yaml's model_kind, or the files
 * present), or -1 with an error. */
int lp_dict_dir_kind(const char *dir);

#endif
