"""Peer check in .venv-peer: circuit-tracer loads the default model's shipped transcoder set
(examples/models/default/transcoders, trained by loupe) and computes what loupe computes.

loupe (`loupe run`) runs the default model on two prompts of the two-hop fact ("The capital of
the country where Mara lives is", "Mara lives in"), takes each layer's real MLP input
(blocks.L.mlp.hook_in) and that layer's transcoder's activations and output (sae:encode,
sae:decode with the skip path) from the set as loupe.transcoders.load reads it. circuit-tracer
loads a copy of the folder the way it loads its cache (load_transcoders_from_cache, through
peer_scripts/ct_files.py): a transcoder_set reading mlp.hook_in and writing mlp.hook_out, with a
skip connection on every layer, and on the same inputs its activations and outputs equal
loupe's within 1e-5 (relative to the largest value), with features firing on every layer.

A missing or broken .venv-peer fails this test with why (`bash install/setup test` makes it).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kernelutil as ku  # noqa: E402
import peerenv  # noqa: E402
from test_peer_saelens import close, loupe_run  # noqa: E402

MODEL = ku.ROOT / "examples" / "models" / "default"
TC = MODEL / "transcoders"
PROMPTS = ["The capital of the country where Mara lives is", "Mara lives in"]
N_LAYERS, D_MODEL, D_TC = 4, 192, 1536

_tools_built = ku.require_built(ku.LOUPE)

SCRIPT = """
m = loupe.load("{model}")
set = loupe.transcoders.load("{tc}")
local function put(tag, l, t)
    for _, row in ipairs(t:totable()) do
        local s = {{}}
        for i, v in ipairs(row) do s[i] = string.format("%.9g", v) end
        print(tag, l, table.concat(s, " "))
    end
end
for _, p in ipairs({{{prompts}}}) do
    local r = m:run(p)
    for l = 0, set.n_layers - 1 do
        local x = r["blocks." .. l .. ".mlp.hook_in"]
        x = x:reshape(x:shape()[2], x:shape()[3])
        local t = set[l + 1]
        local f = t:encode(x)
        put("x", l, x)
        put("f", l, f)
        put("y", l, t:decode(f, x))
    end
end
"""


def parse(out: str) -> dict[tuple[str, int], np.ndarray]:
    rows: dict[tuple[str, int], list[list[float]]] = {}
    for line in out.strip().splitlines():
        tag, layer, values = line.split("\t")
        rows.setdefault((tag, int(layer)), []).append([float(v) for v in values.split()])
    return {k: np.array(v, dtype=np.float64) for k, v in rows.items()}


@pytest.mark.timeout(300)
def test_circuit_tracer_loads_the_shipped_set_and_agrees(tmp_path: Path) -> None:
    folder = tmp_path / "tc" / "loupe-default"
    shutil.copytree(TC, folder)
    prompts = ", ".join(f'"{p}"' for p in PROMPTS)
    got = parse(loupe_run(SCRIPT.format(model=MODEL, tc=folder, prompts=prompts), tmp_path))
    xs = [got[("x", l)] for l in range(N_LAYERS)]
    n = xs[0].shape[0]
    assert n >= 10 and all(x.shape == (n, D_MODEL) for x in xs), [x.shape for x in xs]
    x = np.concatenate(xs).astype(np.float32)  # every layer's real inputs; each layer sees all of them
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    peer = peerenv.run("ct_files.py", {"sets": {"default": str(folder)}, "x": str(tmp_path / "x.safetensors")},
                       tmp_path / "peer")
    print(f"[peer] {peer['versions']}")
    info = peer["info"]["default"]
    assert info["class"] == "TranscoderSet" and info["model_kind"] == "transcoder_set", info
    assert info["n_layers"] == N_LAYERS, info
    assert info["feature_input_hook"] == "mlp.hook_in" and info["feature_output_hook"] == "mlp.hook_out", info
    ct = load_file(str(tmp_path / "peer" / "ct_loaded.safetensors"))
    worst = 0.0
    for l in range(N_LAYERS):
        assert ct[f"default.{l}.W_skip"].shape == (D_MODEL, D_MODEL), f"layer {l}: circuit-tracer sees no skip"
        assert ct[f"default.{l}.W_enc"].shape == (D_TC, D_MODEL)
        assert f"default.{l}.activation_function.threshold" in ct, f"layer {l}: not JumpReLU in circuit-tracer"
        rows = slice(l * n, (l + 1) * n)  # layer l's own inputs
        f, y = got[("f", l)], got[("y", l)]
        assert f.shape == (n, D_TC) and y.shape == (n, D_MODEL)
        assert 0 < np.count_nonzero(f) < f.size // 4, f"layer {l}: {np.count_nonzero(f)} active of {f.size}"
        assert np.array_equal(ct[f"default.{l}.acts"][rows] > 0, f > 0), f"layer {l}: other features fire"
        worst = max(worst, close(ct[f"default.{l}.acts"][rows], f, f"layer {l} activations"),
                    close(ct[f"default.{l}.out"][rows], y, f"layer {l} output"))
    print(f"[peer] circuit-tracer vs loupe on the shipped set, {n} positions x {N_LAYERS} layers: "
          f"max |diff| {worst:.2e}")
