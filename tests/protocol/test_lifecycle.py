"""Shutdown, restart, the end of a kernel whose frontend died, and history (tail, range,
search; persisted across restarts)."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

import kernelutil as ku


def test_shutdown_request_ends_the_process(kernel):
    proc = kernel.km.provisioner.process
    msg_id = kernel.kc.shutdown(restart=False)
    reply = kernel.control_reply(msg_id, timeout=10)
    assert reply["msg_type"] == "shutdown_reply"
    assert reply["content"]["restart"] is False
    assert reply["content"]["status"] == "ok"
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    assert proc.poll() is not None, "kernel still running 5 s after shutdown_request"
    assert proc.returncode == 0, f"exit status {proc.returncode}"


def test_shutdown_restart_flag_echoed(kernel):
    msg_id = kernel.kc.shutdown(restart=True)
    reply = kernel.control_reply(msg_id, timeout=10)
    assert reply["content"]["restart"] is True


def test_restart_keeps_working_and_forgets_globals(kernel):
    kernel.ok("x = 5")
    old_pid = kernel.pid
    kernel.km.restart_kernel(now=False)
    kernel.kc.wait_for_ready(timeout=30)
    assert kernel.pid != old_pid
    kernel.drain_iopub(0.2)
    reply, out = kernel.execute("1+1")
    assert reply["content"]["execution_count"] == 1  # a new process counts from 1
    assert ku.result_text(out) == "2"
    if ku.IS_LOUPE:
        assert kernel.value("x == nil") == "true"


def test_restart_new_session_id(kernel):
    first = kernel.shell_reply(kernel.kc.kernel_info())["header"]["session"]
    kernel.km.restart_kernel(now=False)
    kernel.kc.wait_for_ready(timeout=30)
    second = kernel.shell_reply(kernel.kc.kernel_info())["header"]["session"]
    assert first != second


def history(k: ku.Kernel, **kw) -> list:
    reply = k.shell_reply(k.kc.history(**kw))
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply["content"]["history"]


@pytest.mark.lua
def test_history_tail_range_search(kernel):
    cells = ["h_alpha = 1", "h_beta = 2", "h_alpha + h_beta"]
    for c in cells:
        kernel.ok(c)
    tail = history(kernel, hist_access_type="tail", n=3, output=False, raw=True)
    assert [h[2] for h in tail] == cells
    session, first = tail[0][0], tail[0][1]
    assert [h[1] for h in tail] == [first, first + 1, first + 2]
    rng = history(kernel, hist_access_type="range", session=session, start=first + 1,
                  stop=first + 3, output=False, raw=True)
    assert [h[2] for h in rng] == cells[1:]
    found = history(kernel, hist_access_type="search", pattern="h_alpha*", output=False, raw=True)
    assert [h[2] for h in found][-2:] == ["h_alpha = 1", "h_alpha + h_beta"]
    with_out = history(kernel, hist_access_type="tail", n=1, output=True, raw=True)
    assert len(with_out[0][2]) == 2 and with_out[0][2][0] == cells[-1]
    # silent / store_history=False cells are not recorded
    kernel.ok("h_hidden = 1", store_history=False)
    assert all("h_hidden" not in h[2] for h in history(kernel, hist_access_type="tail", n=5))


@pytest.mark.lua
def test_history_persists_across_restart(make_kernel, isolated_env):
    k = make_kernel()
    k.ok("persist_marker_8413 = 1")
    k.km.restart_kernel(now=False)
    k.kc.wait_for_ready(timeout=30)
    k.drain_iopub(0.2)
    found = history(k, hist_access_type="search", pattern="persist_marker_8413*")
    assert any(h[2] == "persist_marker_8413 = 1" for h in found), found
    tail = history(k, hist_access_type="tail", n=10)
    assert any(h[2] == "persist_marker_8413 = 1" for h in tail)
    # a new kernel process (not a restart) sees it too, from the user's data directory
    k2 = make_kernel()
    assert any(h[2] == "persist_marker_8413 = 1"
               for h in history(k2, hist_access_type="search", pattern="persist_marker_*"))
    # and the file is in the isolated home, not the real one
    hits = [p for p in isolated_env.home.rglob("*") if p.is_file() and "persist_marker_8413" in
            p.read_bytes().decode("utf-8", "replace")]
    assert hits, "history file not under the test HOME / XDG_DATA_HOME"


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for its new parent counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _kernel_under_a_parent(tmp_path, owned: bool, cell: str | None):
    """Starts the kernel as the child of a shell (the frontend), with JPY_PARENT_PID set as
    jupyter_client sets it when owned; checks that it answers, optionally starts a cell
    without waiting for it, and returns (parent, kernel pid, client)."""
    from jupyter_client.blocking.client import BlockingKernelClient
    from jupyter_client.connect import write_connection_file

    conn, _ = write_connection_file(str(tmp_path / "conn.json"))
    script = ('JPY_PARENT_PID=$$ "$0" kernel -f "$1" & echo $!; exec sleep 120' if owned
              else '"$0" kernel -f "$1" & echo $!; exec sleep 120')
    parent = subprocess.Popen(["sh", "-c", script, str(ku.LOUPE), conn],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "JPY_PARENT_PID": ""})
    pid = int(parent.stdout.readline())
    kc = BlockingKernelClient()
    kc.load_connection_file(conn)
    kc.start_channels()
    kc.wait_for_ready(timeout=30)
    if cell:
        kc.execute(cell)
        time.sleep(0.3)
    return parent, pid, kc


@pytest.mark.lua
@pytest.mark.parametrize("cell", [None, "while true do end"], ids=["idle", "busy"])
def test_kernel_ends_when_its_frontend_dies(tmp_path, isolated_env, cell):
    """A frontend that is killed cannot shut its kernel down; a kernel it owned
    (JPY_PARENT_PID) must not live on holding its memory: it ends within seconds, also in
    the middle of a cell."""
    parent, pid, kc = _kernel_under_a_parent(tmp_path, True, cell)
    try:
        parent.kill()
        parent.wait()
        t0 = time.monotonic()
        while not _gone(pid) and time.monotonic() - t0 < 15:
            time.sleep(0.1)
        assert _gone(pid), "the kernel outlived its frontend by 15 s"
    finally:
        kc.stop_channels()
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.lua
def test_independent_kernel_outlives_its_launcher(tmp_path, isolated_env):
    """Without JPY_PARENT_PID (jupyter_client's independent kernels, or one started by hand)
    the kernel stays for whoever connects next."""
    parent, pid, kc = _kernel_under_a_parent(tmp_path, False, None)
    try:
        parent.kill()
        parent.wait()
        time.sleep(2.5)  # the watch looks once a second
        assert not _gone(pid)
        msg_id = kc.kernel_info()
        reply = kc.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
    finally:
        kc.stop_channels()
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)
