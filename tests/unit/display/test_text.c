/* display/text.c: the one notation for tokens and the text-width estimate, and the layouts
 * that use it: every text of a figure's SVG, measured with that estimate, lies inside the
 * picture (labels, captions, ticks, colour bar numbers, legends). The browser tests measure
 * the same with a real font (tests/browser/test_figure_text.py). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "figures.h"
#include "text.h"
#include "util.h"

static void shows(const char *tok, size_t n, const char *want)
{
    lp_buf b = LP_BUF_INIT;
    lp_token_show(&b, tok, n);
    cr_assert_str_eq(lp_buf_str(&b), want);
    lp_buf_free(&b);
}

Test(token_show, spaces_controls_and_backslashes)
{
    shows(" in", 3, "\xE2\x90\xA3in");
    shows("  ", 2, "\xE2\x90\xA3\xE2\x90\xA3");
    shows("a b", 3, "a\xE2\x90\xA3" "b");
    shows("\n", 1, "\\n");
    shows("\t\r", 2, "\\t\\r");
    shows("\x1b[0m", 4, "\\x1b[0m");
    shows("\x7f", 1, "\\x7f");
    shows("a\\nb", 4, "a\\\\nb"); /* a real backslash-n is not a newline */
    shows("\\x1b\\\\", 6, "\\\\x1b\\\\\\");
    shows("a\\0b\\", 5, "a\\0b\\"); /* elsewhere a backslash stays one */
    shows("\0x", 2, "\\x00x");
    shows("", 0, "");
    shows("caf\xC3\xA9 \xE6\xBC\xA2", 9, "caf\xC3\xA9\xE2\x90\xA3\xE6\xBC\xA2");
    shows("<b>", 3, "<b>"); /* escaping is the writer's job, after this */
}

Test(token_show, dup_owns_its_copy)
{
    char *s = lp_token_show_dup(" Mary");
    cr_assert_str_eq(s, "\xE2\x90\xA3" "Mary");
    free(s);
    s = lp_token_show_dup(NULL);
    cr_assert_str_eq(s, "");
    free(s);
}

Test(text_width, classes_order_and_scale)
{
    double narrow = lp_text_width("iiii", 10), normal = lp_text_width("aaaa", 10),
           wide = lp_text_width("mmmm", 10), cjk = lp_text_width("\xE6\xBC\xA2\xE5\xAD\x97", 10),
           emoji = lp_text_width("\xF0\x9F\x98\x80", 10);
    cr_assert(narrow < normal && normal < wide, "%g %g %g", narrow, normal, wide);
    cr_assert(cjk / 2 >= 1.5 * normal / 4, "a CJK character is double width: %g", cjk);
    cr_assert(emoji >= 1.5 * normal / 4, "an emoji is double width: %g", emoji);
    cr_assert_float_eq(lp_text_width("abc", 20), 2 * lp_text_width("abc", 10), 1e-9);
    cr_assert_float_eq(lp_text_width("", 10), 0, 1e-12);
    cr_assert_float_eq(lp_text_width(NULL, 10), 0, 1e-12);
    /* combining marks add nothing; invalid bytes count as one character each */
    cr_assert_float_eq(lp_text_width("e\xCC\x81", 10), lp_text_width("e", 10), 1e-9);
    cr_assert(lp_text_width("\xff\xfe", 10) > 0);
    cr_assert(lp_text_width("\xE6\xBC", 10) > 0, "a cut sequence is measured, not read past");
    /* generous for DejaVu Sans at 10 px: "Mary" is about 27 px there */
    cr_assert(lp_text_width("Mary", 10) >= 27, "%g", lp_text_width("Mary", 10));
}

Test(text_width, escaped_characters_measured_as_drawn)
{
    /* the escapers draw a right-to-left override as the six characters \u202E and a control
     * byte as \x1B: the measure must be theirs, or a label runs past its picture */
    cr_assert_float_eq(lp_text_width("a\xE2\x80\xAE", 10), lp_text_width("a\\u202E", 10), 1e-9);
    cr_assert_float_eq(lp_text_width("\xD8\x9C", 10), lp_text_width("\\u061C", 10), 1e-9);
    cr_assert_float_eq(lp_text_width("\x1b", 10), lp_text_width("\\x1B", 10), 1e-9);
}

Test(text_width, cut_counts_the_ellipsis)
{
    double full = lp_text_width("abcdefgh", 10), cut = lp_text_width_cut("abcdefgh", 3, 10);
    cr_assert_float_eq(cut, lp_text_width("abc", 10) + 10, 1e-9);
    cr_assert(cut < full);
    cr_assert_float_eq(lp_text_width_cut("abc", 3, 10), lp_text_width("abc", 10), 1e-9);
    cr_assert_float_eq(lp_text_width_cut("abc", 0, 10), lp_text_width("abc", 10), 1e-9);
}

