"""End to end: loupe.attribute on the default model with seeded random transcoders
(loupe.transcoders.random), through `loupe run`.

tests/e2e/lua/attribution.lua checks, in Lua: the BOS is prepended once; node counts (an error
per layer and position, an embedding per position), ids and indices; g.adjacency against
n_edges, g:inputs / g:outputs against its rows and columns (sorted by |weight|, signed);
g:paths scores against the product of normalised weights computed from the adjacency;
g:prune at the defaults equals the graph attribute returned and other thresholds nest;
save -> load keeps nodes and edges; explicit targets (one token, a logit difference); and bad
input (empty prompt, a target of two tokens, transcoders with the wrong layers or d_model, a
prompt longer than the context, no transcoders, a file that is not a graph) as clear errors.

Here, in Python: the unpruned graph's file against the C engine itself (tests/peer/attrib_tool on
the transcoders the script saved and the same token ids): the same nodes, the same adjacency,
influence shares and scores, and the pruned file keeps the nodes attrib_tool's pruning keeps;
and a loaded graph saved again is byte-identical.
"""
from __future__ import annotations

import json
import subprocess

import numpy as np

import kernelutil as ku

SCRIPT = ku.ROOT / "tests" / "e2e" / "lua" / "attribution.lua"
MODEL = ku.ROOT / "examples" / "models" / "default"
TOOL = ku.ROOT / "build" / "tests" / "peer" / "attrib_tool"

_tools_built = ku.require_built(ku.LOUPE, TOOL)


def node_index(graph: dict) -> dict[str, int]:
    ids = [n["node_id"] for n in graph["nodes"]]
    assert len(set(ids)) == len(ids), "duplicate node ids"
    return {k: i for i, k in enumerate(ids)}


def dense(graph: dict) -> np.ndarray:
    ix = node_index(graph)
    A = np.zeros((len(ix), len(ix)), dtype=np.float32)
    for link in graph["links"]:
        A[ix[link["target"]], ix[link["source"]]] = link["weight"]
    return A


