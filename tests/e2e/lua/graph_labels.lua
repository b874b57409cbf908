-- Labels of a transcoder set's features: saved and loaded with the set, and on the feature
-- nodes of its attribution graphs (tests/e2e/test_graph_labels.py runs this with `loupe run`,
-- MODEL and WORK set, then checks WORK/g.json's clerps and WORK/diagram.html's data against
-- WORK/labels.txt; every check here raises on failure).
local m = loupe.load(MODEL)
local tok = loupe.tokenizer(MODEL)
local text = table.concat({
    "Mara lives in Oslo and Ben lives in Paris. ", "The cat sat on the mat. ",
    "Anna moved to Oslo last year. ", "Tom said that the dog was happy. "}, "")
local ds = loupe.data.load{text = string.rep(text, 20), tokenizer = tok}
local HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>\u{202E}evil'
local prompt = "Ben lives in Oslo. Mara lives in"
local function attribute(t, extra)
    local o = {model = m, transcoders = t, prompt = prompt, max_n_logits = 3, batch = 32, node_threshold = 0.99,
               edge_threshold = 0.999}
    for k, v in pairs(extra or {}) do o[k] = v end
    return loupe.attribute(o)
end
local function features(g)
    local out = {}
    for _, n in ipairs(g.nodes) do
        if n.kind == "feature" then out[#out + 1] = n end
    end
    return out
end

-- 1. without a harvest or labels: no labels on the feature nodes
local tcs = loupe.transcoders.random{n_layers = 4, d_model = 192, d_transcoder = 96, activation = "jumprelu",
                                     seed = 21}
local g0 = attribute(tcs)
local f0 = features(g0)
assert(#f0 >= 2, "too few feature nodes: " .. #f0)
for _, n in ipairs(f0) do
    assert(n.label == nil, "a feature node of an unlabelled set has label " .. tostring(n.label))
end

-- a user label alone labels its feature (and only it): the most influential one, which the
-- diagram draws
local first = f0[1]
for _, n in ipairs(f0) do
    if n.influence < first.influence then first = n end
end
tcs:label(first.layer, first.feature, "my feature")
local g1 = attribute(tcs)
for _, n in ipairs(features(g1)) do
    if n.layer == first.layer and n.feature == first.feature then
        assert(n.label == "my feature", "the user's label: " .. tostring(n.label))
    else
        assert(n.label == nil, "an unlabelled feature has label " .. tostring(n.label))
    end
end

-- 2. harvested: every feature node carries tcs:label(layer, feature); a hostile one stays text
tcs:harvest{model = m, data = ds, ctx = 32, quiet = true}
tcs:label(first.layer, first.feature, HOSTILE)
local g = attribute(tcs)
local fg = features(g)
assert(#fg == #f0, "the same graph")
local hex = {}
local function enc(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
for _, n in ipairs(fg) do
    assert(n.label and n.label ~= "", "feature node " .. n.id .. " has no label")
    assert(n.label == tcs:label(n.layer, n.feature), "node " .. n.id .. ": " .. n.label .. " vs " ..
           tcs:label(n.layer, n.feature))
    assert(g:node(n.id).label == n.label, "g:node")
    hex[#hex + 1] = n.id .. " " .. enc(n.label)
end
assert(g:node(first.id).label == HOSTILE, "the hostile label is on its node")
-- g.full: the labels of the kept features on every node of theirs
local nfull = 0
for _, n in ipairs(features(g.full)) do
    if n.label then
        assert(n.label == tcs:label(n.layer, n.feature), "g.full node " .. n.id)
        nfull = nfull + 1
    end
end
assert(nfull >= #fg, "g.full carries the labels: " .. nfull)
-- prune = false labels the whole graph
for _, n in ipairs(features(attribute(tcs, {prune = false}))) do
    assert(n.label == tcs:label(n.layer, n.feature), "unpruned graph node " .. n.id)
end
local f = io.open(WORK .. "/labels.txt", "w")
f:write(table.concat(hex, "\n"), "\n")
f:close()
g:save(WORK .. "/g.json")
local b = getmetatable(g).__display(g)
f = io.open(WORK .. "/diagram.html", "w")
f:write(b["text/html"])
f:close()
local html = b["text/html"]
assert(not html:find("<script>alert", 1, true) and not html:find("<img src=x", 1, true), "hostile label as text")

-- 3. tcs:save / loupe.transcoders.load keep each layer's harvest and labels
tcs:save(WORK .. "/tcs")
for l = 0, 3 do
    for _, name in ipairs({"loupe_harvest_layer_" .. l .. ".safetensors", "loupe_labels_layer_" .. l .. ".json"}) do
        local fh = io.open(WORK .. "/tcs/" .. name, "rb")
        assert(fh, "tcs:save wrote no " .. name)
        fh:close()
    end
end
local t2 = loupe.transcoders.load(WORK .. "/tcs")
for l = 0, 3 do
    assert(t2:harvest(l) and t2:harvest(l).n_tokens == tcs:harvest(l).n_tokens, "layer " .. l .. "'s harvest")
    for i = 0, 95 do
        assert(t2:label(l, i) == tcs:label(l, i), string.format("label %d/%d: %s vs %s", l, i, t2:label(l, i),
               tcs:label(l, i)))
    end
end
assert(t2:label(first.layer, first.feature) == HOSTILE, "the user's label loads back")
local g2 = attribute(t2)
local f2 = features(g2)
assert(#f2 == #fg, "the loaded set's graph")
for k, n in ipairs(f2) do
    assert(n.id == fg[k].id and n.label == fg[k].label, "the loaded set labels node " .. n.id)
end
-- saved again without a harvest or labels: the old files go
local bare = loupe.transcoders.random{n_layers = 4, d_model = 192, d_transcoder = 96, activation = "jumprelu",
                                      seed = 21}
bare:save(WORK .. "/tcs")
local t3 = loupe.transcoders.load(WORK .. "/tcs")
assert(t3:harvest(0) == nil, "a stale harvest stayed")
for _, n in ipairs(features(attribute(t3))) do
    assert(n.label == nil, "a stale label stayed")
end
tcs:save(WORK .. "/tcs") -- the harvested set again, for the test's circuit-tracer check

-- 4. a broken labels file: a clear error naming it
f = io.open(WORK .. "/tcs/loupe_labels_layer_1.json", "r")
local good = f:read("a")
f:close()
f = io.open(WORK .. "/tcs/loupe_labels_layer_1.json", "w")
f:write('{"labels": {"999": "x"}}')
f:close()
local ok, err = pcall(loupe.transcoders.load, WORK .. "/tcs")
assert(not ok and tostring(err):find("loupe_labels_layer_1.json", 1, true), tostring(err))
f = io.open(WORK .. "/tcs/loupe_labels_layer_1.json", "w")
f:write(good)
f:close()
print(string.format("%d feature nodes labelled; g.full %d", #fg, nfull))
print("ok")
