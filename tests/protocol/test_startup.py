"""Starting the kernel on ports it cannot have: it exits non-zero, soon, with a message that
names the socket and the port (no crash, no hang)."""
from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid

import pytest

import kernelutil as ku

pytestmark = pytest.mark.lua

CHANNELS = ("shell", "control", "stdin", "iopub", "hb")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.parametrize("channel", CHANNELS)
def test_port_in_use_is_a_clear_error(tmp_path, channel):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    ports = dict(zip(CHANNELS, free_ports(len(CHANNELS))))
    ports[channel] = port
    conn = {f"{ch}_port": p for ch, p in ports.items()}
    conn.update(ip="127.0.0.1", transport="tcp", signature_scheme="hmac-sha256", key=str(uuid.uuid4()),
                kernel_name="loupe")
    path = tmp_path / "kernel.json"
    path.write_text(json.dumps(conn))
    t0 = time.monotonic()
    try:
        p = subprocess.run([str(ku.LOUPE), "kernel", "-f", str(path)], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
    finally:
        taken.close()
    elapsed = time.monotonic() - t0
    assert p.returncode == 1, f"exit status {p.returncode}; stderr:\n{p.stderr}"
    want = f"cannot bind the {channel} socket to tcp://127.0.0.1:{port}: Address already in use"
    assert want in p.stderr, p.stderr
    assert elapsed < 15, f"took {elapsed:.1f} s to give up"
