/* lp_model_save: random GPT-2 (full and attention-only) and Llama models (tied and untied,
 * grouped-query attention, biases, rope scaling) written and read back must give the same
 * configuration, every tensor bit for bit and bit-identical logits; a folder that cannot be
 * written is an error that names it and leaves nothing behind; the tokenizer travels along. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tokenizer/fixtures.h"
#include "core/error.h"
#include "fixtures.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "rng.h"
#include "tokenizer/tokenizer.h"

static char root[64];

static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/lp_save_XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void teardown(void) { fx_remove(root); }

TestSuite(save, .init = setup, .fini = teardown);

/* ---- helpers ---- */

static lp_model_config parse(const char *json)
{
    lp_model_config c;
    cr_assert_eq(lp_model_config_parse(json, strlen(json), "test config", &c), 0, "%s", lp_last_error());
    return c;
}

#define GPT2_CFG(extra)                                                                                         \
    "{\"model_type\": \"gpt2\", \"n_embd\": 16, \"n_head\": 4, \"vocab_size\": 37, \"n_layer\": 2, "         \
    "\"n_positions\": 12" extra "}"
#define LLAMA_CFG(extra)                                                                                        \
    "{\"model_type\": \"llama\", \"hidden_size\": 16, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, " \
    "\"intermediate_size\": 24, \"vocab_size\": 37, \"num_hidden_layers\": 2, \"max_position_embeddings\": 12, " \
    "\"rms_norm_eps\": 1e-5" extra "}"

enum { NT_MAX = 6 + 64 * 24 };

/* Every tensor slot of a model (NULLs included), with its linear's layout. */
static int slots(const lp_model *m, lp_tensor **t, int *trans)
{
    int n = 0;
    lp_tensor *top[] = {m->wte, m->wpe, m->lnf_w, m->lnf_b, m->unembed.w, m->unembed.b};
    for (size_t i = 0; i < 6; i++)
        trans[n] = i == 4 ? m->unembed.trans : -1, t[n++] = top[i];
    for (int L = 0; L < m->cfg.n_layers; L++) {
        const lp_block *b = &m->blocks[L];
        lp_tensor *norms[] = {b->ln1_w, b->ln1_b, b->ln2_w, b->ln2_b};
        for (size_t i = 0; i < 4; i++)
            trans[n] = -1, t[n++] = norms[i];
        const lp_linear *ls[] = {&b->qkv, &b->q, &b->k, &b->v, &b->o, &b->fc, &b->proj, &b->gate, &b->up, &b->down};
        for (size_t i = 0; i < 10; i++) {
            trans[n] = ls[i]->w ? ls[i]->trans : -1, t[n++] = ls[i]->w;
            trans[n] = -1, t[n++] = ls[i]->b;
        }
    }
    return n;
}

/* Adds 0.1 N(0,1) to every weight (a tied unembedding once, through the embedding). */
static void perturb(lp_model *m, uint64_t seed)
{
    lp_tensor *t[NT_MAX];
    int tr[NT_MAX], n = slots(m, t, tr);
    lp_rng g;
    lp_rng_seed(&g, seed);
    for (int i = 0; i < n; i++) {
        if (!t[i] || (i == 4 && t[i]->data == m->wte->data))
            continue;
        for (int64_t k = 0; k < lp_tensor_numel(t[i]); k++)
            t[i]->data[k] += 0.1f * (float)lp_rng_normal(&g);
    }
}

static void same_config(const lp_model_config *a, const lp_model_config *b, int same_mlp)
{
#define F(x) cr_assert_eq(a->x, b->x, #x ": %g != %g", (double)a->x, (double)b->x)
    F(arch); F(n_layers); F(d_model); F(n_heads); F(n_kv_heads); F(d_head); F(d_vocab); F(n_ctx); F(eps); F(act);
    F(tied); F(attn_bias); F(mlp_bias); F(attn_only); F(rope_theta); F(rope); F(rope_factor); F(rope_low_freq);
    F(rope_high_freq); F(rope_orig_ctx); F(bos); F(eos);
    if (same_mlp)
        F(d_mlp);
#undef F
}

