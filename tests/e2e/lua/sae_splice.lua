-- Splicing an SAE into a run of the default model (tests/e2e/test_sae_splice.py runs this
-- with `loupe run`; every check raises on failure).
local m = loupe.load(MODEL)
local h = "blocks.0.hook_resid_post"
local prompt = "Mara lives in Oslo and Ben lives in"
local r0 = m:run(prompt)
local x = r0[h]
local D = x:shape()[3]
local sae = loupe.sae.random{arch = "standard", d_in = D, d_sae = 64, hook = h, seed = 3}

local function maxabs(t)
    return math.max(t:max(), -t:min())
end

-- with the error term the logits are unchanged
local r1 = m:run(prompt, {saes = {sae}, error_term = true})
local rel = maxabs(r1.logits - r0.logits) / maxabs(r0.logits)
print(string.format("error_term logits rel diff %.3g", rel))
assert(rel < 1e-5, "logits changed with the error term: " .. rel)

-- without it they change, and the cached parts are encode/decode of the input, by hand
local r2 = m:run(prompt, {saes = {sae}})
assert(maxabs(r2.logits - r0.logits) > 1e-2, "the reconstruction left the logits as they were")
local xin = r2[h .. ".hook_sae_input"]:totable()[1]
local pre = r2[h .. ".hook_sae_acts_pre"]:totable()[1]
local post = r2[h .. ".hook_sae_acts_post"]:totable()[1]
local rec = r2[h .. ".hook_sae_recons"]:totable()[1]
local err = r2[h .. ".hook_sae_error"]:totable()[1]
local We, be, Wd, bd = sae.W_enc:totable(), sae.b_enc:totable(), sae.W_dec:totable(), sae.b_dec:totable()
local worst, fired = 0, 0
for t = 1, #xin do
    for i = 1, #be do
        local z = be[i]
        for d = 1, D do z = z + (xin[t][d] - bd[d]) * We[d][i] end
        worst = math.max(worst, math.abs(z - pre[t][i]), math.abs(math.max(z, 0) - post[t][i]))
        if post[t][i] > 0 then fired = fired + 1 end
    end
    for d = 1, D do
        local y = bd[d]
        for i = 1, #be do y = y + post[t][i] * Wd[i][d] end
        worst = math.max(worst, math.abs(y - rec[t][d]), math.abs(xin[t][d] - y - err[t][d]))
    end
end
print(string.format("hand encode/decode max diff %.3g, %d features fired", worst, fired))
assert(worst < 1e-3, "cached hook_sae_* differ from encode/decode by hand: " .. worst)
assert(fired > 0, "no feature fired: the check would be vacuous")

-- zeroing one feature at acts_post (error term on) moves the output by -f_j W_dec,j
local j = 1
for i = 1, #be do if post[#xin][i] > post[#xin][j] then j = i end end
local mask = {}
for i = 1, #be do mask[i] = i == j and 0 or 1 end
mask = loupe.tensor(mask)
local r3 = m:run(prompt, {saes = {sae}, error_term = true,
                          hooks = {[h .. ".hook_sae_acts_post"] = function(f) return f * mask end}})
local want = {}
for t = 1, #xin do
    want[t] = {}
    for d = 1, D do want[t][d] = xin[t][d] - post[t][j] * Wd[j][d] end
