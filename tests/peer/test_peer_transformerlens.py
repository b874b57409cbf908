"""Peer check in .venv-peer: TransformerLens loads loupe's default model
(examples/models/default) offline, and its logits equal loupe's within 1e-4 (max abs, f32).

TransformerLens runs in .venv-peer (tests/peer/peerenv.py, peer_scripts/tl_run.py: the
local-folder recipe in peer_scripts/common.py); loupe runs through tests/peer/model_tool, as
in test_models.py (whose run_loupe this reuses). Prompts: two texts of different lengths
tokenized by the model's own tokenizer, a batch of three rows of seeded random ids, and a
single token. The hook points both tools name alike (TransformerLens' names are loupe's:
all 17 of each block, the embeddings and ln_final) must agree too, within 1e-4 of their
magnitude, with the same causal mask on the attention scores; transformers' logits,
computed beside TransformerLens', tell a loading fault of TransformerLens from one of loupe.

A missing or broken .venv-peer fails this test with why (`bash install/setup test` makes it).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernelutil as ku  # noqa: E402
import peerenv  # noqa: E402
import test_models as tm  # noqa: E402  (run_loupe: model_tool on a folder and a batch)

MODEL = ku.ROOT / "examples" / "models" / "default"
TOL = 1e-4
TEXTS = ["Mara lives in", "<|endoftext|>Ben lives in Oslo. Mara lives in Paris. Ben lives in"]

_tools_built = ku.require_built(tm.TOOL)


def batches() -> list[list[list[int]]]:
    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    texts = [[tok.encode(t, add_special_tokens=False).ids] for t in TEXTS]
    rng = np.random.default_rng(7)
    vocab = tok.get_vocab_size()
    return texts + [rng.integers(0, vocab, size=(3, 16)).tolist(), [[int(rng.integers(0, vocab))]]]


@pytest.mark.timeout(300)  # the first import of PyPI's torch on a cold disk is slow
def test_transformerlens_logits_equal_loupes(tmp_path: Path) -> None:
    runs = batches()
    assert len(runs[0][0]) != len(runs[1][0]) and runs[1][0][0] == 0, runs[:2]
    t0 = time.monotonic()
    peer = peerenv.run("tl_run.py", {"model": str(MODEL), "batches": runs}, tmp_path / "peer")
    print(f"[peer] TransformerLens in .venv-peer: {time.monotonic() - t0:.1f} s, {peer['versions']}")
    assert peer["cfg"]["n_layers"] == 4 and peer["cfg"]["act_fn"] == "gelu_new", peer["cfg"]
    for k, d in enumerate(peer["hf_vs_tl"]):
        assert d <= TOL, f"batch {k}: TransformerLens differs from transformers by {d:.3g} (its loading, not loupe)"

    for k, (batch, path) in enumerate(zip(runs, peer["files"])):
        ref = load_file(path)
        got = tm.run_loupe(MODEL, batch, tmp_path)
        assert got["logits"].shape == ref["logits"].shape, (got["logits"].shape, ref["logits"].shape)
        diff = float(np.abs(got["logits"] - ref["logits"]).max())
        print(f"[peer] batch {k} {np.shape(batch)}: max |logit diff| loupe vs TransformerLens {diff:.2e}")
        assert diff <= TOL, f"batch {k}: logits differ by {diff:.3g} (max |logit| {np.abs(ref['logits']).max():.3g})"

        shared = sorted(set(got) & set(ref) - {"logits"})
        assert len(shared) >= 4 * 17 + 2, f"too few hook points in common: {shared}"
        for name in shared:
            a, b = got[name], ref[name]
            assert a.shape == b.shape, f"{name}: loupe {a.shape}, TransformerLens {b.shape}"
            if name.endswith("attn.hook_attn_scores"):  # the causal mask: -inf (or a large negative)
                masked = ~np.isfinite(b) | (b < -1e4)
                assert (masked == (~np.isfinite(a) | (a < -1e4))).all(), f"batch {k}: {name} masks differ"
                a, b = a[~masked], b[~masked]
            d = float(np.abs(a - b).max())
            assert d <= TOL * max(1.0, float(np.abs(b).max())), f"batch {k}: {name} differs by {d:.3g}"