static void same_weights(const lp_model *a, const lp_model *b)
{
    lp_tensor *ta[NT_MAX], *tb[NT_MAX];
    int ra[NT_MAX], rb[NT_MAX];
    int n = slots(a, ta, ra);
    cr_assert_eq(slots(b, tb, rb), n);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(!ta[i], !tb[i], "slot %d: present in one model only", i);
        if (!ta[i])
            continue;
        cr_assert_eq(ra[i], rb[i], "slot %d: layout differs", i);
        cr_assert(lp_tensor_same_shape(ta[i], tb[i]), "slot %d: shapes differ", i);
        cr_assert(lp_tensor_is_contiguous(ta[i]) && lp_tensor_is_contiguous(tb[i]));
        cr_assert_eq(memcmp(ta[i]->data, tb[i]->data, (size_t)lp_tensor_numel(ta[i]) * sizeof(float)), 0,
                     "slot %d: values differ", i);
    }
    cr_assert_eq(a->param_bytes, b->param_bytes);
}

static void same_logits(const lp_model *a, const lp_model *b)
{
    int32_t toks[2 * 9];
    for (int i = 0; i < 18; i++)
        toks[i] = (int32_t)((i * 7 + 3) % a->cfg.d_vocab);
    lp_run ra = {0}, rb = {0};
    cr_assert_eq(lp_model_run(a, toks, 2, 9, NULL, &ra), 0, "%s", lp_last_error());
    cr_assert_eq(lp_model_run(b, toks, 2, 9, NULL, &rb), 0, "%s", lp_last_error());
    cr_assert(lp_tensor_same_shape(ra.logits, rb.logits));
    cr_assert_eq(memcmp(ra.logits->data, rb.logits->data, (size_t)lp_tensor_numel(ra.logits) * sizeof(float)), 0,
                 "logits differ after saving and loading");
    lp_run_clear(&ra);
    lp_run_clear(&rb);
}

static char *path_in(const char *name)
{
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", root, name);
    return p[k];
}

static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    s[n] = 0;
    if (len)
        *len = (size_t)n;
    return s;
}

/* Random model of cfg, perturbed, saved to root/name and loaded back (checked), returned. */
static lp_model *round_trip(const lp_model_config *cfg, const char *name, uint64_t seed, lp_model **orig)
{
    lp_model *m = lp_model_random(cfg, seed);
    cr_assert_not_null(m, "%s", lp_last_error());
    perturb(m, seed + 1);
    cr_assert_eq(lp_model_save(m, path_in(name), NULL), 0, "%s", lp_last_error());
    lp_model *back = lp_model_load(path_in(name));
    cr_assert_not_null(back, "%s", lp_last_error());
    *orig = m;
    return back;
}

static void check_round_trip(const char *json, const char *name)
{
    lp_model_config cfg = parse(json);
    lp_model *m, *back = round_trip(&cfg, name, 42, &m);
    same_config(&cfg, &back->cfg, 1);
    same_weights(m, back);
    same_logits(m, back);
    lp_model_free(m);
    lp_model_free(back);
}

/* ---- round trips ---- */

Test(save, gpt2)
{
    check_round_trip(GPT2_CFG(", \"n_inner\": 24, \"activation_function\": \"gelu_new\""), "gpt2");
    char *cfg = slurp(path_in("gpt2/config.json"), NULL);
    cr_assert(strstr(cfg, "\"GPT2LMHeadModel\"") && strstr(cfg, "\"layer_norm_epsilon\": 1e-05") &&
              strstr(cfg, "\"torch_dtype\": \"float32\"") && strstr(cfg, "\"bos_token_id\": null"), "%s", cfg);
    free(cfg);
    /* transformers' names; the tied unembedding once, as the embedding */
    lp_safetensors *st = lp_safetensors_open(path_in("gpt2/model.safetensors"));
    cr_assert_not_null(st, "%s", lp_last_error());
    cr_assert_eq(lp_safetensors_count(st), 4 + 2 * 12);
    const lp_st_entry *e = lp_safetensors_find(st, "transformer.h.1.mlp.c_fc.weight");
    cr_assert(e && e->dtype == LP_DTYPE_F32 && e->shape[0] == 16 && e->shape[1] == 24, "Conv1D layout (in, out)");
    cr_assert_null(lp_safetensors_find(st, "lm_head.weight"));
    cr_assert_str_eq(lp_safetensors_meta(st, "format"), "pt");
    lp_safetensors_close(st);
}

