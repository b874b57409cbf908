/* circuit-tracer's layouts: transcoder sets (config.yaml + layer_{i}.safetensors) and
 * cross-layer transcoders (W_enc_{i} / W_dec_{i}.safetensors). See sae_io.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "dict/io_impl.h"
#include "dict/sae_io.h"
#include "dict/yaml.h"

#define CONFIG "config.yaml"
#define MAX_YAML ((size_t)1 << 20)
#define MAX_LAYERS 4096

static int is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int has_threshold(lp_sae_arch a) { return a == LP_SAE_JUMPRELU || a == LP_SAE_BATCHTOPK || a == LP_SAE_MATRYOSHKA; }

/* Writes config.yaml (written to a temporary name and renamed). */
static int write_config(const char *dir, const char *kind, const char *in, const char *out, const char *act, int k,
                        const char *fmt, int n_files)
{
    char *path = lp_dict_join(dir, CONFIG), *tmp = lp_dict_join(dir, CONFIG ".tmp");
    int rc = -1;
    FILE *f = path && tmp ? fopen(tmp, "w") : NULL;
    if (!f) {
        if (path && tmp)
            lp_set_error_code(LP_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
        goto out;
    }
    fprintf(f, "model_kind: %s\nfeature_input_hook: ", kind);
    lp_yaml_write_str(f, in);
    fputs("\nfeature_output_hook: ", f);
    lp_yaml_write_str(f, out);
    fprintf(f, "\nactivation: %s\n", act);
    if (k > 0)
        fprintf(f, "k: %d\n", k);
    if (fmt) {
        fputs("transcoders:\n", f);
        for (int i = 0; i < n_files; i++) {
            fputs("  - ", f);
            fprintf(f, fmt, i);
            fputc('\n', f);
        }
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        lp_set_error_code(LP_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        remove(tmp);
        goto out;
    }
    rc = 0;
out:
    free(path), free(tmp);
    return rc;
}

/* config.yaml of dir (NULL with an error); a missing file gives NULL with *missing = 1. */
static lp_yaml *read_config(const char *dir, int *missing)
{
    char *path = lp_dict_join(dir, CONFIG);
    *missing = 0;
    if (!path)
        return NULL;
    lp_yaml *y = NULL;
    if (!is_file(path)) {
        *missing = 1;
        lp_set_error_code(LP_ERR_IO, "%s: missing (circuit-tracer's folders have one)", path);
    } else {
        size_t n;
        char *text = lp_dict_read_text(path, MAX_YAML, &n);
        y = text ? lp_yaml_parse(text, n, path) : NULL;
        free(text);
    }
    free(path);
    return y;
}

int lp_dict_dir_kind(const char *dir)
{
    int missing;
    lp_yaml *y = read_config(dir, &missing);
    if (y) {
        const char *k = lp_yaml_get(y, "model_kind");
        int kind = !k ? 0 : !strcmp(k, "transcoder_set") ? 1 : !strcmp(k, "cross_layer_transcoder") ? 2 : 0;
        if (!kind)
            lp_set_error_code(LP_ERR_FORMAT, "%s/" CONFIG ": model_kind '%s' is not transcoder_set or "
                              "cross_layer_transcoder", dir, k ? k : "");
        lp_yaml_free(y);
        return kind ? kind : -1;
    }
    if (!missing)
        return -1;
    char *a = lp_dict_join(dir, "layer_0.safetensors"), *b = lp_dict_join(dir, "W_enc_0.safetensors");
    int kind = a && is_file(a) ? 1 : b && is_file(b) ? 2 : -1;
    free(a), free(b);
    if (kind < 0)
        lp_set_error_code(LP_ERR_IO, "%s: no config.yaml, layer_0.safetensors or W_enc_0.safetensors: not a "
                          "transcoder folder", dir);
    return kind;
}

/* ---- transcoder sets ------------------------------------------------------------------ */

lp_transcoder_set *lp_transcoder_set_new(int n_layers, const lp_sae_config *c, const char *input_hook,
                                         const char *output_hook)
{
    if (n_layers < 1 || n_layers > MAX_LAYERS) {
        lp_set_error("transcoder set: n_layers must be in 1..%d (got %d)", MAX_LAYERS, n_layers);
        return NULL;
    }
    lp_transcoder_set *t = lp_calloc(1, sizeof *t, "a transcoder set");
    if (!t || !(t->layers = lp_calloc((size_t)n_layers, sizeof *t->layers, "a transcoder set"))) {
        free(t);
        return NULL;
    }
    t->n_layers = n_layers;
    snprintf(t->feature_input_hook, sizeof t->feature_input_hook, "%s", input_hook);
    snprintf(t->feature_output_hook, sizeof t->feature_output_hook, "%s", output_hook);
    for (int l = 0; l < n_layers; l++) {
        lp_sae_config lc = *c;
        lc.transcoder = 1, lc.apply_b_dec_to_input = 0, lc.layer = l;
        snprintf(lc.hook_in, sizeof lc.hook_in, "blocks.%d.%s", l, input_hook);
        snprintf(lc.hook_out, sizeof lc.hook_out, "blocks.%d.%s", l, output_hook);
        if (!(t->layers[l] = lp_sae_new(&lc))) {
            lp_transcoder_set_free(t);
            return NULL;
        }
    }
    return t;
}

static int save_layer(const lp_sae *s0, const char *path)
{
    lp_sae *f = NULL;
    const lp_sae *s = s0;
    if (s0->scale != 1.0f && !(s = f = lp_dict_folded(s0)))
        return -1;
    lp_tensor *we = lp_dict_transpose(s->W_enc);
    int rc = -1;
    if (we) {
        const char *names[6] = {"W_enc", "W_dec", "b_enc", "b_dec"};
        const lp_tensor *ts[6] = {we, s->W_dec, s->b_enc, s->b_dec};
        size_t n = 4;
        if (has_threshold(s->cfg.arch))
            names[n] = "activation_function.threshold", ts[n++] = s->threshold;
        if (s->cfg.skip)
            names[n] = "W_skip", ts[n++] = s->W_skip;
        rc = lp_safetensors_write(path, names, ts, n, LP_DTYPE_F32, NULL, NULL, 0);
    }
    lp_tensor_free(we);
    lp_sae_free(f);
    return rc;
}

int lp_transcoder_set_save(const lp_transcoder_set *t, const char *dir)
{
    if (t->n_layers < 1)
        return lp_set_error("%s: a transcoder set needs at least one layer", dir);
    const lp_sae_config *c0 = &t->layers[0]->cfg;
    for (int l = 0; l < t->n_layers; l++) {
        const lp_sae_config *c = &t->layers[l]->cfg;
        if (c->d_in != c->d_out || c->d_in != c0->d_in)
            return lp_set_error("%s: layer %d: circuit-tracer's transcoders read and write d_model (%d): d_in %d, "
                                "d_out %d", dir, l, c0->d_in, c->d_in, c->d_out);
        if (has_threshold(c->arch) != has_threshold(c0->arch) || (c->arch == LP_SAE_TOPK) != (c0->arch == LP_SAE_TOPK) ||
            c->k != c0->k || c->skip != c0->skip)
            return lp_set_error("%s: layer %d: every layer of a transcoder set has the same activation and skip", dir, l);
        if (has_threshold(c->arch) && !t->layers[l]->threshold)
            return lp_set_error("%s: layer %d has no threshold", dir, l);
    }
    if (lp_dict_mkdir(dir) < 0)
        return -1;
    for (int l = 0; l < t->n_layers; l++) {
        char name[64];
        snprintf(name, sizeof name, "layer_%d.safetensors", l);
        char *path = lp_dict_join(dir, name);
        int rc = path ? save_layer(t->layers[l], path) : -1;
        free(path);
        if (rc < 0)
            return -1;
    }
    const char *act = has_threshold(c0->arch) ? "jumprelu" : c0->arch == LP_SAE_TOPK ? "topk" : "relu";
    return write_config(dir, "transcoder_set", t->feature_input_hook, t->feature_output_hook, act,
                        c0->arch == LP_SAE_TOPK ? c0->k : 0, "layer_%d.safetensors", t->n_layers);
}

/* Reads one layer file into a transcoder of layer l. */
static lp_sae *load_layer(const char *path, int l, const lp_yaml *y, const char *in, const char *out)
{
    lp_safetensors *st = lp_safetensors_open(path);
    if (!st)
        return NULL;
    lp_sae *s = NULL;
    lp_tensor *we = NULL;
    const lp_st_entry *be = lp_safetensors_find(st, "b_enc"), *bd = lp_safetensors_find(st, "b_dec");
    if (!be || !bd || be->ndim != 1 || bd->ndim != 1) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: tensor '%s' is missing or not 1-D", path, !be || be->ndim != 1 ? "b_enc" : "b_dec");
        goto out;
    }
    int64_t dtc = be->shape[0], dm = bd->shape[0];
    const char *act = lp_yaml_get(y, "activation");
    int thr = lp_safetensors_find(st, "activation_function.threshold") != NULL;
    lp_sae_config c = {.arch = thr ? LP_SAE_JUMPRELU : LP_SAE_STANDARD, .d_in = (int)dm, .d_sae = (int)dtc,
                       .d_out = (int)dm, .transcoder = 1, .layer = l,
                       .skip = lp_safetensors_find(st, "W_skip") != NULL};
    if (act && !strcmp(act, "jumprelu") && !thr) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: tensor 'activation_function.threshold' is missing (activation: jumprelu)", path);
        goto out;
    }
    if (act && !strcmp(act, "topk")) {
        const char *k = lp_yaml_get(y, "k");
        char *end = NULL;
        long kv = k ? strtol(k, &end, 10) : 0;
        if (!k || *end || kv < 1 || kv > dtc) {
            lp_set_error_code(LP_ERR_FORMAT, "%s/" CONFIG ": activation topk needs k in 1..%lld", path, (long long)dtc);
            goto out;
        }
        c.arch = LP_SAE_TOPK, c.k = (int)kv;
    } else if (act && strcmp(act, "relu") && strcmp(act, "jumprelu") && act[0]) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: activation '%s' is not relu, jumprelu or topk", path, act);
        goto out;
    }
    snprintf(c.hook_in, sizeof c.hook_in, "blocks.%d.%s", l, in);
    snprintf(c.hook_out, sizeof c.hook_out, "blocks.%d.%s", l, out);
    if (!(s = lp_sae_new(&c))) {
        lp_error_prefix("%s: ", path);
        goto out;
    }
    int ok = (we = lp_dict_tensor(st, "W_enc", 2, (int64_t[]){dtc, dm}, NULL)) != NULL;
    lp_tensor *t;