def test_attribute_end_to_end(tmp_path):
    script = tmp_path / "attribution.lua"
    script.write_text(f"MODEL = {str(MODEL)!r}; WORK = {str(tmp_path)!r}\n" + SCRIPT.read_text())
    p = subprocess.run([str(ku.LOUPE), "run", str(script)], capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"loupe run failed ({p.returncode}):\n{out[-3000:]}"
    assert p.stdout.rstrip().endswith("ok"), out[-3000:]

    # the file of a graph loaded and saved again is the same bytes
    assert (tmp_path / "pruned.json").read_bytes() == (tmp_path / "pruned2.json").read_bytes()

    tokens = (tmp_path / "tokens.txt").read_text().split()
    adj = tmp_path / "engine.f32"
    e = subprocess.run([str(TOOL), str(MODEL), str(tmp_path / "tcs"), "5", "0.95", "16", "0.99", "0.999", str(adj),
                        *tokens], capture_output=True, text=True, timeout=120)
    assert e.returncode == 0, e.stderr
    info = json.loads(e.stdout)
    n = info["n_nodes"]
    ref = np.fromfile(adj, dtype="<f4").reshape(n, n)

    full = json.loads((tmp_path / "full.json").read_text())
    meta = full["metadata"]
    assert meta["schema_version"] == 1 and meta["scan"] == "random-tcs" and meta["slug"] == "e2e"
    assert meta["info"]["generator"]["name"] == "loupe"
    assert meta["loupe"]["tokens"] == [int(t) for t in tokens]
    assert len(meta["prompt_tokens"]) == len(tokens)
    nodes = full["nodes"]
    assert len(nodes) == n, (len(nodes), n)
    feats = [n_ for n_ in nodes if n_["feature_type"] == "cross layer transcoder"]
    assert len(feats) == info["n_features"]
    for f, (layer, pos, feat, act) in zip(feats, info["features"]):
        assert f["node_id"] == f"{layer}_{feat}_{pos}" and f["ctx_idx"] == pos and f["layer"] == str(layer)
        assert f["feature"] == (layer + feat) * (layer + feat + 1) // 2 + feat
        assert abs(f["activation"] - act) <= 1e-4 * abs(act)  # loupe run may pick another BLAS core
    logits = [n_ for n_ in nodes if n_["feature_type"] == "logit"]
    assert [int(n_["feature"]) for n_ in logits] == info["logit_tokens"]
    assert logits[0]["is_target_logit"] and not any(n_["is_target_logit"] for n_ in logits[1:])
    assert all(n_["layer"] == "5" and n_["node_id"] == f"5_{n_['feature']}_{len(tokens) - 1}" for n_ in logits)

    A = dense(full)
    big = float(np.abs(ref).max())
    assert big > 0
    excess = np.abs(A - ref) - (1e-4 * np.abs(ref) + 1e-6 * big)
    assert excess.max() <= 0, f"the graph's adjacency differs from the engine's (max |A| {big:.3g})"
    influence = np.array([n_["influence"] for n_ in nodes])
    d = float(np.abs(influence - np.array(info["cumulative"])).max())
    assert d <= 1e-4, f"influence shares differ by {d:.3g}"
    assert abs(meta["loupe"]["replacement"] - info["replacement"]) <= 1e-4
    assert abs(meta["loupe"]["completeness"] - info["completeness"]) <= 1e-4

    # max_feature_nodes: the kept features, their order and the adjacency are the engine's
    K = int((tmp_path / "kept.txt").read_text())
    kadj = tmp_path / "kept.f32"
    e = subprocess.run([str(TOOL), "--max-feature-nodes", str(K), str(MODEL), str(tmp_path / "tcs"), "5", "0.95", "16",
                        "0.99", "0.999", str(kadj), *tokens], capture_output=True, text=True, timeout=120)
    assert e.returncode == 0, e.stderr
    kinfo = json.loads(e.stdout)
    assert kinfo["n_kept"] == K
    kept = json.loads((tmp_path / "kept.json").read_text())
    kfeats = [n_ for n_ in kept["nodes"] if n_["feature_type"] == "cross layer transcoder"]
    want = [kinfo["features"][i] for i in kinfo["kept"]]
    assert [(int(f["layer"]), f["ctx_idx"]) for f in kfeats] == [(w[0], w[1]) for w in want]
    assert [f["node_id"] for f in kfeats] == [f"{w[0]}_{w[2]}_{w[1]}" for w in want]
    kref = np.fromfile(kadj, dtype="<f4").reshape(kinfo["n_nodes"], kinfo["n_nodes"])
    KA = dense(kept)
    assert KA.shape == kref.shape
    kbig = float(np.abs(kref).max())
    assert (np.abs(KA - kref) - (1e-4 * np.abs(kref) + 1e-6 * kbig)).max() <= 0
    assert kept["metadata"]["generation_settings"]["max_feature_nodes"] == K
    assert full["metadata"]["generation_settings"]["max_feature_nodes"] is None

    # the pruned file (0.99 / 0.999): the nodes attrib_tool's mask keeps that have a kept edge,
    # embeddings and logits always
    pruned = json.loads((tmp_path / "pruned.json").read_text())
    edges = np.fromfile(str(adj) + ".edges", dtype=np.uint8).reshape(n, n).astype(bool)
    mask = np.array(info["node_mask"], dtype=bool)
    kept_edges = edges & mask[:, None] & mask[None, :] & (ref != 0)
    used = kept_edges.any(axis=0) | kept_edges.any(axis=1)
    types = [n_["feature_type"] for n_ in nodes]
    want = [nodes[i]["node_id"] for i in range(n)
            if mask[i] and (used[i] or types[i] in ("embedding", "logit"))]
    assert [n_["node_id"] for n_ in pruned["nodes"]] == want
    ix = node_index(full)
    got = {(ln["target"], ln["source"]) for ln in pruned["links"]}
    t_, s_ = np.nonzero(kept_edges)
    ids = [n_["node_id"] for n_ in nodes]
    assert got == {(ids[t], ids[s]) for t, s in zip(t_, s_)}
    for ln in pruned["links"]:
        assert np.float32(ln["weight"]) == A[ix[ln["target"]], ix[ln["source"]]]  # the same graph: exact
    assert pruned["metadata"]["pruning_settings"] == {"node_threshold": 0.99, "edge_threshold": 0.999}
