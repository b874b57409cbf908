"""The interactive circuit diagram (display/js/circuit.js, issue 18) in JupyterLab, headless
Chromium. Trusted: hovering a node shows its label (hostile text as text); a click opens the
side panel with the node's inputs and outputs as the embedded edges say (sorted, by sign);
ctrl-click pins, "group pinned" makes a supernode (a hostile name stays text), "copy as Lua"
writes g:pin / g:supernode; the influence slider hides exactly the features and errors
below it (checked through the page's own hit test); Escape clears. On a graph of 5,000
nodes and 100,000 edges the time of a hover and of a click (the handler, and until the next
frame) is measured and printed (no assertion on it: the machine is shared), and written to
out/test-artifacts/circuit-interactive-timings.json. Untrusted: the static picture only, no
script and no controls. Both: no console errors, no dialogs; screenshots in
out/test-artifacts/circuit-interactive-*.png.
"""
from __future__ import annotations

import json
import statistics
import time

import nbformat
import pytest

import figures_util as fu
import kernelutil as ku

pytestmark = [pytest.mark.browser, pytest.mark.lua]

NB = "circuit_interactive.ipynb"
HOSTILE_LABEL = "</script><script>alert('label')</script>"
HOSTILE_GROUP = '<img src=x onerror=alert("group")>'
# the 3 MB output of the large graph must not be throttled by the server
NO_RATE_LIMIT = "--ZMQChannelsWebsocketConnection.iopub_data_rate_limit=1e12"

CELLS = [
    r"""
local toks = {'<bos>', ' The', ' capital', ' of', ' Norway', ' Oslo', ' is'}
local G = {tokens = toks, n_layers = 4, nodes = {}, edges = {}}
local function add(n) G.nodes[#G.nodes + 1] = n; return #G.nodes end
local e = {}
for p = 0, #toks - 1 do e[p] = add{kind = 'embedding', pos = p, influence = 0.01} end
local f1 = add{kind = 'feature', layer = 0, pos = 4, feature = 12, activation = 3.5, influence = 0.6, label = 'Norway'}
local f2 = add{kind = 'feature', layer = 1, pos = 5, feature = 7, activation = 1.2, influence = 0.4, label = %(label)s}
local f3 = add{kind = 'feature', layer = 2, pos = 6, feature = 99, activation = 2.0, influence = 0.8, label = 'capital cities'}
local er = add{kind = 'error', layer = 1, pos = 6, influence = 0.05}
local l1 = add{kind = 'logit', pos = 6, feature = 1, prob = 0.62, influence = 1, label = ' Oslo'}
local l2 = add{kind = 'logit', pos = 6, feature = 2, prob = 0.21, influence = 0.5, label = ' Bergen'}
G.edges = {{e[4], f1, 2}, {f1, f3, 1.5}, {e[5], f2, 1}, {f2, f3, -0.5}, {er, f3, 0.2},
           {f3, l1, 3}, {f3, l2, -1}, {e[6], l1, 0.5}, {e[2], f3, 0.3}}
loupe.display.circuit(G)
""",
    r"""
local seed = 7
local function rnd() seed = (seed * 1103515245 + 12345) %% 2147483648; return seed / 2147483648 end
local T, L = 20, 18
local toks = {}
for p = 1, T do toks[p] = ' t' .. p end
local G = {tokens = toks, n_layers = L, nodes = {}, edges = {}, max_per_cell = 64, max_data_edges = 100000}
local function add(n) G.nodes[#G.nodes + 1] = n; return #G.nodes end
local row = {}
for p = 0, T - 1 do row[add{kind = 'embedding', pos = p, influence = 0.01}] = 0 end
for i = 1, 4970 do
  local l = math.floor(rnd() * L)
  row[add{kind = 'feature', layer = l, pos = math.floor(rnd() * T), feature = i, activation = rnd() * 4,
          influence = rnd(), label = 'feature ' .. i}] = l + 1
end
for j = 1, 10 do row[add{kind = 'logit', pos = T - 1, feature = j, prob = 0.4 / j, influence = 1 / j, label = ' out' .. j}] = L + 1 end
local n = #G.nodes
while #G.edges < 100000 do
  local a, b = 1 + math.floor(rnd() * n), 1 + math.floor(rnd() * n)
  if row[a] < row[b] then G.edges[#G.edges + 1] = {a, b, rnd() * 2 - 0.8} end
end
loupe.display.circuit(G)
""",
]
CELLS = [c.strip() % {"label": json.dumps(HOSTILE_LABEL)} for c in CELLS]