#define TAKE(slot, name, nd, ...)                                                                                   \
    if (ok && (ok = (t = lp_dict_tensor(st, name, nd, (int64_t[]){__VA_ARGS__}, NULL)) != NULL))                    \
        lp_tensor_free(slot), slot = t;
    TAKE(s->W_dec, "W_dec", 2, dtc, dm)
    TAKE(s->b_enc, "b_enc", 1, dtc)
    TAKE(s->b_dec, "b_dec", 1, dm)
    if (thr)
        TAKE(s->threshold, "activation_function.threshold", 1, dtc)
    if (c.skip)
        TAKE(s->W_skip, "W_skip", 2, dm, dm)
#undef TAKE
    const char *names[] = {"W_enc", "W_dec", "b_enc", "b_dec", "activation_function.threshold", "W_skip"};
    if (ok && (t = lp_dict_transpose(we)))
        lp_tensor_free(s->W_enc), s->W_enc = t;
    else
        ok = 0;
    if (!ok || lp_dict_no_extra(st, names, 6) < 0) {
        lp_sae_free(s);
        s = NULL;
    }
out:
    lp_tensor_free(we);
    lp_safetensors_close(st);
    return s;
}

lp_transcoder_set *lp_transcoder_set_load(const char *dir)
{
    int missing;
    lp_yaml *y = read_config(dir, &missing);
    if (!y)
        return NULL;
    lp_transcoder_set *t = NULL;
    const char *kind = lp_yaml_get(y, "model_kind");
    const char *in = lp_yaml_get(y, "feature_input_hook"), *out = lp_yaml_get(y, "feature_output_hook");
    if (!kind || strcmp(kind, "transcoder_set")) {
        lp_set_error_code(LP_ERR_FORMAT, "%s/" CONFIG ": model_kind is '%s', not transcoder_set", dir, kind ? kind : "");
        goto fail;
    }
    if (!in || !out || !in[0] || !out[0] || strlen(in) > 64 || strlen(out) > 64) {
        lp_set_error_code(LP_ERR_FORMAT, "%s/" CONFIG ": feature_input_hook and feature_output_hook must be hook names",
                          dir);
        goto fail;
    }
    /* the files: the list when it names local files, else layer_0, layer_1, ... */
    size_t nlist = 0;
    const char *const *list = lp_yaml_list(y, "transcoders", &nlist);
    for (size_t i = 0; list && i < nlist; i++)
        if (strstr(list[i], "://") || !list[i][0])
            list = NULL;
    int n = 0;
    if (list) {
        if (nlist > MAX_LAYERS) {
            lp_set_error_code(LP_ERR_FORMAT, "%s/" CONFIG ": more than %d transcoders", dir, MAX_LAYERS);
            goto fail;
        }
        n = (int)nlist;
    } else {
        for (;; n++) {
            char name[64];
            snprintf(name, sizeof name, "layer_%d.safetensors", n);
            char *p = lp_dict_join(dir, name);
            int there = p && is_file(p);
            free(p);
            if (!there || n >= MAX_LAYERS)
                break;
        }
    }
    if (n == 0) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: no transcoders (layer_0.safetensors is missing)", dir);
        goto fail;
    }
    if (!(t = lp_calloc(1, sizeof *t, "a transcoder set")) ||
        !(t->layers = lp_calloc((size_t)n, sizeof *t->layers, "a transcoder set")))
        goto fail;
    t->n_layers = n;
    snprintf(t->feature_input_hook, sizeof t->feature_input_hook, "%s", in);
    snprintf(t->feature_output_hook, sizeof t->feature_output_hook, "%s", out);
    for (int l = 0; l < n; l++) {
        char name[64];
        snprintf(name, sizeof name, "layer_%d.safetensors", l);
        const char *file = list ? list[l] : name;
        char *p = file[0] == '/' ? lp_strdup(file, "a file name") : lp_dict_join(dir, file);
        t->layers[l] = p ? load_layer(p, l, y, in, out) : NULL;
        free(p);
        if (!t->layers[l])
            goto fail;
        const lp_sae_config *c = &t->layers[l]->cfg, *c0 = &t->layers[0]->cfg;
        if (c->d_in != c0->d_in) {
            lp_set_error_code(LP_ERR_FORMAT, "%s: layer %d has d_model %d but layer 0 has %d", dir, l, c->d_in, c0->d_in);
            goto fail;
        }
    }
    lp_yaml_free(y);
    return t;
