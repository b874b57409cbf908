/* display/js/circuit.js, the interactive view (issue 18): a node's inputs and outputs,
 * edge styles, pruning by the slider, link toggles, the canvas drawing (a recording 2D
 * context), pins and supernodes and their Lua round trip, and the set-up's click, pin,
 * group, slider and Escape on the fake DOM. */
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { FakeDocument, el } = require("./fake_dom.js");
const { variants } = require("./load.js");

const ID = "lp-circuit-00000000000000aa";

/* Two tokens, two layers: embeddings 0, 1 (row 0, y 170); features 2 (L0 @0), 3 (L0 @1),
 * error 4 (L1 @1) in rows 1-2; logit 5 (row 3). Edges into the logit of both signs. */
function graph() {
  return {
    v: 1, W: 200, H: 220, L: 2, rowy: [170, 130, 90, 50], T: 2, tpos: [0, 1],
    tokens: ["The", " cap"], rs: null, cs: null,
    nodes: {
      kind: [2, 2, 0, 0, 1, 3],
      layer: [0, 0, 0, 0, 1, 0],
      pos: [0, 1, 0, 1, 1, 1],
      feature: [10, 11, 7, 8, -1, 99],
      act: [0, 0, 1, 2, 0, 0],
      infl: [0.1, 0.1, 0.8, 0.3, null, 1],
      prob: [0, 0, 0, 0, 0, 0.5],
      label: [null, null, "<b>bold</b>", "cities", null, " Paris"],
      x: [40, 120, 40, 120, 120, 120],
    },
    edges: {
      src: [0, 1, 2, 3, 4, 2, 1],
      dst: [2, 3, 5, 5, 5, 3, 5],
      w: [2, 1, 3, -1.5, 0.5, -0.25, null],
      share: [1, 0.8, 0.6, 0.3, 0.1, 0.2, null],
    },
    n_nodes: 6, n_edges: 7, drawn_edges: 7,
  };
}

/* A 2D context that records what is drawn. */
function recorder() {
  const ops = [];
  const g = { ops, strokes: [], fills: [] };
  let path = [];
  for (const f of ["setTransform", "fillRect", "arc", "rect", "closePath", "fillText"])
    g[f] = (...a) => ops.push([f, ...a]);
  g.beginPath = () => { path = []; };
  g.moveTo = (x, y) => path.push(["M", x, y]);
  g.lineTo = (x, y) => path.push(["L", x, y]);
  g.stroke = () => g.strokes.push({ color: g.strokeStyle, width: g.lineWidth, alpha: g.globalAlpha, path: path.slice() });
  g.fill = () => g.fills.push({ color: g.fillStyle, path: path.slice() });
  return g;
}