/* ---- every text of a figure inside its picture ---- */

static double attr(const char *tag, const char *name, double dflt)
{
    char key[32];
    snprintf(key, sizeof key, " %s=\"", name);
    const char *p = strstr(tag, key);
    const char *end = strchr(tag, '>');
    return p && p < end ? strtod(p + strlen(key), NULL) : dflt;
}

/* The text of an element with entities counted as one character. */
static char *unescape(const char *s, size_t n)
{
    char *o = malloc(n + 1), *q = o;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '&') {
            const char *semi = memchr(s + i, ';', n - i);
            if (semi) {
                *q++ = '#';
                i = (size_t)(semi - s);
                continue;
            }
        }
        *q++ = s[i];
    }
    *q = 0;
    return o;
}

/* Checks every <text> of the SVG against its viewBox; returns the number of texts. */
static int texts_inside(const char *svg, const char *what)
{
    double W = 0, H = 0;
    const char *vb = strstr(svg, "viewBox=\"0 0 ");
    cr_assert(vb && sscanf(vb, "viewBox=\"0 0 %lf %lf", &W, &H) == 2, "%s: no viewBox", what);
    int n = 0;
    for (const char *p = svg; (p = strstr(p, "<text ")); n++) {
        const char *gt = strchr(p, '>'), *close = strstr(p, "</text>");
        cr_assert(gt && close);
        double x = attr(p, "x", 0), y = attr(p, "y", 0), size = attr(p, "font-size", 10);
        char *text = unescape(gt + 1, (size_t)(close - gt - 1));
        double w = lp_text_width(text, size), x0, x1, y0, y1;
        const char *anchor = strstr(p, "text-anchor=\"") + 13;
        double off = !strncmp(anchor, "end", 3) ? -w : !strncmp(anchor, "middle", 6) ? -w / 2 : 0;
        const char *rot = strstr(p, "rotate(");
        if (rot && rot < gt) { /* rotated -90 about (x, y): runs upwards from y + off */
            cr_assert(!strncmp(rot, "rotate(-90 ", 11), "%s: only vertical text is checked: %.60s", what, p);
            x0 = x - size, x1 = x + 0.3 * size, y0 = y - off - w, y1 = y - off;
        } else {
            x0 = x + off, x1 = x + off + w, y0 = y - size, y1 = y + 0.3 * size;
        }
        cr_expect(x0 >= -0.5 && x1 <= W + 0.5 && y0 >= -0.5 && y1 <= H + 0.5,
                  "%s: \"%s\" spans [%.1f, %.1f] x [%.1f, %.1f], outside 0 0 %.1f %.1f", what, text,
                  x0, x1, y0, y1, W, H);
        free(text);
        p = close;
    }
    return n;
}

static int bundle_texts_inside(json_t *b, const char *what)
{
    cr_assert(b);
    char *svg = t_svg_at(t_get(b, "text/html"), 0);
    cr_assert(svg, "%s: no picture", what);
    int n = texts_inside(svg, what);
    free(svg);
    json_decref(b);
    return n;
}

static const char *const TOKS[] = {"When", "\xE2\x90\xA3" "Mary", "\xE2\x90\xA3" "and", "\xE2\x90\xA3John",
                                   "\xE2\x90\xA3went", "\xE2\x90\xA3to", "\xE2\x90\xA3the",
                                   "\xE2\x90\xA3supercalifragilistic", ",", "\xE6\xBC\xA2\xE5\xAD\x97\xE6\xBC\xA2",
                                   "WWWWWWWWWWWWWWWWWWWW", "\\n"};
#define NT (sizeof TOKS / sizeof *TOKS)

Test(layout, attention_grid_labels_every_panel_inside_the_picture)
{
    float v[4 * NT * NT];
    for (size_t i = 0; i < 4 * NT * NT; i++)
        v[i] = (float)(i % 7) / 7;
    const char *titles[] = {"head 0", "head 1", "head 2", "head 3"};
    lp_heatmap_opts o = {"grid", TOKS, TOKS, "query", "key", LP_SCALE_SEQUENTIAL};
    json_t *b = lp_display_heatmap_grid(v, 4, NT, NT, titles, &o);
    char *svg = t_svg_at(t_get(b, "text/html"), 0);
    /* both axes of every panel carry the tokens */
    cr_assert_eq(t_count(svg, ">\xE2\x90\xA3Mary</text>"), 8, "%d", t_count(svg, ">\xE2\x90\xA3Mary</text>"));
    cr_assert(strstr(svg, "rows: query, columns: key"));
    free(svg);
    /* the full tokens in the picture's tooltip */
    cr_assert(strstr(t_get(b, "text/html"), "supercalifragilistic"));
    cr_assert(bundle_texts_inside(b, "grid") > 4 * 2 * (int)NT);
}

