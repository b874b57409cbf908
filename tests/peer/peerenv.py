"""The peer environment, .venv-peer: the tools researchers use (TransformerLens, SAELens,
circuit-tracer, on PyPI's torch), pinned in install/requirements-peer.txt and made by
`bash install/setup test`, apart from .venv (Debian's torch), which runs pytest.

A peer test runs a script of tests/peer/peer_scripts/ with .venv-peer's python in a
subprocess and gets its JSON result (and any tensors the script saved as safetensors files):

    out = peerenv.run("tl_run.py", {"model": str(folder), ...}, tmp_path)

The subprocess is offline (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE, HF_DATASETS_OFFLINE), on 2
torch threads, with a temporary HOME and caches, so nothing is downloaded and nothing of the
user's set-up is read. A missing, failed or out-of-date .venv-peer FAILS the test with the
reason and the command that makes it; it never skips.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("LOUPE_PEER_VENV", ROOT / ".venv-peer"))
REQUIREMENTS = ROOT / "install" / "requirements-peer.txt"
SCRIPTS = Path(__file__).resolve().parent / "peer_scripts"
MAKE = "`bash install/setup test` (or, for .venv-peer alone, `bash install/setup peer`)"
THREADS = 2


def python() -> Path:
    """.venv-peer's python; fails the calling test when the environment is not usable."""
    exe = VENV / "bin" / "python"
    failed = VENV / ".failed"
    stamp = VENV / ".requirements.sha256"
    if failed.is_file():
        pytest.fail(f".venv-peer could not be made; make it with {MAKE}.\n{failed.read_text()}",
                    pytrace=False)
    if not exe.exists():
        pytest.fail(f"no peer environment: {exe} is missing; make it with {MAKE}.", pytrace=False)
    if not stamp.is_file():
        pytest.fail(f"{VENV} is incomplete (no {stamp.name}: its install did not finish); "
                    f"make it again with {MAKE}.", pytrace=False)
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if stamp.read_text().strip() != want:
        pytest.fail(f"{VENV} is out of date: install/requirements-peer.txt changed since it was "
                    f"made; update it with {MAKE}.", pytrace=False)
    return exe


def environment(work: Path) -> dict[str, str]:
    """The subprocess's environment: offline, 2 threads, a temporary HOME and caches."""
    home = work / "home"
    cache = home / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{VENV / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CACHE_HOME": str(cache),
        "HF_HOME": str(cache / "huggingface"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "CIRCUIT_TRACER_CACHE_DIR": str(cache / "circuit_tracer"),
        "MPLCONFIGDIR": str(cache / "matplotlib"),
        "WANDB_MODE": "disabled",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONNOUSERSITE": "1",
        "PYTHONHASHSEED": "0",
        "LOUPE_PEER_THREADS": str(THREADS),
    }
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(THREADS)
    for k in ("LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "TMPDIR"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


def run(script: str, args: dict[str, Any], work: Path, timeout: float = 300) -> dict[str, Any]:
    """Runs peer_scripts/SCRIPT with .venv-peer's python on ARGS (a JSON object; the script
    also gets "work", a folder for its files) and returns the JSON object it wrote."""
    exe = python()
    work.mkdir(parents=True, exist_ok=True)
    inp, out = work / "peer_in.json", work / "peer_out.json"
    inp.write_text(json.dumps({**args, "work": str(work)}))
    out.unlink(missing_ok=True)
    cmd = [str(exe), str(SCRIPTS / script), str(inp), str(out)]
    try:
        p = subprocess.run(cmd, cwd=work, env=environment(work), capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script} in .venv-peer ran past {timeout} s", pytrace=False)
    if p.returncode != 0:
        tail = (p.stdout[-2000:] + "\n" + p.stderr[-6000:]).strip()
        hint = ""
        if "ModuleNotFoundError" in p.stderr or "ImportError" in p.stderr:
            hint = f"\n(.venv-peer lacks a module: make it again with {MAKE})"
        pytest.fail(f"{script} in .venv-peer exited {p.returncode}:\n{tail}{hint}", pytrace=False)
    if not out.is_file():
        pytest.fail(f"{script} in .venv-peer wrote no result ({out})", pytrace=False)
    return json.loads(out.read_text())
