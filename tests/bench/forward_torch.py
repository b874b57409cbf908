"""PyTorch's side of bench_forward (tests/bench/forward.c starts it): transformers'
GPT2LMHeadModel with GPT-2 small's shape and random weights, forward under no_grad, eager
attention, f32 on the CPU, with the same thread count as loupe.

    forward_torch.py B T REPS THREADS  ->  {"torch_tokens_per_s": ...}

Prints {"torch_tokens_per_s": null, "why": "..."} when torch or transformers is missing.
transformers 4.49 is the newest release that runs on Debian's torch 1.13; its import-time
pins on tokenizers / huggingface-hub are relaxed while importing (not used here)."""
import importlib.metadata as md
import json
import statistics
import sys
import time


def main() -> None:
    B, T, reps, threads = (int(x) for x in sys.argv[1:5])
    try:
        import torch
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
                                  attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, 50257, (B, T))
    times = []
    with torch.no_grad():
        model(ids, use_cache=False)
        for _ in range(reps):
            t0 = time.perf_counter()
            model(ids, use_cache=False)
            times.append(time.perf_counter() - t0)
    print(json.dumps({"torch_tokens_per_s": B * T / statistics.median(times), "torch_version": torch.__version__,
                      "transformers_version": transformers.__version__, "threads": threads}))


if __name__ == "__main__":
    main()
