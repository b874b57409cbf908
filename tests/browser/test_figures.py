"""Every figure kind in real frontends (issue 5): examples/02-figures.ipynb is run in
JupyterLab in headless Chromium; each output must show its picture (every <img> decoded
with a non-zero natural size), the console must stay free of errors, and hovering a
heatmap cell, a grid panel and a token must show the value. The notebook saved by
JupyterLab is then opened untrusted (a second server with an empty notebook-signature
database): scripts are stripped, every picture must still show. Finally `jupyter nbconvert
--to html` of the executed notebook must contain every figure, and the exported page must
show them. Screenshots go to out/test-artifacts/figures-*.png.
"""
from __future__ import annotations

import base64
import math
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import nbformat
import pytest

import figures_util as fu
import kernelutil as ku

pytestmark = [pytest.mark.browser, pytest.mark.lua]

NB = fu.FIGURES_NB
KINDS, PICTURES, root_of, check_pictures = fu.KINDS, fu.PICTURES, fu.root_of, fu.check_pictures
EXECUTED = ku.ARTIFACTS / "02-figures.executed.ipynb"  # the notebook as JupyterLab saved it
_SESSION_START = time.time()


def test_figures_in_jupyterlab(isolated_env, tmp_path):
    """Run all cells; every picture shows; no console errors; hover shows values; save."""
    from playwright.sync_api import expect

    shutil.copy(fu.EXAMPLES / NB, tmp_path / NB)
    n_code = fu.code_cell_count(tmp_path / NB)
    assert n_code == len(KINDS)
    with fu.lab_server(tmp_path, "figures") as lab, fu.chromium() as browser:
        page, watch = fu.new_page(browser)
        try:
            fu.open_notebook(page, lab, NB)
            fu.run_all(page)
            fu.wait_all_ran(page, n_code)
            check_pictures(page, "trusted")

            # scripts ran, once per output
            for kind in ("heatmap", "grid", "tokens"):
                root = root_of(page, kind)
                assert root.get_attribute("data-lp-on") == "1", f"{kind}: its script did not run"

            # hover a heatmap cell: query 3 " sat", key 2 " cat"; the value must match the
            # static values table (built separately, without scripts)
            hm = root_of(page, "heatmap")
            img = hm.locator("img").first
            img.scroll_into_view_if_needed()
            title = hm.locator("details table tr").nth(3).locator("td").nth(2).get_attribute("title")
            m = re.fullmatch(r"3 +sat \u2192 2 +cat: ([-0-9.e]+)", title)
            assert m, title
            want = float(m.group(1))
            tip = fu.hover_heatmap_cell(page, hm, 0, 3, 2, "sat")
            text = tip.inner_text()
            assert re.search(r"query 3 +sat", text) and re.search(r"key 2 +cat", text), text
            got = float(re.search(r"= ([-0-9.e]+)", text).group(1))
            assert math.isclose(got, want, rel_tol=1e-3), (text, title)
            fu.shot(hm, "figures-trusted-heatmap-hover")

            # hover a grid panel: head L0H2 (self attention, score 3), query 5, key 5
            grid = root_of(page, "grid")
            gtip = fu.hover_heatmap_cell(page, grid, 2, 5, 5, "query 5")
            gtext = gtip.inner_text()
            want = math.exp(3) / (math.exp(3) + 5)
            assert gtext.startswith("L0H2\n") and "query 5" in gtext and "key 5" in gtext, gtext
            got = float(re.search(r"= ([-0-9.e]+)", gtext).group(1))
            assert math.isclose(got, want, rel_tol=1e-3), (gtext, want)
            fu.shot(grid, "figures-trusted-grid-hover")

            # hover a token: the readout line shows its index, text and value
            tk = root_of(page, "tokens")
            tk.locator('span[data-i="8"]').hover()
            expect(tk).to_contain_text('#8 \u2423Paris = 1.85')

            # save; the server signs the notebook it wrote (so it is trusted here)
            fu.save(page)
            nb = fu.wait_saved_with_outputs(tmp_path / NB, n_code)
            model = lab.api(f"contents/{NB}")
            trusted = [c["metadata"].get("trusted") for c in model["content"]["cells"]
                       if c["cell_type"] == "code"]
            assert all(trusted), f"saved notebook not trusted by the server that ran it: {trusted}"
            fu.shot(page, "figures-trusted-page")
            assert watch.dialogs == []
            assert watch.errors == [], "console errors:\n" + "\n".join(watch.errors)
        except Exception:
            fu.shot(page, "figures-trusted-failure")
            raise
        finally:
            watch.save_log("figures-trusted")
    nbformat.write(nb, fu.artifacts() / EXECUTED.name)


