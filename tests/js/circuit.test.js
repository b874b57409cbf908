/* display/js/circuit.js: the node under the mouse, the tooltip's text, the set-up that
 * leaves the static diagram alone when its hover cannot be built, and the data as the C
 * side writes it (a diagram rendered by build/kernel/loupe run, when it is built). */
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { spawnSync } = require("node:child_process");
const { FakeDocument, el, captureWarnings, snapshot } = require("./fake_dom.js");
const { ROOT, variants } = require("./load.js");

const ID = "lp-circuit-0123456789abcdef";

/* A graph of 2 layers over 3 tokens as circuit.c describes it: embeddings (row 0, y 170),
 * a feature and an error in layer 0 (row 1, y 130), a logit (row 3, y 50); node 4 not
 * drawn. */
function graph() {
  return {
    v: 1, W: 200, H: 220, L: 2, rowy: [170, 130, 90, 50], T: 3, tpos: [0, 1, 2],
    tokens: ["The", " capital", "\n"], rs: 0.5, cs: null,
    nodes: {
      kind: [2, 0, 1, 3, 0],
      layer: [0, 0, 0, 0, 1],
      pos: [0, 1, 2, 2, 1],
      feature: [464, 1234, -1, 6184, 9],
      act: [1, 2.345678, 0.5, 0, 1],
      infl: [0.1, 0.75, null, 1, 0.2],
      prob: [0, 0, 0, 0.6123, 0],
      label: [null, "capital <cities>", null, " Paris", null],
      x: [40, 100, 160, 160, null],
    },
    edges: { src: [0, 1], dst: [1, 3], w: [1.5, -2], share: [1, 1] },
    n_nodes: 5, n_edges: 2, drawn_edges: 2,
  };
}

/* A diagram as circuit.c lays it out: root > div > img, data script, the script itself. */
function figure(doc, json) {
  const img = el(doc, "img", { src: "data:image/svg+xml;base64,AAAA" });
  const data = el(doc, "script", { type: "application/json", "data-lp-circuit": "1" }, json);
  const script = el(doc, "script", {});
  const root = el(doc, "div", { class: "lp-fig lp-circuit", "data-lp-id": ID }, el(doc, "div", {}, img), data, script);
  doc.body.appendChild(root);
  return { root, img, data, script };
}

for (const { label, mod: cj } of variants("circuit")) {
  test(`${label}: rows and glyph centres from the data`, () => {
    const d = graph();
    assert.deepEqual([0, 1, 2, 3].map((i) => cj.rowOf(d, i)), [0, 1, 1, 3]);
    assert.equal(cj.rowOf(d, 4), 2, "layer 1 is row 2");
    assert.deepEqual(cj.nodeXY(d, 1), { x: 100, y: 130 });
    assert.deepEqual(cj.nodeXY(d, 3), { x: 160, y: 50 });
    assert.equal(cj.nodeXY(d, 4), null, "not drawn");
  });

  test(`${label}: the node under the mouse: the nearest drawn glyph within 7 units`, () => {
    const d = graph();
    assert.equal(cj.hitNode(d, 100, 130), 1);
    assert.equal(cj.hitNode(d, 104, 134), 1);
    assert.equal(cj.hitNode(d, 108, 130), -1, "8 units away");
    assert.equal(cj.hitNode(d, 161, 49), 3);
    assert.equal(cj.hitNode(d, 160, 131), 2);
    assert.equal(cj.hitNode(d, 100, 90), -1, "an undrawn node is not hovered");
    d.nodes.x[2] = 103; // two glyphs close together: the nearer one wins
    assert.equal(cj.hitNode(d, 102, 130), 2);
    assert.equal(cj.hitNode(d, 101, 130), 1);
  });

  test(`${label}: tooltips: what and where the node is, its label and numbers`, () => {
    const d = graph();
    assert.equal(cj.nodeText(d, 1), "L0 feature 1234 @1 \u2423capital\ncapital <cities>\nactivation 2.346\ninfluence 0.75");
    assert.equal(cj.nodeText(d, 2), "L0 error @2 \\n\ninfluence NaN/Inf");
    assert.equal(cj.nodeText(d, 0), "embedding @0 The\ninfluence 0.1");
    assert.equal(cj.nodeText(d, 3), "logit \u2423Paris @2 \\n\np = 0.6123\ninfluence 1");
    assert.equal(cj.tokenAt(d, 7), "", "a narrowed position has no token in the data");
    assert.equal(cj.showToken("a\\nb"), "a\\\\nb");
  });

  test(`${label}: data checks: every node array as long as n_nodes`, () => {
    assert.equal(cj.checkData(graph()), 5);
    const bad = [
      (d) => { d.nodes.x.pop(); },
      (d) => { delete d.nodes.label; },
      (d) => { d.rowy = [1, 2]; },
      (d) => { d.tokens = ["a"]; },
      (d) => { d.W = 0; },
      (d) => { delete d.nodes; },
    ];
    for (const f of bad) {
      const d = graph();
      f(d);
      assert.throws(() => cj.checkData(d), Error, f.toString());
    }
  });

  test(`${label}: set-up: hovering a glyph shows its tooltip, elsewhere hides it`, () => {
    const doc = new FakeDocument();
    const { root, img, script } = figure(doc, JSON.stringify(graph()));
    img.rect = { left: 100, top: 50, width: 400, height: 440 }; // shown at twice the size
    root.rect = { left: 90, top: 10, width: 500, height: 600 };
    assert.equal(cj.start(doc, script, ID), root);
    assert.equal(root.getAttribute("data-lp-on"), "1");
    const tip = root.children[root.children.length - 1];
    assert.equal(tip.tagName, "div");
    assert.match(tip.style.cssText, /pointer-events:none/);
    assert.equal(img.dispatch("mousemove", { clientX: 100 + 100 * 2, clientY: 50 + 130 * 2 }), 1);
    assert.equal(tip.style.display, "block");
    assert.equal(tip.getAttribute("data-node"), "1");
    assert.match(tip.textContent, /^L0 feature 1234 @1/);
    assert.equal(tip.style.left, 100 + 200 - 90 + 14 + "px");
    assert.equal(tip.style.top, 50 + 260 - 10 + 14 + "px");
    img.dispatch("mousemove", { clientX: 100 + 20 * 2, clientY: 50 + 20 * 2 });
    assert.equal(tip.style.display, "none");
    img.dispatch("mousemove", { clientX: 100 + 160 * 2, clientY: 50 + 50 * 2 });
    assert.match(tip.textContent, /^logit \u2423Paris/);
    img.dispatch("mouseleave", {});
    assert.equal(tip.style.display, "none");
    assert.equal(cj.start(doc, script, ID), null, "once per output");
  });

  test(`${label}: a diagram whose hover cannot be built stays as it is`, () => {
    const good = JSON.stringify(graph());
    const short = graph();
    short.nodes.kind.pop();
    const cases = {
      "data that is not JSON": good.slice(0, -2),
      "a node array too short": JSON.stringify(short),
      "no nodes": JSON.stringify({ W: 1, H: 1 }),
    };
    for (const [what, json] of Object.entries(cases)) {
      const doc = new FakeDocument();
      const { root, img, script } = figure(doc, json);
      const before = snapshot(root);
      const warned = captureWarnings(() => cj.start(doc, script, ID));
      assert.equal(root.getAttribute("data-lp-on"), "failed", what);
      root.attrs.delete("data-lp-on");
      assert.deepEqual(snapshot(root), before, `${what}: the diagram changed`);
      assert.equal(img.listenerCount(), 0, what);
      assert.equal(warned.length, 1, what);
      assert.match(String(warned[0][0]), new RegExp(`circuit diagram ${ID} keeps its static picture`), what);
    }
  });
}

