/* Feature harvest: one pass of a model over a corpus through a dictionary (an SAE on its hook,
 * a transcoder on its hook_in), keeping per feature what a dashboard shows (DICTIONARY.md,
 * "Feature dashboards"), in memory bounded by the number of features, not the corpus:
 *
 *   lp_harvest_opts o = {.tokens = ids, .ntokens = n, .ctx = 64, .want = 100000};
 *   lp_harvest *h = lp_harvest_run(model, sae, &o);      // NULL with lp_last_error()
 *   h->count[i] / h->n_tokens                            // feature i's density
 *   lp_harvest_save(h, "saes/l1"); h = lp_harvest_load("saes/l1", d_sae);
 *   lp_harvest_free(h);
 *
 * Windows and positions are eval_run's (eval.h): consecutive windows of ctx positions (BOS
 * first when prepend_bos), `batch` windows per model run, until `want` positions; BOS and
 * EOS positions are not counted (keep_special counts them) but appear as context. A feature
 * fires where f_i > 0; NaN and infinite values are not counted (they show as context only).
 *
 * Kept per feature i:
 * - count[i]: positions where f_i > 0 (density = count / n_tokens); max[i].
 * - hist: a histogram of log10 f_i over the positions where it fires, LP_HARVEST_HIST bins
 *   of equal width over [LP_HARVEST_LOG_LO, LP_HARVEST_LOG_HI) (values outside in the end bins).
 * - top: the LP_HARVEST_TOP largest activations (ties: the first seen), largest first, each
 *   with its window, position and the tokens and f_i values LP_HARVEST_CTX positions either
 *   side (token -1 past the window's ends).
 * - intervals: 10 equal-width intervals (lo, hi] of (0, a], each with the number of
 *   activations in it and LP_HARVEST_SAMPLES drawn uniformly without replacement among them.
 *   The scheme, exact in one pass while the max grows: every activation gets a random key
 *   (a hash of seed, feature and position); a sample of a set is its LP_HARVEST_SAMPLES
 *   smallest keys (a bottom-k sample: uniform, and the sample of a union is the bottom-k of
 *   the samples of its parts). Activations are counted and sampled in LP_HARVEST_FINE fine
 *   bins of equal width over (0, M], M the smallest power of two >= the max so far; when a
 *   value exceeds M, M doubles and pairs of fine bins merge exactly (counts add, samples
 *   unite). At the end the 10 intervals are unions of q whole fine bins, q the smallest
 *   with 10 q bins covering the max: so a = 10 q M / FINE lies in [max, 1.5 max) (the top
 *   interval may be partly above the max), and counts and samples are exact for them.
 * - correlated features: for each token, its (at most) LP_HARVEST_CO strongest active
 *   features co-occur pairwise; per feature a space-saving table of LP_HARVEST_SLOTS
 *   co-occurring features counts them (over-estimates by at most the table's smallest
 *   count); at the end the LP_HARVEST_CORR best by Jaccard index co / (n_i + n_j - co).
 *
 * Memory while running: about 25 KB per feature (the fine bins' samples with their
 * contexts) plus one batch of runs; the result: about 7 KB per feature. Polls the interrupt
 * flag between model runs ("interrupted": nothing is returned). The bookkeeping runs on
 * lp_par_for's threads, the features split between them (each feature's state in the order
 * of the positions: the result does not depend on the number of threads); the model and the
 * encoder use the BLAS threads.
 */
#ifndef LP_DICT_HARVEST_H
#define LP_DICT_HARVEST_H

#include <stddef.h>
#include <stdint.h>

#include "dict/sae.h"
#include "model/model.h"

