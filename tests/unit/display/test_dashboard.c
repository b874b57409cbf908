/* The feature dashboard (display/dashboard.h) with hostile and huge tokens and labels: all
 * text escaped (no tag or bidi control from the data survives), valid UTF-8, the 300 KB
 * bound with 70 examples of 11 worst-case tokens, deterministic output, the picture parts
 * present, and the version without a harvest. */
#include <criterion/criterion.h>
#include <string.h>

#include "dashboard.h"
#include "util.h"

static const char *hostile(void *ud, int32_t id)
{
    static char big[600];
    (void)ud;
    switch (id % 4) {
    case 0: return "<script>alert(1)</script>";
    case 1: return "<img src=x onerror=alert(2)>";
    case 2: return "a\xe2\x80\xae" "evil\"'&";    /* U+202E right-to-left override */
    default:
        memset(big, '<', sizeof big - 1); /* 599 characters that each escape to 4 bytes */
        big[sizeof big - 1] = 0;
        return big;
    }
}

/* 150 right-to-left overrides: each shows as the 6 characters "\u202E" */
static const char *huge(void *ud, int32_t id)
{
    static char rlo[451];
    (void)ud, (void)id;
    for (int k = 0; k < 150; k++)
        memcpy(rlo + 3 * k, "\xe2\x80\xae", 3);
    rlo[450] = 0;
    return rlo;
}

/* A harvest of 3 features, feature 1 with every example slot filled. */
static lp_harvest *full_harvest(void)
{
    lp_harvest *h = lp_harvest_alloc(3);
    cr_assert_not_null(h);
    h->n_tokens = 1000, h->ctx = 32, h->windows = 32;
    h->count[1] = 400, h->max[1] = 5;
    h->hist[1 * LP_HARVEST_HIST + 20] = 300, h->hist[1 * LP_HARVEST_HIST + 22] = 100;
    h->n_top[1] = LP_HARVEST_TOP;
    for (int e = 0; e < LP_HARVEST_EXAMPLES; e++) {
        lp_harvest_example *x = &h->ex[LP_HARVEST_EXAMPLES + e];
        x->value = 5.0f - 0.05f * (float)e;
        for (int k = 0; k < LP_HARVEST_W; k++)
            x->tok[k] = e + k, x->act[k] = k == LP_HARVEST_CTX ? x->value : 0.1f * (float)k;
    }
    for (int k = 0; k < LP_HARVEST_INTERVALS; k++) {
        lp_harvest_interval *v = &h->iv[LP_HARVEST_INTERVALS + k];
        v->lo = 0.5f * (float)k, v->hi = 0.5f * (float)(k + 1), v->count = 40, v->n = LP_HARVEST_SAMPLES;
    }
    h->corr[LP_HARVEST_CORR] = 2, h->corr_score[LP_HARVEST_CORR] = 0.5f;
    return h;
}

static void no_hostile_markup(const char *html)
{
    cr_assert_null(strstr(html, "<script>alert"), "a token's <script> survived");
    cr_assert_null(strstr(html, "<img src=x"), "a token's <img> survived");
    cr_assert_null(strstr(html, "\xe2\x80\xae"), "a bidi override survived");
    cr_assert_not_null(strstr(html, "&lt;script&gt;alert(1)"), "the token is shown as text");
}

Test(dashboard, hostile_tokens_and_labels_stay_text_and_bounded)
{
    lp_harvest *h = full_harvest();
    float logits[64], dec[16];
    for (int v = 0; v < 64; v++)
        logits[v] = (float)(v % 7) - 3.0f;
    for (int k = 0; k < 16; k++)
        dec[k] = (float)k - 8.0f;
    const char *corr[LP_HARVEST_CORR] = {"<b>corr</b>"};
    lp_dashboard d = {.feature = 1, .d_sae = 3, .label = "<img src=x onerror=alert(3)>\xe2\x80\xae", .what = "test",
                      .h = h, .logits = logits, .n_vocab = 64, .dec = dec, .d_out = 16, .tok_text = hostile,
                      .corr_labels = corr};
    json_t *b = lp_display_dashboard(&d);
    cr_assert_not_null(b);
    cr_assert(t_bundle_valid(b));
    const char *html = t_get(b, "text/html");
    no_hostile_markup(html);
    cr_assert_null(strstr(html, "<b>corr"));
    cr_assert(strlen(html) < 300 * 1024, "%zu bytes of HTML", strlen(html));
    cr_assert(t_count(html, "data:image/svg+xml;base64,") == 2, "two histograms");
    cr_assert_not_null(strstr(html, "POSITIVE LOGITS"));
    cr_assert_not_null(strstr(html, "CORRELATED"));
    cr_assert_eq(t_count(html, "<script"), 2, "only the dashboard's own data and script");
    json_t *b2 = lp_display_dashboard(&d);
    cr_assert_str_eq(t_get(b2, "text/html"), html, "deterministic");
    json_decref(b2);
    json_decref(b);
    /* every token 150 bidi overrides: the budget drops examples, the bound holds */
    d.tok_text = huge;
    b = lp_display_dashboard(&d);
    html = t_get(b, "text/html");
    cr_assert(strlen(html) < 300 * 1024, "%zu bytes of HTML", strlen(html));
    cr_assert_not_null(strstr(html, "left out"), "the budget dropped examples of huge tokens");
    json_decref(b);
    /* ordinary tokens: every example fits */
    d.tok_text = NULL;
    b = lp_display_dashboard(&d);
    html = t_get(b, "text/html");
    cr_assert_null(strstr(html, "left out"));
    cr_assert_eq(t_count(html, "data-a="), LP_HARVEST_EXAMPLES * LP_HARVEST_W);
    json_decref(b);
    lp_harvest_free(h);
}

Test(dashboard, without_a_harvest_says_how_and_shows_the_rest)
{
    float logits[8] = {1, -2, 3, 0, 0, 0, 0, 0}, dec[4] = {0.5f, -1, 0, 0};
    lp_dashboard d = {.feature = 0, .d_sae = 1, .how = "run sae:harvest{...}", .logits = logits, .n_vocab = 8,
                      .dec = dec, .d_out = 4, .tok_text = hostile};
    json_t *b = lp_display_dashboard(&d);
    cr_assert_not_null(b);
    cr_assert(t_bundle_valid(b));
    const char *html = t_get(b, "text/html");
    cr_assert_not_null(strstr(html, "run sae:harvest{...}"));
    cr_assert_not_null(strstr(html, "POSITIVE LOGITS"));
    cr_assert_not_null(strstr(html, "ALIGNMENT"));
    cr_assert_null(strstr(html, "<script"), "nothing to hover: no script");
    no_hostile_markup(html);
    json_decref(b);
}

Test(dashboard, a_feature_that_never_fired)
{
    lp_harvest *h = full_harvest();
    lp_dashboard d = {.feature = 0, .d_sae = 3, .h = h};
    json_t *b = lp_display_dashboard(&d);
    cr_assert_not_null(b);
    cr_assert_not_null(strstr(t_get(b, "text/html"), "never fired"));
    cr_assert_not_null(strstr(t_get(b, "text/plain"), "never fired"));
    json_decref(b);
    lp_harvest_free(h);
}
