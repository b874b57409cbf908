#include "device.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "ops/ops.h"
#ifdef LOUPE_HAVE_CUDA
#include <dlfcn.h>
#include <limits.h>
#include <libgen.h>

#include "cuda/cuda_backend.h"
#endif

/* ---- the CPU backend ---- */

static void *cpu_alloc(size_t nbytes, const char *what)
{
    /* Linux overcommits: a malloc larger than the machine succeeds and the process is killed
     * when the pages are touched. Refuse what cannot fit in physical memory up front. */
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    char b[32];
    if (pages > 0 && psize > 0 && nbytes / (size_t)psize > (size_t)pages) {
        char m[32];
        lp_set_error_code(LP_ERR_NOMEM, "cannot allocate %s for %s (the machine has %s)",
                          lp_format_bytes(nbytes, b, sizeof b), what,
                          lp_format_bytes((size_t)pages * (size_t)psize, m, sizeof m));
        return NULL;
    }
    void *p = NULL;
    if (lp_alloc_fail_now() || posix_memalign(&p, 64, nbytes ? nbytes : 64) != 0) {
        lp_set_error_code(LP_ERR_NOMEM, "cannot allocate %s for %s", lp_format_bytes(nbytes, b, sizeof b), what);
        return NULL;
    }
    return p;
}

static void cpu_free(void *p) { free(p); }

static int cpu_memcpy(void *dst, const void *src, size_t n)
{
    memcpy(dst, src, n);
    return 0;
}

static int cpu_sync(void) { return 0; }

static lp_backend cpu_backend = {
    .name = "cpu",
    .device = LP_DEVICE_CPU,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_memcpy,
    .to_host = cpu_memcpy,
    .copy = cpu_memcpy,
    .synchronize = cpu_sync,
    .ops = NULL, /* set on first use: lp_cpu_ops() is a function */
};

/* ---- CUDA discovery (once, lazily) ---- */

static int cuda_state; /* 0 unknown, 1 available, -1 not */
static char cuda_reason[256];
static const lp_backend *cuda_be;

#ifdef LOUPE_HAVE_CUDA
/* The CUDA path is a module (libloupe_cuda.so) opened only when a GPU is asked for, so that
 * a CPU-only session never maps cuBLAS (hundreds of MB) and starts in milliseconds. Looked
 * for in: $LOUPE_CUDA_MODULE, the build's lib folder, beside the executable, ../lib, and the
 * loader's search path. */
typedef const lp_backend *(*cuda_init_fn)(char *reason, size_t cap);

static cuda_init_fn cuda_open(char *why, size_t cap)
{
    char exe[PATH_MAX], dir[PATH_MAX], cand[5][PATH_MAX + 64];
    int n = 0;
    const char *env = getenv("LOUPE_CUDA_MODULE");
    if (env && *env)
        snprintf(cand[n++], sizeof cand[0], "%s", env);
    snprintf(cand[n++], sizeof cand[0], "%s", LOUPE_CUDA_MODULE_PATH);
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        snprintf(dir, sizeof dir, "%s", dirname(exe));
        snprintf(cand[n++], sizeof cand[0], "%s/libloupe_cuda.so", dir);
        snprintf(cand[n++], sizeof cand[0], "%s/../lib/libloupe_cuda.so", dir);
    }
    snprintf(cand[n++], sizeof cand[0], "libloupe_cuda.so");
    why[0] = '\0';
    for (int i = 0; i < n; i++) {
        void *h = dlopen(cand[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            if (!why[0])
                snprintf(why, cap, "cannot load the CUDA module: %s", dlerror());
            continue;
        }
        cuda_init_fn f = (cuda_init_fn)dlsym(h, "lp_cuda_backend_init");
        if (f)
            return f;
        snprintf(why, cap, "%.200s has no lp_cuda_backend_init", cand[i]);
        dlclose(h);
    }
    return NULL;
}
#endif

