/* See blas_core.h. */
#include "core/blas_core.h"

#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* OpenBLAS's x86 core names (gotoblas_corename) by the instruction set their kernels use. */
static const struct {
    const char *name;
    int level;
} core_levels[] = {
    {"SkylakeX", 3},    {"Cooperlake", 3},  {"SapphireRapids", 3},
    {"Haswell", 2},     {"Zen", 2},         {"Excavator", 2},
    {"Sandybridge", 1}, {"Bulldozer", 1},   {"Piledriver", 1},  {"Steamroller", 1},
    {"Prescott", 0},    {"Core2", 0},       {"Penryn", 0},      {"Dunnington", 0}, {"Nehalem", 0},
    {"Atom", 0},        {"Nano", 0},        {"Bobcat", 0},      {"Barcelona", 0},  {"Opteron", 0},
    {"Opteron(SSE3)", 0}, {"Athlon", 0},    {"Banias", 0},      {"Northwood", 0},  {"Coppermine", 0},
    {"Katmai", 0},
};

/* Set in a restarted process: what OpenBLAS chose by itself, and what we asked for. */
static char first_core[32];
static char asked_core[32];

const char *lp_blas_core(void)
{
    const char *c = openblas_get_corename();
    return c ? c : "unknown";
}

int lp_blas_core_level(const char *core)
{
    if (!core)
        return -1;
    for (size_t i = 0; i < sizeof core_levels / sizeof core_levels[0]; i++)
        if (strcasecmp(core, core_levels[i].name) == 0)
            return core_levels[i].level;
    return -1;
}

const char *lp_blas_cpu_core(void)
{
#if defined(__x86_64__) || defined(__i386__)
    /* libgcc's tests report AVX and AVX-512 features only when the OS saves their registers
     * (XCR0), so a core chosen here never faults. */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
#endif
    return NULL;
}

const char *lp_blas_core_pick(const char *current, const char *cpu_best, int dynamic_arch, const char *user_env,
                              const char *guard)
{
    if (guard || user_env || !dynamic_arch || !cpu_best)
        return NULL; /* restarted once already; the user's choice; a fixed build; nothing better */
    int have = lp_blas_core_level(current), can = lp_blas_core_level(cpu_best);
    if (have < 0 || can < 0)
        return NULL; /* a core we do not know may be newer and better than ours */
    return have < can ? cpu_best : NULL;
}

static int dynamic_arch(void)
{
    const char *cfg = openblas_get_config();
    return cfg && strstr(cfg, "DYNAMIC_ARCH") != NULL;
}

static void copy(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src ? src : ""); }

int lp_blas_core_start(char **argv, char *note, size_t cap)
{
    char dummy[1];
    if (!note || cap == 0)
        note = dummy, cap = sizeof dummy;
    note[0] = '\0';
    const char *user = getenv("OPENBLAS_CORETYPE");
    const char *guard = getenv(LP_BLAS_RESTART_ENV);
    const char *cur = lp_blas_core();
    if (guard) { /* the restarted process: report, never restart again */
        copy(first_core, sizeof first_core, guard);
        copy(asked_core, sizeof asked_core, user);
        unsetenv(LP_BLAS_RESTART_ENV);
        if (!asked_core[0])
            return 0; /* the guard without a request: nothing of ours to report */
        if (strcasecmp(cur, asked_core) == 0)
            snprintf(note, cap, "BLAS: OpenBLAS chose its %s core on this CPU, which runs %s: restarted with "
                     "OPENBLAS_CORETYPE=%s", first_core, asked_core, asked_core);
        else
            snprintf(note, cap, "BLAS: restarted with OPENBLAS_CORETYPE=%s, but OpenBLAS runs %s: matrix "
                     "products are slower than this CPU allows", asked_core, cur);
        return 1;
    }
    const char *cpu = lp_blas_cpu_core();
    const char *want = lp_blas_core_pick(cur, cpu, dynamic_arch(), user, NULL);
    if (!want)
        return 0;
    char chose[32];
    copy(chose, sizeof chose, cur);
    const char *why = "no argv";
    if (argv && argv[0]) {
        if (setenv("OPENBLAS_CORETYPE", want, 1) == 0 && setenv(LP_BLAS_RESTART_ENV, chose, 1) == 0)
            execv("/proc/self/exe", argv); /* returns only on failure */
        why = strerror(errno);
        unsetenv("OPENBLAS_CORETYPE");
        unsetenv(LP_BLAS_RESTART_ENV);
    }
    snprintf(note, cap, "BLAS: OpenBLAS chose its %s core on this CPU, which runs %s, and a restart with "
             "OPENBLAS_CORETYPE=%s failed (%s): set that variable before starting for faster matrix products",
             chose, want, want, why);
    return 1;
}

const char *lp_blas_core_describe(char *buf, size_t cap)
{
    const char *cur = lp_blas_core(), *cfg = openblas_get_config();
    const char *user = getenv("OPENBLAS_CORETYPE");
    char how[160];
    if (first_core[0] && asked_core[0])
        snprintf(how, sizeof how, "OpenBLAS chose %s; restarted with OPENBLAS_CORETYPE=%s", first_core, asked_core);
    else if (user)
        snprintf(how, sizeof how, "OPENBLAS_CORETYPE=%s", user);
    else
        snprintf(how, sizeof how, "chosen by OpenBLAS");
    snprintf(buf, cap, "core %s (%s); %s", cur, how, cfg ? cfg : "OpenBLAS");
    return buf;
}
