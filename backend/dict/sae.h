/* Dictionaries: sparse autoencoders (SAEs), transcoders and cross-layer transcoders (CLTs),
 * the objects that backend/dict/ trains, evaluates, saves and loads. The maths and the file
 * layouts are in the team's DICTIONARY.md; this header is the data every part shares.
 *
 * Row vectors throughout (SAELens' convention): x (1 x d_in) is one token's activation,
 *   z = (x - b_dec [if apply_b_dec_to_input]) W_enc + b_enc      W_enc [d_in, d_sae]
 *   f = act(z)                                                   b_enc [d_sae]
 *   x_hat = f W_dec + b_dec (+ x W_skip^T for a skip transcoder)  W_dec [d_sae, d_out]
 * with act one of the architectures below; row i of W_dec is feature i's direction. An SAE
 * has d_out = d_in and reads and writes the same hook; a transcoder reads hook_in and
 * predicts hook_out (d_out may differ; b_dec is then never subtracted from the input).
 *
 *   lp_sae_config c = {.arch = LP_SAE_TOPK, .d_in = 64, .d_sae = 1024, .d_out = 64, .k = 32};
 *   lp_sae *s = lp_sae_new(&c);                  // zeros; lp_sae_init_random for training
 *   if (!s) report(lp_last_error());
 *   lp_sae_free(s);
 *
 * Tensors are f32 on the CPU unless a function says otherwise. Ownership: the lp_sae owns
 * its tensors; functions borrow their arguments. Errors: NULL or -1 with lp_last_error()
 * set (LP_ERR_NOMEM when memory runs out, LP_ERR_INPUT for a bad configuration).
 */
#ifndef LP_DICT_SAE_H
#define LP_DICT_SAE_H

#include <stdint.h>

#include "tensor.h"

/* The activation function (what f = act(z) is); SAELens' "architecture" names in brackets. */
typedef enum lp_sae_arch {
    LP_SAE_STANDARD = 0, /* ReLU, decoder-norm-weighted L1 ("standard") */
    LP_SAE_TOPK,         /* the k largest per token ("topk"), AuxK against dead features */
    LP_SAE_BATCHTOPK,    /* the k*N largest over a batch in training; a threshold (JumpReLU) for inference */
    LP_SAE_JUMPRELU,     /* z * 1[z > threshold] ("jumprelu") */
    LP_SAE_MATRYOSHKA,   /* batchtopk with nested prefix losses; JumpReLU for inference */
} lp_sae_arch;

/* The JumpReLU sparsity penalty (DICTIONARY.md): "step" (L0 through the rectangle kernel) or
 * "tanh" (tanh(c f ||W_dec,i||), c = 4). */
typedef enum lp_sae_sparsity { LP_SPARSITY_STEP = 0, LP_SPARSITY_TANH = 1 } lp_sae_sparsity;

typedef struct lp_sae_config {
    lp_sae_arch arch;
    int d_in, d_sae, d_out;        /* d_out = d_in for an SAE */
    int k;                         /* topk / batchtopk / matryoshka: features kept per token */
    int transcoder;                /* 1: reads hook_in, predicts hook_out (b_dec never subtracted) */
    int skip;                      /* 1: a skip transcoder (W_skip [d_out, d_in]) */
    int apply_b_dec_to_input;      /* SAEs: subtract b_dec from x before encoding (SAELens' default 1) */
    int rescale_acts_by_decoder_norm; /* topk: z_i *= ||W_dec,i|| before choosing */
    char hook_in[96], hook_out[96]; /* hook point names (hook_out = hook_in for an SAE) */
    int layer;                     /* the layer the hook belongs to, or -1 */
} lp_sae_config;

