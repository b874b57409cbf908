"""sae:export (issue 16 item 7): Neuronpedia and circuit-tracer feature JSON.

The planted SAE of test_features.py (feature 0 reads the embedding direction of " Oslo" at
hook_embed and fires on that token only; feature 1 never fires) is harvested on a small
corpus with hostile text in it and exported in both formats by tests/e2e/lua/feature_export.lua.
Each file must validate against a schema written here from ../shared/DICTIONARY.md ("Feature
dashboards": the fields those viewers read, with their types), and carry the right content:
the top examples fire on " Oslo" (the token at train_token_ind / maxValueTokenIndex), the
density and max are the harvest's, the top logit is W_U's argmax computed here with numpy.
The circuit-tracer files also load with circuit-tracer's own model in tests/peer.
"""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import kernelutil as ku
from test_features import MODEL, lua_str

jsonschema = pytest.importorskip("jsonschema")

SCRIPT = ku.ROOT / "tests" / "e2e" / "lua" / "feature_export.lua"

NUMS = {"type": "array", "items": {"type": "number"}}
STRS = {"type": "array", "items": {"type": "string"}}

NEURONPEDIA = {
    "type": "object",
    "required": ["index", "pos_str", "pos_values", "neg_str", "neg_values", "frac_nonzero",
                 "freq_hist_data_bar_heights", "freq_hist_data_bar_values",
                 "logits_hist_data_bar_heights", "logits_hist_data_bar_values", "activations"],
    "properties": {
        "modelId": {"type": "string"}, "layer": {"type": "string"},
        "index": {"type": "integer", "minimum": 0},
        "pos_str": STRS, "pos_values": NUMS, "neg_str": STRS, "neg_values": NUMS,
        "frac_nonzero": {"type": "number", "minimum": 0, "maximum": 1},
        "freq_hist_data_bar_heights": NUMS, "freq_hist_data_bar_values": NUMS,
        "logits_hist_data_bar_heights": NUMS, "logits_hist_data_bar_values": NUMS,
        "activations": {"type": "array", "items": {
            "type": "object",
            "required": ["tokens", "values", "bin_min", "bin_max", "bin_contains"],
            "properties": {"tokens": STRS, "values": NUMS, "bin_min": {"type": "number"},
                           "bin_max": {"type": "number"}, "bin_contains": {"type": "number"},
                           "maxValue": {"type": "number"}, "maxValueTokenIndex": {"type": "integer"}}}},
    },
}

CIRCUIT_TRACER = {
    "type": "object",
    "required": ["index", "examples_quantiles", "top_logits", "bottom_logits", "act_min", "act_max",
                 "activation_frequency"],
    "properties": {
        "transcoder_id": {"type": "string"},
        "index": {"type": "integer", "minimum": 0},
        "examples_quantiles": {"type": "array", "items": {
            "type": "object", "required": ["quantile_name", "examples"],
            "properties": {"quantile_name": {"type": "string"}, "examples": {"type": "array", "items": {
                "type": "object", "required": ["tokens", "tokens_acts_list", "train_token_ind"],
                "properties": {"tokens": STRS, "tokens_acts_list": NUMS,
                               "train_token_ind": {"type": "integer", "minimum": 0},
                               "is_repeated_datapoint": {"type": "boolean"}}}}}}},
        "top_logits": STRS, "bottom_logits": STRS,
        "act_min": {"type": "number"}, "act_max": {"type": "number"},
        "quantile_values": NUMS, "histogram": NUMS,
        "activation_frequency": {"type": "number", "minimum": 0, "maximum": 1},
    },
}


def planted(tmp_path):
    """The planted SAE (as test_features.py builds it); returns (folder, top logit text)."""
    st = pytest.importorskip("safetensors.numpy")
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    (T,) = tok.encode(" Oslo").ids
    w = st.load_file(str(MODEL / "model.safetensors"))
    E = w["transformer.wte.weight"].astype(np.float64)
    g = w["transformer.ln_f.weight"].astype(np.float64)
    e = E[T] / np.linalg.norm(E[T])
    score = E @ e
    other = np.max(np.delete(score, T))
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
    return folder, tok.id_to_token(int(np.argmax(logits))).replace("\u0120", " ")