for (const { label, mod: cj } of variants("circuit")) {
  test(`${label}: a node's inputs and outputs, by sign, strongest first`, () => {
    const d = graph();
    const adj = cj.adjacency(d);
    assert.deepEqual(adj.ins[5], [2, 3, 4, 6]);
    const io = cj.edgesOf(d, adj, 5);
    assert.deepEqual(io.inputs.pos.map((e) => [e.node, e.w]), [[2, 3], [4, 0.5]]);
    assert.deepEqual(io.inputs.neg.map((e) => [e.node, e.w]), [[3, -1.5]]);
    assert.equal(io.outputs.pos.length + io.outputs.neg.length, 0);
    const o2 = cj.edgesOf(d, adj, 2);
    assert.deepEqual(o2.outputs.pos.map((e) => e.node), [5]);
    assert.deepEqual(o2.outputs.neg.map((e) => e.node), [3]);
    assert.deepEqual(o2.inputs.pos.map((e) => e.node), [0]);
    const rows = cj.panelRows(d, io.inputs.pos, 1);
    assert.deepEqual(rows, [{ node: 2, text: "3  L0 #7 @0  <b>bold</b>" }]);
    d.edges.src[0] = 17; // out of range: left out
    assert.deepEqual(cj.adjacency(d).ins[2], []);
  });

  test(`${label}: edge colours by sign, widths by share`, () => {
    assert.deepEqual(cj.edgeStyle(2, 1), { color: "#1b9e77", width: 4 });
    assert.deepEqual(cj.edgeStyle(-2, 0.5), { color: "#8e44ad", width: 2.3 });
    assert.deepEqual(cj.edgeStyle(1, null), { color: "#1b9e77", width: 0.6 });
    assert.deepEqual(cj.edgeStyle(1, 7), { color: "#1b9e77", width: 4 });
  });

  test(`${label}: the slider hides features and errors below its influence`, () => {
    const d = graph();
    assert.equal(cj.sliderMax(d), 0.8);
    const shown = (f) => [...cj.visibleNodes(d, f)].flatMap((v, i) => (v ? [i] : []));
    assert.deepEqual(shown({ minInfl: 0 }), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(shown({ minInfl: 0.3 }), [0, 1, 2, 3, 5], "unknown influence counts as 0");
    assert.deepEqual(shown({ minInfl: 0.31 }), [0, 1, 2, 5]);
    assert.deepEqual(shown({ minInfl: 0.9 }), [0, 1, 5], "embeddings and logits stay");
    assert.deepEqual(shown({ minInfl: 0, errors: false }), [0, 1, 2, 3, 5]);
    assert.deepEqual(shown({ minInfl: 0, hideDense: true }), [0, 1, 2, 3, 4, 5], "no density in the data");
    d.nodes.dens = [0, 0, 0.5, 0.001, 0, 0];
    assert.deepEqual(shown({ minInfl: 0, hideDense: true }), [0, 1, 3, 4, 5]);
    const vis = cj.visibleNodes(d, { minInfl: 0.31 });
    const edges = (f) => [0, 1, 2, 3, 4, 5, 6].filter((k) => cj.edgeVisible(d, k, vis, f));
    assert.deepEqual(edges({}), [0, 2], "edges to hidden nodes and non-finite ones go");
    assert.deepEqual(edges({ pos: false }), []);
    const all = cj.visibleNodes(d, { minInfl: 0 });
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6].filter((k) => cj.edgeVisible(d, k, all, { pos: false })), [3, 5]);
    assert.equal(cj.hitNode(d, 120, 130, vis), -1, "a hidden node is not hovered");
    assert.equal(cj.hitNode(d, 120, 130, all), 3);
  });

  test(`${label}: the canvas: glyphs at the data's places, edges batched by colour and width`, () => {
    const d = graph();
    const n = d.n_nodes, X = new Float64Array(n), Y = new Float64Array(n);
    for (let i = 0; i < n; i++) ({ x: X[i], y: Y[i] } = cj.nodeXY(d, i));
    const view = { xy: { X, Y, tokX: new Float64Array([40, 120]) }, vis: cj.visibleNodes(d, { minInfl: 0 }), f: {},
      sel: -1, pinned: new Uint8Array(n), bg: "#fff", ink: "#000" };
    let g = recorder();
    cj.draw(g, d, view, 400, 440);
    assert.deepEqual(g.ops[0], ["setTransform", 2, 0, 0, 2, 0, 0]);
    const glyphs = g.fills.length; // fillRect is not a fill()
    assert.equal(glyphs, 6);
    const arcs = g.ops.filter((o) => o[0] === "arc").map((o) => [o[1], o[2]]);
    assert.deepEqual(arcs, [[40, 130], [120, 130]], "features are circles at their centres");
    const isEdge = (s) => s.color === "#1b9e77" || s.color === "#8e44ad";
    const edgeStrokes = g.strokes.filter(isEdge);
    const segs = edgeStrokes.flatMap((s) => s.path.filter((p) => p[0] === "M").map(() => s));
    assert.equal(segs.length, 6, "every finite edge once");
    const neg = edgeStrokes.filter((s) => s.color === "#8e44ad");
    assert.equal(neg.reduce((a, s) => a + s.path.length / 2, 0), 2);
    const strongest = edgeStrokes.find((s) => s.path.some((p, j) => p[0] === "M" && p[1] === 40 && p[2] === 170));
    assert.equal(strongest.width, cj.edgeStyle(1, 7.5 / 8).width, "share 1: the widest step");
    assert.deepEqual(g.ops.filter((o) => o[0] === "fillText").map((o) => o[1]), ["The", "\u2423cap"]);
    view.xy.tokX = new Float64Array([40, 60]); // 20 units apart: 2 characters fit
    g = recorder();
    cj.draw(g, d, view, 400, 440);
    assert.deepEqual(g.ops.filter((o) => o[0] === "fillText").map((o) => o[1]), ["T\u2026", "\u2423\u2026"]);
    view.xy.tokX = new Float64Array([40, 120]);
    view.sel = 3; // node 3's edges strong, the others faint
    g = recorder();
    cj.draw(g, d, view, 200, 220);
    const strong = g.strokes.filter((s) => s.alpha > 0.9 && isEdge(s));
    assert.equal(strong.reduce((a, s) => a + s.path.length / 2, 0), 3, "3's edges: from 1, from 2, to 5");
    // with a layer of the edges (drawn once), a selection strokes only its own edges
    const layer = { name: "layer" };
    g = recorder();
    g.drawImage = (...a) => g.ops.push(["drawImage", ...a]);
    cj.draw(g, d, { ...view, layer, adj: cj.adjacency(d) }, 200, 220);
    assert.deepEqual(g.ops.find((o) => o[0] === "drawImage"), ["drawImage", layer, 0, 0, 200, 220]);
    const own = g.strokes.filter(isEdge);
    assert.ok(own.every((s) => s.alpha > 0.9), "only the selection's edges");
    assert.equal(own.reduce((a, s) => a + s.path.length / 2, 0), 3);
    const lg = recorder();
    cj.drawEdges(lg, d, { ...view, sel: -1 }, null);
    assert.equal(lg.strokes.reduce((a, s) => a + s.path.length / 2, 0), 6, "the layer: every shown edge");
  });

  test(`${label}: pins and supernodes: Lua snippet round trip, data state, hostile names`, () => {
    const st = cj.newState();
    cj.togglePin(st, 4);
    cj.togglePin(st, 2);
    cj.togglePin(st, 9);
    cj.togglePin(st, 9);
    assert.deepEqual(st.pinned, [2, 4]);
    assert.equal(cj.group(st, "", []), null);
    cj.group(st, "capital \"cities\"\\\n\x01<b>", [4, 2, 2]);
    cj.group(st, "  ", [0]);
    const lua = cj.stateToLua(st);
    assert.equal(lua, 'g:pin{3, 5}\ng:supernode("capital \\"cities\\"\\\\\\n\\001<b>", {3, 5})\ng:supernode("group 2", {1})');
    assert.deepEqual(cj.stateFromLua(lua), st);
    assert.deepEqual(cj.stateFromLua(cj.stateToLua(cj.newState(), "graph")), cj.newState());
    assert.throws(() => cj.stateFromLua("os.exit()"), /not a pin or supernode/);
    const d = graph();
    d.state = { pinned: [5, 2, 2, 99, -1, 1.5], supernodes: [["say", 3, 4], ["none", 77], [5, 1], "x"] };
    assert.deepEqual(cj.stateFromData(d), { pinned: [2, 5], groups: [{ name: "say", ids: [3, 4] }] });
    assert.equal(cj.luaString("a\u2423\u00e9"), '"a\u2423\u00e9"');
  });

  test(`${label}: set-up: click shows the inputs, ctrl-click pins, group, slider, Escape`, () => {
    const doc = new FakeDocument();
    const img = el(doc, "img", { src: "data:image/svg+xml;base64,AAAA" });
    const d = graph();
    d.state = { pinned: [3], supernodes: [] };
    const data = el(doc, "script", { type: "application/json", "data-lp-circuit": "1" }, JSON.stringify(d));
    const script = el(doc, "script", {});
    const root = el(doc, "div", { class: "lp-fig lp-circuit", "data-lp-id": ID }, el(doc, "div", {}, img), data, script);
    doc.body.appendChild(root);
    img.rect = { left: 0, top: 0, width: 200, height: 220 };
    assert.equal(cj.start(doc, script, ID), root);
    assert.equal(root.getAttribute("data-lp-on"), "1");
    const q = (s) => root.querySelector(s);
    const pinned = () => q("div[data-lp-pinned]").querySelector("div[data-lp-list]").children.map((c) => c.getAttribute("data-node"));
    assert.deepEqual(pinned(), ["3"], "the state from Lua is shown");
    img.dispatch("click", { clientX: 120, clientY: 50 });
    assert.equal(root.getAttribute("data-lp-selected"), "5");
    const list = (a) => q(`div[data-lp-list="${a}"]`).children.map((c) => [c.getAttribute("data-node"), c.textContent]);
    assert.deepEqual(list("in-pos"), [["2", "3  L0 #7 @0  <b>bold</b>"], ["4", "0.5  L1 error @1"]]);
    assert.deepEqual(list("in-neg"), [["3", "-1.5  L0 #8 @1  cities"]]);
    q('div[data-lp-list="in-neg"]').children[0].dispatch("click");
    assert.equal(root.getAttribute("data-lp-selected"), "3", "a row of the panel selects its node");
    img.dispatch("click", { clientX: 120, clientY: 50 });
    assert.equal(root.getAttribute("data-lp-selected"), "5");
    // the layout: the controls above, the picture and the side panel in a row
    const kids = root.children.map((c) => c.getAttribute("data-lp-controls") ? "bar" : c.getAttribute("data-lp-row") ? "row" : c.tagName);
    assert.deepEqual(kids, ["bar", "row", "script", "script", "div"]);
    const row = q("div[data-lp-row]");
    assert.equal(row.children[0], img.parentNode);
    assert.equal(row.children[1].getAttribute("data-lp-side"), "1");
    assert.equal(img.parentNode.children[1].tagName, "canvas");
    img.dispatch("click", { clientX: 40, clientY: 130, ctrlKey: true });
    assert.deepEqual(pinned(), ["2", "3"]);
    img.dispatch("click", { clientX: 120, clientY: 170, metaKey: true });
    assert.deepEqual(pinned(), ["2", "3", "1"], "top layer first");
    q("input[data-lp-group-name]").value = "say capital";
    q("button[data-lp-group]").dispatch("click");
    const grp = q('div[data-lp-list="group-0"]');
    assert.deepEqual(grp.children.map((c) => c.getAttribute("data-node")), ["1", "2", "3"]);
    q("button[data-lp-copy]").dispatch("click");
    assert.equal(q("textarea[data-lp-lua]").value, 'g:pin{2, 3, 4}\ng:supernode("say capital", {2, 3, 4})');
    const slider = q("input[data-lp-slider]");
    assert.equal(slider.getAttribute("max"), "0.8");
    slider.value = "0.5";
    slider.dispatch("input");
    assert.equal(root.getAttribute("data-lp-selected"), "5", "the logit stays");
    img.dispatch("mousemove", { clientX: 120, clientY: 130 });
    const tip = root.children[root.children.length - 1];
    assert.equal(tip.style.display, "none", "the pruned feature is not hovered");
    img.dispatch("click", { clientX: 40, clientY: 130 });
    assert.equal(root.getAttribute("data-lp-selected"), "2");
    root.dispatch("keydown", { key: "Escape" });
    assert.equal(root.getAttribute("data-lp-selected"), "-1");
    assert.equal(q("div[data-lp-panel]").children.length, 0);
    root.dispatch("keydown", { key: "Escape" });
    assert.deepEqual(q('div[data-lp-list="pinned"]').children, [], "a second Escape clears the pins");
    assert.ok(q('div[data-lp-list="group-0"]'), "the groups stay");
  });
}