Test(save, gpt2_erf_eps_and_special_ids)
{
    check_round_trip(GPT2_CFG(", \"activation_function\": \"gelu\", \"layer_norm_epsilon\": 3e-6, "
                              "\"bos_token_id\": 3, \"eos_token_id\": 5"), "gpt2erf");
}

Test(save, gpt2_attention_only)
{
    check_round_trip(GPT2_CFG(", \"n_inner\": 1, \"loupe_attn_only\": true"), "attn");
    lp_model *back = lp_model_load(path_in("attn"));
    cr_assert(back->cfg.attn_only && !back->blocks[0].ln2_w && !back->blocks[1].ln2_b && !back->blocks[1].fc.w &&
              !back->blocks[0].proj.w);
    lp_model_free(back);
    /* for transformers: an MLP of width 1 that adds zero, ln_2 = identity affine */
    char *cfg = slurp(path_in("attn/config.json"), NULL);
    cr_assert(strstr(cfg, "\"n_inner\": 1,") && strstr(cfg, "\"loupe_attn_only\": true"), "%s", cfg);
    free(cfg);
    lp_safetensors *st = lp_safetensors_open(path_in("attn/model.safetensors"));
    cr_assert_not_null(st, "%s", lp_last_error());
    const char *names[] = {"ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
                           "mlp.c_proj.bias"};
    float want[] = {1, 0, 0, 0, 0, 0};
    for (int i = 0; i < 6; i++) {
        char n[96];
        snprintf(n, sizeof n, "transformer.h.1.%s", names[i]);
        const lp_st_entry *e = lp_safetensors_find(st, n);
        cr_assert_not_null(e, "%s is missing", n);
        lp_tensor *t = lp_safetensors_tensor(st, e, LP_DEVICE_CPU);
        for (int64_t k = 0; k < lp_tensor_numel(t); k++)
            cr_assert_eq(t->data[k], want[i], "%s[%ld]", n, (long)k);
        lp_tensor_free(t);
    }
    cr_assert_eq(lp_safetensors_find(st, "transformer.h.0.mlp.c_fc.weight")->shape[1], 1);
    lp_safetensors_close(st);
}

Test(save, attention_only_from_a_wider_config)
{
    /* loupe.model{attn_only = true} keeps a d_mlp it never uses: it reads back as 1 */
    lp_model_config cfg = parse(GPT2_CFG(", \"loupe_attn_only\": true"));
    cr_assert_eq(cfg.d_mlp, 64);
    lp_model *m, *back = round_trip(&cfg, "wide", 7, &m);
    same_config(&cfg, &back->cfg, 0);
    cr_assert_eq(back->cfg.d_mlp, 1);
    same_weights(m, back);
    same_logits(m, back);
    lp_model_free(m);
    lp_model_free(back);
}

Test(save, attention_only_config_ignores_mlp_tensors)
{
    /* a full GPT-2 checkpoint declared attention-only: ln_2 and the MLP are not read */
    lp_model_config cfg = parse(GPT2_CFG(""));
    lp_model *m = lp_model_random(&cfg, 3);
    cr_assert_eq(lp_model_save(m, path_in("full"), NULL), 0, "%s", lp_last_error());
    char *text = slurp(path_in("full/config.json"), NULL);
    char *brace = strrchr(text, '}');
    *brace = 0;
    FILE *f = fopen(path_in("full/config.json"), "w");
    fprintf(f, "%s, \"loupe_attn_only\": true}\n", text);
    fclose(f);
    free(text);
    lp_model *back = lp_model_load(path_in("full"));
    cr_assert_not_null(back, "%s", lp_last_error());
    cr_assert(back->cfg.attn_only && back->cfg.d_mlp == 64);
    for (int L = 0; L < 2; L++)
        cr_assert(!back->blocks[L].ln2_w && !back->blocks[L].ln2_b && !back->blocks[L].fc.w && !back->blocks[L].proj.b);
    cr_assert_lt(back->param_bytes, m->param_bytes);
    lp_model_free(back);
    lp_model_free(m);
}

