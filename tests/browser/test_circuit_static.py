"""The static circuit diagram (display/circuit.c, issue 17 item 7) in JupyterLab, headless
Chromium: hand-made attribution graphs built in Lua cells through loupe.display.circuit
(hostile tokens and labels, a 10,000-character label, a crowded graph, a single token
without edges). Run trusted in the lab, then saved and opened untrusted (an empty
notebook-signature database: scripts stripped). Each time: every diagram shows its
picture (an SVG decoded with a non-zero size), no <text> of the picture leaves its
viewBox (measured with the real font), the tables are there with the hostile text as
text, no dialog opened and the console is free of errors. Trusted, the embedded data
parses and describes the graph, and display/js/circuit.js shows a node's label and
numbers on hover (untrusted: no script runs). Screenshots go to
out/test-artifacts/circuit-static-*.png.
"""
from __future__ import annotations

import base64
import json

import nbformat
import pytest

import figures_util as fu
import kernelutil as ku

pytestmark = [pytest.mark.browser, pytest.mark.lua]

NB = "circuit.ipynb"
HOSTILE_TOKEN = '<img src=x onerror=alert("tok")>'
HOSTILE_LABEL = "</script><script>alert('label')</script>"

# 1: a small graph with hostile text; 2: a crowded graph (cells show "+N", only the
# strongest edges drawn); 3: one token and no edges.
CELLS = [
    r"""
local toks = {'<bos>', ' The', ' capital', ' of', ' Norway', %(tok)s, ' is'}
local G = {tokens = toks, n_layers = 4, replacement_score = 0.7, completeness_score = 0.85,
           title = 'hand-made <b>graph</b>', nodes = {}, edges = {}}
local function add(n) G.nodes[#G.nodes + 1] = n; return #G.nodes end
local e = {}
for p = 0, #toks - 1 do e[p] = add{kind = 'embedding', pos = p, influence = 0.01} end
local f1 = add{kind = 'feature', layer = 0, pos = 4, feature = 12, activation = 3.5, influence = 0.6, label = 'Norway'}
local f2 = add{kind = 'feature', layer = 1, pos = 5, feature = 7, activation = 1.2, influence = 0.4, label = %(label)s}
local f3 = add{kind = 'feature', layer = 2, pos = 6, feature = 99, activation = 2.0, influence = 0.8,
               label = string.rep('capital cities W ', 600)}
local er = add{kind = 'error', layer = 1, pos = 6, influence = 0.05}
local l1 = add{kind = 'logit', pos = 6, feature = 1, prob = 0.62, influence = 1, label = ' Oslo'}
local l2 = add{kind = 'logit', pos = 6, feature = 2, prob = 0.21, influence = 0.5, label = %(tok)s}
G.edges = {{e[4], f1, 2}, {f1, f3, 1.5}, {e[5], f2, 1}, {f2, f3, -0.5}, {er, f3, 0.2},
           {f3, l1, 3}, {f3, l2, -1}, {e[6], l1, 0.5}, {e[2], f3, 0.3}}
circuit_small = G
loupe.display.circuit(G)
""",
    r"""
local seed = 11
local function rnd() seed = (seed * 1103515245 + 12345) %% 2147483648; return seed / 2147483648 end
local G = {n_layers = 8, replacement_score = 0.5, completeness_score = 0.75, nodes = {}, edges = {},
           tokens = {'When', ' Mary', ' and', ' John', ' went', ' to', ' the', ' store', ',', ' John', ' gave', ' a'}}
local function add(n) G.nodes[#G.nodes + 1] = n; return #G.nodes end
for p = 0, 11 do add{kind = 'embedding', pos = p} end
for i = 1, 600 do
  add{kind = 'feature', layer = math.floor(rnd() * 8), pos = math.floor(rnd() * 12), feature = i,
      activation = rnd() * 4, influence = rnd(), label = 'feature ' .. i}
end
for j = 1, 8 do add{kind = 'logit', pos = 11, feature = j, prob = 0.4 / j, influence = 1 / j, label = ' tok' .. j} end
local function row(n) return n.kind == 'embedding' and 0 or n.kind == 'logit' and 9 or n.layer + 1 end
while #G.edges < 3000 do
  local a, b = 1 + math.floor(rnd() * #G.nodes), 1 + math.floor(rnd() * #G.nodes)
  if row(G.nodes[a]) < row(G.nodes[b]) and G.nodes[b].kind ~= 'embedding' then
    G.edges[#G.edges + 1] = {a, b, rnd() * 2 - 0.8}
  end
end
loupe.display.circuit(G)
""",
    r"""
loupe.display.circuit{tokens = {'Hi'}, n_layers = 2,
  nodes = {{kind = 'embedding', pos = 0}, {kind = 'feature', layer = 1, pos = 0, feature = 3, label = 'greeting'},
           {kind = 'logit', pos = 0, feature = 5, prob = 0.9, label = '!'}}}
""",
]
CELLS = [c.strip() % {"tok": json.dumps(HOSTILE_TOKEN), "label": json.dumps(HOSTILE_LABEL)} for c in CELLS]

