"""execute_request: results, errors, aborts, counts, output streaming, progress bars."""
from __future__ import annotations

import re
import time

import pytest

import kernelutil as ku

lua = pytest.mark.lua


def test_execution_count_increments(kernel):
    counts = []
    for _ in range(3):
        reply, out = kernel.execute("1+1")
        counts.append(reply["content"]["execution_count"])
        inputs = ku.of_type(out, "execute_input")
        assert inputs and inputs[0]["content"]["execution_count"] == counts[-1]
        res = ku.of_type(out, "execute_result")
        assert res and res[0]["content"]["execution_count"] == counts[-1]
    assert counts[1] == counts[0] + 1 and counts[2] == counts[1] + 1
    # silent: no execute_input, no result, count unchanged
    reply, out = kernel.execute("1+1", silent=True)
    assert reply["content"]["status"] == "ok"
    assert not ku.of_type(out, "execute_input", "execute_result")
    reply, _ = kernel.execute("1+1", store_history=False)
    reply, _ = kernel.execute("1+1")
    assert reply["content"]["execution_count"] == counts[2] + 1


def test_message_order(kernel):
    reply, out = kernel.execute('print("a")\n1+1')
    types = [m["msg_type"] for m in out]
    assert types[0] == "status" and types[1] == "execute_input", types
    assert types[-1] == "status", types
    assert types.index("stream") < types.index("execute_result"), types


@pytest.mark.parametrize("stop_on_error", [True, False])
def test_abort_queued_executes_after_error(kernel, stop_on_error):
    kernel.ok("y = 0")
    ids = [kernel.kc.execute(ku.code("slow_error"), stop_on_error=stop_on_error),
           kernel.kc.execute("y = 1", stop_on_error=stop_on_error),
           kernel.kc.execute("y = 2", stop_on_error=stop_on_error)]
    replies = [kernel.shell_reply(i, timeout=30) for i in ids]
    for i in ids:
        kernel.iopub_until_idle(i, timeout=30)
    assert replies[0]["content"]["status"] == "error"
    if stop_on_error:
        for r in replies[1:]:
            assert r["content"]["status"] == "error", r["content"]
            assert r["content"]["ename"] == "ExecutionAborted", r["content"]
            assert "execution_count" in r["content"]
        assert kernel.value("y") == "0"
    else:
        assert [r["content"]["status"] for r in replies[1:]] == ["ok", "ok"]
        assert kernel.value("y") == "2"
    # later requests run normally: the abort applies only to what was queued
    assert kernel.value("1+1") == "2"


def test_user_expressions(kernel):
    kernel.ok("x = 5")
    reply, _ = kernel.execute("y = 1", user_expressions={"a": "x * 2", "bad": "x +"})
    ue = reply["content"]["user_expressions"]
    assert ue["a"]["status"] == "ok"
    assert ue["a"]["data"]["text/plain"] == "10"
    assert ue["bad"]["status"] == "error"


@lua
def test_last_expression_is_the_result(kernel):
    assert kernel.value("6*7") == "42"
    assert kernel.value("x = 1") is None          # a statement shows nothing
    assert kernel.value("local a = 3\na + 1") == "4"
    assert kernel.value("nil") is None
    assert kernel.value("'abc'") is not None and "abc" in kernel.value("'abc'")


@lua
def test_table_shown_readably(kernel):
    assert kernel.value("{1, 2, 3}") == "{1, 2, 3}"
    assert kernel.value("{a = 1}") == "{a = 1}"
    nested = kernel.value("{1, {2, 3}, b = {c = true}}")
    assert "{2, 3}" in nested and "c = true" in nested


@lua
def test_globals_persist(kernel):
    kernel.ok("function sq(v) return v * v end\nn = 7")
    assert kernel.value("sq(n)") == "49"


