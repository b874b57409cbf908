"""Helpers shared by the Python tests: an isolated Jupyter environment, kernelspecs, and a
small wrapper around jupyter_client that collects a request's reply and iopub output.

The kernel under test is "loupe" unless LOUPE_TEST_KERNEL names another kernelspec (e.g.
`python3`): that mode exists to check the test harness itself against ipykernel, and
tests marked `lua` are skipped in it.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from queue import Empty
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
# LOUPE_BIN runs the tests on another build of the kernel (the ASan one, say)
LOUPE = pathlib.Path(os.environ.get("LOUPE_BIN") or ROOT / "build" / "kernel" / "loupe")
ARTIFACTS = ROOT / "out" / "test-artifacts"
VENV_BIN = ROOT / ".venv" / "bin"

UNDER_TEST = os.environ.get("LOUPE_TEST_KERNEL", "loupe")
IS_LOUPE = UNDER_TEST == "loupe"
LANG = "lua" if IS_LOUPE else "python"
# kernelspec names for the two interrupt modes
if IS_LOUPE:
    KERNEL_MESSAGE, KERNEL_SIGNAL = "loupe", "loupe-signal"
else:
    KERNEL_MESSAGE, KERNEL_SIGNAL = "ref-message", "ref-signal"

# Code for the few tests that also run against ipykernel (harness checks).
CODE = {
    "busy_loop": {"lua": "while true do end", "python": "while True: pass"},
    "c_sleep": {"lua": "loupe.sleep(30)", "python": "import time; time.sleep(30)"},
    "slow_error": {"lua": 'loupe.sleep(0.5) error("x")',
                   "python": 'import time; time.sleep(0.5); raise ValueError("x")'},
    "input": {"lua": 'x = input("name? ")', "python": 'x = input("name? ")'},
    "error_line2": {"lua": 'local a = 1\nerror("boom")', "python": 'a = 1\nraise ValueError("boom")'},
}


def code(name: str) -> str:
    return CODE[name][LANG]


class IsolatedEnv:
    """A temporary HOME / Jupyter data dir / JUPYTER_PATH, set in os.environ for the session."""

    def __init__(self) -> None:
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="loupe-tests-"))
        self.home = self.dir / "home"
        self.prefix = self.dir / "prefix"
        self.home.mkdir()
        self.prefix.mkdir()
        self.jupyter_path = self.prefix / "share" / "jupyter"
        env = {
            "HOME": str(self.home),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "JUPYTER_PATH": str(self.jupyter_path),
            "JUPYTER_DATA_DIR": str(self.home / "jupyter-data"),
            "JUPYTER_CONFIG_DIR": str(self.home / "jupyter-config"),
            "JUPYTER_RUNTIME_DIR": str(self.dir / "runtime"),
            "IPYTHONDIR": str(self.home / "ipython"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        }
        os.environ.update(env)
        # kernels started by jupyter_client run the venv's python for ipykernel
        os.environ["PATH"] = f"{VENV_BIN}:{os.environ.get('PATH', '')}"
        self.errors: list[str] = []
        self.install_kernelspecs()

    def install_kernelspecs(self) -> None:
        if IS_LOUPE:
            for extra in ([], ["--name", "loupe-signal", "--interrupt-mode", "signal"]):
                cmd = [str(LOUPE), "install", "--prefix", str(self.prefix), *extra]
                try:
                    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
                except OSError as e:
                    self.errors.append(f"{' '.join(cmd)}: {e}")
                    continue
                if p.returncode != 0:
                    self.errors.append(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()}")
        else:
            # ipykernel reference specs in both interrupt modes (harness validation only)
            for name, mode in ((KERNEL_MESSAGE, "message"), (KERNEL_SIGNAL, "signal")):
                d = self.jupyter_path / "kernels" / name
                d.mkdir(parents=True, exist_ok=True)
                spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                        "display_name": f"ipykernel ({mode})", "language": "python",
                        "interrupt_mode": mode}
                (d / "kernel.json").write_text(json.dumps(spec))

    def kernelspec_dir(self, name: str) -> pathlib.Path:
        return self.jupyter_path / "kernels" / name

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Kernel:
    """A started kernel (KernelManager) with a connected blocking client."""

    def __init__(self, km: Any, kc: Any) -> None:
        self.km = km
        self.kc = kc
        self._backlog: dict[int, list[dict]] = {}

    @property
    def pid(self) -> int:
        return self.km.provisioner.process.pid

    # -- requests -------------------------------------------------------------------------
    def shell_reply(self, msg_id: str, timeout: float = 30, kc: Any = None) -> dict:
        kc = kc or self.kc
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no shell reply to {msg_id} within {timeout} s")
            try:
                msg = kc.get_shell_msg(timeout=left)
            except Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    def control_reply(self, msg_id: str, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no control reply to {msg_id} within {timeout} s")
            try:
                msg = self.kc.control_channel.get_msg(timeout=left)
            except Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    def iopub_until_idle(self, msg_id: str, timeout: float = 30, kc: Any = None) -> list[dict]:
        """Every iopub message whose parent is msg_id, up to and including its idle status."""
        kc = kc or self.kc
        out: list[dict] = []
        # messages of other requests seen earlier on this client (interleaved requests)
        backlog = self._backlog.setdefault(id(kc), [])
        mine = [m for m in backlog if m["parent_header"].get("msg_id") == msg_id]
        backlog[:] = [m for m in backlog if m["parent_header"].get("msg_id") != msg_id]
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no idle for {msg_id} within {timeout} s; got "
                                   f"{[m['msg_type'] for m in out]}")
            if mine:
                msg = mine.pop(0)
            else:
                try:
                    msg = kc.get_iopub_msg(timeout=left)
                except Empty:
                    continue
            if msg["parent_header"].get("msg_id") != msg_id:
                if msg["parent_header"].get("msg_id"):
                    backlog.append(msg)
                    del backlog[:-2000]
                continue
            out.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return out

    def execute(self, source: str, timeout: float = 30, kc: Any = None, **kw: Any) -> tuple[dict, list[dict]]:
        """Runs a cell; returns (execute_reply, iopub messages of the request)."""
        kc = kc or self.kc
        msg_id = kc.execute(source, **kw)
        reply = self.shell_reply(msg_id, timeout, kc=kc)
        return reply, self.iopub_until_idle(msg_id, timeout, kc=kc)

    def ok(self, source: str, timeout: float = 30, **kw: Any) -> list[dict]:
        reply, out = self.execute(source, timeout=timeout, **kw)
        assert reply["content"]["status"] == "ok", (source, reply["content"])
        return out

    def value(self, source: str, timeout: float = 30) -> str | None:
        """text/plain of the execute_result of a cell (None if there is none)."""
        return result_text(self.ok(source, timeout=timeout))

    def alive_and_answering(self, timeout: float = 10) -> None:
        assert self.km.is_alive(), "kernel process ended"
        msg_id = self.kc.kernel_info()
        reply = self.shell_reply(msg_id, timeout)
        assert reply["msg_type"] == "kernel_info_reply"

    def send_shell(self, msg_type: str, content: dict, kc: Any = None) -> str:
        kc = kc or self.kc
        msg = kc.session.msg(msg_type, content)
        kc.shell_channel.send(msg)
        return msg["header"]["msg_id"]

    def drain_iopub(self, settle: float = 0.2) -> list[dict]:
        out = self._backlog.pop(id(self.kc), [])
        while True:
            try:
                out.append(self.kc.get_iopub_msg(timeout=settle))
            except Empty:
                return out

    def new_client(self) -> Any:
        """A second frontend: its own Session (own session id, so its own ROUTER identity;
        km.client() would share the manager's session and steal the first client's identity)."""
        from jupyter_client.blocking.client import BlockingKernelClient

        c = BlockingKernelClient()
        c.load_connection_info(self.km.get_connection_info(session=False))
        c.start_channels()
        c.wait_for_ready(timeout=30)
        return c

    def stop(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            if self.km.has_kernel:
                self.km.shutdown_kernel(now=not self.km.is_alive())


def start_kernel(name: str, env: dict | None = None, timeout: float = 60) -> Kernel:
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=name)
    kw: dict[str, Any] = {}
    if env:
        kw["env"] = {**os.environ, **env}
    km.start_kernel(**kw)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=timeout)
    except Exception:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        raise
    k = Kernel(km, kc)
    k.drain_iopub(0.1)
    return k


def write_history_jsonl(path: pathlib.Path, n_small: int, n_big: int = 0, big_bytes: int = 20 << 20,
                        per_session: int = 100) -> None:
    """Writes a history in the format before SQLite (what a long-time user has), which a kernel
    imports at its start: n_small cells `small_<i> = <i>` in sessions of per_session lines,
    then n_big cells of big_bytes each (a 20 MB string), each in a session of its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i in range(n_small):
            f.write(json.dumps({"session": i // per_session + 1, "line": i % per_session + 1,
                                "input": f"small_{i} = {i}"}) + "\n")
        first = n_small // per_session + 2
        for b in range(n_big):
            head = f"big_{b} = '"
            text = head + "x" * (big_bytes - len(head) - 1) + "'"
            f.write(json.dumps({"session": first + b, "line": 1, "input": text}) + "\n")


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


