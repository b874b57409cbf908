-- A cross-layer transcoder spliced into a run of the default model (tests/e2e/test_clt_training.py
-- runs this with `loupe run`, MODEL set; every check raises on failure): with the error term
-- the logits are unchanged; without it every layer's mlp.hook_out is the CLT's prediction
-- (clt:forward) from the spliced run's own mlp.hook_in values, and each layer's
-- hook_sae_acts_post is clt:encode of them; zeroing layer 0's features changes the
-- reconstructions of the later layers (cross-layer decoders); a hook_sae name of a layer the
-- model lacks is an error.
local function check(c, msg, ...) if not c then error(string.format(msg, ...), 2) end end
local m = loupe.load(MODEL)
local L, D, W = 4, 192, 64
local prompt = "Mara lives in Oslo and Ben lives in"
local c = loupe.transcoders.random{n_layers = L, d_model = D, d_transcoder = W, clt = true, activation = "jumprelu",
                                   seed = 4}
local function maxabs(t) return math.max(t:max(), -t:min()) end
local r0 = m:run(prompt)
local r1 = m:run(prompt, {saes = {c}, error_term = true})
local rel = maxabs(r1.logits - r0.logits) / maxabs(r0.logits)
print(string.format("clt error_term logits rel diff %.3g", rel))
check(rel < 1e-5, "logits changed with the error term: %g", rel)

local r2 = m:run(prompt, {saes = {c}})
check(maxabs(r2.logits - r0.logits) > 1e-3, "the CLT's predictions left the logits as they were")
local T = r2.logits:shape()[2]
local x = {}
for l = 0, L - 1 do x[l + 1] = r2["blocks." .. l .. ".mlp.hook_in"]:reshape(T, D) end
local p, f = c:forward(x), c:encode(x)
local worst, fired = 0, 0
for l = 0, L - 1 do
  local h = "blocks." .. l .. ".mlp.hook_out"
  local out = r2[h]:reshape(T, D)
  worst = math.max(worst, maxabs(out - p[l + 1]) / maxabs(p[l + 1]))
  worst = math.max(worst, maxabs(r2[h .. ".hook_sae_recons"]:reshape(T, D) - p[l + 1]) / maxabs(p[l + 1]))
  local post = r2[h .. ".hook_sae_acts_post"]:reshape(T, W)
  worst = math.max(worst, maxabs(post - f[l + 1]) / math.max(1, maxabs(f[l + 1])))
  worst = math.max(worst, maxabs(r2[h .. ".hook_sae_input"]:reshape(T, D) - x[l + 1]))
  fired = fired + (post:norm() > 0 and 1 or 0)
end
print(string.format("clt spliced vs clt:forward/encode max rel diff %.3g, %d layers with features", worst, fired))
check(worst < 1e-5, "spliced parts differ from clt:forward / clt:encode: %g", worst)
check(fired == L, "features fired in %d of %d layers", fired, L)

-- zeroing layer 0's features (error term on) changes every later layer's reconstruction
local r3 = m:run(prompt, {saes = {c}, error_term = true,
                          hooks = {["blocks.0.mlp.hook_out.hook_sae_acts_post"] = function(t) return t * 0 end}})
for l = 1, L - 1 do
  local h = "blocks." .. l .. ".mlp.hook_out.hook_sae_recons"
  check(maxabs(r3[h] - r1[h]) > 1e-6, "layer %d's reconstruction ignores layer 0's features", l)
end
check(maxabs(r3.logits - r1.logits) > 1e-4, "zeroing layer 0's features left the logits")
local ok, err = pcall(m.run, m, prompt, {saes = {c}, hooks = {["blocks.9.mlp.hook_out.hook_sae_acts_post"] = function(t) return t end}})
check(not ok and tostring(err):find("blocks.9.mlp.hook_out.hook_sae_acts_post", 1, true), "bad hook: %s", tostring(err))
print("ok")
