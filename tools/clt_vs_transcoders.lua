-- A cross-layer transcoder against per-layer (JumpReLU) transcoders of the same width, trained
-- the same number of steps on the same corpus, compared on held-out tokens: the explained
-- variance of every layer's MLP output and the active features per token of each layer.
--
--   python3 tools/make_corpus.py --seed 1234 --size 1000000 /tmp/train.txt
--   python3 tools/make_corpus.py --seed 999 --size 100000 /tmp/eval.txt
--   CORPUS=/tmp/train.txt EVAL=/tmp/eval.txt STEPS=300 L1S=0.03,0.3 build/kernel/loupe run tools/clt_vs_transcoders.lua
--
-- Environment: MODEL (examples/models/default), CORPUS, EVAL, STEPS (300), WIDTH (384 per
-- layer), BATCH (512), LR (2e-3), L1S (comma-separated tanh-penalty coefficients, 0.03).
local MODEL = os.getenv("MODEL") or "examples/models/default"
local CORPUS, EVAL = assert(os.getenv("CORPUS"), "set CORPUS"), assert(os.getenv("EVAL"), "set EVAL")
local STEPS, W = tonumber(os.getenv("STEPS") or 300), tonumber(os.getenv("WIDTH") or 384)
local B, LR = tonumber(os.getenv("BATCH") or 512), tonumber(os.getenv("LR") or 2e-3)
local l1s = {}
for v in (os.getenv("L1S") or "0.03"):gmatch("[^,]+") do l1s[#l1s + 1] = tonumber(v) end

local m = loupe.load(MODEL)
local tok = loupe.tokenizer(MODEL)
local ds = loupe.data.load{files = {CORPUS}, tokenizer = tok}
local ev_ds = loupe.data.load{files = {EVAL}, tokenizer = tok}
local L = m.n_layers
local hooks = {}
for l = 0, L - 1 do hooks[l + 1] = "blocks." .. l .. ".mlp.hook_in"; hooks[L + l + 1] = "blocks." .. l .. ".mlp.hook_out" end
local s = loupe.activations{model = m, hooks = hooks, data = ev_ds, batch = 2048, ctx = 64, seed = 99}
local b = {s:next()}
local x, y = {}, {}
for l = 1, L do x[l] = b[l]; y[l] = b[L + l] end
local function ev(p, l) return 1 - (y[l] - p):norm() ^ 2 / (y[l] - y[l]:mean(1, true)):norm() ^ 2 end
local function l0(f)
  local n, rows = 0, f:totable()
  for _, r in ipairs(rows) do for _, v in ipairs(r) do if v ~= 0 then n = n + 1 end end end
  return n / #rows
end
for _, l1 in ipairs(l1s) do
  local t0 = os.time()
  local c = loupe.sae.train{model = m, arch = "clt", data = ds, width = W, batch = B, steps = STEPS, lr = LR, ctx = 64,
                            seed = 3, live = false, l1 = l1}
  local p, f = c:forward(x), c:encode(x)
  local line = {}
  for l = 1, L do line[#line + 1] = string.format("L%d ev %.4f l0 %.1f", l - 1, ev(p[l], l), l0(f[l])) end
  print(string.format("CLT  l1 %g (%ds): %s", l1, os.time() - t0, table.concat(line, "; ")))
  t0 = os.time()
  line = {}
  for l = 0, L - 1 do
    local t = loupe.sae.train{model = m, transcoder = true, layer = l, arch = "jumprelu", data = ds, width = W,
                              batch = B, steps = STEPS, lr = LR, ctx = 64, seed = 3, live = false, l1 = l1}
    line[#line + 1] = string.format("L%d ev %.4f l0 %.1f", l, ev(t:forward(x[l + 1]), l + 1), l0(t:encode(x[l + 1])))
  end
  print(string.format("PLT  l1 %g (%ds): %s", l1, os.time() - t0, table.concat(line, "; ")))
  io.stdout:flush()
end
