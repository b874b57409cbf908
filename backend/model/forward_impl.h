/* Private to backend/model/: the state of one forward pass, shared by forward.c (the blocks
 * and the runs), forward_ops.c (norms, products, activations, buffers), forward_attn.c
 * (attention), kvcache.c (the key/value cache) and hooks.c (what happens at each hook
 * point). */
#ifndef LP_FORWARD_IMPL_H
#define LP_FORWARD_IMPL_H

#include <stddef.h>

#include "core/parallel.h"
#include "model/model.h"

/* Keys and values of the positions seen so far, per layer, post-rotary for Llama. Each layer's
 * k[L] / v[L] is (cap, B, K, S), position-major so that growing is a realloc. */
struct lp_kv_cache {
    int n_layers, B, K, S; /* the model's shape, checked at every run */
    int len, cap, limit;   /* positions held, allocated, most allowed (the model's context) */
    float **k, **v;
};

/* Makes room for `need` positions (need <= limit, checked by the caller). 0, or -1 with an
 * error naming the size. */
int lp_kv_cache_reserve(lp_kv_cache *c, int need);

#define LP_FWD_POOL 48

typedef struct lp_fwd {
    const lp_model *m;
    const lp_run_opts *o; /* may be NULL */
    lp_run *r;
    int B, T;          /* the positions this run computes */
    int p0;            /* positions before them (held by kv); 0 without a cache */
    int nblocks;       /* > 0: stop after this many blocks (no logits); 0: the whole model */
    lp_kv_cache *kv;   /* NULL: no cache */
    /* buffers of tensors nobody else holds, kept from one layer for the next (reused by size:
     * no allocation and no page faults per layer) */
    lp_tensor *pool[LP_FWD_POOL];
    int npool;
} lp_fwd;

/* ---- hook points (hooks.c) ---- */

/* Runs the hooks named `name` on act (contiguous, owned by the forward pass; modified in
 * place), then caches a reference when the options ask. headdim / posdim: the dims of heads
 * and positions in act (-1: none). 0, or -1 with an error. */
int lp_fwd_hook(lp_fwd *f, const char *name, lp_tensor *act, int headdim, int posdim);
/* Whether a hook (not just the cache) acts on name. */
int lp_fwd_hooked(const lp_fwd *f, const char *name);
/* Whether anything sees name: a hook or the cache. When nothing does, the forward pass may
 * skip making the hook point as a tensor of its own. */
int lp_fwd_wants(const lp_fwd *f, const char *name);
/* Checks every hook's name and arguments before a run. */
int lp_fwd_check_hooks(const lp_model *m, const lp_run_opts *o);

/* ---- tensors alive in one layer (forward_ops.c) ---- */

#define LP_FWD_MAXT 48

typedef struct lp_track {
    lp_tensor *t[LP_FWD_MAXT];
    int n;
} lp_track;

/* Keeps t (may be NULL) to be released by lp_track_drop; returns t. */
lp_tensor *lp_track_keep(lp_track *tr, lp_tensor *t);
/* Releases every kept tensor: those that nobody else holds go to f's pool (f may be NULL). */
void lp_track_drop(lp_fwd *f, lp_track *tr);
/* A new contiguous tensor (from f's pool when one of the same size is there), kept in tr. */
lp_tensor *lp_fwd_new(lp_fwd *f, lp_track *tr, const char *what, int nd, int64_t a, int64_t b, int64_t c,
                      int64_t d);
void lp_fwd_pool_clear(lp_fwd *f);

/* ---- the stages (forward_ops.c) ---- */

/* Kernels are built three times, for AVX-512, AVX2 and the baseline the project is compiled
 * for, and picked at run time (x86 with GCC or clang; elsewhere the baseline only). A kernel
 * NAME is written once as `LP_KERNEL void NAME_body(args)` and LP_RANGE_VERSIONS(NAME) makes
 * NAME(void *ctx, size_t lo, size_t hi) for lp_par_for. */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define LP_MULTI_TARGET 1
#define LP_TARGET_AVX512 __attribute__((target("avx512f,fma")))
#define LP_TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif
#if defined(__GNUC__) && !defined(__clang__)
/* O3: loops vectorized and register blocks unrolled; fp-contract: FMA where the target has
 * it (the project builds ISO C, where GCC contracts nothing); no-trapping-math lets
 * comparisons be if-converted (it changes no value, only FP-exception side effects) */
