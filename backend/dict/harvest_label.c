/* Automatic feature labels from a harvest (harvest.h, "labels"), and a feature's direct
 * effect on the logits, which labels and dashboards show. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "dict/harvest.h"

int lp_feature_logits(const lp_model *m, const lp_sae *s, int i, float *out)
{
    int D = m->cfg.d_model, V = m->cfg.d_vocab;
    if (i < 0 || i >= s->cfg.d_sae)
        return lp_set_error("feature %d is out of range (the dictionary has %d: 0..%d)", i, s->cfg.d_sae,
                            s->cfg.d_sae - 1);
    if (s->cfg.d_out != D)
        return lp_set_error("the dictionary writes %d dimensions, not the residual stream's %d: no direct logit "
                            "effect", s->cfg.d_out, D);
    const lp_linear *u = &m->unembed;
    if (!u->w || lp_tensor_numel(u->w) != (int64_t)V * D || !lp_tensor_is_contiguous(u->w))
        return lp_set_error("the model's unembedding is not a contiguous %d x %d matrix", V, D);
    double row[4096];
    double *r = D <= 4096 ? row : NULL;
    if (!r)
        return lp_set_error("d_model %d is larger than the direct-effect code handles (4096)", D);
    const float *w = s->W_dec->data + (size_t)i * D;
    for (int d = 0; d < D; d++)
        r[d] = (double)w[d] * (m->lnf_w ? (double)m->lnf_w->data[d] : 1.0);
    const float *U = u->w->data;
    for (int v = 0; v < V; v++) {
        double acc = 0;
        for (int d = 0; d < D; d++)
            acc += r[d] * (u->trans ? U[(size_t)v * D + d] : U[(size_t)d * V + v]);
        out[v] = (float)acc;
    }
    return 0;
}

int lp_feature_neurons(const lp_model *m, const lp_sae *s, int i, int layer, int k, int *ids, float *dots)
{
    int D = m->cfg.d_model, n = 0;
    if (i < 0 || i >= s->cfg.d_sae || s->cfg.d_out != D || layer < 0 || layer >= m->cfg.n_layers || k <= 0 ||
        m->cfg.attn_only)
        return 0;
    const lp_block *b = &m->blocks[layer];
    const lp_linear *w = b->proj.w ? &b->proj : &b->down;
    if (!w->w || w->out != D || w->in <= 0 || !lp_tensor_is_contiguous(w->w) ||
        lp_tensor_numel(w->w) != (int64_t)w->in * D)
        return 0;
    const float *dec = s->W_dec->data + (size_t)i * D, *W = w->w->data;
    for (int u = 0; u < w->in; u++) {
        double acc = 0;
        for (int d = 0; d < D; d++)
            acc += (double)dec[d] * (w->trans ? W[(size_t)d * w->in + u] : W[(size_t)u * D + d]);
        float v = (float)acc, a = fabsf(v);
        if (n == k && !(a > fabsf(dots[k - 1])))
            continue;
        int at = n < k ? n++ : k - 1;
        while (at > 0 && fabsf(dots[at - 1]) < a) {
            dots[at] = dots[at - 1], ids[at] = ids[at - 1];
            at--;
        }
        dots[at] = v, ids[at] = u;
    }
    return n;
}

/* A token's text, quoted, cut at 24 bytes on a UTF-8 boundary, appended to buf at *len. */
static void put_token(char *buf, size_t cap, size_t *len, int32_t id, lp_token_text_fn tok_text, void *ud)
{
    char num[24];
    const char *t = tok_text ? tok_text(ud, id) : NULL;
    if (!t) {
        snprintf(num, sizeof num, "#%d", (int)id);
        t = num;
    }
    size_t n = strlen(t), cut = n;
    if (n > 24) {
        cut = 24;
        while (cut > 0 && ((unsigned char)t[cut] & 0xC0) == 0x80)
            cut--;
    }
    if (*len < cap)
        *len += (size_t)snprintf(buf + *len, cap - *len, "\"%.*s%s\"", (int)cut, t, cut < n ? "…" : "");
    if (*len >= cap)
        *len = cap - 1;
}

static void put(char *buf, size_t cap, size_t *len, const char *s)
{
    if (*len < cap)
        *len += (size_t)snprintf(buf + *len, cap - *len, "%s", s);
    if (*len >= cap)
        *len = cap - 1;
}

/* The most frequent token at offset k of the top examples (ties: larger summed activation,
 * then lower id), skipping `skip`; its count into *n. -1 when none. */
static int32_t mode_token(const lp_harvest_example *ex, int n_top, int k, int32_t skip, int *n)
{
    int32_t best = -1;
    int bn = 0;
    double bs = 0;
    for (int a = 0; a < n_top; a++) {
        int32_t t = ex[a].tok[k];
        if (t < 0 || t == skip)
            continue;
        int c = 0;
        double sum = 0;
        for (int b = 0; b < n_top; b++)
            if (ex[b].tok[k] == t)
                c++, sum += ex[b].value;
        if (c > bn || (c == bn && (sum > bs || (sum == bs && t < best))))
            best = t, bn = c, bs = sum;
    }
    *n = bn;
    return best;
}

void lp_harvest_label(char *buf, size_t cap, const lp_harvest *h, int i, const char *promoted,
                      lp_token_text_fn tok_text, void *ud)
{
    size_t len = 0;
    if (!cap)
        return;
    buf[0] = 0;
    if (h && i >= 0 && i < h->d_sae) {
        const lp_harvest_example *ex = lp_harvest_top(h, i);
        int n = h->n_top[i], nc, np, n2;
        if (h->count[i] <= 0 || n == 0) {
            put(buf, cap, &len, "dead");
            return;
        }
        int32_t c = mode_token(ex, n, LP_HARVEST_CTX, -1, &nc);
        int32_t p = mode_token(ex, n, LP_HARVEST_CTX - 1, -1, &np);
        if (2 * nc >= n) {
            put_token(buf, cap, &len, c, tok_text, ud);
        } else if (p >= 0 && 2 * np >= n) {
            put(buf, cap, &len, "after ");
            put_token(buf, cap, &len, p, tok_text, ud);
        } else {
            put_token(buf, cap, &len, c, tok_text, ud);
            int32_t c2 = mode_token(ex, n, LP_HARVEST_CTX, c, &n2);
            if (c2 >= 0) {
                put(buf, cap, &len, " / ");
                put_token(buf, cap, &len, c2, tok_text, ud);
            }
        }
    }
    if (promoted) {
        put(buf, cap, &len, len ? " -> \"" : "-> \"");
        size_t n = strlen(promoted), cut = n > 24 ? 24 : n;
        while (cut < n && cut > 0 && ((unsigned char)promoted[cut] & 0xC0) == 0x80)
            cut--;
        if (len < cap)
            len += (size_t)snprintf(buf + len, cap - len, "%.*s%s\"", (int)cut, promoted, cut < n ? "…" : "");
    }
}
