-- A cross-layer transcoder trained on the default model (loupe.sae.train{arch = "clt"}),
-- checked under `loupe run` (tests/e2e/test_clt_training.py sets MODEL, CORPUS, OUT):
-- the loss falls, the explained variance of every layer's MLP output on held-out tokens
-- passes a floor, clt:encode / clt:forward agree with a hand computation from the saved
-- tensors' meaning, save + loupe.transcoders.load give the same outputs, and a training
-- continued with resume equals one run straight through.
local function check(c, msg, ...) if not c then error(string.format(msg, ...), 2) end end

m = loupe.load(MODEL)
ds = loupe.data.load{files = {CORPUS}, tokenizer = loupe.tokenizer(MODEL)}
local L = 4
local base = {model = m, arch = "clt", data = ds, width = 384, batch = 256, lr = 2e-3, ctx = 64, seed = 3,
              live = false, l1 = 3e-4, l1_warmup = 5}
local function opts(extra)
  local o = {}
  for k, v in pairs(base) do o[k] = v end
  for k, v in pairs(extra) do o[k] = v end
  return o
end

c = loupe.sae.train(opts{steps = 80})
check(c.kind == "cross_layer_transcoder" and c.n_layers == L and c.d_transcoder == 384 and c.d_model == 192,
      "kind %s", tostring(c.kind))
local h = c.history
check(#h.step == 80, "history of %d steps", #h.step)
local first, last = h.mse[1], 0
for i = 71, 80 do last = last + h.mse[i] / 10 end
print(string.format("mse %.4g -> %.4g; explained variance %.4f -> %.4f; l0 %.1f", first, last,
                    h.explained_variance[1], h.explained_variance[80], h.l0[80]))
check(last < 0.2 * first, "the loss did not fall: %g -> %g", first, last)
check(h.explained_variance[1] < 0.3, "a random CLT explains %g", h.explained_variance[1])
check(#c.layer_explained_variance == L and #c.layer_l0 == L, "per-layer statistics")

-- held-out tokens: every layer's MLP input and output
local hooks = {}
for l = 0, L - 1 do hooks[l + 1] = "blocks." .. l .. ".mlp.hook_in"; hooks[L + l + 1] = "blocks." .. l .. ".mlp.hook_out" end
local s = loupe.activations{model = m, hooks = hooks, data = ds, batch = 512, ctx = 64, seed = 99}
local b = {s:next()}
local x, y = {}, {}
for l = 1, L do x[l] = b[l]; y[l] = b[L + l] end
local p = c:forward(x)
check(#p == L, "forward of a list gives a list")
for l = 1, L do
  local sse = (y[l] - p[l]):norm() ^ 2
  local sst = (y[l] - y[l]:mean(1, true)):norm() ^ 2
  local ev = 1 - sse / sst
  print(string.format("layer %d held-out explained variance %.4f", l - 1, ev))
  check(ev > EV_FLOOR, "layer %d: explained variance %g", l - 1, ev)
end

-- the tensor form (L, N, d) gives what the list form gives
local rows = {}
for l = 1, L do rows[l] = x[l]:slice(1, 1, 8):totable() end
local x3 = loupe.tensor(rows)
local p3, f3, f = c:forward(x3), c:encode(x3), c:encode(x)
check(#f == L and f[1]:shape()[2] == 384, "encode of a list")
for l = 1, L do
  check((p3:slice(1, l, l):reshape(8, 192) - p[l]:slice(1, 1, 8)):norm() <= 1e-5 * p[l]:norm(), "forward forms differ")
  check((f3:slice(1, l, l):reshape(8, 384) - f[l]:slice(1, 1, 8)):norm() <= 1e-5 * (1 + f[l]:norm()), "encode forms differ")
end

-- saved in circuit-tracer's layout and loaded back: the same outputs
c:save(OUT .. "/clt")
local c2 = loupe.transcoders.load(OUT .. "/clt")
check(c2.kind == "cross_layer_transcoder", "loaded kind %s", tostring(c2.kind))
local q = c2:forward(x)
for l = 1, L do check((q[l] - p[l]):norm() == 0, "layer %d: the reloaded CLT differs", l - 1) end

-- resume: 10 steps then on to 20 equals 20 straight (fixed warm-ups, no decay)
local a = loupe.sae.train(opts{steps = 20, seed = 5})
local r = loupe.sae.train(opts{steps = 10, seed = 5})
local r10 = r:forward(x)[L]
r = loupe.sae.train{resume = true, steps = 20, live = false}
check(#r.history.step == 20, "resumed history %d", #r.history.step)
local pa, pr = a:forward(x), r:forward(x)
for l = 1, L do check((pa[l] - pr[l]):norm() == 0, "layer %d: resumed differs from straight", l - 1) end
check((r10 - pr[L]):norm() > 0, "10 steps equal 20 (the resume check tests nothing)")
-- bad input
local ok, err = pcall(c.forward, c, {x[1], x[2]})
check(not ok and tostring(err):find("list of 4"), "wrong list: %s", tostring(err))
ok, err = pcall(loupe.sae.train, opts{steps = 5, sweep = {l1 = {1, 2}}})
check(not ok and tostring(err):find("sweep"), "sweep: %s", tostring(err))
print("ok")
