"""stdin (input_request round trip, allow_stdin=False error) and comms."""
from __future__ import annotations

import time
import uuid
from queue import Empty

import pytest

import kernelutil as ku


def test_stdin_round_trip(kernel):
    msg_id = kernel.kc.execute(ku.code("input"), allow_stdin=True)
    req = kernel.kc.get_stdin_msg(timeout=10)
    assert req["msg_type"] == "input_request"
    assert req["parent_header"]["msg_id"] == msg_id
    assert req["content"]["prompt"] == "name? "
    assert req["content"].get("password") in (False, None)
    kernel.kc.input("ada")
    reply = kernel.shell_reply(msg_id, timeout=10)
    kernel.iopub_until_idle(msg_id)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert "ada" in kernel.value("x")


@pytest.mark.lua
def test_io_read_round_trip(kernel):
    msg_id = kernel.kc.execute("line = io.read()", allow_stdin=True)
    req = kernel.kc.get_stdin_msg(timeout=10)
    assert req["msg_type"] == "input_request"
    kernel.kc.input("hello there")
    assert kernel.shell_reply(msg_id, timeout=10)["content"]["status"] == "ok"
    kernel.iopub_until_idle(msg_id)
    assert "hello there" in kernel.value("line")


def test_stdin_not_allowed_is_an_immediate_error(kernel):
    t0 = time.monotonic()
    reply, out = kernel.execute(ku.code("input"), allow_stdin=False, timeout=10)
    assert time.monotonic() - t0 < 5
    assert reply["content"]["status"] == "error", reply["content"]
    ename, evalue, tb = ku.error_of(reply)
    assert ename
    text = (evalue + tb).lower()
    assert "stdin" in text or "input" in text, (ename, evalue)
    with pytest.raises(Empty):
        kernel.kc.get_stdin_msg(timeout=0.3)
    kernel.alive_and_answering()


def test_comm_info(kernel):
    msg_id = kernel.kc.comm_info()
    reply = kernel.shell_reply(msg_id)
    assert reply["msg_type"] == "comm_info_reply"
    assert reply["content"]["status"] == "ok"
    assert isinstance(reply["content"]["comms"], dict)


def test_comm_open_unknown_target_is_closed(kernel):
    comm_id = uuid.uuid4().hex
    msg_id = kernel.send_shell("comm_open", {"comm_id": comm_id, "target_name": "no-such-target",
                                             "data": {}})
    out = kernel.iopub_until_idle(msg_id, timeout=10)
    closes = ku.of_type(out, "comm_close")
    assert closes, [m["msg_type"] for m in out]
    assert closes[0]["content"]["comm_id"] == comm_id
    assert out[0]["msg_type"] == "status" and out[0]["content"]["execution_state"] == "busy"
    kernel.alive_and_answering()


@pytest.mark.lua
def test_comm_echo_target_from_lua(kernel):
    kernel.ok('loupe.comm_target("echo", function(comm, data) '
              'comm:on_msg(function(d) comm:send(d) end) end)')
    comm_id = uuid.uuid4().hex
    open_id = kernel.send_shell("comm_open", {"comm_id": comm_id, "target_name": "echo",
                                              "data": {"hi": 1}})
    out = kernel.iopub_until_idle(open_id, timeout=10)
    assert not ku.of_type(out, "comm_close"), "known target was closed"

    info_id = kernel.kc.comm_info(target_name="echo")
    info = kernel.shell_reply(info_id)
    assert comm_id in info["content"]["comms"], info["content"]
    assert info["content"]["comms"][comm_id]["target_name"] == "echo"

    payload = {"text": "ping", "n": [1, 2, 3], "nested": {"ok": True}}
    msg_id = kernel.send_shell("comm_msg", {"comm_id": comm_id, "data": payload})
    out = kernel.iopub_until_idle(msg_id, timeout=10)
    echoes = ku.of_type(out, "comm_msg")
    assert len(echoes) == 1, [m["msg_type"] for m in out]
    assert echoes[0]["content"]["comm_id"] == comm_id
    assert echoes[0]["content"]["data"] == payload
    assert echoes[0]["parent_header"]["msg_id"] == msg_id

    # comm_close from the client forgets the comm
    close_id = kernel.send_shell("comm_close", {"comm_id": comm_id, "data": {}})
    kernel.iopub_until_idle(close_id, timeout=10)
    info = kernel.shell_reply(kernel.kc.comm_info())
    assert comm_id not in info["content"]["comms"]
