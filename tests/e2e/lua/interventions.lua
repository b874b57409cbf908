-- Interventions on dictionary features on the default model (tests/e2e/test_interventions.py
-- runs this with `loupe run`; every check raises on failure, the last line is "ok").
local m = loupe.load(MODEL)
local prompt = "Mara lives in Oslo and Ben lives in"
local h = "blocks.1.hook_resid_post"
local D = m.d_model
local sae = loupe.sae.random{arch = "standard", d_in = D, d_sae = 64, hook = h, seed = 3}
local tcs = loupe.transcoders.random{n_layers = m.n_layers, d_model = D, d_transcoder = 96,
                                     activation = "jumprelu", seed = 1}

local function maxabs(t)
    return math.max(t:max(), -t:min())
end

local r0 = m:run(prompt)
local T = #r0.tokens
local scale0 = maxabs(r0.logits)

-- the strongest feature of the SAE at position 5
local post = m:run(prompt, {saes = {sae}, error_term = true})[h .. ".hook_sae_acts_post"]:totable()[1]
local pos, j = 5, 1
for i = 1, 64 do if post[pos][i] > post[pos][j] then j = i end end
local fj = post[pos][j]
assert(fj > 0, "no feature fires at position 5: the checks would be vacuous")
local base = m:run(prompt, {saes = {sae}, error_term = true})

-- 1. setting a feature to its own value changes nothing (m:run and m:intervene)
local same = m:run(prompt, {saes = {sae}, features = {{sae = sae, feature = j - 1, set = fj, pos = pos}}})
local d_same = maxabs(same.logits - base.logits)
print(string.format("run: set to own value, max logit change %.3g", d_same))
assert(d_same <= 1e-6, "setting a feature to its own value changed the logits: " .. d_same)
local moved = maxabs(m:run(prompt, {saes = {sae}, features = {{sae = sae, feature = j - 1, set = 3 * fj + 1,
                                                                  pos = pos}}}).logits - base.logits)
assert(moved > 1e-4, "setting a feature to another value changed nothing: " .. moved)

local iv0 = m:intervene{transcoders = tcs, prompt = prompt, set = {}}
local a1 = iv0.clean_acts[1]:totable()
local tl, tf = 1, 0 -- a firing transcoder feature of layer 1 at position 6
for i = 1, #a1[6] do if a1[6][i] > a1[6][tf + 1] then tf = i - 1 end end
local tv = a1[6][tf + 1]
assert(tv > 0, "no transcoder feature fires at position 6")
for _, c in ipairs({{false, nil}, {true, nil}, {true, {0, m.n_layers - 1}}, {true, {1, 2}}}) do
    local iv = m:intervene{transcoders = tcs, prompt = prompt, set = {{tl, 6, tf, tv}},
                           freeze_attention = c[1], constrained_layers = c[2]}
    local d = maxabs(iv.logits - iv.clean_logits)
    print(string.format("intervene: set to own value (freeze %s, constrained %s), max logit change %.3g",
                        tostring(c[1]), c[2] and (c[2][1] .. ".." .. c[2][2]) or "none", d))
    assert(d <= 1e-6, "intervene: setting a feature to its own value changed the logits: " .. d)
    local iv2 = m:intervene{transcoders = tcs, prompt = prompt, set = {{tl, 6, tf, 4 * tv + 2}},
                            freeze_attention = c[1], constrained_layers = c[2]}
    assert(maxabs(iv2.logits - iv2.clean_logits) > 1e-5, "intervene: a new value changed nothing")
    assert(math.abs(iv2.acts[tl]:totable()[6][tf + 1] - (4 * tv + 2)) < 1e-5, "the set feature's activation")
end

-- 2. steering by s = adding s * W_dec[j] at the hook with a plain hook (one position, and all)
local wj = loupe.tensor(sae.W_dec:totable()[j])
for _, p in ipairs({pos, false}) do
    local s = 7.5
    local spec = {sae = sae, feature = j - 1, add = s}
    if p then spec.pos = p end
    local steered = m:run(prompt, {saes = {sae}, features = {spec}})
    local plain = m:run(prompt, {hooks = {[h] = loupe.steer(wj, s, p and {pos = p} or nil)}})
    local d = maxabs(steered.logits - plain.logits) / scale0
    local mv = maxabs(steered.logits - r0.logits)
    print(string.format("steer by %.1f at %s: rel diff to a plain hook %.3g (logits moved %.3g)", s,
                        p and ("position " .. p) or "every position", d, mv))
    assert(mv > 1e-3, "steering moved nothing")
    assert(d < 1e-5, "steering differs from adding s * W_dec at the hook: " .. d)
