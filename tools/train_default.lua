-- Trains loupe's default model (examples/models/default) from scratch.
--
-- Expects the corpus made by tools/make_corpus.py (see tools/make_default_model.sh, which
-- makes it and then runs this file):
--
--     python3 tools/make_corpus.py --seed 1234 --size 4000000 out/default-model/corpus.txt
--     build/kernel/loupe run tools/train_default.lua
--
-- Environment (all optional): LOUPE_CORPUS (the corpus file), LOUPE_OUT (the model folder,
-- default examples/models/default), LOUPE_STEPS (training steps; a short run to time things),
-- LOUPE_D_MODEL. The tokenizer is trained into LOUPE_OUT first, then the model is trained
-- and saved there (config.json, model.safetensors, tokenizer files), and the measured
-- numbers are written to LOUPE_OUT/train_log.json. (Variables are globals: each cell is its own chunk.)

-- %%
corpus = os.getenv("LOUPE_CORPUS") or "out/default-model/corpus.txt"
out = os.getenv("LOUPE_OUT") or "examples/models/default"
steps = tonumber(os.getenv("LOUPE_STEPS") or "") or 1000
d_model = tonumber(os.getenv("LOUPE_D_MODEL") or "") or 192
cfg = {arch = "gpt2", n_layers = 4, d_model = d_model, n_heads = 4, n_ctx = 128, vocab = 1024,
       batch = 16, lr = 3e-3, warmup = math.min(100, steps // 10), seed = 1}

f = io.open(corpus, "rb")
if not f then
    error("no corpus at " .. corpus .. ": run python3 tools/make_corpus.py --seed 1234 --size 4000000 " .. corpus)
end
f:close()
os.execute("mkdir -p '" .. out .. "'")

t0 = os.time()
tok = loupe.tokenizer_train{files = {corpus}, vocab_size = cfg.vocab, special = {"<|endoftext|>"},
                            save = out, progress = false}
d = loupe.data.load{files = {corpus}, tokenizer = tok, seed = 1234}
train, val = d:split(0.05)
print(string.format("corpus %s: %d tokens (train %d, val %d), vocab %d, tokenizer in %ds",
      corpus, d:size(), train:size(), val:size(), cfg.vocab, os.time() - t0))

-- %%
m = loupe.model{arch = cfg.arch, n_layers = cfg.n_layers, d_model = cfg.d_model, n_heads = cfg.n_heads,
                n_ctx = cfg.n_ctx, tokenizer = out, seed = cfg.seed}
m, h = loupe.train{model = m, data = train, val = val, steps = steps, batch = cfg.batch, ctx = cfg.n_ctx,
                   lr = cfg.lr, warmup = cfg.warmup, eval_every = math.max(1, steps // 10), eval_batches = 16,
                   save = out, live = false}

-- %%
n = #h.loss
tail = 0
k = math.min(50, n)
for i = n - k + 1, n do tail = tail + h.loss[i] end
tail = tail / k
vl = h.val_loss[#h.val_loss]
secs = type(h.seconds) == "table" and h.seconds[#h.seconds] or h.seconds
tps = type(h.tokens_per_s) == "table" and h.tokens_per_s[#h.tokens_per_s] or h.tokens_per_s
print(string.format("steps %d, batch %d x %d: train loss (mean of last %d steps) %.4f, val loss %.4f, %.0f s, %.0f tokens/s",
      steps, cfg.batch, cfg.n_ctx, k, tail, vl, secs, tps))
print("greedy: " .. tostring(m:generate("Mara lives in", {max_tokens = 20})))

log = io.open(out .. "/train_log.json", "w")
log:write(string.format('{"corpus": "make_corpus.py --seed 1234 --size 4000000", "corpus_tokens": %d, ' ..
    '"train_tokens": %d, "val_tokens": %d, "arch": "%s", "n_layers": %d, "d_model": %d, "n_heads": %d, ' ..
    '"n_ctx": %d, "vocab": %d, "steps": %d, "batch": %d, "lr": %g, "warmup": %d, "seed": %d, ' ..
    '"train_loss_last%d": %.4f, "val_loss": %.4f, "seconds": %.1f, "tokens_per_s": %.0f}\n',
    d:size(), train:size(), val:size(), cfg.arch, cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_ctx, cfg.vocab,
    steps, cfg.batch, cfg.lr, cfg.warmup, cfg.seed, k, tail, vl, secs, tps))
log:close()
