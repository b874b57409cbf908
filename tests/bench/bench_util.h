/* Helpers shared by the C benchmarks: the BLAS core, a monotonic clock, medians, integer settings from the
 * environment, and a PyTorch reference script run in the same process tree. */
#ifndef LP_BENCH_UTIL_H
#define LP_BENCH_UTIL_H

/* First thing in main: gives OpenBLAS the best core this CPU runs (a restart of the binary,
 * once; core/blas_core.h) and says so on stderr, so that every benchmark measures the core a
 * loupe kernel runs. The PyTorch references it starts inherit OPENBLAS_CORETYPE: the same core. */
void bench_blas_start(char **argv);
double bench_now(void);                          /* seconds, monotonic */
double bench_median(double *v, int n);           /* sorts v */
int bench_env_int(const char *name, int def);    /* a positive integer, else def */
/* Runs `.venv/bin/python tests/bench/<script> B T reps threads` (under $LOUPE_ROOT, else the
 * current folder; $LOUPE_BENCH_VENV names another environment than .venv) and returns the number after "torch_tokens_per_s": in its output, or -1
 * when the script or the venv is missing or prints no such field. */
double bench_torch_tokens_per_s(const char *script, int B, int T, int reps, int threads);
/* The same with another field than "torch_tokens_per_s" (the number after "FIELD":). */
double bench_script_value(const char *script, const char *field, int B, int T, int reps, int threads);
/* Several fields of one run of the script into vals (-1 where missing); returns vals[0]. */
double bench_script_values(const char *script, const char *const *fields, double *vals, int n, int B, int T,
                           int reps, int threads);

#endif