end
local wantT = loupe.tensor({want})
local d3 = maxabs(r3[h] - wantT)
print(string.format("feature %d zeroed: output max diff %.3g (feature max %.3g)", j, d3, post[#xin][j]))
assert(post[#xin][j] > 0.1 and d3 < 1e-3, "zeroing a feature did not move the output as computed by hand")
local r4 = m:run(prompt, {hooks = {[h] = loupe.patch(wantT)}})
local d4 = maxabs(r3.logits - r4.logits) / maxabs(r4.logits)
print(string.format("logits against a patch of the hand-computed output: rel %.3g", d4))
assert(d4 < 1e-5, "logits differ from the hand-computed patch: " .. d4)

-- the same feature zeroed at acts_pre instead: ReLU(0) = 0, so the same output and logits
local r3b = m:run(prompt, {saes = {sae}, error_term = true,
                           hooks = {[h .. ".hook_sae_acts_pre"] = function(z) return z * mask end}})
assert(maxabs(r3b[h] - wantT) < 1e-3 and maxabs(r3b.logits - r3.logits) < 1e-4, "acts_pre hook")
assert(maxabs(r3b[h .. ".hook_sae_acts_post"] - r3[h .. ".hook_sae_acts_post"]) == 0, "f not recomputed from z")
-- a topk SAE: raising one feature's z at acts_pre brings it into the top k
local tk = loupe.sae.random{arch = "topk", k = 4, d_in = D, d_sae = 64, hook = h, seed = 5}
local rk = m:run(prompt, {saes = {tk}})
local postk = rk[h .. ".hook_sae_acts_post"]:totable()[1]
local off = 0
for i = 1, 64 do if postk[#postk][i] == 0 then off = i break end end
local bump = {}
for i = 1, 64 do bump[i] = i == off and 1000 or 0 end
bump = loupe.tensor(bump)
local rk2 = m:run(prompt, {saes = {tk}, hooks = {[h .. ".hook_sae_acts_pre"] = function(z) return z + bump end}})
-- an acts_pre hook that changes nothing recomputes exactly the features encode gave
local rk3 = m:run(prompt, {saes = {tk}, hooks = {[h .. ".hook_sae_acts_pre"] = function(z) return z * 1 end}})
assert(maxabs(rk3[h .. ".hook_sae_acts_post"] - rk[h .. ".hook_sae_acts_post"]) < 1e-6, "top-k recomputed differs")
assert(maxabs(rk3.logits - rk.logits) < 1e-5, "logits after an identity acts_pre hook")
local postk2 = rk2[h .. ".hook_sae_acts_post"]:totable()[1]
for t = 1, #postk2 do
    local n = 0
    for i = 1, 64 do if postk2[t][i] ~= 0 then n = n + 1 end end
    assert(n <= 4 and postk2[t][off] > 900, "top-k after an acts_pre hook: " .. n .. " " .. postk2[t][off])
end

-- an ablation on acts_post (all features) leaves the error term alone: output = b_dec + error
local r5 = m:run(prompt, {saes = {sae}, error_term = true, hooks = {[h .. ".hook_sae_acts_post"] = loupe.ablate()}})
assert(maxabs(r5[h .. ".hook_sae_recons"] - sae.b_dec) < 1e-6, "ablated features still reconstruct")

-- a name no SAE has is an error naming it
local ok, e = pcall(m.run, m, prompt, {saes = {sae}, hooks = {["blocks.1.hook_resid_post.hook_sae_acts_post"] = loupe.ablate()}})
assert(not ok and tostring(e):find("blocks.1.hook_resid_post.hook_sae_acts_post", 1, true), tostring(e))

-- a transcoder reads mlp.hook_in and replaces mlp.hook_out; with the error term nothing changes
local hin, hout = "blocks.1.mlp.hook_in", "blocks.1.mlp.hook_out"
local tc = loupe.sae.random{arch = "standard", transcoder = true, d_in = D, d_sae = 48, hook = hin, hook_out = hout,
                            seed = 4}
local rt = m:run(prompt, {saes = {tc}, error_term = true})
local relt = maxabs(rt.logits - r0.logits) / maxabs(r0.logits)
assert(relt < 1e-5, "a transcoder with its error term changed the logits: " .. relt)
assert(maxabs(rt[hout .. ".hook_sae_input"] - r0[hin]) < 1e-6, "the transcoder did not read mlp.hook_in")
assert(maxabs(rt[hout .. ".hook_sae_recons"] + rt[hout .. ".hook_sae_error"] - r0[hout]) < 1e-4,
       "recons + error is not the MLP's output")
local rt2 = m:run(prompt, {saes = {tc}})
assert(maxabs(rt2[hout] - rt2[hout .. ".hook_sae_recons"]) < 1e-6, "mlp.hook_out is not the prediction")
assert(maxabs(rt2.logits - r0.logits) > 1e-3, "the prediction left the logits as they were")

-- evaluate's CE and KL scores equal those computed here from the logits of three runs:
-- clean, the SAE spliced in without the error term, the hook zero-ablated
local ids = {}
math.randomseed(7)
for i = 1, 48 do ids[i] = math.random(10, 200) end
local T = 16
local res = sae:evaluate{model = m, data = ids, tokens = 3 * T, ctx = T, batch = 2, prepend_bos = false,
                         keep_special = true, quiet = true}
local function logsoftmax(row)
    local mx = -math.huge
    for _, v in ipairs(row) do mx = math.max(mx, v) end
    local s = 0
    for _, v in ipairs(row) do s = s + math.exp(v - mx) end
    local out, lse = {}, mx + math.log(s)
    for i, v in ipairs(row) do out[i] = v - lse end
    return out
end
local ce, kl, nce, nkl = {0, 0, 0}, {0, 0}, 0, 0
for w = 0, 2 do
    local win = {}
    for t = 1, T do win[t] = ids[w * T + t] end
    local runs = {m:run(win, {cache = false}), m:run(win, {saes = {sae}, cache = false}),
                  m:run(win, {hooks = {[h] = loupe.ablate()}, cache = false})}
    local lg = {}
    for k = 1, 3 do lg[k] = runs[k].logits:totable()[1] end
    for t = 1, T do
        local lp = {}
        for k = 1, 3 do lp[k] = logsoftmax(lg[k][t]) end
        for k = 1, 3 do if t < T then ce[k] = ce[k] - lp[k][win[t + 1] + 1] end end
        for k = 2, 3 do
            local s = 0
            for v = 1, #lp[1] do s = s + math.exp(lp[1][v]) * (lp[1][v] - lp[k][v]) end
            kl[k - 1] = kl[k - 1] + s
        end
        if t < T then nce = nce + 1 end
        nkl = nkl + 1
    end
end
for k = 1, 3 do ce[k] = ce[k] / nce end
for k = 1, 2 do kl[k] = kl[k] / nkl end
local ce_score = (ce[3] - ce[2]) / (ce[3] - ce[1])
local kl_score = (kl[2] - kl[1]) / kl[2]
print(string.format("ce_loss_score by hand %.6f, evaluate %.6f; kl_div_score by hand %.6f, evaluate %.6f",
                    ce_score, res.ce_loss_score, kl_score, res.kl_div_score))
assert(res.positions == 3 * T and res.n_tokens == 3 * T, "evaluate ran " .. res.positions .. " positions")
assert(math.abs(ce_score - res.ce_loss_score) < 1e-4, "ce_loss_score differs from the hand computation")
assert(math.abs(kl_score - res.kl_div_score) < 1e-4, "kl_div_score differs from the hand computation")
assert(math.abs(ce[1] - res.ce_clean) < 1e-4 and math.abs(ce[2] - res.ce_sae) < 1e-4, "CE differs")
assert(math.abs(ce[3] - ce[1]) > 0.1, "ablation changed nothing: the score would be meaningless")

-- a loupe.data dataset feeds evaluate as a table of ids does; BOS/EOS left out by default
local text = string.rep("Mara lives in Oslo. Ben lives in Paris. ", 20)
local ds = loupe.data.load{text = text, tokenizer = loupe.tokenizer(MODEL)}
local rd = sae:evaluate{model = m, data = ds, tokens = 64, ctx = 32, quiet = true}
assert(rd.positions == 64 and rd.n_tokens > 0 and rd.n_tokens < 64, "dataset evaluate: " .. rd.n_tokens)
assert(#rd.density == 64 and rd.dead >= 0, "densities")
-- a transcoder evaluates against mlp.hook_out, and its CE score is computed as above
local rte = tc:evaluate{model = m, data = ids, tokens = 2 * T, ctx = T, prepend_bos = false, keep_special = true,
                        quiet = true}
local ce0, ce1, ce2, nn = 0, 0, 0, 0
for w = 0, 1 do
    local win = {}
    for t = 1, T do win[t] = ids[w * T + t] end
    local lgs = {m:run(win, {cache = false}).logits:totable()[1], m:run(win, {saes = {tc}, cache = false}).logits:totable()[1],
                 m:run(win, {hooks = {[hout] = loupe.ablate()}, cache = false}).logits:totable()[1]}
    for t = 1, T - 1 do
        ce0 = ce0 - logsoftmax(lgs[1][t])[win[t + 1] + 1]
        ce1 = ce1 - logsoftmax(lgs[2][t])[win[t + 1] + 1]
        ce2 = ce2 - logsoftmax(lgs[3][t])[win[t + 1] + 1]
        nn = nn + 1
    end
end
local tscore = (ce2 / nn - ce1 / nn) / (ce2 / nn - ce0 / nn)
print(string.format("transcoder ce_loss_score by hand %.6f, evaluate %.6f", tscore, rte.ce_loss_score))
assert(math.abs(tscore - rte.ce_loss_score) < 1e-4, "transcoder ce_loss_score")
local ok2, e2 = pcall(sae.evaluate, sae, {model = m, data = {1, 2, 3}, ctx = 32, quiet = true})
assert(not ok2 and tostring(e2):find("shorter than one window", 1, true), tostring(e2))
print("ok")
