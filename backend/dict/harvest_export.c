/* Harvested features as Neuronpedia and circuit-tracer feature JSON (harvest_export.h). */
#include "dict/harvest_export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

enum { NLOGIT = 10, LOGIT_BINS = 40 };

static json_t *tok_json(lp_token_text_fn tok_text, void *ud, int32_t id)
{
    const char *t = tok_text ? tok_text(ud, id) : NULL;
    json_t *s = t ? json_string(t) : NULL; /* NULL too for text that is not UTF-8 */
    if (!s) {
        char num[24];
        snprintf(num, sizeof num, "#%d", (int)id);
        s = json_string(num);
    }
    return s;
}

/* Appends v to a, taking v; -1 when either is missing or the append fails. */
static int push(json_t *a, json_t *v)
{
    if (!a || !v) {
        json_decref(v);
        return -1;
    }
    return json_array_append_new(a, v);
}

/* The k largest (sign 1) or smallest (sign -1) finite logits: ids into out, largest |.| first. */
static int extremes(const float *v, int n, int sign, int *out, int k)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            continue;
        float s = sign * v[i];
        if (m == k && s <= sign * v[out[m - 1]])
            continue;
        int at = m < k ? m++ : k - 1;
        while (at > 0 && sign * v[out[at - 1]] < s) {
            out[at] = out[at - 1];
            at--;
        }
        out[at] = i;
    }
    return m;
}

/* The tokens and activations of an example (positions inside the window), and the firing
 * token's place among them. */
static int example_lists(const lp_harvest_example *e, lp_token_text_fn tok_text, void *ud, json_t *toks,
                         json_t *vals, int *at)
{
    int n = 0, rc = 0;
    *at = 0;
    for (int k = 0; k < LP_HARVEST_W; k++) {
        if (e->tok[k] < 0)
            continue;
        if (k == LP_HARVEST_CTX)
            *at = n;
        rc |= push(toks, tok_json(tok_text, ud, e->tok[k]));
        rc |= push(vals, json_real(isfinite(e->act[k]) ? e->act[k] : 0.0));
        n++;
    }
    return rc;
}

static int check(const lp_harvest *h, int i)
{
    if (!h || i < 0 || i >= h->d_sae)
        return lp_set_error("feature export: feature %d is out of range (0..%d)", i, h ? h->d_sae - 1 : -1);
    return 0;
}

static double hist_centre(int k)
{
    double w = (LP_HARVEST_LOG_HI - LP_HARVEST_LOG_LO) / LP_HARVEST_HIST;
    return pow(10.0, LP_HARVEST_LOG_LO + (k + 0.5) * w);
}

json_t *lp_feature_json_neuronpedia(const lp_harvest *h, int i, const float *logits, int n_vocab,
                                    lp_token_text_fn tok_text, void *ud, const char *model_id,
                                    const char *layer_id)
{
    if (check(h, i) < 0)
        return NULL;
    json_t *ps = json_array(), *pv = json_array(), *ns = json_array(), *nv = json_array();
    json_t *fh = json_array(), *fv = json_array(), *lh = json_array(), *lv = json_array(), *acts = json_array();
    int rc = 0;
    if (logits && n_vocab > 0) {
        int top[NLOGIT];
        for (int side = 0; side < 2; side++) {
            int m = extremes(logits, n_vocab, side ? -1 : 1, top, NLOGIT);
            for (int k = 0; k < m; k++) {
                rc |= push(side ? ns : ps, tok_json(tok_text, ud, top[k]));
                rc |= push(side ? nv : pv, json_real(logits[top[k]]));
            }
        }
        double lo = INFINITY, hi = -INFINITY;
        for (int v = 0; v < n_vocab; v++)
            if (isfinite(logits[v]))
                lo = fmin(lo, logits[v]), hi = fmax(hi, logits[v]);
        if (lo < hi) {
            double count[LOGIT_BINS] = {0};
            for (int v = 0; v < n_vocab; v++)
                if (isfinite(logits[v])) {
                    int k = (int)((logits[v] - lo) / (hi - lo) * LOGIT_BINS);
                    count[k >= LOGIT_BINS ? LOGIT_BINS - 1 : k]++;
                }
            for (int k = 0; k < LOGIT_BINS; k++) {
                rc |= push(lh, json_real(count[k]));
                rc |= push(lv, json_real(lo + (hi - lo) * (k + 0.5) / LOGIT_BINS));
            }
        }
    }
    const double *hc = h->hist + (size_t)i * LP_HARVEST_HIST;
    for (int k = 0; k < LP_HARVEST_HIST; k++)
        if (hc[k] > 0) {
            rc |= push(fh, json_real(hc[k]));
            rc |= push(fv, json_real(hist_centre(k)));
        }
    /* the top examples, then each interval's samples from the highest */
    for (int part = -1; part < LP_HARVEST_INTERVALS; part++) {
        int k = part < 0 ? -1 : LP_HARVEST_INTERVALS - 1 - part;
        const lp_harvest_interval *iv = k >= 0 ? h->iv + (size_t)i * LP_HARVEST_INTERVALS + k : NULL;
        int n = iv ? iv->n : h->n_top[i];
        const lp_harvest_example *ex = iv ? lp_harvest_samples(h, i, k) : lp_harvest_top(h, i);
        for (int c = 0; c < n; c++) {
            json_t *toks = json_array(), *vals = json_array();
            int at;
            rc |= example_lists(ex + c, tok_text, ud, toks, vals, &at);
            float mn = ex[c].value;
            for (size_t q = 0; vals && q < json_array_size(vals); q++)
                mn = fminf(mn, (float)json_real_value(json_array_get(vals, q)));
            double share = iv && h->count[i] > 0 ? iv->count / h->count[i] : -1;
            /* json_pack takes toks and vals (released when it fails) */
            json_t *p = toks && vals
                            ? json_pack("{s:o,s:o,s:f,s:i,s:f,s:f,s:f,s:f}", "tokens", toks, "values", vals, "maxValue",
                                        (double)ex[c].value, "maxValueTokenIndex", at, "minValue", (double)mn,
                                        "bin_min", iv ? (double)iv->lo : -1.0, "bin_max", iv ? (double)iv->hi : -1.0,
                                        "bin_contains", share)
                            : NULL;
            if (!(toks && vals))
                json_decref(toks), json_decref(vals);
            rc |= push(acts, p);
        }
    }
    double dens = h->n_tokens > 0 ? h->count[i] / (double)h->n_tokens : 0;
    json_t *out = NULL;
    if (!rc)
        out = json_pack("{s:s,s:s,s:i,s:o,s:o,s:o,s:o,s:f,s:o,s:o,s:o,s:o,s:o,s:f}", "modelId",
                        model_id ? model_id : "", "layer", layer_id ? layer_id : "", "index", i, "pos_str", ps,
                        "pos_values", pv, "neg_str", ns,
                        "neg_values", nv, "frac_nonzero", dens, "freq_hist_data_bar_heights", fh,
                        "freq_hist_data_bar_values", fv, "logits_hist_data_bar_heights", lh,
                        "logits_hist_data_bar_values", lv, "activations", acts, "maxActApprox", (double)h->max[i]);
    else {
        json_decref(ps), json_decref(pv), json_decref(ns), json_decref(nv), json_decref(fh), json_decref(fv);
        json_decref(lh), json_decref(lv), json_decref(acts);
    }
    if (!out)
        lp_set_error_code(LP_ERR_NOMEM, "feature export: no memory for feature %d", i);
    return out;
}

