"""End to end: every notebook in examples/ executed with nbclient on the loupe kernel, plus
specific assertions on examples/01-welcome.ipynb. Each shipped notebook runs with the lab's
copy (notebooks/, what `install/setup lab` serves, made by install/lab_notebooks.py) as its
working directory, as a user of the lab runs it, and must leave `git status` as it was: what
it writes lands in ignored places only. The shipped text is what runs, not the copy, so a
developer's edited copy changes nothing here."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import nbformat
import pytest

import kernelutil as ku

pytestmark = pytest.mark.lua

EXAMPLES = ku.ROOT / "examples"
NOTEBOOKS = sorted(p for p in EXAMPLES.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


LAB = ku.ROOT / "notebooks"


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ku.ROOT,
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def lab_dir() -> pathlib.Path:
    """The lab's copy of the examples, made (or refreshed) as install/setup lab does."""
    p = subprocess.run([sys.executable, str(ku.ROOT / "install" / "lab_notebooks.py"), str(EXAMPLES), str(LAB)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    ignored = subprocess.run(["git", "check-ignore", "-q", str(LAB)], cwd=ku.ROOT)
    assert ignored.returncode == 0, "notebooks/ is not ignored by git"
    return LAB


def run_notebook(path: pathlib.Path, timeout: int = 300, cwd: pathlib.Path | None = None) -> nbformat.NotebookNode:
    return ku.run_notebook(path, timeout, artifact=str(path.relative_to(EXAMPLES)), cwd=cwd)


def test_there_are_example_notebooks():
    assert (EXAMPLES / "01-welcome.ipynb") in NOTEBOOKS


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(EXAMPLES)) for p in NOTEBOOKS])
def test_example_runs_without_errors(isolated_env, lab_dir, path):
    before = git_status()
    nb = run_notebook(path, cwd=lab_dir)
    assert git_status() == before, "the notebook wrote outside ignored places"
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, cell.source
        for o in cell.outputs:
            assert o.output_type != "error", f"{cell.source!r}: {o.get('ename')}: {o.get('evalue')}"


def outputs_of(nb, source_start: str) -> list:
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith(source_start):
            return cell.outputs
    raise AssertionError(f"no cell starting with {source_start!r}")


def plain(outputs: list, kind: str = "execute_result") -> list[str]:
    return [o["data"]["text/plain"] for o in outputs if o.output_type == kind]


def test_welcome_notebook(isolated_env):
    nb = run_notebook(EXAMPLES / "01-welcome.ipynb")
    assert nb.metadata.kernelspec.name == "loupe"
    assert nb.metadata.language_info.name == "lua"
    assert plain(outputs_of(nb, "6 * 7")) == ["42"]
    assert plain(outputs_of(nb, "squares = {}")) == ["{1, 4, 9, 16, 25}"]
    assert plain(outputs_of(nb, '{name = "loupe"}'))[0].replace('"', "'") == "{name = 'loupe'}"
    streams = [o for o in outputs_of(nb, "for i = 1, 3 do") if o.output_type == "stream"]
    assert "".join(o.text for o in streams) == "line 1\nline 2\nline 3\n"
    disp = outputs_of(nb, "display(loupe.markdown")
    assert [o.output_type for o in disp] == ["display_data", "display_data"]
    assert "**Markdown**" in disp[0]["data"]["text/markdown"]
    assert "<b>HTML</b>" in disp[1]["data"]["text/html"]
    prog = outputs_of(nb, "total = 0")
    bars = [o for o in prog if o.output_type == "display_data"]
    assert len(bars) == 1, [o.output_type for o in prog]
    assert "100%" in bars[0]["data"]["text/plain"] and "counting" in bars[0]["data"]["text/plain"]
    assert plain(prog) == ["20"]
