"""Helpers for the figure tests in a real frontend (test_figures, test_collaboration,
test_adversarial): a JupyterLab server of our own (token, free port, a temporary root, the
session's isolated JUPYTER_PATH from conftest), headless Chromium through Playwright
(Debian's /usr/bin/chromium, never a downloaded browser), and DOM checks of loupe's
figure outputs. Every wait is on a condition, with generous timeouts; nothing is
downloaded at run time.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pathlib
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest

import kernelutil as ku

CHROMIUM = os.environ.get("LOUPE_CHROMIUM", "/usr/bin/chromium")
EXAMPLES = ku.ROOT / "examples"
LONG = 90_000  # ms: kernel start, running a notebook on 2 busy cores
HAS_COLLAB = importlib.util.find_spec("jupyter_server_ydoc") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def artifacts() -> Any:
    ku.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ku.ARTIFACTS


# -- the server ---------------------------------------------------------------------------
@dataclass
class Lab:
    base: str
    token: str
    root: Any
    proc: subprocess.Popen
    log_path: Any

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.url(f"api/{path}"), timeout=30) as r:
            return json.load(r)


@contextlib.contextmanager
def lab_server(root, name: str, *extra: str, rtc: bool = False) -> Iterator[Lab]:
    """A JupyterLab server on root. rtc: real-time collaboration on; when off and
    jupyter-collaboration is installed, it is disabled (YDocExtension.disable_rtc) so that
    the single-user document and trust paths are the ones tested."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (install/setup does)")
    if rtc and not HAS_COLLAB:
        pytest.fail("jupyter-collaboration is not installed in .venv (install/requirements.txt)")
    token, port = secrets.token_hex(16), free_port()
    log_path = artifacts() / f"jupyterlab-{name}.log"
    # a workspace and user settings of its own: otherwise JupyterLab restores the layout of
    # the previous server of the session (tabs of notebooks that this root does not have)
    state = pathlib.Path(tempfile.mkdtemp(prefix=f"lab-{name}-"))
    log = open(log_path, "w")
    args = [str(ku.VENV_BIN / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
            "--ServerApp.port_retries=0", "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            f"--LabApp.workspaces_dir={state / 'workspaces'}",
            f"--LabApp.user_settings_dir={state / 'settings'}",
            *(["--allow-root"] if os.geteuid() == 0 else [])]
    if HAS_COLLAB and not rtc:
        args.append("--YDocExtension.disable_rtc=True")
    args += list(extra)
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"jupyter lab did not start; see {log_path}")
        time.sleep(0.3)
    try:
        yield Lab(base, token, root, proc, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        shutil.rmtree(state, ignore_errors=True)


# -- the browser --------------------------------------------------------------------------
@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageWatch:
    """Console errors, uncaught page errors and dialogs (alert/confirm/prompt) of a page."""
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)  # every console message, for the log

    def attach(self, page: Any) -> "PageWatch":
        def on_console(m: Any) -> None:
            line = f"console.{m.type}: {m.text} @ {m.location}"
            self.console.append(f"{time.strftime('%H:%M:%S')} {line}")
            if m.type == "error":
                self.errors.append(line)
        page.on("console", on_console)
        page.on("pageerror", lambda e: (self.errors.append(f"pageerror: {e}"),
                                        self.console.append(f"pageerror: {e}")))

        def on_dialog(d: Any) -> None:
            self.dialogs.append(f"{d.type}: {d.message!r}")
            d.dismiss()
        page.on("dialog", on_dialog)
        return self

    def save_log(self, name: str) -> None:
        (artifacts() / f"{name}.console.log").write_text("\n".join(self.console) + "\n")


def new_page(browser_or_context: Any) -> tuple[Any, PageWatch]:
    # a Browser takes page options; a BrowserContext has its own (set when it was made)
    kw = {"viewport": {"width": 1400, "height": 1000}} if hasattr(browser_or_context, "new_context") else {}
    page = browser_or_context.new_page(**kw)
    page.set_default_timeout(60_000)
    return page, PageWatch().attach(page)


# The status bar's kernel item ("Loupe (Lua) | Idle") follows the session's kernel, its
# connection included. The toolbar's execution indicator alone is not enough: it reads
# data-status="idle" while the status bar still says "No Kernel | Initializing", and Run All
# clicked then is lost (seen about one run in two on 2 cores).
KERNEL_IDLE_JS = """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')].some(
    e => / \\| Idle$/.test(e.textContent.trim()) && !/^No Kernel/.test(e.textContent.trim()))"""


