/* backend/core/blas_core: which OpenBLAS core to restart with, and what the CPU runs.
 * Criterion runs each test in a process of its own, so the environment changes stay there.
 * No test here lets lp_blas_core_start exec: they pass argv NULL or set the guard. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/blas_core.h"

Test(blas_core, levels_follow_the_instruction_set_and_ignore_case)
{
    cr_assert_eq(lp_blas_core_level("SkylakeX"), 3);
    cr_assert_eq(lp_blas_core_level("skylakex"), 3, "OPENBLAS_CORETYPE is case-insensitive");
    cr_assert_eq(lp_blas_core_level("Cooperlake"), 3);
    cr_assert_eq(lp_blas_core_level("Haswell"), 2);
    cr_assert_eq(lp_blas_core_level("Zen"), 2);
    cr_assert_eq(lp_blas_core_level("Sandybridge"), 1);
    cr_assert_eq(lp_blas_core_level("Prescott"), 0);
    cr_assert_eq(lp_blas_core_level("Nehalem"), 0);
    cr_assert_eq(lp_blas_core_level("Zen7"), -1, "a name not known here");
    cr_assert_eq(lp_blas_core_level(""), -1);
    cr_assert_eq(lp_blas_core_level(NULL), -1);
}

Test(blas_core, a_weaker_core_is_raised_to_what_the_cpu_runs)
{
    cr_assert_str_eq(lp_blas_core_pick("Prescott", "SkylakeX", 1, NULL, NULL), "SkylakeX");
    cr_assert_str_eq(lp_blas_core_pick("Haswell", "SkylakeX", 1, NULL, NULL), "SkylakeX");
    cr_assert_str_eq(lp_blas_core_pick("Zen", "SkylakeX", 1, NULL, NULL), "SkylakeX");
    cr_assert_str_eq(lp_blas_core_pick("Nehalem", "Haswell", 1, NULL, NULL), "Haswell");
    cr_assert_str_eq(lp_blas_core_pick("Sandybridge", "Haswell", 1, NULL, NULL), "Haswell");
}

Test(blas_core, a_core_as_good_or_unknown_is_left_alone)
{
    cr_assert_null(lp_blas_core_pick("SkylakeX", "SkylakeX", 1, NULL, NULL));
    cr_assert_null(lp_blas_core_pick("Cooperlake", "SkylakeX", 1, NULL, NULL), "never a downgrade");
    cr_assert_null(lp_blas_core_pick("SapphireRapids", "SkylakeX", 1, NULL, NULL));
    cr_assert_null(lp_blas_core_pick("Haswell", "Haswell", 1, NULL, NULL));
    cr_assert_null(lp_blas_core_pick("Zen", "Haswell", 1, NULL, NULL));
    cr_assert_null(lp_blas_core_pick("SkylakeX", "Haswell", 1, NULL, NULL), "never above the CPU's best");
    cr_assert_null(lp_blas_core_pick("Zen7", "SkylakeX", 1, NULL, NULL), "an unknown core may be newer");
    cr_assert_null(lp_blas_core_pick("Prescott", NULL, 1, NULL, NULL), "a CPU without AVX2");
}

Test(blas_core, the_user_a_fixed_build_and_the_guard_prevent_a_restart)
{
    cr_assert_null(lp_blas_core_pick("Prescott", "SkylakeX", 1, "Prescott", NULL), "the user's choice is kept");
    cr_assert_null(lp_blas_core_pick("Prescott", "SkylakeX", 1, "", NULL), "even an empty one");
    cr_assert_null(lp_blas_core_pick("Prescott", "SkylakeX", 0, NULL, NULL), "no DYNAMIC_ARCH: the variable does nothing");
    cr_assert_null(lp_blas_core_pick("Prescott", "SkylakeX", 1, NULL, "Prescott"), "restarted once already");
}

/* The flags line of /proc/cpuinfo: what the Linux kernel says the CPU runs (it hides AVX-512
 * where it does not save the registers), an oracle independent of the compiler's tests. */
static int cpuinfo_flags(char *out, size_t cap)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return -1;
    char *line = NULL;
    size_t n = 0;
    int found = -1;
    while (getline(&line, &n, f) > 0)
        if (strncmp(line, "flags", 5) == 0) {
            snprintf(out, cap, " %s ", strchr(line, ':') ? strchr(line, ':') + 1 : line);
            found = 0;
            break;
        }
    free(line);
    fclose(f);
    for (char *p = out; found == 0 && *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    return found;
}

