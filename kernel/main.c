/* The `loupe` command: kernel, install, run, --version. */
#include <stdio.h>
#include <string.h>

#include "core/blas_core.h"
#include "core/error.h"
#include "kernel.h"
#include "kernelspec.h"
#include "run.h"
#include "util.h"

static void usage(FILE *f)
{
    fputs("usage:\n"
          "  loupe kernel -f CONNECTION_FILE     run as a Jupyter kernel (what kernel.json starts)\n"
          "  loupe install [--user | --prefix DIR] [--name NAME] [--display-name TEXT]\n"
          "                [--interrupt-mode message|signal]\n"
          "                                      write the kernelspec (kernel.json and logos)\n"
          "  loupe run FILE.lua                  run a script's cells (split by '-- %%') headless\n"
          "  loupe --version\n",
          f);
}

/* The commands that multiply matrices (and --version, which reports the BLAS core) first
 * give OpenBLAS the best core this CPU runs: a restart of this binary, once, before anything
 * else happens (core/blas_core.h). The log line goes to the kernel's log, which is stderr
 * until the kernel captures it. */
static void blas_start(char **argv, int log)
{
    char note[320];
    if (lp_blas_core_start(argv, note, sizeof note) && log)
        lp_log("%s", note);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    int version = strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0;
    if (version || strcmp(cmd, "kernel") == 0 || strcmp(cmd, "run") == 0)
        blas_start(argv, !version); /* --version says it in its BLAS line */
    if (version) {
        char blas[512];
        printf("loupe %s\nBLAS: %s\n", LOUPE_VERSION, lp_blas_core_describe(blas, sizeof blas));
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "kernel") == 0) {
        const char *conn = NULL;
        for (int i = 2; i < argc; i++) {
            if ((strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--connection-file") == 0) && i + 1 < argc)
                conn = argv[++i];
            else if (strncmp(argv[i], "--connection-file=", 18) == 0)
                conn = argv[i] + 18;
        }
        if (!conn) {
            fprintf(stderr, "loupe kernel: missing -f CONNECTION_FILE\n");
            return 2;
        }
        return lp_kernel_main(conn);
    }
    if (strcmp(cmd, "install") == 0) {
        lp_kernelspec_opts o = {0};
        for (int i = 2; i < argc; i++) {
            const char *a = argv[i];
            const char *next = i + 1 < argc ? argv[i + 1] : NULL;
            if (strcmp(a, "--user") == 0) o.user = 1;
            else if (strcmp(a, "--prefix") == 0 && next) o.prefix = argv[++i];
            else if (strcmp(a, "--name") == 0 && next) o.name = argv[++i];
            else if (strcmp(a, "--display-name") == 0 && next) o.display_name = argv[++i];
            else if (strcmp(a, "--interrupt-mode") == 0 && next) o.interrupt_mode = argv[++i];
            else {
                fprintf(stderr, "loupe install: unknown or incomplete option '%s'\n", a);
                usage(stderr);
                return 2;
            }
        }
        char dir[4096];
        if (lp_kernelspec_install(&o, dir, sizeof dir) < 0) {
            fprintf(stderr, "loupe install: %s\n", lp_last_error());
            return 1;
        }
        printf("installed the kernelspec in %s\n", dir);
        return 0;
    }
    if (strcmp(cmd, "run") == 0) {
        if (argc != 3) {
            fprintf(stderr, "loupe run: give one FILE.lua (or - for standard input)\n");
            return 2;
        }
        return lp_run_file(argv[2]);
    }
    fprintf(stderr, "loupe: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
