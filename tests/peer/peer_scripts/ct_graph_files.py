"""circuit-tracer's side of tests/peer/test_peer_graph_json.py.

1. The viewer's data path for a graph file loupe wrote: the file goes into a data folder with
   graph-metadata.json (circuit-tracer's add_graph_metadata, from the file's metadata parsed by
   its Metadata model), circuit-tracer's `serve` starts on a free localhost port, and the
   viewer's requests are made: the page (/index.html), /data/graph-metadata.json and
   /graph_data/{slug}.json; the graph that comes back is parsed by circuit-tracer's pydantic
   Model (metadata, qParams, nodes, links).
2. A graph file written by circuit-tracer: attribute() on the model and token ids (the recipe of
   ct_attribute.py), then create_graph_files(graph, "ct", WORK/ct, scan, 0.8, 0.98).

Arguments: {"model", "transcoders", "tokens", "max_n_logits", "loupe_graph", "slug"}.
Result: what the viewer served (node ids, link count, page size) and the path of ct's file.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import urllib.request
from pathlib import Path

import torch

import common

args = common.start()
from circuit_tracer import ReplacementModel, attribute  # noqa: E402
from circuit_tracer.frontend.graph_models import Metadata, Model  # noqa: E402
from circuit_tracer.frontend.local_server import serve  # noqa: E402
from circuit_tracer.frontend.utils import add_graph_metadata  # noqa: E402
from circuit_tracer.utils.caching import load_transcoders_from_cache  # noqa: E402
from circuit_tracer.utils.create_graph_files import create_graph_files  # noqa: E402

work = Path(args["work"])
result: dict = {}

# 1. the viewer's data path
data = work / "viewer"
data.mkdir(parents=True, exist_ok=True)
slug = args["slug"]
shutil.copy(args["loupe_graph"], data / f"{slug}.json")
with open(data / f"{slug}.json") as f:
    meta = json.load(f)["metadata"]
add_graph_metadata(Metadata(**meta).model_dump(), str(data))
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = serve(data_dir=str(data), port=port)
try:
    base = f"http://127.0.0.1:{port}"
    page = urllib.request.urlopen(f"{base}/index.html", timeout=30).read()
    listing = json.loads(urllib.request.urlopen(f"{base}/data/graph-metadata.json", timeout=30).read())
    served = json.loads(urllib.request.urlopen(f"{base}/graph_data/{slug}.json", timeout=30).read())
finally:
    server.stop()
model = Model(**served)
result["viewer"] = {
    "page_bytes": len(page),
    "listed_slugs": [g["slug"] for g in listing["graphs"]],
    "node_ids": [n.node_id for n in model.nodes],
    "feature_types": [n.feature_type for n in model.nodes],
    "n_links": len(model.links),
    "prompt_tokens": model.metadata.prompt_tokens,
    "schema_version": model.metadata.schema_version,
}

# 2. a graph file written by circuit-tracer
cpu = torch.device("cpu")
tc_dir = Path(args["transcoders"])
transcoders, _ = load_transcoders_from_cache(tc_dir.name, cache_dir=tc_dir.parent, device=cpu, dtype=torch.float32,
                                             lazy_encoder=False, lazy_decoder=False)
hf, tok = common.load_hf(args["model"])
cfg = common.tl_config(args["model"], hf)
rm = ReplacementModel.from_config(cfg, transcoders, backend="transformerlens", tokenizer=tok)
sd = common.tl_state_dict(args["model"], cfg, hf)
plain = {k.replace("old_mlp.", "").replace("old_unembed.", ""): k for k in rm.state_dict()}
_, unexpected = rm.load_state_dict({plain.get(k, k): v for k, v in sd.items()}, strict=False)
assert not unexpected, unexpected
graph = attribute(torch.tensor(args["tokens"], dtype=torch.long), rm, max_n_logits=args["max_n_logits"],
                  batch_size=64)
graph.cfg.tokenizer_name = args["model"]  # its tokenizer, from the local folder
out = work / "ct"
create_graph_files(graph, "ct", str(out), scan=tc_dir.name, node_threshold=0.8, edge_threshold=0.98)
result["ct_file"] = str(out / "ct.json")
result["versions"] = common.versions("torch", "circuit-tracer")
common.finish(result)
del graph, rm
