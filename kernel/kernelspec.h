/* `loupe install`: writes the kernelspec folder (kernel.json and the logos) that Jupyter
 * frontends read to start this kernel. */
#ifndef LP_KERNELSPEC_H
#define LP_KERNELSPEC_H

#include <stddef.h>

typedef struct lp_kernelspec_opts {
    const char *prefix;         /* NULL: --user or the system folder */
    int user;                   /* ~/.local/share/jupyter/kernels */
    const char *name;           /* folder name, default "loupe" */
    const char *display_name;   /* default "Loupe (Lua)" */
    const char *interrupt_mode; /* "message" (default) or "signal" */
    const char *exe;            /* the loupe executable; NULL = this process's */
} lp_kernelspec_opts;

/* Writes the kernelspec; returns 0 and the folder in dir, or -1 with lp_last_error(). */
int lp_kernelspec_install(const lp_kernelspec_opts *o, char *dir, size_t cap);

/* A PNG of the logo, size x size pixels (malloc'd; *len set), or NULL. */
unsigned char *lp_logo_png(int size, size_t *len);
extern const char lp_logo_svg[];

#endif
