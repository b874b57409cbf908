/* loupe.activations (kernel/lua/lua_acts.c) in a bare Lua state with the model, tensor and
 * data bindings, on the tiny GPT-2 fixture model. */
#include <criterion/criterion.h>
#include <unistd.h>

#include "../model/fixtures.h"
#include "lua_acts.h"
#include "lua_data.h"
#include "lua_harness.h"
#include "lua_model.h"
#include "lua_tensor.h"

static lua_State *L;
static char dir[64];

static void setup(void)
{
    L = t_lua_new(T_PUBLISH_REFUSE, lp_lua_open_tensor, lp_lua_open_data, lp_lua_open_model, lp_lua_open_acts);
    fx_make(dir, &(fx_opts){0});
    t_lua_set_string(L, "DIR", dir);
    t_lua_run(L, "m = loupe.load(DIR)\n"
                 "ids = {}; for i = 1, 400 do ids[i] = (i * 7) % 37 end");
}

static void teardown(void)
{
    t_lua_close(L);
    fx_remove(dir);
}

TestSuite(lua_acts, .init = setup, .fini = teardown);

static void run_err(const char *code, const char *want)
{
    const char *msg = t_lua_fails(L, code);
    cr_assert(msg && strstr(msg, want), "error '%s' does not say '%s'", msg, want);
}

Test(lua_acts, one_hook_from_a_token_table)
{
    t_lua_run(L, "local s = loupe.activations{model = m, hook = 'blocks.1.hook_resid_post', data = ids, ctx = 8,\n"
                 "                            batch = 20, buffer = 4, seed = 2}\n"
                 "assert(s.d == 16 and s.batch == 20 and s.scale == 1 and s.tokens_seen == 0)\n"
                 "assert(#s.hooks == 1 and s.hooks[1] == 'blocks.1.hook_resid_post')\n"
                 "local x = s:next(); local sh = x:shape(); assert(sh[1] == 20 and sh[2] == 16)\n"
                 "assert(s.tokens_seen == 20 and x:norm() > 0)\n"
                 "assert(tostring(s):find('ActivationStream%(blocks.1.hook_resid_post %(d 16%); batch 20, 20 tokens'),\n"
                 "       tostring(s))\n"
                 "local t = loupe.activations{model = m, hook = 'blocks.1.hook_resid_post', data = ids, ctx = 8,\n"
                 "                            batch = 20, buffer = 4, seed = 2}\n"
                 "assert((t:next() - x):norm() == 0, 'the same seed gives the same rows')");
}

Test(lua_acts, several_hooks_from_a_dataset_normalised)
{
    t_lua_run(L, "local ds = loupe.data.repeated{vocab = 37, count = 40, first = 1, seg = 5}\n"
                 "local s = loupe.activations{model = m, hooks = {'blocks.0.mlp.hook_in', 'blocks.0.mlp.hook_out'},\n"
                 "                            data = ds, ctx = 10, batch = 16, buffer = 2, normalize = true}\n"
                 "ds = nil; collectgarbage()  -- the stream keeps its dataset\n"
                 "local a, b = s:next()\n"
                 "assert(a:shape()[1] == 16 and b:shape()[2] == 16)\n"
                 "assert(#s.scale == 2 and s.scale[1] > 0 and s.scale[1] ~= 1 and s.dims[2] == 16)\n"
                 "assert(s.hooks[2] == 'blocks.0.mlp.hook_out')");
}

Test(lua_acts, saved_to_shards_and_read_back)
{
    char tmp[96];
    snprintf(tmp, sizeof tmp, "%s/acts", dir);
    t_lua_set_string(L, "ACTS", tmp);
    t_lua_run(L, "local hooks = {'blocks.1.mlp.hook_in', 'blocks.1.mlp.hook_out'}\n"
                 "local s = loupe.activations{model = m, hooks = hooks, data = ids, ctx = 8, batch = 12, buffer = 2}\n"
                 "local t = loupe.activations{model = m, hooks = hooks, data = ids, ctx = 8, batch = 12, buffer = 2}\n"
                 "s:save(ACTS, 5, 2)\n"
                 "local r = loupe.activations{shards = ACTS, hooks = hooks}\n"
                 "assert(r.batch == 12 and r.d == 16 and r.hooks[2] == hooks[2])\n"
                 "for k = 1, 5 do\n"
                 "  local a, b = r:next(); local x, y = t:next()\n"
                 "  assert((a - x):norm() == 0 and (b - y):norm() == 0, 'batch ' .. k)\n"
                 "end\n"
                 "assert(r.tokens_seen == 60 and tostring(r):find('from shards'), tostring(r))\n"
                 "local ok, err = pcall(loupe.activations, {shards = ACTS, hook = 'hook_embed'})\n"
                 "assert(not ok and err:find(\"has no tensor 'hook_embed'\"), err)");
    for (int i = 0; i < 3; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/acts_%05d.safetensors", tmp, i);
        cr_assert_eq(unlink(p), 0, "%s", p);
    }
    cr_assert_eq(rmdir(tmp), 0);
}

Test(lua_acts, bad_input)
{
    run_err("loupe.activations{model = m, hook = 'blocks.0.mlp.hook_inn', data = ids}",
            "nearest: blocks.0.mlp.hook_in");
    run_err("loupe.activations{model = m, hook = 'blocks.0.hook_resid_pre', data = {1, 2, 3}, ctx = 8}",
            "fewer than one context");
    run_err("loupe.activations{model = m, data = ids}", "hook = \"name\" or hooks");
    run_err("loupe.activations{model = m, hook = 'hook_embed'}", "no data");
    run_err("loupe.activations{model = m, hook = 'hook_embed', data = {1, 99}}", "data[2] is not a token id");
    run_err("loupe.activations{model = m, hook = 'hook_embed', data = ids, ctx = 'x'}", "ctx must be an integer");
}
