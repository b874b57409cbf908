"""Adversarial tokens in a real frontend (issue 5): examples/03-adversarial-tokens.ipynb
shows a prompt whose tokens are HTML and script fragments, entities and right-to-left
controls with loupe.tokens, loupe.table, heatmap labels, grid titles, bar/scatter labels,
series names and titles. Run in JupyterLab (headless Chromium), every figure must show the
strings as text: no dialog fires (any alert/confirm/prompt fails the test), nothing is
injected, pictures decode, bidirectional controls never reach the page raw. And our
scripts run once per output and touch only their own output, also when two outputs are
identical (same content hash id) and when cells are run again.
Screenshots: out/test-artifacts/adversarial-*.png.
"""
from __future__ import annotations

import json
import re
import shutil

import pytest

import figures_util as fu

pytestmark = [pytest.mark.browser, pytest.mark.lua]

NB = "03-adversarial-tokens.ipynb"
# the tokens of the notebook's first cell
TOKS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(2)>', "</div>", "&amp;",
        "\u202eevil", "\u200frtl mark", "<b>bold</b>", "</script><script>alert(3)</script>",
        "'; alert(4); '", "<!--", "<svg onload=alert(5)>", "]]></text><script>alert(6)</script>"]
# code cells: what each shows
CELL = {"prompt": 0, "tokens": 1, "table": 2, "heatmap": 3, "grid": 4, "bar": 5, "scatter": 6,
        "line": 7, "hist": 8, "twice": 9}
PICTURE_CELLS = ["heatmap", "grid", "bar", "scatter", "line", "hist"]
SPACE = "\u2423"
BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
OUR_JS = '(function(){"use strict";'  # how every script of ours starts (display/js/*.js as embedded)


def shown(s: str) -> str:
    """A string as loupe's HTML shows it: bidirectional controls as visible escapes."""
    return BIDI.sub(lambda m: "\\u%04X" % ord(m.group()), s)


@pytest.fixture(scope="module")
def nb_page(isolated_env, tmp_path_factory):
    """JupyterLab with the notebook run once; yields (page, watch, lab)."""
    root = tmp_path_factory.mktemp("adversarial")
    shutil.copy(fu.EXAMPLES / NB, root / NB)
    n_code = fu.code_cell_count(root / NB)
    assert n_code == len(CELL)
    with fu.lab_server(root, "adversarial") as lab, fu.chromium() as browser:
        page, watch = fu.new_page(browser)
        # a global that injected markup would set; checked by the tests
        page.add_init_script("window.__lp_injected = 0;")
        try:
            fu.open_notebook(page, lab, NB)
            fu.run_all(page)
            fu.wait_all_ran(page, n_code)
            fu.shot(page, "adversarial-ran")
            yield page, watch, lab
        except Exception:
            fu.shot(page, "adversarial-failure")
            raise
        finally:
            watch.save_log("adversarial")


def out(page, cell: str):
    return fu.cell_outputs(page, CELL[cell])


def no_harm(page, watch) -> None:
    assert watch.dialogs == [], f"dialogs fired: {watch.dialogs}"
    bad = page.evaluate("""() => {
        const o = [...document.querySelectorAll('.jp-OutputArea-output')];
        const q = s => o.reduce((n, e) => n + e.querySelectorAll(s).length, 0);
        return {img_x: document.querySelectorAll('img[src="x"]').length, b: q('b'), svg: q('svg'),
                i: q('i'), th_in_th: q('th th'), handlers: q('[onerror],[onload]'),
                foreign_scripts: o.flatMap(e => [...e.querySelectorAll('script')])
                    .filter(s => s.type !== 'application/json' && !s.textContent.startsWith(%s))
                    .map(s => s.outerHTML.slice(0, 120))};
    }""" % json.dumps(OUR_JS))
    assert bad == {"img_x": 0, "b": 0, "svg": 0, "i": 0, "th_in_th": 0, "handlers": 0,
                   "foreign_scripts": []}, bad
    assert watch.errors == [], "console errors:\n" + "\n".join(watch.errors)