Test(save, attention_only_is_gpt2_only)
{
    lp_model_config c;
    const char *j = LLAMA_CFG(", \"loupe_attn_only\": true");
    cr_assert_eq(lp_model_config_parse(j, strlen(j), "cfg", &c), -1);
    cr_assert(strstr(lp_last_error(), "loupe_attn_only") && strstr(lp_last_error(), "GPT-2"), "%s", lp_last_error());
    j = GPT2_CFG(", \"loupe_attn_only\": 1");
    cr_assert_eq(lp_model_config_parse(j, strlen(j), "cfg", &c), -1);
    cr_assert(strstr(lp_last_error(), "true or false"), "%s", lp_last_error());
    c = parse(LLAMA_CFG(""));
    cr_assert(!c.attn_only);
    c.attn_only = 1;
    cr_assert_null(lp_model_random(&c, 1));
    cr_assert(strstr(lp_last_error(), "GPT-2"), "%s", lp_last_error());
}

Test(save, llama_untied_gqa)
{
    check_round_trip(LLAMA_CFG(", \"rope_theta\": 10000.0, \"tie_word_embeddings\": false"), "llama");
    lp_safetensors *st = lp_safetensors_open(path_in("llama/model.safetensors"));
    cr_assert_not_null(lp_safetensors_find(st, "lm_head.weight"));
    const lp_st_entry *k = lp_safetensors_find(st, "model.layers.0.self_attn.k_proj.weight");
    cr_assert(k && k->shape[0] == 8 && k->shape[1] == 16, "Linear layout (out, in), 2 kv heads of 4");
    lp_safetensors_close(st);
}

Test(save, llama_tied_head_dim_llama3_rope)
{
    check_round_trip(LLAMA_CFG(", \"num_key_value_heads\": 4, \"head_dim\": 6, \"tie_word_embeddings\": true, "
                               "\"rope_theta\": 50000.0, \"bos_token_id\": 1, \"eos_token_id\": [2, 3], "
                               "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0,"
                               " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 4}"), "tied");
    lp_safetensors *st = lp_safetensors_open(path_in("tied/model.safetensors"));
    cr_assert_null(lp_safetensors_find(st, "lm_head.weight"));
    cr_assert_eq(lp_safetensors_count(st), 2 + 2 * 9);
    lp_safetensors_close(st);
}

Test(save, llama_biases_and_linear_rope)
{
    check_round_trip(LLAMA_CFG(", \"attention_bias\": true, \"mlp_bias\": true, \"rope_theta\": 123.25, "
                               "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.5}"), "bias");
}

Test(save, llama_dynamic_rope_in_the_transformers5_form)
{
    check_round_trip(LLAMA_CFG(", \"rms_norm_eps\": 1e-6, \"rope_parameters\": {\"rope_type\": \"dynamic\", "
                               "\"factor\": 2.0, \"rope_theta\": 1000.0}"), "dyn");
}

Test(save, linear_weights_in_either_layout)
{
    /* a GPT-2 whose weights are held as (out, in) is written in Conv1D layout all the same */
    lp_model_config cfg = parse(GPT2_CFG(""));
    lp_model *m = lp_model_random(&cfg, 9);
    perturb(m, 10);
    lp_linear *l = &m->blocks[1].fc;
    lp_tensor *t = lp_tensor_transpose(l->w, 0, 1), *c = lp_tensor_contiguous(t);
    lp_tensor_free(t);
    lp_tensor *orig = l->w;
    l->w = c, l->trans = 1;
    cr_assert_eq(lp_model_save(m, path_in("layout"), NULL), 0, "%s", lp_last_error());
    l->w = orig, l->trans = 0;
    lp_tensor_free(c);
    lp_model *back = lp_model_load(path_in("layout"));
    cr_assert_not_null(back, "%s", lp_last_error());
    same_weights(m, back);
    lp_model_free(m);
    lp_model_free(back);
}

/* ---- folders ---- */

Test(save, a_folder_under_a_file_is_an_error_and_nothing_is_written)
{
    lp_model_config cfg = parse(GPT2_CFG(""));
    lp_model *m = lp_model_random(&cfg, 1);
    FILE *f = fopen(path_in("file"), "w");
    fputs("x", f);
    fclose(f);
    const char *bad = path_in("file/ckpt");
    cr_assert_eq(lp_model_save(m, bad, NULL), -1);
    cr_assert(strstr(lp_last_error(), bad) && strstr(lp_last_error(), "not a folder"), "%s", lp_last_error());
    cr_assert_eq(lp_model_save(m, path_in("file"), NULL), -1);
    cr_assert(strstr(lp_last_error(), "exists and is not a folder"), "%s", lp_last_error());
    cr_assert_eq(entries(root), 1, "only the file is there");
    size_t n;
    char *s = slurp(path_in("file"), &n);
    cr_assert(n == 1 && s[0] == 'x');
    free(s);
    lp_model_free(m);
}

