-- g:qk on the default model with seeded random transcoders (tests/e2e/test_qk.py runs this with
-- `loupe run`, MODEL and WORK set; every check raises on failure): the decomposition adds up to
-- the head's pre-softmax score from the model's own forward pass (attn.hook_attn_scores), the
-- top pairs and marginals are sorted and name graph nodes, the result is saved as
-- qk_tracing_results and survives load -> save; bad input is a clear error.
local m = loupe.load(MODEL)
local tcs = loupe.transcoders.random{n_layers = 4, d_model = 192, d_transcoder = 96, activation = "jumprelu",
                                     seed = 21}
local g = loupe.attribute{model = m, transcoders = tcs, prompt = "Ben lives in Oslo. Mara lives in",
                          max_n_logits = 5, batch = 16}
local T = #g.tokens
local function close(a, b) return math.abs(a - b) <= 1e-4 * math.abs(b) + 1e-5 end
local checked = 0
for _, c in ipairs{{layer = 2, head = 1, query = T, key = 2}, {layer = 3, head = 0, query = T, key = T - 3},
                   {layer = 0, head = 3, query = 5, key = 5}} do
    local name = string.format("blocks.%d.attn.hook_attn_scores", c.layer)
    local r = m:run(g.tokens, {cache = {name}})
    local want = r[name]:totable()[1][c.head + 1][c.query][c.key]
    local res = g:qk{layer = c.layer, head = c.head, query = c.query, key = c.key, k = 8}
    assert(close(res.score, want), string.format("score %g, the model's %g", res.score, want))
    assert(close(res.total, want), string.format("the pairs add up to %g, the score is %g", res.total, want))
    assert(#res.pairs == 8 and #res.q_top >= 1 and #res.k_top >= 1, "top lists")
    for i = 2, #res.pairs do
        assert(math.abs(res.pairs[i].value) <= math.abs(res.pairs[i - 1].value), "pairs sorted by |value|")
    end
    for _, p in ipairs(res.pairs) do
        for _, id in ipairs{p.q, p.k} do
            local ok = id == "bias" or id == "pos_embed" or id == "bos_mlp" or pcall(g.full.node, g.full, id)
            assert(ok, "a pair names no node of the full graph: " .. id)
        end
    end
    checked = checked + 1
end
assert(checked == 3)
-- positions are g.nodes' pos (from 1): query = T is the last token
local last = g:qk{layer = 1, head = 2, query = T, key = 1}
assert(last.query == T and last.key == 1)

-- saved and loaded
g:save(WORK .. "/qk.json")
local h = loupe.graph.load(WORK .. "/qk.json")
h:save(WORK .. "/qk2.json")
local ok, err = pcall(h.qk, h, {layer = 1, head = 0, query = 3, key = 2})
assert(not ok and err:find("pass model"), tostring(err))
local again = h:qk{layer = 1, head = 2, query = T, key = 1, model = m, transcoders = tcs}
assert(close(again.score, last.score), "a loaded graph with the model given")

-- bad input
for _, bad in ipairs{{layer = 4, head = 0, query = 3, key = 2}, {layer = 0, head = 4, query = 3, key = 2},
                     {layer = 0, head = 0, query = 2, key = 3}, {layer = 0, head = 0, query = T + 1, key = 1},
                     {layer = 0, head = 0, query = 0, key = 0}, {layer = "x", head = 0, query = 2, key = 1}} do
    local ok2, e2 = pcall(g.qk, g, bad)
    assert(not ok2 and type(e2) == "string" and #e2 > 0, "bad input accepted")
end
print("ok")
