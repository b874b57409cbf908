"""Peer check in .venv-peer: circuit-tracer builds a replacement model for loupe's default
model (examples/models/default) from per-layer transcoders written here in its on-disk
layout (transcoder_files.py: random weights from a seeded generator), and attributes one
prompt, offline (peer_scripts/ct_attribute.py).

What must hold, each against loupe (tests/peer/model_tool, test_models.run_loupe) or a NumPy
computation from the same files:
- the replacement model's logits equal loupe's within 1e-4, and its transcoders' input
  (mlp.hook_in) equals loupe's MLP input (ln2.hook_normalized * w + b);
- circuit-tracer's transcoder activations and reconstructions equal NumPy's on loupe's MLP
  input (encode / decode of transcoder_files.py);
- the graph: its active features are exactly NumPy's non-zero activations after position 0
  (which circuit-tracer leaves out), with the same values; its adjacency matrix is finite,
  square, of n_active + (n_layers + 1) * n_pos + n_logits nodes; its logit nodes are
  loupe's most probable next tokens with loupe's probabilities; embedding and error nodes
  receive no edges, and a feature receives edges only from earlier layers and from
  positions up to its own.

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
import transcoder_files as tcf  # noqa: E402

MODEL = ku.ROOT / "examples" / "models" / "default"
PROMPT = "<|endoftext|>Ben lives in Oslo. Mara lives in"  # starts with a special id (0)
D_TC = 96
MAX_LOGITS = 5
TOL = 1e-4

_tools_built = ku.require_built(tm.TOOL)


def loupe_mlp_inputs(run: dict, n_layers: int) -> list[np.ndarray]:
    """MLP inputs [T, d_model] per layer from loupe's hooks and the model's ln_2 weights."""
    w = load_file(str(MODEL / "model.safetensors"))
    return [(run[f"blocks.{L}.ln2.hook_normalized"][0] * w[f"transformer.h.{L}.ln_2.weight"]
             + w[f"transformer.h.{L}.ln_2.bias"]).astype(np.float64) for L in range(n_layers)]


@pytest.mark.timeout(300)  # the first import of PyPI's torch on a cold disk is slow
def test_circuit_tracer_attributes_the_default_model(tmp_path: Path) -> None:
    tokens = Tokenizer.from_file(str(MODEL / "tokenizer.json")).encode(PROMPT, add_special_tokens=False).ids
    assert tokens[0] == 0 and len(tokens) > 5, tokens
    n_layers, d_model, T = 4, 192, len(tokens)
    tc_dir = tcf.write_transcoder_set(tmp_path / "transcoders" / "loupe-default", n_layers=n_layers,
                                      d_model=d_model, d_transcoder=D_TC, seed=11)
    t0 = time.monotonic()
    peer = peerenv.run("ct_attribute.py", {"model": str(MODEL), "transcoders": str(tc_dir),
                                           "tokens": tokens, "max_n_logits": MAX_LOGITS}, tmp_path / "peer")
    print(f"[peer] circuit-tracer in .venv-peer: {time.monotonic() - t0:.1f} s, {peer['versions']}")
    ct = load_file(str(tmp_path / "peer" / "ct.safetensors"))
    run = tm.run_loupe(MODEL, [tokens], tmp_path)
    assert peer["n_layers"] == n_layers and peer["input_tokens"] == tokens and peer["n_pos"] == T

    # The replacement model is loupe's model.
    d = float(np.abs(ct["logits"] - run["logits"]).max())
    print(f"[peer] max |logit diff| loupe vs circuit-tracer's replacement model: {d:.2e}")
    assert d <= TOL, f"logits differ by {d:.3g}"
    xs = loupe_mlp_inputs(run, n_layers)
    for L in range(n_layers):
        d = float(np.abs(ct[f"mlp_in.{L}"] - xs[L]).max())
        assert d <= TOL * max(1.0, float(np.abs(xs[L]).max())), f"layer {L}: MLP input differs by {d:.3g}"

    # circuit-tracer's transcoders compute what the files say.
    layers = tcf.read_transcoder_set(tc_dir)
    assert len(layers) == n_layers and layers[0]["W_enc"].shape == (D_TC, d_model)
    acts = [tcf.encode(layers[L], xs[L]) for L in range(n_layers)]
    for L in range(n_layers):
        d = float(np.abs(ct[f"acts.{L}"] - acts[L]).max())
        assert d <= TOL, f"layer {L}: transcoder activations differ from NumPy by {d:.3g}"
        recon = tcf.decode(layers[L], acts[L], xs[L])
        d = float(np.abs(ct[f"recon.{L}"] - recon).max())
        assert d <= TOL, f"layer {L}: transcoder outputs differ from NumPy by {d:.3g}"

    # The graph's features: NumPy's non-zero activations after position 0, same values.
    feats = ct["active_features"]
    n_active = peer["n_active"]
    assert n_active > 0 and feats.shape == (n_active, 3), (n_active, feats.shape)
    assert (feats[:, 1] > 0).all(), "a feature at position 0, which circuit-tracer leaves out"
    pre = np.stack([tcf.pre_activations(layers[L], xs[L]) for L in range(n_layers)])  # [L, T, d_tc]
    want = np.stack(acts) > 0
    want[:, 0] = False
    got = np.zeros_like(want)
    got[feats[:, 0], feats[:, 1], feats[:, 2]] = True
    unclear = np.abs(pre) <= TOL  # on the threshold: either tool may round it either way
    assert not ((got != want) & ~unclear).any(), \
        f"active features differ from NumPy's at {np.argwhere((got != want) & ~unclear)[:10].tolist()}"
    vals = np.stack(acts)[feats[:, 0], feats[:, 1], feats[:, 2]]
    d = float(np.abs(ct["activation_values"] - vals).max())
    assert d <= TOL, f"feature activations differ from NumPy by {d:.3g}"
    print(f"[peer] {n_active} active features ({want.sum()} by NumPy), {peer['n_logits']} logit nodes")

    # Nodes: [features, errors (layer-major), embeddings, logits]; rows are targets.
    n_logits = peer["n_logits"]
    assert 1 <= n_logits <= MAX_LOGITS
    n_nodes = n_active + (n_layers + 1) * T + n_logits
    adj = ct["adjacency"]
    assert adj.shape == (n_nodes, n_nodes), (adj.shape, n_nodes)
    assert np.isfinite(adj).all(), "non-finite edges"
    assert peer["n_selected"] == n_active
    assert not adj[n_active:n_nodes - n_logits].any(), "edges into error or embedding nodes"
    assert adj[:n_active].any() and adj[n_nodes - n_logits:].any(), "no edges into features or logits"
    # feature -> feature only from an earlier layer and a position not after the target's
    fl, fp = feats[:, 0], feats[:, 1]
    ok = (fl[None, :] < fl[:, None]) & (fp[None, :] <= fp[:, None])
    assert not adj[:n_active, :n_active][~ok].any(), "feature edges from a later layer or position"
    # error (l, p) -> feature likewise; embedding p -> feature only for p <= the feature's position
    el, ep = np.repeat(np.arange(n_layers), T), np.tile(np.arange(T), n_layers)
    ok = (el[None, :] < fl[:, None]) & (ep[None, :] <= fp[:, None])
    assert not adj[:n_active, n_active:n_active + n_layers * T][~ok].any(), "error edges from a later layer"
    ok = np.arange(T)[None, :] <= fp[:, None]
    assert not adj[:n_active, n_active + n_layers * T:n_nodes - n_logits][~ok].any(), \
        "embedding edges from a later position"

    # Logit nodes: loupe's most probable next tokens, with loupe's probabilities.
    z = run["logits"][0, -1].astype(np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    assert peer["logit_tokens"] == np.argsort(-p)[:n_logits].tolist(), (peer["logit_tokens"], np.argsort(-p)[:n_logits])
    d = float(np.abs(ct["logit_probabilities"] - p[peer["logit_tokens"]]).max())
    assert d <= 1e-5, f"logit probabilities differ from loupe's by {d:.3g}"
