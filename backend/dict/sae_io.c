/* SAELens' folder: cfg.json, sae_weights.safetensors, sparsity.safetensors (see sae_io.h). */
#include "dict/sae_io.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "dict/io_impl.h"

#define CFG "cfg.json"
#define WEIGHTS "sae_weights.safetensors"
#define SPARSITY "sparsity.safetensors"
/* cfg.json's metadata.sae_lens_version: the SAELens file format loupe writes (6.x: metadata
 * nested; an older or missing version makes SAELens read the file as a pre-6.0 one). */
#define FORMAT_VERSION "6.0.0"

static int has_threshold(lp_sae_arch a) { return a == LP_SAE_JUMPRELU || a == LP_SAE_BATCHTOPK || a == LP_SAE_MATRYOSHKA; }

/* SAELens' architecture name for s, or NULL when SAELens has none. */
static const char *saelens_arch(const lp_sae_config *c)
{
    int jump = has_threshold(c->arch);
    if (!c->transcoder)
        return c->arch == LP_SAE_STANDARD ? "standard" : c->arch == LP_SAE_TOPK ? "topk" : "jumprelu";
    if (c->arch == LP_SAE_TOPK)
        return NULL;
    if (jump)
        return c->skip ? "jumprelu_skip_transcoder" : "jumprelu_transcoder";
    return c->skip ? "skip_transcoder" : "transcoder";
}

static json_t *cfg_json(const lp_sae *s, const char *arch, const lp_sae_meta *m)
{
    const lp_sae_config *c = &s->cfg;
    char version[64];
    snprintf(version, sizeof version, "loupe %s", LOUPE_VERSION);
    json_t *md = json_pack("{s:s, s:s, s:o, s:o, s:b, s:s, s:b, s:s, s:s}", "model_name", m ? m->model_name : "",
                           "hook_name", c->hook_in,
                           "hook_head_index", m && m->hook_head_index >= 0 ? json_integer(m->hook_head_index) : json_null(),
                           "context_size", m && m->context_size > 0 ? json_integer(m->context_size) : json_null(),
                           "prepend_bos", m ? m->prepend_bos : 1, "dataset_path", m ? m->dataset_path : "",
                           "exclude_special_tokens", m ? m->exclude_special_tokens : 0,
                           "sae_lens_version", FORMAT_VERSION,
                           "sae_lens_training_version", m && m->training_version[0] ? m->training_version : version);
    if (!md)
        return NULL;
    if (c->transcoder)
        json_object_set_new(md, "hook_name_out", json_string(c->hook_out));
    json_t *j = json_pack("{s:i, s:i, s:s, s:s, s:b, s:s, s:s, s:s, s:o}", "d_in", c->d_in, "d_sae", c->d_sae,
                          "dtype", "float32", "device", "cpu", "apply_b_dec_to_input", c->apply_b_dec_to_input,
                          "normalize_activations", "none", "reshape_activations", "none", "architecture", arch,
                          "metadata", md);
    if (!j)
        return NULL;
    if (c->transcoder)
        json_object_set_new(j, "d_out", json_integer(c->d_out));
    if (c->arch == LP_SAE_TOPK) {
        json_object_set_new(j, "k", json_integer(c->k));
        json_object_set_new(j, "rescale_acts_by_decoder_norm", json_boolean(c->rescale_acts_by_decoder_norm));
    }
    return j;
}