def write_notebook(folder) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": ku.KERNEL_MESSAGE, "display_name": "loupe", "language": "lua"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(nb, folder / NB)


def root(page, i: int):
    return fu.cell_outputs(page, i).locator(".lp-circuit").first


def row_of(d: dict, i: int) -> int:
    k = d["nodes"]["kind"][i]
    return 0 if k == 2 else d["L"] + 1 if k == 3 else d["nodes"]["layer"][i] + 1


def point(r, d: dict, i: int) -> tuple[float, float]:
    img = r.locator("img").first
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    return (box["x"] + d["nodes"]["x"][i] * box["width"] / d["W"],
            box["y"] + d["rowy"][row_of(d, i)] * box["height"] / d["H"])


def expected_io(d: dict, i: int) -> dict:
    """Node i's inputs and outputs from the embedded edge arrays, as the panel lists them."""
    e = d["edges"]
    out = {}
    for side, me, other in (("in", "dst", "src"), ("out", "src", "dst")):
        ks = [k for k in range(len(e["src"])) if e[me][k] == i and e["w"][k] is not None]
        pos = sorted((k for k in ks if e["w"][k] >= 0), key=lambda k: (-e["w"][k], e[other][k]))
        neg = sorted((k for k in ks if e["w"][k] < 0), key=lambda k: (e["w"][k], e[other][k]))
        out[side + "-pos"] = [str(e[other][k]) for k in pos][:12]
        out[side + "-neg"] = [str(e[other][k]) for k in neg][:12]
    return out


def panel_lists(r) -> dict:
    return r.evaluate("""el => Object.fromEntries(["in-pos", "in-neg", "out-pos", "out-neg"].map(a => {
        const l = el.querySelector('div[data-lp-panel] div[data-lp-list="' + a + '"]');
        return [a, l ? [...l.children].map(c => c.getAttribute('data-node')) : null]; }))""")


# For each node, what the page's hit test finds at its centre (a synthetic mousemove on
# the picture): the node shown in the tooltip, or null.
HITS_JS = """(el, pts) => { const img = el.querySelector('img'), tip = el.lastElementChild;
  const b = img.getBoundingClientRect(), d = JSON.parse(el.querySelector('script[data-lp-circuit]').textContent);
  return pts.map(i => { const row = d.nodes.kind[i] === 2 ? 0 : d.nodes.kind[i] === 3 ? d.L + 1 : d.nodes.layer[i] + 1;
    img.dispatchEvent(new MouseEvent('mousemove', {clientX: b.left + d.nodes.x[i] * b.width / d.W,
      clientY: b.top + d.rowy[row] * b.height / d.H, bubbles: true}));
    return tip.style.display === 'block' ? Number(tip.getAttribute('data-node')) : null; }); }"""

