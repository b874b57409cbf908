/* The wire format: encode/decode with identities and buffers, HMAC test vectors, and
 * rejection of bad, short and missing signatures before any JSON is parsed. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/error.h"
#include "wire.h"

static lp_bytes bytes(const char *s) { return (lp_bytes){(char *)s, strlen(s)}; }

Test(wire, hmac_sha256_rfc4231_vector)
{
    /* RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?" */
    lp_signer s;
    cr_assert_eq(lp_signer_init(&s, "hmac-sha256", "Jefe"), 0);
    lp_bytes parts[2] = {bytes("what do ya want "), bytes("for nothing?")};
    char hex[129];
    lp_signer_sign(&s, parts, 2, hex);
    cr_assert_str_eq(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    lp_signer_clear(&s);
}

Test(wire, hmac_sha512_and_md5_vectors)
{
    lp_signer s;
    lp_bytes part = bytes("what do ya want for nothing?");
    char hex[129];
    cr_assert_eq(lp_signer_init(&s, "hmac-sha512", "Jefe"), 0);
    lp_signer_sign(&s, &part, 1, hex);
    cr_assert_str_eq(hex, "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737");
    lp_signer_clear(&s);
    cr_assert_eq(lp_signer_init(&s, "hmac-md5", "Jefe"), 0); /* RFC 2202 test case 2 */
    lp_signer_sign(&s, &part, 1, hex);
    cr_assert_str_eq(hex, "750c783e6ab0b503eaa86e310a5db738");
    lp_signer_clear(&s);
    cr_assert_eq(lp_signer_init(&s, "hmac-sha1", "k"), -1);
}

static void make_msg(lp_msg *m)
{
    memset(m, 0, sizeof *m);
    lp_frames_push(&m->ids, "client-A", 8);
    lp_frames_push(&m->ids, "\x00\x01\x02", 3);
    m->header = lp_header_new("sess", "me", "execute_request");
    m->parent = json_object();
    m->metadata = json_pack("{s:i}", "x", 1);
    m->content = json_pack("{s:s}", "code", "print(\"é\")");
    lp_frames_push(&m->buffers, "\xff\xfe binary", 9);
}

Test(wire, round_trip_with_identities_and_buffers)
{
    lp_signer s;
    lp_signer_init(&s, "hmac-sha256", "secret");
    lp_msg m, d;
    make_msg(&m);
    lp_frames f = {0};
    cr_assert_eq(lp_msg_encode(&s, &m, &f), 0);
    cr_assert_eq(f.n, 2 + 1 + 1 + 4 + 1);
    cr_assert_str_eq(f.v[2].data, "<IDS|MSG>");
    cr_assert_eq(f.v[3].len, 64);
    cr_assert_eq(lp_msg_decode(&s, &f, &d), 0, "%s", lp_last_error());
    cr_assert_eq(d.ids.n, 2);
    cr_assert_eq(d.ids.v[1].len, 3);
    cr_assert_eq(memcmp(d.ids.v[1].data, "\x00\x01\x02", 3), 0);
    cr_assert_eq(d.buffers.n, 1);
    cr_assert_eq(memcmp(d.buffers.v[0].data, "\xff\xfe binary", 9), 0);
    cr_assert_str_eq(lp_msg_type(&d), "execute_request");
    cr_assert_str_eq(json_string_value(json_object_get(d.content, "code")), "print(\"é\")");
    cr_assert_str_eq(json_string_value(json_object_get(d.header, "version")), "5.5");
    lp_msg_clear(&m);
    lp_msg_clear(&d);
    lp_frames_clear(&f);
    lp_signer_clear(&s);
}

Test(wire, unsigned_when_key_is_empty)
{
    lp_signer s;
    lp_signer_init(&s, "hmac-sha256", "");
    lp_msg m, d;
    make_msg(&m);
    lp_frames f = {0};
    lp_msg_encode(&s, &m, &f);
    cr_assert_eq(f.v[3].len, 0); /* empty signature */
    cr_assert_eq(lp_msg_decode(&s, &f, &d), 0);
    lp_msg_clear(&m);
    lp_msg_clear(&d);
    lp_frames_clear(&f);
    lp_signer_clear(&s);
}

