"""The lab's copy of the examples (install/lab_notebooks.py, what `install/setup lab`
serves): made on the first run, refreshed when a shipped notebook changes and the copy is
untouched, never overwriting a notebook the user changed; the README's first Lua block runs as
written from the lab's working directory. Every example running in the copy's folder and
leaving `git status` as it was is checked by tests/e2e/test_notebooks.py (one run each)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

import kernelutil as ku

pytestmark = pytest.mark.lua

EXAMPLES = ku.ROOT / "examples"
SCRIPT = ku.ROOT / "install" / "lab_notebooks.py"
SHIPPED = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))


def sync(examples, dest) -> str:
    p = subprocess.run([sys.executable, str(SCRIPT), str(examples), str(dest)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_copy_refresh_and_user_edits(tmp_path):
    examples = tmp_path / "examples"
    shutil.copytree(EXAMPLES, examples, symlinks=True, ignore=shutil.ignore_patterns("models"))
    (examples / "models").mkdir()
    dest = tmp_path / "notebooks"
    said = sync(examples, dest)
    assert sorted(p.name for p in dest.glob("*.ipynb")) == SHIPPED
    assert said.count("copied ") == len(SHIPPED), said
    assert (dest / "models").is_symlink() and (dest / "models").resolve() == (examples / "models").resolve()
    for name in SHIPPED:
        assert (dest / name).read_bytes() == (examples / name).read_bytes()
    assert sync(examples, dest) == ""  # nothing to do the second time

    # a shipped notebook changes: its untouched copy follows, an edited copy is kept
    first, second = SHIPPED[0], SHIPPED[1]
    for name in (first, second):
        nb = json.loads((examples / name).read_text())
        nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": ["a new shipped cell"]})
        (examples / name).write_text(json.dumps(nb, indent=1))
    edited = json.loads((dest / second).read_text())
    edited["cells"].append({"cell_type": "markdown", "metadata": {}, "source": ["the user's note"]})
    (dest / second).write_text(json.dumps(edited, indent=1))
    said = sync(examples, dest)
    assert f"refreshed {first}" in said and f"kept your edited {second}" in said, said
    assert (dest / first).read_bytes() == (examples / first).read_bytes()
    assert "the user's note" in (dest / second).read_text()
    assert "a new shipped cell" not in (dest / second).read_text()
    # and again: the edited copy stays the user's
    sync(examples, dest)
    assert "the user's note" in (dest / second).read_text()


def readme_first_lua_block() -> str:
    blocks = re.findall(r"```lua\n(.*?)```", (ku.ROOT / "README.md").read_text(), re.S)
    assert blocks, "README.md has no Lua block"
    return blocks[0]


def test_readme_first_lua_block_runs_in_the_lab(isolated_env, tmp_path):
    dest = tmp_path / "notebooks"
    sync(EXAMPLES, dest)
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(readme_first_lua_block()))
    NotebookClient(nb, kernel_name="loupe", timeout=120, allow_errors=False,
                   resources={"metadata": {"path": str(dest)}}).execute()
    outs = nb.cells[0].outputs
    assert not [o for o in outs if o.output_type == "error" or o.get("name") == "stderr"], outs
    assert [o for o in outs if o.output_type == "execute_result"], outs  # the patching sweep
