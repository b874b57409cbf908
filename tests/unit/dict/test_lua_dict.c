/* The Lua bindings of dictionaries' files (kernel/lua/lua_dict.c) in a bare Lua state:
 * loupe.sae.load / sae:save and loupe.transcoders.load / t:save round-trip through the
 * backend, fields and summaries show the shapes, bad folders raise errors naming the file. */
#include <criterion/criterion.h>
#include <string.h>

#include "dict_fixtures.h"
#include "lua_dict.h"
#include "lua_harness.h"
#include "lua_tensor.h"

static lua_State *L;
static char *dir;

static void setup(void)
{
    L = t_lua_new(T_PUBLISH_REFUSE, lp_lua_open_tensor, lp_lua_open_dict);
    dir = tmpdir();
    t_lua_set_string(L, "DIR", dir);
}
static void teardown(void)
{
    t_lua_close(L);
    rmtree(dir);
}

TestSuite(lua_dict, .init = setup, .fini = teardown);

Test(lua_dict, saes_of_every_architecture_save_and_load)
{
    t_lua_run(L, "for i, a in ipairs{'standard', 'topk', 'jumprelu', 'batchtopk'} do\n"
                 "  local s = loupe.sae.random{arch = a, d_in = 6, d_sae = 12, k = 3, seed = i,\n"
                 "                             hook = 'blocks.2.hook_resid_post'}\n"
                 "  s:save(DIR .. '/' .. a, {model_name = 'loupe-default', context_size = 64})\n"
                 "  local r = loupe.sae.load(DIR .. '/' .. a)\n"
                 "  assert(r.d_in == 6 and r.d_sae == 12 and r.layer == 2, a)\n"
                 "  assert(r.arch == (a == 'batchtopk' and 'jumprelu' or a), r.arch)\n"
                 "  assert(r.cfg.hook_name == 'blocks.2.hook_resid_post')\n"
                 "  for _, w in ipairs{'W_enc', 'W_dec', 'b_enc', 'b_dec'} do\n"
                 "    assert((r[w] - s[w]):norm() == 0, a .. ' ' .. w)\n"
                 "    assert((s[w]):norm() > 0, 'random weights are not zero')\n"
                 "  end\n"
                 "  if a == 'jumprelu' then assert((r.threshold - s.threshold):norm() == 0) end\n"
                 "  if a == 'topk' then assert(r.k == 3) end\n"
                 "end\n");
}

Test(lua_dict, transcoders_and_clts_save_and_load)
{
    t_lua_run(L, "local t = loupe.transcoders.random{n_layers = 3, d_model = 8, d_transcoder = 10, activation = 'jumprelu', seed = 4}\n"
                 "t:save(DIR .. '/tc')\n"
                 "local u = loupe.transcoders.load(DIR .. '/tc')\n"
                 "assert(u.kind == 'transcoder_set' and #u == 3 and u.d_model == 8 and u.d_transcoder == 10)\n"
                 "assert(u.feature_input_hook == 'mlp.hook_in')\n"
                 "for l = 1, 3 do assert((u[l].W_enc - t[l].W_enc):norm() == 0 and u[l].hook_in == 'blocks.' .. (l - 1) .. '.mlp.hook_in') end\n"
                 "local c = loupe.transcoders.random{n_layers = 2, d_model = 8, d_transcoder = 4, clt = true, activation = 'jumprelu'}\n"
                 "c:save(DIR .. '/clt')\n"
                 "local d = loupe.transcoders.load(DIR .. '/clt')\n"
                 "assert(d.kind == 'cross_layer_transcoder' and d.n_layers == 2 and d.d_transcoder == 4)\n");
    const char *s = t_lua_string(L, "return tostring(loupe.transcoders.load(DIR .. '/clt'))");
    cr_assert(strstr(s, "cross-layer transcoder: 2 layers, d_model 8, d_transcoder 4 per layer, jumprelu"), "%s", s);
}

Test(lua_dict, summaries_show_the_shapes)
{
    const char *s = t_lua_string(L, "return tostring(loupe.sae.random{arch = 'jumprelu', d_in = 6, d_sae = 12, "
                                    "transcoder = true, d_out = 5, hook = 'blocks.0.mlp.hook_in', hook_out = 'blocks.0.mlp.hook_out'})");
    cr_assert(strstr(s, "SAE jumprelu_transcoder: d_in 6, d_sae 12, d_out 5, blocks.0.mlp.hook_in -> blocks.0.mlp.hook_out"), "%s", s);
    cr_assert(strstr(s, "W_enc [6, 12]") && strstr(s, "threshold [12]"), "%s", s);
    s = t_lua_string(L, "local b = getmetatable(loupe.sae.random{d_in = 2, d_sae = 3, hook = '<b>'}).__display("
                        "loupe.sae.random{d_in = 2, d_sae = 3, hook = '<b>'}); return b['text/html']");
    cr_assert(strstr(s, "&lt;b&gt;") && !strstr(s, "<b>"), "escaped: %s", s);
}

Test(lua_dict, bad_folders_raise_errors_naming_the_file)
{
    const char *e = t_lua_fails(L, "loupe.sae.load(DIR .. '/none')");
    cr_assert(strstr(e, "none/cfg.json") && strstr(e, "cannot open"), "%s", e);
    e = t_lua_fails(L, "loupe.sae.random{d_in = 4, d_sae = 8}:save(DIR .. '/s'); loupe.sae.load(DIR .. '/s', {d_model = 6})");
    cr_assert(strstr(e, "d_in is 4 but the model's d_model is 6"), "%s", e);
    e = t_lua_fails(L, "loupe.transcoders.load(DIR)");
    cr_assert(strstr(e, "not a transcoder folder"), "%s", e);
    e = t_lua_fails(L, "loupe.sae.random{arch = 'gated', d_in = 4, d_sae = 8}");
    cr_assert(strstr(e, "unknown arch 'gated'"), "%s", e);
}
