/* The toy-model bindings (kernel/lua/lua_toy.c) in a bare Lua state (the harness of
 * tests/unit/support, which records what is published in the Lua table `published`). Also
 * runs the code cells of examples/04-superposition.ipynb in order, as the kernel would, and
 * checks what they show. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <lauxlib.h>
#include <string.h>

#include "core/interrupt.h"
#include "lua_harness.h"
#include "lua_toy.h"

static lua_State *L;

/* show(v): the rich form of v (its __display bundle) or nil; cells' values go through it. */
static const char *helpers =
    "function show(v)\n"
    "  local mt = getmetatable(v)\n"
    "  if type(mt) ~= 'table' or not mt.__display then return nil end\n"
    "  local b = mt.__display(v)\n"
    "  assert(type(b) == 'table' and type(b['text/plain']) == 'string', 'a bundle with text/plain')\n"
    "  for k, s in pairs(b) do assert(type(k) == 'string' and type(s) == 'string') end\n"
    "  return b\n"
    "end\n"
    "printed = {}\n"
    "function print(...) local t = {} for i = 1, select('#', ...) do t[i] = tostring(select(i, ...)) end\n"
    "  printed[#printed + 1] = table.concat(t, '\\t') end\n";

static void setup(void)
{
    L = t_lua_new(T_PUBLISH_RECORD, lp_lua_open_toy);
    t_lua_run(L, helpers);
}

static void teardown(void) { t_lua_close(L); }

TestSuite(lua_toy, .init = setup, .fini = teardown, .timeout = 300);

static void run(const char *code) { t_lua_run(L, code); }
static const char *run_err(const char *code) { return t_lua_fails(L, code); }

Test(lua_toy, trains_with_progress_and_returns_a_model)
{
    run("r = loupe.toy.superposition{n = 5, m = 2, sparsity = {0, 0.99}, steps = 3000, seed = 0}\n"
        "assert(r.n == 5 and r.m == 2 and r.instances == 2 and r.step == 3000)\n"
        "assert(#r.sparsity == 2 and math.abs(r.sparsity[2] - 0.99) < 1e-6)\n"
        "assert(math.abs(r.importance[3] - 0.81) < 1e-6, 'importance 0.9^(i-1)')\n"
        "assert(loupe.toy.last == r)\n"
        "local d = r:norms(1)\n"
        "assert(#d == 5 and d[1] > 0.9 and d[2] > 0.9 and d[3] < 0.1 and d[4] < 0.1 and d[5] < 0.1)\n"
        "for _, v in ipairs(r:norms(2)) do assert(v > 0.8, 'pentagon norm ' .. v) end\n"
        "for _, v in ipairs(r:dimensionality(2)) do assert(math.abs(v - 0.4) < 0.05) end\n"
        "assert(math.abs(r:dims_per_feature(1) - 1) < 0.05)\n"
        "local all = r:dims_per_feature(); assert(#all == 2 and all[2] < 0.35)\n"
        "local w = r:weights(2); assert(#w == 2 and #w[1] == 5)\n"
        "assert(#r:bias(2) == 5 and #r:superposition(2) == 5 and r:loss(2) > 0)\n"
        /* the training display: one id, created then updated, throttled, final at 100% */
        "assert(#published >= 2 and #published < 40, #published .. ' publishes')\n"
        "assert(not published[1].update and published[2].update)\n"
        "for _, p in ipairs(published) do assert(p.id == published[1].id) end\n"
        "local last = published[#published]\n"
        "assert(last.plain:find('100%', 1, true) and last.plain:find('superposition'), last.plain)\n"
        "assert(last.html:find('data:image/svg+xml;base64', 1, true))\n"
        "assert(tostring(r):find('ToyModel'))\n");
    /* resume, and training without a display */
    run("published = {}\n"
        "r:train(20, false); assert(r.step == 3020 and #published == 0)\n"
        "r:train(10); assert(r.step == 3030 and #published >= 1 and published[1].id ~= nil)\n");
}

Test(lua_toy, displays_and_figures)
{
    run("r = loupe.toy.superposition{n = 5, m = 2, sparsity = {0, 0.9}, steps = 200, progress = false}\n"
        "local b = show(r)\n"
        "assert(b['text/plain']:find('5 features in 2 dimensions'), b['text/plain'])\n"
        "assert(b['text/html']:find('W^T W per instance', 1, true))\n"
        "assert(b['text/html']:find('superposition'))\n"
        "assert(not b['text/html']:find('<svg'), 'pictures go in <img>, not inline svg')\n"
        "local j = b['application/vnd.loupe.toy+json']; assert(j and j:find('\"norms\"'))\n"
        "local g = show(r:geometry(2)); assert(g['text/plain']:find('x5: norm'))\n"
        "assert(g['text/html']:find('data:image/svg+xml;base64', 1, true))\n"
        "assert(show(r:wtw(1))['text/plain'] ~= '')\n"
        "assert(show(r:dims_plot())['text/html']:find('dimensions per feature'))\n"
        "assert(tostring(r:wtw(2)) ~= '')\n");
    const char *e = run_err("r:norms(3)");
    cr_assert(strstr(e, "instance 3 out of range"), "%s", e);
    run("r3 = loupe.toy.superposition{n = 6, m = 3, sparsity = 0.5, steps = 5, progress = false}\n"
        "assert(r3.instances == 1 and #r3:weights(1) == 3)\n");
    e = run_err("r3:geometry(1)");
    cr_assert(strstr(e, "m = 2"), "%s", e);
}

