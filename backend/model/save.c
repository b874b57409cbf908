/* Writing a model as a Hugging Face folder: config.json, model.safetensors (f32) and the
 * tokenizer's files, built in a temporary folder beside the target and renamed into place.
 * See lp_model_save in model.h. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/error.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "ops/ops.h"
#include "tokenizer/tokenizer.h"

/* ---- config.json ---- */

/* The shortest decimal that reads back as v (as a double, or as a float when is_float),
 * always with a '.' or an exponent so that JSON readers see a real. */
static void fmt_real(char *out, size_t cap, double v, int is_float)
{
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, cap, "%.1f", v);
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(out, cap, "%.*g", p, v);
        double back = strtod(out, NULL);
        if (is_float ? (float)back == (float)v : back == v)
            break;
    }
    if (!strpbrk(out, ".e"))
        strncat(out, ".0", cap - strlen(out) - 1);
}

typedef struct {
    lp_buf b;
    int n;
} jw;

static void jkey(jw *w, const char *k)
{
    lp_buf_printf(&w->b, "%s\n  \"%s\": ", w->n++ ? "," : "", k);
}
static void jraw(jw *w, const char *k, const char *v) { jkey(w, k), lp_buf_puts(&w->b, v); }
static void jint(jw *w, const char *k, long v) { jkey(w, k), lp_buf_printf(&w->b, "%ld", v); }
static void jstr(jw *w, const char *k, const char *v) { jkey(w, k), lp_buf_printf(&w->b, "\"%s\"", v); }
static void jbool(jw *w, const char *k, int v) { jraw(w, k, v ? "true" : "false"); }
static void jid(jw *w, const char *k, int id) { id >= 0 ? jint(w, k, id) : jraw(w, k, "null"); }
static void jreal(jw *w, const char *k, double v, int is_float)
{
    char s[48];
    fmt_real(s, sizeof s, v, is_float);
    jraw(w, k, s);
}

static int rope_json(const lp_model_config *c, char *out, size_t cap)
{
    char f[48], lo[48], hi[48];
    fmt_real(f, sizeof f, c->rope_factor, 0);
    switch (c->rope) {
    case LP_ROPE_DEFAULT:
        snprintf(out, cap, "null");
        return 0;
    case LP_ROPE_LINEAR:
        snprintf(out, cap, "{\"rope_type\": \"linear\", \"factor\": %s}", f);
        return 0;
    case LP_ROPE_DYNAMIC:
        /* transformers' dynamic scaling grows from max_position_embeddings */
        if (c->rope_orig_ctx != c->n_ctx)
            return lp_set_error("dynamic rope scaling from %d positions with a context of %d cannot be written "
                                "(transformers grows it from max_position_embeddings)", c->rope_orig_ctx, c->n_ctx);
        snprintf(out, cap, "{\"rope_type\": \"dynamic\", \"factor\": %s}", f);
        return 0;
    case LP_ROPE_LLAMA3:
        fmt_real(lo, sizeof lo, c->rope_low_freq, 0);
        fmt_real(hi, sizeof hi, c->rope_high_freq, 0);
        snprintf(out, cap, "{\"rope_type\": \"llama3\", \"factor\": %s, \"low_freq_factor\": %s, "
                 "\"high_freq_factor\": %s, \"original_max_position_embeddings\": %d}", f, lo, hi, c->rope_orig_ctx);
        return 0;
    }
    return lp_set_error("unknown rope scaling kind %d", (int)c->rope);
}