/* Signature checks happen before parsing: a frame of garbage JSON with a bad signature
 * reports the signature, not the JSON. */
Test(wire, bad_short_and_missing_signatures_are_rejected)
{
    lp_signer s;
    lp_signer_init(&s, "hmac-sha256", "secret");
    lp_msg m, d;
    make_msg(&m);
    lp_frames f = {0};
    lp_msg_encode(&s, &m, &f);
    lp_bytes *sig = &f.v[3];

    char orig = sig->data[0];
    sig->data[0] = orig == 'a' ? 'b' : 'a'; /* one wrong digit */
    cr_assert_eq(lp_msg_decode(&s, &f, &d), -2);
    cr_assert_str_eq(lp_last_error(), "bad signature");
    sig->data[0] = orig;

    sig->len = 63; /* short */
    cr_assert_eq(lp_msg_decode(&s, &f, &d), -2);
    sig->len = 0; /* missing */
    cr_assert_eq(lp_msg_decode(&s, &f, &d), -2);
    cr_assert_str_eq(lp_last_error(), "missing signature");
    sig->len = 64;
    cr_assert_eq(lp_msg_decode(&s, &f, &d), 0);
    lp_msg_clear(&d);

    /* signed with another key */
    lp_signer other;
    lp_signer_init(&other, "hmac-sha256", "other");
    cr_assert_eq(lp_msg_decode(&other, &f, &d), -2);
    lp_signer_clear(&other);

    /* tampered content */
    f.v[7].data[2] ^= 1;
    cr_assert_eq(lp_msg_decode(&s, &f, &d), -2);
    lp_msg_clear(&m);
    lp_frames_clear(&f);
    lp_signer_clear(&s);
}

Test(wire, malformed_messages)
{
    lp_signer s;
    lp_signer_init(&s, "hmac-sha256", "");
    lp_frames f = {0};
    lp_msg d;
    lp_frames_push(&f, "id", 2);
    cr_assert_eq(lp_msg_decode(&s, &f, &d), -1);
    cr_assert(strstr(lp_last_error(), "delimiter") != NULL);
    lp_frames_push(&f, "<IDS|MSG>", 9);
    lp_frames_push(&f, "", 0);
    lp_frames_push(&f, "{}", 2);
    cr_assert_eq(lp_msg_decode(&s, &f, &d), -1);
    cr_assert(strstr(lp_last_error(), "too few frames") != NULL);
    lp_frames_push(&f, "{}", 2);
    lp_frames_push(&f, "{}", 2);
    lp_frames_push(&f, "not json", 8);
    cr_assert_eq(lp_msg_decode(&s, &f, &d), -1);
    cr_assert(strstr(lp_last_error(), "content is not valid JSON") != NULL);
    lp_frames_clear(&f);
    /* a header without msg_type */
    const char *parts[] = {"<IDS|MSG>", "", "{\"msg_id\": \"1\"}", "{}", "{}", "{}"};
    for (int i = 0; i < 6; i++)
        lp_frames_push(&f, parts[i], strlen(parts[i]));
    cr_assert_eq(lp_msg_decode(&s, &f, &d), -1);
    cr_assert(strstr(lp_last_error(), "msg_type") != NULL);
    lp_frames_clear(&f);
    /* content that is JSON but not an object */
    const char *parts2[] = {"<IDS|MSG>", "", "{\"msg_id\": \"1\", \"msg_type\": \"x\"}", "{}", "{}", "[1]"};
    for (int i = 0; i < 6; i++)
        lp_frames_push(&f, parts2[i], strlen(parts2[i]));
    cr_assert_eq(lp_msg_decode(&s, &f, &d), -1);
    lp_frames_clear(&f);
    lp_signer_clear(&s);
}

Test(wire, header_fields)
{
    json_t *h = lp_header_new("S", "U", "status");
    const char *keys[] = {"msg_id", "session", "username", "date", "msg_type", "version"};
    for (int i = 0; i < 6; i++)
        cr_assert(json_is_string(json_object_get(h, keys[i])), "%s", keys[i]);
    json_t *h2 = lp_header_new("S", "U", "status");
    cr_assert_str_neq(json_string_value(json_object_get(h, "msg_id")), json_string_value(json_object_get(h2, "msg_id")));
    json_decref(h);
    json_decref(h2);
}