/* The view given from Lua (g:pin, g:supernode) reaches the script through the data: a
 * graph file loaded by the kernel binary, pinned and grouped, its diagram's state read as
 * the set-up reads it; g:state() gives it back 1-based. */
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { spawnSync } = require("node:child_process");
const { ROOT } = require("./load.js");
const LOUPE = process.env.LOUPE_BIN || path.join(ROOT, "build", "kernel", "loupe");
const SKIP = fs.existsSync(LOUPE) || process.env.LOUPE_JS_BUILT ? false : `${LOUPE} not built`;
const GRAPH = {
  metadata: { slug: "s", prompt_tokens: ["<bos>", " a", " b"] },
  nodes: [
    { node_id: "1_7_2", feature: 43, layer: "1", ctx_idx: 2, feature_type: "cross layer transcoder", activation: 1.5, influence: 0.2 },
    { node_id: "0_0_1", feature: -1, layer: "0", ctx_idx: 1, feature_type: "mlp reconstruction error" },
    { node_id: "E_5_1", feature: 1, layer: "E", ctx_idx: 1, feature_type: "embedding" },
    { node_id: "3_9_2", feature: 9, layer: "3", ctx_idx: 2, feature_type: "logit", token_prob: 0.5, is_target_logit: true },
  ],
  links: [{ source: "E_5_1", target: "0_0_1", weight: 0.25 }, { source: "0_0_1", target: "1_7_2", weight: -0.5 },
    { source: "1_7_2", target: "3_9_2", weight: 2 }],
};

