"""circuit-tracer on a local model folder and a local transcoder set, offline: a
ReplacementModel built with from_config (TransformerLens backend; the model config and
weights by the recipe of common.py), then attribute() on one prompt given as token ids (its
BOS lookup by string fails when the BOS id is 0; a prompt that starts with a special id is
used as it is).

Arguments: {"model": FOLDER, "transcoders": FOLDER (circuit-tracer's layout), "tokens": [...],
"max_n_logits": int, optional "batch_size" (256) and "max_feature_nodes" (none)}.
Saves WORK/ct.safetensors: "logits" [1, T, V] of the replacement model's plain forward
pass, per layer "mlp_in.{l}" [T, d_model] (the transcoders' input, mlp.hook_in),
"acts.{l}" and "recon.{l}" (circuit-tracer's transcoder encode / decode of that input),
"adjacency" (the graph's dense adjacency matrix), "active_features" [n, 3] (layer, pos,
feature), "activation_values" [n], "logit_probabilities" [n_logits], "selected_features" (the indices
into active_features of the graph's feature nodes: all of them without max_feature_nodes).
Result: node counts, the logit targets' token ids, scan, versions.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file

import common

args = common.start()
from circuit_tracer import ReplacementModel, attribute  # noqa: E402
from circuit_tracer.utils.caching import load_transcoders_from_cache  # noqa: E402

cpu = torch.device("cpu")
tc_dir = Path(args["transcoders"])
transcoders, tc_cfg = load_transcoders_from_cache(tc_dir.name, cache_dir=tc_dir.parent, device=cpu,
                                                  dtype=torch.float32, lazy_encoder=False,
                                                  lazy_decoder=False)
hf, tok = common.load_hf(args["model"])
cfg = common.tl_config(args["model"], hf)
model = ReplacementModel.from_config(cfg, transcoders, backend="transformerlens", tokenizer=tok)

# from_config makes the model's modules, not its weights: load them, under the names the
# replacement wrappers (ReplacementMLP.old_mlp, ReplacementUnembed.old_unembed) give them.
sd = common.tl_state_dict(args["model"], cfg, hf)
plain = {k.replace("old_mlp.", "").replace("old_unembed.", ""): k for k in model.state_dict()}
missing, unexpected = model.load_state_dict({plain.get(k, k): v for k, v in sd.items()}, strict=False)
weights = {n for n, _ in model.named_parameters() if not n.startswith("transcoders.")}
assert not unexpected, f"weights the replacement model does not have: {unexpected}"
# GPT-2 has no unembedding bias: it keeps its zeros, as TransformerLens' fill_missing_keys does.
not_loaded = [n for n in weights & set(missing)
              if not (n.rsplit(".", 1)[-1].startswith("b_") and not model.get_parameter(n).any())]
assert not not_loaded, f"weights not loaded: {sorted(not_loaded)}"

tokens = torch.tensor(args["tokens"], dtype=torch.long)
out: dict[str, torch.Tensor] = {}
with torch.no_grad():
    logits, cache = model.run_with_cache(tokens[None], names_filter=lambda n: n.endswith("mlp.hook_in"))
    out["logits"] = logits
    for layer in range(cfg.n_layers):
        x = cache[f"blocks.{layer}.mlp.hook_in"][0]
        acts = model.transcoders.encode_layer(x, layer)
        out[f"mlp_in.{layer}"] = x
        out[f"acts.{layer}"] = acts
        out[f"recon.{layer}"] = model.transcoders[layer].decode(acts, x)

graph = attribute(tokens, model, max_n_logits=args["max_n_logits"], batch_size=args.get("batch_size", 256),
                  max_feature_nodes=args.get("max_feature_nodes"))

out["adjacency"] = graph.adjacency_matrix
out["active_features"] = graph.active_features.to(torch.int64)
out["activation_values"] = graph.activation_values
out["logit_probabilities"] = graph.logit_probabilities
out["selected_features"] = graph.selected_features.to(torch.int64)
save_file({k: v.detach().contiguous().clone() for k, v in out.items()}, os.path.join(args["work"], "ct.safetensors"))

common.finish({
    "n_pos": int(graph.n_pos),
    "n_layers": int(cfg.n_layers),
    "n_active": int(graph.active_features.shape[0]),
    "n_selected": int(graph.selected_features.shape[0]),
    "n_logits": len(graph.logit_targets),
    "logit_tokens": [int(t.vocab_idx) for t in graph.logit_targets],
    "input_tokens": graph.input_tokens.tolist(),
    "scan": graph.scan,
    "config": {k: v for k, v in tc_cfg.items() if isinstance(v, (str, int, float))},
    "versions": common.versions("torch", "circuit-tracer", "transformer-lens"),
})
del graph, model  # its __del__ needs torch, which is gone at interpreter exit
