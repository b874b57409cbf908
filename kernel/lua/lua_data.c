/* Lua bindings for training data: the BPE trainer and token datasets (see lua_data.h). */
#include "lua_data.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "data/dataset.h"
#include "lua_api.h"
#include "lua_tensor.h"
#include "lua_tokenizer.h"
#include "progress.h"
#include "rng.h"
#include "tokenizer/train.h"
#include "util.h"

#define DATASET_MT "loupe.Dataset"
#define TRAINER_MT "loupe.BpeTrainerBox"
#define DEFAULT_SEED 1234


/* Collects the strings of opts[key] (a string or an array of strings) into an array that
 * lives in a userdata left on the stack; the strings stay alive in opts. Returns the count. */
static size_t string_list(lua_State *L, int opts, const char *key, const char ***out)
{
    lua_getfield(L, opts, key);
    int v = lua_gettop(L);
    size_t n = lua_isstring(L, v) ? 1 : lua_istable(L, v) ? (size_t)luaL_len(L, v) : 0;
    if (!lua_isnil(L, v) && !lua_isstring(L, v) && !lua_istable(L, v))
        luaL_error(L, "%s must be a string or a list of strings", key);
    const char **a = lua_newuserdatauv(L, (n ? n : 1) * sizeof *a, 0);
    if (lua_isstring(L, v)) {
        a[0] = lua_tostring(L, v);
    } else {
        for (size_t i = 0; i < n; i++) {
            lua_geti(L, v, (lua_Integer)i + 1);
            if (!lua_isstring(L, -1))
                luaL_error(L, "%s[%d] must be a string", key, (int)i + 1);
            a[i] = lua_tostring(L, -1); /* kept alive by the table */
            lua_pop(L, 1);
        }
    }
    lua_remove(L, v); /* the table stays referenced by opts */
    *out = a;
    return n;
}

/* ---- loupe.tokenizer_train ---- */

typedef struct train_progress {
    lua_State *L;
    int enabled, started;
    double t0, last;
    double done, total;
    int final;
    char id[64];
} train_progress;

static int publish_progress(lua_State *L)
{
    train_progress *p = lua_touserdata(L, 1);
    json_t *b = lp_display_progress("tokenizer", p->done, p->total, lp_now_s() - p->t0, p->final);
    if (!b)
        return lp_lua_backend_error(L, NULL);
    lp_lua_publish(L, b, p->id, p->started);
    return 0;
}

/* Publishes at most ~4 times a second; a failure to publish turns the bar off, never
 * unwinds through the trainer. */
static void on_progress(void *ud, const char *phase, double done, double total)
{
    (void)phase;
    train_progress *p = ud;
    double t = lp_now_s();
    if (!p->enabled || (p->started && !p->final && t - p->last < 0.25))
        return;
    p->done = done;
    p->total = total;
    lua_pushcfunction(p->L, publish_progress);
    lua_pushlightuserdata(p->L, p);
    if (lua_pcall(p->L, 1, 0, 0) != LUA_OK) {
        lua_pop(p->L, 1);
        p->enabled = 0;
        return;
    }
    p->started = 1;
    p->last = t;
}

static int trainer_gc(lua_State *L)
{
    lp_bpe_trainer **box = luaL_checkudata(L, 1, TRAINER_MT);
    lp_bpe_trainer_free(*box);
    *box = NULL;
    return 0;
}