end
-- ablation through m:run: the feature at 0 is -f_j W_dec,j at the hook
local abl = m:run(prompt, {saes = {sae}, features = {{sae = sae, feature = j - 1, ablate = true, pos = pos}}})
local plain = m:run(prompt, {hooks = {[h] = loupe.steer(wj, -fj, {pos = pos})}})
assert(maxabs(abl.logits - plain.logits) / scale0 < 1e-5, "ablating a feature")
-- transcoders through features: layer picks the set's transcoder
local viaT = m:run(prompt, {saes = {tcs}, features = {{sae = tcs, layer = tl, feature = tf, set = 4 * tv + 2, pos = 6}}})
local ivT = m:intervene{transcoders = tcs, prompt = prompt, set = {{tl, 6, tf, 4 * tv + 2}}, freeze_attention = false}
local dT = maxabs(viaT.logits - ivT.logits) / scale0
print(string.format("m:run features on transcoders vs m:intervene (free): rel %.3g", dT))
assert(dT < 1e-5, "m:run with transcoder features differs from m:intervene: " .. dT)
local viaSet = m:run(prompt, {transcoders = tcs, set = {{tl, 6, tf, 4 * tv + 2}}})
assert(maxabs(viaSet.logits - viaT.logits) == 0, "m:run{transcoders, set} differs from features on the set")

