/* The Lua tokenizer bindings (kernel/lua/lua_tokenizer.c) in a bare Lua state (the harness of
 * tests/unit/support), on a small folder the test writes. */
#include <criterion/criterion.h>
#include <string.h>

#include "fixtures.h"
#include "lua_harness.h"
#include "lua_tokenizer.h"

static lua_State *L;
static char *dir;

static void setup(void)
{
    dir = tf_json_folder();
    L = t_lua_new(T_PUBLISH_REFUSE, lp_lua_open_tokenizer);
    t_lua_set_string(L, "DIR", dir);
}

static void teardown(void)
{
    t_lua_close(L);
    tf_rmdir(dir);
}

TestSuite(lua_tokenizer, .init = setup, .fini = teardown);

static void run(const char *code) { t_lua_run(L, code); }

Test(lua_tokenizer, encode_decode_tokens)
{
    run("local t = loupe.tokenizer(DIR)\n"
        "assert(t:vocab_size() == 261 and t:bos() == 260 and t:eos() == 259)\n"
        "local ids = t:encode(' the<|endoftext|>')\n"
        "assert(#ids == 2 and ids[1] == 258 and ids[2] == 259, table.concat(ids, ','))\n"
        "local s = t:encode(' the', {special = true})\n"
        "assert(#s == 2 and s[1] == 260 and s[2] == 258)\n"
        "assert(t:decode(ids) == ' the<|endoftext|>')\n"
        "assert(t:decode(258) == ' the')\n"
        "assert(t:decode({}) == '')\n"
        "local toks = t:tokens('the 12')\n"
        "assert(#toks == 4 and toks[1] == 't' and toks[2] == 'he' and toks[3] == ' ' and toks[4] == '12' or #toks == 5,\n"
        "       table.concat(toks, '|'))\n"
        "assert(t:token(258) == ' the' and t:token(99999) == nil)\n"
        "assert(t:lookup(' the') == 258 and t:lookup('zzz') == nil)\n"
        "assert(tostring(t):match('^Tokenizer%(vocab_size=261'))\n"
        "local bytes = '\\xE2\\x82'\n"
        "assert(t:decode(t:encode(bytes)) == bytes)\n");
}

Test(lua_tokenizer, errors_are_lua_errors)
{
    run("local ok, e = pcall(loupe.tokenizer, DIR .. '/nope')\n"
        "assert(not ok and e:match('no tokenizer here'), e)\n"
        "local t = loupe.tokenizer(DIR)\n"
        "ok, e = pcall(t.decode, t, {1, 5000})\n"
        "assert(not ok and e:match('5000'), e)\n"
        "ok, e = pcall(t.decode, t, {1, 'x'})\n"
        "assert(not ok and e:match('ids%[2%]'), e)\n"
        "ok, e = pcall(t.encode, t, {})\n"
        "assert(not ok)\n"
        "ok, e = pcall(t.encode, 5, 'x')\n"
        "assert(not ok and e:match('loupe.Tokenizer'), e)\n");
}