def wait_kernel_idle(page: Any, timeout: int = LONG) -> None:
    from playwright.sync_api import expect

    page.wait_for_function(KERNEL_IDLE_JS, timeout=timeout)
    idle = page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]')
    expect(idle.first).to_be_visible(timeout=timeout)


def open_notebook(page: Any, lab: Lab, path: str) -> None:
    """Opens path in JupyterLab and waits until its kernel is connected and idle."""
    page.goto(lab.url(f"lab/tree/{path}"))
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(timeout=LONG)
    wait_kernel_idle(page)


def menu(page: Any, top: str, item: str | re.Pattern) -> None:
    page.locator(".lm-MenuBar-item", has_text=top).first.click()
    label = item if isinstance(item, re.Pattern) else re.compile(rf"^{re.escape(item)}$")
    page.locator(".lm-Menu-itemLabel", has_text=label).first.click()


def run_all(page: Any) -> None:
    menu(page, "Run", "Run All Cells")


def wait_all_ran(page: Any, n_code: int, timeout: int = LONG) -> None:
    """Waits until the n_code code cells all show an execution count and the kernel is idle."""
    page.wait_for_function(
        """n => { const p = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')];
                  return p.length === n && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }""",
        arg=n_code, timeout=timeout)
    wait_kernel_idle(page, timeout)


def code_cells(page: Any) -> Any:
    return page.locator(".jp-NotebookPanel .jp-Notebook .jp-CodeCell")


def cell_outputs(page: Any, i: int) -> Any:
    return code_cells(page).nth(i).locator(".jp-OutputArea-output")


def wait_images(page: Any, scope: Any, n_min: int = 1, timeout: int = LONG) -> list[dict]:
    """Waits until scope (a locator of one element) holds at least n_min <img> and all are
    decoded with a non-zero natural size; returns their states."""
    scope.scroll_into_view_if_needed()
    handle = scope.element_handle()
    page.wait_for_function(
        """([el, n]) => { const im = [...el.querySelectorAll('img')];
                          return im.length >= n && im.every(i => i.complete && i.naturalWidth > 0); }""",
        arg=[handle, n_min], timeout=timeout)
    return image_states(scope)


def image_states(scope: Any) -> list[dict]:
    return scope.evaluate(
        """el => [...el.querySelectorAll('img')].map(i => ({complete: i.complete, w: i.naturalWidth,
                 h: i.naturalHeight, src: i.getAttribute('src').slice(0, 40)}))""")


def figure_data(root: Any) -> dict:
    """The JSON a figure's script reads (script[type=application/json] inside the figure)."""
    return json.loads(root.locator('script[type="application/json"]').first.text_content())


def heatmap_cell_point(img: Any, d: dict, panel: int, row: int, col: int) -> tuple[float, float]:
    """Page coordinates of the centre of cell (row, col) of a panel of a heatmap image, from
    the layout in the figure's data (p: [x, y, w, h, rows, cols, title] in SVG units)."""
    box = img.bounding_box()
    x, y, w, h, rows, cols = d["p"][panel][:6]
    sx, sy = box["width"] / d["W"], box["height"] / d["H"]
    return (box["x"] + (x + (col + 0.5) * w / cols) * sx, box["y"] + (y + (row + 0.5) * h / rows) * sy)


def heatmap_tip(root: Any) -> Any:
    """The hover tooltip that the heatmap script adds to its figure."""
    return root.locator(":scope > div[style*='pointer-events']")


def _stable_box(img: Any, tries: int = 50) -> dict:
    """The image's bounding box once two reads 50 ms apart agree (JupyterLab keeps laying
    out the notebook while later outputs' images load, and scrolling may still be going)."""
    last = img.bounding_box()
    for _ in range(tries):
        time.sleep(0.05)
        box = img.bounding_box()
        if box == last and box is not None:
            return box
        last = box
    return last


