"""End to end: feature harvest, dashboards and labels (issue 16 items 1-3) on the default model.

A hand-built SAE is written in SAELens' layout: feature 0 reads the embedding direction of
the token " Oslo" at hook_embed (its threshold halfway between that token's score and the
best other token's, so it fires on " Oslo" and nothing else) and writes a fixed random
direction; feature 1 never fires. tests/e2e/lua/features.lua, under `loupe run`, harvests a
small corpus and checks that the feature fires and the other does not, that the dashboard's
top examples all fire on " Oslo", that its top promoted token is the argmax of
W_dec,0 (ln_final's weight folded) W_U^T computed here with numpy, its label, the save/load
round trip of harvest and labels, hostile labels escaped, the bad-input errors, the
dashboard without a harvest, and the 300 KB bound. The harvest's exactness against a brute
force is tests/unit/dict/test_harvest.c.
"""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import kernelutil as ku

SCRIPT = ku.ROOT / "tests" / "e2e" / "lua" / "features.lua"
MODEL = ku.ROOT / "examples" / "models" / "default"


def lua_str(s: str) -> str:
    """A Lua string literal of s (JSON's escapes are Lua's for these, raw UTF-8 kept)."""
    return json.dumps(s, ensure_ascii=False)


def shown(t: str) -> str:
    """A token as the figures' text/plain shows it (spaces as U+2423)."""
    return t.replace(" ", "\u2423")


def test_features(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    ids = tok.encode(" Oslo").ids
    assert len(ids) == 1, ids
    T = ids[0]
    w = st.load_file(str(MODEL / "model.safetensors"))
    E = w["transformer.wte.weight"].astype(np.float64)
    g = w["transformer.ln_f.weight"].astype(np.float64)
    e = E[T] / np.linalg.norm(E[T])
    score = E @ e
    other = np.max(np.delete(score, T))
    assert score[T] > other + 1e-3, "the embedding does not separate the token"
    D = E.shape[1]
    W_enc = np.zeros((D, 2), np.float32)
    W_enc[:, 0] = e
    b_enc = np.array([-(score[T] + other) / 2, -1e6], np.float32)
    W_dec = np.zeros((2, D), np.float32)
    W_dec[0] = np.random.default_rng(7).standard_normal(D)
    folder = tmp_path / "planted"
    folder.mkdir()
    st.save_file({"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": np.zeros(D, np.float32)},
                 str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({
        "architecture": "standard", "d_in": D, "d_sae": 2, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": False, "normalize_activations": "none",
        "metadata": {"hook_name": "hook_embed", "model_name": "default"}}))
    logits = (W_dec[0].astype(np.float64) * g) @ E.T
    top = int(np.argmax(logits))
    top_text = tok.id_to_token(top).replace("\u0120", " ")
    oslo = " Oslo"
    head = (f"MODEL = {str(MODEL)!r}\nPLANTED = {str(folder)!r}\nOUT = {str(tmp_path)!r}\n"
            f"TOKEN_TEXT = {lua_str(oslo)}\nTOKEN_SHOWN = {lua_str(shown(oslo))}\n"
            f"TOP_LOGIT_TEXT = {lua_str(top_text)}\nTOP_LOGIT_SHOWN = {lua_str(shown(top_text))}\n")
    script = tmp_path / "features.lua"
    script.write_text(head + SCRIPT.read_text())
    p = subprocess.run([str(ku.LOUPE), "run", str(script)], capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"loupe run failed ({p.returncode}):\n{out[-3000:]}"
    assert p.stdout.rstrip().endswith("ok"), out[-3000:]
    assert "planted ok" in out
