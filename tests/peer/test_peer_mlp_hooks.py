"""Peer check in .venv-peer: loupe's MLP hook points on the default model
(examples/models/default) equal TransformerLens' within 1e-4 (of their magnitude):
blocks.L.mlp.hook_in = TransformerLens' blocks.L.ln2.hook_normalized with ln2's weight and
bias applied (the MLP's actual input, which transcoders read), and blocks.L.mlp.hook_out =
blocks.L.hook_mlp_out (the MLP's output, which they write).

TransformerLens runs in .venv-peer through peer_scripts/tl_run.py (no weight processing:
ln2 keeps its weight and bias, which are read here from the model's safetensors); loupe runs
through tests/peer/model_tool. A missing or broken .venv-peer fails this test with why.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernelutil as ku  # noqa: E402
import peerenv  # noqa: E402
import test_models as tm  # noqa: E402  (run_loupe: model_tool on a folder and a batch)
import test_peer_transformerlens as tpt  # noqa: E402  (MODEL, batches)

TOL = 1e-4
_tools_built = ku.require_built(tm.TOOL)


@pytest.mark.timeout(300)  # the first import of PyPI's torch on a cold disk is slow
def test_mlp_hook_in_and_out_equal_transformerlens(tmp_path: Path) -> None:
    runs = tpt.batches()
    t0 = time.monotonic()
    peer = peerenv.run("tl_run.py", {"model": str(tpt.MODEL), "batches": runs}, tmp_path / "peer")
    print(f"[peer] TransformerLens in .venv-peer: {time.monotonic() - t0:.1f} s, {peer['versions']}")
    n_layers = peer["cfg"]["n_layers"]
    assert n_layers == 4, peer["cfg"]
    w = load_file(str(tpt.MODEL / "model.safetensors"))
    for k, (batch, path) in enumerate(zip(runs, peer["files"])):
        ref = load_file(path)
        got = tm.run_loupe(tpt.MODEL, batch, tmp_path)
        for L in range(n_layers):
            assert f"blocks.{L}.mlp.hook_in" not in ref, "TransformerLens names mlp.hook_in: compare it directly"
            want_in = (ref[f"blocks.{L}.ln2.hook_normalized"] * w[f"transformer.h.{L}.ln_2.weight"]
                       + w[f"transformer.h.{L}.ln_2.bias"])
            for name, want in ((f"blocks.{L}.mlp.hook_in", want_in),
                               (f"blocks.{L}.mlp.hook_out", ref[f"blocks.{L}.hook_mlp_out"])):
                a = got[name]
                assert a.shape == want.shape, f"{name}: loupe {a.shape}, TransformerLens {want.shape}"
                d = float(np.abs(a - want).max())
                print(f"[peer] batch {k} {name}: max |diff| {d:.2e} (max |value| {np.abs(want).max():.3g})")
                assert d <= TOL * max(1.0, float(np.abs(want).max())), f"batch {k}: {name} differs by {d:.3g}"