Test(save, missing_parents_are_made_and_removed_again_on_failure)
{
    lp_model_config cfg = parse(GPT2_CFG(""));
    lp_model *m = lp_model_random(&cfg, 1);
    cr_assert_eq(lp_model_save(m, path_in("a/b/c/"), NULL), 0, "%s", lp_last_error());
    lp_model *back = lp_model_load(path_in("a/b/c"));
    cr_assert_not_null(back, "%s", lp_last_error());
    cr_assert_eq(entries(path_in("a/b/c")), 2, "config.json and model.safetensors");
    cr_assert_eq(entries(path_in("a/b")), 1, "no temporary folder is left");
    lp_model_free(back);
    /* a model that cannot be written: the folders made for it are removed again */
    lp_tensor *o = m->blocks[1].o.w;
    m->blocks[1].o.w = NULL;
    cr_assert_eq(lp_model_save(m, path_in("x/y/z"), NULL), -1);
    cr_assert(strstr(lp_last_error(), "x/y/z") && strstr(lp_last_error(), "transformer.h.1.attn.c_proj.weight"), "%s",
              lp_last_error());
    m->blocks[1].o.w = o;
    cr_assert_eq(entries(root), 1, "only a/ is there");
    lp_model_free(m);
}

Test(save, overwrites_only_on_success)
{
    lp_model_config cfg = parse(GPT2_CFG(""));
    lp_model *a = lp_model_random(&cfg, 1), *b = lp_model_random(&cfg, 2);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", path_in("ck"));
    cr_assert_eq(lp_model_save(a, dir, NULL), 0, "%s", lp_last_error());
    FILE *f = fopen(path_in("ck/notes.txt"), "w");
    fputs("mine", f);
    fclose(f);
    size_t n1, n2;
    char *w1 = slurp(path_in("ck/model.safetensors"), &n1), *c1 = slurp(path_in("ck/config.json"), NULL);
    /* a failed save leaves the old checkpoint as it was */
    lp_tensor *keep = b->blocks[0].qkv.b;
    b->blocks[0].qkv.b = NULL;
    cr_assert_eq(lp_model_save(b, dir, NULL), -1);
    b->blocks[0].qkv.b = keep;
    char *w2 = slurp(path_in("ck/model.safetensors"), &n2), *c2 = slurp(path_in("ck/config.json"), NULL);
    cr_assert(n1 == n2 && !memcmp(w1, w2, n1) && !strcmp(c1, c2));
    cr_assert_eq(entries(root), 1, "no temporary folder is left");
    free(w2), free(c2);
    /* a successful one replaces the files and keeps the others */
    cr_assert_eq(lp_model_save(b, dir, NULL), 0, "%s", lp_last_error());
    lp_model *back = lp_model_load(dir);
    cr_assert_not_null(back, "%s", lp_last_error());
    same_weights(b, back);
    cr_assert_eq(entries(dir), 3);
    cr_assert_eq(entries(root), 1);
    w2 = slurp(path_in("ck/notes.txt"), NULL);
    cr_assert_str_eq(w2, "mine");
    free(w1), free(c1), free(w2);
    lp_model_free(back);
    lp_model_free(a);
    lp_model_free(b);
}

Test(save, a_folder_without_write_permission)
{
    if (geteuid() == 0) {
        rmdir(root); /* a skipped test gets no teardown */
        cr_skip_test("running as root: permissions do not stop writes");
    }
    lp_model_config cfg = parse(GPT2_CFG(""));
    lp_model *m = lp_model_random(&cfg, 1);
    cr_assert_eq(mkdir(path_in("ro"), 0500), 0);
    cr_assert_eq(lp_model_save(m, path_in("ro"), NULL), -1);
    cr_assert(strstr(lp_last_error(), path_in("ro")) && strstr(lp_last_error(), "not writable"), "%s", lp_last_error());
    cr_assert_eq(lp_model_save(m, path_in("ro/sub"), NULL), -1);
    cr_assert(strstr(lp_last_error(), path_in("ro/sub")), "%s", lp_last_error());
    chmod(path_in("ro"), 0700);
    cr_assert_eq(entries(path_in("ro")), 0);
    lp_model_free(m);
}

