"""Peer check in .venv-peer: circuit-tracer reads the transcoder sets and cross-layer
transcoders loupe writes in its layout (issue 15, files).

loupe (loupe.transcoders.random, seeded, through `loupe run`) writes per-layer transcoder sets
(relu; jumprelu; jumprelu with W_skip) and CLTs (relu, jumprelu) with t:save; circuit-tracer
loads each folder the way it loads its cache (load_transcoders_from_cache, reading
config.yaml): its kind and hooks are the ones loupe wrote, its parameters equal the files bit
for bit (W_enc one row per feature), and its encode (and for sets decode with the skip path,
for CLTs the whole forward pass) on random inputs equals a NumPy computation from the files
within 1e-5. loupe then loads the same folders (loupe.transcoders.load) and saves them again
with identical tensors.

A missing or broken .venv-peer fails this test with why (`bash install/setup test` makes it).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kernelutil as ku  # noqa: E402
import peerenv  # noqa: E402
import transcoder_files as tcf  # noqa: E402
from test_peer_saelens import close, loupe_run  # noqa: E402

N_LAYERS, D_MODEL, D_TC = 3, 16, 40
SETS = {
    "relu": "activation = 'relu'",
    "jumprelu": "activation = 'jumprelu'",
    "jumprelu_skip": "activation = 'jumprelu', skip = true",
    "clt_relu": "clt = true, activation = 'relu'",
    "clt_jumprelu": "clt = true, activation = 'jumprelu'",
}

_tools_built = ku.require_built(ku.LOUPE)


def clt_reference(files: dict[str, dict[str, np.ndarray]], xl: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-layer activations on xl[l] and the CLT's predictions of every MLP output (f64)."""
    acts, out = [], np.zeros(xl.shape[:2] + (D_MODEL,))
    for l in range(N_LAYERS):
        e = {k: v.astype(np.float64) for k, v in files[f"W_enc_{l}"].items()}
        z = xl[l] @ e[f"W_enc_{l}"].T + e[f"b_enc_{l}"]
        f = z * (z > e[f"threshold_{l}"]) if f"threshold_{l}" in e else np.maximum(z, 0)
        acts.append(f)
        w_dec = files[f"W_dec_{l}"][f"W_dec_{l}"].astype(np.float64)  # [d_tc, n_layers - l, d_model]
        for j in range(N_LAYERS - l):
            out[l + j] += f @ w_dec[:, j, :]
        out[l] += e[f"b_dec_{l}"]
    return acts, out


@pytest.mark.timeout(300)
def test_circuit_tracer_reads_loupes_transcoders(tmp_path: Path) -> None:
    lua = [f"loupe.transcoders.random{{n_layers = {N_LAYERS}, d_model = {D_MODEL}, d_transcoder = {D_TC}, "
           f"{extra}, seed = {i + 1}}}:save('{tmp_path}/tc/{name}')" for i, (name, extra) in enumerate(SETS.items())]
    loupe_run("\n".join(lua) + "\n", tmp_path)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((32, D_MODEL)).astype(np.float32)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    peer = peerenv.run("ct_files.py", {"sets": {n: str(tmp_path / "tc" / n) for n in SETS},
                                       "x": str(tmp_path / "x.safetensors")}, tmp_path / "peer")
    print(f"[peer] {peer['versions']}")
    ct = load_file(str(tmp_path / "peer" / "ct_loaded.safetensors"))
    worst = 0.0
    for name in SETS:
        info = peer["info"][name]
        clt = name.startswith("clt")
        assert info["model_kind"] == ("cross_layer_transcoder" if clt else "transcoder_set"), info
        assert info["n_layers"] == N_LAYERS, info
        assert info["feature_input_hook"] == "mlp.hook_in" and info["feature_output_hook"] == "mlp.hook_out", info
        folder = tmp_path / "tc" / name
        if not clt:
            layers = tcf.read_transcoder_set(folder)
            assert len(layers) == N_LAYERS
            for l, t in enumerate(layers):
                assert t["W_enc"].shape == (D_TC, D_MODEL), "one row per feature"
                assert ("activation_function.threshold" in t) == ("jumprelu" in name)
                assert ("W_skip" in t) == ("skip" in name)
                for k, v in load_file(str(folder / f"layer_{l}.safetensors")).items():
                    assert np.array_equal(ct[f"{name}.{l}.{k}"], v), f"{name} layer {l}: circuit-tracer's {k} differs"
                f = tcf.encode(t, x.astype(np.float64))
                assert 0 < np.count_nonzero(f) < f.size, f"{name}: no sparse activations to compare"
                worst = max(worst, close(ct[f"{name}.{l}.acts"], f, f"{name} layer {l} activations"),
                            close(ct[f"{name}.{l}.out"], tcf.decode(t, f, x.astype(np.float64)), f"{name} layer {l} output"))
        else:
            files = {f"{kind}_{l}": load_file(str(folder / f"{kind}_{l}.safetensors"))
                     for kind in ("W_enc", "W_dec") for l in range(N_LAYERS)}
            for l in range(N_LAYERS):
                e = files[f"W_enc_{l}"]
                assert e[f"W_enc_{l}"].shape == (D_TC, D_MODEL)
                assert np.array_equal(ct[f"{name}.W_enc"][l], e[f"W_enc_{l}"])
                assert np.array_equal(ct[f"{name}.b_enc"][l], e[f"b_enc_{l}"])
                assert np.array_equal(ct[f"{name}.b_dec"][l], e[f"b_dec_{l}"])
                assert np.array_equal(ct[f"{name}.W_dec.{l}"], files[f"W_dec_{l}"][f"W_dec_{l}"])
                if "jumprelu" in name:
                    assert np.array_equal(ct[f"{name}.activation_function.threshold"][l, 0], e[f"threshold_{l}"])
            xl = np.stack([x.astype(np.float64) * (1 + l / 10) for l in range(N_LAYERS)])
            acts, out = clt_reference(files, xl)
            for l in range(N_LAYERS):
                ref_l, _ = clt_reference(files, np.stack([x.astype(np.float64)] * N_LAYERS))
                worst = max(worst, close(ct[f"{name}.{l}.acts"], ref_l[l], f"{name} layer {l} activations"))
            assert 0 < np.count_nonzero(acts[0]) < acts[0].size
            worst = max(worst, close(ct[f"{name}.out"], out, f"{name} forward"))
    print(f"[peer] circuit-tracer on loupe's files vs NumPy: max |diff| {worst:.2e}")

    # loupe reads the same folders back and writes identical tensors.
    lua = [f"do local t = loupe.transcoders.load('{tmp_path}/tc/{n}'); print('{n}', t.kind, #t, t.d_model, "
           f"t.d_transcoder); t:save('{tmp_path}/again/{n}') end" for n in SETS]
    lines = loupe_run("\n".join(lua) + "\n", tmp_path).strip().splitlines()
    assert len(lines) == len(SETS), lines
    for line in lines:
        name, kind, n, dm, dtc = line.split("\t")
        assert kind == ("cross_layer_transcoder" if name.startswith("clt") else "transcoder_set"), line
        assert (int(n), int(dm), int(dtc)) == (N_LAYERS, D_MODEL, D_TC), line
        for f in sorted((tmp_path / "tc" / name).glob("*.safetensors")):
            a, b = load_file(str(f)), load_file(str(tmp_path / "again" / name / f.name))
            assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a), f"{name}/{f.name} changed"