#define LP_KOPT __attribute__((optimize("O3", "fp-contract=fast", "no-trapping-math")))
#else
#define LP_KOPT
#endif
#define LP_KERNEL static inline __attribute__((always_inline))

/* 2: AVX-512F and FMA, 1: AVX2 and FMA, 0: neither. The environment variable
 * LOUPE_CPU_LEVEL=0|1 asks for a lower one (read once per process), to test each version. */
int lp_cpu_level(void);

#ifdef LP_MULTI_TARGET
#define LP_RANGE_VERSIONS(name)                                                                     \
    LP_KOPT static void name##_l0(void *p, size_t lo, size_t hi) { name##_body(p, lo, hi); }        \
    LP_KOPT LP_TARGET_AVX2 static void name##_l1(void *p, size_t lo, size_t hi) { name##_body(p, lo, hi); } \
    LP_KOPT LP_TARGET_AVX512 static void name##_l2(void *p, size_t lo, size_t hi) { name##_body(p, lo, hi); } \
    static void name(void *p, size_t lo, size_t hi)                                                 \
    {                                                                                               \
        int l_ = lp_cpu_level();                                                                    \
        (l_ == 2 ? name##_l2 : l_ == 1 ? name##_l1 : name##_l0)(p, lo, hi);                         \
    }
#else
#define LP_RANGE_VERSIONS(name)                                                                     \
    LP_KOPT static void name(void *p, size_t lo, size_t hi) { name##_body(p, lo, hi); }
#endif


/* y (B,T,out) = x (B,T,in) @ W (+ b) */
lp_tensor *lp_fwd_linear(lp_fwd *f, lp_track *tr, const lp_linear *l, const lp_tensor *x, const char *what);
/* LayerNorm (b != NULL) or RMSNorm of x (+ add, when not NULL: the sum is made first, into
 * *sum, a new tensor kept in tr), with hook points prefix.hook_scale (B,T,1) and
 * prefix.hook_normalized (B,T,D); returns normalized * w (+ b). When sum is asked,
 * sum_hook names the hook point of the sum (run before the norm's). */
lp_tensor *lp_fwd_norm(lp_fwd *f, lp_track *tr, const lp_tensor *x, const lp_tensor *add, lp_tensor **sum,
                       const char *sum_hook, const lp_tensor *w, const lp_tensor *b, const char *prefix);
/* a + b, (B,T,D) */
lp_tensor *lp_fwd_add(lp_fwd *f, lp_track *tr, const lp_tensor *a, const lp_tensor *b);
/* GELU (form LP_GELU_TANH or LP_GELU_ERF) and SwiGLU (silu(gate) * up) of n floats; out may
 * be an input. */
void lp_fwd_gelu(float *out, const float *inp, size_t n, int form);
void lp_fwd_swiglu(float *out, const float *gate, const float *up, size_t n);
/* Rotary embedding (half rotation) of x (B,T,NH,S) with the tables cs, sn (T,S/2). */
lp_tensor *lp_fwd_rope(lp_fwd *f, lp_track *tr, const lp_tensor *x, const float *cs, const float *sn);
/* Columns [off, off + n*S) of x (B,T,W) as a (B,T,n,S) tensor of its own. */
lp_tensor *lp_fwd_heads(lp_fwd *f, lp_track *tr, const lp_tensor *x, int64_t off, int64_t n, int64_t S);

/* ---- attention (forward_attn.c) ---- */

/* Rows of heads in memory: element s of head h at position t of batch entry b is at
 * p[b * bstride + t * rstride + h * S + s]. */
typedef struct lp_rows {
    const float *p;
    int64_t bstride, rstride;
} lp_rows;

/* Causal attention of layer L for f->T query positions (absolute positions p0 + i) over
 * p0 + T key positions: q has H heads, k and v K heads, all of size S. Hook points
 * attn_scores, pattern (B,H,T,p0+T) and z; returns z (B,T,H,S), kept in tr. */
lp_tensor *lp_fwd_attention(lp_fwd *f, lp_track *tr, int L, lp_rows q, lp_rows k, lp_rows v, int H, int K, int S);

#endif