/* config.json text (malloc'd), or NULL with the error set. */
static char *config_json(const lp_model_config *c)
{
    jw w = {LP_BUF_INIT, 0};
    lp_buf_puts(&w.b, "{");
    if (c->arch == LP_ARCH_GPT2) {
        jraw(&w, "architectures", "[\"GPT2LMHeadModel\"]");
        jstr(&w, "model_type", "gpt2");
        jint(&w, "vocab_size", c->d_vocab);
        jint(&w, "n_positions", c->n_ctx);
        jint(&w, "n_ctx", c->n_ctx);
        jint(&w, "n_embd", c->d_model);
        jint(&w, "n_layer", c->n_layers);
        jint(&w, "n_head", c->n_heads);
        jint(&w, "n_inner", c->attn_only ? 1 : c->d_mlp);
        jstr(&w, "activation_function", c->act == LP_GELU_ERF ? "gelu" : "gelu_new");
        jreal(&w, "layer_norm_epsilon", c->eps, 1);
        jreal(&w, "resid_pdrop", 0, 0), jreal(&w, "embd_pdrop", 0, 0), jreal(&w, "attn_pdrop", 0, 0);
        jbool(&w, "tie_word_embeddings", 1);
        if (c->attn_only)
            jbool(&w, "loupe_attn_only", 1);
    } else {
        char rope[320];
        if (rope_json(c, rope, sizeof rope) < 0) {
            lp_buf_free(&w.b);
            return NULL;
        }
        jraw(&w, "architectures", "[\"LlamaForCausalLM\"]");
        jstr(&w, "model_type", "llama");
        jint(&w, "vocab_size", c->d_vocab);
        jint(&w, "hidden_size", c->d_model);
        jint(&w, "intermediate_size", c->d_mlp);
        jint(&w, "num_hidden_layers", c->n_layers);
        jint(&w, "num_attention_heads", c->n_heads);
        jint(&w, "num_key_value_heads", c->n_kv_heads);
        jint(&w, "head_dim", c->d_head);
        jstr(&w, "hidden_act", "silu");
        jint(&w, "max_position_embeddings", c->n_ctx);
        jreal(&w, "rms_norm_eps", c->eps, 1);
        jreal(&w, "rope_theta", c->rope_theta, 0);
        jraw(&w, "rope_scaling", rope);
        jbool(&w, "attention_bias", c->attn_bias);
        jbool(&w, "mlp_bias", c->mlp_bias);
        jreal(&w, "attention_dropout", 0, 0);
        jbool(&w, "tie_word_embeddings", c->tied);
    }
    jid(&w, "bos_token_id", c->bos);
    jid(&w, "eos_token_id", c->eos);
    jstr(&w, "torch_dtype", "float32");
    lp_buf_puts(&w.b, "\n}\n");
    return lp_buf_finish(&w.b);
}

/* ---- the tensors, by their Hugging Face names ---- */

typedef struct {
    size_t n, cap;
    char (*names)[96];
    const lp_tensor **ts;
    lp_tensor *owned[8]; /* attention-only placeholders */
    int nowned;
    lp_tensor **views;
    size_t nviews, capviews;
} tlist;

static void tlist_free(tlist *l)
{
    free(l->names);
    free(l->ts);
    for (int i = 0; i < l->nowned; i++)
        lp_tensor_free(l->owned[i]);
    for (size_t i = 0; i < l->nviews; i++)
        lp_tensor_free(l->views[i]);
    free(l->views);
}

static int keep_view(tlist *l, lp_tensor *v)
{
    if (!v)
        return -1;
    if (l->nviews == l->capviews) {
        size_t cap = l->capviews ? 2 * l->capviews : 16;
        lp_tensor **nv = lp_realloc(l->views, cap * sizeof *nv, "saving a model");
        if (!nv) {
            lp_tensor_free(v);
            return lp_set_error_code(LP_ERR_NOMEM, "out of memory");
        }
        l->views = nv, l->capviews = cap;
    }
    l->views[l->nviews++] = v;
    return 0;
}

