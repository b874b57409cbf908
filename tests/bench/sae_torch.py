"""PyTorch's side of bench_sae (tests/bench/sae.c starts it, in .venv-peer): a minimal SAE
training step of the same shape and architecture as loupe's, on random activations, in f32
on the CPU with the given thread count:

    z = (x - b_dec) @ W_enc + b_enc
    topk:     v, i = z.topk(k); f = zeros.scatter(-1, i, relu(v))
    standard: f = relu(z); penalty = l1 * (f * W_dec.norm(dim=1)).sum(-1).mean()
    x_hat = f @ W_dec + b_dec; loss = (x_hat - x).pow(2).sum(-1).mean() (+ penalty)
    opt.zero_grad(); loss.backward(); clip_grad_norm_(params, 1.0); opt.step()   # Adam

    sae_torch.py BATCH D_IN REPS THREADS  ->  {"torch_tokens_per_s": ..., "cpu_seconds": ...}
(cpu_seconds: the median CPU time of the process, all threads, per step)
with LOUPE_BENCH_SAE="topk:WIDTH:K" or "standard:WIDTH" naming the rest.
Prints {"torch_tokens_per_s": null, "why": "..."} when torch is missing."""
import json
import os
import statistics
import sys
import time


def main() -> None:
    if len(sys.argv) != 5:
        print("sae_torch.py: run by bench_sae (tests/bench/run sae), not on its own", file=sys.stderr)
        sys.exit(2)
    batch, d_in, reps, threads = (int(a) for a in sys.argv[1:5])
    arch, *rest = os.environ.get("LOUPE_BENCH_SAE", "topk:3072:32").split(":")
    width = int(rest[0])
    k = int(rest[1]) if arch == "topk" else 0
    try:
        import torch
    except ImportError as e:
        print(json.dumps({"torch_tokens_per_s": None, "why": str(e)}))
        return
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    W_dec = torch.randn(width, d_in)
    W_dec = (0.1 * W_dec / W_dec.norm(dim=1, keepdim=True)).requires_grad_()
    W_enc = W_dec.detach().t().clone().requires_grad_()
    b_enc = torch.zeros(width, requires_grad=True)
    b_dec = torch.zeros(d_in, requires_grad=True)
    params = [W_enc, b_enc, W_dec, b_dec]
    opt = torch.optim.Adam(params, lr=3e-4 if arch == "topk" else 5e-5, betas=(0.9, 0.999))
    xs = [torch.randn(batch, d_in) for _ in range(4)]

    def step(x):
        z = (x - b_dec) @ W_enc + b_enc
        if arch == "topk":
            v, i = z.topk(k, dim=-1)
            f = torch.zeros_like(z).scatter(-1, i, torch.relu(v))
            pen = 0.0
        else:
            f = torch.relu(z)
            pen = 5.0 * (f * W_dec.norm(dim=1)).sum(-1).mean()
        x_hat = f @ W_dec + b_dec
        loss = (x_hat - x).pow(2).sum(-1).mean() + pen
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    step(xs[0])
    times, cpu = [], []
    for r in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        step(xs[r % 4])
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(json.dumps({"torch_tokens_per_s": batch / statistics.median(times), "cpu_seconds": statistics.median(cpu)}))


if __name__ == "__main__":
    main()
