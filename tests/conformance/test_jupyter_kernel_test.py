"""Protocol conformance: the jupyter_kernel_test suite (PyPI 0.7) with every sample set.

jupyter_kernel_test only runs the tests whose sample attributes are set, so all of them are
set here. It starts the kernel with start_new_kernel(kernel_name=...), which finds the
kernelspec through JUPYTER_PATH (the temporary one that conftest.py installs).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import unittest

import jupyter_kernel_test as jkt
import pytest

import kernelutil as ku

pytestmark = pytest.mark.lua


@pytest.fixture(autouse=True, scope="module")
def _kernelspecs(isolated_env):
    """Fail clearly (instead of a KeyError deep in jupyter_client) without a kernelspec."""
    return isolated_env


class LoupeKernelTests(jkt.KernelTests):
    kernel_name = "loupe"

    @classmethod
    def setUpClass(cls) -> None:
        # A history file of its own: the history samples must not see other tests' cells.
        home = tempfile.mkdtemp(prefix="loupe-jkt-home-")
        saved = {v: os.environ.get(v) for v in ("HOME", "XDG_DATA_HOME")}
        os.environ.update(HOME=home, XDG_DATA_HOME=os.path.join(home, ".local", "share"))
        try:
            super().setUpClass()
        finally:
            for v, old in saved.items():
                os.environ[v] = old if old is not None else ""
        cls._home = home

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        shutil.rmtree(cls._home, ignore_errors=True)

    language_name = "lua"
    file_extension = ".lua"

    code_hello_world = 'print("hello, world")'
    code_stderr = 'io.stderr:write("oops\\n")'

    # matches replace the text from cursor_start, which is the start of the last name
    # (after the '.'), so they are the bare field names, as the completer lists them
    completion_samples = [
        {"text": "string.fo", "matches": {"format"}},
        {"text": "math.sq", "matches": {"sqrt"}},
        {"text": "table.ins", "matches": {"insert"}},
        {"text": "loupe.progr", "matches": {"progress"}},
    ]

    complete_code_samples = ["x = 1", "print('hi')", "function f() return 1 end", "t = {1, 2}"]
    incomplete_code_samples = ["function f()", "x = {", "for i = 1, 3 do", 'print("a",']
    invalid_code_samples = ["x = = 1", "end", "local 1x = 2"]

    # a pager payload (source "page"): help() on an API function shows its docstring there
    code_page_something = "help(print)"

    code_generate_error = 'error("boom")'

    code_execute_result = [
        {"code": "6*7", "result": "42"},
        {"code": "1 + 1", "result": "2"},
        {"code": "{1, 2, 3}", "result": "{1, 2, 3}"},
    ]

    code_display_data = [
        {"code": "display(loupe.html('<b>x</b>'))", "mime": "text/html"},
        {"code": "display(loupe.markdown('**x**'))", "mime": "text/markdown"},
        {"code": "display(42)", "mime": "text/plain"},
    ]

    # must match one of code_execute_result, and only that one (the "unique" subtest)
    code_history_pattern = "6*7"
    supported_history_operations = ("tail", "range", "search")

    code_inspect_sample = "print"
    code_clear_output = "clear_output()"


class LoupeSignalKernelTests(LoupeKernelTests):
    """The same suite on the signal-interrupt kernelspec (same binary, other kernel.json)."""

    kernel_name = "loupe-signal"


class LoupeIopubWelcomeTests(jkt.IopubWelcomeTests):
    kernel_name = "loupe"
    support_iopub_welcome = True


if not ku.IS_LOUPE:  # harness validation against ipykernel: nothing Lua here
    del LoupeKernelTests, LoupeSignalKernelTests, LoupeIopubWelcomeTests

if __name__ == "__main__":
    unittest.main()