int lp_sae_save(const lp_sae *s, const char *dir, const lp_sae_meta *meta)
{
    const char *arch = saelens_arch(&s->cfg);
    if (!arch)
        return lp_set_error("%s: SAELens has no %s transcoder; save it as a transcoder set "
                            "(circuit-tracer's layout) instead", dir, lp_sae_arch_name(s->cfg.arch));
    if (has_threshold(s->cfg.arch) && !s->threshold)
        return lp_set_error("%s: a %s dictionary without its threshold cannot be saved", dir,
                            lp_sae_arch_name(s->cfg.arch));
    if (lp_dict_mkdir(dir) < 0)
        return -1;
    lp_sae *f = NULL;
    if (s->scale != 1.0f) {
        if (!(f = lp_dict_folded(s)))
            return lp_error_prefix("%s: ", dir);
        s = f;
    }
    int rc = -1;
    char *wpath = lp_dict_join(dir, WEIGHTS), *spath = lp_dict_join(dir, SPARSITY), *cpath = lp_dict_join(dir, CFG);
    json_t *j = NULL;
    if (!wpath || !spath || !cpath)
        goto out;
    const char *names[6] = {"W_enc", "W_dec", "b_enc", "b_dec"};
    const lp_tensor *ts[6] = {s->W_enc, s->W_dec, s->b_enc, s->b_dec};
    size_t n = 4;
    if (has_threshold(s->cfg.arch))
        names[n] = "threshold", ts[n++] = s->threshold;
    if (s->cfg.skip)
        names[n] = "W_skip", ts[n++] = s->W_skip;
    if (lp_safetensors_write(wpath, names, ts, n, LP_DTYPE_F32, NULL, NULL, 0) < 0)
        goto out;
    if (s->log_density) {
        const char *sn[1] = {"sparsity"};
        const lp_tensor *st[1] = {s->log_density};
        if (lp_safetensors_write(spath, sn, st, 1, LP_DTYPE_F32, NULL, NULL, 0) < 0)
            goto out;
    } else {
        remove(spath); /* an older one would not belong to these weights */
    }
    if (!(j = cfg_json(s, arch, meta))) {
        lp_set_error_code(LP_ERR_NOMEM, "%s: cannot build cfg.json", dir);
        goto out;
    }
    if (json_dump_file(j, cpath, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
        lp_set_error_code(LP_ERR_IO, "%s: cannot write", cpath);
        goto out;
    }
    rc = 0;
out:
    json_decref(j);
    free(wpath), free(spath), free(cpath);
    lp_sae_free(f);
    return rc;
}

/* ---- loading -------------------------------------------------------------------------- */

static int cfg_int(json_t *o, const char *path, const char *key, int required, int *out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required)
            return lp_set_error_code(LP_ERR_FORMAT, "%s: '%s' is missing", path, key);
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 30))
        return lp_set_error_code(LP_ERR_FORMAT, "%s: '%s' must be a non-negative integer", path, key);
    *out = (int)json_integer_value(v);
    return 0;
}

static const char *cfg_str(json_t *a, json_t *b, const char *key)
{
    const char *s = json_string_value(json_object_get(a, key));
    return s ? s : json_string_value(json_object_get(b, key));
}

static void copy_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

