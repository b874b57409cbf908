"""Runs SAELens' run_evals (sae_lens.evals) on an SAE folder and a model folder
(TransformerLens, common.load_hooked_transformer), over given token windows.

Arguments: {"model": FOLDER, "sae": FOLDER, "windows": [[id, ...], ...], "batch": prompts per
batch}. The activation store is a stand-in that serves exactly those windows, `batch` at a
time, from the start again after reset_input_dataset (what run_evals calls between its
reconstruction and its sparsity passes), so SAELens sees the tokens loupe evaluates.
Result: {"metrics": run_evals' first result, "ignore_tokens": the ids it leaves out,
"versions": {...}}.
"""
from __future__ import annotations

import torch
from sae_lens import SAE
from sae_lens.evals import EvalConfig, get_special_token_ids, run_evals
from sae_lens.training.activation_scaler import ActivationScaler

import common


class WindowStore:
    def __init__(self, windows: list[list[int]], batch: int) -> None:
        self.tokens = torch.tensor(windows, dtype=torch.long)
        self.store_batch_size_prompts = batch
        self.context_size = self.tokens.shape[1]
        self.pos = 0

    def get_batch_tokens(self, n: int) -> torch.Tensor:
        if self.pos + n > len(self.tokens):
            raise RuntimeError(f"asked for {n} windows at {self.pos}, have {len(self.tokens)}")
        out = self.tokens[self.pos:self.pos + n]
        self.pos += n
        return out

    def reset_input_dataset(self) -> None:
        self.pos = 0


args = common.start()
model, cfg, hf, tok = common.load_hooked_transformer(args["model"])
sae = SAE.load_from_disk(args["sae"], device="cpu")
windows, batch = args["windows"], args["batch"]
assert len(windows) % batch == 0, (len(windows), batch)
nb = len(windows) // batch
store = WindowStore(windows, batch)
ec = EvalConfig(batch_size_prompts=batch, n_eval_reconstruction_batches=nb, compute_kl=True, compute_ce_loss=True,
                compute_l2_norms=True, n_eval_sparsity_variance_batches=nb, compute_sparsity_metrics=True,
                compute_variance_metrics=True, compute_featurewise_density_statistics=True)
with torch.no_grad():
    metrics, feature_metrics = run_evals(sae, store, model, ActivationScaler(), eval_config=ec)
common.finish({
    "metrics": metrics,
    "ignore_tokens": sorted(int(t) for t in get_special_token_ids(model.tokenizer)),
    "feature_density": [float(v) for v in feature_metrics.get("feature_density", [])],
    "versions": common.versions("torch", "sae-lens", "transformer-lens"),
})