static int add(tlist *l, const lp_tensor *t, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Adds t under a name, checking that it exists and has the shape the config implies. */
static int add(tlist *l, const lp_tensor *t, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
{
    char name[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t want[2] = {d0, d1};
    if (!t)
        return lp_set_error("the model has no tensor for '%s'", name);
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        char a[64], b[64];
        return lp_set_error("tensor '%s' has shape %s, but the config implies %s", name,
                            lp_tensor_shape_str(t, a, sizeof a), lp_shape_str(ndim, want, b, sizeof b));
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char(*nn)[96] = lp_realloc(l->names, cap * sizeof *nn, "saving a model");
        if (nn)
            l->names = nn;
        const lp_tensor **nt = nn ? lp_realloc(l->ts, cap * sizeof *nt, "saving a model") : NULL;
        if (!nt)
            return lp_set_error_code(LP_ERR_NOMEM, "out of memory");
        l->ts = nt, l->cap = cap;
    }
    memcpy(l->names[l->n], name, sizeof name);
    l->ts[l->n++] = t;
    return 0;
}

/* A linear layer: GPT-2's Conv1D stores (in,out), Llama's Linear (out,in); a weight held in
 * the other layout is written through a transposed view. */
static int add_linear(tlist *l, const lp_linear *lin, int in, int out, int conv1d, int bias, const char *base)
{
    const lp_tensor *w = lin->w;
    if (w && lin->trans == conv1d) {
        if (keep_view(l, lp_tensor_transpose(w, 0, 1)) < 0)
            return -1;
        w = l->views[l->nviews - 1];
    }
    if (add(l, w, 2, conv1d ? in : out, conv1d ? out : in, "%s.weight", base) < 0)
        return -1;
    if (!bias && lin->b)
        return lp_set_error("'%s' has a bias, but the config says it has none", base);
    return bias ? add(l, lin->b, 1, out, 0, "%s.bias", base) : 0;
}

static lp_tensor *placeholder(tlist *l, int ndim, int64_t d0, int64_t d1, float v)
{
    int64_t shape[2] = {d0, d1};
    lp_tensor *t = lp_tensor_full(ndim, shape, v, LP_DEVICE_CPU);
    if (t)
        l->owned[l->nowned++] = t;
    return t;
}

/* A tied unembedding must be the embedding matrix itself: it is stored only once. */
static int check_tied(const lp_model *m)
{
    const lp_tensor *u = m->unembed.w, *e = m->wte;
    if (u && e && (u->data != e->data || !lp_tensor_same_shape(u, e) || !m->unembed.trans))
        return lp_set_error("the config ties the unembedding to the embedding, but the model holds a separate one");
    return 0;
}

static int gather_gpt2(const lp_model *m, tlist *l)
{
    const lp_model_config *c = &m->cfg;
    int D = c->d_model, F = c->d_mlp;
    if (check_tied(m) < 0 || add(l, m->wte, 2, c->d_vocab, D, "transformer.wte.weight") < 0 ||
        add(l, m->wpe, 2, c->n_ctx, D, "transformer.wpe.weight") < 0 ||
        add(l, m->lnf_w, 1, D, 0, "transformer.ln_f.weight") < 0 ||
        add(l, m->lnf_b, 1, D, 0, "transformer.ln_f.bias") < 0)
        return -1;
    /* attention-only: an MLP of width 1 that adds exactly zero, and an ln_2 that is harmless */
    lp_tensor *one = NULL, *zero = NULL, *fc_w = NULL, *fc_b = NULL, *proj_w = NULL;
    if (c->attn_only && (!(one = placeholder(l, 1, D, 0, 1)) || !(zero = placeholder(l, 1, D, 0, 0)) ||
                         !(fc_w = placeholder(l, 2, D, 1, 0)) || !(fc_b = placeholder(l, 1, 1, 0, 0)) ||
                         !(proj_w = placeholder(l, 2, 1, D, 0))))
        return -1;
    for (int L = 0; L < c->n_layers; L++) {
        const lp_block *b = &m->blocks[L];
        char base[64];
#define LIN(field, in, out, fmt)                                                   \
        snprintf(base, sizeof base, fmt, L);                                       \
        if (add_linear(l, &b->field, in, out, 1, 1, base) < 0)                     \
            return -1;
        if (add(l, b->ln1_w, 1, D, 0, "transformer.h.%d.ln_1.weight", L) < 0 ||
            add(l, b->ln1_b, 1, D, 0, "transformer.h.%d.ln_1.bias", L) < 0)
            return -1;
        LIN(qkv, D, 3 * D, "transformer.h.%d.attn.c_attn")
        LIN(o, D, D, "transformer.h.%d.attn.c_proj")
        if (c->attn_only) {
            if (add(l, one, 1, D, 0, "transformer.h.%d.ln_2.weight", L) < 0 ||
                add(l, zero, 1, D, 0, "transformer.h.%d.ln_2.bias", L) < 0 ||
                add(l, fc_w, 2, D, 1, "transformer.h.%d.mlp.c_fc.weight", L) < 0 ||
                add(l, fc_b, 1, 1, 0, "transformer.h.%d.mlp.c_fc.bias", L) < 0 ||
                add(l, proj_w, 2, 1, D, "transformer.h.%d.mlp.c_proj.weight", L) < 0 ||
                add(l, zero, 1, D, 0, "transformer.h.%d.mlp.c_proj.bias", L) < 0)
                return -1;
            continue;
        }
        if (add(l, b->ln2_w, 1, D, 0, "transformer.h.%d.ln_2.weight", L) < 0 ||
            add(l, b->ln2_b, 1, D, 0, "transformer.h.%d.ln_2.bias", L) < 0)
            return -1;
        LIN(fc, D, F, "transformer.h.%d.mlp.c_fc")
        LIN(proj, F, D, "transformer.h.%d.mlp.c_proj")
#undef LIN
    }
    return 0;
}

static int gather_llama(const lp_model *m, tlist *l)
{
    const lp_model_config *c = &m->cfg;
    int D = c->d_model, F = c->d_mlp, HS = c->d_head, H = c->n_heads, K = c->n_kv_heads;
    if (add(l, m->wte, 2, c->d_vocab, D, "model.embed_tokens.weight") < 0 ||
        add(l, m->lnf_w, 1, D, 0, "model.norm.weight") < 0)
        return -1;
    for (int L = 0; L < c->n_layers; L++) {
        const lp_block *b = &m->blocks[L];
        char base[80];
        if (add(l, b->ln1_w, 1, D, 0, "model.layers.%d.input_layernorm.weight", L) < 0 ||
            add(l, b->ln2_w, 1, D, 0, "model.layers.%d.post_attention_layernorm.weight", L) < 0)
            return -1;
#define LIN(field, in, out, bias, fmt)                                             \
        snprintf(base, sizeof base, fmt, L);                                       \
        if (add_linear(l, &b->field, in, out, 0, bias, base) < 0)                  \
            return -1;
        LIN(q, D, H * HS, c->attn_bias, "model.layers.%d.self_attn.q_proj")
        LIN(k, D, K * HS, c->attn_bias, "model.layers.%d.self_attn.k_proj")
        LIN(v, D, K * HS, c->attn_bias, "model.layers.%d.self_attn.v_proj")
        LIN(o, H * HS, D, c->attn_bias, "model.layers.%d.self_attn.o_proj")
        LIN(gate, D, F, c->mlp_bias, "model.layers.%d.mlp.gate_proj")
        LIN(up, D, F, c->mlp_bias, "model.layers.%d.mlp.up_proj")
        LIN(down, F, D, c->mlp_bias, "model.layers.%d.mlp.down_proj")
#undef LIN
    }
    /* tied: transformers stores the shared matrix once, as the embedding */
    return c->tied ? check_tied(m) : add_linear(l, &m->unembed, D, c->d_vocab, 0, 0, "lm_head");
}

/* ---- the folder ---- */

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = lp_malloc(n, "saving a model");
    if (p)
        snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* Removes the plain files of dir, then dir. */
static void remove_flat(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = join(dir, e->d_name);
        if (p)
            unlink(p);
        free(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

typedef struct {
    char *created[64]; /* folders made by mkparents, outermost first */
    int n;
} made_dirs;

static void undo_dirs(made_dirs *md, int remove)
{
    for (int i = md->n - 1; i >= 0; i--) {
        if (remove)
            rmdir(md->created[i]);
        free(md->created[i]);
    }
    md->n = 0;
}

/* mkdir -p dir, remembering what it made; a component that exists must be a folder. */
static int mkparents(const char *dir, made_dirs *md)
{
    char *p = lp_strdup(dir, "saving a model");
    if (!p)
        return lp_set_error_code(LP_ERR_NOMEM, "out of memory");
    int rc = 0;
    size_t n = strlen(p);
    for (size_t i = 1; i <= n && rc == 0; i++) {
        if (p[i] != '/' && p[i] != 0)
            continue;
        char saved = p[i];
        p[i] = 0;
        struct stat sb;
        if (stat(p, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode))
                rc = lp_set_error_code(LP_ERR_IO, "'%s' is not a folder", p);
        } else if (mkdir(p, 0777) != 0) {
            rc = lp_set_error_code(LP_ERR_IO, "cannot create the folder '%s': %s", p, strerror(errno));
        } else if (md->n < (int)(sizeof md->created / sizeof *md->created)) {
            if (!(md->created[md->n] = lp_strdup(p, "saving a model")))
                rc = lp_set_error_code(LP_ERR_NOMEM, "out of memory");
            else
                md->n++;
        }
        p[i] = saved;
    }
    free(p);
    return rc;
}

/* The folder that holds path (path without trailing slashes and its last component). */
static char *parent_of(const char *path, const char **base_out, char **base_buf)
{
    char *p = lp_strdup(path, "saving a model");
    if (!p)
        return NULL;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = 0;
    char *slash = strrchr(p, '/');
    *base_buf = lp_strdup(slash ? slash + 1 : p, "saving a model");
    *base_out = *base_buf;
    if (!slash) {
        free(p);
        return lp_strdup(".", "saving a model");
    }
    if (slash == p)
        slash[1] = 0; /* "/x": the root */
    else
        *slash = 0;
    return p;
}

/* A new folder parent/.base.saving-<pid>-<n>, made with mkdir so that the umask applies (the
 * folder becomes the checkpoint when it is renamed; mkdtemp would make it private). */
static int make_temp(char *out, size_t cap, const char *parent, const char *base)
{
    static _Atomic unsigned counter;
    for (int tries = 0; tries < 1000; tries++) {
        snprintf(out, cap, "%s/.%s.saving-%ld-%u", parent, base, (long)getpid(), counter++);
        if (mkdir(out, 0777) == 0)
            return 0;
        if (errno != EEXIST)
            return -1;
    }
    return -1;
}

static int write_text(const char *dir, const char *name, const char *text)
{
    char *path = join(dir, name);
    if (!path)
        return lp_set_error_code(LP_ERR_NOMEM, "out of memory");
    FILE *f = fopen(path, "wb");
    int rc = 0;
    if (!f || fwrite(text, 1, strlen(text), f) != strlen(text))
        rc = lp_set_error_code(LP_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    if (f && fclose(f) != 0 && rc == 0)
        rc = lp_set_error_code(LP_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    free(path);
    return rc;
}

static int cmp_config_last(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    int cx = !strcmp(x, "config.json"), cy = !strcmp(y, "config.json");
    return cx != cy ? cx - cy : strcmp(x, y);
}

/* Moves every file of tmp into folder (config.json last: a reader never sees a new config
 * over old weights for long), then removes tmp. */
static int move_files(const char *tmp, const char *folder)
{
    char *names[32];
    int n = 0, rc = 0;
    DIR *d = opendir(tmp);
    if (!d)
        return lp_set_error_code(LP_ERR_IO, "cannot read '%s': %s", tmp, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) && rc == 0) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (n == (int)(sizeof names / sizeof *names) || !(names[n] = lp_strdup(e->d_name, "saving a model")))
            rc = lp_set_error("too many files in '%s'", tmp);
        else
            n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_config_last);
    for (int i = 0; i < n && rc == 0; i++) {
        char *from = join(tmp, names[i]), *to = join(folder, names[i]);
        if (!from || !to)
            rc = lp_set_error_code(LP_ERR_NOMEM, "out of memory");
        else if (rename(from, to) != 0)
            rc = lp_set_error_code(LP_ERR_IO, "cannot move '%s' to '%s': %s", from, to, strerror(errno));
        free(from);
        free(to);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    return rc;
}

/* Writes the checkpoint's files into dir. */
static int write_files(const lp_model *m, const char *dir, const lp_tokenizer *tok)
{
    char *cfg = config_json(&m->cfg);
    if (!cfg)
        return -1;
    int rc = write_text(dir, "config.json", cfg);
    free(cfg);
    if (rc < 0)
        return -1;
    tlist l = {0};
    rc = m->cfg.arch == LP_ARCH_GPT2 ? gather_gpt2(m, &l) : gather_llama(m, &l);
    if (rc == 0) {
        const char **names = lp_malloc((l.n ? l.n : 1) * sizeof *names, "saving a model");
        char *path = join(dir, "model.safetensors");
        if (!names || !path) {
            rc = lp_set_error_code(LP_ERR_NOMEM, "out of memory");
        } else {
            for (size_t i = 0; i < l.n; i++)
                names[i] = l.names[i];
            const char *mk[] = {"format"}, *mv[] = {"pt"};
            rc = lp_safetensors_write(path, names, l.ts, l.n, LP_DTYPE_F32, mk, mv, 1);
        }
        free(names);
        free(path);
    }
    tlist_free(&l);
    if (rc == 0 && tok)
        rc = lp_tokenizer_save(tok, dir);
    return rc;
}

int lp_model_save(const lp_model *m, const char *folder, const lp_tokenizer *tok)
{
    if (!m || !folder || !folder[0])
        return lp_set_error("lp_model_save: %s", !m ? "no model" : "no folder given");
    if (m->cfg.attn_only && m->cfg.arch != LP_ARCH_GPT2)
        return lp_set_error("cannot save the model to '%s': attention-only models are GPT-2 family only", folder);
    if (tok && lp_tokenizer_vocab_size(tok) > m->cfg.d_vocab)
        return lp_set_error("cannot save the model to '%s': its tokenizer has %ld ids but the model's vocabulary "
                            "only %d", folder, (long)lp_tokenizer_vocab_size(tok), m->cfg.d_vocab);
    struct stat sb;
    int exists = stat(folder, &sb) == 0;
    if (exists && !S_ISDIR(sb.st_mode))
        return lp_set_error_code(LP_ERR_IO, "cannot save the model to '%s': it exists and is not a folder", folder);
    if (exists && access(folder, W_OK | X_OK) != 0)
        return lp_set_error_code(LP_ERR_IO, "cannot save the model to '%s': the folder is not writable (%s)",
                                 folder, strerror(errno));
    const char *base;
    char *base_buf = NULL, *parent = parent_of(folder, &base, &base_buf), *tmp = NULL;
    made_dirs md = {.n = 0};
    int rc = -1;
    if (!parent || !base_buf) {
        lp_set_error_code(LP_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (mkparents(parent, &md) < 0) {
        lp_error_prefix("cannot save the model to '%s': ", folder);
        goto out;
    }
    size_t n = strlen(parent) + strlen(base) + 64;
    if (!(tmp = lp_malloc(n, "saving a model"))) {
        lp_set_error_code(LP_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (make_temp(tmp, n, parent, base) < 0) {
        lp_set_error_code(LP_ERR_IO, "cannot save the model to '%s': cannot create a folder in '%s': %s", folder,
                          parent, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto out;
    }
    if (write_files(m, tmp, tok) < 0 ||
        /* a new folder appears whole; an existing one gets its files replaced one by one */
        (!(!exists && rename(tmp, folder) == 0) && move_files(tmp, folder) < 0)) {
        lp_error_prefix("cannot save the model to '%s': ", folder);
        remove_flat(tmp);
        goto out;
    }
    if (exists || access(tmp, F_OK) == 0)
        remove_flat(tmp); /* emptied by move_files */
    rc = 0;
out:
    undo_dirs(&md, rc < 0);
    free(tmp);
    free(parent);
    free(base_buf);
    return rc;
}
