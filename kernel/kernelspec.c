#include "kernelspec.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return lp_set_error_code(LP_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return lp_set_error_code(LP_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
    return 0;
}

static int write_file(const char *dir, const char *name, const void *data, size_t n)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return lp_set_error_code(LP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    size_t w = fwrite(data, 1, n, f);
    if (fclose(f) != 0 || w != n)
        return lp_set_error_code(LP_ERR_IO, "cannot write %s", path);
    return 0;
}

int lp_kernelspec_install(const lp_kernelspec_opts *o, char *dir, size_t cap)
{
    const char *name = o->name ? o->name : "loupe";
    const char *mode = o->interrupt_mode ? o->interrupt_mode : "message";
    if (strcmp(mode, "message") != 0 && strcmp(mode, "signal") != 0)
        return lp_set_error("--interrupt-mode must be \"message\" or \"signal\", not \"%s\"", mode);
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.'))
            return lp_set_error("kernel name \"%s\": use lower-case letters, digits, '-', '_' and '.'", name);
    char exe[PATH_MAX];
    if (o->exe) {
        if (!realpath(o->exe, exe))
            return lp_set_error_code(LP_ERR_IO, "cannot find %s: %s", o->exe, strerror(errno));
    } else {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n < 0)
            return lp_set_error_code(LP_ERR_IO, "cannot find the loupe executable: %s", strerror(errno));
        exe[n] = '\0';
    }
    if (o->prefix) {
        snprintf(dir, cap, "%s/share/jupyter/kernels/%s", o->prefix, name);
    } else if (o->user || geteuid() != 0) {
        const char *data = getenv("JUPYTER_DATA_DIR");
        const char *home = getenv("HOME");
        if (data && *data)
            snprintf(dir, cap, "%s/kernels/%s", data, name);
        else if (home && *home)
            snprintf(dir, cap, "%s/.local/share/jupyter/kernels/%s", home, name);
        else
            return lp_set_error("HOME is not set: use --prefix DIR");
    } else {
        snprintf(dir, cap, "/usr/local/share/jupyter/kernels/%s", name);
    }
    if (mkdir_p(dir) < 0)
        return -1;
    char display[256];
    if (o->display_name)
        snprintf(display, sizeof display, "%s", o->display_name);
    else if (strcmp(name, "loupe") == 0)
        snprintf(display, sizeof display, "Loupe (Lua)");
    else
        snprintf(display, sizeof display, "Loupe (Lua, %s)", name);
    json_t *spec = json_pack("{s:[s, s, s, s], s:s, s:s, s:s, s:{}, s:{}}", "argv", exe, "kernel", "-f",
                             "{connection_file}", "display_name", display, "language", "lua", "interrupt_mode",
                             mode, "env", "metadata");
    char *text = spec ? json_dumps(spec, JSON_INDENT(2)) : NULL;
    json_decref(spec);
    if (!text)
        return lp_set_error_code(LP_ERR_NOMEM, "out of memory");
    int rc = write_file(dir, "kernel.json", text, strlen(text));
    free(text);
    if (rc < 0)
        return -1;
    if (write_file(dir, "logo-svg.svg", lp_logo_svg, strlen(lp_logo_svg)) < 0)
        return -1;
    static const int sizes[2] = {32, 64};
    for (int i = 0; i < 2; i++) {
        size_t n;
        unsigned char *png = lp_logo_png(sizes[i], &n);
        if (!png)
            return lp_set_error_code(LP_ERR_NOMEM, "out of memory drawing the logo");
        char fname[32];
        snprintf(fname, sizeof fname, "logo-%dx%d.png", sizes[i], sizes[i]);
        rc = write_file(dir, fname, png, n);
        free(png);
        if (rc < 0)
            return -1;
    }
    return 0;
}
