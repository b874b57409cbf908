#include "svg.h"

#include <math.h>
#include <string.h>

#include "bundle.h"
#include "html.h"

/* Numbers with at most 2 decimals and no "-0". */
static void num(lp_buf *b, double v)
{
    if (!isfinite(v))
        v = 0;
    double r = round(v * 100) / 100;
    if (r == 0)
        r = 0;
    if (r == floor(r))
        lp_buf_printf(b, "%.0f", r);
    else
        lp_buf_printf(b, "%.2f", r);
}

void lp_svg_begin(lp_buf *b, double w, double h)
{
    lp_buf_puts(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" viewBox=\"0 0 ");
    num(b, w);
    lp_buf_putc(b, ' ');
    num(b, h);
    lp_buf_puts(b, "\" width=\"");
    num(b, w);
    lp_buf_puts(b, "\" height=\"");
    num(b, h);
    lp_buf_puts(b, "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">");
}

void lp_svg_end(lp_buf *b) { lp_buf_puts(b, "</svg>"); }

void lp_svg_group_begin(lp_buf *b, double x, double y)
{
    lp_buf_puts(b, "<g transform=\"translate(");
    num(b, x);
    lp_buf_putc(b, ',');
    num(b, y);
    lp_buf_puts(b, ")\">");
}

void lp_svg_group_end(lp_buf *b) { lp_buf_puts(b, "</g>"); }

static void xywh(lp_buf *b, double x, double y, double w, double h)
{
    lp_buf_puts(b, " x=\"");
    num(b, x);
    lp_buf_puts(b, "\" y=\"");
    num(b, y);
    lp_buf_puts(b, "\" width=\"");
    num(b, w);
    lp_buf_puts(b, "\" height=\"");
    num(b, h);
    lp_buf_putc(b, '"');
}

void lp_svg_rect(lp_buf *b, double x, double y, double w, double h, const char *fill)
{
    lp_buf_puts(b, "<rect");
    xywh(b, x, y, w, h);
    lp_buf_printf(b, " fill=\"%s\"/>", fill);
}

void lp_svg_frame(lp_buf *b, double x, double y, double w, double h, const char *stroke)
{
    lp_buf_puts(b, "<rect");
    xywh(b, x, y, w, h);
    lp_buf_printf(b, " fill=\"none\" stroke=\"%s\" stroke-width=\"1\"/>", stroke);
}

void lp_svg_line(lp_buf *b, double x1, double y1, double x2, double y2, const char *stroke,
                 double width)
{
    lp_buf_puts(b, "<line x1=\"");
    num(b, x1);
    lp_buf_puts(b, "\" y1=\"");
    num(b, y1);
    lp_buf_puts(b, "\" x2=\"");
    num(b, x2);
    lp_buf_puts(b, "\" y2=\"");
    num(b, y2);
    lp_buf_printf(b, "\" stroke=\"%s\" stroke-width=\"", stroke);
    num(b, width);
    lp_buf_puts(b, "\"/>");
}

void lp_svg_polyline(lp_buf *b, const double *xy, size_t n, const char *stroke, double width)
{
    if (n == 0)
        return;
    lp_buf_puts(b, "<polyline fill=\"none\" stroke-linejoin=\"round\" points=\"");
    for (size_t i = 0; i < n; i++) {
        if (i)
            lp_buf_putc(b, ' ');
        num(b, xy[2 * i]);
        lp_buf_putc(b, ',');
        num(b, xy[2 * i + 1]);
    }
    lp_buf_printf(b, "\" stroke=\"%s\" stroke-width=\"", stroke);
    num(b, width);
    lp_buf_puts(b, "\"/>");
}

void lp_svg_circle(lp_buf *b, double cx, double cy, double r, const char *fill)
{
    lp_buf_puts(b, "<circle cx=\"");
    num(b, cx);
    lp_buf_puts(b, "\" cy=\"");
    num(b, cy);
    lp_buf_puts(b, "\" r=\"");
    num(b, r);
    lp_buf_printf(b, "\" fill=\"%s\"/>", fill);
}

void lp_utf8_truncate(lp_buf *b, const char *s, size_t max_chars)
{
    size_t i = 0, chars = 0, n = strlen(s);
    while (i < n) {
        if (max_chars && chars == max_chars) {
            lp_buf_puts(b, "\xE2\x80\xA6");
            return;
        }
        size_t j = i + 1;
        while (j < n && ((unsigned char)s[j] & 0xC0) == 0x80 && j - i < 4)
            j++;
        lp_buf_append(b, s + i, j - i);
        i = j;
        chars++;
    }
}

void lp_svg_text(lp_buf *b, double x, double y, const char *anchor, double size,
                 const char *fill, double rotate, const char *text, size_t max_chars)
{
    lp_buf_puts(b, "<text x=\"");
    num(b, x);
    lp_buf_puts(b, "\" y=\"");
    num(b, y);
    lp_buf_printf(b, "\" text-anchor=\"%s\" font-size=\"", anchor);
    num(b, size);
    lp_buf_printf(b, "\" fill=\"%s\"", fill);
    if (rotate != 0) {
        lp_buf_puts(b, " transform=\"rotate(");
        num(b, rotate);
        lp_buf_putc(b, ' ');
        num(b, x);
        lp_buf_putc(b, ' ');
        num(b, y);
        lp_buf_puts(b, ")\"");
    }
    lp_buf_puts(b, " xml:space=\"preserve\">");
    lp_buf cut = LP_BUF_INIT;
    lp_utf8_truncate(&cut, text ? text : "", max_chars);
    lp_xml_escape(b, lp_buf_str(&cut), cut.len);
    lp_buf_free(&cut);
    lp_buf_puts(b, "</text>");
}

void lp_svg_png(lp_buf *b, double x, double y, double w, double h, const void *png, size_t n)
{
    lp_buf_puts(b, "<image");
    xywh(b, x, y, w, h);
    lp_buf_puts(b, " preserveAspectRatio=\"none\" image-rendering=\"optimizeSpeed\""
                   " style=\"image-rendering:pixelated\" xlink:href=\"data:image/png;base64,");
    lp_base64_encode(b, png, n);
    lp_buf_puts(b, "\"/>");
}
