/* display/progress: the tqdm-like text and the sanitizer-safe HTML bar. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "progress.h"
#include "util.h"

static json_t *bar(const char *label, double done, double total, double el, int fin)
{
    json_t *b = lp_display_progress(label, done, total, el, fin);
    cr_assert_not_null(b);
    cr_assert(t_bundle_valid(b));
    cr_assert_not_null(t_get(b, "text/html"));
    return b;
}

Test(progress, text_is_tqdm_like)
{
    json_t *b = bar("label", 45, 100, 2.1, 0);
    cr_assert_str_eq(t_get(b, "text/plain"),
                     "label  45% |█████████           | 45/100 [00:02<00:02, 21.4 it/s]");
    json_decref(b);
}

Test(progress, partial_blocks_and_empty)
{
    json_t *b = bar("", 0, 10, 0, 0);
    cr_assert_str_eq(t_get(b, "text/plain"), "  0% |                    | 0/10 [00:00<?, ? it/s]");
    json_decref(b);
    b = bar(NULL, 1, 3, 1, 0); /* 33.3% of 20 cells = 6 full blocks and 5 eighths */
    cr_assert_str_eq(t_get(b, "text/plain"), " 33% |██████▋             | 1/3 [00:01<00:02, 1.0 it/s]");
    json_decref(b);
}

Test(progress, unknown_total_shows_count_and_rate)
{
    json_t *b = bar("harvest", 45, 0, 2, 0);
    cr_assert_str_eq(t_get(b, "text/plain"), "harvest 45 it [00:02, 22.5 it/s]");
    json_decref(b);
    b = bar("x", 3, NAN, 4000, 0);
    cr_assert_str_eq(t_get(b, "text/plain"), "x 3 it [1:06:40, 1333.33 s/it]");
    json_decref(b);
}

Test(progress, finished_shows_final_state)
{
    json_t *b = bar("train", 97, 100, 5, 1);
    cr_assert_str_eq(t_get(b, "text/plain"),
                     "train 100% |████████████████████| 100/100 [00:05<00:00, 20.0 it/s] done");
    cr_assert(strstr(t_get(b, "text/html"), "width:100.0%") != NULL);
    cr_assert(strstr(t_get(b, "text/html"), "done") != NULL);
    json_decref(b);
}

Test(progress, html_escapes_label_and_has_width)
{
    json_t *b = bar("<script>alert(1)</script>\"'&", 45, 100, 2, 0);
    const char *h = t_get(b, "text/html");
    cr_assert(strstr(h, "<script") == NULL, "%s", h);
    cr_assert(strstr(h, "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;") != NULL, "%s", h);
    cr_assert(strstr(h, "width:45.0%") != NULL, "%s", h);
    cr_assert(strstr(h, "00:02&lt;00:02") != NULL, "%s", h);
    json_decref(b);
}

Test(progress, bad_numbers_and_invalid_utf8_are_safe)
{
    json_t *b = bar("\xff\xfe bad \xe2\x80\xae rtl", -5, -1, -3, 0);
    cr_assert(strstr(t_get(b, "text/plain"), "\xEF\xBF\xBD") != NULL);
    json_decref(b);
    b = bar("over", 150, 100, INFINITY, 0);
    cr_assert(strstr(t_get(b, "text/plain"), "100%") != NULL, "%s", t_get(b, "text/plain"));
    json_decref(b);
}

Test(progress, deterministic)
{
    json_t *a = bar("d", 5, 9, 1.5, 0), *b = bar("d", 5, 9, 1.5, 0);
    cr_assert(json_equal(a, b));
    json_decref(a);
    json_decref(b);
}