@pytest.fixture
def executed(tmp_path):
    """The notebook with outputs: as JupyterLab saved it in test_figures_in_jupyterlab, or,
    when that test did not run in this session, executed headless with nbclient."""
    dst = tmp_path / NB
    if EXECUTED.exists() and EXECUTED.stat().st_mtime >= _SESSION_START:
        shutil.copy(EXECUTED, dst)
    else:
        from nbclient import NotebookClient

        nb = nbformat.read(fu.EXAMPLES / NB, as_version=4)
        NotebookClient(nb, timeout=120, kernel_name=ku.KERNEL_MESSAGE).execute()
        nbformat.write(nb, dst)
    return dst


def test_untrusted_notebook_still_shows_pictures(isolated_env, executed):
    """A fresh notebook-signature database: the notebook is untrusted, JupyterLab strips
    scripts, and every figure still shows its picture."""
    n_code = fu.code_cell_count(executed)
    with fu.lab_server(executed.parent, "figures-untrusted", "--NotebookNotary.db_file=:memory:") as lab, \
            fu.chromium() as browser:
        model = lab.api(f"contents/{NB}")
        trusted = [c["metadata"].get("trusted") for c in model["content"]["cells"] if c["cell_type"] == "code"]
        assert len(trusted) == n_code and not any(trusted), f"expected untrusted cells, got {trusted}"
        page, watch = fu.new_page(browser)
        try:
            fu.open_notebook(page, lab, NB)
            check_pictures(page, "untrusted")
            outs = page.locator(".jp-NotebookPanel .jp-OutputArea-output")
            # sanitized: no script elements, no script ran, no hover tooltip element
            assert outs.locator("script").count() == 0
            assert page.locator(".jp-OutputArea-output [data-lp-on]").count() == 0
            assert fu.heatmap_tip(root_of(page, "heatmap")).count() == 0
            # hover without scripts: the values table and token tooltips remain
            hm = root_of(page, "heatmap")
            assert "\u2192" in hm.locator("details table td").first.get_attribute("title")
            fu.shot(page, "figures-untrusted-page")
            assert watch.dialogs == []
            assert watch.errors == [], "console errors:\n" + "\n".join(watch.errors)
        except Exception:
            fu.shot(page, "figures-untrusted-failure")
            raise
        finally:
            watch.save_log("figures-untrusted")


def test_nbconvert_html_contains_every_figure(isolated_env, executed, tmp_path):
    """`jupyter nbconvert --to html`: every figure is in the HTML as a data:image/svg+xml
    image (a well-formed SVG), and the exported page shows them (offline)."""
    nb = nbformat.read(executed, as_version=4)
    want = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            want += re.findall(r'data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)', o.get("data", {}).get("text/html", ""))
    assert len(want) >= len(PICTURES), f"{len(want)} pictures in the executed notebook"
    out = tmp_path / "html"
    p = subprocess.run([str(ku.VENV_BIN / "jupyter"), "nbconvert", "--to", "html", "--output-dir", str(out),
                        str(executed)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    html_path = out / NB.replace(".ipynb", ".html")
    html = html_path.read_text(encoding="utf-8")
    # (the template's CSS has data:image/svg+xml icons of its own: look for ours)
    got = re.findall(r'<img\b[^>]*?\bsrc="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', html)
    missing = [i for i, b64 in enumerate(want) if b64 not in got]
    assert not missing, f"figures {missing} of {len(want)} are not in the HTML as <img>"
    for b64 in want:
        root = ET.fromstring(base64.b64decode(b64))
        assert root.tag.endswith("svg"), root.tag
    for text in ("Marseille", "scoring prompts", "Feature 1731: places in France", 'data-i="8"'):
        assert text in html, text
    shutil.copy(html_path, fu.artifacts() / "02-figures.html")

    with fu.chromium() as browser:
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        # offline: the export's CDN references (MathJax, require.js) are refused, not fetched
        context.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
        page, watch = fu.new_page(context)
        page.goto(html_path.as_uri())
        body = page.locator("body")
        states = fu.wait_images(page, body, len(want))
        assert len(states) >= len(want)
        # nbconvert inserts HTML raw: our scripts run there too, once per figure
        page.wait_for_function("document.querySelectorAll('[data-lp-on]').length === 3")
        fu.shot(page, "figures-nbconvert-page")
        assert watch.dialogs == []
        ours = [e for e in watch.errors if "ERR_FAILED" not in e and "net::" not in e]
        assert ours == [], "errors in the exported page:\n" + "\n".join(watch.errors)
