/* The Lua tensor bindings (kernel/lua/lua_tensor.c) in a bare Lua state (the harness of
 * tests/unit/support). Each test runs Lua code that asserts; a failure reports Lua's
 * message. */
#include <criterion/criterion.h>
#include <string.h>

#include "lua_harness.h"
#include "lua_tensor.h"

static lua_State *L;

static void setup(void) { L = t_lua_new(T_PUBLISH_REFUSE, lp_lua_open_tensor); }
static void teardown(void) { t_lua_close(L); }

TestSuite(lua_tensor, .init = setup, .fini = teardown);

static void run(const char *code) { t_lua_run(L, code); }
/* Runs code that must fail; returns the message. */
static const char *run_err(const char *code) { return t_lua_fails(L, code); }

Test(lua_tensor, constructors_shape_and_indexing)
{
    run("local t = loupe.tensor{{1, 2, 3}, {4, 5, 6}}\n"
        "local s = t:shape(); assert(#s == 2 and s[1] == 2 and s[2] == 3)\n"
        "assert(t[2][3] == 6 and t[1][1] == 1 and t[-1][-1] == 6)\n"
        "assert(#t == 2 and t:numel() == 6 and t:dim() == 2)\n"
        "local z = loupe.zeros(3, 4); assert(z:sum() == 0 and z:shape()[2] == 4)\n"
        "local o = loupe.ones({2, 2}); assert(o:sum() == 4)\n"
        "local a = loupe.arange(5); assert(a[1] == 0 and a[5] == 4 and a:numel() == 5)\n"
        "local b = loupe.arange(2, 8, 2); assert(b:numel() == 3 and b[3] == 6)\n"
        "assert(loupe.tensor(2.5):item() == 2.5)\n"
        "local r = t[1]; r[2] = 20; assert(t[1][2] == 20, 'rows are views')\n");
}

Test(lua_tensor, seeded_random_is_reproducible)
{
    run("local a = loupe.randn(4, 5, {seed = 7}); local b = loupe.randn(4, 5, {seed = 7})\n"
        "assert((a - b):norm() == 0)\n"
        "loupe.manual_seed(3); local c = loupe.rand(100); loupe.manual_seed(3); local d = loupe.rand(100)\n"
        "assert((c - d):norm() == 0 and c:min() >= 0 and c:max() < 1)\n"
        "local e = loupe.randn(10000, {seed = 1}); assert(math.abs(e:mean()) < 0.05)\n");
}

Test(lua_tensor, slicing_transpose_reshape)
{
    run("local t = loupe.arange(12):reshape(3, 4)\n"
        "local s = t:slice(2, 2, 3); assert(s:shape()[2] == 2 and s[1][1] == 1 and s[3][2] == 10)\n"
        "local e = t:slice(1, 1, -1, 2); assert(e:shape()[1] == 2 and e[2][1] == 8)\n"
        "local tt = t:T(); assert(tt:shape()[1] == 4 and tt[4][3] == 11)\n"
        "local f = tt:reshape(-1); assert(f:numel() == 12 and f[2] == 4)\n"
        "local tab = t:totable(); assert(tab[3][4] == 11 and #tab == 3)\n");
}

Test(lua_tensor, arithmetic_broadcasting_and_matmul)
{
    run("local a = loupe.tensor{{1, 2}, {3, 4}}\n"
        "local b = a + 1; assert(b[2][2] == 5)\n"
        "local c = 10 - a; assert(c[1][1] == 9)\n"
        "local d = a * loupe.tensor{10, 100}; assert(d[2][1] == 30 and d[2][2] == 400)\n"
        "local e = a / 2; assert(e[1][2] == 1)\n"
        "local f = 1 / a; assert(f[2][2] == 0.25)\n"
        "assert((-a)[1][1] == -1)\n"
        "local m = a:matmul(a); assert(m[1][1] == 7 and m[2][2] == 22)\n"
        "local mt = a:T():matmul(a); assert(mt[1][1] == 10 and mt[1][2] == 14)\n"
        "local v = a:matmul(loupe.tensor{1, 1}); assert(v:dim() == 1 and v[2] == 7)\n");
    const char *e = run_err("return loupe.zeros(2, 3):matmul(loupe.zeros(4, 5))");
    cr_assert(strstr(e, "matmul: shapes [2, 3] and [4, 5] do not match"), "%s", e);
    e = run_err("return loupe.zeros(2, 3) + loupe.zeros(4)");
    cr_assert(strstr(e, "add: shapes [2, 3] and [4] do not broadcast"), "%s", e);
}

