/* The YAML subset of config.yaml files (see yaml.h): a line-oriented parser that checks every
 * length and refuses what it does not read, naming the line. */
#include "dict/yaml.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/error.h"

#define MAX_DOC ((size_t)1 << 20)

enum { V_SCALAR, V_LIST, V_MAP };

typedef struct entry {
    char *key;
    int kind;
    char *val;    /* V_SCALAR */
    char **items; /* V_LIST */
    size_t n, cap;
} entry;

struct lp_yaml {
    entry *e;
    size_t n, cap;
};

typedef struct ctx {
    const char *label;
    int line;
} ctx;

static int fail(const ctx *c, const char *what)
{
    return lp_set_error_code(LP_ERR_FORMAT, "%s:%d: %s", c->label, c->line, what);
}

void lp_yaml_free(lp_yaml *y)
{
    if (!y)
        return;
    for (size_t i = 0; i < y->n; i++) {
        free(y->e[i].key), free(y->e[i].val);
        for (size_t j = 0; j < y->e[i].n; j++)
            free(y->e[i].items[j]);
        free(y->e[i].items);
    }
    free(y->e);
    free(y);
}

static const entry *find(const lp_yaml *y, const char *key)
{
    for (size_t i = 0; y && key && i < y->n; i++)
        if (strcmp(y->e[i].key, key) == 0)
            return &y->e[i];
    return NULL;
}

const char *lp_yaml_get(const lp_yaml *y, const char *key)
{
    const entry *e = find(y, key);
    return e && e->kind == V_SCALAR ? e->val : NULL;
}

const char *const *lp_yaml_list(const lp_yaml *y, const char *key, size_t *n)
{
    const entry *e = find(y, key);
    if (!e || e->kind != V_LIST)
        return NULL;
    *n = e->n;
    return (const char *const *)(e->items ? e->items : (char **)"");
}

static int is_blank_or_comment(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && s[i] == ' ')
        i++;
    return i == n || s[i] == '#';
}

/* Appends the UTF-8 encoding of code point u. */
static void put_utf8(lp_buf *b, uint32_t u)
{
    if (u < 0x80) {
        lp_buf_putc(b, (char)u);
    } else if (u < 0x800) {
        lp_buf_putc(b, (char)(0xC0 | (u >> 6)));
        lp_buf_putc(b, (char)(0x80 | (u & 0x3F)));
    } else {
        lp_buf_putc(b, (char)(0xE0 | (u >> 12)));
        lp_buf_putc(b, (char)(0x80 | ((u >> 6) & 0x3F)));
        lp_buf_putc(b, (char)(0x80 | (u & 0x3F)));
    }
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Reads one scalar from s[*i..n) into a new string. In a flow sequence (`flow`), a plain
 * scalar ends at ',' or ']'. Leaves *i after the scalar (and any spaces). NULL on error. */
static char *scalar(const ctx *c, const char *s, size_t n, size_t *i, int flow)
{
    lp_buf b = LP_BUF_INIT;
    size_t p = *i;
    lp_buf_puts(&b, ""); /* an empty scalar is "", never NULL */
    if (p < n && (s[p] == '"' || s[p] == '\'')) {
        char q = s[p++];
        for (;;) {
            if (p >= n) {
                fail(c, "a quoted string does not end on its line");
                goto bad;
            }
            char ch = s[p++];
            if (ch == q) {
                if (q == '\'' && p < n && s[p] == '\'') { /* '' is a quote */
                    lp_buf_putc(&b, '\'');
                    p++;
                    continue;
                }
                break;
            }
            if (q == '"' && ch == '\\') {
                if (p >= n) {
                    fail(c, "a backslash ends the line");
                    goto bad;
                }
                char e = s[p++];
                const char *from = "\"\\/nrtbf0 ", *to = "\"\\/\n\r\t\b\f\0 ";
                const char *k = e ? strchr(from, e) : NULL;
                if (k) {
                    lp_buf_putc(&b, to[k - from]);
                } else if (e == 'u' || e == 'x') {
                    int len = e == 'u' ? 4 : 2;
                    uint32_t u = 0;
                    for (int d = 0; d < len; d++) {
                        int h = p < n ? hexval(s[p]) : -1;
                        if (h < 0) {
                            fail(c, "a bad \\u or \\x escape");
                            goto bad;
                        }
                        u = u * 16 + (uint32_t)h, p++;
                    }
                    put_utf8(&b, u);
                } else {
                    fail(c, "an escape this reader does not know");
                    goto bad;
                }
            } else {
                lp_buf_putc(&b, ch);
            }
        }
    } else {
        if (p < n && strchr("&*!|>{%@`", s[p])) {
            fail(c, "anchors, aliases, tags, block scalars and flow mappings are not read");
            goto bad;
        }
        size_t start = p, end = p;
        while (p < n) {
            if (flow && (s[p] == ',' || s[p] == ']'))
                break;
            if (s[p] == '#' && (p == start || s[p - 1] == ' '))
                break;
            if (s[p] != ' ')
                end = p + 1;
            p++;
        }
        lp_buf_append(&b, s + start, end - start);
        if (!flow && end == start + 1 && s[start] == '~')
            b.len = 0, b.data[0] = 0;
    }
    while (p < n && s[p] == ' ')
        p++;
    *i = p;
    char *out = lp_buf_finish(&b);
    if (out && (!strcmp(out, "null") || !strcmp(out, "Null") || !strcmp(out, "NULL")))
        out[0] = 0;
    return out;
bad:
    lp_buf_free(&b);
    return NULL;
}

static int push_item(entry *e, char *item)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 8;
        char **p = lp_realloc(e->items, cap * sizeof *p, "a YAML list");
        if (!p) {
            free(item);
            return -1;
        }
        e->items = p, e->cap = cap;
    }
    e->items[e->n++] = item;
    return 0;
}

