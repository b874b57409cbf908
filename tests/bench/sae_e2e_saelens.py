"""SAELens' side of bench_sae's end-to-end line (tests/bench/sae.c starts it, in .venv-peer):
SAELens' own runner (LanguageModelSAETrainingRunner) harvesting a hook point of the default
model and training a TopK SAE on it, offline: the model is TransformerLens' HookedTransformer
built from the local folder (tests/peer/peer_scripts/common.py, as the peer tests do) and
passed as override_model; the tokens are a pre-tokenized datasets.Dataset of windows passed
as override_dataset, the same windows loupe's side runs (bench_tokens below, also in sae.c).
A mixing buffer of BUFFER training batches (SAELens' n_batches_in_buffer counts
contexts: BUFFER x BATCH / CTX of them). f32 on the CPU, the given threads.

    sae_e2e_saelens.py BATCH STEPS 0 THREADS  ->  {"saelens_tokens_per_s": ...}
with LOUPE_BENCH_E2E="MODEL_FOLDER:HOOK:WIDTH:K:CTX:WINDOWS:BUFFER". Tokens per second are
the activations trained on (BATCH x STEPS) over the runner's whole run (harvesting,
mixing and training; the model load is not counted). Prints {"saelens_tokens_per_s": null,
"why": "..."} when SAELens or the model cannot be loaded."""
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bench_tokens(n_windows: int, ctx: int, vocab: int) -> list[list[int]]:
    """n windows of ctx ids in 1..vocab-1 (no BOS: both sides put it first), from the LCG
    x <- (1103515245 x + 12345) mod 2^31 started at 1: what sae.c makes too."""
    x, out = 1, []
    for _ in range(n_windows):
        row = []
        for _ in range(ctx):
            x = (1103515245 * x + 12345) % (1 << 31)
            row.append(1 + (x >> 8) % (vocab - 1))
        out.append(row)
    return out


def main() -> None:
    if len(sys.argv) != 5:
        print("sae_e2e_saelens.py: run by bench_sae (tests/bench/run sae), not on its own", file=sys.stderr)
        sys.exit(2)
    batch, steps, _, threads = (int(a) for a in sys.argv[1:5])
    folder, hook, width, k, ctx, windows, buffer = os.environ["LOUPE_BENCH_E2E"].split(":")
    width, k, ctx, windows, buffer = int(width), int(k), int(ctx), int(windows), int(buffer)
    for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[v] = "1"
    os.environ.setdefault("WANDB_MODE", "disabled")
    try:
        import torch
        from datasets import Dataset
        from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner
        from sae_lens.config import LoggingConfig
        from sae_lens.saes.topk_sae import TopKTrainingSAEConfig

        sys.path.insert(0, str(ROOT / "tests" / "peer" / "peer_scripts"))
        import common

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = common.load_hooked_transformer(folder)[0]
    except Exception as e:  # noqa: BLE001 - any failure to set up is reported, not raised
        print(json.dumps({"saelens_tokens_per_s": None, "why": f"{type(e).__name__}: {e}"}))
        return
    d_in = model.cfg.d_model
    # windows of ctx ids (SAELens' check); its store and loupe's stream each cut them into
    # contexts of their own with BOS first
    ds = Dataset.from_dict({"input_ids": bench_tokens(windows, ctx, model.cfg.d_vocab)})
    cfg = LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(d_in=d_in, d_sae=width, k=k, dtype="float32", device="cpu"),
        model_name="loupe-default", hook_name=hook, dataset_path="", is_dataset_tokenized=True, streaming=False,
        context_size=ctx, prepend_bos=True, training_tokens=batch * steps, train_batch_size_tokens=batch,
        n_batches_in_buffer=max(1, buffer * batch // ctx),  # its buffer holds this x ctx rows store_batch_size_prompts=max(1, batch // ctx), device="cpu", lr=3e-4,
        logger=LoggingConfig(log_to_wandb=False), n_checkpoints=0, save_final_checkpoint=False, output_path=None,
        verbose=False)
    t0 = time.perf_counter()
    runner = LanguageModelSAETrainingRunner(cfg, override_dataset=ds, override_model=model)
    runner.run()
    sec = time.perf_counter() - t0
    print(json.dumps({"saelens_tokens_per_s": batch * steps / sec, "seconds": sec}))


if __name__ == "__main__":
    main()
