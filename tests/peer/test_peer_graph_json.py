"""Peer check in .venv-peer: loupe's graph JSON and circuit-tracer's, both ways
(peer_scripts/ct_graph_files.py).

- A graph loupe saves (loupe.attribute on examples/models/default with a seeded random JumpReLU
  transcoder set in circuit-tracer's layout, g:save) is served by circuit-tracer's own viewer
  server (`serve`, on a free localhost port): the page, the graph list and the graph through
  its data endpoint, parsed by circuit-tracer's pydantic graph model with loupe's nodes and
  links.
- A graph circuit-tracer writes (attribute + create_graph_files, same model, transcoders, token
  ids and thresholds) loads in loupe (loupe.graph.load) with the same nodes and links (saved
  again by loupe and compared field by field), and it keeps the same nodes as loupe's own
  pruned graph of the prompt.

A missing or broken .venv-peer fails this test with why (`bash install/setup test` makes it).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kernelutil as ku  # noqa: E402
import peerenv  # noqa: E402
import transcoder_files as tcf  # noqa: E402

MODEL = ku.ROOT / "examples" / "models" / "default"
PROMPT = "<|endoftext|>Ben lives in Oslo. Mara lives in"  # starts with the BOS id (0)
MAX_LOGITS = 5

_tools_built = ku.require_built(ku.LOUPE)


def loupe_run(script: str, tmp: Path, name: str) -> str:
    path = tmp / name
    path.write_text(script)
    p = subprocess.run([str(ku.LOUPE), "run", str(path)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"loupe run failed ({p.returncode}):\n{(p.stdout + p.stderr)[-3000:]}"
    return p.stdout


def key(node: dict) -> tuple:
    """A node's identity apart from its id (circuit-tracer's error ids may collide with features)."""
    return (node["feature_type"], str(node["layer"]), int(node["ctx_idx"]), int(node["feature"]))


def links_by_key(graph: dict) -> dict[tuple, float]:
    by_id: dict[str, list[dict]] = {}
    for n in graph["nodes"]:
        by_id.setdefault(n["node_id"], []).append(n)
    out = {}
    for ln in graph["links"]:
        s, t = by_id[ln["source"]], by_id[ln["target"]]
        if len(s) == 1 and len(t) == 1:  # skip ids that name two nodes
            out[(key(s[0]), key(t[0]))] = ln["weight"]
    return out


@pytest.mark.timeout(400)
def test_graph_files_both_ways(tmp_path: Path) -> None:
    tokens = Tokenizer.from_file(str(MODEL / "tokenizer.json")).encode(PROMPT, add_special_tokens=False).ids
    assert tokens[0] == 0
    tc_dir = tcf.write_transcoder_set(tmp_path / "transcoders" / "loupe-default", n_layers=4, d_model=192,
                                      d_transcoder=96, seed=11, jumprelu=True)
    mine = tmp_path / "loupe.json"
    loupe_run(f"""
local m = loupe.load({str(MODEL)!r})
local tcs = loupe.transcoders.load({str(tc_dir)!r})
local g = loupe.attribute{{model = m, transcoders = tcs, tokens = {{{", ".join(map(str, tokens))}}},
                          max_n_logits = {MAX_LOGITS}, scan = "loupe-default", slug = "loupe-graph"}}
g:save({str(mine)!r})
""", tmp_path, "attribute.lua")
    saved = json.loads(mine.read_text())

    peer = peerenv.run("ct_graph_files.py", {"model": str(MODEL), "transcoders": str(tc_dir), "tokens": tokens,
                                             "max_n_logits": MAX_LOGITS, "loupe_graph": str(mine),
                                             "slug": "loupe-graph"}, tmp_path / "peer", timeout=400)
    print(f"[peer] {peer['versions']}")

    # 1. the viewer served loupe's graph, and its model parsed it whole
    v = peer["viewer"]
    assert v["page_bytes"] > 1000, "the viewer's page was not served"
    assert v["listed_slugs"] == ["loupe-graph"]
    assert v["node_ids"] == [n["node_id"] for n in saved["nodes"]]
    assert v["feature_types"] == [n["feature_type"] for n in saved["nodes"]]
    assert v["n_links"] == len(saved["links"]) > 0
    assert v["prompt_tokens"] == saved["metadata"]["prompt_tokens"] and v["schema_version"] == 1

    # 2. circuit-tracer's file in loupe: the same nodes and links
    ct_path = Path(peer["ct_file"])
    ct = json.loads(ct_path.read_text())
    again = tmp_path / "ct_by_loupe.json"
    out = loupe_run(f"""
local g = loupe.graph.load({str(ct_path)!r})
g:save({str(again)!r})
print("counts", g.n_nodes, g.n_edges)
    """, tmp_path, "load.lua")
    n_nodes, n_edges = map(int, [ln for ln in out.splitlines() if ln.startswith("counts")][0].split()[1:])
    assert n_nodes == len(ct["nodes"]) and n_edges == len(ct["links"]), (n_nodes, n_edges)
    back = json.loads(again.read_text())
    fields = ["node_id", "feature", "layer", "ctx_idx", "feature_type", "is_target_logit", "clerp"]
    for a, b in zip(ct["nodes"], back["nodes"]):
        assert {f: a[f] for f in fields} == {f: b[f] for f in fields}, (a, b)
        for f in ("influence", "activation", "token_prob"):
            assert (a[f] is None and b[f] is None) or abs(float(np.float32(a[f])) - b[f]) <= 1e-7 * abs(a[f]), (f, a, b)
    assert sorted((ln["source"], ln["target"]) for ln in ct["links"]) == \
        sorted((ln["source"], ln["target"]) for ln in back["links"])
    w_ct = {(ln["source"], ln["target"]): ln["weight"] for ln in ct["links"]}
    for ln in back["links"]:
        assert np.float32(w_ct[(ln["source"], ln["target"])]) == np.float32(ln["weight"])
    assert back["metadata"]["prompt_tokens"] == ct["metadata"]["prompt_tokens"]

    # and circuit-tracer's pruned graph keeps the nodes loupe's does, with the same edges
    assert sorted(map(key, ct["nodes"])) == sorted(map(key, saved["nodes"])), "pruned node sets differ"
    lc, ll = links_by_key(ct), links_by_key(saved)
    assert lc.keys() == ll.keys(), "pruned edge sets differ"
    big = max(abs(w) for w in lc.values())
    for k, w in lc.items():
        assert abs(ll[k] - w) <= 1e-4 * abs(w) + 1e-6 * big, (k, w, ll[k])
