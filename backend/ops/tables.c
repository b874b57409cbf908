/* The CPU and reference op tables, filled once by each op group. */
#include <pthread.h>

#include "ops_impl.h"

static lp_ops cpu_table, ref_table;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void fill(void)
{
    lp_cpu_fill_matmul(&cpu_table);
    lp_cpu_fill_norm(&cpu_table);
    lp_cpu_fill_activation(&cpu_table);
    lp_cpu_fill_attention(&cpu_table);
    lp_cpu_fill_embed(&cpu_table);
    lp_cpu_fill_loss(&cpu_table);
    lp_cpu_fill_optim(&cpu_table);
    lp_cpu_fill_reduce(&cpu_table);
    lp_cpu_fill_elementwise(&cpu_table);

    lp_ref_fill_matmul(&ref_table);
    lp_ref_fill_norm(&ref_table);
    lp_ref_fill_activation(&ref_table);
    lp_ref_fill_attention(&ref_table);
    lp_ref_fill_embed(&ref_table);
    lp_ref_fill_loss(&ref_table);
    lp_ref_fill_optim(&ref_table);
    lp_ref_fill_reduce(&ref_table);
    lp_ref_fill_elementwise(&ref_table);
}

const lp_ops *lp_cpu_ops(void)
{
    pthread_once(&once, fill);
    return &cpu_table;
}

const lp_ops *lp_ref_ops(void)
{
    pthread_once(&once, fill);
    return &ref_table;
}
