-- Part of tools/gpu-check: trains the same small models through loupe.train on the CPU and
-- on the GPU (DEVICE, default "cuda") and compares what a user sees: the 20 losses, the 4
-- validation losses (steps 5, 10, 15, 20: the weights as trained so far, which on the GPU live
-- in the trainer's own copy), and the logits of the trained models once the weights are back
-- from the GPU. Exits non-zero on a difference beyond the tolerances (the e2e test's: losses
-- 1e-3, logits 1e-2).
-- %%
local device = os.getenv("LOUPE_GPU_CHECK_DEVICE") or "cuda"
local probe = {{5, 6, 7, 8, 9, 10, 11, 12, 5, 6, 7, 8, 9, 10, 11, 12}}
local configs = {
  {arch = "gpt2", n_layers = 2, d_model = 32, n_heads = 2, n_ctx = 32, d_vocab = 40, attn_only = true, seed = 1},
  {arch = "gpt2", n_layers = 2, d_model = 32, n_heads = 4, n_ctx = 32, d_vocab = 40, seed = 2},
  {arch = "llama", n_layers = 2, d_model = 32, n_heads = 4, n_kv_heads = 2, n_ctx = 32, d_vocab = 40, seed = 3},
}
local failed = 0
for _, cfg in ipairs(configs) do
  local function train(dev)
    local m = loupe.model(cfg)
    local _, h = loupe.train{model = m, steps = 20, batch = 4, ctx = 16, lr = 1e-2, live = false, device = dev,
                            data = loupe.data.repeated{vocab = 40, seg = 8, count = 4000, first = 1, seed = 3},
                            val = loupe.data.repeated{vocab = 40, seg = 8, count = 500, first = 1, seed = 5},
                            eval_every = 5, eval_batches = 2}
    return m, h
  end
  local mc, hc = train("cpu")
  local mg, hg = train(device)
  local worst = 0
  for i = 1, 20 do worst = math.max(worst, math.abs(hc.loss[i] - hg.loss[i])) end
  local worst_val = #hg.val_loss == 4 and #hc.val_loss == 4 and 0 or math.huge
  for i = 1, math.min(#hc.val_loss, #hg.val_loss) do
    worst_val = math.max(worst_val, math.abs(hc.val_loss[i] - hg.val_loss[i]))
  end
  local d = mg:run(probe).logits - mc:run(probe).logits
  local diff = math.max(d:max(), -d:min())
  local ok = hg.device == device and worst < 1e-3 and worst_val < 1e-3 and diff < 1e-2
  if not ok then failed = failed + 1 end
  print(string.format("%-5s %s%s on %s: loss %.4f -> %.4f, val %.4f -> %.4f, worst loss diff %.2e, "
                      .. "worst val diff %.2e, logits diff %.2e: %s",
                      cfg.arch, cfg.attn_only and "attn-only " or "", cfg.n_kv_heads and "GQA" or "",
                      hg.device, hg.loss[1], hg.loss[20], hg.val_loss[1] or 0 / 0, hg.val_loss[#hg.val_loss] or 0 / 0,
                      worst, worst_val, diff, ok and "ok" or "FAILED"))
end
if failed > 0 then error(failed .. " of " .. #configs .. " trainings differ between cpu and " .. device) end