/* The rest of a line after a value must be blank or a comment. */
static int line_end(const ctx *c, const char *s, size_t n, size_t i)
{
    return is_blank_or_comment(s + i, n - i) ? 0 : fail(c, "unexpected text after a value");
}

/* "[a, b, c]" on one line. */
static int flow_list(const ctx *c, entry *e, const char *s, size_t n, size_t i)
{
    e->kind = V_LIST;
    i++; /* '[' */
    while (i < n && s[i] == ' ')
        i++;
    if (i < n && s[i] == ']')
        return line_end(c, s, n, i + 1);
    for (;;) {
        char *v = scalar(c, s, n, &i, 1);
        if (!v || push_item(e, v) < 0)
            return -1;
        if (i < n && s[i] == ',') {
            i++;
            while (i < n && s[i] == ' ')
                i++;
            continue;
        }
        if (i < n && s[i] == ']')
            return line_end(c, s, n, i + 1);
        return fail(c, "a flow list must end with ']' on its line");
    }
}

lp_yaml *lp_yaml_parse(const char *text, size_t n, const char *label)
{
    ctx c = {label ? label : "config.yaml", 0};
    if (n > MAX_DOC) {
        fail(&c, "the document is larger than 1 MiB");
        return NULL;
    }
    lp_yaml *y = lp_calloc(1, sizeof *y, "a YAML document");
    if (!y)
        return NULL;
    entry *pending = NULL; /* a key whose value follows on indented lines */
    size_t pos = 0;
    while (pos < n) {
        size_t eol = pos;
        while (eol < n && text[eol] != '\n')
            eol++;
        const char *s = text + pos;
        size_t len = eol - pos;
        pos = eol + 1;
        c.line++;
        if (len && s[len - 1] == '\r')
            len--;
        if (memchr(s, '\0', len)) {
            fail(&c, "a NUL byte");
            goto bad;
        }
        size_t ind = 0;
        while (ind < len && s[ind] == ' ')
            ind++;
        if (ind < len && s[ind] == '\t') {
            fail(&c, "a tab in the indentation");
            goto bad;
        }
        if (is_blank_or_comment(s, len))
            continue;
        if (ind == 0 && len >= 3 && (!memcmp(s, "---", 3) || !memcmp(s, "...", 3)) &&
            is_blank_or_comment(s + 3, len - 3)) {
            if (y->n) { /* a second document */
                fail(&c, "only one document is read");
                goto bad;
            }
            continue;
        }
        int item = s[ind] == '-' && (ind + 1 == len || s[ind + 1] == ' ');
        if (ind > 0 || item) {
            if (!pending) {
                fail(&c, ind ? "unexpected indentation" : "a list item outside a list");
                goto bad;
            }
            if (pending->kind == V_MAP)
                continue; /* inside a nested mapping we skip */
            if (!item) {
                if (pending->n) {
                    fail(&c, "a list item must start with '- '");
                    goto bad;
                }
                pending->kind = V_MAP;
                continue;
            }
            pending->kind = V_LIST;
            size_t i = ind + 1;
            while (i < len && s[i] == ' ')
                i++;
            char *v = scalar(&c, s, len, &i, 0);
            if (!v)
                goto bad;
            if (push_item(pending, v) < 0 || line_end(&c, s, len, i) < 0)
                goto bad;
            continue;
        }
        /* key: value */
        pending = NULL;
        size_t k = 0;
        while (k < len && !(s[k] == ':' && (k + 1 == len || s[k + 1] == ' ')))
            k++;
        if (k == len || k == 0) {
            fail(&c, "expected 'key: value'");
            goto bad;
        }
        size_t kend = k;
        while (kend > 0 && s[kend - 1] == ' ')
            kend--;
        if (strchr("\"'&*!|>{[%@`#?", s[0])) {
            fail(&c, "keys must be plain words");
            goto bad;
        }
        if (y->n == y->cap) {
            size_t cap = y->cap ? y->cap * 2 : 16;
            entry *p = lp_realloc(y->e, cap * sizeof *p, "a YAML document");
            if (!p)
                goto bad;
            y->e = p, y->cap = cap;
        }
        entry *e = &y->e[y->n];
        memset(e, 0, sizeof *e);
        if (!(e->key = lp_malloc(kend + 1, "a YAML key")))
            goto bad;
        memcpy(e->key, s, kend);
        e->key[kend] = 0;
        y->n++;
        for (size_t j = 0; j + 1 < y->n; j++)
            if (!strcmp(y->e[j].key, e->key)) {
                fail(&c, "a key appears twice");
                goto bad;
            }
        size_t i = k + 1;
        while (i < len && s[i] == ' ')
            i++;
        if (i == len || s[i] == '#') { /* the value is on the next lines (or null) */
            e->kind = V_SCALAR;
            if (!(e->val = lp_strdup("", "a YAML value")))
                goto bad;
            pending = e;
            continue;
        }
        if (s[i] == '[') {
            if (flow_list(&c, e, s, len, i) < 0)
                goto bad;
            continue;
        }
        e->kind = V_SCALAR;
        if (!(e->val = scalar(&c, s, len, &i, 0)) || line_end(&c, s, len, i) < 0)
            goto bad;
    }
    for (size_t i = 0; i < y->n; i++) /* a key with nothing after it is null */
        if (y->e[i].kind != V_SCALAR) {
            free(y->e[i].val);
            y->e[i].val = NULL;
        }
    return y;
bad:
    lp_yaml_free(y);
    return NULL;
}

void lp_yaml_write_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p < 0x20 || *p == 0x7F)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}
