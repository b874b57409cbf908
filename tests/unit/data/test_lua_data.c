/* The Lua data bindings (kernel/lua/lua_data.c) in a bare Lua state (the harness of
 * tests/unit/support; publishing is refused there: the progress bar must turn itself off,
 * not fail the training). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "data_fixtures.h"
#include "lua_data.h"
#include "lua_harness.h"
#include "lua_tensor.h"
#include "lua_tokenizer.h"

static lua_State *L;

static void setup(void)
{
    df_setup();
    L = t_lua_new(T_PUBLISH_REFUSE, lp_lua_open_tensor, lp_lua_open_tokenizer, lp_lua_open_data);
    t_lua_set_string(L, "DIR", df_dir);
    char *text = df_corpus(40000, 9);
    df_write("corpus.txt", text, strlen(text));
    free(text);
}

static void teardown(void)
{
    t_lua_close(L);
    df_teardown();
}

TestSuite(lua_data, .init = setup, .fini = teardown);

static void run(const char *code) { t_lua_run(L, code); }
static const char *run_err(const char *code) { return t_lua_fails(L, code); }

Test(lua_data, train_tokenizer_and_batch)
{
    run("local tok = loupe.tokenizer_train{files = {DIR .. '/corpus.txt'}, vocab_size = 300, save = DIR .. '/tok'}\n"
        "assert(tok:vocab_size() == 300, tok:vocab_size())\n"
        "assert(tok:decode(tok:encode('Mara lives in Paris.')) == 'Mara lives in Paris.')\n"
        "local f = io.open(DIR .. '/tok/tokenizer.json'); assert(f, 'saved'); f:close()\n"
        "local t2 = loupe.tokenizer_train{text = 'the cat sat on the mat ', vocab_size = 260, special = {}}\n"
        "assert(t2:vocab_size() <= 260)\n"
        "local d = loupe.data.load{files = DIR .. '/corpus.txt', tokenizer = tok, seed = 5}\n"
        "assert(d:size() > 1000 and tostring(d):find('Dataset'))\n"
        "local x, y = d:batch(4, 16)\n"
        "assert(x:shape()[1] == 4 and x:shape()[2] == 16 and y:shape()[2] == 16)\n"
        "for b = 1, 4 do for i = 1, 15 do assert(x[b][i + 1] == y[b][i]) end end\n"
        "local d2 = loupe.data.load{files = {DIR .. '/corpus.txt'}, tokenizer = tok, seed = 5}\n"
        "local x2 = d2:batch(4, 16); for b = 1, 4 do for i = 1, 16 do assert(x2[b][i] == x[b][i], 'same seed, same batch') end end\n"
        "local tr, va = d:split(0.25)\n"
        "assert(tr:size() + va:size() == d:size() and va:size() > 0)\n"
        "d:save(DIR .. '/d.tok'); d:save(DIR .. '/d.bin', 'llmc')\n"
        "local e = loupe.data.load{tokens = DIR .. '/d.bin'}\n"
        "assert(e:size() == d:size() and e:tokens(1, 5)[5] == d:tokens(1, 5)[5])\n"
        "local g = loupe.data.load{text = 'hello there, hello there', tokenizer = tok}\n"
        "assert(g:size() > 3); assert(g:seed(3) == g)\n");
}

Test(lua_data, errors_are_clear)
{
    const char *e;
    e = run_err("loupe.tokenizer_train{files = {DIR .. '/missing.txt'}}");
    cr_expect(strstr(e, "missing.txt"), "%s", e);
    e = run_err("loupe.tokenizer_train{text = 'abc', vocab_size = 100}");
    cr_expect(strstr(e, "at least 256"), "%s", e);
    e = run_err("loupe.tokenizer_train{vocab_size = 300}");
    cr_expect(strstr(e, "files"), "%s", e);
    e = run_err("loupe.data.load{text = 'abc'}");
    cr_expect(strstr(e, "tokenizer"), "%s", e);
    e = run_err("loupe.data.load{tokens = DIR .. '/corpus.txt'}");
    cr_expect(strstr(e, "not a token file"), "%s", e);
    e = run_err("local d = loupe.data.load{text = 'a b c', tokenizer = loupe.tokenizer_train{text = 'a b', vocab_size = 257}}\n"
                "d:batch(2, 100)");
    cr_expect(strstr(e, "too few"), "%s", e);
    e = run_err("local d = loupe.data.load{tokens = DIR .. '/nope.tok'} ");
    cr_expect(strstr(e, "nope.tok"), "%s", e);
}

Test(lua_data, repeated_segments)
{
    run("local d = loupe.data.repeated{vocab = 50, seg = 4, count = 30, first = 3, seed = 7}\n"
        "assert(d:size() == 240, d:size())\n"
        "for b = 0, 29 do\n"
        "  local t = d:tokens(8 * b + 1, 8)\n"
        "  for i = 1, 4 do\n"
        "    assert(t[i] == t[i + 4], 'block ' .. b .. ' is not repeated')\n"
        "    assert(t[i] >= 3 and t[i] < 50, 'id out of range: ' .. t[i])\n"
        "  end\n"
        "end\n"
        "local e = loupe.data.repeated{vocab = 50, seg = 4, count = 30, first = 3, seed = 7}\n"
        "assert(table.concat(e:tokens(1, 240), ',') == table.concat(d:tokens(1, 240), ','), 'not deterministic')\n"
        "local f = loupe.data.repeated{vocab = 50, seg = 4, count = 30, first = 3, seed = 8}\n"
        "assert(table.concat(f:tokens(1, 240), ',') ~= table.concat(d:tokens(1, 240), ','), 'seed ignored')\n"
        "local x, y = d:batch(2, 8)\n"
        "assert(x:shape()[1] == 2 and x:shape()[2] == 8)\n");
    cr_assert(strstr(run_err("loupe.data.repeated{vocab = 50, seg = 0, count = 3}"), "seg and count must be positive"));
    cr_assert(strstr(run_err("loupe.data.repeated{seg = 4, count = 3}"), "vocab = ... is required"));
    cr_assert(strstr(run_err("loupe.data.repeated{vocab = 10, seg = 4, count = 3, first = 9}"), "first < vocab - 1"));
}

Test(lua_data, repeated_segments_of_varying_length)
{
    run("local d = loupe.data.repeated{vocab = 30, seg = {3, 6}, count = 200, seed = 2}\n"
        "local n = d:size()\n"
        "assert(n >= 2 * 3 * 200 and n <= 2 * 6 * 200 and n % 2 == 0, n)\n"
        "local t = d:tokens(1, n)\n"
        "local i, lens = 1, {}\n"
        "while i <= n do\n"
        "  local ok = false\n"
        "  for len = 3, 6 do\n"
        "    local same = i + 2 * len - 1 <= n\n"
        "    for k = 0, len - 1 do same = same and t[i + k] == t[i + len + k] end\n"
        "    if same then lens[len] = true; i = i + 2 * len; ok = true; break end\n"
        "  end\n"
        "  assert(ok, 'no repeated block at ' .. i)\n"
        "end\n"
        "assert(lens[3] and lens[4] and lens[5] and lens[6], 'lengths do not vary')\n");
    cr_assert(strstr(run_err("loupe.data.repeated{vocab = 50, seg = {5, 4}, count = 3}"), "lo <= hi"));
}

/* markov = p: with a fixed length, every block is either a repeat or a chain in which each id
 * after the first two is the same function of the id two back, across all chain blocks; about
 * p of them are chains. */
