"""SAELens' side of tests/peer/test_peer_saelens.py, run in .venv-peer.

args: {"loupe": {name: folder written by loupe}, "x": safetensors file with "x" [N, d_in] and
"x_tc" [N, d_in], "make": {name: {"architecture", "d_in", "d_sae", "d_out", "k"}}, "work"}.
1. Every loupe folder is loaded with SAE.load_from_disk; its state dict, encode(x) and the
   forward pass (x or x_tc for transcoders) go to WORK/sl_loaded.safetensors as
   "<name>.<tensor>", "<name>.acts", "<name>.out"; the class and config come back in JSON.
2. For every entry of "make", SAELens' own config class builds an SAE (random weights, every
   bias and threshold non-zero) and save_model writes it to WORK/made/<name>.
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
from sae_lens import SAE  # noqa: E402
from sae_lens.registry import get_sae_class  # noqa: E402

xs = load_file(args["x"])
out: dict[str, torch.Tensor] = {}
loaded = {}
with torch.no_grad():
    for name, folder in args["loupe"].items():
        sae = SAE.load_from_disk(folder, device="cpu")
        is_tc = "transcoder" in sae.cfg.architecture()
        x = xs["x_tc" if is_tc else "x"]
        for k, v in sae.state_dict().items():
            out[f"{name}.{k}"] = v.detach().clone().contiguous()
        out[f"{name}.acts"] = sae.encode(x).contiguous()
        out[f"{name}.out"] = sae(x).contiguous()
        md = sae.cfg.metadata
        loaded[name] = {"class": type(sae).__name__, "architecture": sae.cfg.architecture(),
                        "d_in": sae.cfg.d_in, "d_sae": sae.cfg.d_sae,
                        "d_out": getattr(sae.cfg, "d_out", None), "k": getattr(sae.cfg, "k", None),
                        "apply_b_dec_to_input": sae.cfg.apply_b_dec_to_input,
                        "rescale": getattr(sae.cfg, "rescale_acts_by_decoder_norm", None),
                        "hook_name": md.hook_name, "hook_name_out": md.get("hook_name_out"),
                        "model_name": md.model_name, "context_size": md.context_size}
save_file(out, str(work / "sl_loaded.safetensors"))

made = {}
gen = torch.Generator().manual_seed(5)
for name, spec in args["make"].items():
    sae_cls, cfg_cls = get_sae_class(spec["architecture"])
    kw = {"d_in": spec["d_in"], "d_sae": spec["d_sae"]}
    for key in ("d_out", "k", "apply_b_dec_to_input", "rescale_acts_by_decoder_norm"):
        if key in spec:
            kw[key] = spec[key]
    cfg = cfg_cls(**kw)
    cfg.metadata.hook_name = spec.get("hook_name", "blocks.1.hook_resid_post")
    cfg.metadata.model_name = "saelens-made"
    cfg.metadata.sae_lens_version = "6.54.12"
    sae = sae_cls(cfg)
    with torch.no_grad():
        for k, p in sae.named_parameters():
            if k == "threshold":
                p.copy_(0.05 + 0.2 * torch.rand(p.shape, generator=gen))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    folder = work / "made" / name
    sae.save_model(folder)
    made[name] = str(folder)

common.finish({"loaded": loaded, "made": made, "versions": common.versions("sae-lens", "torch")})
