"""The `loupe` command: --version, install (kernelspec contents), bad connection files, run."""
from __future__ import annotations

import json
import subprocess

import pytest

import kernelutil as ku

pytestmark = pytest.mark.lua


def loupe(*args: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(ku.LOUPE), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def test_version():
    p = loupe("--version")
    assert p.returncode == 0
    assert p.stdout.startswith("loupe "), p.stdout


@pytest.mark.parametrize("name,mode", [("loupe", "message"), ("loupe-signal", "signal")])
def test_installed_kernelspec(isolated_env, name, mode):
    d = isolated_env.kernelspec_dir(name)
    spec = json.loads((d / "kernel.json").read_text())
    assert "{connection_file}" in spec["argv"]
    assert spec["argv"][1:3] == ["kernel", "-f"] or "kernel" in spec["argv"], spec["argv"]
    assert spec["language"] == "lua"
    assert spec.get("interrupt_mode") == mode
    assert spec.get("display_name")
    assert "kernel_protocol_version" not in spec  # no registration-file handshake
    for logo in ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg"):
        assert (d / logo).is_file() and (d / logo).stat().st_size > 0, logo
    assert (d / "logo-32x32.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_install_user_and_name(tmp_path):
    p = loupe("install", "--prefix", str(tmp_path), "--name", "loupe-x")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "share/jupyter/kernels/loupe-x/kernel.json").is_file()


def test_missing_connection_file(tmp_path):
    missing = tmp_path / "nope.json"
    p = loupe("kernel", "-f", str(missing), timeout=10)
    assert p.returncode != 0
    assert str(missing) in p.stderr or "nope.json" in p.stderr, p.stderr


@pytest.mark.parametrize("content", ["", "{not json", '{"shell_port": 1}', "[1, 2]",
                                     '{"ip": "127.0.0.1", "transport": "tcp", "shell_port": "x"}'])
def test_invalid_connection_file(tmp_path, content):
    f = tmp_path / "conn.json"
    f.write_text(content)
    p = loupe("kernel", "-f", str(f), timeout=10)
    assert p.returncode != 0
    assert "conn.json" in p.stderr, p.stderr


def test_run_file_ok(tmp_path):
    f = tmp_path / "ok.lua"
    f.write_text('x = 6 * 7\nprint("x is", x)\n')
    p = loupe("run", str(f))
    assert p.returncode == 0, p.stderr
    assert "x is\t42" in p.stdout or "x is 42" in p.stdout, p.stdout


def test_run_file_error(tmp_path):
    f = tmp_path / "bad.lua"
    f.write_text('print("before")\nerror("boom")\n')
    p = loupe("run", str(f))
    assert p.returncode != 0
    assert "before" in p.stdout
    assert "boom" in (p.stderr + p.stdout)
