#include "wire.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "util.h"

int lp_frames_push(lp_frames *f, const void *data, size_t len)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        lp_bytes *v = realloc(f->v, cap * sizeof *v);
        if (!v)
            return lp_set_error_code(LP_ERR_NOMEM, "out of memory for message frames");
        f->v = v;
        f->cap = cap;
    }
    char *p = malloc(len + 1);
    if (!p)
        return lp_set_error_code(LP_ERR_NOMEM, "out of memory for a message frame of %zu bytes", len);
    if (len)
        memcpy(p, data, len);
    p[len] = '\0';
    f->v[f->n].data = p;
    f->v[f->n].len = len;
    f->n++;
    return 0;
}

void lp_frames_clear(lp_frames *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->v[i].data);
    free(f->v);
    f->v = NULL;
    f->n = f->cap = 0;
}

int lp_signer_init(lp_signer *s, const char *scheme, const char *key)
{
    memset(s, 0, sizeof *s);
    const EVP_MD *md;
    if (strcmp(scheme, "hmac-sha256") == 0) md = EVP_sha256();
    else if (strcmp(scheme, "hmac-sha512") == 0) md = EVP_sha512();
    else if (strcmp(scheme, "hmac-md5") == 0) md = EVP_md5();
    else return lp_set_error("unsupported signature scheme \"%s\"", scheme);
    s->keylen = strlen(key);
    s->key = strdup(key);
    if (!s->key)
        return lp_set_error_code(LP_ERR_NOMEM, "out of memory");
    s->md = s->keylen ? md : NULL;
    if (s->md) {
        s->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        if (!s->mac) {
            lp_signer_clear(s);
            return lp_set_error("OpenSSL has no HMAC");
        }
    }
    s->hexlen = s->keylen ? (size_t)EVP_MD_size(md) * 2 : 0;
    return 0;
}

void lp_signer_clear(lp_signer *s)
{
    if (s->key)
        OPENSSL_cleanse(s->key, s->keylen);
    free(s->key);
    EVP_MAC_free((EVP_MAC *)s->mac);
    memset(s, 0, sizeof *s);
}

void lp_signer_sign(const lp_signer *s, const lp_bytes *parts, size_t n, char *hex)
{
    hex[0] = '\0';
    if (!s->md)
        return;
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t maclen = 0;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new((EVP_MAC *)s->mac);
    if (ctx) {
        OSSL_PARAM params[2];
        params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)EVP_MD_get0_name(s->md), 0);
        params[1] = OSSL_PARAM_construct_end();
        if (EVP_MAC_init(ctx, (const unsigned char *)s->key, s->keylen, params) == 1) {
            int ok = 1;
            for (size_t i = 0; i < n && ok; i++)
                ok = EVP_MAC_update(ctx, (const unsigned char *)parts[i].data, parts[i].len) == 1;
            if (!ok || EVP_MAC_final(ctx, mac, &maclen, sizeof mac) != 1)
                maclen = 0;
        }
        EVP_MAC_CTX_free(ctx);
    }
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < maclen; i++) {
        hex[2 * i] = digits[mac[i] >> 4];
        hex[2 * i + 1] = digits[mac[i] & 15];
    }
    hex[2 * maclen] = '\0';
}

