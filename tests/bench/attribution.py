"""Attribution of a 10-token prompt on examples/models/default with random 1536-wide
per-layer JumpReLU transcoders (tests/peer/transcoder_files.py): loupe (tests/peer/attrib_tool:
replacement model and dense edges) against circuit-tracer's `attribute` in .venv-peer, same
transcoders, prompt, max_n_logits and batch (32), in the same run. Times exclude loading;
circuit-tracer's is its second run. Peak RSS is each process's. One JSON line."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "peer"))
sys.path.insert(0, str(ROOT / "tests"))
import transcoder_files as tcf  # noqa: E402

MODEL = ROOT / "examples" / "models" / "default"
TOOL = ROOT / "build" / "tests" / "peer" / "attrib_tool"
TOKENS = [0, 464, 3139, 286, 262, 1499, 810, 337, 64, 318][:10]
BATCH, MAX_LOGITS = 32, 10


def run_loupe(tc: Path, work: Path) -> tuple[dict, float]:
    with open(work / "loupe.json", "w") as out:
        p = subprocess.Popen([str(TOOL), str(MODEL), str(tc), str(MAX_LOGITS), "0.95", str(BATCH), "0.8", "0.98",
                              str(work / "adj.f32"), *map(str, TOKENS)], stdout=out)
        _, status, ru = os.wait4(p.pid, 0)  # this child's own peak RSS
    if status != 0:
        raise SystemExit(f"attrib_tool failed (status {status})")
    return json.loads((work / "loupe.json").read_text()), ru.ru_maxrss / 1024


def main() -> None:
    if not TOOL.is_file():
        raise SystemExit(f"not built: {TOOL} (cmake --build build --target attrib_tool)")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        vocab = json.loads((MODEL / "config.json").read_text())["vocab_size"]
        toks = [t % vocab for t in TOKENS]
        TOKENS[:] = toks
        tc = tcf.write_transcoder_set(work / "tc" / "bench", n_layers=4, d_model=192, d_transcoder=1536, seed=3,
                                      jumprelu=True, enc_bias=-2.0)  # ~1,600 active features
        loupe, loupe_rss = run_loupe(tc, work)
        import pytest  # noqa: F401  (peerenv reports a broken .venv-peer through pytest.fail)
        import peerenv
        peer = peerenv.run("ct_attribute_bench.py", {"model": str(MODEL), "transcoders": str(tc), "tokens": toks,
                                                     "max_n_logits": MAX_LOGITS, "batch_size": BATCH}, work / "peer")
    print(json.dumps({"bench": "attribution 10 tokens, 1536-wide transcoders", "n_features": loupe["n_features"],
                      "peer_n_features": peer["n_active"], "loupe_s": round(loupe["seconds"], 4),
                      "peer_s": round(peer["seconds"], 4), "speedup": round(peer["seconds"] / loupe["seconds"], 2),
                      "loupe_rss_mb": round(loupe_rss, 1), "peer_rss_mb": round(peer["peak_rss_mb"], 1),
                      "batch": BATCH, "peer_versions": peer["versions"]}))


if __name__ == "__main__":
    main()
