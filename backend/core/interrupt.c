#include "interrupt.h"

#include <stdatomic.h>

#include "error.h"

static atomic_int lp_interrupt_flag;

void lp_interrupt_request(void) { atomic_store(&lp_interrupt_flag, 1); }
void lp_interrupt_clear(void) { atomic_store(&lp_interrupt_flag, 0); }
bool lp_interrupted(void) { return atomic_load_explicit(&lp_interrupt_flag, memory_order_relaxed) != 0; }

int lp_interrupt_check(void)
{
    if (lp_interrupted())
        return lp_set_error_code(LP_ERR_INTERRUPTED, "interrupted");
    return 0;
}
