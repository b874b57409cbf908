"""Wire-level robustness and several frontends: bad signatures dropped, malformed frames
survived, two clients at once, status framing and kernel_info."""
from __future__ import annotations

import json
import re
import threading
import time

import pytest
import zmq

import kernelutil as ku


def raw_socket(k: ku.Kernel, channel: str = "shell") -> zmq.Socket:
    info = k.km.get_connection_info()
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"{info['transport']}://{info['ip']}:{info[channel + '_port']}")
    return s


def signed_frames(key: bytes, msg_type: str, content, session: str = "raw-client") -> tuple[str, list[bytes]]:
    hdr = ku.header(msg_type, session)
    parts = [ku.jdump(hdr), b"{}", b"{}", content if isinstance(content, bytes) else ku.jdump(content)]
    return hdr["msg_id"], [b"<IDS|MSG>", ku.sign(key, parts), *parts]


def no_trace_of(k: ku.Kernel, msg_id: str, sock: zmq.Socket, wait: float = 1.0) -> None:
    """Nothing on iopub with this parent and no reply on the raw socket."""
    assert not sock.poll(int(wait * 1000)), "kernel answered a message it should have dropped"
    for m in k.drain_iopub(0.2):
        assert m["parent_header"].get("msg_id") != msg_id, f"iopub {m['msg_type']} for dropped message"


def test_kernel_info_reply(kernel):
    reply = kernel.shell_reply(kernel.kc.kernel_info())
    c = reply["content"]
    assert c["status"] == "ok"
    assert c["protocol_version"].split(".")[0] == "5"
    assert c["implementation"]
    assert c["language_info"]["name"] == ku.LANG
    assert isinstance(c.get("help_links", []), list)
    assert reply["header"]["date"].tzinfo is not None  # jupyter_client parsed it to a datetime
    if ku.IS_LOUPE:
        assert c["protocol_version"] == "5.5"
        assert c["language_info"]["file_extension"] == ".lua"
        assert c["implementation"] == "loupe"


def test_status_framing_of_every_request(kernel):
    for send in (kernel.kc.kernel_info, kernel.kc.comm_info, lambda: kernel.kc.complete("pri"),
                 lambda: kernel.kc.is_complete("x = 1"), lambda: kernel.kc.history(hist_access_type="tail", n=3)):
        msg_id = send()
        kernel.shell_reply(msg_id)
        out = kernel.iopub_until_idle(msg_id, timeout=10)
        assert out[0]["msg_type"] == "status" and out[0]["content"]["execution_state"] == "busy"
        assert out[-1]["content"]["execution_state"] == "idle"


def test_bad_signature_is_dropped(kernel):
    sock = raw_socket(kernel)
    try:
        msg_id, frames = signed_frames(b"definitely-the-wrong-key", "execute_request",
                                       {"code": "bad_sig_ran = 1", "silent": False})
        sock.send_multipart(frames)
        no_trace_of(kernel, msg_id, sock)
        # truncated and missing signatures too
        key = kernel.kc.session.key
        msg_id, frames = signed_frames(key, "kernel_info_request", {})
        for sig in (frames[1][:-2], b"", b"0" * 64, frames[1].upper() if frames[1] != frames[1].upper() else b"x"):
            sock.send_multipart([frames[0], sig, *frames[2:]])
        no_trace_of(kernel, msg_id, sock)
        # the same message correctly signed is answered on the raw socket
        sock.send_multipart(frames)
        assert sock.poll(10000), "no reply to a correctly signed raw message"
        reply = sock.recv_multipart()
        assert b"<IDS|MSG>" in reply
        i = reply.index(b"<IDS|MSG>")
        assert ku.sign(key, reply[i + 2:i + 6]) == reply[i + 1], "reply signature does not verify"
        hdr = json.loads(reply[i + 2])
        assert json.loads(reply[i + 3])["msg_id"] == msg_id  # parent header
        date_re = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}" + ("Z" if ku.IS_LOUPE else r"(Z|\+00:00)")
        assert re.fullmatch(date_re, hdr["date"]), hdr["date"]
        assert hdr["msg_type"] == "kernel_info_reply"
    finally:
        sock.close()
    kernel.alive_and_answering()