Test(lua_data, repeated_with_markov_chains)
{
    run("local d = loupe.data.repeated{vocab = 40, seg = 5, count = 400, first = 2, markov = 0.3, seed = 4}\n"
        "assert(d:size() == 4000, d:size())\n"
        "local f, chains, repeats = {}, 0, 0\n"
        "for b = 0, 399 do\n"
        "  local t = d:tokens(10 * b + 1, 10)\n"
        "  local rep = true\n"
        "  for i = 1, 5 do rep = rep and t[i] == t[i + 5] end\n"
        "  if rep then repeats = repeats + 1 else\n"
        "    chains = chains + 1\n"
        "    for i = 3, 10 do\n"
        "      assert(t[i] >= 2 and t[i] < 40, 'id out of range: ' .. t[i])\n"
        "      assert(f[t[i - 2]] == nil or f[t[i - 2]] == t[i], 'the chain is not a function of the id two back')\n"
        "      f[t[i - 2]] = t[i]\n"
        "    end\n"
        "  end\n"
        "end\n"
        "assert(chains > 80 and chains < 160, 'chains: ' .. chains)\n"
        "local plain = loupe.data.repeated{vocab = 40, seg = 5, count = 50, first = 2, seed = 4}\n"
        "for b = 0, 49 do local t = plain:tokens(10 * b + 1, 10)\n"
        "  for i = 1, 5 do assert(t[i] == t[i + 5], 'markov = 0 must give repeats only') end end\n");
    cr_assert(strstr(run_err("loupe.data.repeated{vocab = 50, seg = 4, count = 3, markov = 1.5}"), "markov must be a fraction"));
}
