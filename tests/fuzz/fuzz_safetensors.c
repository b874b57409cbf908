/* libFuzzer target for the safetensors reader (backend/model/safetensors.c): the input is a
 * whole file image. When the header validates, every tensor is read and converted to f32,
 * so that any range the validation let through is touched (ASan catches an overrun).
 * The same bytes are also fed to the config.json parser. Built with -DLOUPE_FUZZ=ON (clang):
 *   build-fuzz/tests/fuzz/fuzz_safetensors -max_total_time=60 */
#include <stdint.h>
#include <stdlib.h>

#include "model/config.h"
#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lp_safetensors *st = lp_safetensors_parse(data, size, "fuzz");
    if (st) {
        for (size_t i = 0; i < lp_safetensors_count(st); i++) {
            const lp_st_entry *e = lp_safetensors_entry(st, i);
            if (e->end - e->begin <= (1u << 20))
                lp_tensor_free(lp_safetensors_tensor(st, e, LP_DEVICE_CPU));
        }
        lp_safetensors_close(st);
    }
    lp_model_config c;
    lp_model_config_parse((const char *)data, size, "fuzz", &c);
    return 0;
}
