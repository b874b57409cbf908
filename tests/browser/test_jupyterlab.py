"""What a person sees: JupyterLab in headless Chromium (Debian's /usr/bin/chromium, driven
by Playwright with executable_path; Playwright never downloads a browser). Opens a notebook
on the loupe kernel, runs all cells, and waits for a result, a progress bar and an error.
Screenshots go to out/test-artifacts/.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request

import nbformat
import pytest

import figures_util as fu
import kernelutil as ku

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("LOUPE_CHROMIUM", "/usr/bin/chromium")

CELLS = {
    "lua": ["6 * 7",
            'for i in loupe.progress(30, "browsing") do loupe.sleep(0.03) end',
            'print("printed from lua")',
            'local a = 1\nerror("boom from the browser test")'],
    "python": ["6 * 7",
               "import time\nfrom IPython.display import display\n"
               "h = display('browsing 0%', display_id=True)\n"
               "for i in range(1, 11):\n    time.sleep(0.05); h.update(f'browsing {i * 10}%')",
               'print("printed from lua")',
               'a = 1\nraise ValueError("boom from the browser test")'],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(isolated_env, tmp_path_factory):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (install/setup does)")
    root = tmp_path_factory.mktemp("lab-root")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS[ku.LANG]]
    spec = json.loads((isolated_env.kernelspec_dir(ku.KERNEL_MESSAGE) / "kernel.json").read_text())
    nb.metadata["kernelspec"] = {"name": ku.KERNEL_MESSAGE, "display_name": spec["display_name"],
                                 "language": spec["language"]}
    nbformat.write(nb, root / "browser-test.ipynb")

    token, port = secrets.token_hex(16), free_port()
    ku.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ku.ARTIFACTS / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [str(ku.VENV_BIN / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
         "--ServerApp.port_retries=0", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"jupyter lab did not start; see {ku.ARTIFACTS / 'jupyterlab.log'}")
        time.sleep(0.3)
    yield {"base": base, "token": token, "root": root, "display_name": spec["display_name"]}
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.mark.timeout(300)
def test_notebook_in_jupyterlab(lab):
    from playwright.sync_api import expect, sync_playwright

    shots = ku.ARTIFACTS
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("jupyterlab-*.png"):
        old.unlink()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{lab['base']}/lab/tree/browser-test.ipynb?token={lab['token']}")
            page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for()
            # the notebook's kernel (from its metadata) starts by itself and goes idle; the
            # toolbar says "idle" before the kernel is connected, so wait for the status bar
            fu.wait_kernel_idle(page, timeout=90_000)
            idle = page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]')
            expect(page.locator(".jp-NotebookPanel-toolbar .jp-KernelName").first
                   ).to_have_text(lab["display_name"], timeout=30_000)
            page.screenshot(path=str(shots / "jupyterlab-opened.png"))

            # Run > Run All Cells
            page.locator(".lm-MenuBar-item", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).first.click()

            out = page.locator(".jp-NotebookPanel .jp-OutputArea-output")
            expect(page.locator(".jp-OutputArea-executeResult", has_text="42").first).to_be_visible(timeout=90_000)
            expect(out.filter(has_text="100%").first).to_be_visible(timeout=90_000)
            expect(out.filter(has_text="printed from lua").first).to_be_visible(timeout=90_000)
            err = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
                               has_text="boom from the browser test")
            expect(err.first).to_be_visible(timeout=90_000)
            expect(idle.first).to_be_visible(timeout=60_000)
            if ku.IS_LOUPE:
                expect(err.first).to_contain_text(":2:")
            # the progress bar is one output that was updated in place, not fifty
            assert out.filter(has_text="browsing").count() == 1
            page.screenshot(path=str(shots / "jupyterlab-ran.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(shots / "jupyterlab-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    shutil.rmtree(lab["root"] / ".ipynb_checkpoints", ignore_errors=True)
