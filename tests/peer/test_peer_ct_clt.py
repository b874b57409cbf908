"""Peer check in .venv-peer: a cross-layer transcoder TRAINED by loupe (loupe.sae.train{arch
= "clt"}, a short run on the default model, relu and jumprelu) and saved with t:save is loaded
by circuit-tracer (load_transcoders_from_cache, a CrossLayerTranscoder), and on the same
inputs (real MLP inputs of every layer from loupe's activation stream) circuit-tracer's
encode_layer and forward equal loupe's clt:encode and clt:forward within 1e-5.

A missing or broken .venv-peer fails this test with why (`bash install/setup test` makes it).
"""
from __future__ import annotations

import subprocess
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
N_LAYERS, D_MODEL, WIDTH, ROWS = 4, 192, 128, 24
ACTS = ("relu", "jumprelu")

_tools_built = ku.require_built(ku.LOUPE)

LUA = """
m = loupe.load(MODEL)
ds = loupe.data.load{files = {CORPUS}, tokenizer = loupe.tokenizer(MODEL)}
local hooks = {}
for l = 0, L - 1 do hooks[l + 1] = "blocks." .. l .. ".mlp.hook_in" end
local s = loupe.activations{model = m, hooks = hooks, data = ds, batch = ROWS, ctx = 64, seed = 7}
local x = {s:next()}
local function dump(tag, ts)
  for l = 1, #ts do
    for n, row in ipairs(ts[l]:totable()) do
      local v = {}
      for j, a in ipairs(row) do v[j] = string.format("%.9g", a) end
      print(tag, l - 1, n - 1, table.concat(v, " "))
    end
  end
end
dump("x", x)
for _, act in ipairs(ACTS) do
  local c = loupe.sae.train{model = m, arch = "clt", activation = act, data = ds, width = WIDTH, batch = 256,
                            steps = 30, lr = 2e-3, ctx = 64, seed = 3, live = false, l1 = 3e-4}
  c:save(OUT .. "/" .. act)
  dump(act .. ".acts", c:encode(x))
  dump(act .. ".out", c:forward(x))
end
"""


def parse(text: str) -> dict[str, np.ndarray]:
    rows: dict[str, dict[tuple[int, int], list[float]]] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 4:
            continue
        tag, l, n, vals = parts
        rows.setdefault(tag, {})[(int(l), int(n))] = [float(v) for v in vals.split()]
    out = {}
    for tag, r in rows.items():
        width = len(next(iter(r.values())))
        a = np.zeros((N_LAYERS, ROWS, width), dtype=np.float64)
        for (l, n), v in r.items():
            a[l, n] = v
        out[tag] = a
    return out


@pytest.mark.timeout(600)
def test_circuit_tracer_reads_a_clt_loupe_trained(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    subprocess.run([sys.executable, str(ku.ROOT / "tools" / "make_corpus.py"), "--seed", "1234", "--size", "200000",
                    str(corpus)], check=True, capture_output=True)
    head = (f"MODEL = {str(MODEL)!r}\nCORPUS = {str(corpus)!r}\nOUT = {str(tmp_path / 'clt')!r}\nL = {N_LAYERS}\n"
            f"ROWS = {ROWS}\nWIDTH = {WIDTH}\nACTS = {{'relu', 'jumprelu'}}\n")
    got = parse(loupe_run(head + LUA, tmp_path))
    x = got["x"].astype(np.float32)
    assert x.shape == (N_LAYERS, ROWS, D_MODEL)
    save_file({"xl": x}, str(tmp_path / "xl.safetensors"))
    save_file({"x": x[0]}, str(tmp_path / "x.safetensors"))
    peer = peerenv.run("ct_files.py", {"sets": {a: str(tmp_path / "clt" / a) for a in ACTS},
                                       "x": str(tmp_path / "x.safetensors"),
                                       "xl": {a: str(tmp_path / "xl.safetensors") for a in ACTS}}, tmp_path / "peer")
    print(f"[peer] {peer['versions']}")
    ct = load_file(str(tmp_path / "peer" / "ct_loaded.safetensors"))
    worst = 0.0
    for a in ACTS:
        info = peer["info"][a]
        assert info["model_kind"] == "cross_layer_transcoder" and info["n_layers"] == N_LAYERS, info
        acts, out = got[f"{a}.acts"], got[f"{a}.out"]
        assert acts.shape[2] == WIDTH and out.shape[2] == D_MODEL
        nz = np.count_nonzero(acts)
        assert 0 < nz < acts.size, f"{a}: no sparse activations to compare ({nz} of {acts.size})"
        for l in range(N_LAYERS):
            worst = max(worst, close(ct[f"{a}.xl.{l}.acts"], acts[l], f"{a} layer {l} activations"))
        worst = max(worst, close(ct[f"{a}.xl.out"], out, f"{a} forward"))
        # the inputs differ per layer and every layer's output depends on earlier layers' features
        assert np.abs(out[N_LAYERS - 1]).max() > 0
    print(f"[peer] circuit-tracer vs loupe on a loupe-trained CLT: max |diff| {worst:.2e}")