static int l_tokenizer_train(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer vocab = 4096, minf = 0;
    lua_getfield(L, 1, "vocab_size");
    if (!lua_isnil(L, -1))
        vocab = luaL_checkinteger(L, -1);
    lua_getfield(L, 1, "min_frequency");
    if (!lua_isnil(L, -1))
        minf = luaL_checkinteger(L, -1);
    lua_getfield(L, 1, "progress");
    int show = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_getfield(L, 1, "save");
    const char *save = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_pop(L, 4);
    if (vocab < 0 || vocab > (1 << 24))
        return luaL_error(L, "vocab_size %d is out of range", (int)vocab);

    const char **special;
    size_t ns;
    lua_getfield(L, 1, "special");
    int has_special = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (has_special) {
        ns = string_list(L, 1, "special", &special);
    } else {
        special = lua_newuserdatauv(L, sizeof *special, 0);
        special[0] = "<|endoftext|>";
        ns = 1;
    }
    const char **files;
    size_t nf = string_list(L, 1, "files", &files);
    lua_getfield(L, 1, "text");
    size_t tlen = 0;
    const char *text = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &tlen);
    if (!nf && !text)
        return luaL_error(L, "loupe.tokenizer_train: give files = {...} or text = \"...\"");

    lp_bpe_trainer **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, TRAINER_MT);
    if (!(*box = lp_bpe_trainer_new(special, ns)))
        return lp_lua_backend_error(L, "tokenizer_train");
    for (size_t i = 0; i < nf; i++)
        if (lp_bpe_trainer_add_file(*box, files[i]) < 0)
            return lp_lua_backend_error(L, "tokenizer_train");
    if (text && lp_bpe_trainer_add_text(*box, text, tlen) < 0)
        return lp_lua_backend_error(L, "tokenizer_train");

    train_progress *p = lua_newuserdatauv(L, sizeof *p, 0);
    memset(p, 0, sizeof *p);
    p->L = L;
    p->enabled = show;
    p->t0 = lp_now_s();
    snprintf(p->id, sizeof p->id, "loupe-progress-bpe-%lx-%lx", (unsigned long)(uintptr_t)p,
             (unsigned long)(p->t0 * 1e6));
    lp_bpe_train_opts o = {.vocab_size = (int32_t)vocab, .min_frequency = minf, .progress = on_progress,
                           .progress_ud = p};
    int rc = lp_bpe_trainer_train(*box, &o);
    if (p->enabled && p->started) { /* the final state, even after an error */
        p->final = rc == 0;
        p->last = 0;
        on_progress(p, "merging", p->done, p->total);
    }
    if (rc < 0)
        return lp_lua_backend_error(L, "tokenizer_train");
    if (save && lp_bpe_trainer_save(*box, save) < 0)
        return lp_lua_backend_error(L, "tokenizer_train");
    lp_tokenizer *t = save ? lp_tokenizer_load(save) : lp_bpe_trainer_tokenizer(*box);
    if (!t)
        return lp_lua_backend_error(L, "tokenizer_train");
    lp_bpe_trainer_free(*box);
    *box = NULL;
    lp_lua_push_tokenizer(L, t);
    return 1;
}

/* ---- loupe.Dataset ---- */

typedef struct ldataset {
    lp_dataset *d;
    lp_rng g;
    lua_Integer seed;
} ldataset;

static ldataset *check_dataset(lua_State *L, int idx) { return luaL_checkudata(L, idx, DATASET_MT); }

static ldataset *push_dataset(lua_State *L, lua_Integer seed)
{
    ldataset *u = lua_newuserdatauv(L, sizeof *u, 0);
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, DATASET_MT);
    u->seed = seed;
    lp_rng_seed(&u->g, (uint64_t)seed);
    return u;
}

static int l_data_load(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "seed");
    lua_Integer seed = lua_isnil(L, -1) ? DEFAULT_SEED : luaL_checkinteger(L, -1);
    lua_getfield(L, 1, "tokens");
    const char *tokfile = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_getfield(L, 1, "text");
    size_t tlen = 0;
    const char *text = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &tlen);
    lua_getfield(L, 1, "tokenizer");
    lp_tokenizer *t = lua_isnil(L, -1) ? NULL : lp_lua_check_tokenizer(L, -1);
    const char **files;
    size_t nf = string_list(L, 1, "files", &files);
    int given = (tokfile != NULL) + (text != NULL) + (nf > 0);
    if (given != 1)
        return luaL_error(L, "loupe.data.load: give exactly one of files = {...}, text = \"...\" or tokens = \"file\"");
    if (!tokfile && !t)
        return luaL_error(L, "loupe.data.load: text needs a tokenizer = ... to encode it");
    ldataset *u = push_dataset(L, seed);
    if (tokfile)
        u->d = lp_dataset_load_tokens(tokfile);
    else if (text)
        u->d = lp_dataset_from_text(t, text, tlen);
    else
        u->d = lp_dataset_from_files(t, files, nf);
    if (!u->d)
        return lp_lua_backend_error(L, "loupe.data.load");
    if (t && lp_dataset_max_id(u->d) >= lp_tokenizer_vocab_size(t))
        return luaL_error(L, "loupe.data.load: token ids reach %d, past the tokenizer's vocab (%d)",
                          (int)lp_dataset_max_id(u->d), (int)lp_tokenizer_vocab_size(t));
    return 1;
}

