"""SAELens' side of bench_sae (tests/bench/sae.c starts it, in .venv-peer): SAELens' own
trainer (sae_lens.training.sae_trainer.SAETrainer) stepping a TopKTrainingSAE or a
StandardTrainingSAE of the same shape as loupe's, on pre-made random activations that a
data provider hands out one batch at a time (no model, no activation store: offline), f32 on
the CPU with the given thread count. Each timed step is SAETrainer.step(batch): the forward,
the losses, the backward, gradient clipping, Adam, the learning-rate and coefficient
schedules and the dead-feature counters, as in SAETrainer.fit.

    sae_saelens.py BATCH D_IN REPS THREADS  ->  {"saelens_acts_per_s": ..., "cpu_seconds": ...}
(cpu_seconds: the median CPU time of the process, all threads, per step)
with LOUPE_BENCH_SAE="topk:WIDTH:K" or "standard:WIDTH" naming the rest (as sae_torch.py).
Prints {"saelens_acts_per_s": null, "why": "..."} when SAELens is missing."""
import json
import os
import statistics
import sys
import time


def main() -> None:
    if len(sys.argv) != 5:
        print("sae_saelens.py: run by bench_sae (tests/bench/run sae), not on its own", file=sys.stderr)
        sys.exit(2)
    batch, d_in, reps, threads = (int(a) for a in sys.argv[1:5])
    arch, *rest = os.environ.get("LOUPE_BENCH_SAE", "topk:3072:32").split(":")
    width = int(rest[0])
    k = int(rest[1]) if arch == "topk" else 0
    os.environ.setdefault("WANDB_MODE", "disabled")
    try:
        import torch
        from sae_lens.config import LoggingConfig, SAETrainerConfig
        from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
        from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
        from sae_lens.training.sae_trainer import SAETrainer
    except ImportError as e:
        print(json.dumps({"saelens_acts_per_s": None, "why": str(e)}))
        return
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if arch == "topk":
        cfg = TopKTrainingSAEConfig(d_in=d_in, d_sae=width, k=k, dtype="float32", device="cpu")
        sae = TopKTrainingSAE(cfg)
        lr = 3e-4
    else:
        cfg = StandardTrainingSAEConfig(d_in=d_in, d_sae=width, l1_coefficient=5.0, dtype="float32", device="cpu")
        sae = StandardTrainingSAE(cfg)
        lr = 5e-5
    xs = [torch.randn(batch, d_in) for _ in range(4)]

    def provider():
        i = 0
        while True:
            yield xs[i % 4]
            i += 1

    tc = SAETrainerConfig(total_training_samples=batch * (reps + 1), train_batch_size_samples=batch, lr=lr, lr_end=lr,
                          adam_beta1=0.9, adam_beta2=0.999, device="cpu",
                          logger=LoggingConfig(log_to_wandb=False))
    trainer = SAETrainer(tc, sae, provider())
    data = trainer.data_provider
    trainer.step(next(data))  # warm-up
    times, cpu = [], []
    for _ in range(reps):
        x = next(data)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.step(x)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        trainer.n_training_steps += 1
    print(json.dumps({"saelens_acts_per_s": batch / statistics.median(times), "cpu_seconds": statistics.median(cpu)}))


if __name__ == "__main__":
    main()
