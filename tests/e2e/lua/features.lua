-- Feature harvest, dashboards and labels on the default model (tests/e2e/test_features.py
-- runs this with `loupe run`, PLANTED = the folder of a hand-built SAE whose feature 0 reads
-- the embedding direction of token TOKEN at hook_embed and writes DEC; every check raises).
local m = loupe.load(MODEL)
local tok = loupe.tokenizer(MODEL)
local text = table.concat({
    "Mara lives in Oslo and Ben lives in Paris. ", "The cat sat on the mat. ",
    "Anna moved to Oslo last year. ", "Tom said that the dog was happy. "}, "")
local ds = loupe.data.load{text = string.rep(text, 30), tokenizer = tok}

local function html_of(fig)
    local b = getmetatable(fig).__display(fig)
    assert(type(b["text/plain"]) == "string" and #b["text/plain"] > 0, "no text/plain")
    return b["text/html"], b["text/plain"]
end

-- 1. the planted feature fires on its token only; its dashboard's top examples all contain it
local sae = loupe.sae.load(PLANTED)
assert(sae:harvest() == nil, "a fresh SAE has no harvest")
local h = sae:harvest{model = m, data = ds, ctx = 32, quiet = true}
assert(h.n_tokens > 500, "harvested " .. h.n_tokens)
local dens = h.density
assert(dens[1] > 0 and dens[2] == 0, "feature 0 fires, feature 1 never: " .. dens[1] .. " " .. dens[2])
local html, plain = html_of(sae:feature(0))
local top = plain:match("top tokens:([^\n]*)")
assert(top, plain)
local n = 0
for t in top:gmatch("(%S+) %(") do
    assert(t == TOKEN_SHOWN, "a top example fires on " .. t .. ", not " .. TOKEN_SHOWN)
    n = n + 1
end
assert(n == 5, "five top tokens listed: " .. top)
local promoted = plain:match("promotes: (%S+) %(")
assert(promoted == TOP_LOGIT_SHOWN, "top logit " .. tostring(promoted) .. ", W_U says " .. TOP_LOGIT_SHOWN)
assert(sae:label(0) == '"' .. TOKEN_TEXT .. '" -> "' .. TOP_LOGIT_TEXT .. '"', "label " .. sae:label(0))
assert(sae:label(1):match("^dead"), "label of the dead feature: " .. sae:label(1))
assert(#html < 300000, "dashboard of " .. #html .. " bytes")
print("planted ok", #html)

-- 2. save / load round trip keeps the harvest and the labels
sae:label(1, '<script>alert("x")</script><img src=x onerror=alert(1)>\u{202E}evil')
sae:save(OUT .. "/planted")
local s2 = loupe.sae.load(OUT .. "/planted")
assert(s2:harvest() and s2:harvest().n_tokens == h.n_tokens, "the harvest loads back")
assert(s2:label(1) == sae:label(1), "the label loads back")
assert(s2:label(0) == sae:label(0) or s2:label(0):match('^"' .. TOKEN_TEXT), s2:label(0))
local h2 = html_of(s2:feature(1, {model = m}))
assert(not h2:find("<script>alert", 1, true) and not h2:find("<img src=x", 1, true), "hostile label as text")
assert(h2:find("&lt;script&gt;alert", 1, true), "the label is shown escaped")
local h3 = html_of(s2:feature(0, {model = m}))
assert(h3 == html, "the loaded dashboard is the same")
s2:label(1, false)
assert(s2:label(1):match("^dead"), "false forgets the label")

-- 3. bad input: clear errors
local function fails(f, pat)
    local ok, err = pcall(f)
    assert(not ok, "expected an error matching " .. pat)
    assert(tostring(err):find(pat, 1, true), "error '" .. tostring(err) .. "' lacks '" .. pat .. "'")
end
fails(function() return sae:feature(2) end, "out of range")
fails(function() return sae:feature(-1) end, "out of range")
fails(function() return sae:feature("x") end, "integer")
fails(function() return sae:label(7) end, "out of range")
fails(function() return sae:label(0, string.rep("a", 300)) end, "at most")
fails(function() return sae:label(0, "a\0b") end, "NUL")
fails(function() return sae:label(0, "caf\xe9") end, "UTF-8")
fails(function() return sae:harvest{model = m, data = {}} end, "fewer than one window")
fails(function() return sae:harvest{model = m, data = {1, 2, 3}} end, "fewer than one window")
fails(function() return sae:harvest{data = ds} end, "no model")
fails(function() return sae:harvest{model = m} end, "no data")

-- 4. without a harvest: says how to make one, still shows logits and alignment
local r = loupe.sae.random{arch = "topk", k = 8, d_in = 192, d_sae = 3072, hook = "blocks.1.hook_resid_post", seed = 3}
local hn, pn = html_of(r:feature(7, {model = m}))
assert(pn:find("sae:harvest{", 1, true) and hn:find("POSITIVE LOGITS", 1, true) and hn:find("ALIGNMENT", 1, true),
       "no-harvest dashboard")
assert(hn:find("MLP NEURONS OF LAYER 1", 1, true), "neuron alignment against the MLP of the hook's layer")
local t0 = os.clock()
r:harvest{model = m, data = ds, ctx = 64, quiet = true}
print(string.format("harvest of %d features: %.2f s cpu", r.d_sae, os.clock() - t0))
local big = 0
for _, i in ipairs({0, 1, 2, 100, 3071}) do
    local hh = html_of(r:feature(i))
    big = math.max(big, #hh)
end
assert(big < 300000, "largest dashboard " .. big)

-- 5. a transcoder is harvested on its hook_in; its dashboard shows its direct effect
local tc = loupe.sae.random{arch = "standard", transcoder = true, d_in = 192, d_sae = 64, d_out = 192,
                            hook = "blocks.1.mlp.hook_in", hook_out = "blocks.1.mlp.hook_out", seed = 4}
local th = tc:harvest{model = m, data = ds, ctx = 32, quiet = true}
assert(tostring(th):find("blocks.1.mlp.hook_in", 1, true), tostring(th))
local ht = html_of(tc:feature(0))
assert(ht:find("POSITIVE LOGITS", 1, true) and ht:find("transcoder on blocks.1.mlp.hook_in", 1, true), "transcoder dashboard")

-- 6. the browser: sae:features{...} (rows as a table, the static table, search, sorting)
local fb = sae:features{}
assert(fb.n == 2 and fb.rows[1].index == 0 and fb.rows[2].index == 1, "by density: the firing feature first")
assert(fb.rows[1].top[1] == TOKEN_TEXT, "the top token of feature 0: " .. tostring(fb.rows[1].top[1]))
assert(fb.rows[1].label == sae:label(0), "the browser shows the label")
assert(math.abs(fb.rows[1].density - h.density[1]) < 1e-12 and fb.rows[1].max == h.max[1], "density and max")
local bh, bp = html_of(fb)
assert(bh:find('<tr data-i="0"', 1, true) and bh:find('<tr data-i="1"', 1, true), "the static table has the rows")
assert(not bh:find("<script>alert", 1, true) and not bh:find("<img src=x", 1, true), "hostile label as text")
assert(bh:find("&lt;script&gt;alert", 1, true), "the hostile label is shown escaped")
assert(bh:find('data-dash="1"', 1, true), "dashboards embedded")
assert(bp:find(TOKEN_SHOWN, 1, true), "text/plain lists the top token")
local only = sae:features{search = TOKEN_TEXT:gsub("^ ", ""):upper()}
assert(only.n == 1 and only.rows[1].index == 0, "search (case-insensitive) finds feature 0 only: " .. only.n)
local none = sae:features{search = "zzzz-no-such-feature"}
assert(none.n == 0, "no match")
local _, np = html_of(none)
assert(np:find("no feature matches", 1, true), "an empty search says so")
local byi = r:features{sort = "index", n = 20, dashboards = 0}
for k, row in ipairs(byi.rows) do assert(row.index == k - 1, "by index") end
local hd, hm = r:harvest().density, r:harvest().max
local bym = r:features{sort = "max", n = 30, dashboards = 3}
local best = -1
for i = 1, #hm do best = math.max(best, hm[i]) end
assert(bym.rows[1].max == best, "the first row has the largest max")
for k = 2, #bym.rows do
    assert(bym.rows[k].max <= bym.rows[k - 1].max, "sorted by max")
    assert(hm[bym.rows[k].index + 1] == bym.rows[k].max, "max of the row's feature")
end
local bd = r:features{sort = "density", n = 40}
for k = 2, #bd.rows do assert(bd.rows[k].density <= bd.rows[k - 1].density, "sorted by density") end
assert(bd.rows[1].density == hd[bd.rows[1].index + 1], "density of the row's feature")
local bdh = html_of(bd)
local _, ndash = bdh:gsub('data%-dash="1"', "")
assert(ndash == 5, "the first 5 rows' dashboards are embedded by default, got " .. ndash)
local many = html_of(r:features{sort = "density", n = 40, dashboards = 30})
local _, nmany = many:gsub('data%-dash="1"', "")
assert(nmany > 5 and nmany < 30, "dashboards stop at the size budget: " .. nmany)
assert(#many < 700 * 1024, "browser of " .. #many .. " bytes")
assert(#bdh < 700 * 1024, "browser of " .. #bdh .. " bytes")
print("browser ok", #bdh)
fails(function() return sae:features{sort = "bogus"} end, "sort must be")
fails(function() return sae:features{n = 0} end, "n must be")
fails(function() return sae:features{n = 5000} end, "n must be")
fails(function() return sae:features{search = 5} end, "search must be a string")
fails(function() return sae:features{dashboards = 99} end, "dashboards must be")
fails(function() return loupe.sae.random{arch = "standard", d_in = 192, d_sae = 8, hook = "blocks.0.hook_resid_post",
                                          seed = 1}:features{} end, "no harvest")

-- 7. the prompt view: r:features(sae), from the cache and from a spliced run
local prompt = "<script>alert(1)</script> Mara lives in Oslo"
local run = m:run(prompt)
local pv = run:features(sae, {model = m})
local ids = run.tokens
local where
for t, row in ipairs(pv.tokens) do
    local fires = row[1] ~= nil and row[1].feature == 0
    if fires then where = t end
    assert(fires == (tok:decode({ids[t]}) == TOKEN_TEXT), "feature 0 fires on " .. TOKEN_TEXT .. " only (position " .. t .. ")")
end
assert(where, "feature 0 fires in the prompt")
assert(pv.strongest[1].feature == 0 and pv.strongest[1].pos == where and #pv.strongest == 1, "strongest: feature 0 at " .. where)
assert(pv.tokens[where][1].label == sae:label(0, {model = m}), "the label of the token's feature")
local spliced = m:run(prompt, {saes = {sae}}):features(sae, {model = m})
assert(spliced.tokens[where][1].act == pv.tokens[where][1].act, "spliced and encoded from the cache agree")
local ph, pp = html_of(pv)
assert(not ph:find("<script>alert", 1, true) and ph:find("&lt;</span>", 1, true), "hostile tokens as text")
assert(ph:find("data-t=\"" .. (where - 1) .. "\" title=\"", 1, true), "the token's tooltip")
assert(pp:find("#0 (", 1, true) and ph:find("STRONGEST FEATURES OF THE PROMPT", 1, true), "the tables")
fails(function() return m:run(prompt, {cache = false}):features(sae) end, "nor its input")
fails(function() return run:features(sae, {k = 0}) end, "k must be")
fails(function() return run:features(sae, {batch = 2}) end, "batch must be")
fails(function() return run:features(loupe.sae.random{arch = "standard", d_in = 100, d_sae = 8, hook = "hook_embed", seed = 2}) end, "dimensions per token")
print("prompt ok")

-- 8. transcoder sets: tcs:harvest (each layer on its hook_in), tcs:feature, tcs:label
local tcs = loupe.transcoders.random{n_layers = 2, d_model = 192, d_transcoder = 64, seed = 5}
local fresh = tcs:harvest()
assert(fresh[1] == nil and fresh[2] == nil and tcs:harvest(0) == nil, "no harvest yet")
local _, np0 = html_of(tcs:feature(0, 3, {model = m}))
assert(np0:find("sae:harvest{", 1, true), "without a harvest the dashboard says how to make one")
local hs = tcs:harvest{model = m, data = ds, ctx = 32, quiet = true}
for l = 0, 1 do
    assert(tostring(hs[l + 1]):find("blocks." .. l .. ".mlp.hook_in", 1, true), "layer " .. l .. " on its hook_in")
    assert(tcs:harvest(l) == hs[l + 1], "tcs:harvest(layer)")
end
local live
for i, dd in ipairs(hs[2].density) do if dd > 0 then live = i - 1 break end end
assert(live, "a live feature in layer 1")
local th1, tp1 = html_of(tcs:feature(1, live))
assert(tp1:find("top tokens:", 1, true) and th1:find("transcoder on blocks.1.mlp.hook_in", 1, true), "layer 1's dashboard")
assert(tcs:label(1, live) ~= "" and not tcs:label(1, live):match("^dead"), "an automatic label: " .. tcs:label(1, live))
tcs:label(0, 2, '<img src=x onerror=alert(1)>')
assert(tcs:label(0, 2) == '<img src=x onerror=alert(1)>' and tcs:label(1, 2) ~= tcs:label(0, 2), "labels per layer")
local tl = html_of(tcs:feature(0, 2))
assert(not tl:find("<img src=x", 1, true) and tl:find("&lt;img src=x", 1, true), "hostile label as text")
tcs:label(0, 2, false)
assert(tcs:label(0, 2) ~= '<img src=x onerror=alert(1)>', "false forgets")
fails(function() return tcs:feature(2, 0) end, "layer must be")
fails(function() return tcs:feature(0, 64) end, "out of range")
fails(function() return tcs:label(-1, 0) end, "layer must be")
fails(function() return tcs:harvest{data = ds} end, "no model")
local clt = loupe.transcoders.random{n_layers = 2, d_model = 192, d_transcoder = 16, clt = true, seed = 1}
fails(function() return clt:harvest{model = m, data = ds} end, "per-layer transcoder set")
print("transcoders ok")
print("ok")