lp_dataset *lp_lua_check_dataset(lua_State *L, int idx, lp_rng **g)
{
    ldataset *u = check_dataset(L, idx);
    if (!u->d)
        luaL_error(L, "the dataset was freed");
    if (g)
        *g = &u->g;
    return u->d;
}

/* count blocks: a segment of seg ids drawn uniformly from [first, vocab), then the same ids
 * again; with seg = {lo, hi} every block draws its length uniformly from [lo, hi], so that no
 * fixed offset finds the earlier copy. A model can predict the second copy only by looking
 * back at the token after the earlier occurrence of the current one: induction.
 * With markov = p, a fraction p of the blocks (2 * len ids each) is instead a chain in which
 * every id after the first two is a fixed function of the id two back. There the token before
 * the current one predicts the next, so a previous-token head pays for itself; the induction
 * circuit then reuses it (on pure repeats neither half of the circuit helps without the other,
 * and small models sit on that plateau for tens of thousands of steps). */
static int l_data_repeated(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer v[3];
    const char *keys[3] = {"vocab", "count", "first"};
    const lua_Integer defs[3] = {-1, -1, 0};
    for (int i = 0; i < 3; i++) {
        lua_getfield(L, 1, keys[i]);
        if (lua_isnil(L, -1) && defs[i] < 0)
            return luaL_error(L, "loupe.data.repeated: %s = ... is required", keys[i]);
        v[i] = lua_isnil(L, -1) ? defs[i] : luaL_checkinteger(L, -1);
        lua_pop(L, 1);
    }
    lua_Integer lo, hi;
    lua_getfield(L, 1, "seg");
    if (lua_istable(L, -1)) {
        lua_geti(L, -1, 1);
        lua_geti(L, -2, 2);
        lo = luaL_checkinteger(L, -2), hi = luaL_checkinteger(L, -1);
        lua_pop(L, 2);
    } else if (lua_isnil(L, -1)) {
        return luaL_error(L, "loupe.data.repeated: seg = ... is required (a length, or {shortest, longest})");
    } else {
        lo = hi = luaL_checkinteger(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "seed");
    lua_Integer seed = lua_isnil(L, -1) ? DEFAULT_SEED : luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    lua_Integer vocab = v[0], count = v[1], first = v[2];
    if (vocab < 2 || vocab > (1 << 30) || first < 0 || first >= vocab - 1)
        return luaL_error(L, "loupe.data.repeated: need 0 <= first < vocab - 1 and vocab >= 2 (got first %d, vocab %d)",
                          (int)first, (int)vocab);
    if (lo < 1 || hi < lo || count < 1 || hi > (1 << 20) || count > (1 << 26) / (2 * hi))
        return luaL_error(L, "loupe.data.repeated: seg and count must be positive (seg = {lo, hi} with lo <= hi) and "
                             "2 * seg * count at most 2^26 (got seg %d..%d, count %d)", (int)lo, (int)hi, (int)count);
    lua_getfield(L, 1, "markov");
    lua_Number markov = lua_isnil(L, -1) ? 0.0 : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    if (!(markov >= 0.0 && markov <= 1.0))
        return luaL_error(L, "loupe.data.repeated: markov must be a fraction in [0, 1] (got %f)", (double)markov);
    if (markov > 0 && vocab - first > (1 << 24))
        return luaL_error(L, "loupe.data.repeated: markov needs vocab - first <= 2^24");
    lp_rng g;
    lp_rng_seed(&g, (uint64_t)seed);
    uint64_t span = (uint64_t)(vocab - first);
    int32_t *ids = lua_newuserdatauv(L, (size_t)(2 * hi * count) * sizeof(int32_t), 0);
    /* the chain's map: next = next2[token two back], one random id per id, fixed by the seed */
    int32_t *next2 = markov > 0 ? lua_newuserdatauv(L, (size_t)span * sizeof(int32_t), 0) : NULL;
    for (uint64_t i = 0; next2 && i < span; i++)
        next2[i] = (int32_t)(first + (lua_Integer)lp_rng_below(&g, span));
    size_t n = 0;
    for (lua_Integer b = 0; b < count; b++) {
        lua_Integer len = lo + (lua_Integer)lp_rng_below(&g, (uint64_t)(hi - lo + 1));
        int32_t *blk = ids + n;
        int chain = markov > 0 && lp_rng_uniform(&g) < markov;
        for (lua_Integer i = 0; i < (chain ? 2 : len); i++)
            blk[i] = (int32_t)(first + (lua_Integer)lp_rng_below(&g, span));
        if (chain)
            for (lua_Integer i = 2; i < 2 * len; i++)
                blk[i] = next2[blk[i - 2] - first];
        else
            memcpy(blk + len, blk, (size_t)len * sizeof(int32_t));
        n += (size_t)(2 * len);
    }
    ldataset *u = push_dataset(L, seed);
    if (!(u->d = lp_dataset_from_ids(ids, n)))
        return lp_lua_backend_error(L, "loupe.data.repeated");
    return 1;
}

static int ds_size(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)lp_dataset_size(check_dataset(L, 1)->d));
    return 1;
}