def export(tmp_path):
    """Runs the export; returns (out folder, density, max, top logit text)."""
    folder, top = planted(tmp_path)
    script = tmp_path / "feature_export.lua"
    script.write_text(f"MODEL = {str(MODEL)!r}\nPLANTED = {str(folder)!r}\nOUT = {str(tmp_path)!r}\n"
                      + SCRIPT.read_text())
    p = subprocess.run([str(ku.LOUPE), "run", str(script)], capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and p.stdout.rstrip().endswith("ok"), out[-3000:]
    dens = float(next(l for l in p.stdout.splitlines() if l.startswith("DENSITY")).split()[1])
    mx = float(next(l for l in p.stdout.splitlines() if l.startswith("MAX")).split()[1])
    return tmp_path, dens, mx, top


def test_feature_export(tmp_path):
    out, dens, mx, top = export(tmp_path)
    np0 = json.loads((out / "np" / "0.json").read_text())
    np1 = json.loads((out / "np" / "1.json").read_text())
    ct0 = json.loads((out / "ct" / "features" / "scan" / "0.json").read_text())
    assert not (out / "ct" / "features" / "scan" / "1.json").exists(), "only the features asked for"
    for doc in (np0, np1):
        jsonschema.validate(doc, NEURONPEDIA)
    jsonschema.validate(ct0, CIRCUIT_TRACER)
    # the schema check can fail: a file missing a field, or with a field of the wrong type
    for bad in ({k: v for k, v in np0.items() if k != "pos_str"}, {**np0, "frac_nonzero": "x"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, NEURONPEDIA)
    # Neuronpedia: content
    assert np0["index"] == 0 and np1["index"] == 1 and np0["modelId"] == "default"
    assert np0["frac_nonzero"] == pytest.approx(dens, rel=1e-12) and np1["frac_nonzero"] == 0
    assert np0["pos_str"][0] == top and len(np0["pos_str"]) == 10 == len(np0["neg_values"])
    assert np0["pos_values"] == sorted(np0["pos_values"], reverse=True)
    top_acts = [a for a in np0["activations"] if a["bin_min"] == -1]
    assert top_acts and all(a["tokens"][a["maxValueTokenIndex"]] == " Oslo" for a in top_acts)
    assert max(a["maxValue"] for a in top_acts) == pytest.approx(mx, rel=1e-6)
    assert all(len(a["tokens"]) == len(a["values"]) for a in np0["activations"])
    for a in np0["activations"]:
        if a["bin_min"] != -1:
            assert a["bin_min"] < a["maxValue"] <= a["bin_max"], "interval samples fall in their bins"
    assert sum(np0["freq_hist_data_bar_heights"]) > 0 and all(v > 0 for v in np0["freq_hist_data_bar_values"])
    assert np1["activations"] == [] and np1["freq_hist_data_bar_heights"] == []
    # circuit-tracer: content
    assert ct0["transcoder_id"] == "planted" and ct0["top_logits"][0] == top
    assert ct0["activation_frequency"] == pytest.approx(dens, rel=1e-12)
    assert ct0["act_max"] == pytest.approx(mx, rel=1e-6) and 0 < ct0["act_min"] <= ct0["act_max"]
    q = ct0["examples_quantiles"]
    assert q[0]["quantile_name"] == "Top activations" and q[0]["examples"]
    for quant in q:
        for ex in quant["examples"]:
            assert ex["tokens"][ex["train_token_ind"]] == " Oslo"
            assert len(ex["tokens"]) == len(ex["tokens_acts_list"])
    # hostile corpus text stays data: the context tokens keep it as JSON strings
    assert any("<" in t for a in np0["activations"] for t in a["tokens"]), "the corpus' <script> in the context"
