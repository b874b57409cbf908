/* Causal attention of one layer, per head on lp_get_threads() threads, reading q, k and v in
 * place (GPT-2's fused qkv rows, Llama's projections, or the key/value cache) through row
 * strides: no copies into (B,H,T,S) and back.
 *
 * The products are small (a head of GPT-2 small at T = 128 is 128 x 128 x 64): sgemm spent
 * more time starting its threads than multiplying, about 8% of a forward pass. Here each head
 * is one task, computed by register-blocked kernels in GCC/clang vector extensions (built
 * for AVX-512, AVX2 and the baseline, chosen at run time), and only the causal half of the
 * scores is computed.
 *
 * Hook points: attn_scores (scaled, masked entries -inf) and pattern (B,H,T,p0+T) exist as
 * tensors only when a hook or the cache sees them; otherwise scores, softmax and the
 * weighted sum of a head run in one pass over a scratch buffer. The arithmetic is the same
 * either way (scores are scaled before the softmax in both), and every entry is a sum in a
 * fixed order over its own row, so a query's result does not depend on how many queries run
 * with it: a run with a key/value cache gives the same numbers as a full run.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/interrupt.h"
#include "model/forward_impl.h"
#include "ops/softmax_row.h"

/* the 16-lane vectors and helpers, and the softmax, are ops/softmax_row.h's (always inlined:
 * no vector crosses a call, whatever the target) */
typedef lp_v16 v16;

#define INLINE LP_KERNEL

/* Stores the first n (<= 16) lanes of v at p. */
INLINE void vstore(float *p, v16 v, int n)
{
    if (n >= 16) {
        memcpy(p, &v, sizeof v);
    } else {
        float t[16];
        memcpy(t, &v, sizeof v);
        memcpy(p, t, (size_t)n * sizeof(float));
    }
}

#define RB 8 /* query rows per block of the scores kernel (1 when decoding one token) */
/* Row stride of k^T for Tk keys: whole blocks of 32, plus 16 so that the rows of k^T do not
 * all fall in the same few cache sets (a power-of-two stride did, at T = 128) */
#define KT_STRIDE(Tk) (((Tk) + 31) / 32 * 32 + 16)

/* Raw scores s[i][j] = q_i . k_j of one head for i < Tq, j <= p0 + i (entries past that are
 * not written). q rows ldq apart, k rows ldk apart, s rows lds apart. kt: scratch of
 * S * KT_STRIDE(p0 + Tq) floats. RB rows at a time (rb, a constant where inlined: RB or 1);
 * each entry is a sum over d in order, whatever rb. */
INLINE void scores_kernel(float *s, int64_t lds, const float *q, int64_t ldq, const float *k, int64_t ldk, int Tq,
                          int p0, int S, float *kt, const int rb)
{
    int Tk = p0 + Tq, Tp = KT_STRIDE(Tk);
    /* k^T, so that a block of keys is contiguous per d: 16 keys at a time, so that each
     * store is a run of 16 floats (rows of k stay in L1 across d) */
    for (int j0 = 0; j0 < Tk; j0 += 16) {
        int nj = Tk - j0 < 16 ? Tk - j0 : 16;
        for (int d = 0; d < S; d++) {
            float *o = kt + (size_t)d * Tp + j0;
            for (int jj = 0; jj < 16; jj++)
                o[jj] = jj < nj ? k[(j0 + jj) * ldk + d] : 0.0f;
        }
    }
    for (int d = 0; d < S; d++)
        for (int j = (Tk + 15) / 16 * 16; j < Tp; j++)
            kt[(size_t)d * Tp + j] = 0;
    for (int i0 = 0; i0 < Tq; i0 += rb) {
        int nr = Tq - i0 < rb ? Tq - i0 : rb, jend = p0 + i0 + nr;
        const float *qr[RB];
        for (int r = 0; r < rb; r++)
            qr[r] = q + (i0 + (r < nr ? r : 0)) * ldq;
        for (int j0 = 0; j0 < jend; j0 += 32) {
            v16 a0[RB], a1[RB];
            for (int r = 0; r < rb; r++)
                a0[r] = a1[r] = (v16){0};
            for (int d = 0; d < S; d++) {
                const float *kr = kt + (size_t)d * Tp + j0;
                v16 k0 = lp_v16_load(kr), k1 = lp_v16_load(kr + 16);
                for (int r = 0; r < rb; r++) {
                    float qv = qr[r][d];
                    a0[r] += qv * k0;
                    a1[r] += qv * k1;
                }
            }
            for (int r = 0; r < nr; r++) {
                int n = p0 + i0 + r + 1 - j0; /* this row's entries in the block */
                float *o = s + (i0 + r) * lds + j0;
                if (n > 0)
                    vstore(o, a0[r], n);
                if (n > 16)
                    vstore(o + 16, a1[r], n - 16);
            }
        }
    }
}

#define PR 4 /* query rows per block of the weighted sum (1 when decoding one token) */

