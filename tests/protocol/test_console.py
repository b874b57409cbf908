"""The kernel from `jupyter console`, a terminal frontend: values, prints and errors."""
from __future__ import annotations

import subprocess

import pytest

import kernelutil as ku

pytestmark = pytest.mark.lua


def test_jupyter_console_session(isolated_env):
    cells = 'x = 6*7\nx\nprint("hi " .. x)\nerror("oops")\nx + 1\n'
    proc = subprocess.run(
        [str(ku.VENV_BIN / "jupyter"), "console", "--kernel", ku.KERNEL_MESSAGE, "--simple-prompt"],
        input=cells, capture_output=True, text=True, timeout=90,
    )
    out = proc.stdout + proc.stderr  # the console prints errors on stderr
    assert "loupe" in out, out                      # the banner from kernel_info
    assert "Out[2]: 42" in out, out                 # a value
    assert "hi 42" in out, out                      # printed output
    assert "In [4]:1: oops" in out, out             # an error with its line
    assert "Out[5]: 43" in out, out                 # still alive, globals kept