# -- output helpers -----------------------------------------------------------------------
def of_type(msgs: list[dict], *types: str) -> list[dict]:
    return [m for m in msgs if m["msg_type"] in types]


def stream_text(msgs: list[dict], name: str = "stdout") -> str:
    return "".join(m["content"]["text"] for m in msgs
                   if m["msg_type"] == "stream" and m["content"]["name"] == name)


def result_text(msgs: list[dict]) -> str | None:
    res = of_type(msgs, "execute_result")
    assert len(res) <= 1, f"{len(res)} execute_result messages"
    return res[0]["content"]["data"].get("text/plain") if res else None


def error_of(reply: dict) -> tuple[str, str, str]:
    c = reply["content"]
    return c.get("ename", ""), c.get("evalue", ""), "\n".join(c.get("traceback", []))


# -- raw wire -----------------------------------------------------------------------------
def sign(key: bytes, frames: list[bytes]) -> bytes:
    if not key:
        return b""
    h = hmac.new(key, digestmod=hashlib.sha256)
    for f in frames:
        h.update(f)
    return h.hexdigest().encode()


def header(msg_type: str, session: str = "raw-client") -> dict:
    from datetime import datetime, timezone
    return {"msg_id": uuid.uuid4().hex, "session": session, "username": "test",
            "date": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "msg_type": msg_type, "version": "5.3"}