/* z_i = sum_j p[i][j] v_j of one head, j < p0 + i0 + PR-block end; p must be 0 past each
 * row's valid entries (lp_softmax_row's output). */
/* Columns [0, ns) of the block of rows pr (pr_rows of them, nr real) of z, from rows v (ldv
 * apart) j < jend; full: ns is 64 (loads straight from v, no copies). */
INLINE void pv_block(float *z, int64_t ldz, const float *const *pr, const float *v, int64_t ldv, int jend, int nr,
                     int ns, const int pr_rows, const int full)
{
    v16 acc[PR][4];
    for (int r = 0; r < pr_rows; r++)
        for (int c = 0; c < 4; c++)
            acc[r][c] = (v16){0};
    for (int j = 0; j < jend; j++) {
        const float *vr = v + j * ldv;
        v16 vv[4];
        if (full) {
            for (int c = 0; c < 4; c++)
                vv[c] = lp_v16_load(vr + 16 * c);
        } else {
            float tmp[64] = {0};
            memcpy(tmp, vr, (size_t)ns * sizeof(float));
            for (int c = 0; c < 4; c++)
                vv[c] = lp_v16_load(tmp + 16 * c);
        }
        for (int r = 0; r < pr_rows; r++) {
            float w = pr[r][j];
            for (int c = 0; c < 4; c++)
                acc[r][c] += w * vv[c];
        }
    }
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < 4 && 16 * c < ns; c++)
            vstore(z + r * ldz + 16 * c, acc[r][c], ns - 16 * c);
}

INLINE void pv_kernel(float *z, int64_t ldz, const float *p, int64_t ldp, const float *v, int64_t ldv, int Tq, int p0,
                      int S, const int pr_rows)
{
    for (int i0 = 0; i0 < Tq; i0 += pr_rows) {
        int nr = Tq - i0 < pr_rows ? Tq - i0 : pr_rows, jend = p0 + i0 + nr;
        const float *pr[PR];
        for (int r = 0; r < pr_rows; r++)
            pr[r] = p + (i0 + (r < nr ? r : 0)) * ldp;
        for (int s0 = 0; s0 < S; s0 += 64) {
            float *zb = z + i0 * ldz + s0;
            if (S - s0 >= 64)
                pv_block(zb, ldz, pr, v + s0, ldv, jend, nr, 64, pr_rows, 1);
            else
                pv_block(zb, ldz, pr, v + s0, ldv, jend, nr, S - s0, pr_rows, 0);
        }
    }
}

/* ---- one head ---- */

struct attn_ctx {
    int B, T, p0, Tk, H, grp, S;
    lp_rows q, k, v;
    float *sc, *pat, *z; /* sc, pat (B,H,T,Tk) or NULL; z (B,T,H,S) */
    float scale;
    int do_scores, do_pattern, do_z;
    void (*fn)(const struct attn_ctx *c, size_t bh, float *kt, float *buf); /* head_body for this CPU */
    int failed; /* 1: out of memory, 2: interrupted; set by any range, read after the join */
};

/* The stages asked of head bh: scores into sc (scaled, masked -inf); the pattern (from sc,
 * or from q and k) into pat or buf; z from the pattern. */
INLINE void head_body(const struct attn_ctx *c, size_t bh, float *kt, float *buf)
{
    int T = c->T, Tk = c->Tk, S = c->S, p0 = c->p0;
    size_t b = bh / (size_t)c->H, h = bh % (size_t)c->H, g = h / (size_t)c->grp;
    const float *q = c->q.p + (int64_t)b * c->q.bstride + (int64_t)h * S;
    const float *k = c->k.p + (int64_t)b * c->k.bstride + (int64_t)g * S;
    const float *v = c->v.p + (int64_t)b * c->v.bstride + (int64_t)g * S;
    float *sc = c->sc ? c->sc + bh * T * Tk : NULL, *pat = c->pat ? c->pat + bh * T * Tk : buf;
    if (c->do_scores) {
        if (T == 1)
            scores_kernel(sc, Tk, q, c->q.rstride, k, c->k.rstride, T, p0, S, kt, 1);
        else
            scores_kernel(sc, Tk, q, c->q.rstride, k, c->k.rstride, T, p0, S, kt, RB);
        for (int i = 0; i < T; i++) {
            float *row = sc + (size_t)i * Tk;
            int valid = p0 + i + 1;
            for (int j = 0; j < valid; j++)
                row[j] *= c->scale;
            for (int j = valid; j < Tk; j++)
                row[j] = -INFINITY;
        }
    }
    if (c->do_pattern) {
        if (sc) {
            for (int i = 0; i < T; i++)
                lp_softmax_row(pat + (size_t)i * Tk, sc + (size_t)i * Tk, p0 + i + 1, Tk, 1.0f);
        } else {
            if (T == 1)
                scores_kernel(pat, Tk, q, c->q.rstride, k, c->k.rstride, T, p0, S, kt, 1);
            else
                scores_kernel(pat, Tk, q, c->q.rstride, k, c->k.rstride, T, p0, S, kt, RB);
            for (int i = 0; i < T; i++)
                lp_softmax_row(pat + (size_t)i * Tk, pat + (size_t)i * Tk, p0 + i + 1, Tk, c->scale);
        }
    }
    if (c->do_z) {
        float *z = c->z + (b * T * c->H + h) * S;
        if (T == 1)
            pv_kernel(z, (int64_t)c->H * S, pat, Tk, v, c->v.rstride, T, p0, S, 1);
        else
            pv_kernel(z, (int64_t)c->H * S, pat, Tk, v, c->v.rstride, T, p0, S, PR);
    }
}