MALFORMED = {
    "empty": lambda key: [b""],
    "delimiter only": lambda key: [b"<IDS|MSG>"],
    "no delimiter": lambda key: [b"garbage", b"more garbage"],
    "too few frames": lambda key: [b"<IDS|MSG>", ku.sign(key, [b"{}", b"{}"]), b"{}", b"{}"],
    "non-JSON content": lambda key: (lambda p: [b"<IDS|MSG>", ku.sign(key, p), *p])(
        [ku.jdump(ku.header("execute_request")), b"{}", b"{}", b"this is not json {"]),
    "non-UTF-8 content": lambda key: (lambda p: [b"<IDS|MSG>", ku.sign(key, p), *p])(
        [ku.jdump(ku.header("execute_request")), b"{}", b"{}", b'{"code": "\xff\xfe"}']),
    "header missing fields": lambda key: (lambda p: [b"<IDS|MSG>", ku.sign(key, p), *p])(
        [b'{"msg_id": "m1"}', b"{}", b"{}", b"{}"]),
    "header not an object": lambda key: (lambda p: [b"<IDS|MSG>", ku.sign(key, p), *p])(
        [b"[1, 2, 3]", b"{}", b"{}", b"{}"]),
    "content not an object": lambda key: (lambda p: [b"<IDS|MSG>", ku.sign(key, p), *p])(
        [ku.jdump(ku.header("execute_request")), b"{}", b"{}", b'"code"']),
    "execute without code": lambda key: (lambda p: [b"<IDS|MSG>", ku.sign(key, p), *p])(
        [ku.jdump(ku.header("execute_request")), b"{}", b"{}", b"{}"]),
    "unknown msg_type": lambda key: (lambda p: [b"<IDS|MSG>", ku.sign(key, p), *p])(
        [ku.jdump(ku.header("frobnicate_request")), b"{}", b"{}", b"{}"]),
    "huge signature": lambda key: [b"<IDS|MSG>", b"a" * 100000, b"{}", b"{}", b"{}", b"{}"],
}


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_malformed_frames_survived(kernel, channel):
    key = kernel.kc.session.key
    sock = raw_socket(kernel, channel)
    try:
        for name, make in MALFORMED.items():
            sock.send_multipart(make(key))
            time.sleep(0.02)
            assert kernel.km.is_alive(), f"kernel died on {name!r}"
        kernel.drain_iopub(0.3)
        kernel.alive_and_answering()
        assert kernel.value("1+1") == "2"
    finally:
        sock.close()


def test_extra_header_keys_echoed_in_parent(kernel):
    msg = kernel.kc.session.msg("kernel_info_request", {})
    msg["header"]["subshell_id"] = None
    msg["header"]["x_custom"] = "kept"
    kernel.kc.shell_channel.send(msg)
    reply = kernel.shell_reply(msg["header"]["msg_id"])
    assert reply["parent_header"]["x_custom"] == "kept"
    assert "subshell_id" in reply["parent_header"]


def collect_until_idle(client, msg_ids: set[str], timeout: float = 30) -> list[dict]:
    """All iopub messages on one client until every msg_id in msg_ids has gone idle."""
    pending, out = set(msg_ids), []
    deadline = time.monotonic() + timeout
    while pending:
        assert time.monotonic() < deadline, f"no idle for {pending}"
        try:
            m = client.get_iopub_msg(timeout=1)
        except Exception:
            continue
        out.append(m)
        pid = m["parent_header"].get("msg_id")
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            pending.discard(pid)
    return out


def drain(client) -> None:
    while True:
        try:
            client.get_iopub_msg(timeout=0.2)
        except Exception:
            return


