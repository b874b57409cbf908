"""Figure text as a person sees it, measured in headless Chromium with the fonts it really
uses (issue 14):

- the attention grid of an IOI prompt on examples/models/default labels both axes of every
  panel with the tokens, in loupe's notation (a space shows as U+2423: "␣Mary", "␣to"),
  read from the rendered picture of the output in JupyterLab, trusted (run in the lab) and
  untrusted (the saved notebook opened with an empty signature database);
- no text of any figure of any example notebook leaves its picture: every notebook is
  executed with nbclient, every SVG its outputs carry (the pictures of the static HTML) is
  drawn in the browser and each <text> element's box compared with the SVG's viewBox.

Display/text.c's width estimate keeps the layouts inside the picture in tests/unit/display
(test_text.c); this checks the same with real glyphs.
"""
from __future__ import annotations

import base64
import json
import re

import nbformat
import pytest

import figures_util as fu
import kernelutil as ku

pytestmark = [pytest.mark.browser, pytest.mark.lua]

SPACE = "\u2423"
IOI = "When John and Mary went to the store, John gave a drink to"
NB = "ioi.ipynb"
CELLS = ['m = loupe.load("models/default")\nm', f'r = m:run("{IOI}")\nr:attention(3)']
HEADS = 4  # examples/models/default

# The texts of the SVG inside an <img src="data:image/svg+xml;base64,...">, parsed in the page
# from the src the browser shows: [content, transform, text-anchor] per <text>.
SVG_TEXTS_JS = """img => {
  const b64 = img.getAttribute('src').split(',')[1];
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const doc = new DOMParser().parseFromString(new TextDecoder().decode(bytes), 'image/svg+xml');
  return [...doc.querySelectorAll('text')].map(t => [t.textContent, t.getAttribute('transform') || '',
                                                     t.getAttribute('text-anchor') || '']);
}"""


def write_notebook(folder) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": ku.KERNEL_MESSAGE, "display_name": "loupe", "language": "lua"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(nb, folder / NB)
    (folder / "models").symlink_to(fu.EXAMPLES / "models", target_is_directory=True)


def check_attention_labels(page, tag: str) -> None:
    """The attention grid's picture labels both axes of every panel with the tokens."""
    root = fu.cell_outputs(page, 1).locator(".lp-heatmaps").first
    root.wait_for(timeout=fu.LONG)
    fu.wait_images(page, root, 1)
    img = root.locator("img").first
    texts = img.evaluate(SVG_TEXTS_JS)
    rows = [t for t, tr, anchor in texts if not tr and anchor == "end"]       # left of a panel
    cols = [t for t, tr, anchor in texts if tr.startswith("rotate(-90")]      # below a panel
    if not cols:  # labels that fit lie across, centred under their column
        cols = [t for t, tr, anchor in texts if not tr and anchor == "middle" and not t.startswith("head ")]
    fu.shot(root, f"figure-text-attention-{tag}")
    tokens = ["When", f"{SPACE}John", f"{SPACE}and", f"{SPACE}Mary", f"{SPACE}went", f"{SPACE}to",
              f"{SPACE}the", f"{SPACE}store", ",", f"{SPACE}John", f"{SPACE}gave", f"{SPACE}a",
              f"{SPACE}drink", f"{SPACE}to"]
    # every panel: the query tokens down its left side, the key tokens along its bottom, in order
    assert rows == tokens * HEADS, f"{tag}: row labels {rows}"
    assert cols == tokens * HEADS, f"{tag}: column labels {cols}"
    titles = [t for t, tr, anchor in texts if t.startswith("head ")]
    assert titles == [f"head {h}" for h in range(HEADS)], f"{tag}: panel titles {titles} (heads count from 0)"
    # the full tokens in the picture's tooltip, for hover where scripts do not run
    tip = img.get_attribute("title")
    assert f"query: 0 When 1 {SPACE}John" in tip and f"13 {SPACE}to" in tip, tip


