"""Runs TransformerLens on a local model folder: for each batch of token ids, the logits and
every hook point of run_with_cache, saved to WORK/tl_{k}.safetensors; and transformers' own
logits for the same batch, to tell a loading fault of TransformerLens from one of loupe.

Arguments: {"model": FOLDER, "batches": [[[id, ...], ...], ...]}.
Result: {"files": [...], "hf_vs_tl": [max |logit diff|, ...], "versions": {...}}.
"""
from __future__ import annotations

import os

import torch
from safetensors.torch import save_file

import common

args = common.start()
model, cfg, hf, _ = common.load_hooked_transformer(args["model"])
files, hf_vs_tl = [], []
with torch.no_grad():
    for k, batch in enumerate(args["batches"]):
        tokens = torch.tensor(batch, dtype=torch.long)
        logits, cache = model.run_with_cache(tokens)
        hf_logits = hf(tokens).logits
        hf_vs_tl.append(float((hf_logits - logits).abs().max()))
        tensors = {name: t.detach().float().contiguous().clone() for name, t in cache.items()}  # no shared storage
        tensors["logits"] = logits.float().contiguous().clone()
        path = os.path.join(args["work"], f"tl_{k}.safetensors")
        save_file(tensors, path)
        files.append(path)

common.finish({
    "files": files,
    "hf_vs_tl": hf_vs_tl,
    "cfg": {"n_layers": cfg.n_layers, "d_model": cfg.d_model, "d_vocab": cfg.d_vocab,
            "act_fn": cfg.act_fn, "normalization_type": cfg.normalization_type},
    "versions": common.versions("torch", "transformer-lens", "transformers"),
})