/* cfg.json -> configuration (and metadata). */
static int parse_cfg(const char *path, lp_sae_config *c, lp_sae_meta *m)
{
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        FILE *f = fopen(path, "rb");
        if (!f)
            return lp_set_error_code(LP_ERR_IO, "%s: cannot open (an SAELens folder has cfg.json)", path);
        fclose(f);
        return lp_set_error_code(LP_ERR_FORMAT, "%s: not valid JSON: %s (line %d)", path, je.text, je.line);
    }
    int rc = -1;
    json_t *md = json_object_get(j, "metadata");
    if (!json_is_object(j) || (md && !json_is_object(md))) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: expected a JSON object (with an object 'metadata')", path);
        goto out;
    }
    memset(c, 0, sizeof *c);
    memset(m, 0, sizeof *m);
    c->layer = -1, m->hook_head_index = -1, m->prepend_bos = 1;
    if (cfg_int(j, path, "d_in", 1, &c->d_in) < 0 || cfg_int(j, path, "d_sae", 1, &c->d_sae) < 0)
        goto out;
    const char *arch = json_string_value(json_object_get(j, "architecture"));
    if (!arch)
        arch = "standard"; /* files before SAELens 6 name none */
    static const char *const known[] = {"standard", "topk", "jumprelu", "transcoder", "skip_transcoder",
                                        "jumprelu_transcoder", "jumprelu_skip_transcoder"};
    int ai = -1;
    for (int i = 0; i < (int)(sizeof known / sizeof *known); i++)
        if (!strcmp(arch, known[i]))
            ai = i;
    if (ai < 0) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: architecture '%s' is not one loupe reads (standard, topk, jumprelu, "
                          "transcoder, skip_transcoder, jumprelu_transcoder, jumprelu_skip_transcoder)", path, arch);
        goto out;
    }
    c->arch = ai == 1 ? LP_SAE_TOPK : (ai == 2 || ai >= 5) ? LP_SAE_JUMPRELU : LP_SAE_STANDARD;
    c->transcoder = ai >= 3;
    c->skip = ai == 4 || ai == 6;
    c->d_out = c->d_in;
    if (c->transcoder && cfg_int(j, path, "d_out", 1, &c->d_out) < 0)
        goto out;
    if (c->arch == LP_SAE_TOPK && cfg_int(j, path, "k", 1, &c->k) < 0)
        goto out;
    json_t *ab = json_object_get(j, "apply_b_dec_to_input");
    c->apply_b_dec_to_input = c->transcoder ? 0 : ab ? json_is_true(ab) : 1;
    if (c->transcoder && json_is_true(ab)) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: apply_b_dec_to_input is true for a transcoder", path);
        goto out;
    }
    c->rescale_acts_by_decoder_norm = json_is_true(json_object_get(j, "rescale_acts_by_decoder_norm"));
    const char *norm = json_string_value(json_object_get(j, "normalize_activations"));
    if (norm && strcmp(norm, "none") != 0) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: normalize_activations '%s' is not read (loupe reads SAEs whose "
                          "normalisation is folded into the weights: 'none')", path, norm);
        goto out;
    }
    const char *dtype = json_string_value(json_object_get(j, "dtype"));
    if (dtype && strcmp(dtype, "float32") && strcmp(dtype, "float16") && strcmp(dtype, "bfloat16") &&
        strcmp(dtype, "torch.float32") && strcmp(dtype, "torch.float16") && strcmp(dtype, "torch.bfloat16")) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: dtype '%s' is not float32, float16 or bfloat16", path, dtype);
        goto out;
    }
    const char *hook = cfg_str(md, j, "hook_name");
    if (!hook)
        hook = cfg_str(md, j, "hook_point"); /* before SAELens 6 */
    const char *hook_out = cfg_str(md, j, "hook_name_out");
    copy_str(c->hook_in, sizeof c->hook_in, hook);
    copy_str(c->hook_out, sizeof c->hook_out, c->transcoder && hook_out ? hook_out : hook);
    c->layer = lp_dict_hook_layer(c->hook_in);
    copy_str(m->model_name, sizeof m->model_name, cfg_str(md, j, "model_name"));
    copy_str(m->dataset_path, sizeof m->dataset_path, cfg_str(md, j, "dataset_path"));
    copy_str(m->training_version, sizeof m->training_version, cfg_str(md, j, "sae_lens_training_version"));
    json_t *src = md ? md : j;
    if (cfg_int(src, path, "context_size", 0, &m->context_size) < 0 ||
        cfg_int(src, path, "hook_head_index", 0, &m->hook_head_index) < 0)
        goto out;
    json_t *pb = json_object_get(src, "prepend_bos");
    m->prepend_bos = pb ? json_is_true(pb) : 1;
    m->exclude_special_tokens = json_is_true(json_object_get(src, "exclude_special_tokens"));
    if (lp_sae_config_check(c) < 0) {
        lp_error_prefix("%s: ", path);
        goto out;
    }
    rc = 0;
out:
    json_decref(j);
    return rc;
}