@lua
def test_runtime_error_has_cell_line(kernel):
    reply, out = kernel.execute('local a = 1\nerror("boom")')
    ename, evalue, tb = ku.error_of(reply)
    assert reply["content"]["status"] == "error"
    assert ename == "LuaError"
    assert "boom" in evalue
    assert ":2:" in evalue + tb, (evalue, tb)
    assert re.search(r"In \[\d+\]:2:", evalue + tb), (evalue, tb)
    errs = ku.of_type(out, "error")
    assert len(errs) == 1 and errs[0]["content"]["ename"] == "LuaError"
    assert isinstance(errs[0]["content"]["traceback"], list)
    reply, _ = kernel.execute("local t = nil\nlocal u = 2\nreturn t.x")
    assert ":3:" in ku.error_of(reply)[1] and "attempt to index" in ku.error_of(reply)[1]


@lua
def test_syntax_error(kernel):
    reply, out = kernel.execute("x = = 1")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "SyntaxError"
    assert ku.of_type(out, "error")
    kernel.alive_and_answering()


@lua
@pytest.mark.parametrize("value", ["{code = 42}", "42", "nil", "setmetatable({}, {__tostring = function() return 'custom!' end})"])
def test_error_with_non_string_value(kernel, value):
    reply, _ = kernel.execute(f"error({value})")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "LuaError"
    if "custom" in value:
        assert "custom!" in reply["content"]["evalue"]
    assert kernel.value("1+1") == "2"


@lua
def test_runaway_recursion(kernel):
    reply, _ = kernel.execute("function f() return 1 + f() end f()", timeout=60)
    assert reply["content"]["status"] == "error"
    assert "stack overflow" in reply["content"]["evalue"] + "\n".join(reply["content"]["traceback"])
    assert kernel.value("1+1") == "2"


@lua
def test_lua_out_of_memory(make_kernel):
    k = make_kernel(env={"LOUPE_LUA_MEMORY_LIMIT": "256MB"})
    reply, _ = k.execute('t = {} for i = 1, 1e9 do t[i] = string.rep("x", 1000) .. i end', timeout=90)
    assert reply["content"]["status"] == "error", reply["content"]
    assert reply["content"]["ename"] == "MemoryError", reply["content"]
    k.ok("t = nil collectgarbage()")
    assert k.value("1+1") == "2"
    assert k.km.is_alive()


@lua
def test_print_is_coalesced(kernel):
    reply, out = kernel.execute("for i = 1, 1000 do print(i) end")
    streams = ku.of_type(out, "stream")
    assert ku.stream_text(out) == "".join(f"{i}\n" for i in range(1, 1001))
    assert len(streams) <= 5, f"{len(streams)} stream messages for a fast loop"


@lua
def test_print_is_live(kernel):
    """Output of a long cell arrives while it runs, not only at the end."""
    msg_id = kernel.kc.execute('print("early") loupe.sleep(2) print("late")')
    t0 = time.monotonic()
    first_stream_at = None
    while True:
        m = kernel.kc.get_iopub_msg(timeout=10)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "stream" and first_stream_at is None:
            first_stream_at = time.monotonic() - t0
            assert "early" in m["content"]["text"]
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    assert first_stream_at is not None and first_stream_at < 1.5, first_stream_at


@lua
def test_stdout_stderr_io_write(kernel):
    out = kernel.ok('io.write("a", 1, "\\n") io.stderr:write("err\\n") print("p", 2)')
    assert ku.stream_text(out, "stdout") == "a1\np\t2\n"
    assert ku.stream_text(out, "stderr") == "err\n"


@lua
def test_huge_output_is_capped(kernel):
    t0 = time.monotonic()
    reply, out = kernel.execute('for i = 1, 100000 do print(string.rep("x", 99)) end', timeout=90)
    assert reply["content"]["status"] == "ok"
    text = ku.stream_text(out, "stdout") + ku.stream_text(out, "stderr")
    assert "output truncated" in text
    assert len(text.encode()) < 2_000_000, f"{len(text)} bytes of stream text"
    assert len(ku.of_type(out, "stream")) < 1000
    assert time.monotonic() - t0 < 60
    # the cap is per request: the next cell prints again
    assert ku.stream_text(kernel.ok('print("again")')) == "again\n"


@lua
def test_c_output_to_fd1_and_fd2(kernel):
    out = kernel.ok('os.execute("echo from-c") os.execute("echo from-c-err 1>&2")')
    assert "from-c\n" in ku.stream_text(out, "stdout")
    assert "from-c-err\n" in ku.stream_text(out, "stderr")