def jdump(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# ---- notebooks ----


def run_notebook(path: pathlib.Path, timeout: int = 300, artifact: str | None = None,
                 cwd: pathlib.Path | None = None):
    """Executes the notebook at path on the loupe kernel with nbclient (cells run in its folder,
    or in cwd when given; an error in a cell raises), writes the executed copy under
    ARTIFACTS/notebooks (as `artifact` when given, else under the notebook's own name) and
    returns it."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="loupe", timeout=timeout, allow_errors=False,
                   resources={"metadata": {"path": str(cwd or path.parent)}}).execute()
    out = ARTIFACTS / "notebooks" / (artifact or path.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    return nb


def assert_saved_without_outputs(path: pathlib.Path) -> None:
    """A shipped notebook names the loupe kernel and carries no outputs or counts."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "loupe"
    assert nb.metadata.language_info.name == "lua"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source


def require_built(*tools: pathlib.Path):
    """A module-scoped autouse fixture (assign it to a module-level name) that fails every test
    of the module when one of the tools is missing: a missing tool is a broken build, not a
    reason to skip."""
    import pytest

    @pytest.fixture(autouse=True, scope="module")
    def _tools_built():
        missing = [str(t) for t in tools if not t.is_file()]
        assert not missing, f"not built: {missing} (bash install/setup builds them)"

    return _tools_built