static int has(const char *flags, const char *f)
{
    char w[64];
    snprintf(w, sizeof w, " %s ", f);
    return strstr(flags, w) != NULL;
}

Test(blas_core, the_cpu_core_agrees_with_proc_cpuinfo)
{
#if !defined(__x86_64__)
    cr_skip_test("not x86-64: no OpenBLAS x86 cores to choose");
#endif
    static char flags[8192];
    if (cpuinfo_flags(flags, sizeof flags) < 0)
        cr_skip_test("no flags line in /proc/cpuinfo");
    const char *want = NULL;
    if (has(flags, "avx512f") && has(flags, "avx512bw") && has(flags, "avx512dq") && has(flags, "avx512vl"))
        want = "SkylakeX";
    else if (has(flags, "avx2") && has(flags, "fma"))
        want = "Haswell";
    const char *got = lp_blas_cpu_core();
    if (!want)
        cr_assert_null(got, "got %s on a CPU without AVX2", got);
    else
        cr_assert(got && strcmp(got, want) == 0, "cpuinfo says %s, lp_blas_cpu_core says %s", want, got ? got : "NULL");
}

Test(blas_core, start_without_argv_reports_instead_of_restarting)
{
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv(LP_BLAS_RESTART_ENV);
    char note[320], line[512];
    /* Whether this machine's OpenBLAS would be restarted; this process keeps its core either way. */
    int dynamic = strstr(lp_blas_core_describe(line, sizeof line), "DYNAMIC_ARCH") != NULL;
    int expect = dynamic && lp_blas_core_pick(lp_blas_core(), lp_blas_cpu_core(), 1, NULL, NULL) != NULL;
    int said = lp_blas_core_start(NULL, note, sizeof note);
    cr_assert_eq(said, expect, "said %d: %s", said, note);
    if (said) {
        cr_assert(strstr(note, "failed (no argv)"), "%s", note);
        cr_assert(strstr(note, lp_blas_core()), "names the core OpenBLAS chose: %s", note);
    } else {
        cr_assert_str_eq(note, "");
    }
    cr_assert_null(getenv("OPENBLAS_CORETYPE"), "a failed restart leaves the environment as it was");
    cr_assert_null(getenv(LP_BLAS_RESTART_ENV));
}

Test(blas_core, the_restarted_process_reports_once_and_drops_the_guard)
{
    char core[64], note[320], line[512];
    snprintf(core, sizeof core, "%s", lp_blas_core());
    setenv("OPENBLAS_CORETYPE", core, 1); /* as if OpenBLAS had honoured the request */
    setenv(LP_BLAS_RESTART_ENV, "Prescott", 1);
    cr_assert_eq(lp_blas_core_start((char *[]){"x", NULL}, note, sizeof note), 1);
    cr_assert(strstr(note, "chose its Prescott core") && strstr(note, "restarted with OPENBLAS_CORETYPE="), "%s", note);
    cr_assert_null(getenv(LP_BLAS_RESTART_ENV), "children do not inherit the guard");
    cr_assert_str_eq(getenv("OPENBLAS_CORETYPE"), core, "they do inherit the core");
    lp_blas_core_describe(line, sizeof line);
    cr_assert(strstr(line, "OpenBLAS chose Prescott; restarted with OPENBLAS_CORETYPE="), "%s", line);
    cr_assert_eq(strncmp(line, "core ", 5), 0, "%s", line);
}

Test(blas_core, a_request_openblas_ignored_is_reported_not_retried)
{
    char note[320];
    setenv("OPENBLAS_CORETYPE", "NoSuchCore", 1);
    setenv(LP_BLAS_RESTART_ENV, "Prescott", 1);
    cr_assert_eq(lp_blas_core_start((char *[]){"x", NULL}, note, sizeof note), 1);
    cr_assert(strstr(note, "but OpenBLAS runs"), "%s", note);
}

Test(blas_core, a_user_choice_is_kept_and_described)
{
    char note[320], line[512];
    setenv("OPENBLAS_CORETYPE", "Prescott", 1);
    unsetenv(LP_BLAS_RESTART_ENV);
    cr_assert_eq(lp_blas_core_start((char *[]){"x", NULL}, note, sizeof note), 0);
    cr_assert_str_eq(note, "");
    cr_assert(strstr(lp_blas_core_describe(line, sizeof line), "(OPENBLAS_CORETYPE=Prescott)"), "%s", line);
}
