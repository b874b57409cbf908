/* Automatic feature labels from a harvest (harvest.h, "labels"). */
#include <stdio.h>
#include <string.h>

#include "dict/harvest.h"

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