typedef struct lp_sae {
    lp_sae_config cfg;
    lp_tensor *W_enc;     /* [d_in, d_sae] */
    lp_tensor *b_enc;     /* [d_sae] */
    lp_tensor *W_dec;     /* [d_sae, d_out] */
    lp_tensor *b_dec;     /* [d_out] */
    lp_tensor *threshold; /* [d_sae]: jumprelu, and batchtopk / matryoshka after training; NULL otherwise */
    lp_tensor *W_skip;    /* [d_out, d_in] for a skip transcoder; NULL otherwise */
    /* Per-feature firing statistics when known (training or a loaded sparsity file):
     * log10(fraction of tokens where the feature fired + 1e-10), or NULL. */
    lp_tensor *log_density; /* [d_sae] */
    /* The activation normalisation factor folded into the weights on save: inputs were
     * scaled by `scale` in training (1 when there was none). */
    float scale;
} lp_sae;

/* Checks c (sizes positive, k in 1..d_sae for the k architectures, d_out = d_in for an
 * SAE, skip only for transcoders): 0, or -1 with a message naming the field. */
int lp_sae_config_check(const lp_sae_config *c);

/* A dictionary of c's shape with every tensor zero (threshold zero where the architecture
 * has one). NULL on a bad configuration or no memory. */
lp_sae *lp_sae_new(const lp_sae_config *c);
void lp_sae_free(lp_sae *s); /* NULL is a no-op */

/* The initialisation of DICTIONARY.md: biases 0; W_dec rows random directions of norm
 * `dec_norm` (0.1 typical); W_enc = W_dec^T (for a transcoder with d_out != d_in, W_enc
 * rows random with the same norm); W_skip zero; threshold `threshold` (jumprelu's
 * theta_init, 0 elsewhere). Deterministic in seed. */
int lp_sae_init_random(lp_sae *s, uint64_t seed, float dec_norm, float threshold);

/* A deep copy (NULL on no memory). */
lp_sae *lp_sae_clone(const lp_sae *s);

/* The names SAELens uses for the architectures ("standard", "topk", "batchtopk",
 * "jumprelu", "matryoshka_batchtopk"), and back (-1 for an unknown name). */
const char *lp_sae_arch_name(lp_sae_arch a);
int lp_sae_arch_parse(const char *name);

/* A set of per-layer transcoders (circuit-tracer's transcoder_set): layers[l] reads
 * hook_in of layer l and predicts hook_out of layer l; all share d_model and activation. */
typedef struct lp_transcoder_set {
    int n_layers;
    lp_sae **layers; /* n_layers, owned */
    char feature_input_hook[96], feature_output_hook[96]; /* "mlp.hook_in", "mlp.hook_out" */
} lp_transcoder_set;

void lp_transcoder_set_free(lp_transcoder_set *t); /* frees every layer; NULL is a no-op */

/* A cross-layer transcoder: an encoder per layer reading that layer's MLP input; feature i
 * of layer l decodes into every layer l' >= l, and the prediction of MLP output l' sums
 * over l <= l'. JumpReLU (threshold per feature) or ReLU (threshold NULL). */
typedef struct lp_clt {
    int n_layers, d_model, d_tc;
    lp_tensor **W_enc;     /* n_layers of [d_model, d_tc] (row-vector convention, like lp_sae) */
    lp_tensor **b_enc;     /* n_layers of [d_tc] */
    lp_tensor **b_dec;     /* n_layers of [d_model]: the bias of output layer l */
    lp_tensor **threshold; /* n_layers of [d_tc], or NULL (ReLU) */
    lp_tensor **W_dec;     /* n_layers of [d_tc, n_layers - l, d_model]: decoders of layer l's features into l..n-1 */
    char feature_input_hook[96], feature_output_hook[96];
} lp_clt;

/* A CLT of the given sizes with every tensor zero; jumprelu != 0 gives thresholds. */
lp_clt *lp_clt_new(int n_layers, int d_model, int d_tc, int jumprelu);
void lp_clt_free(lp_clt *c); /* NULL is a no-op */

#endif