def test_every_figure_shows_tokens_as_text(nb_page):
    page, watch, _ = nb_page
    # token strip: each span's text is the token, its tooltip has the token and value
    strip = out(page, "tokens").locator(".lp-tokens").first
    strip.wait_for()
    # (text_content, not inner_text: cells outside the viewport are not rendered, and
    # JupyterLab's content-visibility windowing gives them no inner text)
    assert strip.locator(":scope > div").first.text_content() == "<i>title</i><script>alert(7)</script>"
    spans = strip.locator("span[data-i]")
    assert spans.count() == len(TOKS)
    for i, t in enumerate(TOKS):
        assert spans.nth(i).text_content() == shown(t), (i, spans.nth(i).text_content())
        # the tooltip shows the token as every figure does (a space as U+2423, display/text.c)
        assert spans.nth(i).get_attribute("title").startswith(f"#{i} {shown(t).replace(' ', SPACE)} = "), i
    fu.shot(strip, "adversarial-tokens")

    # table: header, title and the token column as text
    table = out(page, "table").locator(".lp-table").first
    assert table.locator(":scope > div").first.text_content() == "<script>alert(8)</script>"
    assert table.locator("th").nth(1).text_content() == "<th>token</th>"
    cells = table.locator("tbody tr td:nth-child(2)")
    assert [cells.nth(i).text_content() for i in range(cells.count())] == [shown(t) for t in TOKS]
    fu.shot(table, "adversarial-table")

    # heatmap: title as text; the values table tooltips carry both labels as text
    hm = out(page, "heatmap").locator(".lp-heatmap").first
    assert hm.locator(":scope > div").first.text_content() == "<img src=x onerror=alert(9)>"
    td = hm.locator("details table tr").nth(4).locator("td").nth(1)
    assert td.get_attribute("title") == f"4 {shown(TOKS[4])} \u2192 1 {shown(TOKS[1])}: 0.2", \
        td.get_attribute("title")

    # every picture decodes: its SVG, with the tokens drawn as text, is well-formed
    for cell in PICTURE_CELLS:
        o = out(page, cell).first
        o.locator("img").first.wait_for()
        fu.wait_images(page, o, 1)
        fu.shot(o, f"adversarial-{cell}")
    no_harm(page, watch)


def test_hover_shows_tokens_as_text(nb_page):
    """The hover readouts are built by our scripts from embedded JSON: they must show the
    tokens as the static HTML does, bidirectional controls included (as visible escapes),
    or a right-to-left override in a token reorders the value shown after it."""
    from playwright.sync_api import expect

    page, watch, _ = nb_page
    strip = out(page, "tokens").locator(".lp-tokens").first
    readout = strip.locator(":scope > div[style*='min-height']")
    expect(readout).to_have_count(1)
    texts = []
    for i, t in enumerate(TOKS):
        strip.locator(f'span[data-i="{i}"]').hover()
        expect(readout).to_contain_text(f"#{i} ")
        texts.append(readout.text_content())
        # the token, as every figure shows it, is in the readout as text (not markup)
        assert texts[-1].startswith(f"#{i} "), texts[-1]
    assert "#0 <script>alert(1)</script> = " in texts[0], texts[0]
    assert f"#8 ';{SPACE}alert(4);{SPACE}' = " in texts[8], texts[8]
    assert "u202Eevil" in texts[4], ascii(texts[4])
    fu.shot(strip, "adversarial-tokens-hover")

    hm = out(page, "heatmap").locator(".lp-heatmap").first
    img = hm.locator("img").first
    img.scroll_into_view_if_needed()
    tip = fu.heatmap_tip(hm)
    tips = []
    for row, col in ((0, 0), (4, 1), (5, 4), (11, 7)):
        fu.hover_heatmap_cell(page, hm, 0, row, col, f"<q> {row} ")
        tips.append(tip.text_content())
    fu.shot(hm, "adversarial-heatmap-hover")
    no_harm(page, watch)
    raw = [t for t in texts + tips if BIDI.search(t)]
    assert raw == [], ("hover text shows raw bidirectional controls (the static HTML shows them "
                       f"as \\uXXXX escapes): {[ascii(t) for t in raw]}")