-- 3. generation: steering changes it, scale 0 leaves it, kv cache or not the same
local n = 12
local t_clean, ids_clean = m:generate(prompt, {max_tokens = n})
local t_zero, ids_zero = m:generate(prompt, {max_tokens = n, saes = {sae}, steer = {{sae, j - 1, 0.0}}})
assert(t_zero == t_clean, "steering by 0 changed the text:\n" .. t_clean .. "\n" .. t_zero)
for i = 1, #ids_clean do assert(ids_zero[i] == ids_clean[i], "steering by 0 changed token " .. i) end
local big = 400
local t_st, ids_st = m:generate(prompt, {max_tokens = n, saes = {sae}, steer = {{sae, j - 1, big}}})
local t_st2 = m:generate(prompt, {max_tokens = n, saes = {sae}, steer = {{sae, j - 1, big}}, kv_cache = false})
print("clean:   " .. t_clean)
print("steered: " .. t_st)
assert(t_st ~= t_clean, "steering by " .. big .. " did not change the generated text")
assert(t_st2 == t_st, "steered generation differs with and without the kv cache:\n" .. t_st .. "\n" .. t_st2)
-- the steered generation's first token is the steered run's argmax; later tokens are steered too
local rs = m:run(prompt, {saes = {sae}, features = {{sae = sae, feature = j - 1, add = big}}})
local top = rs:top(1)[1].id
assert(ids_st[T + 1] == top, "the first generated token is not the steered run's top token")
local full = {}
for i = 1, #ids_st - 1 do full[i] = ids_st[i] end
local rfull = m:run(full, {saes = {sae}, features = {{sae = sae, feature = j - 1, add = big}}})
assert(rfull:top(1)[1].id == ids_st[#ids_st], "the last generated token was not steered")
-- a prompt position only: generation differs from steering everywhere
local t_pos = m:generate(prompt, {max_tokens = n, saes = {sae}, steer = {{sae, j - 1, big, pos = 2}}})
print("steered at position 2 only: " .. t_pos)
-- transcoders + set in generate equals m:run with the same edit on the first token
local tg, idg = m:generate(prompt, {max_tokens = 1, transcoders = tcs, set = {{tl, 6, tf, 50.0}}})
local ivg = m:intervene{transcoders = tcs, prompt = prompt, set = {{tl, 6, tf, 50.0}}, freeze_attention = false}
local lg = ivg.logits:totable()[1][T]
local best = 1
for i = 1, #lg do if lg[i] > lg[best] then best = i end end
assert(idg[T + 1] == best - 1, "generate with set: first token differs from m:intervene's argmax")

-- 4. loupe.compare: texts, runs, interventions
local c = loupe.compare(t_clean, t_st)
assert(c.text_a == t_clean and c.text_b == t_st)
local c2 = loupe.compare(r0, rs, {labels = {"clean", "steered"}, k = 5})
assert(#c2.top_a == 5 and #c2.changes == 10)
assert(c2.top_a[1].id == r0:top(1)[1].id and c2.top_b[1].id == top, "compare's top tokens")
local biggest = c2.changes[1]
local lr0, lrs = r0.logits:totable()[1][T], rs.logits:totable()[1][T]
assert(math.abs(biggest.change - (lrs[biggest.id + 1] - lr0[biggest.id + 1])) < 1e-4, "compare's logit change")
for i = 1, #lr0 do
    assert(lrs[i] - lr0[i] <= biggest.change + 1e-6, "compare missed a larger increase")
end
local html = c2.bundle["text/html"]
assert(html and not html:find("<script"), "the comparison's html has a script")
local hostile = loupe.compare("<script>alert(1)</script>\u{202E}x", "<img src=x onerror=alert(1)>")
local hh = hostile.bundle["text/html"]
assert(not hh:find("<script>", 1, true) and not hh:find("<img", 1, true), "hostile text not escaped: " .. hh)
assert(not hh:find("\u{202E}", 1, true), "a bidi override left raw in the html")
local ivd = m:intervene{transcoders = tcs, prompt = prompt, set = {{tl, 6, tf, 4 * tv + 2}}}
local shown = tostring(ivd)
assert(shown:find("before") and shown:find("after"), "the intervention's table: " .. shown)
print(shown)

-- 5. bad input: clear errors
local function fails(pat, f)
    local okk, err = pcall(f)
    assert(not okk, "no error (wanted '" .. pat .. "')")
    assert(tostring(err):find(pat, 1, true), "wanted '" .. pat .. "', got: " .. tostring(err))
    print("error as expected: " .. tostring(err))
end
fails("feature 64 is out of range", function()
    m:run(prompt, {saes = {sae}, features = {{sae = sae, feature = 64, add = 1}}})
end)
fails("feature 96 is out of range", function()
    m:intervene{transcoders = tcs, prompt = prompt, set = {{0, 1, 96, 1.0}}}
end)
fails("unknown layer 4", function()
    m:intervene{transcoders = tcs, prompt = prompt, set = {{4, 1, 0, 1.0}}}
end)
fails("unknown layer 9", function()
    m:run(prompt, {saes = {tcs}, features = {{sae = tcs, layer = 9, feature = 0, add = 1}}})
end)
fails("position " .. (T + 1) .. " is beyond the prompt", function()
    m:intervene{transcoders = tcs, prompt = prompt, set = {{0, T + 1, 0, 1.0}}}
end)
fails("position " .. (T + 1) .. " is beyond the prompt", function()
    m:run(prompt, {saes = {sae}, features = {{sae = sae, feature = 0, add = 1, pos = T + 1}}})
end)
fails("position 0 is beyond the prompt", function()
    m:generate(prompt, {saes = {sae}, steer = {{sae, 0, 1.0, pos = 0}}})
end)
local other = loupe.sae.random{arch = "standard", d_in = D, d_sae = 32, hook = "blocks.2.hook_resid_post", seed = 4}
fails("is not spliced into the run", function()
    m:run(prompt, {saes = {sae}, features = {{sae = other, feature = 0, add = 1}}})
end)
fails("no dictionary is spliced", function()
    m:generate(prompt, {steer = {{sae, 0, 1.0}}})
end)
fails("not spliced", function()
    m:run(prompt, {saes = {sae}, features = {{sae = tcs, layer = 0, feature = 0, add = 1}}})
end)
fails("one of set, add and ablate", function()
    m:run(prompt, {saes = {sae}, features = {{sae = sae, feature = 0, add = 1, set = 2}}})
end)
fails("constrained_layers", function()
    m:intervene{transcoders = tcs, prompt = prompt, set = {}, constrained_layers = {2, 9}}
end)
-- a cross-layer transcoder: its own value changes nothing, another value does
local clt = loupe.transcoders.random{n_layers = m.n_layers, d_model = D, d_transcoder = 48, clt = true,
                                    activation = "jumprelu", seed = 6}
local c0 = m:intervene{transcoders = clt, prompt = prompt, set = {}}
local ca = c0.clean_acts[0]:totable()
local cf = 0
for i = 1, #ca[4] do if ca[4][i] > ca[4][cf + 1] then cf = i - 1 end end
assert(ca[4][cf + 1] > 0, "no CLT feature fires at position 4")
for _, cl in ipairs({false, true}) do
    local same_c = m:intervene{transcoders = clt, prompt = prompt, set = {{0, 4, cf, ca[4][cf + 1]}},
                               constrained_layers = cl}
    assert(maxabs(same_c.logits - same_c.clean_logits) <= 1e-6, "CLT: own value changed the logits")
    local new_c = m:intervene{transcoders = clt, prompt = prompt, set = {{0, 4, cf, 5 * ca[4][cf + 1] + 1}},
                              constrained_layers = cl}
    assert(maxabs(new_c.logits - new_c.clean_logits) > 1e-5, "CLT: a new value changed nothing")
end
fails("transcoders must be", function()
    m:intervene{transcoders = sae, prompt = prompt, set = {}}
end)
local small = loupe.transcoders.random{n_layers = 2, d_model = D, d_transcoder = 8, seed = 2}
fails("layers", function()
    m:intervene{transcoders = small, prompt = prompt, set = {}}
end)
print("ok")