static lp_tensor *ids_tensor(const int32_t *ids, int64_t B, int64_t ctx, float *buf)
{
    for (int64_t i = 0; i < B * ctx; i++)
        buf[i] = (float)ids[i];
    int64_t shape[2] = {B, ctx};
    return lp_tensor_from_data(2, shape, buf, LP_DEVICE_CPU);
}

static int ds_batch(lua_State *L)
{
    ldataset *u = check_dataset(L, 1);
    lua_Integer B = luaL_checkinteger(L, 2), ctx = luaL_checkinteger(L, 3);
    if (B < 1 || ctx < 1 || B > (1 << 20) || ctx > (1 << 24) || B * ctx > (1 << 26))
        return luaL_error(L, "batch(B, ctx): B and ctx must be positive and B * ctx at most 2^26 (got %d, %d)", (int)B,
                          (int)ctx);
    size_t n = (size_t)(B * ctx);
    int32_t *in = lua_newuserdatauv(L, n * (2 * sizeof(int32_t) + sizeof(float)), 0);
    int32_t *tg = in + n;
    float *buf = (float *)(tg + n);
    if (lp_dataset_batch(u->d, &u->g, B, ctx, in, tg) < 0)
        return lp_lua_backend_error(L, "batch");
    lp_tensor *x = ids_tensor(in, B, ctx, buf);
    if (!x)
        return lp_lua_backend_error(L, "batch");
    lp_lua_push_tensor(L, x);
    lp_lua_push_tensor(L, ids_tensor(tg, B, ctx, buf));
    return 2;
}

static int ds_split(lua_State *L)
{
    ldataset *u = check_dataset(L, 1);
    lua_Number f = luaL_optnumber(L, 2, 0.1);
    ldataset *a = push_dataset(L, u->seed);
    ldataset *b = push_dataset(L, u->seed + 1);
    if (lp_dataset_split(u->d, f, &a->d, &b->d) < 0)
        return lp_lua_backend_error(L, "split");
    return 2;
}

static int ds_seed(lua_State *L)
{
    ldataset *u = check_dataset(L, 1);
    u->seed = luaL_checkinteger(L, 2);
    lp_rng_seed(&u->g, (uint64_t)u->seed);
    lua_settop(L, 1);
    return 1;
}

static int ds_save(lua_State *L)
{
    ldataset *u = check_dataset(L, 1);
    const char *path = luaL_checkstring(L, 2);
    const char *fmt = luaL_optstring(L, 3, "loupe");
    lp_tokfile_format f;
    if (strcmp(fmt, "loupe") == 0)
        f = LP_TOKFILE_LOUPE;
    else if (strcmp(fmt, "llmc") == 0)
        f = LP_TOKFILE_LLMC;
    else
        return luaL_error(L, "save: format must be \"loupe\" or \"llmc\", not \"%s\"", fmt);
    if (lp_dataset_save_tokens(u->d, path, f) < 0)
        return lp_lua_backend_error(L, "save");
    return 0;
}

static int ds_tokens(lua_State *L)
{
    ldataset *u = check_dataset(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2), n = luaL_optinteger(L, 3, 1);
    size_t size = lp_dataset_size(u->d);
    if (i < 1 || n < 0 || (size_t)(i - 1) > size || (size_t)n > size - (size_t)(i - 1))
        return luaL_error(L, "tokens(i, n): range %d..%d is outside 1..%d", (int)i, (int)(i + n - 1), (int)size);
    const int32_t *ids = lp_dataset_ids(u->d);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer k = 0; k < n; k++) {
        lua_pushinteger(L, ids[i - 1 + k]);
        lua_rawseti(L, -2, k + 1);
    }
    return 1;
}

