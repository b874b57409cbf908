#include "connection.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

const char *const lp_channel_names[LP_CH_COUNT] = {"shell", "control", "stdin", "iopub", "hb"};
static const char *const port_keys[LP_CH_COUNT] = {"shell_port", "control_port", "stdin_port",
                                                   "iopub_port", "hb_port"};

static int copy_str(char *dst, size_t cap, json_t *v, const char *field, const char *dflt)
{
    const char *s = dflt;
    if (v) {
        if (!json_is_string(v))
            return lp_set_error("'%s' must be a string", field);
        s = json_string_value(v);
    }
    if (strlen(s) >= cap)
        return lp_set_error("'%s' is too long (%zu bytes, at most %zu)", field, strlen(s), cap - 1);
    strcpy(dst, s);
    return 0;
}

static int parse_port(json_t *v, const char *field, int *out)
{
    long p;
    if (json_is_integer(v)) {
        p = (long)json_integer_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        p = strtol(s, &end, 10);
        if (*s == '\0' || *end != '\0' || errno)
            return lp_set_error("'%s' is not a port number: \"%s\"", field, s);
    } else if (!v) {
        return lp_set_error("'%s' is missing", field);
    } else {
        return lp_set_error("'%s' must be a number or a string", field);
    }
    if (p < 0 || p > 65535)
        return lp_set_error("'%s' is out of range: %ld", field, p);
    *out = (int)p;
    return 0;
}

int lp_conn_parse(lp_conn *c, const char *text, size_t len)
{
    memset(c, 0, sizeof *c);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return lp_set_error("not valid JSON (line %d: %s)", jerr.line, jerr.text);
    int rc = -1;
    if (!json_is_object(root)) {
        lp_set_error("the top level must be a JSON object");
        goto done;
    }
    if (copy_str(c->transport, sizeof c->transport, json_object_get(root, "transport"), "transport", "tcp") < 0 ||
        copy_str(c->ip, sizeof c->ip, json_object_get(root, "ip"), "ip", "127.0.0.1") < 0 ||
        copy_str(c->scheme, sizeof c->scheme, json_object_get(root, "signature_scheme"), "signature_scheme", "hmac-sha256") < 0 ||
        copy_str(c->kernel_name, sizeof c->kernel_name, json_object_get(root, "kernel_name"), "kernel_name", "") < 0)
        goto done;
    if (strcmp(c->transport, "tcp") != 0 && strcmp(c->transport, "ipc") != 0) {
        lp_set_error("unknown transport \"%s\" (expected \"tcp\" or \"ipc\")", c->transport);
        goto done;
    }
    if (strcmp(c->scheme, "hmac-sha256") != 0 && strcmp(c->scheme, "hmac-sha512") != 0 &&
        strcmp(c->scheme, "hmac-md5") != 0) {
        lp_set_error("unsupported signature_scheme \"%s\" (hmac-sha256, hmac-sha512, hmac-md5)", c->scheme);
        goto done;
    }
    for (int i = 0; i < LP_CH_COUNT; i++)
        if (parse_port(json_object_get(root, port_keys[i]), port_keys[i], &c->ports[i]) < 0)
            goto done;
    json_t *key = json_object_get(root, "key");
    if (key && !json_is_string(key)) {
        lp_set_error("'key' must be a string");
        goto done;
    }
    c->key = strdup(key ? json_string_value(key) : "");
    if (!c->key) {
        lp_set_error_code(LP_ERR_NOMEM, "out of memory");
        goto done;
    }
    c->has_curve = json_object_get(root, "curve_publickey") != NULL ||
                   json_object_get(root, "curve_secretkey") != NULL;
    rc = 0;
done:
    json_decref(root);
    if (rc < 0)
        lp_conn_clear(c);
    return rc;
}

int lp_conn_load(lp_conn *c, const char *path)
{
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    if (!f)
        return lp_set_error_code(LP_ERR_IO, "cannot open connection file %s: %s", path, strerror(errno));
    char *data = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            if (cap > (1u << 20)) {
                fclose(f);
                free(data);
                return lp_set_error("connection file %s is too large (over 1 MiB)", path);
            }
            cap = cap ? cap * 2 : 8192;
            char *p = realloc(data, cap);
            if (!p) {
                fclose(f);
                free(data);
                return lp_set_error_code(LP_ERR_NOMEM, "out of memory reading %s", path);
            }
            data = p;
        }
        size_t n = fread(data + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(data);
        return lp_set_error_code(LP_ERR_IO, "cannot read connection file %s", path);
    }
    int rc = lp_conn_parse(c, data ? data : "", len);
    free(data);
    if (rc < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", lp_last_error());
        return lp_set_error("bad connection file %s: %s", path, msg);
    }
    return 0;
}

void lp_conn_clear(lp_conn *c)
{
    free(c->key);
    c->key = NULL;
}

void lp_conn_endpoint(const lp_conn *c, int ch, char *out, int cap)
{
    if (strcmp(c->transport, "ipc") == 0)
        snprintf(out, (size_t)cap, "ipc://%s-%d", c->ip, c->ports[ch]);
    else
        snprintf(out, (size_t)cap, "tcp://%s:%d", c->ip, c->ports[ch]);
}
