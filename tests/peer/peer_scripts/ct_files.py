"""circuit-tracer's side of tests/peer/test_peer_ct_files.py, run in .venv-peer.

args: {"sets": {name: folder written by loupe (config.yaml + layer_{i}.safetensors or a CLT)},
"x": safetensors file with "x" [N, d_model], "work"}. Each folder is loaded the way
circuit-tracer loads its cache (load_transcoders_from_cache, which reads config.yaml); for a
transcoder set every layer's parameters, encode(x) and decode(acts, x) (with the skip path),
for a CLT its parameters and encode(x) per layer, go to WORK/ct_loaded.safetensors as
"<name>.<layer>.<what>"; the kinds and hooks come back in JSON. Optional "xl": {name: a
safetensors file with "xl" [n_layers, N, d_model]}: that CLT's encode_layer(xl[l], l) and its
forward on xl as "<name>.xl.<layer>.acts" and "<name>.xl.out".
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

args = common.start()
work = Path(args["work"])
from circuit_tracer.utils.caching import load_transcoders_from_cache  # noqa: E402

x = load_file(args["x"])["x"]
out: dict[str, torch.Tensor] = {}
info = {}
cpu = torch.device("cpu")
with torch.no_grad():
    for name, folder in args["sets"].items():
        folder = Path(folder)
        tc, cfg = load_transcoders_from_cache(folder.name, cache_dir=folder.parent, device=cpu, dtype=torch.float32,
                                              lazy_encoder=False, lazy_decoder=False)
        info[name] = {"class": type(tc).__name__, "model_kind": cfg["model_kind"],
                      "feature_input_hook": tc.feature_input_hook, "feature_output_hook": tc.feature_output_hook,
                      "n_layers": tc.n_layers}
        if cfg["model_kind"] == "transcoder_set":
            for layer, t in enumerate(tc):
                for k, v in t.state_dict().items():
                    out[f"{name}.{layer}.{k}"] = v.detach().clone().contiguous()
                acts = t.encode(x)
                out[f"{name}.{layer}.acts"] = acts.contiguous()
                out[f"{name}.{layer}.out"] = t.decode(acts, x).contiguous()
        else:
            for k, v in tc.state_dict().items():
                out[f"{name}.{k}"] = v.detach().clone().contiguous()
            for layer in range(tc.n_layers):
                out[f"{name}.{layer}.acts"] = tc.encode_layer(x, layer).contiguous()
            # the forward pass on inputs that differ per layer: x * (1 + layer / 10)
            xl = torch.stack([x * (1 + layer / 10) for layer in range(tc.n_layers)])
            out[f"{name}.out"] = tc(xl).contiguous()
            if name in args.get("xl", {}):  # inputs of every layer given: [n_layers, N, d_model]
                xg = load_file(args["xl"][name])["xl"]
                for layer in range(tc.n_layers):
                    out[f"{name}.xl.{layer}.acts"] = tc.encode_layer(xg[layer], layer).contiguous()
                out[f"{name}.xl.out"] = tc(xg).contiguous()
save_file(out, str(work / "ct_loaded.safetensors"))
common.finish({"info": info, "versions": common.versions("circuit-tracer", "torch")})
