/* m:save(folder) (kernel/lua/lua_model.c) in a bare Lua state with the tensor and model bindings
 * and the test stubs for the kernel's helpers: a saved model loads back with the same
 * logits, and a folder that cannot be written is a Lua error naming it. */
#include <criterion/criterion.h>
#include <lauxlib.h>
#include <lualib.h>

#include "fixtures.h"
#include "lua_model.h"
#include "lua_tensor.h"

static lua_State *L;
static char dir[64], out[64];

static void setup(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "loupe");
    lp_lua_open_tensor(L);
    lp_lua_open_model(L);
    lua_pop(L, 1);
    snprintf(out, sizeof out, "/tmp/lp_lua_save_XXXXXX");
    cr_assert_not_null(mkdtemp(out));
    lua_pushstring(L, out);
    lua_setglobal(L, "OUT");
    dir[0] = 0;
}

static void teardown(void)
{
    lua_close(L);
    if (dir[0])
        fx_remove(dir);
    fx_remove(out);
}

TestSuite(lua_save, .init = setup, .fini = teardown);

static void run(const char *code)
{
    if (luaL_dostring(L, code) != LUA_OK)
        cr_assert_fail("Lua error: %s\nin:\n%s", lua_tostring(L, -1), code);
}

static void use(const fx_opts *o)
{
    fx_make(dir, o);
    lua_pushstring(L, dir);
    lua_setglobal(L, "DIR");
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
    lua_getfield(L, LUA_REGISTRYINDEX, "loupe.test.docs");
    luaL_getmetatable(L, "loupe.Model");
    lua_getfield(L, -1, "__methods");
    lua_getfield(L, -1, "save");
    cr_assert(lua_isfunction(L, -1));
    lua_rawget(L, -4);
    const char *doc = lua_tostring(L, -1);
    cr_assert(doc && !strncmp(doc, "m:save(folder)", 14), "%s", doc ? doc : "(no docstring)");
    lua_pop(L, 4);
}
