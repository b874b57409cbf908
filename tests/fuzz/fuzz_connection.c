/* Fuzzes the connection-file parser. */
#include <stdint.h>

#include "connection.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lp_conn c;
    if (lp_conn_parse(&c, (const char *)data, size) == 0) {
        char ep[320];
        for (int ch = 0; ch < LP_CH_COUNT; ch++)
            lp_conn_endpoint(&c, ch, ep, sizeof ep);
        lp_conn_clear(&c);
    }
    return 0;
}