def test_attention_grid_shows_tokens_trusted_and_untrusted(isolated_env, tmp_path):
    write_notebook(tmp_path)
    with fu.lab_server(tmp_path, "figure-text") as lab, fu.chromium() as browser:
        page, watch = fu.new_page(browser)
        try:
            fu.open_notebook(page, lab, NB)
            fu.run_all(page)
            fu.wait_all_ran(page, len(CELLS))
            check_attention_labels(page, "trusted")
            assert fu.cell_outputs(page, 1).locator("[data-lp-on='1']").count() == 1, "its script ran"
            fu.save(page)
            fu.wait_saved_with_outputs(tmp_path / NB, len(CELLS))
            assert watch.errors == [], "console errors:\n" + "\n".join(watch.errors)
        finally:
            watch.save_log("figure-text-trusted")
    with fu.lab_server(tmp_path, "figure-text-untrusted", "--NotebookNotary.db_file=:memory:") as lab, \
            fu.chromium() as browser:
        model = lab.api(f"contents/{NB}")
        assert not any(c["metadata"].get("trusted") for c in model["content"]["cells"])
        page, watch = fu.new_page(browser)
        try:
            fu.open_notebook(page, lab, NB)
            assert page.locator(".jp-OutputArea-output script").count() == 0, "sanitized"
            check_attention_labels(page, "untrusted")
        finally:
            watch.save_log("figure-text-untrusted")


# -- every figure of every example notebook -------------------------------------------------
NOTEBOOKS = sorted(p for p in fu.EXAMPLES.glob("*.ipynb"))

# Draws each SVG in the page and returns, per SVG, its texts whose box leaves the viewBox.
OVERFLOW_JS = """svgs => svgs.map(src => {
  const box = document.createElement('div');
  box.innerHTML = src;
  document.body.appendChild(box);
  const s = box.querySelector('svg'), vb = s.viewBox.baseVal, r0 = s.getBoundingClientRect();
  const sx = r0.width / vb.width, sy = r0.height / vb.height, out = [];
  for (const t of s.querySelectorAll('text')) {
    const r = t.getBoundingClientRect();
    const x0 = (r.left - r0.left) / sx, x1 = (r.right - r0.left) / sx;
    const y0 = (r.top - r0.top) / sy, y1 = (r.bottom - r0.top) / sy;
    if (r.width > 0 && (x0 < -0.5 || y0 < -0.5 || x1 > vb.width + 0.5 || y1 > vb.height + 0.5))
      out.push({text: t.textContent, box: [x0, y0, x1, y1].map(v => Math.round(v)), view: [vb.width, vb.height]});
  }
  const n = s.querySelectorAll('text').length;
  box.remove();
  return {n, out};
})"""


def svgs_of(nb) -> list[tuple[int, str]]:
    """(cell index, SVG document) for every picture in the notebook's HTML outputs."""
    found = []
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            html = o.get("data", {}).get("text/html", "")
            html = "".join(html) if isinstance(html, list) else html
            for b64 in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html):
                found.append((i, base64.b64decode(b64).decode("utf-8")))
    return found


@pytest.mark.timeout(1500)
def test_no_figure_text_leaves_its_picture_in_any_example(isolated_env):
    executed = {p.name: ku.run_notebook(p, artifact=f"figure-text/{p.name}") for p in NOTEBOOKS}
    bad, counted = [], {}
    with fu.chromium() as browser:
        page, watch = fu.new_page(browser)
        page.set_content("<!doctype html><html><body style='margin:0'></body></html>")
        for name, nb in executed.items():
            svgs = svgs_of(nb)
            results = page.evaluate(OVERFLOW_JS, [s for _, s in svgs])
            counted[name] = (len(svgs), sum(r["n"] for r in results))
            for (cell, _), r in zip(svgs, results):
                bad += [f"{name} cell {cell}: {json.dumps(o, ensure_ascii=False)}" for o in r["out"]]
        assert watch.errors == [], watch.errors
    print("pictures and texts measured per notebook:", counted)
    # the notebooks that draw figures were measured (a notebook without pictures proves nothing)
    for name in ("02-figures.ipynb", "04-superposition.ipynb", "05-default-model.ipynb",
                 "06-induction-heads.ipynb"):
        assert counted[name][0] > 0 and counted[name][1] > 0, (name, counted[name])
    assert not bad, "text outside its picture:\n" + "\n".join(bad)
