/* The `loupe` command: kernel, install, run, --version. */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "kernel.h"
#include "kernelspec.h"
#include "run.h"

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

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("loupe %s\n", LOUPE_VERSION);
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