# Hover and click times on drawn nodes: the handler alone, and until the next frame.
TIMING_JS = """async (el, n) => { const img = el.querySelector('img'), b = img.getBoundingClientRect();
  const d = JSON.parse(el.querySelector('script[data-lp-circuit]').textContent);
  const drawn = []; for (let i = 0; i < d.n_nodes && drawn.length < n; i += 97) if (d.nodes.x[i] !== null) drawn.push(i);
  const frame = () => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
  const out = {hover: [], click: [], hover_frame: [], click_frame: [], nodes: d.n_nodes, edges: d.edges.src.length,
               drawn_nodes: d.nodes.x.filter(x => x !== null).length};
  for (const i of drawn) {
    const row = d.nodes.kind[i] === 2 ? 0 : d.nodes.kind[i] === 3 ? d.L + 1 : d.nodes.layer[i] + 1;
    const o = {clientX: b.left + d.nodes.x[i] * b.width / d.W, clientY: b.top + d.rowy[row] * b.height / d.H, bubbles: true};
    for (const kind of ['hover', 'click']) {
      const t0 = performance.now();
      img.dispatchEvent(new MouseEvent(kind === 'hover' ? 'mousemove' : 'click', o));
      const t1 = performance.now();
      await frame();
      out[kind].push(t1 - t0);
      out[kind + '_frame'].push(performance.now() - t0);
    }
  }
  out.selected = el.getAttribute('data-lp-selected');
  return out; }"""


def check_small(page, r, d: dict) -> None:
    assert r.get_attribute("data-lp-on") == "1", "the script did not run"
    labels = d["nodes"]["label"]
    f1, f2, f3 = labels.index("Norway"), labels.index(HOSTILE_LABEL), labels.index("capital cities")
    # hover: the label, hostile text as text
    tip = r.locator(":scope > div[style*='pointer-events']")
    for i, want in ((f1, "Norway"), (f2, HOSTILE_LABEL)):
        for _ in range(10):
            page.mouse.move(1, 1)
            page.mouse.move(*point(r, d, i), steps=2)
            time.sleep(0.2)
            if tip.first.is_visible() and want in (tip.first.text_content() or ""):
                break
        else:
            raise AssertionError(f"no tooltip with {want!r}")
    # click: the panel lists the node's inputs and outputs as the edges say
    page.mouse.click(*point(r, d, f3))
    page.wait_for_function("el => el.getAttribute('data-lp-selected') !== '-1'", arg=r.element_handle())
    assert r.get_attribute("data-lp-selected") == str(f3)
    want = expected_io(d, f3)
    assert want["in-pos"] and want["in-neg"] and want["out-pos"] and want["out-neg"], want
    assert panel_lists(r) == want
    panel = r.locator("div[data-lp-panel]")
    assert HOSTILE_LABEL in panel.text_content(), "the input's hostile label, as text"
    assert r.locator("canvas[data-lp-canvas]").evaluate("c => getComputedStyle(c).display") == "block"
    fu.shot(r, "circuit-interactive-click")
    # pin two nodes, group them under a hostile name, copy as Lua
    page.keyboard.down("Control")
    page.mouse.click(*point(r, d, f1))
    page.mouse.click(*point(r, d, f2))
    page.keyboard.up("Control")
    pinned = r.locator('div[data-lp-pinned] div[data-lp-list="pinned"] > div')
    assert sorted(int(pinned.nth(k).get_attribute("data-node")) for k in range(pinned.count())) == sorted([f1, f2])
    r.locator("input[data-lp-group-name]").fill(HOSTILE_GROUP)
    r.locator("button[data-lp-group]").click()
    grp = r.locator('div[data-lp-list="group-0"] > div')
    assert sorted(int(grp.nth(k).get_attribute("data-node")) for k in range(grp.count())) == sorted([f1, f2])
    assert HOSTILE_GROUP in r.locator("div[data-lp-pinned]").text_content()
    assert page.locator('img[src="x"]').count() == 0
    r.locator("button[data-lp-copy]").click()
    lua = r.locator("textarea[data-lp-lua]").input_value()
    ids = ", ".join(str(i + 1) for i in sorted([f1, f2]))
    assert lua == f'g:pin{{{ids}}}\ng:supernode("<img src=x onerror=alert(\\"group\\")>", {{{ids}}})', lua
    fu.shot(r, "circuit-interactive-pinned")
    # the slider: the features and errors below it are hidden, the rest are not
    thr = 0.5
    r.locator("input[data-lp-slider]").evaluate(
        "(s, v) => { s.value = String(v); s.dispatchEvent(new Event('input', {bubbles: true})); }", thr)
    drawn = [i for i in range(d["n_nodes"]) if d["nodes"]["x"][i] is not None]
    hits = r.evaluate(HITS_JS, drawn)
    infl = d["nodes"]["infl"]
    for i, h in zip(drawn, hits):
        hidden = d["nodes"]["kind"][i] in (0, 1) and (infl[i] or 0) < thr
        assert (h is None) == hidden, f"node {i} (influence {infl[i]}): hit {h}"
    assert any(h is None for h in hits) and any(h is not None for h in hits)
    fu.shot(r, "circuit-interactive-pruned")
    # Escape: the selection, then the pins
    r.focus()
    page.keyboard.press("Escape")
    assert r.get_attribute("data-lp-selected") == "-1"
    assert r.locator("div[data-lp-panel] > *").count() == 0
    page.keyboard.press("Escape")
    assert r.locator('div[data-lp-list="pinned"] > div').count() == 0


