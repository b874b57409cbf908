"""Attribution benchmarks (tests/bench/run attribution), one JSON line each:

- 10- and 30-token prompts on examples/models/default with random 1536-wide per-layer JumpReLU
  transcoders (tests/peer/transcoder_files.py): loupe (tests/peer/attrib_tool: replacement
  model and dense edges, lp_attrib_edges) against circuit-tracer's `attribute` in .venv-peer,
  same transcoders, prompt, max_n_logits and batch (32), in the same run. Times exclude
  loading; circuit-tracer's is its second run in its process, loupe's the median of
  LOUPE_BENCH_REPS (3) processes. Peak RSS is each process's (loupe's: the largest of its runs).
  On 2 threads each, then on 1 each (`threads`).
- The same prompts through a cross-layer transcoder: a random 96-wide JumpReLU CLT loupe makes
  and saves (loupe.transcoders.random{clt = true}, t:save; ~1,400 active features on 10
  tokens), loupe (attrib_tool --clt) against circuit-tracer's `attribute` with its
  CrossLayerTranscoder loaded from that folder, as above (2 threads each).
  LOUPE_BENCH_ONLY_CLT=1 runs these alone.
- A 1,000-token prompt on a GPT-2-small-shaped model with random weights (12 layers, d_model
  768, 12 heads, d_mlp 3072, vocabulary 50257, context 1024) and 12 random 6,144-wide JumpReLU
  transcoders, max_feature_nodes 8192 (lp_attrib_edges_rows), all made by attrib_tool
  --random-gpt2: loupe only (circuit-tracer has no such model here), time and peak RSS.
  LOUPE_BENCH_LONG_T sets its length (1000), LOUPE_BENCH_LONG_MAX_FEATURES its limit (8192),
  LOUPE_BENCH_SKIP_LONG=1 leaves it out, and LOUPE_BENCH_ONLY_LONG=1 runs it alone. Its cost is
  about (kept rows) x (their layer) x (their position) x 2 d_model^2 multiply-adds (~5e13 at
  1,000 tokens and 8,192 rows): many minutes on 2 cores.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "peer"))
sys.path.insert(0, str(ROOT / "tests"))
import transcoder_files as tcf  # noqa: E402

MODEL = ROOT / "examples" / "models" / "default"
TOOL = ROOT / "build" / "tests" / "peer" / "attrib_tool"
LOUPE = ROOT / "build" / "kernel" / "loupe"
TOKENS10 = [0, 464, 3139, 286, 262, 1499, 810, 337, 64, 318]
BATCH, MAX_LOGITS = 32, 10
CLT_D_TC = 96
LONG_D_TC, LONG_ENC_BIAS, LONG_MAX_FEATURES = 6144, -2.9, 8192  # ~9 active features per layer and position


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_tool(args: list[str], work: Path, threads: int | None = None) -> tuple[dict, float]:
    """attrib_tool's JSON and its peak RSS in MiB."""
    env = dict(os.environ)
    if threads:
        env["OPENBLAS_NUM_THREADS"] = str(threads)  # loupe's thread count follows OpenBLAS's
    with open(work / "loupe.json", "w") as out:
        p = subprocess.Popen([str(TOOL), *args], stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, ru = os.wait4(p.pid, 0)  # this child's own peak RSS
    if status != 0:
        raise SystemExit(f"attrib_tool failed (status {status}): {' '.join(args[:12])} ...")
    run_tool.cpu_s = ru.ru_utime + ru.ru_stime  # the process's CPU time (a loaded machine stretches wall time)
    return json.loads((work / "loupe.json").read_text()), ru.ru_maxrss / 1024


def short_prompt(tokens: list[int], tc: Path, work: Path, reps: int, threads: int, clt: bool = False) -> None:
    runs = [run_tool([*(["--clt"] if clt else []), str(MODEL), str(tc), str(MAX_LOGITS), "0.95", str(BATCH), "0.8",
                      "0.98", "-", *map(str, tokens)], work, threads) for _ in range(reps)]
    loupe_s = statistics.median(r[0]["seconds"] for r in runs)
    loupe_rss = max(r[1] for r in runs)
    import pytest  # noqa: F401  (peerenv reports a broken .venv-peer through pytest.fail)
    import peerenv
    peerenv.THREADS = threads
    peer = peerenv.run("ct_attribute_bench.py", {"model": str(MODEL), "transcoders": str(tc), "tokens": tokens,
                                                 "max_n_logits": MAX_LOGITS, "batch_size": BATCH}, work / "peer",
                      timeout=1800)  # a loaded machine slows torch's start-up a lot
    what = f"a {CLT_D_TC}-wide cross-layer transcoder" if clt else "1536-wide transcoders"
    print(json.dumps({"bench": f"attribution {len(tokens)} tokens, {what}",
                      "n_features": runs[0][0]["n_features"], "peer_n_features": peer["n_active"],
                      "loupe_s": round(loupe_s, 4), "peer_s": round(peer["seconds"], 4),
                      "speedup": round(peer["seconds"] / loupe_s, 2), "loupe_rss_mb": round(loupe_rss, 1),
                      "peer_rss_mb": round(peer["peak_rss_mb"], 1),
                      "memory_ratio": round(peer["peak_rss_mb"] / loupe_rss, 2), "batch": BATCH, "reps": reps,
                      "threads": threads,
                      "load": load(), "peer_versions": peer["versions"]}), flush=True)


def long_prompt(T: int, work: Path) -> None:
    tokens = [(i * 2654435761) % 50257 for i in range(T)]
    max_features = int(os.environ.get("LOUPE_BENCH_LONG_MAX_FEATURES", str(LONG_MAX_FEATURES)))
    t0 = time.perf_counter()
    info, rss = run_tool(["--random-gpt2", str(LONG_D_TC), str(LONG_ENC_BIAS), "--max-feature-nodes",
                          str(max_features), "-", "-", str(MAX_LOGITS), "0.95", str(BATCH), "0.8", "0.98", "-",
                          *map(str, tokens)], work)
    wall = time.perf_counter() - t0
    print(json.dumps({"bench": f"attribution {T} tokens, GPT-2-small shape, 12 x {LONG_D_TC}-wide transcoders, "
                               f"max_feature_nodes {max_features}",
                      "n_features": info["n_features"], "n_kept": info["n_kept"], "n_nodes": info["n_nodes"],
                      "stored_entries": info["nnz"], "loupe_s": round(info["seconds"], 2),
                      "loupe_build_s": round(info["build_s"], 2), "loupe_edges_s": round(info["edges_s"], 2),
                      "loupe_process_s": round(wall, 2), "loupe_process_cpu_s": round(run_tool.cpu_s, 1),
                      "loupe_rss_mb": round(rss, 1), "peer_s": None,
                      "peer_rss_mb": None, "speedup": None, "batch": BATCH, "load": load()}), flush=True)


def main() -> None:
    if not TOOL.is_file():
        raise SystemExit(f"not built: {TOOL} (cmake --build build --target attrib_tool)")
    reps = int(os.environ.get("LOUPE_BENCH_REPS", "3"))
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        vocab = json.loads((MODEL / "config.json").read_text())["vocab_size"]
        ten = [t % vocab for t in TOKENS10]
        thirty = ten + [(i * 2654435761) % vocab for i in range(1, 21)]
        only_clt = os.environ.get("LOUPE_BENCH_ONLY_CLT") == "1"
        if os.environ.get("LOUPE_BENCH_ONLY_LONG") != "1" and not only_clt:
            tc = tcf.write_transcoder_set(work / "tc" / "bench", n_layers=4, d_model=192, d_transcoder=1536, seed=3,
                                          jumprelu=True, enc_bias=-2.0)  # ~1,600 active features on 10 tokens
            # 2 threads each (the machine's cores); then 1 each, which a loaded machine
            # disturbs less (torch's waiting threads spin)
            for threads in (2, 1):
                for tokens in (ten, thirty):
                    short_prompt(tokens, tc, work, reps, threads)
        if os.environ.get("LOUPE_BENCH_ONLY_LONG") != "1":
            clt = work / "tc" / "clt"
            script = work / "clt.lua"
            script.write_text(f"loupe.transcoders.random{{clt = true, n_layers = 4, d_model = 192, d_transcoder = "
                              f"{CLT_D_TC}, activation = 'jumprelu', seed = 3}}:save({str(clt)!r})\n")
            subprocess.run([str(LOUPE), "run", str(script)], check=True, capture_output=True, timeout=120)
            for tokens in (ten, thirty):
                short_prompt(tokens, clt, work, reps, 2, clt=True)
        if os.environ.get("LOUPE_BENCH_SKIP_LONG") != "1" and not only_clt:
            long_prompt(int(os.environ.get("LOUPE_BENCH_LONG_T", "1000")), work)


if __name__ == "__main__":
    main()
