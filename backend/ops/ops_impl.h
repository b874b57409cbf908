/* Private to backend/ops: each source file fills its entries of an op table, so that a
 * signature is written once (in ops.h). <group>.c fills the fast CPU table, <group>_ref.c
 * the reference table. */
#ifndef LP_OPS_IMPL_H
#define LP_OPS_IMPL_H

#include "ops.h"

void lp_cpu_fill_matmul(lp_ops *t);
void lp_cpu_fill_norm(lp_ops *t);
void lp_cpu_fill_activation(lp_ops *t);
void lp_cpu_fill_attention(lp_ops *t);
void lp_cpu_fill_embed(lp_ops *t);
void lp_cpu_fill_loss(lp_ops *t);
void lp_cpu_fill_optim(lp_ops *t);
void lp_cpu_fill_reduce(lp_ops *t);
void lp_cpu_fill_elementwise(lp_ops *t);

void lp_ref_fill_matmul(lp_ops *t);
void lp_ref_fill_norm(lp_ops *t);
void lp_ref_fill_activation(lp_ops *t);
void lp_ref_fill_attention(lp_ops *t);
void lp_ref_fill_embed(lp_ops *t);
void lp_ref_fill_loss(lp_ops *t);
void lp_ref_fill_optim(lp_ops *t);
void lp_ref_fill_reduce(lp_ops *t);
void lp_ref_fill_elementwise(lp_ops *t);

/* Rows per chunk between interrupt checks for a loop doing `work` flops per row. */
static inline long lp_chunk_rows(double work_per_row)
{
    double r = 2e8 / (work_per_row > 1 ? work_per_row : 1);
    return r < 1 ? 1 : (r > 1e9 ? 1000000000L : (long)r);
}

#endif
