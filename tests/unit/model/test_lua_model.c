/* The Lua model bindings (kernel/lua/lua_model.c) in a bare Lua state with the tensor bindings
 * (the harness of tests/unit/support), on the tiny fixture models. */
#include <criterion/criterion.h>

#include "fixtures.h"
#include "lua_harness.h"
#include "lua_model.h"
#include "lua_tensor.h"

static lua_State *L;
static char dir[64];

static void setup(void)
{
    L = t_lua_new(T_PUBLISH_REFUSE, lp_lua_open_tensor, lp_lua_open_model);
    dir[0] = 0;
}

static void teardown(void)
{
    t_lua_close(L);
    if (dir[0])
        fx_remove(dir);
}

TestSuite(lua_model, .init = setup, .fini = teardown);

static void run(const char *code) { t_lua_run(L, code); }

static void run_err(const char *code, const char *want)
{
    const char *msg = t_lua_fails(L, code);
    cr_assert(msg && strstr(msg, want), "error '%s' does not say '%s'", msg, want);
}

static void use(const fx_opts *o)
{
    fx_make(dir, o);
    t_lua_set_string(L, "DIR", dir);
    run("m = loupe.load(DIR); ids = {3, 1, 4, 1, 5, 9}; other = {2, 7, 18, 28, 18, 28}");
}

Test(lua_model, load_run_cache)
{
    use(&(fx_opts){0});
    run("assert(tostring(m):find('Model%(gpt2, 2 layers'), tostring(m))\n"
        "assert(m.n_layers == 2 and m.d_model == 16 and m.n_heads == 4 and m.arch == 'gpt2')\n"
        "local r = m:run(ids)\n"
        "local s = r.logits:shape(); assert(s[1] == 1 and s[2] == 6 and s[3] == 37)\n"
        "assert(r['blocks.0.hook_resid_post']:shape()[3] == 16)\n"
        "assert(#r:names() == #m:hooks() and #m:hooks() == 42)\n"
        "assert(r.tokens[3] == 4)\n"
        "assert(tostring(r):find('6 tokens'))\n"
        "assert(r['not a hook'] == nil)\n"
        "local b = m:run({ids, other}, {cache = false})\n"
        "assert(#b:names() == 0 and b.logits:shape()[1] == 2 and b.tokens[2][1] == 2)\n"
        "assert((b.logits[1] - r.logits[1]):norm() < 1e-4)\n"
        "local f = m:run(ids, {cache = {'blocks.1.hook_resid_post', 'hook_embed'}})\n"
        "assert(#f:names() == 2)\n"
        "local ok, err = pcall(function() return f['blocks.0.attn.hook_z'] end)\n"
        "assert(not ok and err:find('was not cached'), err)\n"
        "local g = m:run(ids, {cache = 'resid_post'}); assert(#g:names() == 2)\n"
        "local h = m:run(ids, {cache = function(n) return n:find('^blocks%.1%.') ~= nil end}); assert(#h:names() == 19)\n"
        "local t = m:run(loupe.tensor({ids, other})); assert(t.logits:shape()[1] == 2)\n");
}

Test(lua_model, hooks_patch_ablate_steer_callback)
{
    use(&(fx_opts){.llama = 1});
    run("local clean = m:run(ids)\n"
        "local p = m:run(other, {hooks = {['blocks.0.hook_resid_pre'] = loupe.patch(clean)}})\n"
        "assert((p.logits - clean.logits):norm() == 0, 'patching everything gives the clean logits')\n"
        "local a = m:run(ids, {hooks = {['blocks.1.attn.hook_z'] = loupe.ablate{head = 1}}})\n"
        "local z = a['blocks.1.attn.hook_z']  -- head 1 counts from 0: the second, z:slice(3, 2, 2)\n"
        "assert(z:slice(3, 2, 2):norm() == 0 and z:slice(3, 1, 1):norm() > 0)\n"
        "local c = m:run(ids, {hooks = {['blocks.0.hook_mlp_out'] = function(t, name)\n"
        "    assert(name == 'blocks.0.hook_mlp_out'); return t * 0 end}})\n"
        "local zero = m:run(ids, {hooks = {['blocks.0.hook_mlp_out'] = loupe.ablate()}})\n"
        "assert((c.logits - zero.logits):norm() == 0)\n"
        "local n = m:run(ids, {hooks = {['blocks.0.hook_mlp_out'] = function(t) end}})\n"
        "assert((n.logits - clean.logits):norm() == 0, 'nil keeps the activation')\n"
        "local s = m:run(ids, {hooks = {['blocks.1.hook_resid_post'] = loupe.steer(loupe.ones(16), 2, {pos = 6})}})\n"
        "local d = s['blocks.1.hook_resid_post'] - clean['blocks.1.hook_resid_post']\n"
        "assert(math.abs(d:sum() - 32) < 1e-3, d:sum())\n"
        "local two = m:run(ids, {hooks = {['blocks.1.hook_resid_post'] = {loupe.steer(loupe.ones(16)), loupe.steer(loupe.ones(16))}}})\n"
        "assert(math.abs((two['blocks.1.hook_resid_post'] - clean['blocks.1.hook_resid_post']):sum() - 6 * 16 * 2) < 1e-2)\n"
        "local mn = m:run(ids, {hooks = {['blocks.0.hook_attn_out'] = loupe.ablate{mean = true}}})\n"
        "local ao = mn['blocks.0.hook_attn_out']; assert((ao[1][1] - ao[1][6]):norm() < 1e-6)\n"
        "assert(tostring(loupe.ablate{head = 2, pos = 3}) == 'Hook(zero, head 2, pos 3)')\n");
}