static json_t *parse_dict(const lp_bytes *b, const char *what)
{
    json_error_t jerr;
    json_t *v = json_loadb(b->data, b->len, 0, &jerr);
    if (!v) {
        lp_set_error("%s is not valid JSON: %s", what, jerr.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        lp_set_error("%s is not a JSON object", what);
        return NULL;
    }
    return v;
}

int lp_msg_decode(const lp_signer *s, const lp_frames *f, lp_msg *m)
{
    memset(m, 0, sizeof *m);
    size_t d = 0;
    while (d < f->n && !(f->v[d].len == strlen(LP_DELIM) && memcmp(f->v[d].data, LP_DELIM, f->v[d].len) == 0))
        d++;
    if (d == f->n)
        return lp_set_error("no <IDS|MSG> delimiter among %zu frames", f->n);
    if (f->n - d < 6)
        return lp_set_error("too few frames after the delimiter (%zu, need 5)", f->n - d - 1);
    const lp_bytes *sig = &f->v[d + 1];
    const lp_bytes *parts = &f->v[d + 2];
    if (s->md) {
        char expect[2 * EVP_MAX_MD_SIZE + 1];
        lp_signer_sign(s, parts, 4, expect);
        if (sig->len != s->hexlen || s->hexlen == 0 || CRYPTO_memcmp(sig->data, expect, s->hexlen) != 0) {
            lp_set_error(sig->len == 0 ? "missing signature" : "bad signature");
            return -2;
        }
    }
    static const char *names[4] = {"header", "parent_header", "metadata", "content"};
    json_t *dicts[4] = {0};
    for (int i = 0; i < 4; i++) {
        dicts[i] = parse_dict(&parts[i], names[i]);
        if (!dicts[i]) {
            for (int j = 0; j < i; j++)
                json_decref(dicts[j]);
            return -1;
        }
    }
    if (!json_is_string(json_object_get(dicts[0], "msg_type")) ||
        !json_is_string(json_object_get(dicts[0], "msg_id"))) {
        for (int j = 0; j < 4; j++)
            json_decref(dicts[j]);
        return lp_set_error("header without a msg_type or msg_id");
    }
    m->header = dicts[0];
    m->parent = dicts[1];
    m->metadata = dicts[2];
    m->content = dicts[3];
    for (size_t i = 0; i < d; i++)
        if (lp_frames_push(&m->ids, f->v[i].data, f->v[i].len) < 0)
            goto oom;
    for (size_t i = d + 6; i < f->n; i++)
        if (lp_frames_push(&m->buffers, f->v[i].data, f->v[i].len) < 0)
            goto oom;
    return 0;
oom:
    lp_msg_clear(m);
    return -1;
}

int lp_msg_encode(const lp_signer *s, const lp_msg *m, lp_frames *out)
{
    json_t *dicts[4] = {m->header, m->parent, m->metadata, m->content};
    lp_bytes parts[4] = {0};
    int rc = -1;
    for (int i = 0; i < 4; i++) {
        parts[i].data = json_dumps(dicts[i] ? dicts[i] : json_object(), JSON_COMPACT | JSON_ENSURE_ASCII);
        if (!parts[i].data) {
            lp_set_error("cannot encode a message part as JSON");
            goto done;
        }
        parts[i].len = strlen(parts[i].data);
    }
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    lp_signer_sign(s, parts, 4, hex);
    for (size_t i = 0; i < m->ids.n; i++)
        if (lp_frames_push(out, m->ids.v[i].data, m->ids.v[i].len) < 0)
            goto done;
    if (lp_frames_push(out, LP_DELIM, strlen(LP_DELIM)) < 0 || lp_frames_push(out, hex, strlen(hex)) < 0)
        goto done;
    for (int i = 0; i < 4; i++)
        if (lp_frames_push(out, parts[i].data, parts[i].len) < 0)
            goto done;
    for (size_t i = 0; i < m->buffers.n; i++)
        if (lp_frames_push(out, m->buffers.v[i].data, m->buffers.v[i].len) < 0)
            goto done;
    rc = 0;
done:
    for (int i = 0; i < 4; i++)
        free(parts[i].data);
    return rc;
}

int lp_msg_build(const lp_signer *s, const char *session, const lp_frames *ids, const char *msg_type,
                 json_t *parent, json_t *metadata, json_t *content, lp_frames *out)
{
    lp_msg m = {0};
    if (ids)
        m.ids = *ids; /* borrowed: not cleared below */
    m.header = lp_header_new(session, "loupe", msg_type);
    m.parent = parent ? json_incref(parent) : json_object();
    m.metadata = metadata ? metadata : json_object();
    m.content = content ? content : json_object();
    int rc = (m.header && m.content && m.metadata && m.parent) ? lp_msg_encode(s, &m, out) : -1;
    json_decref(m.header);
    json_decref(m.parent);
    json_decref(m.metadata);
    json_decref(m.content);
    return rc;
}

void lp_msg_clear(lp_msg *m)
{
    lp_frames_clear(&m->ids);
    lp_frames_clear(&m->buffers);
    json_decref(m->header);
    json_decref(m->parent);
    json_decref(m->metadata);
    json_decref(m->content);
    memset(m, 0, sizeof *m);
}

json_t *lp_header_new(const char *session, const char *username, const char *msg_type)
{
    char id[37], date[32];
    lp_uuid(id);
    lp_iso_date(date, -1);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "msg_id", id, "session", session,
                     "username", username, "date", date, "msg_type", msg_type, "version",
                     LP_PROTOCOL_VERSION);
}

const char *lp_msg_type(const lp_msg *m)
{
    const char *t = m->header ? json_string_value(json_object_get(m->header, "msg_type")) : NULL;
    return t ? t : "";
}