fail:
    lp_yaml_free(y);
    lp_transcoder_set_free(t);
    return NULL;
}

/* ---- cross-layer transcoders ----------------------------------------------------------- */

int lp_clt_save(const lp_clt *c, const char *dir)
{
    if (lp_dict_mkdir(dir) < 0)
        return -1;
    for (int l = 0; l < c->n_layers; l++) {
        char en[64], dn[64], wn[32], be[32], bd[32], th[32];
        snprintf(en, sizeof en, "W_enc_%d.safetensors", l);
        snprintf(dn, sizeof dn, "W_dec_%d.safetensors", l);
        snprintf(wn, sizeof wn, "W_enc_%d", l), snprintf(be, sizeof be, "b_enc_%d", l);
        snprintf(bd, sizeof bd, "b_dec_%d", l), snprintf(th, sizeof th, "threshold_%d", l);
        lp_tensor *we = lp_dict_transpose(c->W_enc[l]);
        char *ep = lp_dict_join(dir, en), *dp = lp_dict_join(dir, dn);
        const char *names[4] = {wn, be, bd, th};
        const lp_tensor *ts[4] = {we, c->b_enc[l], c->b_dec[l], c->threshold ? c->threshold[l] : NULL};
        int rc = we && ep && dp ? lp_safetensors_write(ep, names, ts, c->threshold ? 4 : 3, LP_DTYPE_F32, NULL, NULL, 0) : -1;
        snprintf(wn, sizeof wn, "W_dec_%d", l);
        const char *dnames[1] = {wn};
        const lp_tensor *dts[1] = {c->W_dec[l]};
        if (rc == 0)
            rc = lp_safetensors_write(dp, dnames, dts, 1, LP_DTYPE_F32, NULL, NULL, 0);
        lp_tensor_free(we);
        free(ep), free(dp);
        if (rc < 0)
            return -1;
    }
    return write_config(dir, "cross_layer_transcoder", c->feature_input_hook, c->feature_output_hook,
                        c->threshold ? "jumprelu" : "relu", 0, NULL, 0);
}

