/* lp_par_for (see parallel.h). */
#include "core/parallel.h"

#include <pthread.h>

#include "device.h"

typedef struct {
    lp_range_fn fn;
    void *ctx;
    size_t lo, hi;
} range_job;

static void *run_job(void *p)
{
    range_job *j = p;
    j->fn(j->ctx, j->lo, j->hi);
    return NULL;
}

void lp_par_for(size_t n, size_t min_chunk, lp_range_fn fn, void *ctx)
{
    size_t nt = (size_t)lp_get_threads();
    if (nt > LP_PAR_MAX)
        nt = LP_PAR_MAX;
    if (min_chunk == 0)
        min_chunk = 1;
    if (nt > n / min_chunk)
        nt = n / min_chunk;
    if (nt <= 1) {
        if (n > 0)
            fn(ctx, 0, n);
        return;
    }
    pthread_t th[LP_PAR_MAX];
    range_job jobs[LP_PAR_MAX];
    int started[LP_PAR_MAX] = {0};
    for (size_t i = 0; i < nt; i++)
        jobs[i] = (range_job){fn, ctx, n * i / nt, n * (i + 1) / nt};
    for (size_t i = 1; i < nt; i++)
        started[i] = pthread_create(&th[i], NULL, run_job, &jobs[i]) == 0;
    fn(ctx, jobs[0].lo, jobs[0].hi);
    for (size_t i = 1; i < nt; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            fn(ctx, jobs[i].lo, jobs[i].hi);
    }
}