Test(lua_model, top_k_table)
{
    use(&(fx_opts){0});
    run("local r = m:run(ids)\n"
        "local t = r:top(5)\n"
        "assert(#t == 5 and t[1].prob >= t[2].prob and t[1].logit >= t[5].logit)\n"
        "local lg = r.logits[1][6]; local _, i = lg:topk(1); assert(t[1].id == i[1] - 1 or t[1].id == i[1])\n"
        "assert(t[1].token:sub(1, 1) == '#', 'no tokenizer: ids shown')\n"
        "local b = getmetatable(t).__display(t)\n"
        "assert(b['text/html']:find('<table'), b['text/html'])\n"
        "assert(tostring(t):find('Next token'))\n"
        "local t2 = r:top(2, 1); assert(#t2 == 2)\n"
        "local ok, err = pcall(r.top, r, 3, 9); assert(not ok and err:find('outside 1..6'))\n");
}

Test(lua_model, errors)
{
    use(&(fx_opts){0});
    run_err("m:run('hello')", "this model has no tokenizer");
    run_err("m:run(ids, {hooks = {['blocks.7.hook_z'] = loupe.ablate()}})", "unknown hook point 'blocks.7.hook_z'");
    run_err("m:run(ids, {hooks = {['blocks.0.hook_mlp_out'] = 42}})", "expected a function or a hook");
    run_err("m:run(ids, {hooks = {['blocks.0.hook_mlp_out'] = function() error('boom') end}})", "boom");
    run_err("m:run(ids, {hooks = {['blocks.0.hook_mlp_out'] = function() return 3 end}})", "must return a Tensor or nil");
    run_err("m:run(ids, {hooks = {['blocks.0.hook_mlp_out'] = function() return loupe.zeros(2) end}})", "returned shape [2]");
    run_err("m:run(ids, {cache = {'nope'}})", "unknown hook point 'nope'");
    run_err("m:run(ids, {cache = function() error('bad filter') end})", "bad filter");
    run_err("m:run({1, 2, 99})", "outside the vocabulary");
    run_err("m:run({{1, 2}, {3}})", "row 2 of the token batch");
    run_err("m:run({1.5})", "not a token id");
    run_err("m:run({})", "no tokens");
    run_err("m:run(ids, {hooks = {['blocks.0.attn.hook_z'] = loupe.ablate{head = -1}}})", "integer >= 0");
    run_err("m:run(ids, {hooks = {['blocks.0.attn.hook_z'] = loupe.ablate{head = 4}}})", "head 4 is out of range");
    run_err("m:run(ids, {hooks = {['blocks.0.attn.hook_z'] = loupe.ablate{pos = 0}}})", "positive integer");
    run_err("local r = m:run(ids, {cache = false}); m:run(ids, {hooks = {['hook_embed'] = loupe.patch(r)}})",
            "the cache has no 'hook_embed'");
    run_err("loupe.load('/nonexistent')", "config.json");
}

/* Greedy generation picks, at each step, the argmax of a separate forward pass over the
 * sequence so far (checked through m:run and r:top); sampling is reproducible by seed. */
Test(lua_model, generate_greedy_and_sampled)
{
    fx_opts o = {0};
    use(&o);
    run("local _, got = m:generate(ids, {max_tokens = 4})\n"
        "assert(#got == #ids + 4, 'four new tokens, got ' .. #got)\n"
        "local seq = {table.unpack(ids)}\n"
        "for step = 1, 4 do\n"
        "  local top = m:run(seq):top(1)[1]\n"
        "  assert(got[#ids + step] == top.id, 'step ' .. step .. ': ' .. got[#ids + step] .. ' vs ' .. top.id)\n"
        "  seq[#seq + 1] = top.id\n"
        "end\n"
        "local _, a = m:generate(ids, {max_tokens = 6, temperature = 1.0, seed = 7})\n"
        "local _, b = m:generate(ids, {max_tokens = 6, temperature = 1.0, seed = 7})\n"
        "assert(table.concat(a, ',') == table.concat(b, ','), 'same seed, same sample')\n"
        "local _, k1 = m:generate(ids, {max_tokens = 3, temperature = 5.0, top_k = 1, seed = 3})\n"
        "local _, g = m:generate(ids, {max_tokens = 3})\n"
        "assert(table.concat(k1, ',') == table.concat(g, ','), 'top_k = 1 is greedy')\n");
    run_err("m:generate(ids, {temperature = -1})", "temperature");
    run_err("m:generate({{1, 2}, {3, 4}})", "one prompt");
}

