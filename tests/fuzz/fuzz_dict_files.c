/* libFuzzer target for the dictionary files' parsers of untrusted bytes (backend/dict/): the
 * input is fed to the .npz reader (every array it lists is read, so any offset the validation
 * let through is touched) and to the config.yaml subset (every key looked up). Built with
 * -DLOUPE_FUZZ=ON (clang):
 *   build-fuzz/tests/fuzz/fuzz_dict_files -max_total_time=60 */
#include <stdint.h>
#include <stdlib.h>

#include "dict/npz.h"
#include "dict/yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lp_npz *z = lp_npz_parse(data, size, "fuzz.npz");
    if (z) {
        for (size_t i = 0; i < lp_npz_count(z); i++)
            lp_tensor_free(lp_npz_tensor(z, lp_npz_name(z, i)));
        lp_npz_close(z);
    }
    lp_yaml *y = lp_yaml_parse((const char *)data, size, "fuzz.yaml");
    if (y) {
        static const char *const keys[] = {"model_kind", "feature_input_hook", "transcoders", "k", ""};
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
            size_t n = 0;
            const char *const *l = lp_yaml_list(y, keys[i], &n);
            for (size_t j = 0; l && j < n; j++)
                (void)l[j][0];
            const char *v = lp_yaml_get(y, keys[i]);
            (void)(v && v[0]);
        }
        lp_yaml_free(y);
    }
    return 0;
}
