/* m:save(folder) (kernel/lua/lua_model.c) in a bare Lua state with the tensor and model bindings
 * (the harness of tests/unit/support): a saved model loads back with the same logits, and a
 * folder that cannot be written is a Lua error naming it. */
#include <criterion/criterion.h>

#include "fixtures.h"
#include "lua_harness.h"
#include "lua_model.h"
#include "lua_tensor.h"

static lua_State *L;
static char dir[64], out[64];

static void setup(void)
{
    L = t_lua_new(T_PUBLISH_REFUSE, lp_lua_open_tensor, lp_lua_open_model);
    snprintf(out, sizeof out, "/tmp/lp_lua_save_XXXXXX");
    cr_assert_not_null(mkdtemp(out));
    t_lua_set_string(L, "OUT", out);
    dir[0] = 0;
}

static void teardown(void)
{
    t_lua_close(L);
    if (dir[0])
        fx_remove(dir);
    fx_remove(out);
}

TestSuite(lua_save, .init = setup, .fini = teardown);

static void run(const char *code) { t_lua_run(L, code); }

static void use(const fx_opts *o)
{
    fx_make(dir, o);
    t_lua_set_string(L, "DIR", dir);
    run("m = loupe.load(DIR); ids = {{3, 1, 4, 1, 5, 9}, {2, 7, 18, 28, 18, 28}}");
}

static void saves_and_loads_back(void)
{
    run("local f = OUT .. '/saved'\n"
        "assert(m:save(f) == f)\n"
        "local b = loupe.load(f)\n"
        "assert(b.n_layers == m.n_layers and b.d_vocab == m.d_vocab and b.arch == m.arch)\n"
        "local x, y = m:run(ids, {cache = false}).logits, b:run(ids, {cache = false}).logits\n"
        "assert((x - y):norm() == 0, 'logits differ after m:save and loupe.load')\n"
        "assert(b:save(f) == f, 'saving over an existing checkpoint')\n");
}

Test(lua_save, gpt2)
{
    use(&(fx_opts){0});
    saves_and_loads_back();
}

Test(lua_save, llama_untied)
{
    use(&(fx_opts){.llama = 1});
    saves_and_loads_back();
}

Test(lua_save, unwritable_folder_is_an_error)
{
    use(&(fx_opts){0});
    run("local f = assert(io.open(OUT .. '/file', 'w')); f:write('x'); f:close()\n"
        "local ok, err = pcall(m.save, m, OUT .. '/file/ckpt')\n"
        "assert(not ok and err:find('save: cannot save the model to', 1, true) and err:find(OUT .. '/file/ckpt', 1, true)\n"
        "       and err:find('not a folder', 1, true), err)\n"
        "ok, err = pcall(m.save, m)\n"
        "assert(not ok and err:find('string expected'), err)\n");
}

Test(lua_save, has_a_docstring)
{
    run("m = nil");
    run("assert(type(debug.getregistry()['loupe.Model'].__methods.save) == 'function')");
    const char *doc = t_lua_doc(L, "return debug.getregistry()['loupe.Model'].__methods.save");
    cr_assert(doc && !strncmp(doc, "m:save(folder)", 14), "%s", doc ? doc : "(no docstring)");
}
