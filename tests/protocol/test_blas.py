"""The OpenBLAS core: a kernel or `loupe run` started without OPENBLAS_CORETYPE runs the best
core the CPU supports (restarting itself once where OpenBLAS chose a weaker one), a user's
OPENBLAS_CORETYPE is kept, and a restart never loops. Oracles independent of loupe: the CPU's
flags in /proc/cpuinfo, and the core the same OpenBLAS chooses by itself in a Python process."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

import kernelutil as ku

pytestmark = pytest.mark.lua

GUARD = "LOUPE_BLAS_RESTARTED"
# OpenBLAS's x86 core names by the instruction set they need (3 AVX-512, 2 AVX2, 1 AVX, 0 SSE).
LEVEL = {"skylakex": 3, "cooperlake": 3, "sapphirerapids": 3, "haswell": 2, "zen": 2, "excavator": 2,
         "sandybridge": 1, "bulldozer": 1, "piledriver": 1, "steamroller": 1, "prescott": 0, "core2": 0,
         "penryn": 0, "dunnington": 0, "nehalem": 0, "atom": 0, "nano": 0, "barcelona": 0}


def cpu_level() -> int:
    flags: set[str] = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return 3
    if {"avx2", "fma"} <= flags:
        return 2
    return 1 if "avx" in flags else 0


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", GUARD, "LOUPE_LOG")}
    env.update(extra)
    return env


def openblas_own_choice() -> str:
    """The core the OpenBLAS loupe links chooses without being told (asked in another process)."""
    code = ("import ctypes; lib = ctypes.CDLL('libopenblas.so.0'); "
            "lib.openblas_get_corename.restype = ctypes.c_char_p; print(lib.openblas_get_corename().decode())")
    p = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        pytest.skip(f"cannot load libopenblas.so.0 here: {p.stderr.strip()}")
    return p.stdout.strip()


def version(env: dict) -> tuple[str, str, str]:
    p = subprocess.run([str(ku.LOUPE), "--version"], env=env, capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    m = re.search(r"^BLAS: core (\S+) \((.*?)\); (.*)$", p.stdout, re.M)
    assert m, p.stdout
    return m.group(1), m.group(2), m.group(3)


def test_without_the_variable_loupe_runs_the_best_core_the_cpu_supports():
    core, how, config = version(clean_env())
    own = openblas_own_choice()
    assert LEVEL.get(core.lower(), -1) <= max(cpu_level(), LEVEL.get(own.lower(), -1)), \
        f"{core} needs more than this CPU has"
    cpu = cpu_level()
    if "DYNAMIC_ARCH" in config and cpu >= 2 and LEVEL.get(own.lower(), 9) < cpu:
        # the case this machine class has: OpenBLAS alone picks too weak a core (loupe raises
        # it to SkylakeX or Haswell; an AVX-only CPU is left as OpenBLAS chose)
        assert LEVEL[core.lower()] == cpu, (core, own)
        assert how == f"OpenBLAS chose {own}; restarted with OPENBLAS_CORETYPE={core}", how
    else:
        assert core == own and how == "chosen by OpenBLAS", (core, own, how)


def test_a_users_core_is_kept_even_a_weaker_one():
    core, how, _ = version(clean_env(OPENBLAS_CORETYPE="Prescott"))  # every x86-64 CPU runs it
    assert (core, how) == ("Prescott", "OPENBLAS_CORETYPE=Prescott")


def test_the_guard_stops_a_second_restart():
    # A restarted process whose request OpenBLAS ignored must not restart again: with the guard
    # set, loupe runs whatever OpenBLAS chose and says so.
    t0 = time.monotonic()
    core, how, _ = version(clean_env(**{GUARD: "Prescott"}))
    assert time.monotonic() - t0 < 20
    assert core == openblas_own_choice() and how == "chosen by OpenBLAS", (core, how)


def test_loupe_run_logs_the_restart_once_and_multiplies(tmp_path):
    f = tmp_path / "mm.lua"
    f.write_text('a = loupe.ones(64, 64)\nprint((a:matmul(a)):sum())\n'
                 'print(os.getenv("OPENBLAS_CORETYPE"), os.getenv("LOUPE_BLAS_RESTARTED"))\n')
    p = subprocess.run([str(ku.LOUPE), "run", str(f)], env=clean_env(), capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] in ("262144", "262144.0"), p.stdout
    core, _, _ = version(clean_env())
    notes = [ln for ln in p.stderr.splitlines() if "BLAS:" in ln]
    if core != openblas_own_choice():
        assert notes == [f"[loupe] BLAS: OpenBLAS chose its {openblas_own_choice()} core on this CPU, which runs "
                         f"{core}: restarted with OPENBLAS_CORETYPE={core}"], p.stderr
        # the guard is gone, the core stays for what the script starts
        assert p.stdout.splitlines()[1].split() == [core, "nil"], p.stdout
    else:
        assert notes == [], p.stderr


STATE = ('local t = {} for l in io.lines("/proc/self/status") do t[#t + 1] = l end '
         'local fds = 0 for _ in io.popen("ls /proc/" .. io.open("/proc/self/stat"):read("l"):match("^%d+") '
         '.. "/fd"):lines() do fds = fds + 1 end '
         'print(io.open("/proc/self/stat"):read("l"):match("^%d+"), os.getenv("OPENBLAS_CORETYPE"), fds) '
         'for _, l in ipairs(t) do if l:match("^Sig[BIC]") then print(l) end end')


def kernel_state(tmp_path, name: str, env: dict) -> tuple[list[str], int, str]:
    """Starts a kernel with exactly env, runs STATE, stops it; its stdout lines, the PID
    jupyter_client started, and the kernel's log (stderr)."""
    from jupyter_client.manager import KernelManager

    log = tmp_path / f"{name}.log"
    km = KernelManager(kernel_name=ku.KERNEL_MESSAGE)
    with open(log, "w") as err:
        km.start_kernel(env=env, stderr=err)
    try:
        k = ku.Kernel(km, km.client())
        k.kc.start_channels()
        k.kc.wait_for_ready(timeout=60)
        out = k.ok(STATE)
        pid = km.provisioner.process.pid
    finally:
        k.stop()
    return ku.stream_text(out).splitlines(), pid, log.read_text()


def test_a_restarted_kernel_keeps_its_pid_signals_and_descriptors(isolated_env, tmp_path):
    core, how, _ = version(clean_env())
    lines, pid, log = kernel_state(tmp_path, "fresh", clean_env())
    kpid, kcore, fds = lines[0].split()
    assert int(kpid) == pid, "exec keeps the PID that jupyter_client (and JPY_PARENT_PID's watch) knows"
    notes = [ln for ln in log.splitlines() if "BLAS:" in ln]
    if how.startswith("OpenBLAS chose"):
        assert kcore == core
        assert len(notes) == 1 and f"restarted with OPENBLAS_CORETYPE={core}" in notes[0], log
    else:
        assert notes == [], log
    # The same kernel told the core up front never restarts: what exec could have changed
    # (ignored and blocked signals, inherited descriptors) must be the same in both.
    lines2, _, log2 = kernel_state(tmp_path, "preset", clean_env(OPENBLAS_CORETYPE=core))
    assert [ln for ln in log2.splitlines() if "BLAS:" in ln] == [], log2
    assert lines2[0].split()[1:] == [core, fds], (lines, lines2)
    assert lines[1:] == lines2[1:], (lines, lines2)