static int ds_tostring(lua_State *L)
{
    ldataset *u = check_dataset(L, 1);
    lua_pushfstring(L, "Dataset(%I tokens, seed %I)", (lua_Integer)lp_dataset_size(u->d), u->seed);
    return 1;
}

static int ds_gc(lua_State *L)
{
    ldataset *u = check_dataset(L, 1);
    lp_dataset_free(u->d);
    u->d = NULL;
    return 0;
}

void lp_lua_open_data(lua_State *L)
{
    int loupe = lua_gettop(L);
    luaL_newmetatable(L, TRAINER_MT);
    lua_pushcfunction(L, trainer_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    luaL_newmetatable(L, DATASET_MT);
    lua_newtable(L);
    lp_lua_setfunc(L, -1, "batch", ds_batch,
                   "dataset:batch(B, ctx) -> inputs, targets\nB random windows of ctx + 1 tokens (the dataset's seeded "
                   "generator): two B x ctx tensors of token ids, targets shifted by one.");
    lp_lua_setfunc(L, -1, "size", ds_size, "dataset:size() -> number of tokens");
    lp_lua_setfunc(L, -1, "split", ds_split,
                   "dataset:split([fraction = 0.1]) -> train, val\nThe first 1 - fraction of the tokens and the rest "
                   "(views, no copy).");
    lp_lua_setfunc(L, -1, "seed", ds_seed, "dataset:seed(n) -> dataset\nReseeds the batch generator.");
    lp_lua_setfunc(L, -1, "save", ds_save,
                   "dataset:save(path [, format = \"loupe\" | \"llmc\"])\nWrites a token file (LOUPETOK header, or "
                   "llm.c's 256-int header with uint16 tokens).");
    lp_lua_setfunc(L, -1, "tokens", ds_tokens, "dataset:tokens(i [, n = 1]) -> {ids}\nn token ids from position i (1-based).");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ds_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, ds_gc);
    lua_setfield(L, -2, "__gc");
    lp_lua_settype(L, -1, "Dataset: token ids to train on, from loupe.data.load or loupe.data.repeated.\n"
                          "loupe.train{data = dataset, ...} draws its batches from it.", NULL);
    lua_pop(L, 1);

    lp_lua_setfunc(L, loupe, "tokenizer_train", l_tokenizer_train,
                   "loupe.tokenizer_train{files = {...} | text = \"...\", vocab_size = 4096, special = "
                   "{\"<|endoftext|>\"}, min_frequency = 0, save = \"folder\", progress = true} -> Tokenizer\n"
                   "Trains a byte-level BPE tokenizer (GPT-2's pre-tokenizer; tie-breaking as Hugging Face "
                   "tokenizers) and saves tokenizer.json, vocab.json, merges.txt when save is given.");
    lua_newtable(L);
    lp_lua_setfunc(L, -1, "load", l_data_load,
                   "loupe.data.load{files = {...} | text = \"...\" | tokens = \"file.bin\", tokenizer = tok, seed = "
                   "1234} -> Dataset\nText files (UTF-8, each followed by the tokenizer's EOS) or a token file; "
                   ":batch(B, ctx), :size(), :split(fraction), :save(path).");
    lp_lua_setfunc(L, -1, "repeated", l_data_repeated,
                   "loupe.data.repeated{vocab = V, seg = 16 | {lo, hi}, count = 5000, [first = 0], [markov = 0], "
                   "[seed = 1234]} -> Dataset\ncount blocks: seg random ids in [first, V), then the same ids "
                   "again (with {lo, hi}, each block's length is drawn from lo..hi, so no fixed offset finds the "
                   "copy). The second copy is predictable only by looking back at the first: training data for "
                   "induction heads. "
                   "markov = p makes a fraction p of the blocks chains where each id is a fixed function of the "
                   "id two back, which teaches a previous-token head first.");
    lp_lua_setdoc(L, -1, "loupe.data: training data (loupe.data.load, loupe.data.repeated).");
    lua_setfield(L, loupe, "data");
    lua_settop(L, loupe);
}
