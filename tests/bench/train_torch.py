"""PyTorch's side of bench_train (tests/bench/train.c starts it): transformers'
GPT2LMHeadModel with GPT-2 small's shape and random weights, trained in f32 on the CPU
with the same thread count as loupe. One step is what loupe's step does:

    logits = model(ids).logits; loss = F.cross_entropy(logits, targets)
    opt.zero_grad(); loss.backward(); clip_grad_norm_(params, 1.0); opt.step()

with torch.optim.AdamW(lr 3e-4, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on the 2-D
tensors only), eager attention, no dropout.

    train_torch.py B T REPS THREADS  ->  {"torch_tokens_per_s": ...}

Prints {"torch_tokens_per_s": null, "why": "..."} when torch or transformers is missing.
transformers' import-time pins on tokenizers / huggingface-hub are relaxed while importing
(not used here), as in forward_torch.py."""
import importlib.metadata as md
import json
import statistics
import sys
import time


def main() -> None:
    if len(sys.argv) != 5:  # tests/bench/run (all) picks up every *.py: this is bench_train's helper
        print("train_torch.py: run by bench_train (tests/bench/run train), not on its own", file=sys.stderr)
        return
    B, T, reps, threads = (int(x) for x in sys.argv[1:5])
    try:
        import torch
        import torch.nn.functional as F
        real = md.version
        md.version = lambda n: {"tokenizers": "0.21.0", "huggingface-hub": "0.30.0"}.get(n) or real(n)
        try:
            import transformers
        finally:
            md.version = real
    except ImportError as e:
        print(json.dumps({"torch_tokens_per_s": None, "why": str(e)}))
        return
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024,
                                  attn_implementation="eager", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(cfg).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    ids = torch.randint(0, 50257, (B, T))
    targets = torch.randint(0, 50257, (B, T))

    def step() -> None:
        logits = model(ids, use_cache=False).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    step()  # warm-up (allocates the optimizer state)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"torch_tokens_per_s": B * T / statistics.median(times), "torch_version": torch.__version__,
                      "transformers_version": transformers.__version__, "threads": threads}))


if __name__ == "__main__":
    main()