def test_circuit_interactive(isolated_env, tmp_path):
    write_notebook(tmp_path)
    with fu.lab_server(tmp_path, "circuit-interactive", NO_RATE_LIMIT) as lab, fu.chromium() as browser:
        page, watch = fu.new_page(browser)
        try:
            fu.open_notebook(page, lab, NB)
            fu.run_all(page)
            fu.wait_all_ran(page, len(CELLS))
            for i in range(len(CELLS)):
                root(page, i).wait_for(timeout=fu.LONG)
                fu.wait_images(page, root(page, i), 1)
            r = root(page, 0)
            check_small(page, r, fu.figure_data(r))
            big = root(page, 1)
            size = big.evaluate("el => el.outerHTML.length")
            t = big.evaluate(TIMING_JS, 40)
            t["output_chars"] = size
            summary = {k: {"median_ms": round(statistics.median(v), 2), "max_ms": round(max(v), 2)}
                       for k, v in t.items() if isinstance(v, list)}
            line = {"bench": "circuit-browser", "nodes": t["nodes"], "edges": t["edges"],
                    "drawn_nodes": t["drawn_nodes"], "output_chars": size, **summary}
            print("circuit diagram timings:", json.dumps(line))
            (fu.artifacts() / "circuit-interactive-timings.json").write_text(json.dumps(line) + "\n")
            assert t["edges"] == 100000 and t["nodes"] == 5000 and t["selected"] != "-1"
            fu.shot(big, "circuit-interactive-large")
            fu.save(page)
            fu.wait_saved_with_outputs(tmp_path / NB, len(CELLS))
            assert watch.dialogs == []
            assert watch.errors == [], "console errors:\n" + "\n".join(watch.errors)
        except Exception:
            fu.shot(page, "circuit-interactive-failure")
            raise
        finally:
            watch.save_log("circuit-interactive")

    with fu.lab_server(tmp_path, "circuit-interactive-untrusted", NO_RATE_LIMIT,
                       "--NotebookNotary.db_file=:memory:") as lab, fu.chromium() as browser:
        page, watch = fu.new_page(browser)
        try:
            fu.open_notebook(page, lab, NB)
            for i in range(len(CELLS)):
                fu.wait_images(page, root(page, i), 1)
            assert page.locator(".jp-OutputArea-output script").count() == 0, "sanitized"
            assert page.locator(".jp-OutputArea-output [data-lp-on]").count() == 0, "no script ran"
            assert page.locator(".jp-OutputArea-output [data-lp-controls], .jp-OutputArea-output canvas").count() == 0
            fu.shot(page, "circuit-interactive-untrusted")
            assert watch.dialogs == []
            assert watch.errors == [], "console errors:\n" + "\n".join(watch.errors)
        except Exception:
            fu.shot(page, "circuit-interactive-failure-untrusted")
            raise
        finally:
            watch.save_log("circuit-interactive-untrusted")
