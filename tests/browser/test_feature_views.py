"""The feature views of issue 16 (dashboard, browser `sae:features{}`, prompt view
`r:features(sae)`) and the circuit diagram of issue 18, together in one notebook, in the
three places a notebook is read besides the author's own lab (JupyterLab, headless Chromium):

- trusted (the lab that ran it): the browser's search box filters its rows, a click on a
  row opens that feature's dashboard in place, hovering a prompt token shows its features
  in the readout line; then the same notebook opened untrusted (an empty notebook-signature
  database): every view is its static picture and tables, no script, no readout;
- shared (real-time collaboration, two browser contexts): what A runs, B sees rendered,
  pictures decoded and tables there, and interactive (the views' scripts ran for B too);
- `jupyter nbconvert --to html`: the export opened offline shows the pictures and tables.

Everywhere: hostile labels and tokens (<script>, <img onerror>, a bidi override) appear
as text, no dialog opens, the console has no errors. One small random SAE, harvested in the
notebook. Screenshots: out/test-artifacts/fviews-*.png.
"""
from __future__ import annotations

import json
import re
import subprocess
import time

import nbformat
import pytest

import figures_util as fu
import kernelutil as ku

pytestmark = [pytest.mark.browser, pytest.mark.lua]

NB = "feature-views.ipynb"
MODEL = ku.ROOT / "examples" / "models" / "default"
MARKUP = '<script>alert("x")</script><img src=x onerror=alert(1)>'
LABEL = MARKUP + ' \u202eoslo'
PROMPT = "<img src=x onerror=alert(2)> Mara lives in Oslo"
NODE_LABEL = "</script><script>alert('node')</script>"


def lua_str(s: str) -> str:
    """A Lua string literal for s (UTF-8 as is: Lua has no \\uXXXX escape)."""
    return json.dumps(s, ensure_ascii=False)


CELLS = [
    f"""m = loupe.load({str(MODEL)!r})
ds = loupe.data.load{{text = string.rep("Mara lives in Oslo and Ben lives in Paris. The cat sat on the mat. ", 40),
                     tokenizer = loupe.tokenizer({str(MODEL)!r})}}
sae = loupe.sae.random{{arch = "topk", k = 8, d_in = 192, d_sae = 256, hook = "blocks.1.hook_resid_post", seed = 3}}
sae:harvest{{model = m, data = ds, ctx = 32}}
local d = sae:harvest().density
best = 1
for i = 1, #d do if d[i] > d[best] then best = i end end
best = best - 1
sae:label(best, {lua_str(LABEL)})
print(best)""",
    "sae:feature(best)",
    "sae:features{}",
    f"r = m:run({lua_str(PROMPT)})\nr:features(sae, {{model = m}})",
    f"""local G = {{tokens = {{'<bos>', {lua_str(PROMPT)}, ' is'}}, n_layers = 2, nodes = {{}}, edges = {{}}}}
local function add(n) G.nodes[#G.nodes + 1] = n; return #G.nodes end
local e0, e1 = add{{kind = 'embedding', pos = 0}}, add{{kind = 'embedding', pos = 1}}
local f = add{{kind = 'feature', layer = 0, pos = 1, feature = best, activation = 2, influence = 0.7,
              label = {lua_str(NODE_LABEL)}}}
local l = add{{kind = 'logit', pos = 2, feature = 1, prob = 0.5, influence = 1, label = {lua_str(LABEL)}}}
G.edges = {{{{e1, f, 1.5}}, {{f, l, 2}}, {{e0, l, -0.3}}}}
loupe.display.circuit(G)""",
]
DASH, BROWSER, PROMPTV, CIRCUIT = 1, 2, 3, 4


def make_notebook(path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Lua (loupe)", "language": "lua", "name": ku.KERNEL_MESSAGE},
                   "language_info": {"file_extension": ".lua", "name": "lua"}}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(nb, path)


def roots(page) -> dict:
    out = {"dash": fu.cell_outputs(page, DASH).locator(".lp-dashboard").first,
           "browser": fu.cell_outputs(page, BROWSER).locator(".lp-browser").first,
           "prompt": fu.cell_outputs(page, PROMPTV).locator(".lp-prompt-features").first,
           "circuit": fu.cell_outputs(page, CIRCUIT).locator(".lp-circuit").first}
    for r in out.values():
        r.wait_for(timeout=fu.LONG)
    return out


