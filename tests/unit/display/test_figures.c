/* display figures: escaping of untrusted strings in HTML and in the SVG inside data URIs,
 * valid UTF-8, determinism, NaN/Inf, empty data, the size bound of an attention grid. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "figures.h"
#include "html.h"
#include "util.h"

#define RLO "\xE2\x80\xAE"
static const char *const EVIL[] = {
    "<script>alert(1)</script>", "\"", "'", "&", "\xff\xfe bad", RLO "evil", "a\x01" "b",
    "\xEF\xBF\xBF", "]]>", "</script><script>alert(2)</script>", "<!--<script>", "\xE2\x80\x8F" "rlm",
};
#define NEVIL (sizeof EVIL / sizeof *EVIL)

/* Every '<' in an SVG starts one of our tags, every '&' an entity: no text leaked markup. */
static void check_svg(const char *svg)
{
    static const char *tags[] = {"svg ", "/svg>", "g ", "/g>", "g>", "rect ", "line ", "polyline ",
                                 "circle ", "text ", "/text>", "image "};
    cr_assert(t_utf8_valid(svg, strlen(svg)));
    cr_assert(strstr(svg, "\xEF\xBF\xBF") == NULL && strstr(svg, "\xEF\xBF\xBE") == NULL);
    cr_assert(strstr(svg, RLO) == NULL);
    for (const char *p = svg; (p = strchr(p, '<')); p++) {
        int ok = 0;
        for (size_t k = 0; k < sizeof tags / sizeof *tags; k++)
            ok |= strncmp(p + 1, tags[k], strlen(tags[k])) == 0;
        cr_assert(ok, "stray '<' in SVG: %.40s", p);
    }
    for (const char *p = svg; (p = strchr(p, '&')); p++)
        cr_assert(!strncmp(p, "&amp;", 5) || !strncmp(p, "&lt;", 4) || !strncmp(p, "&gt;", 4) ||
                  !strncmp(p, "&quot;", 6) || !strncmp(p, "&#39;", 5), "stray '&': %.20s", p);
    for (const char *p = svg; *p; p++)
        cr_assert((unsigned char)*p >= 0x20 || *p == '\n' || *p == '\t', "control byte in SVG");
}

/* The HTML holds no markup from data: only our scripts, all SVGs clean. */
static void check_html(const json_t *b)
{
    cr_assert(t_bundle_valid(b), "invalid bundle");
    const char *h = t_get(b, "text/html");
    cr_assert_not_null(h);
    cr_assert(strstr(h, "<script>alert") == NULL, "%s", h);
    cr_assert(strstr(h, "<!--") == NULL);
    cr_assert(strstr(h, RLO) == NULL && strstr(t_get(b, "text/plain"), RLO) == NULL);
    int scripts = t_count(h, "<script");
    int ours = t_count(h, "<script type=\"application/json\">") + t_count(h, "<script>(function(){\"use strict\";");
    cr_assert_eq(scripts, ours, "foreign script in %s", h);
    cr_assert_eq(t_count(h, "</script>"), scripts);
    for (int k = 0;; k++) {
        char *svg = t_svg_at(h, k);
        if (!svg)
            break;
        check_svg(svg);
        free(svg);
    }
}

static float *attention(size_t n, size_t t, unsigned seed)
{
    float *v = malloc(n * t * t * sizeof *v);
    unsigned s = seed;
    for (size_t h = 0; h < n; h++)
        for (size_t i = 0; i < t; i++) {
            double sum = 0;
            for (size_t j = 0; j < t; j++) {
                s = s * 1103515245u + 12345u;
                float x = j <= i ? (float)exp((s >> 8) % 1000 / 250.0) : 0;
                v[(h * t + i) * t + j] = x;
                sum += x;
            }
            for (size_t j = 0; j < t; j++)
                v[(h * t + i) * t + j] /= (float)sum;
        }
    return v;
}