/* Reads the tensors of layer l into c (sizes already known). */
static int clt_layer(lp_clt *c, const char *dir, int l)
{
    char en[64], dn[64], wn[32], be[32], bd[32], th[32];
    snprintf(en, sizeof en, "W_enc_%d.safetensors", l), snprintf(dn, sizeof dn, "W_dec_%d.safetensors", l);
    snprintf(wn, sizeof wn, "W_enc_%d", l), snprintf(be, sizeof be, "b_enc_%d", l);
    snprintf(bd, sizeof bd, "b_dec_%d", l), snprintf(th, sizeof th, "threshold_%d", l);
    char *ep = lp_dict_join(dir, en), *dp = lp_dict_join(dir, dn);
    lp_safetensors *st = ep ? lp_safetensors_open(ep) : NULL;
    int64_t dtc = c->d_tc, dm = c->d_model, rest = c->n_layers - l;
    int ok = st != NULL;
    lp_tensor *t = NULL;
    if (ok && (ok = (t = lp_dict_tensor(st, wn, 2, (int64_t[]){dtc, dm}, NULL)) != NULL)) {
        lp_tensor *tt = lp_dict_transpose(t);
        lp_tensor_free(t);
        if ((ok = tt != NULL))
            lp_tensor_free(c->W_enc[l]), c->W_enc[l] = tt;
    }
#define TAKE(slot, name, nd, ...)                                                                                   \
    if (ok && (ok = (t = lp_dict_tensor(st, name, nd, (int64_t[]){__VA_ARGS__}, NULL)) != NULL))                    \
        lp_tensor_free(slot), slot = t;
    TAKE(c->b_enc[l], be, 1, dtc)
    TAKE(c->b_dec[l], bd, 1, dm)
    if (c->threshold)
        TAKE(c->threshold[l], th, 1, dtc)
    const char *names[4] = {wn, be, bd, th};
    ok = ok && lp_dict_no_extra(st, names, c->threshold ? 4 : 3) == 0;
    lp_safetensors_close(st);
    st = ok && dp ? lp_safetensors_open(dp) : NULL;
    snprintf(wn, sizeof wn, "W_dec_%d", l);
    ok = ok && st;
    TAKE(c->W_dec[l], wn, 3, dtc, rest, dm)
#undef TAKE
    const char *dnames[1] = {wn};
    ok = ok && lp_dict_no_extra(st, dnames, 1) == 0;
    lp_safetensors_close(st);
    free(ep), free(dp);
    return ok ? 0 : -1;
}

