-- Trains the default model's transcoder set (examples/models/default/transcoders): one skip
-- transcoder per layer, reading blocks.L.mlp.hook_in (the MLP's input, after ln2) and
-- predicting blocks.L.mlp.hook_out, in circuit-tracer's layout.
--
-- Expects the corpus the model was trained on (tools/make_transcoders.sh makes it, then runs
-- this file):
--
--     python3 tools/make_corpus.py --seed 1234 --size 4000000 out/default-model/corpus.txt
--     build/kernel/loupe run tools/train_transcoders.lua
--
-- The data is the model's own split (loupe.data.load with seed 1234, split(0.05)): training
-- streams activations from the first 95 %, the metrics are measured on the last 5 % (the
-- validation tail). The activation stream and the initialisation are seeded, so the data order
-- is the same on every run; the weights can differ in the last bits from machine to machine
-- (BLAS summation order).
--
-- Environment (all optional): LOUPE_CORPUS (the corpus), LOUPE_MODEL (the model folder,
-- default examples/models/default), LOUPE_OUT (default LOUPE_MODEL/transcoders), LOUPE_STEPS
-- (steps per layer), LOUPE_ARCH (jumprelu, or standard = ReLU), LOUPE_L1_REL (the sparsity
-- coefficient relative to the layer's output variance, see below), LOUPE_WIDTH, LOUPE_LR,
-- LOUPE_BATCH, LOUPE_EVAL_TOKENS (validation positions for the metrics). Variables are globals:
-- each cell is its own chunk.
--
-- The MLP outputs of the four layers differ in scale (E||y - mean y||^2 from about 330 to
-- 2,450), and the loss is the squared error summed over d_model plus l1 * sum_i
-- tanh(c f_i ||W_dec,i||) (JumpReLU, Anthropic's tanh penalty). So each layer's l1 is
-- LOUPE_L1_REL times that variance, measured on one seeded batch of the training split: the
-- same trade-off between L0 and explained variance on every layer. Measured on layer 1 (100
-- steps): JumpReLU at 3e-4 / 1e-3 / 3e-3 gave L0 49 / 23 / 12 at explained variance 0.988 /
-- 0.983 / 0.972; ReLU (L1) at 1e-3 still had L0 94 at 0.985, so JumpReLU is the default.
-- The full 300 steps at 1e-3 gave L0 11-23 but left 57-73 % of the features silent on the
-- validation tail; 3e-4 (the default) gives L0 18-37, a better explained variance on every
-- layer and 28-56 % silent.

-- %%
corpus = os.getenv("LOUPE_CORPUS") or "out/default-model/corpus.txt"
model_dir = os.getenv("LOUPE_MODEL") or "examples/models/default"
out = os.getenv("LOUPE_OUT") or (model_dir .. "/transcoders")
cfg = {
    arch = os.getenv("LOUPE_ARCH") or "jumprelu",
    width = tonumber(os.getenv("LOUPE_WIDTH") or "") or 1536,
    steps = tonumber(os.getenv("LOUPE_STEPS") or "") or 300,
    batch = tonumber(os.getenv("LOUPE_BATCH") or "") or 2048,
    lr = tonumber(os.getenv("LOUPE_LR") or "") or 2e-3,
    l1_rel = tonumber(os.getenv("LOUPE_L1_REL") or "") or 3e-4,
    ctx = 128,
    seed = 1,
    eval_tokens = tonumber(os.getenv("LOUPE_EVAL_TOKENS") or "") or 16384,
}
cfg.warmup = math.min(50, cfg.steps // 10)

f = io.open(corpus, "rb")
if not f then
    error("no corpus at " .. corpus .. ": run python3 tools/make_corpus.py --seed 1234 --size 4000000 " .. corpus)
end
f:close()

m = loupe.load(model_dir)
d = loupe.data.load{files = {corpus}, tokenizer = loupe.tokenizer(model_dir), seed = 1234}
train, val = d:split(0.05)
print(string.format("corpus %s: %d tokens (train %d, val %d); %s, %d layers, d_model %d",
      corpus, d:size(), train:size(), val:size(), model_dir, m.n_layers, m.d_model))

-- %%
-- One skip transcoder per layer, each from its own seeded stream of the training split.
tcs, secs, var, l1 = {}, {}, {}, {}
for l = 0, m.n_layers - 1 do
    local s = loupe.activations{model = m, hook = "blocks." .. l .. ".mlp.hook_out", data = train, batch = 4096,
                                ctx = cfg.ctx, seed = 99}
    local y = s:next()
    var[l + 1] = (y - y:mean(1, true)):norm() ^ 2 / y:shape()[1]
    l1[l + 1] = cfg.l1_rel * var[l + 1]
    local w0 = os.time()
    tcs[l + 1] = loupe.sae.train{model = m, transcoder = true, layer = l, skip = true, data = train,
                                 arch = cfg.arch, width = cfg.width, l1 = l1[l + 1], steps = cfg.steps,
                                 batch = cfg.batch, lr = cfg.lr, warmup = cfg.warmup, decay = true,
                                 ctx = cfg.ctx, seed = cfg.seed + l, live = false}
    secs[l + 1] = os.time() - w0
    local h = tcs[l + 1].history
    local n = #h.step
    print(string.format("layer %d: output variance %.1f, l1 %.4g; %d steps in %d s: loss %.4g, L0 %.1f, "
          .. "explained variance %.4f, dead %d", l, var[l + 1], l1[l + 1], n, secs[l + 1], h.loss[n], h.l0[n],
          h.explained_variance[n], h.dead[n]))
end
set = loupe.transcoders.save(tcs, out)
print(tostring(set))

-- %%
-- Metrics on the validation tail: per layer (sae:evaluate: that layer's transcoder spliced in
-- alone, no error term), then all layers spliced in at once (no error term) against the clean
-- model and the model with every MLP output zero-ablated.
set = loupe.transcoders.load(out)
layers = {}
for l = 0, m.n_layers - 1 do
    local r = set[l + 1]:evaluate{model = m, data = val, tokens = cfg.eval_tokens, ctx = cfg.ctx, quiet = true}
    layers[l + 1] = r
    print(string.format("layer %d: L0 %.2f, explained variance %.4f, mse %.5g, dead %d / %d, CE score %.4f "
          .. "(clean %.4f, spliced %.4f, zero %.4f)", l, r.l0, r.explained_variance, r.mse, r.dead, cfg.width,
          r.ce_loss_score, r.ce_clean, r.ce_sae, r.ce_zero))
end

zero = {}
for l = 0, m.n_layers - 1 do zero["blocks." .. l .. ".mlp.hook_out"] = loupe.ablate{} end
rows = 8
nwin = math.max(1, cfg.eval_tokens // cfg.ctx)
sum = {clean = 0, spliced = 0, zero = 0}
for w0 = 0, nwin - 1, rows do
    local batch = {}
    for w = w0, math.min(nwin, w0 + rows) - 1 do
        batch[#batch + 1] = val:tokens(w * cfg.ctx + 1, cfg.ctx)
    end
    local k = #batch
    sum.clean = sum.clean + k * m:run(batch, {cache = false}):loss()
    sum.spliced = sum.spliced + k * m:run(batch, {cache = false, saes = {set}}):loss()
    sum.zero = sum.zero + k * m:run(batch, {cache = false, hooks = zero}):loss()
end
ce = {clean = sum.clean / nwin, spliced = sum.spliced / nwin, zero = sum.zero / nwin}
ce.score = (ce.zero - ce.spliced) / (ce.zero - ce.clean)
print(string.format("all %d layers spliced in (no error term), %d positions: CE clean %.4f, spliced %.4f, "
      .. "every MLP zero-ablated %.4f: CE score %.4f", m.n_layers, nwin * cfg.ctx, ce.clean, ce.spliced, ce.zero,
      ce.score))

-- %%
parts = {}
for l = 0, m.n_layers - 1 do
    local r, h = layers[l + 1], tcs[l + 1].history
    parts[#parts + 1] = string.format('{"layer": %d, "l0": %.4f, "explained_variance": %.6f, "mse": %.6g, '
        .. '"cossim": %.6f, "dead": %d, "ce_loss_score": %.6f, "ce_clean": %.6f, "ce_spliced": %.6f, '
        .. '"ce_zero": %.6f, "n_tokens": %d, "train_seconds": %d, "train_explained_variance": %.6f, '
        .. '"train_l0": %.4f, "output_variance": %.4f, "l1": %.6g}', l, r.l0, r.explained_variance, r.mse, r.cossim, r.dead, r.ce_loss_score, r.ce_clean,
        r.ce_sae, r.ce_zero, r.n_tokens, secs[l + 1], h.explained_variance[#h.step], h.l0[#h.step],
        var[l + 1], l1[l + 1])
end
total = 0
for _, s in ipairs(secs) do total = total + s end
log = io.open(out .. "/train_log.json", "w")
log:write(string.format('{"model": "%s", "corpus": "make_corpus.py --seed 1234 --size 4000000", '
    .. '"split": "data seed 1234, split(0.05): train on the first 95 %%, metrics on the last 5 %%", '
    .. '"kind": "transcoder_set", "feature_input_hook": "mlp.hook_in", "feature_output_hook": "mlp.hook_out", '
    .. '"arch": "%s", "skip": true, "width": %d, "steps": %d, "batch": %d, "lr": %g, "warmup": %d, "l1_rel": %g, '
    .. '"ctx": %d, "seed": %d, "train_tokens_per_layer": %d, "train_seconds": %d, "eval_tokens": %d, '
    .. '"layers": [%s], "spliced_all": {"positions": %d, "ce_clean": %.6f, "ce_spliced": %.6f, '
    .. '"ce_zero": %.6f, "ce_loss_score": %.6f}}\n',
    model_dir, cfg.arch, cfg.width, cfg.steps, cfg.batch, cfg.lr, cfg.warmup, cfg.l1_rel, cfg.ctx, cfg.seed,
    cfg.steps * cfg.batch, total, cfg.eval_tokens, table.concat(parts, ", "), nwin * cfg.ctx, ce.clean,
    ce.spliced, ce.zero, ce.score))
log:close()
print("wrote " .. out .. " (" .. total .. " s of training)")