Test(figures, heatmap_escapes_labels_in_html_and_svg)
{
    float v[NEVIL * NEVIL];
    for (size_t i = 0; i < NEVIL * NEVIL; i++)
        v[i] = (float)i / 10 - 3;
    lp_heatmap_opts o = {.title = "<b>attn</b> & \"q\"", .row_labels = EVIL, .col_labels = EVIL,
                         .row_name = "<i>query", .col_name = "key'"};
    json_t *b = lp_display_heatmap(v, NEVIL, NEVIL, &o);
    check_html(b);
    const char *h = t_get(b, "text/html");
    cr_assert(strstr(h, "&lt;b&gt;attn&lt;/b&gt; &amp; &quot;q&quot;") != NULL);
    char *svg = t_svg_at(h, 0);
    cr_assert(strstr(svg, "&lt;script&gt;alert(1)") != NULL, "%s", svg);
    cr_assert(strstr(svg, "\\u202Eevil") != NULL);
    cr_assert(strstr(svg, "a\\x01b") != NULL);
    cr_assert(strstr(svg, "data:image/png;base64,iVBORw0KGgo") != NULL);
    free(svg);
    /* The hover data carries the labels, readable back as the same strings. */
    const char *js = strstr(h, "<script type=\"application/json\">") + 32;
    json_error_t err;
    json_t *d = json_loadb(js, strstr(js, "</script>") - js, 0, &err);
    cr_assert_not_null(d, "%s", err.text);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(d, "rl"), 0)), "<script>alert(1)</script>");
    cr_assert_eq(json_array_size(json_object_get(d, "v")), NEVIL * NEVIL);
    json_decref(d);
    /* Small heatmaps also carry a values table with title tooltips. */
    cr_assert(strstr(h, "<details") != NULL && strstr(h, "title=\"0 &lt;script&gt;") != NULL);
    json_decref(b);
}

Test(figures, every_figure_escapes_untrusted_strings)
{
    double x[NEVIL], y[NEVIL];
    float f[NEVIL];
    for (size_t i = 0; i < NEVIL; i++) {
        x[i] = (double)i;
        y[i] = sin((double)i);
        f[i] = (float)y[i];
    }
    lp_plot_opts o = {.title = EVIL[0], .xlabel = EVIL[9], .ylabel = EVIL[5]};
    lp_series s[2] = {{EVIL[0], x, y, NEVIL}, {EVIL[10], NULL, x, NEVIL}};
    json_t *bs[] = {
        lp_display_line(s, 2, &o),
        lp_display_scatter(x, y, NEVIL, EVIL, &o),
        lp_display_hist(y, NEVIL, 0, &o),
        lp_display_bar(EVIL, y, NEVIL, &o),
        lp_display_tokens(EVIL, f, NEVIL, EVIL[0]),
        lp_display_tokens(EVIL, NULL, NEVIL, EVIL[2]),
        lp_display_table(EVIL[0], EVIL, EVIL, 3, 4),
        lp_display_heatmap_grid(f, 3, 2, 2, EVIL, &(lp_heatmap_opts){.title = EVIL[9]}),
        lp_bundle_nothing(EVIL[0]),
    };
    for (size_t k = 0; k < sizeof bs / sizeof *bs; k++) {
        cr_assert_not_null(bs[k], "figure %zu", k);
        check_html(bs[k]);
        json_decref(bs[k]);
    }
}

Test(figures, tokens_show_values_in_titles_and_colours)
{
    const char *tok[] = {"The", " cat", "<sat>", "\n"};
    float v[] = {0.5f, -1.0f, NAN, 0};
    json_t *b = lp_display_tokens(tok, v, 4, NULL);
    check_html(b);
    const char *h = t_get(b, "text/html");
    cr_assert(strstr(h, "title=\"#0 The = 0.5\"") != NULL, "%s", h);
    cr_assert(strstr(h, "title=\"#1 \xE2\x90\xA3" "cat = -1\"") != NULL, "a space shown as in every figure");
    cr_assert(strstr(h, "title=\"#2 &lt;sat&gt; = missing (NaN/Inf)\"") != NULL);
    cr_assert(strstr(h, "&lt;sat&gt;</span>") != NULL);
    cr_assert(strstr(h, ">\\n</span>") != NULL); /* newline made visible, as lp_token_show does */
    cr_assert(strstr(h, "> cat</span>") != NULL); /* the running text keeps its spaces */
    cr_assert(strstr(h, "1 value missing (NaN/Inf)") != NULL);
    cr_assert_str_eq(t_get(b, "text/plain"),
                     "The(0.5) \xE2\x90\xA3" "cat(-1) <sat>(NaN) \\n(0)\nvalues in [-1, 0.5]; blue negative, red positive; 1 value missing (NaN/Inf)");
    json_decref(b);
}