/* r:attention shows the cached patterns: a grid of every head, or one head, labelled. */
Test(lua_model, attention_figures)
{
    fx_opts o = {0};
    use(&o);
    run("r = m:run(ids)\n"
        "local f = r:attention(0)\n"
        "local b = getmetatable(f).__display(f)\n"
        "assert(b['text/html']:find('data:image/svg+xml;base64,', 1, true), 'a picture')\n"
        "assert(tostring(f):find('heads') or tostring(f):find('head'), tostring(f))\n"
        "local one = r:attention(0, {head = 1})\n"
        "assert(getmetatable(one).__display(one)['text/html'])\n"
        /* heads count from 0, as blocks.L.attn.hook_z's head index: the grid's first panel is
         * head 0, its last head n_heads - 1, and {head = 0} is the first head alone */
        "local html = getmetatable(f).__display(f)['text/html']\n"
        "local H = m.n_heads\n"
        "assert(tostring(f):find(H .. ' heads', 1, true), tostring(f))\n"
        "local first = r:attention(0, {head = 0})\n"
        "assert(tostring(first):find('head 0', 1, true), tostring(first))\n"
        "assert(select(2, pcall(r.attention, r, 0, {head = H})):find('out of range 0..' .. (H - 1), 1, true))\n");
    run_err("r:attention(99)", "no layer 99");
    run_err("r:attention(0, {head = 99})", "out of range");
    run_err("r:attention(0, {head = -1})", "heads count from 0");
    run("r2 = m:run(ids, {cache = false})");
    run_err("r2:attention(0)", "did not cache");
}

/* The logit lens of the last layer is the model's own prediction (final norm + unembedding
 * of the last residual stream); every layer gives a distribution that sums to at most 1. */
Test(lua_model, logit_lens)
{
    fx_opts o = {0};
    use(&o);
    run("r = m:run(ids)\n"
        "local lens = r:logit_lens{k = 3}\n"
        "local last = lens.layers[#lens.layers]\n"
        "assert(last.top[1].id == r:top(1)[1].id, 'last layer = the model: ' .. last.top[1].id .. ' vs ' .. r:top(1)[1].id)\n"
        "assert(math.abs(last.top[1].prob - r:top(1)[1].prob) < 1e-4, 'same probability')\n"
        "for _, l in ipairs(lens.layers) do\n"
        "  local s = 0 for _, t in ipairs(l.top) do s = s + t.prob end\n"
        "  assert(s <= 1 + 1e-5 and #l.top == 3)\n"
        "end\n"
        "local mid = r:logit_lens{pos = 2}\n"
        "assert(mid.layers[1].next_prob ~= nil, 'p(next) where the next token is known')\n"
        "assert(getmetatable(mid).__display(mid)['text/html']:find('<table', 1, true))\n");
    run_err("r:logit_lens{pos = 99}", "pos must be");
    run("r2 = m:run(ids, {cache = false})");
    run_err("r2:logit_lens()", "did not cache");
}

/* head_scores, recomputed here from the patterns of an ordinary run on the same tokens. */
Test(lua_model, head_scores_match_the_patterns)
{
    fx_opts o = {0};
    use(&o);
    run("local S = 4\n"
        "local s = m:head_scores{seq_len = S, batch = 2, seed = 1}\n"
        "local T = #s.tokens[1]\n"
        "local off = T - 2 * S\n"
        "for i = 1, S do assert(s.tokens[1][off + i] == s.tokens[1][off + S + i], 'repeated') end\n"
        "local r = m:run(s.tokens)\n"
        "for l = 0, m.n_layers - 1 do\n"
        "  local p = r['blocks.' .. l .. '.attn.hook_pattern']\n"
        "  for h = 1, m.n_heads do\n"
        "    local sp, si = 0, 0\n"
        "    for b = 1, 2 do for i = 2, T do\n"
        "      sp = sp + p[b][h][i][i - 1]\n"
        "      if i - 1 >= off + S then si = si + p[b][h][i][i - S + 1] end\n"
        "    end end\n"
        "    assert(math.abs(sp / (2 * (T - 1)) - s.previous_token[l + 1][h]) < 1e-5, 'previous-token')\n"
        "    assert(math.abs(si / (2 * S) - s.induction[l + 1][h]) < 1e-5, 'induction')\n"
        "  end\n"
        "end\n"
        "assert(getmetatable(s).__display(s)['text/html']:find('data:image/svg+xml', 1, true))\n");
    run_err("m:head_scores{seq_len = 1}", "seq_len");
    run_err("m:head_scores{seq_len = 100000}", "context");
}