/* ---- with a tokenizer ---- */

static void same_tokenizer(const lp_tokenizer *a, const lp_tokenizer *b)
{
    cr_assert_eq(lp_tokenizer_vocab_size(a), lp_tokenizer_vocab_size(b));
    cr_assert_eq(lp_tokenizer_bos(a), lp_tokenizer_bos(b));
    cr_assert_eq(lp_tokenizer_eos(a), lp_tokenizer_eos(b));
    for (int32_t i = 0; i < lp_tokenizer_vocab_size(a); i++) {
        const char *x = lp_tokenizer_token(a, i), *y = lp_tokenizer_token(b, i);
        cr_assert(x && y && !strcmp(x, y), "token %d: '%s' vs '%s'", i, x ? x : "(none)", y ? y : "(none)");
    }
    const char *texts[] = {"the cat", " the thethe<|endoftext|> the", "hello\n\n  world's 12345 <|bos|>x",
                           "caf\xC3\xA9 \xF0\x9F\x99\x82", ""};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        for (int sp = 0; sp < 2; sp++) {
            int32_t *ia, *ib;
            size_t na, nb;
            cr_assert_eq(lp_tokenizer_encode(a, texts[i], strlen(texts[i]), sp, &ia, &na), 0);
            cr_assert_eq(lp_tokenizer_encode(b, texts[i], strlen(texts[i]), sp, &ib, &nb), 0);
            cr_assert(na == nb && (na == 0 || !memcmp(ia, ib, na * sizeof *ia)), "'%s' (special %d) encodes differently",
                      texts[i], sp);
            free(ia);
            free(ib);
        }
}

static void with_tokenizer(char *tokdir, const char *name)
{
    lp_tokenizer *tok = lp_tokenizer_load(tokdir);
    cr_assert_not_null(tok, "%s", lp_last_error());
    lp_model_config cfg = parse(GPT2_CFG(""));
    lp_model *m = lp_model_random(&cfg, 1);
    /* more ids than the model has: refused before anything is written */
    cr_assert_eq(lp_model_save(m, path_in(name), tok), -1);
    cr_assert(strstr(lp_last_error(), "tokenizer has 26"), "%s", lp_last_error());
    cr_assert_eq(entries(root), 0);
    lp_model_free(m);
    cfg.d_vocab = 300, cfg.bos = lp_tokenizer_bos(tok), cfg.eos = lp_tokenizer_eos(tok);
    m = lp_model_random(&cfg, 1);
    cr_assert_eq(lp_model_save(m, path_in(name), tok), 0, "%s", lp_last_error());
    cr_assert_eq(entries(path_in(name)), 4, "config, weights, tokenizer.json, tokenizer_config.json");
    lp_tokenizer *back = lp_tokenizer_load(path_in(name));
    cr_assert_not_null(back, "%s", lp_last_error());
    same_tokenizer(tok, back);
    /* and a second generation is the same file */
    cr_assert_eq(lp_tokenizer_save(back, root), 0, "%s", lp_last_error());
    char *g1 = slurp(path_in("tokenizer.json"), NULL);
    char p[256];
    snprintf(p, sizeof p, "%s/tokenizer.json", path_in(name));
    char *g0 = slurp(p, NULL);
    cr_assert_str_eq(g0, g1);
    free(g0), free(g1);
    lp_tokenizer_free(back);
    lp_tokenizer_free(tok);
    lp_model_free(m);
    tf_rmdir(tokdir);
}

Test(save, gpt2_vocab_and_merges_tokenizer)
{
    with_tokenizer(tf_gpt2_folder(), "tokgpt2");
}

Test(save, split_tokenizer_with_added_tokens_and_a_template)
{
    with_tokenizer(tf_json_folder(), "toksplit");
    json_error_t err;
    json_t *j = json_load_file(path_in("toksplit/tokenizer.json"), 0, &err);
    cr_assert_not_null(j, "%s", err.text);
    cr_assert(json_is_true(json_object_get(json_object_get(j, "model"), "ignore_merges")));
    cr_assert_eq(json_array_size(json_object_get(j, "added_tokens")), 2);
    json_decref(j);
}
