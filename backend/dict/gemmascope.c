/* Gemma Scope's params.npz as a JumpReLU SAE or transcoder (see sae_io.h). */
#include <string.h>

#include "core/error.h"
#include "dict/io_impl.h"
#include "dict/npz.h"
#include "dict/sae_io.h"

static int same_shape(const lp_tensor *t, int ndim, int64_t a, int64_t b)
{
    return t->ndim == ndim && t->shape[0] == a && (ndim < 2 || t->shape[1] == b);
}

lp_sae *lp_sae_load_npz(const char *path, int transcoder)
{
    lp_npz *z = lp_npz_open(path);
    if (!z)
        return NULL;
    static const char *const names[5] = {"W_enc", "W_dec", "b_enc", "b_dec", "threshold"};
    lp_tensor *t[5] = {0};
    lp_sae *s = NULL;
    for (int i = 0; i < 5; i++)
        if (!(t[i] = lp_npz_tensor(z, names[i])))
            goto out;
    for (size_t i = 0; i < lp_npz_count(z); i++) {
        int known = 0;
        for (int k = 0; k < 5; k++)
            known |= !strcmp(lp_npz_name(z, i), names[k]);
        if (!known) {
            lp_set_error_code(LP_ERR_FORMAT, "%s: unexpected array '%s'", path, lp_npz_name(z, i));
            goto out;
        }
    }
    if (t[0]->ndim != 2) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: array 'W_enc' must be 2-D [d_model, d_sae]", path);
        goto out;
    }
    int64_t din = t[0]->shape[0], ds = t[0]->shape[1];
    int64_t dout = t[1]->ndim == 2 ? t[1]->shape[1] : 0;
    const int64_t want[5][2] = {{din, ds}, {ds, transcoder ? dout : din}, {ds, 0}, {transcoder ? dout : din, 0}, {ds, 0}};
    for (int i = 1; i < 5; i++) {
        int nd = i == 1 ? 2 : 1;
        if (!same_shape(t[i], nd, want[i][0], want[i][1]) || (transcoder && i == 1 && dout < 1)) {
            char got[128], exp[128];
            lp_set_error_code(LP_ERR_FORMAT, "%s: array '%s' has shape %s, expected %s", path, names[i],
                              lp_dict_shape_str(got, sizeof got, t[i]->ndim, t[i]->shape),
                              lp_dict_shape_str(exp, sizeof exp, nd, want[i]));
            goto out;
        }
    }
    if (din > (1 << 30) || ds > (1 << 30) || dout > (1 << 30)) {
        lp_set_error_code(LP_ERR_FORMAT, "%s: absurd sizes", path);
        goto out;
    }
    lp_sae_config c = {.arch = LP_SAE_JUMPRELU, .d_in = (int)din, .d_sae = (int)ds,
                       .d_out = (int)(transcoder ? dout : din), .transcoder = transcoder != 0, .layer = -1};
    if (!(s = lp_sae_new(&c))) {
        lp_error_prefix("%s: ", path);
        goto out;
    }
    lp_tensor **slot[5] = {&s->W_enc, &s->W_dec, &s->b_enc, &s->b_dec, &s->threshold};
    for (int i = 0; i < 5; i++) {
        lp_tensor_free(*slot[i]);
        *slot[i] = t[i];
        t[i] = NULL;
    }
out:
    for (int i = 0; i < 5; i++)
        lp_tensor_free(t[i]);
    lp_npz_close(z);
    return s;
}
