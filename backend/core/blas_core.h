/* Which OpenBLAS core (its set of kernels for one CPU family) runs the matrix products, and
 * a one-time restart that gives a DYNAMIC_ARCH OpenBLAS a better core when it chose one
 * weaker than the CPU runs.
 *
 * OpenBLAS picks its core from the CPU's family and model numbers. A CPU it does not know,
 * or a virtual machine that reports a generic model ("Intel(R) Xeon(R) Processor"), gets the
 * Prescott core (SSE3): matrix products about 3x slower than the SkylakeX core on an AVX-512
 * CPU. OpenBLAS reads OPENBLAS_CORETYPE in its library constructor, before main, and has no
 * public call that switches the core at run time, so the fix is an exec of the same binary
 * with the variable set, done once, at the very start of main:
 *
 *   int main(int argc, char **argv)
 *   {
 *       char note[256];
 *       if (lp_blas_core_start(argv, note, sizeof note))
 *           log_line(note);          // a restart happened, or could not
 *       ...
 *
 * The core asked for is one the CPU runs (checked with the compiler's CPU feature tests,
 * which also check that the OS saves the AVX-512 state), never a guess from the model name.
 * A user's OPENBLAS_CORETYPE is always kept. The restarted process finds LOUPE_BLAS_RESTARTED
 * (the core OpenBLAS chose at first) in its environment and never restarts again; it removes
 * that guard, and keeps OPENBLAS_CORETYPE so that processes it starts (a benchmark's PyTorch
 * reference, a cell's os.execute) run the same core. exec keeps the PID, the parent, open
 * descriptors, ignored signals and the signal mask; nothing else has run yet.
 */
#ifndef LP_BLAS_CORE_H
#define LP_BLAS_CORE_H

#include <stddef.h>

/* The guard variable: set to the core OpenBLAS chose, in the environment of the restart. */
#define LP_BLAS_RESTART_ENV "LOUPE_BLAS_RESTARTED"

/* The core OpenBLAS runs now ("SkylakeX", "Haswell", "Prescott"). Borrowed, never NULL. */
const char *lp_blas_core(void);

/* The instruction set an OpenBLAS core name needs: 3 AVX-512 (SkylakeX, Cooperlake,
 * SapphireRapids), 2 AVX2 and FMA (Haswell, Zen, Excavator), 1 AVX (Sandybridge, the
 * Bulldozer family), 0 SSE and older (Prescott, Core2, Nehalem, ...), -1 a name not known
 * here (a newer core: left alone). Case-insensitive, as OPENBLAS_CORETYPE is. */
int lp_blas_core_level(const char *core);

/* The best core this CPU runs among those asked for here: "SkylakeX" (AVX-512 F, BW, DQ,
 * VL), "Haswell" (AVX2 and FMA), or NULL (older CPUs, or not x86). Static strings. */
const char *lp_blas_cpu_core(void);

/* The decision, without side effects (tests give it every case): the core to restart with,
 * or NULL to leave OpenBLAS alone. current: what OpenBLAS runs; cpu_best: lp_blas_cpu_core();
 * dynamic_arch: whether this OpenBLAS reads OPENBLAS_CORETYPE at all; user_env and guard:
 * the values of OPENBLAS_CORETYPE and LP_BLAS_RESTART_ENV (NULL when unset). */
const char *lp_blas_core_pick(const char *current, const char *cpu_best, int dynamic_arch, const char *user_env,
                              const char *guard);

/* At the start of main, before any output or thread of ours: restarts the binary
 * (/proc/self/exe, the same argv and environment) with OPENBLAS_CORETYPE set when
 * lp_blas_core_pick says so; does not return then. Otherwise returns 1 with one line for the
 * log in note (the restart that happened, one that OpenBLAS did not honour, or one that could
 * not be made and why), or 0 with note "" when there is nothing to say. */
int lp_blas_core_start(char **argv, char *note, size_t cap);

/* One line for --version and reports: "core SkylakeX (OpenBLAS chose Prescott; restarted
 * with OPENBLAS_CORETYPE=SkylakeX); OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ...". */
const char *lp_blas_core_describe(char *buf, size_t cap);

#endif