Test(figures, nan_and_inf_are_counted)
{
    float v[16];
    for (int i = 0; i < 16; i++)
        v[i] = (float)i;
    v[3] = NAN;
    v[7] = INFINITY;
    v[9] = -INFINITY;
    json_t *b = lp_display_heatmap(v, 4, 4, NULL);
    check_html(b);
    cr_assert(strstr(t_get(b, "text/plain"), "3 values missing (NaN/Inf)") != NULL, "%s", t_get(b, "text/plain"));
    cr_assert(strstr(t_get(b, "text/html"), "3 values missing (NaN/Inf)") != NULL);
    json_decref(b);
    double y[] = {1, NAN, 3, INFINITY, 5};
    lp_series s = {"loss", NULL, y, 5};
    json_t *bl[] = {lp_display_line(&s, 1, NULL), lp_display_hist(y, 5, 4, NULL),
                    lp_display_bar(NULL, y, 5, NULL), lp_display_scatter(y, y, 5, NULL, NULL)};
    for (int k = 0; k < 4; k++) {
        check_html(bl[k]);
        cr_assert(strstr(t_get(bl[k], "text/plain"), "2 values missing (NaN/Inf)") != NULL, "%d: %s", k,
                  t_get(bl[k], "text/plain"));
        json_decref(bl[k]);
    }
    /* All missing: still a picture, not a crash. */
    float all[4] = {NAN, NAN, INFINITY, NAN};
    b = lp_display_heatmap(all, 2, 2, NULL);
    check_html(b);
    cr_assert(strstr(t_get(b, "text/plain"), "4 values missing") != NULL);
    json_decref(b);
}

Test(figures, empty_data_says_nothing_to_show)
{
    lp_series s = {"x", NULL, NULL, 0};
    json_t *bs[] = {
        lp_display_heatmap(NULL, 0, 0, NULL), lp_display_heatmap_grid((float[]){1}, 0, 1, 1, NULL, NULL),
        lp_display_line(&s, 1, NULL), lp_display_line(NULL, 0, NULL), lp_display_scatter(NULL, NULL, 0, NULL, NULL),
        lp_display_hist(NULL, 0, 0, NULL), lp_display_bar(NULL, NULL, 0, NULL),
        lp_display_tokens(NULL, NULL, 0, NULL), lp_display_table(NULL, NULL, NULL, 0, 0),
    };
    for (size_t k = 0; k < sizeof bs / sizeof *bs; k++) {
        check_html(bs[k]);
        cr_assert(strstr(t_get(bs[k], "text/plain"), "nothing to show") != NULL, "%zu", k);
        cr_assert(strstr(t_get(bs[k], "text/html"), "nothing to show") != NULL, "%zu", k);
        json_decref(bs[k]);
    }
}