static void cuda_probe(void)
{
    if (cuda_state)
        return;
#ifdef LOUPE_HAVE_CUDA
    cuda_init_fn init = cuda_open(cuda_reason, sizeof cuda_reason);
    cuda_be = init ? init(cuda_reason, sizeof cuda_reason) : NULL;
#else
    snprintf(cuda_reason, sizeof cuda_reason, "loupe was built without CUDA");
#endif
    cuda_state = cuda_be ? 1 : -1;
}

bool lp_cuda_built(void)
{
#ifdef LOUPE_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

const char *lp_cuda_unavailable_reason(void)
{
    cuda_probe();
    return cuda_state > 0 ? "" : cuda_reason;
}

bool lp_device_available(lp_device dev)
{
    if (dev == LP_DEVICE_CPU)
        return true;
    cuda_probe();
    return dev == LP_DEVICE_CUDA && cuda_state > 0;
}

const lp_backend *lp_backend_get(lp_device dev)
{
    if (dev == LP_DEVICE_CPU) {
        if (!cpu_backend.ops)
            cpu_backend.ops = lp_cpu_ops();
        return &cpu_backend;
    }
    if (dev != LP_DEVICE_CUDA) {
        lp_set_error("unknown device %d", (int)dev);
        return NULL;
    }
    cuda_probe();
    if (cuda_state < 0) {
        lp_set_error_code(LP_ERR_DEVICE, "CUDA is not available: %s", cuda_reason);
        return NULL;
    }
    return cuda_be;
}

/* ---- choosing ---- */

static int default_dev = -1;

int lp_device_parse(const char *name, lp_device *out)
{
    if (name && strcmp(name, "cpu") == 0) {
        *out = LP_DEVICE_CPU;
        return 0;
    }
    if (name && (strcmp(name, "cuda") == 0 || strcmp(name, "gpu") == 0)) {
        *out = LP_DEVICE_CUDA;
        return 0;
    }
    return lp_set_error("unknown device \"%s\" (expected \"cpu\" or \"cuda\")", name ? name : "");
}

const char *lp_device_name(lp_device dev) { return dev == LP_DEVICE_CUDA ? "cuda" : "cpu"; }

static lp_note_fn note_fn;

void lp_set_note_handler(lp_note_fn fn) { note_fn = fn; }

static void note(const char *fmt, const char *arg)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg);
    if (note_fn)
        note_fn(msg);
    else
        fprintf(stderr, "loupe: %s\n", msg);
}

lp_device lp_default_device(void)
{
    if (default_dev >= 0)
        return (lp_device)default_dev;
    const char *env = getenv("LOUPE_DEVICE");
    lp_device want = LP_DEVICE_CUDA;
    if (env && *env && lp_device_parse(env, &want) < 0)
        note("LOUPE_DEVICE=%s is not cpu or cuda; ignored", env);
    if (want == LP_DEVICE_CUDA && !lp_device_available(LP_DEVICE_CUDA)) {
        if (lp_cuda_built() || (env && strcmp(env, "cuda") == 0))
            note("%s; using the CPU", cuda_reason);
        want = LP_DEVICE_CPU;
    }
    default_dev = (int)want;
    return want;
}

int lp_set_default_device(lp_device dev)
{
    if (!lp_backend_get(dev))
        return -1;
    default_dev = (int)dev;
    return 0;
}

/* ---- threads ---- */

static int n_threads;

void lp_set_threads(int n)
{
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    n_threads = n;
    openblas_set_num_threads(n);
}

int lp_get_threads(void)
{
    if (n_threads <= 0)
        n_threads = openblas_get_num_threads();
    return n_threads;
}

int lp_blas_threads_begin(long width)
{
    int n = lp_get_threads();
    if (width < LP_BLAS_NARROW && n > 1)
        openblas_set_num_threads(1);
    return n;
}

void lp_blas_threads_end(int saved)
{
    if (saved > 1)
        openblas_set_num_threads(saved);
}
