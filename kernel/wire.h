/* The Jupyter wire format: a message is a list of ZeroMQ frames
 *   identities..., "<IDS|MSG>", hex signature, header, parent_header, metadata, content,
 *   buffers...
 * The signature is an HMAC over the four JSON frames, verified on the raw bytes (length
 * checked, constant-time compare) BEFORE any JSON is parsed. An empty key means unsigned.
 * This module does no I/O: frames in, frames out; kernel/server.c moves them. */
#ifndef LP_WIRE_H
#define LP_WIRE_H

#include <jansson.h>
#include <stddef.h>

#define LP_PROTOCOL_VERSION "5.5"
#define LP_DELIM "<IDS|MSG>"

typedef struct lp_bytes {
    char *data; /* owned */
    size_t len;
} lp_bytes;

typedef struct lp_frames {
    lp_bytes *v; /* owned, each data owned */
    size_t n, cap;
} lp_frames;

int lp_frames_push(lp_frames *f, const void *data, size_t len); /* copies; -1 on OOM */
void lp_frames_clear(lp_frames *f);

typedef struct lp_signer {
    const void *md; /* EVP_MD*, NULL when unsigned */
    void *mac;      /* EVP_MAC* (HMAC), owned */
    char *key;      /* owned */
    size_t keylen;
    size_t hexlen;  /* length of a hex signature for this scheme */
} lp_signer;

/* scheme: "hmac-sha256" | "hmac-sha512" | "hmac-md5"; key "" means unsigned. */
int lp_signer_init(lp_signer *s, const char *scheme, const char *key);
void lp_signer_clear(lp_signer *s);
/* Hex HMAC of the concatenation of parts (n of them) into hex (>= 129 bytes); "" unsigned. */
void lp_signer_sign(const lp_signer *s, const lp_bytes *parts, size_t n, char *hex);

typedef struct lp_msg {
    lp_frames ids;    /* routing identities, echoed on replies */
    json_t *header;   /* owned references */
    json_t *parent;
    json_t *metadata;
    json_t *content;
    lp_frames buffers;
} lp_msg;

/* Decodes frames into msg. Returns 0; -1 with lp_last_error() for a malformed message
 * (no delimiter, too few frames, bad JSON, header without msg_type); -2 for a bad or
 * missing signature (nothing is parsed then). msg is left empty on failure. */
int lp_msg_decode(const lp_signer *s, const lp_frames *frames, lp_msg *msg);
/* Encodes and signs msg (header, parent, metadata, content must be set) into frames
 * (appended). Returns 0 or -1 (OOM). */
int lp_msg_encode(const lp_signer *s, const lp_msg *msg, lp_frames *out);
void lp_msg_clear(lp_msg *msg);
/* Encodes a new message from this kernel into frames (appended): ids (borrowed, may be
 * NULL), a fresh header for session and msg_type, parent (borrowed; NULL = {}), metadata and
 * content (stolen; NULL = {}). Returns 0, or -1 (out of memory, or JSON that cannot be
 * encoded). What kernel/server.c sends, and what the unit tests' mock transport records. */
int lp_msg_build(const lp_signer *s, const char *session, const lp_frames *ids, const char *msg_type,
                 json_t *parent, json_t *metadata, json_t *content, lp_frames *out);

/* A new header {msg_id, session, username, date, msg_type, version}; new reference. */
json_t *lp_header_new(const char *session, const char *username, const char *msg_type);
const char *lp_msg_type(const lp_msg *msg); /* header.msg_type or "" */

#endif
