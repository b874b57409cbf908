"""A figure whose script throws keeps its static picture (issue 11): in JupyterLab (headless
Chromium), heatmaps and a token strip are shown with their embedded data broken on
purpose (data that is not JSON, a panel layout that is not one, fewer values than tokens;
the cells take a figure's HTML and break it before showing it with loupe.html). Their
scripts run and fail (data-lp-on="failed", a console warning each), and the figures stay
as they were: the picture decoded and visible, the token strip with its tooltips, no
tooltip or readout element added, no uncaught error. Working figures beside them get their
live view as usual. Screenshots: out/test-artifacts/fallback-*.png.
"""
from __future__ import annotations

import time

import nbformat
import pytest

import figures_util as fu

pytestmark = [pytest.mark.browser, pytest.mark.lua]

NB = "fallback.ipynb"
SETUP = """\
attn = {{1, 0, 0}, {0.6, 0.4, 0}, {0.2, 0.3, 0.5}}
toks = {"<bos>", " cat", " sat"}
-- a figure shown with its HTML changed: the first match of pattern `from` replaced by `to`
function broken(fig, from, to)
  local html = getmetatable(fig).__display(fig)["text/html"]
  local out, n = html:gsub(from, to, 1)
  assert(n == 1, "nothing to break in the figure")
  return loupe.html(out)
end
function heatmap(title)
  return loupe.plot.heatmap{attn, row_labels = toks, col_labels = toks, rows = "query", cols = "key",
                            title = title, scale = "sequential"}
end
print("ready")"""
# (name, code, CSS class of the figure, how it is broken or None)
CELLS = [
    ("heatmap", 'heatmap("working heatmap")', "lp-heatmap", None),
    ("not-json", """broken(heatmap("data not JSON"), '<script type="application/json">{',
       '<script type="application/json">{{')""", "lp-heatmap", "not JSON"),
    ("bad-layout", """broken(heatmap("layout broken"), '"p":%[', '"p":[7,')""", "lp-heatmap", "layout"),
    ("tokens", 'loupe.tokens(toks, {0.5, -1, 2}, "working strip")', "lp-tokens", None),
    ("bad-tokens", """broken(loupe.tokens(toks, {0.5, -1, 2}, "values broken"), '"v":%[', '"v":[0,')""",
     "lp-tokens", "values"),
]


def notebook(path) -> int:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "loupe", "display_name": "Lua (loupe)", "language": "lua"}
    nb.cells = [nbformat.v4.new_code_cell(SETUP)] + [nbformat.v4.new_code_cell(c) for _, c, _, _ in CELLS]
    nbformat.write(nb, path)
    return len(nb.cells)


def root(page, i: int):
    _, _, cls, _ = CELLS[i]
    return fu.cell_outputs(page, i + 1).locator(f".{cls}").first


def test_broken_figure_keeps_its_static_picture(isolated_env, tmp_path):
    from playwright.sync_api import expect

    n_code = notebook(tmp_path / NB)
    with fu.lab_server(tmp_path, "fallback") as lab, fu.chromium() as browser:
        page, watch = fu.new_page(browser)
        try:
            fu.open_notebook(page, lab, NB)
            fu.run_all(page)
            fu.wait_all_ran(page, n_code)
            for i, (name, _, cls, how) in enumerate(CELLS):
                r = root(page, i)
                r.wait_for(timeout=fu.LONG)
                # every script ran: on for the working figures, failed for the broken ones
                page.wait_for_function("e => e.hasAttribute('data-lp-on')", arg=r.element_handle())
                assert r.get_attribute("data-lp-on") == ("failed" if how else "1"), name
                fu.shot(r, f"fallback-{name}")

            for i, (name, _, cls, how) in enumerate(CELLS):
                if cls != "lp-heatmap":
                    continue
                r = root(page, i)
                states = fu.wait_images(page, r, 1)
                assert states[0]["src"].startswith("data:image/svg+xml;base64,"), (name, states)
                img = r.locator("img").first
                expect(img).to_be_visible()
                box = img.bounding_box()
                assert box and box["width"] > 50 and box["height"] > 50, (name, box)
                # the values table (no script needed) is there in every case
                assert r.locator("details table td[title]").count() == 9, name
                if how is None:
                    tip = fu.hover_heatmap_cell(page, r, 0, 1, 0, "query 1  cat")  # the label as drawn
                    assert "= 0.6" in tip.inner_text(), tip.inner_text()
                    continue
                # nothing added, and hovering a cell shows nothing
                page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3, steps=3)
                time.sleep(0.3)
                assert fu.heatmap_tip(r).count() == 0, name
                assert r.evaluate("e => e.querySelector('img').style.cursor") == "", name

            readout = ":scope > div[style*='min-height']"
            for i, (name, _, cls, how) in enumerate(CELLS):
                if cls != "lp-tokens":
                    continue
                r = root(page, i)
                spans = r.locator("span[data-i]")
                assert spans.count() == 3, name
                expect(spans.nth(1)).to_be_visible()
                assert spans.nth(1).get_attribute("title") == "#1 \u2423cat = -1", name
                spans.nth(1).hover()
                if how is None:
                    expect(r.locator(readout)).to_have_text("#1 \u2423cat = -1")
                else:
                    time.sleep(0.3)
                    assert r.locator(readout).count() == 0, name
                    assert spans.nth(1).evaluate("e => e.style.outline") == "", name

            fu.shot(page, "fallback-page")
            warned = [line for line in watch.console if "keeps its static" in line]
            assert len(warned) == sum(1 for c in CELLS if c[3]), "\n".join(watch.console)
            assert watch.dialogs == []
            assert watch.errors == [], "console errors:\n" + "\n".join(watch.errors)
        except Exception:
            fu.shot(page, "fallback-failure")
            raise
        finally:
            watch.save_log("fallback")
