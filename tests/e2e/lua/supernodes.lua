-- g:supernodes on the default model with seeded random transcoders (tests/e2e/test_supernodes.py
-- runs this with `loupe run`, MODEL and WORK set; every check raises on failure): the groups
-- follow the rules (features, one position, adjacent layers), every node is in exactly one
-- group, the coarsened graph's edges are the sums of the members' edges, and the saved file
-- carries the groups as qParams supernodes.
local m = loupe.load(MODEL)
local tcs = loupe.transcoders.random{n_layers = 4, d_model = 192, d_transcoder = 96, activation = "jumprelu",
                                     seed = 21}
local g = loupe.attribute{model = m, transcoders = tcs, prompt = "Ben lives in Oslo. Mara lives in",
                          max_n_logits = 5, batch = 16}.full -- the unpruned graph: enough features to group
local c, groups = g:supernodes{threshold = 0.6}
assert(#groups >= 1, "no group at threshold 0.6")
assert(c.n_nodes < g.n_nodes)
-- each original node's coarse node
local where, index = {}, {}
for _, n in ipairs(g.nodes) do index[n.id] = n.index end
for _, gr in ipairs(groups) do
    assert(#gr.ids >= 2 and type(gr.name) == "string" and #gr.name > 0)
    local first = g:node(gr.ids[1])
    for _, id in ipairs(gr.ids) do
        local n = g:node(id)
        assert(n.kind == "feature" and n.pos == first.pos and math.abs(n.layer - first.layer) <= 1, id) -- layer_gap 1
        assert(where[id] == nil, "a node in two groups: " .. id)
        where[id] = gr.index
    end
    assert(c:node(gr.index).label == gr.name)
end
-- the others: their own coarse node, by id
for _, n in ipairs(g.nodes) do
    if not where[n.id] then where[n.id] = c:node(n.id).index end
end
local A, C = g.adjacency:totable(), c.adjacency:totable()
local want = {}
for t = 1, #A do
    for s = 1, #A do
        local a, b = where[g.nodes[t].id], where[g.nodes[s].id]
        if A[t][s] ~= 0 and a ~= b then
            want[a] = want[a] or {}
            want[a][b] = (want[a][b] or 0) + A[t][s]
        end
    end
end
for a = 1, #C do
    for b = 1, #C do
        local w = (want[a] or {})[b] or 0
        assert(math.abs(C[a][b] - w) <= 1e-5 * (1 + math.abs(w)), string.format("edge %d <- %d: %g, want %g", a, b,
                                                                             C[a][b], w))
    end
end
c:save(WORK .. "/coarse.json")
local f = io.open(WORK .. "/groups.txt", "w")
for _, gr in ipairs(groups) do f:write(gr.name, "\t", table.concat(gr.ids, " "), "\n") end
f:close()
-- bad input
assert(not pcall(g.supernodes, g, {threshold = 2}))
assert(not pcall(g.supernodes, g, {layer_gap = -1}))
assert(not pcall(g.supernodes, g, {threshold = "x"}))
print("ok")
