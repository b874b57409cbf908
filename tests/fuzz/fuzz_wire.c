/* Fuzzes lp_msg_decode: the input is split into frames at "\n--\n"; the first byte picks
 * signed (key "k") or unsigned decoding, so both the signature check and the JSON parsing
 * behind it are reached. */
#include <stdint.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    lp_signer s;
    lp_signer_init(&s, "hmac-sha256", data[0] & 1 ? "k" : "");
    lp_frames f = {0};
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    while (p <= end) {
        const char *sep = memmem(p, (size_t)(end - p), "\n--\n", 4);
        size_t n = sep ? (size_t)(sep - p) : (size_t)(end - p);
        lp_frames_push(&f, p, n);
        if (!sep)
            break;
        p = sep + 4;
    }
    lp_msg m;
    if (lp_msg_decode(&s, &f, &m) == 0) {
        lp_frames out = {0};
        lp_msg_encode(&s, &m, &out); /* a decoded message must encode again */
        lp_frames_clear(&out);
        lp_msg_clear(&m);
    }
    lp_frames_clear(&f);
    lp_signer_clear(&s);
    return 0;
}