# Draws each SVG in the page and returns its texts whose box leaves the viewBox.
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


def write_notebook(folder) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": ku.KERNEL_MESSAGE, "display_name": "loupe", "language": "lua"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(nb, folder / NB)


def root(page, i: int):
    return fu.cell_outputs(page, i).locator(".lp-circuit").first


def check_diagrams(page, tag: str) -> None:
    """Every diagram shows its picture, whose texts stay inside it; tables hold the hostile
    text as text; nothing injected became an element."""
    svgs = []
    for i in range(len(CELLS)):
        r = root(page, i)
        r.wait_for(timeout=fu.LONG)
        states = fu.wait_images(page, r, 1)
        assert states[0]["src"].startswith("data:image/svg+xml;base64,"), states
        src = r.locator("img").first.get_attribute("src")
        svgs.append(base64.b64decode(src.split(",", 1)[1]).decode("utf-8"))
        fu.shot(fu.cell_outputs(page, i).first, f"circuit-static-{tag}-{i}")
    results = page.evaluate(OVERFLOW_JS, svgs)
    for i, r in enumerate(results):
        assert r["n"] > 0, f"cell {i}: no text in the picture"
        assert r["out"] == [], f"{tag} cell {i}: text outside the picture: {r['out']}"
    small = root(page, 0)
    tables = small.locator("table")
    assert tables.count() == 2, "the top paths and the top nodes"
    nodes_text = tables.nth(1).text_content()
    assert HOSTILE_LABEL in nodes_text and "capital cities" in nodes_text, nodes_text[:500]
    assert "Norway" in tables.nth(0).text_content()
    # text columns read from the left (JupyterLab's own table style right-aligns cells)
    aligns = tables.nth(1).locator("tbody tr").first.evaluate(
        "tr => [...tr.children].map(td => getComputedStyle(td).textAlign)")
    assert aligns == ["left", "left", "right", "right", "left", "right", "right", "left"], aligns
    assert "hand-made <b>graph</b>" in small.text_content(), "the title as text"
    assert "replacement score 0.7, completeness score 0.85" in small.text_content()
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator(".jp-OutputArea-output b").count() == 0
    crowded = root(page, 1).text_content()
    assert "300 of 3000 edges drawn" in crowded, crowded[:300]
    assert ">+" in svgs[1], "crowded cells show +N"
    single = root(page, 2).text_content()
    assert "no edges to draw" in single and "a single token" in single, single