enum {
    LP_HARVEST_TOP = 20,      /* top activating examples */
    LP_HARVEST_INTERVALS = 10,
    LP_HARVEST_SAMPLES = 5,   /* per interval */
    LP_HARVEST_CTX = 5,       /* context tokens each side */
    LP_HARVEST_W = 2 * LP_HARVEST_CTX + 1,
    LP_HARVEST_HIST = 40,     /* log10 histogram bins */
    LP_HARVEST_FINE = 40,     /* fine bins while streaming (even, >= 2 x INTERVALS) */
    LP_HARVEST_CO = 8,        /* features per token counted for co-occurrence */
    LP_HARVEST_SLOTS = 16,    /* space-saving slots per feature */
    LP_HARVEST_CORR = 8,      /* correlated features kept */
    LP_HARVEST_EXAMPLES = LP_HARVEST_TOP + LP_HARVEST_INTERVALS * LP_HARVEST_SAMPLES,
};
#define LP_HARVEST_LOG_LO (-4.0)
#define LP_HARVEST_LOG_HI 4.0

/* One example: f_i = value at (window, pos); tok / act the tokens and f_i of pos - CTX ..
 * pos + CTX (tok -1 and act 0 outside the window). */
typedef struct lp_harvest_example {
    float value;
    int32_t window, pos;
    int32_t tok[LP_HARVEST_W];
    float act[LP_HARVEST_W];
} lp_harvest_example;

typedef struct lp_harvest_interval {
    float lo, hi;    /* (lo, hi] */
    double count;    /* activations in it */
    int n;           /* samples */
} lp_harvest_interval;

typedef struct lp_harvest {
    int d_sae;
    int64_t n_tokens;  /* positions counted */
    int ctx;           /* window length */
    int64_t windows;   /* windows run */
    double *count;     /* [d_sae] */
    float *max;        /* [d_sae] (0 when it never fired) */
    double *hist;      /* [d_sae][HIST] */
    int *n_top;        /* [d_sae] */
    lp_harvest_example *ex;          /* [d_sae][EXAMPLES]: TOP top ones, then SAMPLES per interval */
    lp_harvest_interval *iv;         /* [d_sae][INTERVALS] (all zero when it never fired) */
    int32_t *corr;     /* [d_sae][CORR] feature ids, -1 for none */
    float *corr_score; /* [d_sae][CORR] Jaccard estimates, best first */
    char hook[96];     /* the hook it read */
} lp_harvest;

typedef struct lp_harvest_opts {
    const int32_t *tokens; /* the corpus (borrowed) */
    size_t ntokens;
    int ctx;          /* positions per window, 2..the model's context */
    int64_t want;     /* positions to run; 0 or more than the corpus: all of it */
    int batch;        /* windows per run; 0: 8 (fewer when the logits would pass 256 MB) */
    int prepend_bos;
    int keep_special;
    uint64_t seed;    /* the sample keys */
    /* after each run: positions so far and the total; non-zero stops ("interrupted") */
    int (*progress)(void *ud, int64_t done, int64_t total);
    void *ud;
} lp_harvest_opts;

/* The harvest of s over o's corpus (new, the caller frees it), or NULL with an error: the
 * model lacks the hook or it has another width than the dictionary, a corpus shorter than
 * one window ("the corpus has 3 tokens, fewer than one window of 63"), bad sizes, no
 * memory, an interrupt. */
lp_harvest *lp_harvest_run(const lp_model *m, const lp_sae *s, const lp_harvest_opts *o);
void lp_harvest_free(lp_harvest *h); /* NULL is a no-op */
/* An empty harvest of d features (every count zero, corr -1), for the loader; NULL on no memory. */
lp_harvest *lp_harvest_alloc(int d);

/* Feature i's examples: top (n_top[i] of them), and interval k's samples (iv[i][k].n). */
static inline const lp_harvest_example *lp_harvest_top(const lp_harvest *h, int i)
{
    return h->ex + (size_t)i * LP_HARVEST_EXAMPLES;
}
static inline const lp_harvest_example *lp_harvest_samples(const lp_harvest *h, int i, int k)
{
    return h->ex + (size_t)i * LP_HARVEST_EXAMPLES + LP_HARVEST_TOP + (size_t)k * LP_HARVEST_SAMPLES;
}

