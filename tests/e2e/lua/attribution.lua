-- loupe.attribute on the default model with seeded random transcoders (tests/e2e/test_attribution.py
-- runs this with `loupe run`, MODEL and WORK set; every check raises on failure). The test then
-- compares WORK/full.json with the C engine (attrib_tool) on WORK/tcs and WORK/tokens.txt.
local m = loupe.load(MODEL)
local tcs = loupe.transcoders.random{n_layers = 4, d_model = 192, d_transcoder = 96, activation = "jumprelu",
                                     seed = 21}
tcs:save(WORK .. "/tcs")
local prompt = "Ben lives in Oslo. Mara lives in"
local g = loupe.attribute{model = m, transcoders = tcs, prompt = prompt, max_n_logits = 5, batch = 16,
                          scan = "random-tcs", slug = "e2e"}
local full = g.full
assert(full and full.full == nil, "g.full is the unpruned graph")

-- BOS in front, once
local toks = g.tokens
assert(toks[1] == 0 and toks[2] ~= 0, "the BOS (id 0) is not prepended exactly once")
local g2 = loupe.attribute{model = m, transcoders = tcs, tokens = toks, max_n_logits = 5, batch = 16}
assert(#g2.tokens == #toks, "a prompt given with its BOS got another one")
local f = io.open(WORK .. "/tokens.txt", "w")
f:write(table.concat(toks, " "))
f:close()

-- nodes: counts, order, ids, and the adjacency behind them
local kinds = {}
for i, n in ipairs(full.nodes) do
    assert(n.index == i, "node index")
    kinds[n.kind] = (kinds[n.kind] or 0) + 1
    assert(full:node(n.id).index == i, "id lookup of " .. n.id)
end
local T = #toks
assert(kinds.error == 4 * T and kinds.embedding == T, "errors and embeddings: one per layer and position")
assert(kinds.feature > 50, "too few features: " .. tostring(kinds.feature))
assert(kinds.logit >= 1 and kinds.logit <= 5)
assert(#full.nodes == full.n_nodes)
local A = full.adjacency:totable()
assert(#A == full.n_nodes and #A[1] == full.n_nodes)
local nz = 0
for t = 1, #A do for s = 1, #A do if A[t][s] ~= 0 then nz = nz + 1 end end end
assert(nz == full.n_edges, "n_edges")

-- inputs and outputs: the row and column of the adjacency, strongest first, signed
local logit = full.logits[1]
assert(logit.is_target and logit.kind == "logit")
local ins = full:inputs(logit.id, 0)
local row = 0
for s = 1, #A do if A[logit.index][s] ~= 0 then row = row + 1 end end
assert(#ins == row and row > 0, "inputs of the logit")
for i, l in ipairs(ins) do
    assert(l.weight == A[logit.index][l.index], "input weight")
    if i > 1 then assert(math.abs(ins[i - 1].weight) >= math.abs(l.weight), "inputs not sorted") end
end
assert(#full:inputs(logit.index, 3) == 3)
local src = ins[1].index
for _, l in ipairs(full:outputs(src, 0)) do assert(l.weight == A[l.index][src], "output weight") end

-- paths: the product of normalised weights, embedding -> ... -> logit
local rowsum = {}
for t = 1, #A do
    local s = 0
    for j = 1, #A do s = s + math.abs(A[t][j]) end
    rowsum[t] = s
end
local paths = full:paths{k = 4}
assert(#paths == 4, "paths: " .. #paths)
for i, p in ipairs(paths) do
    local score = 1
    for j = 2, #p.nodes do
        local w = A[p.nodes[j]][p.nodes[j - 1]]
        assert(w ~= 0, "a path over a missing edge")
        score = score * math.abs(w) / rowsum[p.nodes[j]]
    end
    assert(math.abs(score - p.score) <= 1e-9 * score, "path score")
    assert(full.nodes[p.nodes[1]].kind == "embedding" and full.nodes[p.nodes[#p.nodes]].kind == "logit")
    if i > 1 then assert(paths[i - 1].score >= p.score) end
end

-- pruning: the default graph is full pruned at 0.8 / 0.98; g:prune prunes the full graph
local again = g:prune{node_threshold = 0.8, edge_threshold = 0.98}
assert(again.n_nodes == g.n_nodes and again.n_edges == g.n_edges, "g:prune at the defaults differs from g")
local loose = g:prune{node_threshold = 0.99, edge_threshold = 0.999}
local tight = g:prune{node_threshold = 0.5, edge_threshold = 0.9}
assert(tight.n_nodes <= g.n_nodes and g.n_nodes <= loose.n_nodes and loose.n_nodes < full.n_nodes,
       string.format("prune sizes %d %d %d %d", tight.n_nodes, g.n_nodes, loose.n_nodes, full.n_nodes))
for _, n in ipairs(tight.nodes) do
    local o = full:node(n.id)
    assert(o.kind == n.kind and o.layer == n.layer and o.pos == n.pos, "a pruned node differs")
end
assert(g.scores.replacement == full.scores.replacement)
assert(g.scores.replacement > 0 and g.scores.replacement <= 1 and g.scores.completeness > 0
       and g.scores.completeness <= 1)

-- files: saved, loaded, the same graph
full:save(WORK .. "/full.json")
loose:save(WORK .. "/pruned.json")
local h = loupe.graph.load(WORK .. "/pruned.json")
assert(h.n_nodes == loose.n_nodes and h.n_edges == loose.n_edges, "loaded graph size")
local B, C = h.adjacency:totable(), loose.adjacency:totable()
for i, n in ipairs(h.nodes) do
    assert(n.id == loose.nodes[i].id and n.kind == loose.nodes[i].kind, "loaded node " .. i)
    for j = 1, #B do assert(B[i][j] == C[i][j], "loaded edge") end
end
h:save(WORK .. "/pruned2.json")

-- targets: one token, and a logit difference
local gt = loupe.attribute{model = m, transcoders = tcs, prompt = prompt, target = " Paris", prune = false}
assert(#gt.logits == 1 and gt.logits[1].text == " Paris", "an explicit target")
local gd = loupe.attribute{model = m, transcoders = tcs, prompt = prompt, target = {" Oslo", " Paris"}, prune = false}
assert(#gd.logits == 1 and gd.logits[1].token == 1024, "a logit difference is a virtual token")

-- bad input: clear errors
local function fails(want, opts)
    local ok, err = pcall(loupe.attribute, opts)
    assert(not ok, "no error for " .. want)
    assert(tostring(err):find(want, 1, true), "error '" .. tostring(err) .. "' does not say '" .. want .. "'")
end
fails("the prompt is empty", {model = m, transcoders = tcs, prompt = ""})
fails("not one", {model = m, transcoders = tcs, prompt = prompt, target = " Oslo is"})
fails("transcoder set has 3 layers", {model = m, transcoders = loupe.transcoders.random{n_layers = 3, d_model = 192,
                                      d_transcoder = 8, seed = 1}, prompt = prompt})
fails("d_model", {model = m, transcoders = loupe.transcoders.random{n_layers = 4, d_model = 64, d_transcoder = 8,
                  seed = 1}, prompt = prompt})
fails("context", {model = m, transcoders = tcs, tokens = (function()
    local t = {}
    for i = 1, 2000 do t[i] = 5 end
    return t
end)()})
fails("transcoders is missing", {model = m, prompt = prompt})
local ok, err = pcall(loupe.graph.load, WORK .. "/tokens.txt")
assert(not ok and tostring(err):find("graph file", 1, true), tostring(err))
-- the display escapes what a file or a model says
local hostile = WORK .. "/hostile.json"
f = io.open(hostile, "w")
f:write([[{"metadata":{"prompt_tokens":["<b>","<img src=x onerror=alert(1)>"],"scan":"<script>x</script>"},
"nodes":[{"node_id":"E_5_1","feature":1,"layer":"E","ctx_idx":1,"feature_type":"embedding"},
{"node_id":"2_9_1","feature":9,"layer":"2","ctx_idx":1,"feature_type":"logit","token_prob":0.5,
"clerp":"Output \"<script>alert(1)</script>\" (p=0.500)"}],
"links":[{"source":"E_5_1","target":"2_9_1","weight":1}]}]])
f:close()
local hg = loupe.graph.load(hostile)
assert(hg.logits[1].text == "<script>alert(1)</script>", tostring(hg.logits[1].text))
local bundle = getmetatable(hg).__display(hg)
local html = bundle["text/html"]
-- the diagram's own <script> elements (its data, circuit.js) are there; nothing of the file's
assert(html:find("&lt;script&gt;", 1, true), html)
assert(not html:find("<script>alert", 1, true) and not html:find("<script>x", 1, true), html)
assert(not html:find("<img src=x", 1, true) and not html:find("<b>", 1, true), html)
assert(html:find("data:image/svg+xml;base64,", 1, true), "the graph displays as the circuit diagram")
assert(bundle["text/plain"]:find("attribution graph: 2 nodes", 1, true), bundle["text/plain"])
local fig = hg:diagram{max_edges = 5}
assert(getmetatable(fig).__display(fig)["text/html"]:find("data:image/svg+xml;base64,", 1, true))

-- max_feature_nodes: a third of the features, taken in influence order (the test compares the
-- graph with attrib_tool --max-feature-nodes)
local nf = 0
for _, n in ipairs(full.nodes) do
    if n.kind == "feature" then nf = nf + 1 end
end
local K = nf // 3
local gk = loupe.attribute{model = m, transcoders = tcs, tokens = toks, max_n_logits = 5, batch = 16,
                           max_feature_nodes = K, prune = false}
local nk = 0
for _, n in ipairs(gk.nodes) do
    if n.kind == "feature" then nk = nk + 1 end
end
assert(nk == K, string.format("max_feature_nodes %d kept %d features", K, nk))
assert(gk.n_nodes == full.n_nodes - (nf - K), "the graph keeps every error, embedding and logit node")
gk:save(WORK .. "/kept.json")
f = io.open(WORK .. "/kept.txt", "w")
f:write(tostring(K))
f:close()

print(string.format("graph: %d nodes, %d edges; full %d nodes; replacement %.4f completeness %.4f",
                    g.n_nodes, g.n_edges, full.n_nodes, g.scores.replacement, g.scores.completeness))
print("ok")
