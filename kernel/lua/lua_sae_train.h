/* What lua_sae_train.c (the options, loupe.sae.train) and lua_sae_live.c (the run with its
 * live figures, progress bar and history) share: the loupe.SAETraining userdata. */
#ifndef LP_LUA_SAE_TRAIN_H
#define LP_LUA_SAE_TRAIN_H

#include <lua.h>

#include "dict/sae_run.h"

#define SAE_TRAINING_MT "loupe.SAETraining"
#define REGISTRY_KEY "loupe.sae_trainings" /* weak-keyed: first SAE userdata -> SAETraining */
#define LAST_KEY "loupe.sae_training_last"  /* the last SAETraining started */
#define MAX_SWEEP 16

/* uservalues of an SAETraining: 1 the list of SAE userdata, 2 the activation stream */
enum { UV_SAES = 1, UV_STREAM, UV_N = UV_STREAM };

typedef struct sae_training {
    lp_sae_run *run; /* owns the trainers; borrows the SAEs and the stream (uservalues) */
    long total;
    int batch, running;
    char labels[MAX_SWEEP][32]; /* "k=32", "l1=5" for a sweep's series; "" alone */
} sae_training;

/* Runs the training at stack index ti to tr->total, showing four live figures (loss, L0,
 * explained variance, dead features against tokens) and a progress bar when live; sets each
 * SAE's history. Raises on error or interrupt (the state stays consistent for resume). */
void lp_lua_sae_training_run(lua_State *L, int ti, int live);

#endif
