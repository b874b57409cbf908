#include "progress.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bundle.h"
#include "core/buf.h"
#include "html.h"

enum { BAR_CHARS = 20 };

void lp_progress_format_time(char *buf, size_t cap, double t)
{
    if (!isfinite(t) || t < 0 || t > 1e9) {
        snprintf(buf, cap, "?");
        return;
    }
    long s = (long)floor(t);
    if (s >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    else
        snprintf(buf, cap, "%02ld:%02ld", s / 60, s % 60);
}

static void put_count(lp_buf *b, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        lp_buf_printf(b, "%.0f", v);
    else
        lp_buf_printf(b, "%.4g", v);
}

/* "21.5 it/s", "2.50 s/it" or "? it/s". */
static void put_rate(lp_buf *b, double done, double elapsed)
{
    if (!(elapsed > 0) || !(done > 0)) {
        lp_buf_puts(b, "? it/s");
        return;
    }
    double r = done / elapsed;
    if (r >= 1)
        lp_buf_printf(b, "%.1f it/s", r);
    else
        lp_buf_printf(b, "%.2f s/it", 1 / r);
}

/* The bracket part shared by text and HTML: "00:02<00:03, 21.5 it/s". */
static void put_timing(lp_buf *b, double done, double total, double elapsed, int finished)
{
    char t1[32], t2[32];
    lp_progress_format_time(t1, sizeof t1, elapsed);
    lp_buf_puts(b, t1);
    if (total > 0) {
        double left = finished ? 0 : (done > 0 ? elapsed * (total - done) / done : NAN);
        lp_progress_format_time(t2, sizeof t2, left);
        lp_buf_printf(b, "<%s", t2);
    }
    lp_buf_puts(b, ", ");
    put_rate(b, done, elapsed);
}

json_t *lp_display_progress(const char *label, double done, double total, double elapsed_s,
                            int finished)
{
    if (!isfinite(done) || done < 0)
        done = 0;
    if (!isfinite(elapsed_s) || elapsed_s < 0)
        elapsed_s = 0;
    int known = isfinite(total) && total > 0;
    if (!known)
        total = 0;
    if (known && (finished || done > total))
        done = total;
    double frac = known ? done / total : 0;
    const char *lab = label ? label : "";

    lp_buf plain = LP_BUF_INIT, html = LP_BUF_INIT, timing = LP_BUF_INIT;
    put_timing(&timing, done, total, elapsed_s, finished);

    lp_utf8_sanitize(&plain, lab, strlen(lab));
    if (*lab)
        lp_buf_putc(&plain, ' ');
    if (known) {
        int pct = (int)floor(frac * 100);
        lp_buf_printf(&plain, "%3d%% |", pct);
        /* Whole blocks, then one partial block in eighths. */
        static const char *eighths[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
        int cells = (int)floor(frac * BAR_CHARS * 8);
        int full = cells / 8, part = cells % 8, used = full;
        for (int i = 0; i < full; i++)
            lp_buf_puts(&plain, "█");
        if (full < BAR_CHARS && part) {
            lp_buf_puts(&plain, eighths[part]);
            used++;
        }
        for (int i = used; i < BAR_CHARS; i++)
            lp_buf_putc(&plain, ' ');
        lp_buf_puts(&plain, "| ");
        put_count(&plain, done);
        lp_buf_putc(&plain, '/');
        put_count(&plain, total);
    } else {
        put_count(&plain, done);
        lp_buf_puts(&plain, " it");
    }
    lp_buf_printf(&plain, " [%s]", lp_buf_str(&timing));
    if (finished)
        lp_buf_puts(&plain, " done");

    /* HTML: colours as hex/rgba first (kept by the sanitizer), theme variables second
     * (used where styles are trusted). */
    lp_buf_puts(&html,
                "<div class=\"lp-progress\" style=\"display:flex;align-items:center;"
                "font-family:monospace;font-size:12px;line-height:18px;max-width:720px\">");
    if (*lab) {
        lp_buf_puts(&html, "<span style=\"margin-right:8px;white-space:pre\">");
        lp_html_escape(&html, lab, strlen(lab));
        lp_buf_puts(&html, "</span>");
    }
    if (known) {
        const char *fill = finished ? "#2e9e6a" : "#3d7fc1";
        lp_buf_printf(&html,
                      "<div style=\"width:240px;min-width:80px;height:10px;border-radius:3px;"
                      "background:rgba(128,128,128,0.25);overflow:hidden;margin-right:8px\">"
                      "<div style=\"width:%.1f%%;height:10px;background:%s\"></div></div>",
                      frac * 100, fill);
        lp_buf_printf(&html, "<span style=\"white-space:pre\">%3d%% ", (int)floor(frac * 100));
        put_count(&html, done);
        lp_buf_putc(&html, '/');
        put_count(&html, total);
    } else {
        lp_buf_puts(&html, "<span style=\"white-space:pre\">");
        put_count(&html, done);
        lp_buf_puts(&html, " it");
    }
    lp_buf_puts(&html, " [");
    lp_html_escape(&html, lp_buf_str(&timing), timing.len);
    lp_buf_puts(&html, finished ? "] done</span></div>" : "]</span></div>");
    lp_buf_free(&timing);
    return lp_bundle_from_bufs(&plain, &html);
}