def hover_heatmap_cell(page: Any, root: Any, panel: int, row: int, col: int,
                       expect_text: str | None = None) -> Any:
    """Moves the mouse onto cell (row, col) of a panel of a heatmap figure until its tooltip
    shows (and contains expect_text, if given); returns the tooltip locator. The point is
    recomputed on every try, after the layout has settled, and the mouse leaves the image in
    between so that every try delivers a fresh mousemove. Asserts when no try succeeds."""
    img = root.locator("img").first
    d = figure_data(root)
    tip = heatmap_tip(root)
    for _ in range(10):
        img.scroll_into_view_if_needed()
        _stable_box(img)
        page.mouse.move(1, 1)
        x, y = heatmap_cell_point(img, d, panel, row, col)
        page.mouse.move(x, y, steps=2)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if tip.count() and tip.first.is_visible():
                if expect_text is None or expect_text in (tip.first.text_content() or ""):
                    return tip
            time.sleep(0.05)
    raise AssertionError(f"the heatmap tooltip for panel {panel}, cell ({row}, {col}) never showed"
                         + (f" with {expect_text!r}" if expect_text else ""))


def code_cell_count(nb_path) -> int:
    import nbformat

    return sum(c.cell_type == "code" for c in nbformat.read(nb_path, as_version=4).cells)


def wait_saved_with_outputs(path, n_code: int, timeout: float = 60) -> Any:
    """Waits until the notebook file on disk has outputs in all n_code code cells."""
    import nbformat

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            nb = nbformat.read(path, as_version=4)
            code = [c for c in nb.cells if c.cell_type == "code"]
            last = [len(c.outputs) for c in code]
            if len(code) == n_code and all(last):
                return nb
        except Exception as e:  # the server may be writing it
            last = repr(e)
        time.sleep(0.3)
    raise AssertionError(f"{path} not saved with outputs within {timeout} s (outputs per cell: {last})")


def save(page: Any) -> None:
    page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")


def shot(target: Any, name: str) -> None:
    """Screenshot of a page or element into out/test-artifacts/NAME.png (best effort)."""
    kw = {"full_page": True} if hasattr(target, "goto") else {}
    try:
        target.screenshot(path=str(artifacts() / f"{name}.png"), **kw)
    except Exception as e:  # a screenshot must not hide the real failure
        print(f"screenshot {name}: {e}")


# -- examples/02-figures.ipynb ------------------------------------------------------------
FIGURES_NB = "02-figures.ipynb"
# The code cells of examples/02-figures.ipynb, in order: (name, CSS class of the figure).
KINDS = [("line", "lp-line"), ("live", "lp-line"), ("hist", "lp-hist"), ("scatter", "lp-scatter"),
         ("bar", "lp-bar"), ("heatmap", "lp-heatmap"), ("grid", "lp-heatmaps"), ("tokens", "lp-tokens"),
         ("table", "lp-table"), ("progress", "lp-progress")]
PICTURES = [k for k, _ in KINDS if k not in ("tokens", "table", "progress")]


def kind_index(kind: str) -> int:
    return [k for k, _ in KINDS].index(kind)


def root_of(page: Any, kind: str) -> Any:
    cls = dict(KINDS)[kind]
    return cell_outputs(page, kind_index(kind)).locator(f".{cls}").first


def check_pictures(page: Any, tag: str) -> dict:
    """Each figure output shows: pictures decoded, token strip, table and progress bar present."""
    states = {}
    for kind, cls in KINDS:
        outs = cell_outputs(page, kind_index(kind))
        root = outs.locator(f".{cls}").first
        root.wait_for(timeout=LONG)
        assert outs.count() == 1, f"{kind}: {outs.count()} outputs (live plots and progress bars update one)"
        if kind in PICTURES:
            states[kind] = wait_images(page, root, 1)
            assert all(s["src"].startswith("data:image/svg+xml;base64,") for s in states[kind]), states[kind]
        shot(outs.first, f"figures-{tag}-{kind}")
    # the live plot's output holds its final state (60 train points, 6 eval points)
    alt = root_of(page, "live").locator("img").first.get_attribute("alt")
    assert "train: 60 points" in alt and "eval: 6 points" in alt, alt
    toks = root_of(page, "tokens").locator("span[title]")  # data-i is stripped when untrusted
    assert toks.count() == 12
    assert toks.nth(8).get_attribute("title") == "#8 \u2423Paris = 1.85"  # the token as every figure shows it
    rows = root_of(page, "table").locator("tr")
    assert rows.count() == 6, "header + 5 rows"
    assert "Marseille" in rows.nth(5).text_content()
    prog = root_of(page, "progress").text_content()
    assert "100%" in prog and "40/40" in prog and "done" in prog, prog
    return states