def text(root) -> str:
    """The text of root's text nodes (textContent: innerText is empty for outputs that
    JupyterLab does not lay out at the moment). The figures' JSON data escapes <, > and &,
    so a hostile string found here is in a text node, shown as text."""
    return root.text_content() or ""


def shows_label(t: str) -> bool:
    """Whether text t shows LABEL as text: its markup verbatim, the bidi override either
    as is or written out visibly (as the dashboard does, \\u202E)."""
    return MARKUP in t and ("\u202eoslo" in t or "\\u202Eoslo" in t)


def check_static(page, scope, r: dict, tag: str) -> None:
    """What every reader sees, scripts or not: pictures decoded, tables, tooltips, hostile
    text as text (never as elements)."""
    fu.wait_images(page, r["dash"], 2)
    fu.wait_images(page, r["circuit"], 1)
    assert shows_label(text(r["dash"])), "the dashboard shows the hostile label as text"
    rows = r["browser"].locator("tbody tr")
    assert rows.count() > 5, f"the browser's static table has {rows.count()} rows"
    assert shows_label(text(r["browser"])), "the browser shows the hostile label as text"
    titles = r["prompt"].locator("span[title]").evaluate_all("es => es.map(e => e.title)")
    assert len(titles) >= 8, titles
    assert "<img" in text(r["prompt"]), "the hostile prompt shows as text"
    assert any("#" in t for t in titles), f"no token tooltip names a feature: {titles}"
    assert "STRONGEST FEATURES" in text(r["prompt"]).upper()
    assert r["prompt"].locator("table tr").count() >= 2, "the strongest features table"
    ctext = text(r["circuit"])
    assert NODE_LABEL in ctext or shows_label(ctext), "the diagram's tables show the hostile labels as text"
    assert r["circuit"].locator("table").count() >= 1, "the diagram's tables"
    # nothing hostile became an element anywhere
    assert scope.locator("img[src=x]").count() == 0
    assert scope.locator("img[onerror]").count() == 0
    for k, root in r.items():
        fu.shot(root, f"fviews-{tag}-{k}")


def check_interactive(page, r: dict, tag: str) -> None:
    from playwright.sync_api import expect

    for k, root in r.items():
        assert root.get_attribute("data-lp-on") == "1", f"{tag}: the {k} script did not run"
    # the browser: search filters rows, a click opens the dashboard in place
    b = r["browser"]
    rows = b.locator("tbody tr[data-i]")
    n = rows.count()
    box = b.locator("input[type=search]")
    box.fill("alert")
    visible = b.locator("tbody tr[data-i]:visible")
    expect(visible).to_have_count(1)
    assert visible.first.get_attribute("data-i") == str(best_of(r)), "search finds the labelled feature"
    box.fill("zzzz-no-such-feature")
    expect(visible).to_have_count(0)
    box.fill("")
    expect(visible).to_have_count(n)
    first = rows.first
    assert first.get_attribute("data-dash") == "1"
    first.click()
    detail = b.locator("tr[data-lp-detail]")
    expect(detail).to_have_count(1)
    assert detail.get_attribute("data-lp-detail") == first.get_attribute("data-i")
    dash = detail.locator(".lp-dashboard")
    expect(dash).to_have_count(1)
    fu.wait_images(page, dash, 2)
    fu.shot(b, f"fviews-{tag}-browser-open")
    first.click()
    expect(detail).to_have_count(0)
    # the prompt view: hover a token that has features: the readout shows them
    p = r["prompt"]
    spans = p.locator("span[data-t]")
    titles = spans.evaluate_all("es => es.map(e => e.title)")
    at = next(i for i, t in enumerate(titles) if "#" in t)
    spans.nth(at).hover()
    expect(p.locator("div[data-lp-readout]")).to_have_text(titles[at])
    fu.shot(p, f"fviews-{tag}-prompt-hover")
    # the dashboard: hover a token shows the readout with what it promotes
    r["dash"].locator("span[data-a]").nth(3).hover()
    expect(r["dash"]).to_contain_text("promotes")
    # the diagram: hovering the feature node shows its hostile label as text; a click selects
    # it and opens the side panel with its input (the embedding of position 1)
    c = r["circuit"]
    d = json.loads(c.locator("script[data-lp-circuit]").text_content())
    f = d["nodes"]["label"].index(NODE_LABEL)
    tip = c.locator(":scope > div[style*='pointer-events']")
    for _ in range(10):
        page.mouse.move(1, 1)
        page.mouse.move(*circuit_point(c, d, f), steps=2)
        time.sleep(0.2)
        if tip.first.is_visible() and NODE_LABEL in (tip.first.text_content() or ""):
            break
    else:
        raise AssertionError(f"{tag}: no diagram tooltip with the node's label")
    page.mouse.click(*circuit_point(c, d, f))
    expect(c).to_have_attribute("data-lp-selected", str(f))
    panel = c.locator("div[data-lp-panel]")
    expect(panel).to_be_visible()
    ins = panel.locator('div[data-lp-list="in-pos"] > *').evaluate_all("es => es.map(e => e.getAttribute('data-node'))")
    e = d["edges"]
    want = [str(e["src"][k]) for k in range(len(e["src"])) if e["dst"][k] == f and e["w"][k] > 0]
    assert len(want) == 1 and ins == want, (ins, want)
    fu.shot(c, f"fviews-{tag}-circuit-click")
    # what the scripts wrote (readouts, the opened dashboard) made no element of hostile text
    assert page.locator("img[src=x], img[onerror]").count() == 0