json_t *lp_feature_json_circuit_tracer(const lp_harvest *h, int i, const float *logits, int n_vocab,
                                       lp_token_text_fn tok_text, void *ud, const char *transcoder_id)
{
    if (check(h, i) < 0)
        return NULL;
    json_t *quant = json_array(), *top = json_array(), *bottom = json_array(), *qv = json_array(),
           *hist = json_array();
    int rc = 0;
    if (logits && n_vocab > 0) {
        int ids[NLOGIT];
        for (int side = 0; side < 2; side++) {
            int m = extremes(logits, n_vocab, side ? -1 : 1, ids, NLOGIT);
            for (int k = 0; k < m; k++)
                rc |= push(side ? bottom : top, tok_json(tok_text, ud, ids[k]));
        }
    }
    const double *hc = h->hist + (size_t)i * LP_HARVEST_HIST;
    for (int k = 0; k < LP_HARVEST_HIST; k++)
        rc |= push(hist, json_real(hc[k]));
    float act_min = 0;
    int any = 0;
    for (int part = -1; part < LP_HARVEST_INTERVALS; part++) {
        int k = part < 0 ? -1 : LP_HARVEST_INTERVALS - 1 - part;
        const lp_harvest_interval *iv = k >= 0 ? h->iv + (size_t)i * LP_HARVEST_INTERVALS + k : NULL;
        int n = iv ? iv->n : h->n_top[i];
        if (iv && !n)
            continue;
        const lp_harvest_example *ex = iv ? lp_harvest_samples(h, i, k) : lp_harvest_top(h, i);
        json_t *exs = json_array();
        for (int c = 0; c < n; c++) {
            json_t *toks = json_array(), *vals = json_array();
            int at;
            rc |= example_lists(ex + c, tok_text, ud, toks, vals, &at);
            json_t *e = toks && vals ? json_pack("{s:o,s:o,s:i,s:b}", "tokens", toks, "tokens_acts_list", vals,
                                                 "train_token_ind", at, "is_repeated_datapoint", 0)
                                     : NULL;
            if (!(toks && vals))
                json_decref(toks), json_decref(vals);
            rc |= push(exs, e);
            if (!any || ex[c].value < act_min)
                act_min = ex[c].value, any = 1;
        }
        char name[48];
        if (iv)
            snprintf(name, sizeof name, "Subsample Interval %d", LP_HARVEST_INTERVALS - 1 - k);
        else
            snprintf(name, sizeof name, "Top activations");
        rc |= push(quant, exs ? json_pack("{s:s,s:o}", "quantile_name", name, "examples", exs) : NULL);
        if (iv)
            rc |= push(qv, json_real(iv->hi));
    }
    double dens = h->n_tokens > 0 ? h->count[i] / (double)h->n_tokens : 0;
    json_t *out = NULL;
    if (!rc && quant && top && bottom && qv && hist) {
        out = json_pack("{s:s,s:i,s:o,s:o,s:o,s:f,s:f,s:o,s:o,s:f}", "transcoder_id",
                        transcoder_id ? transcoder_id : "", "index", i, "examples_quantiles", quant, "top_logits", top,
                        "bottom_logits", bottom, "act_min", (double)act_min, "act_max", (double)h->max[i],
                        "quantile_values", qv, "histogram", hist, "activation_frequency", dens);
        quant = top = bottom = qv = hist = NULL;
    }
    json_decref(quant), json_decref(top), json_decref(bottom), json_decref(qv), json_decref(hist);
    if (!out)
        lp_set_error_code(LP_ERR_NOMEM, "feature export: no memory for feature %d", i);
    return out;
}