/* The memory a harvest of d features holds while it runs (its bookkeeping, its result and
 * the buffers of one run of batch_tokens positions of width d_in; not the model's own). */
size_t lp_harvest_bytes(int d, int64_t batch_tokens, int d_in);

/* The sample key of feature i's activation at global position gpos (window * ctx + pos). */
uint64_t lp_harvest_key(uint64_t seed, int64_t gpos, int i);

/* ---- files (harvest_io.c) ----
 * dir/loupe_harvest.safetensors, beside an SAELens folder's sae_weights.safetensors: f32
 * tensors count [d], max [d], hist [d, HIST], examples [d, EXAMPLES, 3 + 2W] (value,
 * window, pos, tokens, activations), n_examples [d, 1 + INTERVALS] (n_top, samples per
 * interval), intervals [d, INTERVALS, 3] (lo, hi, count), corr [d, CORR, 2] (id, score);
 * metadata loupe_harvest "1", n_tokens, ctx, windows, hook. Integers are stored as f32: exact
 * below 2^24 (token ids, windows; counts beyond that lose their last digits). */
int lp_harvest_save(const lp_harvest *h, const char *dir);
/* 1 when dir has a harvest file, 0 when not. */
int lp_harvest_exists(const char *dir);
/* The harvest of dir for a dictionary of d_sae features: NULL with an error (LP_ERR_IO, or
 * LP_ERR_FORMAT naming the tensor for a corrupt or mismatched file). */
lp_harvest *lp_harvest_load(const char *dir, int d_sae);
/* The same with the file's own path (a transcoder set keeps one per layer beside its
 * layer files: dir/loupe_harvest_layer_{i}.safetensors). */
int lp_harvest_save_file(const lp_harvest *h, const char *path);
lp_harvest *lp_harvest_load_file(const char *path, int d_sae);

/* ---- labels (harvest_label.c) ----
 * An automatic short label of feature i into buf (NUL-terminated, at most cap - 1 bytes),
 * deterministic, from the harvest's top examples (h may be NULL): with c the token they fire
 * on most often (ties: the larger summed activation, then the lower id) and p the token
 * before it most often,
 *   `"c"`             when at least half of them fire on c;
 *   `after "p"`       otherwise, when at least half of them follow p;
 *   `"c" / "c2"`      otherwise (c2 the second most frequent);
 * then ` -> "t"` when `promoted` (the text of the feature's top promoted token) is given.
 * A feature the harvest saw never fire is `dead`; without a harvest the label is the
 * promoted part alone, or "" without it. Token texts longer than 24 bytes are cut (on a
 * UTF-8 boundary) with "…". tok_text turns an id into its text (NULL: "#id"). */
typedef const char *(*lp_token_text_fn)(void *ud, int32_t id);
void lp_harvest_label(char *buf, size_t cap, const lp_harvest *h, int i, const char *promoted,
                      lp_token_text_fn tok_text, void *ud);

/* The direct effect of feature i on the logits (DICTIONARY.md: W_dec,i through W_U, the
 * direct path with no normalisation scale), with the final norm's weight folded into W_U as
 * TransformerLens' fold_ln does: out[v] = sum_d W_dec[i,d] g_d U[v,d] (g the final norm's
 * weight, 1 without one). out: d_vocab floats. -1 with an error when the dictionary does not
 * write the residual stream's width (d_out != d_model) or i is out of range. */
int lp_feature_logits(const lp_model *m, const lp_sae *s, int i, float *out);

/* Neuron alignment against the MLP of `layer` (the one writing into the dictionary's hook):
 * the k neurons n with the largest |W_dec,i . W_out,n| (W_out,n the d_model vector neuron n
 * writes: GPT-2's c_proj, Llama's down_proj), largest first, into ids and dots (k each).
 * Returns how many (0 when the dictionary does not write d_model, the layer is out of range
 * or the model has no MLP there). */
int lp_feature_neurons(const lp_model *m, const lp_sae *s, int i, int layer, int k, int *ids, float *dots);

#endif
