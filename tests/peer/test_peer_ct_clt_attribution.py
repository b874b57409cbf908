"""Peer check in .venv-peer: attribution through a cross-layer transcoder, loupe against
circuit-tracer (peer_scripts/ct_clt_attribute.py).

loupe trains a small JumpReLU CLT on examples/models/default (loupe.sae.train{arch = "clt"}, 60
steps on a generated corpus: features that carry a good part of the MLP outputs, so that
pruning keeps some; a random CLT's features carry 2 % of the logits' influence, its error nodes
the rest) and saves it in circuit-tracer's layout (t:save); circuit-tracer loads that folder as its
CrossLayerTranscoder and runs `attribute` on the TransformerLens backend with the prompt as
token ids, in float64 (the model and the CLT; its edge matrix is stored in float32): the exact
edges to compare loupe's float32 ones with. In float32 circuit-tracer's own rounding is the
larger one: measured against its float64 run, its float32 feature-to-feature edges differ by up
to 1.1e-4 relative, loupe's by 3.1e-5. loupe's side: the engine (build/tests/peer/attrib_tool --clt) and the Lua API
(loupe.attribute{transcoders = clt}, g:save). What must hold:

- the same active features (layer, pos, feature) in the same order, activations within 1e-4,
  the same logit nodes and probabilities;
- the same dense adjacency matrix (node order [features][errors][embeddings][logits], rows
  targets): 1e-4 relative on the entries above 1e-6 of the largest, or within 1e-5 of the
  row's largest entry (see compare below), the rest below that floor;
- after pruning at node 0.8 / edge 0.98, the same kept nodes and edges (prune_graph's masks
  against loupe's), and the graph files keep the same nodes (circuit-tracer's
  create_graph_files against loupe's g:save, node ids as for per-layer sets).

A missing or broken .venv-peer fails this test with why (`bash install/setup test` makes it).
About 40 s here (the training 3 s of it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kernelutil as ku  # noqa: E402
import peerenv  # noqa: E402
from test_peer_graph_json import key, links_by_key, loupe_run  # noqa: E402

MODEL = ku.ROOT / "examples" / "models" / "default"
TOOL = Path(os.environ.get("LOUPE_ATTRIB_TOOL", ku.ROOT / "build" / "tests" / "peer" / "attrib_tool"))
PROMPT = "<|endoftext|>Ben lives in Oslo. Mara lives in"  # starts with the BOS id (0)
N_LAYERS, D_MODEL, D_TC = 4, 192, 64
MAX_LOGITS, BATCH, NODE_T, EDGE_T = 5, 32, 0.8, 0.98
TOL = 1e-4

_tools_built = ku.require_built(TOOL, ku.LOUPE)


def compare(A: np.ndarray, B: np.ndarray, n_f: int) -> None:
    """loupe's float32 adjacency A against circuit-tracer's float64 one B (n_f feature nodes first).

    A CLT feature's edge is a sum over the decoders into every layer from its own to the
    target's, and many such sums cancel to a small part of their row: there loupe's float32
    rounding (of the row's scale) shows. Measured: 64 of ~155k entries above the floor exceed
    1e-4 relative (at most 1.5e-3), each under 1.5e-3 of its row's largest entry, and no entry
    is further than 6e-6 of its row's largest from the float64 value (feature to feature 1e-6).
    Held: every entry within 1e-4 relative or 1e-5 of its row's largest; 99.9 % of the entries
    above the floor (and of the feature-to-feature ones) within 1e-4 relative."""
    B = B.astype(np.float64)
    assert A.shape == B.shape, (A.shape, B.shape)
    big = np.abs(B).max()
    floor = 1e-6 * big
    err = np.abs(A - B)
    sel = np.abs(B) > floor
    rel = np.where(sel, err / np.maximum(np.abs(B), floor), 0.0)
    row_big = np.abs(B).max(axis=1, keepdims=True)
    over = sel & (rel > TOL)
    ff_sel, ff_over = sel[:n_f, :n_f], over[:n_f, :n_f]
    print(f"[peer] adjacency {A.shape}, {int(sel.sum())} entries above the floor; worst relative "
          f"{float(rel.max()):.2e} (feature to feature {float(rel[:n_f, :n_f].max()):.2e}), {int(over.sum())} beyond "
          f"1e-4 relative ({int(ff_over.sum())} of {int(ff_sel.sum())} feature to feature); worst error / row's "
          f"largest {float((err / np.maximum(row_big, 1e-30)).max()):.2e}; largest {big:.4g}")
    bad = sel & (err > np.maximum(TOL * np.abs(B), 1e-5 * row_big))
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        pytest.fail(f"{int(bad.sum())} edges differ, e.g. A[{r},{c}]: loupe {A[r, c]:.8g}, circuit-tracer {B[r, c]:.8g}")
    assert over.sum() <= 1e-3 * sel.sum(), f"{int(over.sum())} of {int(sel.sum())} edges beyond 1e-4 relative"
    assert ff_over.sum() <= 1e-3 * ff_sel.sum(), f"{int(ff_over.sum())} feature-to-feature edges beyond 1e-4 relative"
    assert float(err[~sel].max(initial=0)) <= 2 * floor, "small entries differ beyond the floor"


@pytest.mark.timeout(400)
def test_clt_attribution_equals_circuit_tracer(tmp_path: Path) -> None:
    tokens = Tokenizer.from_file(str(MODEL / "tokenizer.json")).encode(PROMPT, add_special_tokens=False).ids
    assert tokens[0] == 0 and len(tokens) > 5, tokens
    clt_dir = tmp_path / "transcoders" / "loupe-clt"
    mine = tmp_path / "loupe.json"
    corpus = tmp_path / "corpus.txt"
    subprocess.run([sys.executable, str(ku.ROOT / "tools" / "make_corpus.py"), "--seed", "1234", "--size", "200000",
                    str(corpus)], check=True, capture_output=True)
    loupe_run(f"""
local m = loupe.load({str(MODEL)!r})
local ds = loupe.data.load{{files = {{{str(corpus)!r}}}, tokenizer = loupe.tokenizer({str(MODEL)!r})}}
local clt = loupe.sae.train{{model = m, arch = "clt", activation = "jumprelu", data = ds, width = {D_TC},
                             batch = 256, steps = 60, lr = 2e-3, ctx = 64, seed = 3, live = false, l1 = 3e-4}}
clt:save({str(clt_dir)!r})
local g = loupe.attribute{{model = m, transcoders = clt, tokens = {{{", ".join(map(str, tokens))}}},
                          max_n_logits = {MAX_LOGITS}, batch = {BATCH}, node_threshold = {NODE_T},
                          edge_threshold = {EDGE_T}, scan = "loupe-clt", slug = "loupe-clt-graph"}}
g:save({str(mine)!r})
""", tmp_path, "attribute.lua")
    assert (clt_dir / "config.yaml").is_file() and (clt_dir / "W_dec_0.safetensors").is_file()

    adj = tmp_path / "loupe_adj.f32"
    out = subprocess.run([str(TOOL), "--clt", str(MODEL), str(clt_dir), str(MAX_LOGITS), "0.95", str(BATCH),
                          str(NODE_T), str(EDGE_T), str(adj), *map(str, tokens)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    n = info["n_nodes"]
    A = np.fromfile(adj, dtype="<f4").reshape(n, n)
    edges = np.fromfile(str(adj) + ".edges", dtype=np.uint8).reshape(n, n)

    peer = peerenv.run("ct_clt_attribute.py", {"model": str(MODEL), "transcoders": str(clt_dir), "tokens": tokens,
                                               "max_n_logits": MAX_LOGITS, "batch_size": BATCH,
                                               "node_threshold": NODE_T, "edge_threshold": EDGE_T,
                                               "slug": "ct-clt-graph", "dtype": "float64"}, tmp_path / "peer",
                       timeout=400)
    assert peer["transcoders"] == "CrossLayerTranscoder", peer["transcoders"]
    ct = load_file(str(tmp_path / "peer" / "ct.safetensors"))
    print(f"[peer] {peer['versions']}; loupe {info['n_features']} features, {info['seconds']:.3f} s")

    # the nodes
    feats = np.array([f[:3] for f in info["features"]], dtype=np.int64).reshape(-1, 3)
    assert feats.shape[0] > 100, "too few active features for a meaningful comparison"
    assert len(set(feats[:, 0].tolist())) == N_LAYERS, "features in every layer"
    assert feats.shape == ct["active_features"].shape and (feats == ct["active_features"]).all(), \
        "active features differ from circuit-tracer's"
    acts = np.array([f[3] for f in info["features"]])
    d = float(np.abs(acts - ct["activation_values"]).max())
    assert d <= TOL, f"feature activations differ by {d:.3g}"
    assert info["logit_tokens"] == peer["logit_tokens"], (info["logit_tokens"], peer["logit_tokens"])
    d = float(np.abs(np.array(info["logit_probs"]) - ct["logit_probabilities"]).max())
    assert d <= 1e-5, f"logit probabilities differ by {d:.3g}"

    # the edges, and that the CLT's later decoders carry some: edges from a feature to a feature
    # target two or more layers up exist (a per-layer reading would miss them... and so would a
    # matrix that equals circuit-tracer's only on the adjacent layers)
    n_f = feats.shape[0]
    compare(A, ct["adjacency"], n_f)
    far = (feats[:, None, 0] >= feats[None, :, 0] + 2) & (np.abs(A[:n_f, :n_f]) > 1e-6 * np.abs(A).max())
    assert far.any(), "no edges between features two layers apart"

    # pruning: the same kept nodes and edges
    node_mask = np.array(info["node_mask"], dtype=bool)
    assert (node_mask == ct["node_mask"].astype(bool)).all(), \
        f"kept nodes differ: {int((node_mask != ct['node_mask'].astype(bool)).sum())} of {n}"
    assert 0 < int(node_mask[:n_f].sum()) < n_f, "pruning kept all or none of the features"
    assert (edges.astype(bool) == ct["edge_mask"].astype(bool)).all(), \
        f"kept edges differ: {int((edges.astype(bool) != ct['edge_mask'].astype(bool)).sum())}"

    # the graph files: loupe.attribute's pruned graph and circuit-tracer's keep the same nodes and edges
    saved = json.loads(mine.read_text())
    ctg = json.loads(Path(peer["graph_file"]).read_text())
    assert {n["feature_type"] for n in saved["nodes"]} >= {"cross layer transcoder", "embedding", "logit"}
    assert sorted(map(key, ctg["nodes"])) == sorted(map(key, saved["nodes"])), "pruned node sets differ"
    ids_ct = {key(n): n["node_id"] for n in ctg["nodes"]}
    for nd in saved["nodes"]:
        if nd["feature_type"] == "cross layer transcoder":
            assert nd["node_id"] == ids_ct[key(nd)], (nd["node_id"], ids_ct[key(nd)])
    # circuit-tracer's error ids can name a feature too (links_by_key leaves out the links of ids
    # that name two nodes): compare the links between nodes that its ids name alone
    ids = [n["node_id"] for n in ctg["nodes"]]
    twice = {key(n) for n in ctg["nodes"] if ids.count(n["node_id"]) > 1}
    lc = links_by_key(ctg)
    ll = {k: w for k, w in links_by_key(saved).items() if k[0] not in twice and k[1] not in twice}
    assert len(ctg["links"]) == len(saved["links"]), (len(ctg["links"]), len(saved["links"]))
    assert lc.keys() == ll.keys() and len(lc) > 0, "pruned edge sets differ"
    big = max(abs(w) for w in lc.values())
    for k, w in lc.items():
        assert abs(ll[k] - w) <= 1e-4 * abs(w) + 1e-5 * big, (k, w, ll[k])