Test(lua_toy, bad_input_and_interrupts)
{
    const char *e = run_err("loupe.toy.superposition{n = 5, m = 2, sparsity = {0, 2}}");
    cr_assert(strstr(e, "sparsity 2"), "%s", e);
    e = run_err("loupe.toy.superposition{n = 3, importance = {1, 2}}");
    cr_assert(strstr(e, "importance has 2 entries, expected 3"), "%s", e);
    e = run_err("loupe.toy.superposition{n = 3, lr = 'fast'}");
    cr_assert(strstr(e, "lr must be a number"), "%s", e);
    e = run_err("loupe.toy.superposition{n = 0}");
    cr_assert(strstr(e, "n must be"), "%s", e);
    e = run_err("loupe.toy.superposition{n = 5, lr = 1e30, steps = 100, progress = false}");
    cr_assert(strstr(e, "at step"), "%s", e);
    /* an interrupt stops training; the model, as of the last finished step, stays reachable */
    run("r = loupe.toy.superposition{n = 5, m = 2, steps = 10, progress = false}");
    lp_interrupt_request();
    e = run_err("loupe.toy.superposition{n = 5, m = 2, steps = 100}");
    lp_interrupt_clear();
    cr_assert(strstr(e, "interrupted"), "%s", e);
    run("assert(loupe.toy.last ~= r and loupe.toy.last.step == 0)\n"
        "loupe.toy.last:train(5, false); assert(loupe.toy.last.step == 5)\n");
}

/* The notebook's code cells, in order, as the kernel runs them: the value of a cell's last
 * expression is displayed (here: its bundle is built and checked). */
Test(lua_toy, the_example_notebook_runs)
{
    json_error_t err;
    json_t *nb = json_load_file(LOUPE_EXAMPLES "/04-superposition.ipynb", 0, &err);
    cr_assert_not_null(nb, "cannot read the notebook: %s", err.text);
    json_t *cells = json_object_get(nb, "cells"), *cell;
    size_t i, ncode = 0;
    json_array_foreach(cells, i, cell) {
        if (strcmp(json_string_value(json_object_get(cell, "cell_type")), "code") != 0)
            continue;
        cr_assert_eq(json_array_size(json_object_get(cell, "outputs")), 0, "saved without outputs");
        json_t *src = json_object_get(cell, "source");
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        if (json_is_string(src))
            luaL_addstring(&b, json_string_value(src));
        for (size_t k = 0; json_is_array(src) && k < json_array_size(src); k++)
            luaL_addstring(&b, json_string_value(json_array_get(src, k)));
        luaL_pushresult(&b);
        const char *code = lua_tostring(L, -1);
        lua_pushfstring(L, "return %s", code);
        if (luaL_loadstring(L, lua_tostring(L, -1)) != LUA_OK) {
            lua_pop(L, 2);
            cr_assert_eq(luaL_loadstring(L, code), LUA_OK, "cell %zu: %s", i, lua_tostring(L, -1));
        } else {
            lua_remove(L, -2);
        }
        cr_assert_eq(lua_pcall(L, 0, 1, 0), LUA_OK, "cell %zu: %s\n%s", i, lua_tostring(L, -1), code);
        lua_getglobal(L, "show");
        lua_insert(L, -2);
        cr_assert_eq(lua_pcall(L, 1, 0, 0), LUA_OK, "cell %zu display: %s", i, lua_tostring(L, -1));
        lua_pop(L, 1);
        ncode++;
    }
    json_decref(nb);
    cr_assert_gt(ncode, 5);
    /* what the notebook shows: the pentagon, and the dense instance's two features */
    run("local norms, gaps\n"
        "for _, line in ipairs(printed) do\n"
        "  norms = norms or line:match('^pentagon norms: (.*)')\n"
        "  gaps = gaps or line:match('^pentagon neighbour angles: (.*)')\n"
        "end\n"
        "assert(norms and gaps, 'the notebook prints the pentagon')\n"
        "local k = 0\n"
        "for v in norms:gmatch('%S+') do k = k + 1; assert(tonumber(v) > 0.8, 'norm ' .. v) end\n"
        "assert(k == 5)\n"
        "k = 0\n"
        "for v in gaps:gmatch('%S+') do k = k + 1; assert(math.abs(tonumber(v) - 72) < 8, 'angle ' .. v) end\n"
        "assert(k == 5)\n"
        "local kept = 0\n"
        "for _, v in ipairs(r:norms(1)) do if v > 0.5 then kept = kept + 1 end end\n"
        "assert(kept == 2, 'dense: ' .. kept .. ' features')\n"
        "local d = big:dims_per_feature()\n"
        "assert(math.abs(d[1] - 1) < 0.05 and d[#d] < 0.3, 'dims per feature fall with sparsity')\n");
}
