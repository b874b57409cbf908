/* Tables of rows (top-k tokens, feature lists): an HTML table with inline styles, and an
 * aligned text/plain table. Numeric cells are right-aligned. */
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "core/error.h"
#include "figure.h"
#include "figures.h"
#include "html.h"
#include "svg.h"

enum { MAX_ROWS = 500, PLAIN_CELL = 32 };

static int is_number(const char *s)
{
    if (!s || !*s)
        return 0;
    char *end;
    strtod(s, &end);
    return *end == '\0';
}

/* Code points of s, for text alignment (approximate for wide characters). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; s && *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void plain_cell(lp_buf *b, const char *s, size_t w, int right)
{
    lp_buf cut = LP_BUF_INIT, clean = LP_BUF_INIT;
    lp_utf8_sanitize(&clean, s ? s : "", s ? strlen(s) : 0);
    for (char *p = clean.data; p && *p; p++)
        if (*p == '\n' || *p == '\t' || *p == '\r')
            *p = ' ';
    lp_utf8_truncate(&cut, lp_buf_str(&clean), PLAIN_CELL);
    size_t cw = width(lp_buf_str(&cut));
    if (right)
        for (size_t i = cw; i < w; i++) lp_buf_putc(b, ' ');
    lp_buf_puts(b, lp_buf_str(&cut));
    if (!right)
        for (size_t i = cw; i < w; i++) lp_buf_putc(b, ' ');
    lp_buf_free(&cut);
    lp_buf_free(&clean);
}

json_t *lp_display_table(const char *title, const char *const *header, const char *const *cells,
                         size_t rows, size_t cols)
{
    if (cols == 0 || (rows == 0 && !header) || (rows && !cells))
        return lp_bundle_nothing(title && *title ? title : "table");
    size_t nr = rows > MAX_ROWS ? MAX_ROWS : rows;
    size_t *w = lp_calloc(cols, sizeof *w, "a table");
    if (!w)
        return NULL;
    for (size_t j = 0; j < cols; j++) {
        size_t m = header ? width(header[j]) : 0;
        for (size_t i = 0; i < nr; i++) {
            size_t cw = width(cells[i * cols + j]);
            if (cw > m) m = cw;
        }
        w[j] = m > PLAIN_CELL ? PLAIN_CELL + 1 : m;
    }
    uint64_t h = lp_fig_hash_strs(lp_fig_hash_str(LP_HASH64_INIT, title), header, header ? cols : 0);
    h = lp_fig_hash_strs(h, cells, rows * cols);
    lp_buf html = LP_BUF_INIT, plain = LP_BUF_INIT, note = LP_BUF_INIT;
    char id[48];
    lp_fig_open(&html, "table", h, title, id);
    if (title && *title) {
        lp_utf8_sanitize(&plain, title, strlen(title));
        lp_buf_putc(&plain, '\n');
    }
    lp_buf_puts(&html, "<table style=\"border-collapse:collapse;font-size:12px\">");
    if (header) {
        lp_buf_puts(&html, "<thead><tr>");
        for (size_t j = 0; j < cols; j++) {
            const char *s = header[j] ? header[j] : "";
            lp_buf_puts(&html, "<th style=\"padding:2px 8px;text-align:left;border-bottom:1px solid "
                               "#7f7f7f\">");
            lp_html_escape(&html, s, strlen(s));
            lp_buf_puts(&html, "</th>");
            plain_cell(&plain, s, w[j], 0);
            lp_buf_puts(&plain, j + 1 < cols ? "  " : "\n");
        }
        lp_buf_puts(&html, "</tr></thead>");
    }
    lp_buf_puts(&html, "<tbody>");
    for (size_t i = 0; i < nr; i++) {
        lp_buf_puts(&html, "<tr>");
        for (size_t j = 0; j < cols; j++) {
            const char *s = cells[i * cols + j] ? cells[i * cols + j] : "";
            int num = is_number(s);
            lp_buf_printf(&html, "<td style=\"padding:2px 8px;text-align:%s;border-bottom:1px solid "
                                 "rgba(127,127,127,0.2);white-space:pre%s\">",
                          num ? "right" : "left", num ? "" : ";font-family:monospace");
            lp_html_escape(&html, s, strlen(s));
            lp_buf_puts(&html, "</td>");
            plain_cell(&plain, s, w[j], num);
            lp_buf_puts(&plain, j + 1 < cols ? "  " : "\n");
        }
        lp_buf_puts(&html, "</tr>");
    }
    lp_buf_puts(&html, "</tbody></table>");
    free(w);
    if (plain.len && plain.data[plain.len - 1] == '\n')
        plain.data[--plain.len] = '\0';
    if (nr < rows)
        lp_buf_printf(&note, "showing the first %zu of %zu rows", nr, rows);
    lp_fig_caption(&html, &plain, 0, lp_buf_str(&note));
    lp_buf_free(&note);
    lp_fig_close(&html);
    return lp_bundle_from_bufs(&plain, &html);
}
