"""circuit-tracer's `attribute` timed on a local model folder and transcoder set, offline
(the model built as ct_attribute.py builds it). Arguments: {"model", "transcoders",
"tokens", "max_n_logits", "batch_size"}. Result: seconds of attribute() (the second of two
runs, the first warming up), n_active, peak RSS of this process in MiB, versions."""
from __future__ import annotations

import resource
import time
from pathlib import Path

import torch

import common

args = common.start()
from circuit_tracer import ReplacementModel, attribute  # noqa: E402
from circuit_tracer.utils.caching import load_transcoders_from_cache  # noqa: E402

tc_dir = Path(args["transcoders"])
transcoders, _ = load_transcoders_from_cache(tc_dir.name, cache_dir=tc_dir.parent, device=torch.device("cpu"),
                                             dtype=torch.float32, lazy_encoder=False, lazy_decoder=False)
hf, tok = common.load_hf(args["model"])
cfg = common.tl_config(args["model"], hf)
model = ReplacementModel.from_config(cfg, transcoders, backend="transformerlens", tokenizer=tok)
sd = common.tl_state_dict(args["model"], cfg, hf)
plain = {k.replace("old_mlp.", "").replace("old_unembed.", ""): k for k in model.state_dict()}
model.load_state_dict({plain.get(k, k): v for k, v in sd.items()}, strict=False)

tokens = torch.tensor(args["tokens"], dtype=torch.long)
seconds = []
for _ in range(2):
    t0 = time.perf_counter()
    graph = attribute(tokens, model, max_n_logits=args["max_n_logits"], batch_size=args["batch_size"], verbose=False)
    seconds.append(time.perf_counter() - t0)
common.finish({
    "seconds": seconds[-1],
    "n_active": int(graph.active_features.shape[0]),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "versions": common.versions("torch", "circuit-tracer"),
})
del graph, model