Test(lua_tensor, reductions_topk_argmax)
{
    run("local t = loupe.tensor{{1, 5, 3}, {7, 2, 9}}\n"
        "assert(t:sum() == 27 and t:max() == 9 and t:mean() == 4.5)\n"
        "local s = t:sum(1); assert(s:dim() == 1 and s[1] == 8 and s[3] == 12)\n"
        "local m = t:max(2); assert(m[1] == 5 and m[2] == 9)\n"
        "assert(t:sum(2, true):shape()[2] == 1)\n"
        "assert(math.abs(loupe.tensor{3, 4}:norm() - 5) < 1e-6)\n"
        "assert(t:argmax() == 6)\n"
        "local am = t:argmax(2); assert(am[1] == 2 and am[2] == 3)\n"
        "local v, i = t:topk(2); assert(v[1][1] == 5 and i[1][1] == 2 and i[2][2] == 1)\n"
        "local c = loupe.tensor{1, 0}:cos(loupe.tensor{1, 1}); assert(math.abs(c:item() - 0.70710678) < 1e-6)\n"
        "local sm = loupe.tensor{0, 0}:softmax(); assert(sm[1] == 0.5)\n");
}

Test(lua_tensor, text_form)
{
    /* shape and dtype first; numbers aligned on the decimal point, trailing zeros dropped */
    run("local s = tostring(loupe.tensor{{1, 2, 3}, {4, 5, 6}})\n"
        "assert(s == 'Tensor [2, 3] f32\\n[[1. 2. 3.]\\n [4. 5. 6.]]', s)\n"
        "s = tostring(loupe.tensor{{0.5, -10.25}, {0, 1e-7}})\n"
        "assert(s == 'Tensor [2, 2] f32\\n[[  0.5    -10.25  ]\\n [  0.       0.0000]]', s)\n"
        "assert(tostring(loupe.tensor(3)) == 'Tensor [] f32\\n3.')\n"
        "s = tostring(loupe.tensor{1e-6, 2e-5, 0})\n"
        "assert(s == 'Tensor [3] f32\\n[1.0000e-06 2.0000e-05 0.        ]', s)\n"
        "assert(not tostring(loupe.zeros(4, 4)):find('e+00', 1, true))\n");
    /* large: the first and last 3 of each long dim around ..., no line longer than 96 */
    run("local big = tostring(loupe.zeros(100, 100))\n"
        "assert(big:find('[0. 0. 0. ... 0. 0. 0.]', 1, true) and #big < 400, big)\n"
        "local _, rows = big:gsub('\\n', '')\n"
        "assert(rows == 7, big)\n"
        "local wide = tostring(loupe.randn(2, 40, {seed = 1}))\n"
        "for line in wide:gmatch('[^\\n]+') do assert(#line <= 96, line) end\n"
        "assert(wide:find(' ... ', 1, true), wide)\n"
        "local cols = {}\n"
        "for line in wide:gmatch('[^\\n]+') do if line:find('...', 1, true) then cols[#cols + 1] = line:find('...', 1, true) end end\n"
        "assert(#cols == 2 and cols[1] == cols[2], wide)\n");
}

Test(lua_tensor, errors_are_catchable)
{
    const char *e = run_err("return loupe.zeros(3)[4]");
    cr_assert(strstr(e, "index 4 out of range for dim 1 of size 3"), "%s", e);
    e = run_err("return loupe.zeros(3, 3):slice(3, 1, 2)");
    cr_assert(strstr(e, "dim 3 out of range"), "%s", e);
    e = run_err("return loupe.zeros(1048576, 1048576)");
    cr_assert(strstr(e, "cannot allocate 4.0 TiB for tensor of shape [1048576, 1048576]"), "%s", e);
    e = run_err("return loupe.tensor{{1, 2}, {3}}");
    cr_assert(strstr(e, "ragged"), "%s", e);
    e = run_err("return loupe.zeros(2):to('tpu')");
    cr_assert(strstr(e, "unknown device"), "%s", e);
    e = run_err("return loupe.zeros(2, 2):item()");
    cr_assert(strstr(e, "item: tensor of shape [2, 2] has 4 elements"), "%s", e);
    run("local ok, err = pcall(function() return loupe.zeros(2) + loupe.zeros(3) end)\n"
        "assert(not ok and err:find('do not broadcast'))\n");
}

Test(lua_tensor, views_outlive_their_base)
{
    run("local row\n"
        "do local t = loupe.arange(6):reshape(2, 3); row = t[2] end\n"
        "collectgarbage(); collectgarbage()\n"
        "assert(row[3] == 5)\n");
}
