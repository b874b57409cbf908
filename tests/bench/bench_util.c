/* See bench_util.h. */
#include "bench_util.h"

#include "core/blas_core.h"

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

void bench_blas_start(char **argv)
{
    char note[320];
    if (lp_blas_core_start(argv, note, sizeof note))
        fprintf(stderr, "%s\n", note);
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int bench_env_int(const char *name, int def)
{
    const char *s = getenv(name);
    return s && atoi(s) > 0 ? atoi(s) : def;
}

double bench_script_values(const char *script_name, const char *const *fields, double *vals, int n, int B, int T,
                           int reps, int threads)
{
    for (int k = 0; k < n; k++)
        vals[k] = -1;
    const char *root = getenv("LOUPE_ROOT");
    char py[512], script[512], out[] = "/tmp/loupe-bench-torch-XXXXXX";
    const char *venv = getenv("LOUPE_BENCH_VENV"); /* another environment's python (.venv-peer) */
    snprintf(py, sizeof py, "%s/%s/bin/python", root ? root : ".", venv ? venv : ".venv");
    snprintf(script, sizeof script, "%s/tests/bench/%s", root ? root : ".", script_name);
    if (access(py, X_OK) != 0 || access(script, R_OK) != 0)
        return vals[0];
    int fd = mkstemp(out);
    if (fd < 0)
        return vals[0];
    char b[16], t[16], r[16], th[16];
    snprintf(b, sizeof b, "%d", B), snprintf(t, sizeof t, "%d", T), snprintf(r, sizeof r, "%d", reps);
    snprintf(th, sizeof th, "%d", threads);
    char *argv[] = {py, script, b, t, r, th, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, 1);
    pid_t pid;
    if (posix_spawn(&pid, py, &fa, NULL, argv, environ) == 0) {
        int st;
        waitpid(pid, &st, 0);
        FILE *f = fopen(out, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f))
            for (int k = 0; k < n; k++) {
                char key[128];
                snprintf(key, sizeof key, "\"%s\":", fields[k]);
                const char *p = strstr(line, key);
                if (p)
                    vals[k] = atof(p + strlen(key));
            }
        if (f)
            fclose(f);
    }
    posix_spawn_file_actions_destroy(&fa);
    close(fd);
    unlink(out);
    return vals[0];
}

double bench_script_value(const char *script_name, const char *field, int B, int T, int reps, int threads)
{
    double v;
    return bench_script_values(script_name, &field, &v, 1, B, T, reps, threads);
}

double bench_torch_tokens_per_s(const char *script_name, int B, int T, int reps, int threads)
{
    return bench_script_value(script_name, "torch_tokens_per_s", B, T, reps, threads);
}