def hover_node(page, r, d: dict, i: int, want: str) -> None:
    """Moves the mouse onto node i's glyph until the diagram's tooltip shows want."""
    import time

    img = r.locator("img").first
    tip = r.locator(":scope > div[style*='pointer-events']")
    row = 0 if d["nodes"]["kind"][i] == 2 else d["L"] + 1 if d["nodes"]["kind"][i] == 3 else d["nodes"]["layer"][i] + 1
    for _ in range(10):
        img.scroll_into_view_if_needed()
        time.sleep(0.1)
        box = img.bounding_box()
        page.mouse.move(1, 1)
        x = box["x"] + d["nodes"]["x"][i] * box["width"] / d["W"]
        y = box["y"] + d["rowy"][row] * box["height"] / d["H"]
        page.mouse.move(x, y, steps=2)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if tip.count() and tip.first.is_visible() and want in (tip.first.text_content() or ""):
                return
            time.sleep(0.05)
    raise AssertionError(f"no tooltip with {want!r} over node {i}; last: "
                         f"{tip.first.text_content() if tip.count() else None!r}")


def test_circuit_diagram_trusted_and_untrusted(isolated_env, tmp_path):
    write_notebook(tmp_path)
    with fu.lab_server(tmp_path, "circuit-static") as lab, fu.chromium() as browser:
        page, watch = fu.new_page(browser)
        try:
            fu.open_notebook(page, lab, NB)
            fu.run_all(page)
            fu.wait_all_ran(page, len(CELLS))
            check_diagrams(page, "trusted")
            # the data embedded for circuit.js: column arrays describing the whole graph
            d = json.loads(root(page, 0).locator('script[type="application/json"][data-lp-circuit]').text_content())
            assert len(d["nodes"]["kind"]) == 7 + 6 and len(d["tokens"]) == 7
            assert d["tokens"][5] == HOSTILE_TOKEN and HOSTILE_LABEL in d["nodes"]["label"]
            assert len(d["edges"]["src"]) == 9 and d["drawn_edges"] == 9
            assert all(isinstance(x, (int, float)) for x in d["nodes"]["x"]), "every node drawn"
            # where scripts run, display/js/circuit.js adds the hover: the "Norway" feature
            for i in range(len(CELLS)):
                assert root(page, i).get_attribute("data-lp-on") == "1", f"cell {i}: its script did not run"
            hover_node(page, root(page, 0), d, d["nodes"]["label"].index("Norway"),
                       "L0 feature 12 @4 \u2423Norway\nNorway\nactivation 3.5\ninfluence 0.6")
            hover_node(page, root(page, 0), d, d["nodes"]["label"].index(HOSTILE_LABEL), HOSTILE_LABEL)
            fu.shot(root(page, 0), "circuit-static-trusted-hover")
            fu.save(page)
            fu.wait_saved_with_outputs(tmp_path / NB, len(CELLS))
            fu.shot(page, "circuit-static-trusted-page")
            assert watch.dialogs == []
            assert watch.errors == [], "console errors:\n" + "\n".join(watch.errors)
        except Exception:
            fu.shot(page, "circuit-static-trusted-failure")
            raise
        finally:
            watch.save_log("circuit-static-trusted")

    with fu.lab_server(tmp_path, "circuit-static-untrusted", "--NotebookNotary.db_file=:memory:") as lab, \
            fu.chromium() as browser:
        model = lab.api(f"contents/{NB}")
        assert not any(c["metadata"].get("trusted") for c in model["content"]["cells"]), "untrusted"
        page, watch = fu.new_page(browser)
        try:
            fu.open_notebook(page, lab, NB)
            check_diagrams(page, "untrusted")
            assert page.locator(".jp-OutputArea-output script").count() == 0, "sanitized"
            assert page.locator(".jp-OutputArea-output [data-lp-on]").count() == 0, "no script ran"
            fu.shot(page, "circuit-static-untrusted-page")
            assert watch.dialogs == []
            assert watch.errors == [], "console errors:\n" + "\n".join(watch.errors)
        except Exception:
            fu.shot(page, "circuit-static-untrusted-failure")
            raise
        finally:
            watch.save_log("circuit-static-untrusted")