typedef void (*head_fn)(const struct attn_ctx *c, size_t bh, float *kt, float *buf);

LP_KOPT static void head_l0(const struct attn_ctx *c, size_t bh, float *kt, float *buf) { head_body(c, bh, kt, buf); }
#ifdef LP_MULTI_TARGET
LP_KOPT LP_TARGET_AVX2 static void head_l1(const struct attn_ctx *c, size_t bh, float *kt, float *buf)
{
    head_body(c, bh, kt, buf);
}
LP_KOPT LP_TARGET_AVX512 static void head_l2(const struct attn_ctx *c, size_t bh, float *kt, float *buf)
{
    head_body(c, bh, kt, buf);
}
#endif

static head_fn pick_head(void)
{
#ifdef LP_MULTI_TARGET
    int level = lp_cpu_level();
    if (level == 2)
        return head_l2;
    if (level == 1)
        return head_l1;
#endif
    return head_l0;
}

static void attn_range(void *p, size_t lo, size_t hi)
{
    struct attn_ctx *c = p;
    size_t Tp = (size_t)KT_STRIDE(c->Tk);
    float *kt = lp_malloc((size_t)c->S * Tp * sizeof(float), "attention scratch");
    float *buf = c->pat ? NULL : lp_malloc((size_t)c->T * c->Tk * sizeof(float), "attention scratch");
    if (!kt || (!c->pat && !buf)) {
        c->failed = 1;
    } else {
        for (size_t bh = lo; bh < hi; bh++) {
            if (lp_interrupted()) {
                c->failed = 2;
                break;
            }
            c->fn(c, bh, kt, buf);
        }
    }
    free(kt);
    free(buf);
}

static int run_heads(struct attn_ctx *c, int L, int scores, int pattern, int z)
{
    c->do_scores = scores, c->do_pattern = pattern, c->do_z = z;
    lp_par_for((size_t)c->B * c->H, 1, attn_range, c);
    if (c->failed == 2)
        return lp_interrupt_check() < 0 ? -1 : lp_set_error_code(LP_ERR_INTERRUPTED, "interrupted");
    if (c->failed)
        return lp_set_error_code(
            LP_ERR_NOMEM, "attention: out of memory for the scratch of layer %d (%d x %d positions)", L, c->T, c->Tk);
    return 0;
}

lp_tensor *lp_fwd_attention(lp_fwd *f, lp_track *tr, int L, lp_rows q, lp_rows k, lp_rows v, int H, int K, int S)
{
    int B = f->B, T = f->T, Tk = f->p0 + f->T;
    char sname[96], pname[96], zname[96];
    snprintf(sname, sizeof sname, "blocks.%d.attn.hook_attn_scores", L);
    snprintf(pname, sizeof pname, "blocks.%d.attn.hook_pattern", L);
    snprintf(zname, sizeof zname, "blocks.%d.attn.hook_z", L);
    int want_s = lp_fwd_wants(f, sname), want_p = want_s || lp_fwd_wants(f, pname);
    lp_tensor *sc = want_s ? lp_fwd_new(f, tr, "attention scores", 4, B, H, T, Tk) : NULL;
    lp_tensor *pat = want_p ? lp_fwd_new(f, tr, "attention pattern", 4, B, H, T, Tk) : NULL;
    lp_tensor *z = lp_fwd_new(f, tr, "attention", 4, B, T, H, S);
    if ((want_s && !sc) || (want_p && !pat) || !z)
        return NULL;
    struct attn_ctx c = {B, T, f->p0, Tk, H, H / K, S, q, k, v, sc ? sc->data : NULL, pat ? pat->data : NULL,
                         z->data, 1.0f / sqrtf((float)S), 0, 0, 0, pick_head(), 0};
    if (want_s && (run_heads(&c, L, 1, 0, 0) < 0 || lp_fwd_hook(f, sname, sc, 1, 2) < 0))
        return NULL;
    if (want_p && (run_heads(&c, L, 0, 1, 0) < 0 || lp_fwd_hook(f, pname, pat, 1, 2) < 0))
        return NULL;
    if (run_heads(&c, L, 0, !want_p, 1) < 0 || lp_fwd_hook(f, zname, z, 2, 1) < 0)
        return NULL;
    return z;
}
