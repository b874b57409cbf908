"""Interrupts in both modes (message: interrupt_request on control; signal: SIGINT to the
process group), answered within 0.5 s, globals kept; SIGINT while idle never ends the kernel;
heartbeat and control keep answering while a cell runs."""
from __future__ import annotations

import os
import signal
import time

import pytest

import kernelutil as ku

LIMIT_S = 0.5
MODES = [pytest.param(ku.KERNEL_MESSAGE, id="message"), pytest.param(ku.KERNEL_SIGNAL, id="signal")]


def wait_running(k: ku.Kernel, msg_id: str, timeout: float = 10) -> None:
    """Waits for the cell's execute_input (it has started), then a moment for it to be deep in."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = k.kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
            time.sleep(0.3)
            return
    raise TimeoutError("cell never started")


@pytest.mark.parametrize("kernel_name", MODES)
@pytest.mark.parametrize("busy", ["busy_loop", "c_sleep"])
def test_interrupt_busy_cell(make_kernel, kernel_name, busy):
    k = make_kernel(kernel_name)
    k.ok("x = 5")
    msg_id = k.kc.execute(ku.code(busy))
    wait_running(k, msg_id)
    t0 = time.monotonic()
    k.km.interrupt_kernel()
    reply = k.shell_reply(msg_id, timeout=10)
    elapsed = time.monotonic() - t0
    out = k.iopub_until_idle(msg_id, timeout=10)
    assert reply["content"]["status"] == "error", reply["content"]
    assert reply["content"]["ename"] == "KeyboardInterrupt", reply["content"]
    assert ku.of_type(out, "error"), [m["msg_type"] for m in out]
    assert elapsed < LIMIT_S, f"interrupt answered after {elapsed:.3f} s"
    # the kernel is still there, with its globals
    assert k.km.is_alive()
    assert k.value("x") == "5"
    # and can be interrupted again
    msg_id = k.kc.execute(ku.code(busy))
    wait_running(k, msg_id)
    k.km.interrupt_kernel()
    assert k.shell_reply(msg_id, timeout=5)["content"]["ename"] == "KeyboardInterrupt"


@pytest.mark.parametrize("kernel_name", MODES)
def test_sigint_while_idle_is_harmless(make_kernel, kernel_name):
    k = make_kernel(kernel_name)
    k.ok("x = 5")
    for _ in range(3):
        os.kill(k.pid, signal.SIGINT)
        time.sleep(0.1)
    if os.getpgid(k.pid) == k.pid:  # jupyter_client starts kernels in their own group
        os.killpg(k.pid, signal.SIGINT)
    time.sleep(0.3)
    assert k.km.is_alive()
    k.alive_and_answering()
    assert k.value("x") == "5"
    # a stale interrupt flag must not kill the next cell
    k.ok("y = 1")


def test_interrupt_of_idle_kernel_by_message(kernel):
    """interrupt_request while idle gets an interrupt_reply; the next cell runs normally."""
    msg = kernel.kc.session.msg("interrupt_request", {})
    kernel.kc.control_channel.send(msg)
    reply = kernel.control_reply(msg["header"]["msg_id"])
    assert reply["msg_type"] == "interrupt_reply"
    assert reply["content"]["status"] == "ok"
    assert kernel.value("1+1") == "2"


def test_heartbeat_and_control_while_busy(kernel):
    msg_id = kernel.kc.execute(ku.code("busy_loop"))
    wait_running(kernel, msg_id)
    assert kernel.kc.hb_channel.is_beating()
    time.sleep(1.5)  # several heartbeat periods while the cell spins
    assert kernel.kc.hb_channel.is_beating()
    # kernel_info on control is answered during the cell
    info = kernel.kc.session.msg("kernel_info_request", {})
    kernel.kc.control_channel.send(info)
    t0 = time.monotonic()
    reply = kernel.control_reply(info["header"]["msg_id"], timeout=5)
    assert reply["msg_type"] == "kernel_info_reply"
    assert time.monotonic() - t0 < 1.0
    kernel.km.interrupt_kernel()
    assert kernel.shell_reply(msg_id, timeout=5)["content"]["status"] == "error"
