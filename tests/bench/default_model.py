"""The default model's training, as recorded when tools/make_default_model.sh made it
(examples/models/default/train_log.json): time, throughput and final losses. One JSON line;
`recorded: true` says these are not measured by this run (training takes ~12 minutes)."""
import json
import pathlib

log = pathlib.Path(__file__).resolve().parents[2] / "examples/models/default/train_log.json"
d = json.loads(log.read_text())
print(json.dumps({"bench": "default model training", "recorded": True, "source": str(log.relative_to(log.parents[3])),
                  "seconds": d["seconds"], "tokens_per_s": d["tokens_per_s"], "steps": d["steps"],
                  "train_loss_last50": d["train_loss_last50"], "val_loss": d["val_loss"],
                  "n_layers": d["n_layers"], "d_model": d["d_model"]}))
