"""circuit-tracer's side of tests/peer/test_peer_ct_clt_attribution.py: attribute() through a
cross-layer transcoder loupe saved (circuit-tracer's layout: config.yaml with model_kind
cross_layer_transcoder, W_enc_{i} / W_dec_{i} files), offline, on the TransformerLens backend,
the prompt given as token ids (the recipe of ct_attribute.py); then prune_graph and
create_graph_files at the given thresholds.

Arguments: {"model": FOLDER, "transcoders": FOLDER, "tokens": [...], "max_n_logits": int,
"batch_size": int, "node_threshold": float, "edge_threshold": float, "slug": str, optional "dtype":
"float64" (the model and the CLT in float64; circuit-tracer keeps the edge matrix in float32)}.
Saves WORK/ct.safetensors: "adjacency", "active_features" [n, 3] (layer, pos, feature),
"activation_values" [n], "logit_probabilities", "node_mask" and "edge_mask" (prune_graph's, as
uint8); writes WORK/graphs/{slug}.json (create_graph_files). Result: the logit targets' token
ids, the transcoders' class, the graph file's path, versions.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file

import common

args = common.start()
from circuit_tracer import ReplacementModel, attribute  # noqa: E402
from circuit_tracer.graph import prune_graph  # noqa: E402
from circuit_tracer.transcoder.cross_layer_transcoder import CrossLayerTranscoder  # noqa: E402
from circuit_tracer.utils.caching import load_transcoders_from_cache  # noqa: E402
from circuit_tracer.utils.create_graph_files import create_graph_files  # noqa: E402

cpu = torch.device("cpu")
dtype = torch.float64 if args.get("dtype") == "float64" else torch.float32
tc_dir = Path(args["transcoders"])
clt, tc_cfg = load_transcoders_from_cache(tc_dir.name, cache_dir=tc_dir.parent, device=cpu, dtype=dtype,
                                          lazy_encoder=False, lazy_decoder=False)
assert isinstance(clt, CrossLayerTranscoder), type(clt)
hf, tok = common.load_hf(args["model"])
cfg = common.tl_config(args["model"], hf)
cfg.dtype = dtype
model = ReplacementModel.from_config(cfg, clt, backend="transformerlens", tokenizer=tok)
sd = common.tl_state_dict(args["model"], cfg, hf)
plain = {k.replace("old_mlp.", "").replace("old_unembed.", ""): k for k in model.state_dict()}
missing, unexpected = model.load_state_dict({plain.get(k, k): v for k, v in sd.items()}, strict=False)
assert not unexpected, f"weights the replacement model does not have: {unexpected}"
weights = {n for n, _ in model.named_parameters() if not n.startswith("transcoders.")}
not_loaded = [n for n in weights & set(missing)
              if not (n.rsplit(".", 1)[-1].startswith("b_") and not model.get_parameter(n).any())]
assert not not_loaded, f"weights not loaded: {sorted(not_loaded)}"

tokens = torch.tensor(args["tokens"], dtype=torch.long)
graph = attribute(tokens, model, max_n_logits=args["max_n_logits"], batch_size=args["batch_size"])
node_mask, edge_mask, _ = prune_graph(graph, args["node_threshold"], args["edge_threshold"])

out = {
    "adjacency": graph.adjacency_matrix,
    "active_features": graph.active_features.to(torch.int64),
    "activation_values": graph.activation_values,
    "logit_probabilities": graph.logit_probabilities,
    "node_mask": node_mask.to(torch.uint8),
    "edge_mask": edge_mask.to(torch.uint8),
}
save_file({k: v.detach().contiguous().clone() for k, v in out.items()}, os.path.join(args["work"], "ct.safetensors"))

graphs = Path(args["work"]) / "graphs"
create_graph_files(graph, args["slug"], str(graphs), scan="loupe-clt", node_threshold=args["node_threshold"],
                   edge_threshold=args["edge_threshold"])

common.finish({
    "logit_tokens": [int(t.vocab_idx) for t in graph.logit_targets],
    "n_active": int(graph.active_features.shape[0]),
    "transcoders": type(clt).__name__,
    "graph_file": str(graphs / f"{args['slug']}.json"),
    "versions": common.versions("torch", "circuit-tracer", "transformer-lens"),
})
del graph, model  # its __del__ needs torch, which is gone at interpreter exit
