/* The saved activations and scratch of a batch (sae_ops.h's lp_sae_work), shared by the
 * fast path (sae_ops.c, sae_grad.c) and the reference (sae_ref.c). Private to backend/dict/. */
#ifndef LP_DICT_SAE_WORK_H
#define LP_DICT_SAE_WORK_H

#include "dict/sae_ops.h"

struct lp_sae_work {
    lp_sae_config cfg;
    int N_max, k_aux;
    size_t cap;          /* capacity of the active lists (pairs) */
    float *xin;          /* (N,d_in): x - b_dec or x */
    float *z, *f;        /* (N,d_sae) */
    float *x_hat;        /* (N,d_out) */
    float *px;           /* matryoshka: (n_prefix,N,d_out) prefix reconstructions, else NULL */
    float *G;            /* (N,d_out) then (n_prefix,N,d_out): d loss / d reconstruction */
    float *dz;           /* (N,d_sae): dense mode's d loss / d c, then d loss / d z */
    int *rowptr;         /* (N+1) active lists per token: pairs rowptr[n] .. rowptr[n+1]-1 */
    int *idx;            /* (cap) feature of each pair */
    float *cval, *dval;  /* (cap) decoder coefficient c, then d loss / d z of each pair */
    int *aidx;           /* (N,k_aux) AuxK's chosen dead features, -1-padded */
    float *aval, *adz;   /* (N,k_aux) their z and d loss / d z */
    float *aH;           /* (N,d_out) AuxK: d loss / d (a W_dec) */
    int *colptr, *colpos, *ptok; /* (d_sae+1), (cap + N*k_aux) x2: pairs by feature (>= 0 a list pair, < 0 AuxK pair -1-p), token of each */
    double *norms, *fsum, *dnorm, *dzsum; /* (d_sae) */
    float *dWencT;       /* (d_sae,d_in) sparse dW_enc, transposed */
    float *scratch;      /* batchtopk: (N*d_sae) the selection; else (cap); then each pair's threshold gradient */
    int N, dense, n_dead, ka;
    double aux_scale;
};

/* sae_ops.c: z, f and the active lists of a batch (o NULL: inference); the reconstruction
 * from features i < width into out (N,d_out). */
int lp_sae_encode_into(lp_sae_work *w, const lp_sae *s, const float *x, int N, const lp_sae_loss_opts *o,
                       int batch_mode);
void lp_sae_decode_from(float *out, const lp_sae_work *w, const lp_sae *s, const float *x, int N, int width);

#endif