/* Replaces *slot by the checked tensor `name` (required unless absent is given). */
static int take(const lp_safetensors *st, lp_tensor **slot, const char *name, int ndim, const int64_t *shape, int *absent)
{
    lp_tensor *t = lp_dict_tensor(st, name, ndim, shape, absent);
    if (!t)
        return absent && *absent ? 0 : -1;
    lp_tensor_free(*slot);
    *slot = t;
    return 0;
}

static int read_weights(lp_sae *s, const char *path)
{
    lp_safetensors *st = lp_safetensors_open(path);
    if (!st)
        return -1;
    const lp_sae_config *c = &s->cfg;
    int64_t di = c->d_in, ds = c->d_sae, dout = c->d_out;
    int rc = -1, absent = 0;
    const char *names[] = {"W_enc", "W_dec", "b_enc", "b_dec", "threshold", "W_skip", "log_threshold"};
    int nn = 4;
    if (take(st, &s->W_enc, "W_enc", 2, (int64_t[]){di, ds}, NULL) < 0 ||
        take(st, &s->W_dec, "W_dec", 2, (int64_t[]){ds, dout}, NULL) < 0 ||
        take(st, &s->b_enc, "b_enc", 1, &ds, NULL) < 0 || take(st, &s->b_dec, "b_dec", 1, &dout, NULL) < 0)
        goto out;
    if (c->skip) {
        names[nn++] = "W_skip";
        if (take(st, &s->W_skip, "W_skip", 2, (int64_t[]){dout, di}, NULL) < 0)
            goto out;
    }
    if (c->arch == LP_SAE_JUMPRELU) {
        names[nn++] = "threshold";
        if (take(st, &s->threshold, "threshold", 1, &ds, &absent) < 0)
            goto out;
        if (absent) { /* older JumpReLU files keep log(threshold) */
            names[nn - 1] = "log_threshold";
            if (take(st, &s->threshold, "log_threshold", 1, &ds, NULL) < 0) {
                lp_set_error_code(LP_ERR_FORMAT, "%s: tensor 'threshold' is missing", path);
                goto out;
            }
            for (int64_t i = 0; i < ds; i++)
                s->threshold->data[i] = expf(s->threshold->data[i]);
        }
    }
    rc = lp_dict_no_extra(st, names, nn);
out:
    lp_safetensors_close(st);
    return rc;
}

lp_sae *lp_sae_load_for(const char *dir, int d_model, lp_sae_meta *meta)
{
    lp_sae_meta m;
    lp_sae_config c;
    char *cpath = lp_dict_join(dir, CFG), *wpath = lp_dict_join(dir, WEIGHTS), *spath = lp_dict_join(dir, SPARSITY);
    lp_sae *s = NULL;
    if (!cpath || !wpath || !spath || parse_cfg(cpath, &c, &m) < 0)
        goto fail;
    if (d_model > 0 && c.d_in != d_model) {
        lp_set_error("%s: d_in is %d but the model's d_model is %d", cpath, c.d_in, d_model);
        goto fail;
    }
    if (!(s = lp_sae_new(&c)) || read_weights(s, wpath) < 0)
        goto fail;
    FILE *f = fopen(spath, "rb");
    if (f) {
        fclose(f);
        lp_safetensors *st = lp_safetensors_open(spath);
        int64_t ds = c.d_sae;
        const char *sn[] = {"sparsity"};
        int ok = st && take(st, &s->log_density, "sparsity", 1, &ds, NULL) == 0 && lp_dict_no_extra(st, sn, 1) == 0;
        lp_safetensors_close(st);
        if (!ok)
            goto fail;
    }
    if (meta)
        *meta = m;
    free(cpath), free(wpath), free(spath);
    return s;
fail:
    lp_sae_free(s);
    free(cpath), free(wpath), free(spath);
    return NULL;
}

lp_sae *lp_sae_load(const char *dir, lp_sae_meta *meta) { return lp_sae_load_for(dir, 0, meta); }
