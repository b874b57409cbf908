"""Shared by the scripts that tests/peer/peerenv.py runs with .venv-peer's python (PyPI
torch, TransformerLens, circuit-tracer, SAELens). Never imported by pytest's .venv.

A script reads its arguments with start() (a JSON object; "work" is its folder) and hands
its result back with finish() (a JSON object; tensors go to safetensors files in "work").

TransformerLens does not load a local folder with from_pretrained; the recipe here does:
the config from get_pretrained_model_config(folder) (it reads FOLDER/config.json), the
weights from get_pretrained_state_dict(folder, cfg, hf_model) on the model transformers
loaded from the folder, both offline, then HookedTransformer(cfg, tokenizer) and
load_and_process_state_dict with every processing step off (no folded or centred weights:
the hooks see what loupe's see).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

import torch

NO_PROCESSING = dict(fold_ln=False, center_writing_weights=False, center_unembed=False,
                     fold_value_biases=False, refactor_factored_attn_matrices=False)


def start() -> dict[str, Any]:
    torch.set_num_threads(int(os.environ.get("LOUPE_PEER_THREADS", "2")))
    torch.manual_seed(0)
    with open(sys.argv[1]) as f:
        return json.load(f)


def finish(result: dict[str, Any]) -> None:
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)


def versions(*dists: str) -> dict[str, str]:
    from importlib.metadata import version

    return {d: version(d) for d in dists}


def load_hf(folder: str):
    """transformers' model and tokenizer from a local model folder (f32, eval mode)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return hf.eval(), tok


def tl_config(folder: str, hf):
    """TransformerLens' HookedTransformerConfig for a local model folder (CPU, f32)."""
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    return get_pretrained_model_config(folder, hf_cfg=hf.config.to_dict(), device="cpu",
                                       dtype=torch.float32)


def tl_state_dict(folder: str, cfg, hf) -> dict[str, torch.Tensor]:
    """The folder's weights under TransformerLens' names."""
    from transformer_lens.loading_from_pretrained import get_pretrained_state_dict

    return get_pretrained_state_dict(folder, cfg, hf_model=hf, dtype=torch.float32)


def load_hooked_transformer(folder: str):
    """(HookedTransformer, its config, transformers' model, tokenizer) for a local folder."""
    from transformer_lens import HookedTransformer

    hf, tok = load_hf(folder)
    cfg = tl_config(folder, hf)
    model = HookedTransformer(cfg, tokenizer=tok)
    model.load_and_process_state_dict(tl_state_dict(folder, cfg, hf), **NO_PROCESSING)
    return model.eval(), cfg, hf, tok