@lua
def test_display_and_clear_output(kernel):
    out = kernel.ok("display(loupe.html('<b>x</b>'))")
    dd = ku.of_type(out, "display_data")
    assert dd and dd[0]["content"]["data"]["text/html"] == "<b>x</b>"
    assert "text/plain" in dd[0]["content"]["data"]
    out = kernel.ok("display(loupe.markdown('**x**'))")
    assert ku.of_type(out, "display_data")[0]["content"]["data"]["text/markdown"] == "**x**"
    out = kernel.ok("display({1, 2})")
    assert ku.of_type(out, "display_data")[0]["content"]["data"]["text/plain"] == "{1, 2}"
    out = kernel.ok("clear_output(true)")
    co = ku.of_type(out, "clear_output")
    assert co and co[0]["content"]["wait"] is True


@lua
def test_progress_bar(kernel):
    t0 = time.monotonic()
    out = kernel.ok('for i in loupe.progress(50, "work") do loupe.sleep(0.01) end', timeout=60)
    duration = time.monotonic() - t0
    shows = ku.of_type(out, "display_data")
    updates = ku.of_type(out, "update_display_data")
    assert len(shows) == 1, [m["msg_type"] for m in out]
    display_id = shows[0]["content"]["transient"]["display_id"]
    assert display_id
    assert all(u["content"]["transient"]["display_id"] == display_id for u in updates)
    assert len(updates) >= 1
    # throttled: a few per second at most (~10/s, plus the final state)
    assert len(updates) <= 10 * duration + 2, f"{len(updates)} updates in {duration:.2f} s"
    stamps = [u["header"]["date"].timestamp() for u in updates[:-1]]
    if len(stamps) > 2:
        rate = (len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-6)
        assert rate <= 12, f"{rate:.1f} updates per second"
    final = (updates or shows)[-1]["content"]["data"]
    assert "100%" in final["text/plain"], final
    assert "work" in final["text/plain"]


@lua
def test_progress_bar_interrupted_keeps_kernel(kernel):
    msg_id = kernel.kc.execute('for i in loupe.progress(1000, "long") do loupe.sleep(0.05) end')
    time.sleep(1.0)
    kernel.km.interrupt_kernel()
    reply = kernel.shell_reply(msg_id, timeout=10)
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert kernel.value("1+1") == "2"


@lua
def test_complete_and_inspect(kernel):
    code = 'local s = "héllo" string.fo'
    reply = kernel.shell_reply(kernel.kc.complete(code, len(code)))
    c = reply["content"]
    assert c["status"] == "ok"
    assert c["cursor_end"] == len(code)  # code points, not bytes
    assert "metadata" in c
    replaced = [code[:c["cursor_start"]] + m for m in c["matches"]]
    assert code[:-len("string.fo")] + "string.format" in replaced, c
    kernel.ok("obj = {alpha = 1, beta = 2}")
    reply = kernel.shell_reply(kernel.kc.complete("obj.al", 6))
    assert any(m.endswith("alpha") for m in reply["content"]["matches"]), reply["content"]
    reply = kernel.shell_reply(kernel.kc.inspect("loupe.progress", 8))
    assert reply["content"]["found"], reply["content"]
    assert "progress" in reply["content"]["data"]["text/plain"]


@lua
@pytest.mark.parametrize("src,status", [("x = 1", "complete"), ("function f()", "incomplete"),
                                        ("x = {", "incomplete"), ("x = = 1", "invalid"),
                                        ('s = [[long', "incomplete"), ("if x then", "incomplete")])
def test_is_complete(kernel, src, status):
    reply = kernel.shell_reply(kernel.kc.is_complete(src))
    assert reply["content"]["status"] == status, reply["content"]
    if status == "incomplete":
        assert "indent" in reply["content"]


@lua
def test_os_exit_and_stdin_cannot_end_or_block_the_kernel(kernel):
    reply, _ = kernel.execute("os.exit(3)")
    assert reply["content"]["status"] == "error"
    assert "Shut Down" in reply["content"]["evalue"]
    # the process's own stdin is /dev/null: a read ends at once instead of hanging
    assert kernel.value("io.stdin:read('l')") is None
    assert kernel.value("1 + 1") == "2"
