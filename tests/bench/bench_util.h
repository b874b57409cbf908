/* Helpers shared by the C benchmarks: a monotonic clock, medians, integer settings from the
 * environment, and a PyTorch reference script run in the same process tree. */
#ifndef LP_BENCH_UTIL_H
#define LP_BENCH_UTIL_H

double bench_now(void);                          /* seconds, monotonic */
double bench_median(double *v, int n);           /* sorts v */
int bench_env_int(const char *name, int def);    /* a positive integer, else def */
/* Runs `.venv/bin/python tests/bench/<script> B T reps threads` (under $LOUPE_ROOT, else the
 * current folder; $LOUPE_BENCH_VENV names another environment than .venv) and returns the number after "torch_tokens_per_s": in its output, or -1
 * when the script or the venv is missing or prints no such field. */
double bench_torch_tokens_per_s(const char *script, int B, int T, int reps, int threads);

#endif
