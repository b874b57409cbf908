"""loupe's pruning and graph scores (backend/attrib/prune.c, through tests/peer/attrib_tool)
against a NumPy implementation of the team's ATTRIBUTION.md formulas on the same matrix:
loupe's attribution of a prompt on examples/models/default with random JumpReLU transcoders
(transcoder_files.py; .venv only, no peer environment).

- influence I = w^T ((I - Ahat)^-1 - I) (NumPy by the inverse, loupe by iteration): 1e-9 of
  the largest;
- kept nodes (node 0.8, 0.999 and 0.9999, embeddings and logits always), kept edges (0.98, 0.9) and the iteration
  that drops features and errors without outgoing and features without incoming edges: equal;
- each node's cumulative share at its rank, replacement and completeness scores: 1e-9.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kernelutil as ku  # noqa: E402
import transcoder_files as tcf  # noqa: E402

MODEL = ku.ROOT / "examples" / "models" / "default"
TOOL = Path(os.environ.get("LOUPE_ATTRIB_TOOL", ku.ROOT / "build" / "tests" / "peer" / "attrib_tool"))
PROMPT = "<|endoftext|>The capital of the country where Mara lives is"

_tools_built = ku.require_built(TOOL)


def normalized(A: np.ndarray) -> np.ndarray:
    H = np.abs(A)
    return H / np.maximum(H.sum(axis=1, keepdims=True), 1e-10)


def influence(H: np.ndarray, w: np.ndarray) -> np.ndarray:
    n = H.shape[0]
    return w @ (np.linalg.inv(np.eye(n) - H) - np.eye(n))


def find_threshold(x: np.ndarray, tau: float) -> float:
    v = np.sort(x)[::-1]
    share = np.cumsum(v) / v.sum()
    return float(v[min(int(np.searchsorted(share, tau)), len(v) - 1)])


def prune(A, w, n_features, n_fixed, node_t=0.8, edge_t=0.98):
    """n_fixed: the embeddings and logits at the end."""
    n = A.shape[0]
    I = influence(normalized(A), w)
    keep = I >= find_threshold(I, node_t)
    keep[n - n_fixed:] = True
    P = A.copy()
    P[~keep] = 0
    P[:, ~keep] = 0
    Hp = normalized(P)
    scores = Hp * (influence(Hp, w) + w)[:, None]
    edges = scores >= find_threshold(scores.ravel(), edge_t)
    while True:
        new = keep.copy()
        new[:n - n_fixed] &= edges[:, :n - n_fixed].any(axis=0)
        new[:n_features] &= edges[:n_features].any(axis=1)
        if (new == keep).all():
            break
        keep = new
        edges[~keep] = False
        edges[:, ~keep] = False
    order = np.argsort(-I, kind="stable")
    cum = np.empty(n)
    cum[order] = np.cumsum(I[order]) / I.sum()
    return I, keep, edges, cum


@pytest.mark.parametrize("node_t,edge_t", [(0.8, 0.98), (0.999, 0.98), (0.9999, 0.9)])
def test_pruning_and_scores_equal_numpy(tmp_path: Path, node_t: float, edge_t: float) -> None:
    tokens = Tokenizer.from_file(str(MODEL / "tokenizer.json")).encode(PROMPT, add_special_tokens=False).ids
    tc = tcf.write_transcoder_set(tmp_path / "tc", n_layers=4, d_model=192, d_transcoder=128, seed=5, jumprelu=True)
    adj = tmp_path / "adj.f32"
    out = subprocess.run([str(TOOL), str(MODEL), str(tc), "10", "0.95", "16", str(node_t), str(edge_t), str(adj), *map(str, tokens)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    n, nf, T, nl = info["n_nodes"], info["n_features"], len(tokens), len(info["logit_tokens"])
    assert nf > 50 and n == nf + 5 * T + nl
    A = np.fromfile(adj, dtype="<f4").reshape(n, n).astype(np.float64)
    w = np.zeros(n)
    w[n - nl:] = info["logit_probs"]

    I, keep, edges, cum = prune(A, w, nf, T + nl, node_t, edge_t)
    got_I = np.array(info["influence"])
    assert np.abs(got_I - I).max() <= 1e-9 * np.abs(I).max(), np.abs(got_I - I).max()
    got_keep = np.array(info["node_mask"], bool)
    assert (got_keep == keep).all(), f"kept nodes differ at {np.flatnonzero(got_keep != keep)[:10]}"
    # random transcoders explain little: at 0.8 the error nodes carry the influence and no
    # feature survives; at 0.999 (edges 0.98) some do
    assert keep[:nf].sum() < nf and (node_t != 0.999 or keep[:nf].sum() > 0), keep[:nf].sum()
    got_edges = np.fromfile(str(adj) + ".edges", dtype=np.uint8).reshape(n, n).astype(bool)
    assert (got_edges == edges).all(), f"{int((got_edges != edges).sum())} kept edges differ"
    assert 0 < edges.sum() < (A != 0).sum()
    assert np.abs(np.array(info["cumulative"]) - cum).max() <= 1e-9

    H = normalized(A)
    tok, err = I[nf + 4 * T:nf + 5 * T].sum(), I[nf:nf + 4 * T].sum()
    replacement = tok / (tok + err)
    completeness = ((1 - H[:, nf:nf + 4 * T].sum(axis=1)) * (I + w)).sum() / (I + w).sum()
    print(f"[attrib] {nf} features, {int(keep.sum())} nodes and {int(edges.sum())} edges kept; "
          f"replacement {replacement:.4f}, completeness {completeness:.4f}")
    assert abs(info["replacement"] - replacement) <= 1e-9
    assert abs(info["completeness"] - completeness) <= 1e-9
    assert 0 < replacement < 1 and 0 < completeness < 1
