/* The interrupt flag. The kernel sets it (from a SIGINT handler or from an
 * interrupt_request on the control thread); every long loop in the backend polls it
 * between chunks of work and unwinds with an "interrupted" error. Lock-free and
 * async-signal-safe. */
#ifndef LP_INTERRUPT_H
#define LP_INTERRUPT_H

#include <stdbool.h>

void lp_interrupt_request(void); /* async-signal-safe */
void lp_interrupt_clear(void);
bool lp_interrupted(void);

/* For loops: returns -1 with the error "interrupted" (code LP_ERR_INTERRUPTED) set when the
 * flag is up, else 0.
 *   for (...) { if (lp_interrupt_check() < 0) goto fail; ... } */
int lp_interrupt_check(void);

#endif