test("g:pin and g:supernode reach the diagram's script", { skip: SKIP }, () => {
  const cj = require(path.join(ROOT, "display", "js", "circuit.js"));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "loupe-circuit-state-"));
  let out;
  try {
    fs.writeFileSync(path.join(dir, "g.json"), JSON.stringify(GRAPH));
    fs.writeFileSync(path.join(dir, "c.lua"), `
local g = loupe.graph.load(${JSON.stringify(path.join(dir, "g.json"))})
g:pin{4, "E_5_1", 4}
g:supernode("say </script> x", {1, "0_0_1"})
local s = g:state()
io.write(#s.pinned, " ", s.pinned[1], " ", s.supernodes[1].name, "\\n")
io.write(getmetatable(g).__display(g)["text/html"])
`);
    const r = spawnSync(LOUPE, ["run", path.join(dir, "c.lua")], { encoding: "utf8", maxBuffer: 16 << 20 });
    assert.equal(r.status, 0, r.stderr);
    out = r.stdout;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.ok(out.startsWith("2 3 say </script> x\n"), out.slice(0, 80));
  const html = out.slice(out.indexOf("\n") + 1);
  const json = /<script type="application\/json" data-lp-circuit="1">([\s\S]*?)<\/script>/.exec(html)[1];
  const d = JSON.parse(json);
  assert.deepEqual(cj.stateFromData(d), { pinned: [2, 3], groups: [{ name: "say </script> x", ids: [0, 1] }] });
  assert.equal(cj.stateToLua(cj.stateFromData(d)), 'g:pin{3, 4}\ng:supernode("say </script> x", {1, 2})');
});