Test(layout, many_tokens_are_thinned_and_stay_inside)
{
    enum { T = 100 };
    static float v[2 * T * T];
    const char *lab[T];
    char buf[T][16];
    for (int i = 0; i < T; i++) {
        snprintf(buf[i], sizeof buf[i], "\xE2\x90\xA3tok%d", i);
        lab[i] = buf[i];
    }
    lp_heatmap_opts o = {"long", lab, lab, "query", "key", LP_SCALE_SEQUENTIAL};
    json_t *b = lp_display_heatmap_grid(v, 2, T, T, NULL, &o);
    char *svg = t_svg_at(t_get(b, "text/html"), 0);
    int drawn = t_count(svg, ">\xE2\x90\xA3tok");
    cr_assert(drawn > 0 && drawn < 2 * 2 * T, "thinned: %d labels of %d", drawn, 4 * T);
    free(svg);
    bundle_texts_inside(b, "thinned grid");
    json_t *one = lp_display_heatmap(v, T, T, &o);
    bundle_texts_inside(one, "one long heatmap");
}

Test(layout, small_heatmaps_get_index_ticks)
{
    float v[4 * 4] = {0};
    v[5] = 1.0333e-5f;
    lp_heatmap_opts o = {"scores", NULL, NULL, "layer", "head", LP_SCALE_SEQUENTIAL};
    json_t *b = lp_display_heatmap(v, 4, 4, &o);
    char *svg = t_svg_at(t_get(b, "text/html"), 0);
    cr_assert_eq(t_count(svg, ">3</text>"), 2, "row and column tick 3");
    free(svg);
    bundle_texts_inside(b, "4x4 heatmap");
    float d[3 * 2 * 2] = {-1.0333e-5f, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const char *titles[] = {"previous-token score", "induction score", "prefix-matching score"};
    bundle_texts_inside(lp_display_heatmap_grid(d, 3, 2, 2, titles, &o), "2x2 grid");
    float row[3] = {-1.0333e-5f, 0, 1};
    bundle_texts_inside(lp_display_heatmap(row, 1, 3, &o), "one row");
}

Test(layout, plots_make_room_for_ticks_labels_and_legends)
{
    double y1[50], y2[50], x[50];
    for (int i = 0; i < 50; i++) {
        x[i] = i * 1e-5;
        y1[i] = 1.0333e-5 * i;
        y2[i] = -1.0333e-5 * i;
    }
    lp_series s[2] = {{"a rather long series name (loss)", x, y1, 50}, {"\xE6\xBC\xA2\xE5\xAD\x97", x, y2, 50}};
    lp_plot_opts o = {"t", "step", "value"};
    bundle_texts_inside(lp_display_line(s, 2, &o), "line");
    bundle_texts_inside(lp_display_scatter(x, y1, NT, TOKS, &o), "scatter");
    bundle_texts_inside(lp_display_hist(y2, 50, 10, &o), "hist");
    double bars[NT];
    for (size_t i = 0; i < NT; i++)
        bars[i] = (i % 2 ? -1.0333e-5 : 1.0333e-5) * (double)i;
    bundle_texts_inside(lp_display_bar(TOKS, bars, NT, &o), "bar");
}

Test(layout, legend_goes_where_it_covers_the_fewest_points)
{
    /* a rising line fills the top right and the bottom left: the legend takes another corner */
    double y[200];
    for (int i = 0; i < 200; i++)
        y[i] = i < 100 ? 0 : 100; /* low on the left half, high on the right half */
    lp_series s = {"loss", NULL, y, 200};
    json_t *b = lp_display_line(&s, 1, NULL);
    char *svg = t_svg_at(t_get(b, "text/html"), 0);
    const char *bg = strstr(svg, "<g fill-opacity=\"0.85\"><rect x=\"");
    cr_assert(bg, "the legend has a background");
    double lx = strtod(bg + strlen("<g fill-opacity=\"0.85\"><rect x=\""), NULL);
    const char *ly = strstr(bg, " y=\"");
    double lyv = strtod(ly + 4, NULL);
    /* top left or bottom right are free; top right (high data) and bottom left (low data) are not */
    int left = lx < 280, top = lyv < 160;
    cr_assert(left == top, "legend at %g, %g: over the data", lx, lyv);
    free(svg);
    json_decref(b);
}