def test_two_clients_at_once(kernel):
    a = kernel.kc
    b = kernel.new_client()
    try:
        drain(a); drain(b)
        ida = a.execute('print("from-a")')
        idb = b.execute('print("from-b")')
        ra = a.get_shell_msg(timeout=30)
        rb = b.get_shell_msg(timeout=30)
        # replies go only to the requester, with its request as parent
        assert ra["parent_header"]["msg_id"] == ida and ra["parent_header"]["session"] == a.session.session
        assert rb["parent_header"]["msg_id"] == idb and rb["parent_header"]["session"] == b.session.session
        assert ra["content"]["status"] == rb["content"]["status"] == "ok"
        for client in (a, b):
            with pytest.raises(Exception):
                stray = client.get_shell_msg(timeout=0.3)
                print("stray shell message:", stray["msg_type"], stray["parent_header"].get("msg_id"))
        # iopub reaches both clients, each output with the right parent
        for client in (a, b):
            out = collect_until_idle(client, {ida, idb})
            by_parent = {ida: "", idb: ""}
            for m in out:
                if m["msg_type"] == "stream":
                    by_parent[m["parent_header"]["msg_id"]] += m["content"]["text"]
            assert by_parent == {ida: "from-a\n", idb: "from-b\n"}
            sessions = {m["parent_header"]["msg_id"]: m["parent_header"]["session"]
                        for m in out if m["parent_header"]}
            assert sessions[ida] == a.session.session and sessions[idb] == b.session.session
    finally:
        b.stop_channels()


def test_iopub_reaches_every_client(kernel):
    b = kernel.new_client()
    try:
        while True:
            try:
                b.get_iopub_msg(timeout=0.2)
            except Exception:
                break
        reply, out_a = kernel.execute('print("to-everyone")')
        msg_id = reply["parent_header"]["msg_id"]
        out_b = kernel.iopub_until_idle(msg_id, kc=b, timeout=10)
        assert ku.stream_text(out_b) == ku.stream_text(out_a) == "to-everyone\n"
        assert [m["msg_type"] for m in out_b] == [m["msg_type"] for m in out_a]
        for m in out_b:
            assert m["parent_header"]["session"] == kernel.kc.session.session
    finally:
        b.stop_channels()


@pytest.mark.lua
def test_a_late_first_subscriber_still_gets_the_first_request(isolated_env):
    """A frontend that executes as soon as kernel_info is answered (jupyter console with piped
    input does) can have its iopub connection still on the way; an XPUB socket drops what it
    publishes before anyone subscribes, and the frontend then waits for an idle that never
    comes. Made certain here: the client subscribes only after the execute reply. The kernel
    holds iopub until its first subscriber (for a few seconds at most), so busy, the output
    and idle of that first request all arrive."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=ku.KERNEL_MESSAGE)
    km.start_kernel()
    kc = km.client()
    try:
        kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        msg_id = kc.execute('print("early " .. 6*7)')
        reply = kc.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "ok"
        kc.iopub_channel.start()
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                m = kc.get_iopub_msg(timeout=0.5)
            except Exception:
                continue
            seen.append(m)
            if (m["msg_type"] == "status" and m["parent_header"].get("msg_id") == msg_id
                    and m["content"]["execution_state"] == "idle"):
                break
        mine = [m for m in seen if m["parent_header"].get("msg_id") == msg_id]
        kinds = [(m["msg_type"], m["content"].get("execution_state")) for m in mine]
        assert kinds and kinds[0] == ("status", "busy"), kinds
        assert kinds[-1] == ("status", "idle"), kinds
        assert ku.stream_text(mine) == "early 42\n"
        assert seen[0]["msg_type"] == "iopub_welcome"  # the welcome first, then what was held
        # and from then on iopub flows as usual
        msg_id = kc.execute("x = 1")
        kc.get_shell_msg(timeout=30)
        late = []
        while not late or late[-1]["content"].get("execution_state") != "idle":
            m = kc.get_iopub_msg(timeout=10)
            if m["parent_header"].get("msg_id") == msg_id:
                late.append(m)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
