"""Peer check in .venv-peer: SAELens reads the SAEs loupe writes, and loupe reads the ones
SAELens writes (issue 15, files).

- An SAE of every architecture loupe saves in SAELens' layout (standard, topk with and without
  rescale_acts_by_decoder_norm, jumprelu, batchtopk saved as jumprelu, transcoder,
  skip_transcoder, jumprelu_transcoder, jumprelu_skip_transcoder), with seeded random weights
  (loupe.sae.random, through `loupe run`), is loaded by SAELens' SAE.load_from_disk: its
  class and configuration are the ones loupe meant, its state dict equals the files bit for
  bit, and its encode and forward pass on random inputs equal a NumPy computation (f64) from
  the weights loupe wrote, within 1e-5.
- SAEs SAELens makes through its own config classes (random weights) and saves with
  save_model are loaded by loupe (loupe.sae.load) with their configuration, and saved again
  by loupe with identical tensors.

- loupe's own encode and forward (sae:forward) of its SAEs on the same inputs equal SAELens'
  activations and outputs within 1e-5, with the same features active.
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

TOL = 1e-5
D_IN, D_SAE, D_OUT = 16, 48, 12
# name: (arch, extra fields of loupe.sae.random, SAELens' class, its architecture)
LOUPE_SAES = {
    "standard": ("standard", "", "StandardSAE", "standard"),
    "topk": ("topk", "k = 5", "TopKSAE", "topk"),
    "topk_rescale": ("topk", "k = 7, rescale_acts_by_decoder_norm = true", "TopKSAE", "topk"),
    "jumprelu": ("jumprelu", "", "JumpReLUSAE", "jumprelu"),
    "batchtopk": ("batchtopk", "k = 5", "JumpReLUSAE", "jumprelu"),
    "transcoder": ("standard", f"transcoder = true, d_out = {D_OUT}", "Transcoder", "transcoder"),
    "skip_transcoder": ("standard", f"transcoder = true, skip = true, d_out = {D_OUT}", "SkipTranscoder",
                        "skip_transcoder"),
    "jumprelu_transcoder": ("jumprelu", f"transcoder = true, d_out = {D_OUT}", "JumpReLUTranscoder",
                            "jumprelu_transcoder"),
    "jumprelu_skip_transcoder": ("jumprelu", f"transcoder = true, skip = true, d_out = {D_OUT}",
                                 "JumpReLUSkipTranscoder", "jumprelu_skip_transcoder"),
}
SAELENS_MADE = {
    "standard": {"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE},
    "topk": {"architecture": "topk", "d_in": D_IN, "d_sae": D_SAE, "k": 6, "rescale_acts_by_decoder_norm": True},
    "jumprelu": {"architecture": "jumprelu", "d_in": D_IN, "d_sae": D_SAE, "apply_b_dec_to_input": False},
    "transcoder": {"architecture": "transcoder", "d_in": D_IN, "d_sae": D_SAE, "d_out": D_OUT,
                   "apply_b_dec_to_input": False},
    "skip_transcoder": {"architecture": "skip_transcoder", "d_in": D_IN, "d_sae": D_SAE, "d_out": D_OUT,
                        "apply_b_dec_to_input": False},
    "jumprelu_transcoder": {"architecture": "jumprelu_transcoder", "d_in": D_IN, "d_sae": D_SAE, "d_out": D_OUT,
                            "apply_b_dec_to_input": False},
}

_tools_built = ku.require_built(ku.LOUPE)


def loupe_run(script: str, work: Path) -> str:
    """Runs a Lua script with `loupe run`; its printed output."""
    path = work / "script.lua"
    path.write_text(script)
    p = subprocess.run([str(ku.LOUPE), "run", str(path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"loupe run failed:\n{p.stdout}\n{p.stderr}"
    return p.stdout


def reference(w: dict[str, np.ndarray], arch: str, cfg: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SAELens' inference maths in f64 from the weights in the files: (acts, output)."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    tc = "transcoder" in arch
    x_in = x - w["b_dec"] if cfg.get("apply_b_dec_to_input") and not tc else x
    z = x_in @ w["W_enc"] + w["b_enc"]
    norms = np.linalg.norm(w["W_dec"], axis=1)
    if arch == "topk":
        zz = z * norms if cfg.get("rescale_acts_by_decoder_norm") else z
        keep = np.argsort(-zz, axis=1)[:, :cfg["k"]]
        f = np.zeros_like(zz)
        np.put_along_axis(f, keep, np.maximum(np.take_along_axis(zz, keep, 1), 0), 1)
        dec_in = f / norms if cfg.get("rescale_acts_by_decoder_norm") else f
    elif "jumprelu" in arch:
        f = np.maximum(z, 0) * (z > w["threshold"])
        dec_in = f
    else:
        f = np.maximum(z, 0)
        dec_in = f
    y = dec_in @ w["W_dec"] + w["b_dec"]
    if "W_skip" in w:
        y = y + x @ w["W_skip"].T
    return f, y


def close(a: np.ndarray, b: np.ndarray, what: str) -> float:
    d = float(np.abs(a - b).max())
    assert d <= TOL * max(1.0, float(np.abs(b).max())), f"{what}: differs by {d:.3g}"
    return d


@pytest.mark.timeout(300)
def test_saelens_and_loupe_read_each_others_saes(tmp_path: Path) -> None:
    lua = []
    for name, (arch, extra, _, _) in LOUPE_SAES.items():
        hooks = ("hook = 'blocks.1.mlp.hook_in', hook_out = 'blocks.1.mlp.hook_out'" if "transcoder" in name
                 else "hook = 'blocks.1.hook_resid_post'")
        fields = ", ".join(f for f in (f"arch = '{arch}', d_in = {D_IN}, d_sae = {D_SAE}", extra, hooks,
                                        f"seed = {len(lua) + 1}") if f)
        lua.append(f"loupe.sae.random{{{fields}}}:save('{tmp_path}/loupe/{name}', "
                   f"{{model_name = 'loupe-default', context_size = 64}})")
    loupe_run("\n".join(lua) + "\n", tmp_path)

    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, D_IN)).astype(np.float32)
    x_tc = rng.standard_normal((64, D_IN)).astype(np.float32)
    save_file({"x": x, "x_tc": x_tc}, str(tmp_path / "x.safetensors"))
    peer = peerenv.run("sl_files.py", {"loupe": {n: str(tmp_path / "loupe" / n) for n in LOUPE_SAES},
                                       "x": str(tmp_path / "x.safetensors"), "make": SAELENS_MADE},
                       tmp_path / "peer")
    print(f"[peer] {peer['versions']}")
    sl = load_file(str(tmp_path / "peer" / "sl_loaded.safetensors"))

    # 1. SAELens reads what loupe wrote.
    worst = 0.0
    for name, (_, _, cls, arch) in LOUPE_SAES.items():
        got = peer["loaded"][name]
        assert got["class"] == cls and got["architecture"] == arch, (name, got)
        tc = "transcoder" in name
        assert got["d_in"] == D_IN and got["d_sae"] == D_SAE and (got["d_out"] == D_OUT) == tc, (name, got)
        assert got["hook_name"] == ("blocks.1.mlp.hook_in" if tc else "blocks.1.hook_resid_post"), got
        if tc:
            assert got["hook_name_out"] == "blocks.1.mlp.hook_out", got
        assert got["model_name"] == "loupe-default" and got["context_size"] == 64, got
        assert got["apply_b_dec_to_input"] == (not tc), got
        files = load_file(str(tmp_path / "loupe" / name / "sae_weights.safetensors"))
        assert ("threshold" in files) == ("jumprelu" in arch), (name, list(files))
        assert ("W_skip" in files) == ("skip" in name), (name, list(files))
        for k, v in files.items():
            assert np.array_equal(sl[f"{name}.{k}"], v), f"{name}: SAELens' {k} differs from the file"
        cfg = {"apply_b_dec_to_input": got["apply_b_dec_to_input"], "k": got["k"],
               "rescale_acts_by_decoder_norm": got["rescale"]}
        f, y = reference(files, arch, cfg, x_tc if tc else x)
        assert 0 < np.count_nonzero(f) < f.size, f"{name}: no sparse activations to compare"
        if arch == "topk":
            assert (np.count_nonzero(f, axis=1) <= got["k"]).all()
        worst = max(worst, close(sl[f"{name}.acts"], f, f"{name} activations"),
                    close(sl[f"{name}.out"], y, f"{name} output"))
    print(f"[peer] SAELens on loupe's files vs NumPy: max |diff| {worst:.2e} over {len(LOUPE_SAES)} SAEs")

    # 1b. loupe's own encode and forward (sae:forward: encode then decode) of the same SAEs on
    # the same inputs equal SAELens' (float32 values printed exactly, %.9g).
    def lua_matrix(a: np.ndarray) -> str:
        return "{" + ", ".join("{" + ", ".join(f"{v:.9g}" for v in row) + "}" for row in a) + "}"

    lua = ["local function dump(t) local o = {} for _, r in ipairs(t:totable()) do "
           "for _, v in ipairs(r) do o[#o + 1] = string.format('%.9g', v) end end return table.concat(o, ' ') end",
           f"local x, x_tc = loupe.tensor({lua_matrix(x)}), loupe.tensor({lua_matrix(x_tc)})"]
    for name in LOUPE_SAES:
        lua.append(f"do local s = loupe.sae.load('{tmp_path}/loupe/{name}'); "
                   f"local y, f = s:forward({'x_tc' if 'transcoder' in name else 'x'}); "
                   f"print('{name}'); print(dump(f)); print(dump(y)) end")
    lines = loupe_run("\n".join(lua) + "\n", tmp_path).strip().splitlines()
    assert len(lines) == 3 * len(LOUPE_SAES), lines[:3]
    worst = 0.0
    for q, name in enumerate(LOUPE_SAES):
        assert lines[3 * q] == name, lines[3 * q]
        ours_f = np.array(lines[3 * q + 1].split(), dtype=np.float64).reshape(64, D_SAE)
        ours_y = np.array(lines[3 * q + 2].split(), dtype=np.float64).reshape(64, -1)
        theirs_f, theirs_y = sl[f"{name}.acts"].astype(np.float64), sl[f"{name}.out"].astype(np.float64)
        assert ours_y.shape == theirs_y.shape, (name, ours_y.shape, theirs_y.shape)
        assert np.array_equal(ours_f != 0, theirs_f != 0), f"{name}: loupe and SAELens activate different features"
        worst = max(worst, close(ours_f, theirs_f, f"{name} activations, loupe vs SAELens"),
                    close(ours_y, theirs_y, f"{name} output, loupe vs SAELens"))
    print(f"[peer] loupe's encode/forward vs SAELens': max |diff| {worst:.2e} over {len(LOUPE_SAES)} SAEs")

    # 2. loupe reads what SAELens wrote.
    lua = []
    for name, folder in peer["made"].items():
        lua.append(f"do local s = loupe.sae.load('{folder}'); "
                   f"print('{name}', s.arch, s.d_in, s.d_sae, s.d_out, s.k or 0, s.cfg.apply_b_dec_to_input, "
                   f"s.cfg.rescale_acts_by_decoder_norm, s.hook_in); "
                   f"s:save('{tmp_path}/resaved/{name}') end")
    lines = loupe_run("\n".join(lua) + "\n", tmp_path).strip().splitlines()
    seen = {}
    for line in lines:
        name, arch, d_in, d_sae, d_out, k, ab, rescale, hook = line.split("\t")
        seen[name] = (arch, int(d_in), int(d_sae), int(d_out), int(k), ab, rescale, hook)
    assert set(seen) == set(SAELENS_MADE), lines
    for name, spec in SAELENS_MADE.items():
        arch, d_in, d_sae, d_out, k, ab, rescale, hook = seen[name]
        assert arch == spec["architecture"] and d_in == D_IN and d_sae == D_SAE, (name, seen[name])
        assert d_out == spec.get("d_out", D_IN) and k == spec.get("k", 0), (name, seen[name])
        assert ab == str(spec.get("apply_b_dec_to_input", True)).lower(), (name, seen[name])
        assert rescale == str(spec.get("rescale_acts_by_decoder_norm", False)).lower(), (name, seen[name])
        assert hook == "blocks.1.hook_resid_post", (name, hook)
        theirs = load_file(str(Path(peer["made"][name]) / "sae_weights.safetensors"))
        ours = load_file(str(tmp_path / "resaved" / name / "sae_weights.safetensors"))
        assert set(ours) == set(theirs), (name, sorted(ours), sorted(theirs))
        for t, v in theirs.items():
            assert np.any(v != 0), f"{name}: SAELens' {t} is all zero: the comparison would prove little"
            assert np.array_equal(ours[t], v), f"{name}: {t} loaded by loupe differs from SAELens' file"
