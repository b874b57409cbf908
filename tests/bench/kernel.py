"""Benchmark `kernel`: loupe against ipykernel, measured in the same run.

- execute round trip of a trivial cell (`1`) through jupyter_client: 300 executes after a
  20-execute warm-up, from sending the request to its reply and its idle status; p50, p99.
- start: from launching the process to the first kernel_info_reply (median of 5 launches).
- idle RSS of the kernel process (psutil), after the warm-up and a short rest.

- history: loupe's start time and idle RSS with an empty history and with one of 100,000
  entries (a history.jsonl that a first kernel imports, not timed), launches alternated.

Prints one JSON object per line: {"bench": "kernel", "loupe_p50_ms", "ipykernel_p50_ms",
"ratio" (loupe p50 / ipykernel p50), "loupe_p99_ms", "ipykernel_p99_ms", "loupe_start_ms",
"ipykernel_start_ms", "loupe_idle_rss_mb", "ipykernel_idle_rss_mb"}, then
{"bench": "kernel_history_start", "empty_ms", "full_ms", "ratio" (full / empty), "entries",
"import_ms"} and {"bench": "kernel_history_rss", "empty_mb", "full_mb", "ratio", "entries"}.
Options: --n N (default 300), --warmup N (20), --starts N (5), --history N (100000 entries;
0 skips those two lines). Never fails on slowness.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from queue import Empty

ROOT = pathlib.Path(__file__).resolve().parents[2]
LOUPE = ROOT / "build" / "kernel" / "loupe"
sys.path.insert(0, str(ROOT / "tests"))
import kernelutil as ku  # noqa: E402


def isolate() -> pathlib.Path:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="loupe-bench-"))
    (tmp / "home").mkdir()
    os.environ.update({
        "HOME": str(tmp / "home"), "XDG_DATA_HOME": str(tmp / "home/.local/share"),
        "JUPYTER_PATH": str(tmp / "prefix/share/jupyter"),
        "JUPYTER_DATA_DIR": str(tmp / "home/jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "IPYTHONDIR": str(tmp / "home/ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
    })
    subprocess.run([str(LOUPE), "install", "--prefix", str(tmp / "prefix")], check=True,
                   stdout=subprocess.DEVNULL)
    return tmp


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def round_trip(kc, code: str = "1") -> float:
    t0 = time.perf_counter()
    msg_id = kc.execute(code)
    while kc.get_shell_msg(timeout=30)["parent_header"].get("msg_id") != msg_id:
        pass
    while True:
        m = kc.get_iopub_msg(timeout=30)
        if (m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status"
                and m["content"]["execution_state"] == "idle"):
            return (time.perf_counter() - t0) * 1000


def start_time(name: str, env: dict | None = None) -> float:
    """Launch to the first kernel_info_reply, in ms (the client polls kernel_info)."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=name)
    t0 = time.perf_counter()
    km.start_kernel(**({"env": {**os.environ, **env}} if env else {}))
    kc = km.client()
    kc.start_channels()
    try:
        while True:
            msg_id = kc.kernel_info()
            try:
                while True:
                    r = kc.get_shell_msg(timeout=0.02)
                    if r["parent_header"].get("msg_id") == msg_id:
                        return (time.perf_counter() - t0) * 1000
            except Empty:
                if time.perf_counter() - t0 > 60:
                    raise TimeoutError(f"{name}: no kernel_info_reply in 60 s")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def measure(name: str, n: int, warmup: int, starts: int) -> dict:
    import psutil
    from jupyter_client.manager import start_new_kernel

    start = statistics.median(start_time(name) for _ in range(starts))
    km, kc = start_new_kernel(kernel_name=name, startup_timeout=60)
    try:
        for _ in range(warmup):
            round_trip(kc)
        times = [round_trip(kc) for _ in range(n)]
        time.sleep(1.0)
        rss = psutil.Process(km.provisioner.process.pid).memory_info().rss / 2**20
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return {"p50": percentile(times, 50), "p99": percentile(times, 99), "start": start, "rss": rss}


def idle_rss(name: str, env: dict) -> float:
    """RSS in MB of a kernel that answered one trivial execute and rested a second."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name=name, startup_timeout=60, env={**os.environ, **env})
    try:
        round_trip(kc)
        time.sleep(1.0)
        return ku.rss_mb(km.provisioner.process.pid)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def history_measure(tmp: pathlib.Path, entries: int, starts: int) -> tuple[dict, dict]:
    """Start time and idle RSS of loupe on an empty history and on one of `entries` entries."""
    homes = {"empty": tmp / "hist-empty", "full": tmp / "hist-full"}
    ku.write_history_jsonl(homes["full"] / "loupe" / "history.jsonl", entries)
    envs = {k: {"XDG_DATA_HOME": str(d)} for k, d in homes.items()}
    t0 = time.perf_counter()
    start_time("loupe", envs["full"])  # imports history.jsonl into history.sqlite
    import_ms = (time.perf_counter() - t0) * 1000
    if (homes["full"] / "loupe" / "history.jsonl").exists():
        print("kernel_history: the history was not imported (an older kernel?); 'full' reads the "
              "JSON-lines file at each start", file=sys.stderr)
    times: dict[str, list[float]] = {"empty": [], "full": []}
    for _ in range(starts):  # alternated, so that drift of the machine hits both alike
        for k in times:
            times[k].append(start_time("loupe", envs[k]))
    rss = {k: idle_rss("loupe", envs[k]) for k in envs}
    start = {k: statistics.median(v) for k, v in times.items()}
    r = lambda x: round(x, 3)  # noqa: E731
    return ({"bench": "kernel_history_start", "empty_ms": r(start["empty"]), "full_ms": r(start["full"]),
             "ratio": r(start["full"] / start["empty"]), "entries": entries, "import_ms": r(import_ms)},
            {"bench": "kernel_history_rss", "empty_mb": r(rss["empty"]), "full_mb": r(rss["full"]),
             "ratio": r(rss["full"] / rss["empty"]), "entries": entries})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--history", type=int, default=100_000)
    args = ap.parse_args()
    tmp = isolate()
    try:
        lp = measure("loupe", args.n, args.warmup, args.starts)
        ip = measure("python3", args.n, args.warmup, args.starts)
        hist = history_measure(tmp, args.history, args.starts) if args.history > 0 else ()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r = lambda x: round(x, 3)  # noqa: E731
    print(json.dumps({
        "bench": "kernel",
        "loupe_p50_ms": r(lp["p50"]), "ipykernel_p50_ms": r(ip["p50"]),
        "ratio": r(lp["p50"] / ip["p50"]),
        "loupe_p99_ms": r(lp["p99"]), "ipykernel_p99_ms": r(ip["p99"]),
        "loupe_start_ms": r(lp["start"]), "ipykernel_start_ms": r(ip["start"]),
        "loupe_idle_rss_mb": r(lp["rss"]), "ipykernel_idle_rss_mb": r(ip["rss"]),
        "n": args.n,
    }), flush=True)
    for line in hist:
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