Test(figures, output_is_deterministic)
{
    float *v = attention(2, 9, 7);
    const char *lab[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
    lp_heatmap_opts o = {.row_labels = lab, .col_labels = lab};
    for (int rep = 0; rep < 2; rep++) {
        json_t *a = lp_display_heatmap_grid(v, 2, 9, 9, NULL, &o), *b = lp_display_heatmap_grid(v, 2, 9, 9, NULL, &o);
        cr_assert(json_equal(a, b));
        json_decref(a);
        json_decref(b);
    }
    double x[] = {1, 2, 3};
    lp_series s = {"s", NULL, x, 3};
    json_t *a = lp_display_line(&s, 1, NULL), *b = lp_display_line(&s, 1, NULL);
    cr_assert(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    /* Different data gives a different id. */
    a = lp_display_heatmap(v, 9, 9, NULL);
    b = lp_display_heatmap(v + 81, 9, 9, NULL);
    char *ia = strstr(t_get(a, "text/html"), "data-lp-id="), *ib = strstr(t_get(b, "text/html"), "data-lp-id=");
    cr_assert(strncmp(ia, ib, 40) != 0);
    json_decref(a);
    json_decref(b);
    free(v);
}

Test(figures, attention_grid_12x128x128_under_1mb)
{
    char names[12][16];
    const char *titles[12];
    for (int i = 0; i < 12; i++) {
        snprintf(names[i], sizeof names[i], "head %d", i);
        titles[i] = names[i];
    }
    const char *tok[128];
    char tb[128][16];
    for (int i = 0; i < 128; i++) {
        snprintf(tb[i], sizeof tb[i], "tok%d", i);
        tok[i] = tb[i];
    }
    lp_heatmap_opts o = {.title = "layer 1", .row_labels = tok, .col_labels = tok, .row_name = "query", .col_name = "key"};
    float *v = attention(12, 128, 1);
    json_t *b = lp_display_heatmap_grid(v, 12, 128, 128, titles, &o);
    check_html(b);
    size_t n = t_bundle_bytes(b);
    fprintf(stderr, "[size] 12x128x128 attention grid: %zu bytes\n", n);
    cr_assert_lt(n, 1000000);
    json_decref(b);
    /* Worst case: incompressible values everywhere. */
    unsigned s = 5;
    for (size_t i = 0; i < 12 * 128 * 128; i++) {
        s = s * 1103515245u + 12345u;
        v[i] = (float)((s >> 8) % 100000) / 50000.0f - 1;
    }
    b = lp_display_heatmap_grid(v, 12, 128, 128, titles, &o);
    n = t_bundle_bytes(b);
    fprintf(stderr, "[size] 12x128x128 random grid: %zu bytes\n", n);
    cr_assert_lt(n, 1000000);
    cr_assert(strstr(t_get(b, "text/plain"), "downsampled") == NULL);
    json_decref(b);
    free(v);
    /* Larger data is downsampled, with a note, and stays under the bound. */
    v = attention(12, 512, 3);
    b = lp_display_heatmap_grid(v, 12, 512, 512, NULL, NULL);
    check_html(b);
    n = t_bundle_bytes(b);
    fprintf(stderr, "[size] 12x512x512 attention grid (downsampled): %zu bytes\n", n);
    cr_assert_lt(n, 1000000);
    cr_assert(strstr(t_get(b, "text/plain"), "downsampled from 512\xC3\x97" "512") != NULL, "%s", t_get(b, "text/plain"));
    json_decref(b);
    b = lp_display_heatmap(v, 1024, 1024, NULL);
    n = t_bundle_bytes(b);
    fprintf(stderr, "[size] 1024x1024 heatmap (downsampled): %zu bytes\n", n);
    cr_assert_lt(n, 1000000);
    cr_assert(strstr(t_get(b, "text/plain"), "mean of 4\xC3\x97" "4 blocks") != NULL, "%s", t_get(b, "text/plain"));
    json_decref(b);
    free(v);
}

Test(figures, long_series_are_reduced_with_a_note)
{
    size_t n = 100000;
    double *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++)
        y[i] = 1.0 / (1 + i * 0.001) + 0.01 * sin((double)i);
    lp_series s = {"loss", NULL, y, n};
    json_t *b = lp_display_line(&s, 1, &(lp_plot_opts){.title = "training", .xlabel = "step", .ylabel = "loss"});
    check_html(b);
    size_t bytes = t_bundle_bytes(b);
    fprintf(stderr, "[size] line plot of 100000 points: %zu bytes\n", bytes);
    cr_assert_lt(bytes, 200000);
    cr_assert(strstr(t_get(b, "text/plain"), "reduced") != NULL);
    cr_assert(strstr(t_get(b, "text/plain"), "loss: 100000 points, last ") != NULL, "%s", t_get(b, "text/plain"));
    json_decref(b);
    free(y);
}

Test(figures, table_aligns_text_and_numbers)
{
    const char *hdr[] = {"token", "logit"};
    const char *cells[] = {" Paris", "12.5", "<b>", "3"};
    json_t *b = lp_display_table("top", hdr, cells, 2, 2);
    check_html(b);
    cr_assert_str_eq(t_get(b, "text/plain"), "top\ntoken   logit\n Paris   12.5\n<b>         3");
    cr_assert(strstr(t_get(b, "text/html"), "&lt;b&gt;</td>") != NULL);
    json_decref(b);
}

Test(escape, html_xml_and_plain)
{
    lp_buf b = LP_BUF_INIT;
    const char s[] = "<a href='x'>&\"\0z\xff" RLO "\xEF\xBF\xBE";
    lp_html_escape(&b, s, sizeof s - 1);
    cr_assert_str_eq(lp_buf_str(&b), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;\\x00z\xEF\xBF\xBD\\u202E\xEF\xBF\xBE");
    lp_buf_reset(&b);
    lp_xml_escape(&b, s, sizeof s - 1);
    cr_assert_str_eq(lp_buf_str(&b), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;\\x00z\xEF\xBF\xBD\\u202E\xEF\xBF\xBD");
    lp_buf_reset(&b);
    lp_utf8_sanitize(&b, s, sizeof s - 1);
    cr_assert_str_eq(lp_buf_str(&b), "<a href='x'>&\"\\0z\xEF\xBF\xBD\\u202E\xEF\xBF\xBE");
    lp_buf_free(&b);
}

Test(bundle, base64_and_json_script)
{
    lp_buf b = LP_BUF_INIT;
    lp_base64_encode(&b, "Man", 3);
    lp_base64_encode(&b, "Ma", 2);
    lp_base64_encode(&b, "M", 1);
    cr_assert_str_eq(lp_buf_str(&b), "TWFuTWE=TQ==");
    lp_buf_reset(&b);
    json_t *v = json_string("</script><!--&");
    lp_html_json_script(&b, v);
    cr_assert_str_eq(lp_buf_str(&b), "\"\\u003c\\/script\\u003e\\u003c!--\\u0026\"");
    json_decref(v);
    lp_buf_free(&b);
}