lp_clt *lp_clt_load(const char *dir)
{
    int missing;
    lp_yaml *y = read_config(dir, &missing);
    if (!y && !missing)
        return NULL;
    lp_clt *c = NULL;
    const char *kind = lp_yaml_get(y, "model_kind");
    if (y && (!kind || strcmp(kind, "cross_layer_transcoder"))) {
        lp_set_error_code(LP_ERR_FORMAT, "%s/" CONFIG ": model_kind is '%s', not cross_layer_transcoder", dir,
                          kind ? kind : "");
        goto fail;
    }
    int n = 0;
    for (;; n++) {
        char name[64];
        snprintf(name, sizeof name, "W_enc_%d.safetensors", n);
        char *p = lp_dict_join(dir, name);
        int there = p && is_file(p);
        free(p);
        if (!there || n >= MAX_LAYERS)
            break;
    }
    char *p0 = lp_dict_join(dir, "W_enc_0.safetensors");
    lp_safetensors *st = n && p0 ? lp_safetensors_open(p0) : NULL;
    if (!n)
        lp_set_error_code(LP_ERR_IO, "%s: W_enc_0.safetensors is missing: not a cross-layer transcoder", dir);
    const lp_st_entry *e = st ? lp_safetensors_find(st, "W_enc_0") : NULL;
    int jump = st && lp_safetensors_find(st, "threshold_0");
    int64_t dtc = e && e->ndim == 2 ? e->shape[0] : 0, dm = e && e->ndim == 2 ? e->shape[1] : 0;
    if (st && (!e || e->ndim != 2))
        lp_set_error_code(LP_ERR_FORMAT, "%s: tensor 'W_enc_0' is missing or not 2-D", p0);
    lp_safetensors_close(st);
    free(p0);
    if (!dtc || dtc > (1 << 30) || dm > (1 << 30) || !(c = lp_clt_new(n, (int)dm, (int)dtc, jump)))
        goto fail;
    const char *in = lp_yaml_get(y, "feature_input_hook"), *out = lp_yaml_get(y, "feature_output_hook");
    snprintf(c->feature_input_hook, sizeof c->feature_input_hook, "%s", in && in[0] ? in : "mlp.hook_in");
    snprintf(c->feature_output_hook, sizeof c->feature_output_hook, "%s", out && out[0] ? out : "mlp.hook_out");
    for (int l = 0; l < n; l++)
        if (clt_layer(c, dir, l) < 0)
            goto fail;
    lp_yaml_free(y);
    return c;
fail:
    lp_yaml_free(y);
    lp_clt_free(c);
    return NULL;
}
