"""End to end: a transcoder set's feature labels, saved with the set and shown on its
attribution graphs (issues 16 and 17), through `loupe run`.

tests/e2e/lua/graph_labels.lua checks, in Lua: a set without a harvest or labels gives feature
nodes without labels, a user label alone labels its feature; after tcs:harvest every feature
node's label (g.nodes, g:node, g.full, an unpruned graph) equals tcs:label(layer, feature);
tcs:save writes loupe_harvest_layer_{l}.safetensors and loupe_labels_layer_{l}.json and
loupe.transcoders.load reads them back (same harvests, labels and graph labels), a set saved
again without them removes them, and a broken labels file is an error naming it.

Here, in Python: the saved graph JSON's clerp of every feature node and the diagram's data
(the application/json of its HTML) carry the same labels; the hostile label appears only as
text (escaped in the HTML); and the saved folder's layer_*.safetensors (what circuit-tracer
globs and loads) are still exactly the layer files.
"""
from __future__ import annotations

import json
import re
import subprocess

import kernelutil as ku

SCRIPT = ku.ROOT / "tests" / "e2e" / "lua" / "graph_labels.lua"
MODEL = ku.ROOT / "examples" / "models" / "default"

_tools_built = ku.require_built(ku.LOUPE)


def test_graph_labels(tmp_path):
    script = tmp_path / "graph_labels.lua"
    script.write_text(f"MODEL = {str(MODEL)!r}; WORK = {str(tmp_path)!r}\n" + SCRIPT.read_text())
    p = subprocess.run([str(ku.LOUPE), "run", str(script)], capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"loupe run failed ({p.returncode}):\n{out[-3000:]}"
    assert p.stdout.rstrip().endswith("ok"), out[-3000:]

    want = {}
    for line in (tmp_path / "labels.txt").read_text().splitlines():
        node_id, hexed = line.split(" ")
        want[node_id] = bytes.fromhex(hexed).decode("utf-8")
    assert len(want) >= 2
    hostile = [k for k, v in want.items() if "<script>" in v]
    assert len(hostile) == 1, "the hostile label is on one node"

    graph = json.loads((tmp_path / "g.json").read_text())
    clerps = {n["node_id"]: n["clerp"] for n in graph["nodes"]
              if n["feature_type"] not in ("logit", "embedding", "mlp reconstruction error")}
    assert clerps == want, "the saved graph's clerps are the feature labels"

    page = (tmp_path / "diagram.html").read_text()
    m = re.search(r'<script type="application/json" data-lp-circuit="1">(.*?)</script>', page, re.S)
    assert m, "the diagram has its data"
    data = json.loads(m.group(1))
    nodes = data["nodes"]
    shown = [lab for lab in nodes["label"] if lab is not None]
    # the diagram shows bidi controls as visible escapes (display/circuit.c); else the labels as they are
    labels = {v.replace("\u202e", "\\u202E") for v in want.values()}
    feature_labels = [lab for lab in shown if lab in labels]
    assert len(feature_labels) >= 2, (shown, labels)
    assert want[hostile[0]].replace("\u202e", "\\u202E") in feature_labels, "the hostile label is in the data"
    assert "\u202e" not in page, "a raw bidi control in the page"
    assert "<script>alert" not in page and "<img src=x" not in page, "hostile text escaped in the HTML"

    folder = tmp_path / "tcs"
    layer_files = sorted(f.name for f in folder.glob("layer_*.safetensors"))
    assert layer_files == [f"layer_{i}.safetensors" for i in range(4)], layer_files
    assert sorted(f.name for f in folder.glob("loupe_*")) == sorted(
        [f"loupe_harvest_layer_{i}.safetensors" for i in range(4)] + [f"loupe_labels_layer_{i}.json" for i in range(4)])