def circuit_point(c, d: dict, i: int) -> tuple[float, float]:
    """Page coordinates of node i of a diagram (the layout in its embedded data)."""
    k = d["nodes"]["kind"][i]
    row = 0 if k == 2 else d["L"] + 1 if k == 3 else d["nodes"]["layer"][i] + 1
    img = c.locator("img").first
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    return (box["x"] + d["nodes"]["x"][i] * box["width"] / d["W"],
            box["y"] + d["rowy"][row] * box["height"] / d["H"])


def best_of(r: dict) -> int:
    """The feature that the first cell labelled: the one whose dashboard the notebook shows."""
    return int(re.search(r"Feature (\d+)", text(r["dash"])).group(1))


def check_clean(*watches) -> None:
    dialogs = [d for w in watches for d in w.dialogs]
    errors = [e for w in watches for e in w.errors]
    assert dialogs == [], f"a dialog opened: {dialogs}"
    assert errors == [], "console errors:\n" + "\n".join(errors)


@pytest.mark.timeout(900)
def test_feature_views_trusted_untrusted_export(isolated_env, tmp_path):
    make_notebook(tmp_path / NB)
    with fu.lab_server(tmp_path, "fviews") as lab, fu.chromium() as browser:
        page, watch = fu.new_page(browser)
        try:
            fu.open_notebook(page, lab, NB)
            fu.run_all(page)
            fu.wait_all_ran(page, len(CELLS))
            r = roots(page)
            check_static(page, page.locator(".jp-NotebookPanel"), r, "trusted")
            check_interactive(page, r, "trusted")
            fu.save(page)
            fu.wait_saved_with_outputs(tmp_path / NB, len(CELLS))
            check_clean(watch)
        except Exception:
            fu.shot(page, "fviews-trusted-failure")
            raise
        finally:
            watch.save_log("fviews-trusted")

    with fu.lab_server(tmp_path, "fviews-untrusted", "--NotebookNotary.db_file=:memory:") as lab, \
            fu.chromium() as browser:
        page, watch = fu.new_page(browser)
        try:
            fu.open_notebook(page, lab, NB)
            r = roots(page)
            check_static(page, page.locator(".jp-NotebookPanel"), r, "untrusted")
            for k, root in r.items():
                assert root.locator("script").count() == 0, f"{k}: scripts are stripped when untrusted"
                assert root.get_attribute("data-lp-on") is None, f"{k}: no script ran"
            assert r["browser"].locator("input").count() == 0, "no search box without scripts"
            check_clean(watch)
        except Exception:
            fu.shot(page, "fviews-untrusted-failure")
            raise
        finally:
            watch.save_log("fviews-untrusted")

    # the nbconvert HTML export, opened offline
    out = tmp_path / "html"
    p = subprocess.run([str(ku.VENV_BIN / "jupyter"), "nbconvert", "--to", "html", "--output-dir", str(out),
                        str(tmp_path / NB)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    html_path = out / NB.replace(".ipynb", ".html")
    html = html_path.read_text(encoding="utf-8")
    assert "<script>alert(" not in html and "<img src=x" not in html, "hostile markup in the export"
    with fu.chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        # offline: the export's CDN references (MathJax, require.js) are refused, not fetched
        context.route("**/*", lambda q: q.continue_() if q.request.url.startswith("file:") else q.abort())
        page, watch = fu.new_page(context)
        try:
            page.goto(html_path.as_uri())
            body = page.locator("body")
            r = {"dash": body.locator(".lp-dashboard").first, "browser": body.locator(".lp-browser").first,
                 "prompt": body.locator(".lp-prompt-features").first, "circuit": body.locator(".lp-circuit").first}
            for root in r.values():
                root.wait_for(timeout=fu.LONG)
            check_static(page, body, r, "nbconvert")
            # nbconvert inserts the HTML raw: the views' scripts run in the export too
            page.wait_for_function("document.querySelectorAll('[data-lp-on=\"1\"]').length >= 4")
            fu.shot(page, "fviews-nbconvert-page")
            assert watch.dialogs == []
            ours = [e for e in watch.errors if "ERR_FAILED" not in e and "net::" not in e]
            assert ours == [], "errors in the exported page:\n" + "\n".join(watch.errors)
        finally:
            watch.save_log("fviews-nbconvert")


def trust(page) -> None:
    """Trusts the open notebook through the command palette and its confirmation dialog."""
    from playwright.sync_api import expect

    page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+Shift+c")
    page.keyboard.insert_text("Trust Notebook")
    page.locator(".lm-CommandPalette-item", has_text="Trust Notebook").first.click()
    button = page.locator(".jp-Dialog .jp-mod-accept")
    expect(button).to_be_visible()
    button.click()
    expect(page.locator(".jp-Dialog")).to_have_count(0)


@pytest.mark.timeout(600)
@pytest.mark.skipif(not fu.HAS_COLLAB, reason="jupyter-collaboration is not installed")
def test_feature_views_shared(isolated_env, tmp_path):
    """Two people on one notebook (RTC): A runs it, B sees every view rendered and live."""
    make_notebook(tmp_path / NB)
    with fu.lab_server(tmp_path, "fviews-collab", rtc=True) as lab, fu.chromium() as browser:
        ctx_a = browser.new_context(viewport={"width": 1400, "height": 1000})
        ctx_b = browser.new_context(viewport={"width": 1400, "height": 1000})
        a, watch_a = fu.new_page(ctx_a)
        b, watch_b = fu.new_page(ctx_b)
        rooms: list[str] = []
        b.on("websocket", lambda ws: rooms.append(ws.url))
        try:
            fu.open_notebook(a, lab, NB)
            fu.open_notebook(b, lab, NB)
            assert any("/api/collaboration/room/" in u and "globalAwareness" not in u for u in rooms), rooms
            fu.run_all(a)
            fu.wait_all_ran(a, len(CELLS))
            fu.wait_all_ran(b, len(CELLS))
            r = roots(b)
            check_static(b, b.locator(".jp-NotebookPanel"), r, "collab-b")
            check_interactive(a, roots(a), "collab-a")
            # B did not run the cells: JupyterLab gives B the outputs untrusted (scripts
            # stripped, as in a notebook opened untrusted). B trusts the notebook
            # (File > Trust Notebook, confirmed in its dialog); then B's views are live.
            if r["dash"].get_attribute("data-lp-on") is None:
                assert all(x.locator("script").count() == 0 for x in r.values()), "B: half-trusted outputs"
                fu.shot(b, "fviews-collab-b-before-trust")
                trust(b)
                r = roots(b)
            check_interactive(b, r, "collab-b")
            fu.shot(b, "fviews-collab-b-page")
            check_clean(watch_a, watch_b)
        except Exception:
            fu.shot(a, "fviews-collab-a-failure")
            fu.shot(b, "fviews-collab-b-failure")
            raise
        finally:
            watch_a.save_log("fviews-collab-a")
            watch_b.save_log("fviews-collab-b")