def roots_and_helpers(page) -> list[dict]:
    """For every figure with a script: its id, whether its script ran, and how many hover
    elements (heatmap tooltip / token readout) it holds."""
    return page.evaluate("""() => [...document.querySelectorAll('.jp-OutputArea-output [data-lp-id]')]
        .filter(r => r.querySelector('script[type="application/json"]'))
        .map(r => ({id: r.getAttribute('data-lp-id'), on: r.getAttribute('data-lp-on'),
                    helpers: r.querySelectorAll(":scope > div[style*='pointer-events'], "
                                                + ":scope > div[style*='min-height']").length}))""")


def test_scripts_run_once_per_output_and_stay_in_it(nb_page):
    from playwright.sync_api import expect

    page, watch, _ = nb_page
    twice = out(page, "twice")
    expect(twice).to_have_count(4)
    roots = roots_and_helpers(page)
    # tokens, heatmap, grid, and the four outputs of the "twice" cell
    assert len(roots) == 7, roots
    assert all(r["on"] == "1" and r["helpers"] == 1 for r in roots), roots
    ids = [r["id"] for r in roots]
    assert ids[3] == ids[4] and ids[5] == ids[6], "identical outputs are expected to share an id"

    # hovering a token of the second identical strip updates its own readout only
    s1, s2 = (twice.nth(k).locator(".lp-tokens") for k in (0, 1))
    r1, r2 = (s.locator(":scope > div[style*='min-height']") for s in (s1, s2))
    s2.locator('span[data-i="3"]').hover()
    expect(r2).to_contain_text("#3 ")
    assert "#3" not in r1.text_content()
    # hovering the second identical heatmap shows the tooltip in the second only
    h1, h2 = (twice.nth(k).locator(".lp-heatmap") for k in (2, 3))
    img2 = h2.locator("img").first
    img2.scroll_into_view_if_needed()
    fu.hover_heatmap_cell(page, h2, 0, 2, 1)
    expect(fu.heatmap_tip(h1)).to_be_hidden()
    fu.shot(twice.nth(3), "adversarial-twice-hover")

    # run the token strip and the "twice" cell again (each twice): outputs are replaced,
    # every script runs once for its new output, nothing accumulates
    for cell in ("tokens", "twice", "tokens", "twice"):
        c = fu.code_cells(page).nth(CELL[cell])
        c.locator(".jp-InputArea-prompt").click()
        page.keyboard.press("Escape")
        before = c.locator(".jp-InputPrompt").text_content()
        page.keyboard.press("Control+Enter")
        expect(c.locator(".jp-InputPrompt")).not_to_have_text(before, timeout=fu.LONG)
        expect(c.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"), timeout=fu.LONG)
    fu.wait_kernel_idle(page)
    expect(out(page, "twice")).to_have_count(4)
    expect(out(page, "tokens")).to_have_count(1)
    page.wait_for_function("""() => [...document.querySelectorAll('.jp-OutputArea-output [data-lp-id]')]
        .filter(r => r.querySelector('script[type="application/json"]')).every(r => r.getAttribute('data-lp-on'))""")
    after = roots_and_helpers(page)
    assert len(after) == 7 and all(r["on"] == "1" and r["helpers"] == 1 for r in after), after
    strip = out(page, "tokens").locator(".lp-tokens").first
    strip.locator('span[data-i="0"]').hover()
    expect(strip.locator(":scope > div[style*='min-height']")).to_contain_text("#0 ")
    fu.shot(page, "adversarial-rerun")
    no_harm(page, watch)