/* The data as the C side writes it: a diagram rendered by the kernel binary; every drawn
 * node is found at its own centre and its tooltip names it. */
const LOUPE = process.env.LOUPE_BIN || path.join(ROOT, "build", "kernel", "loupe");
const SKIP = fs.existsSync(LOUPE) || process.env.LOUPE_JS_BUILT ? false : `${LOUPE} not built`;
const LUA = `
local f = loupe.display.circuit{tokens = {"The", " capital", " of"}, n_layers = 2,
  nodes = {{kind = "embedding", pos = 0}, {kind = "embedding", pos = 1},
           {kind = "feature", layer = 0, pos = 1, feature = 5, activation = 2, influence = 0.3, label = "capitals"},
           {kind = "feature", layer = 0, pos = 1, feature = 7, activation = 1, influence = 0.9, label = "countries"},
           {kind = "error", layer = 1, pos = 2, influence = 0.1},
           {kind = "logit", pos = 2, feature = 6184, prob = 0.5, influence = 1, label = " Paris"}},
  edges = {{1, 3, 1}, {2, 4, 1}, {3, 6, 2}, {4, 6, -1}, {5, 6, 0.5}}}
io.write(getmetatable(f).__display(f)["text/html"])
`;

test("circuit.js reads the data circuit.c writes", { skip: SKIP }, () => {
  const cj = require(path.join(ROOT, "display", "js", "circuit.js"));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "loupe-circuit-"));
  let html;
  try {
    fs.writeFileSync(path.join(dir, "c.lua"), LUA);
    const r = spawnSync(LOUPE, ["run", path.join(dir, "c.lua")], { encoding: "utf8", maxBuffer: 16 << 20 });
    assert.equal(r.status, 0, r.stderr);
    html = r.stdout;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const json = /<script type="application\/json" data-lp-circuit="1">([\s\S]*?)<\/script>/.exec(html)[1];
  const d = JSON.parse(json);
  assert.equal(cj.checkData(d), 6);
  const names = ["embedding @0 The", "embedding @1 \u2423capital", "L0 feature 5 @1", "L0 feature 7 @1",
                 "L1 error @2", "logit \u2423Paris @2"];
  for (let i = 0; i < 6; i++) {
    const p = cj.nodeXY(d, i);
    assert.ok(p, `node ${i} is drawn`);
    assert.equal(cj.hitNode(d, p.x, p.y), i, `node ${i} at its own centre`);
    assert.ok(cj.nodeText(d, i).startsWith(names[i]), cj.nodeText(d, i));
  }
  assert.ok(cj.nodeText(d, 3).includes("\ncountries\nactivation 1\ninfluence 0.9"), cj.nodeText(d, 3));
  assert.ok(html.includes("</script><script>(function(){\"use strict\";"), "the embedded script follows the data");
  assert.ok(!html.includes("@ID@"), "the id is filled in");
});
