/* The scripts read what the C side writes: figures rendered by the real display code
 * (build/kernel/loupe run, a Lua script) are set up in the fake DOM with the script text
 * each output carries, exactly as served (embedded, "@ID@" replaced), and hovering shows
 * the values that went in. Covers what the browser tests do not: quantised hover values
 * (more than 20000 drawn cells), downsampled blocks, a grid's panel offsets. Needs the
 * kernel binary (LOUPE_BIN, else build/kernel/loupe); without it the test is skipped,
 * unless LOUPE_JS_BUILT is set (install/setup's test run), where it must be there. */
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const vm = require("node:vm");
const { spawnSync } = require("node:child_process");
const { FakeDocument, el } = require("./fake_dom.js");
const { ROOT } = require("./load.js");

const LOUPE = process.env.LOUPE_BIN || path.join(ROOT, "build", "kernel", "loupe");
const HAVE_LOUPE = fs.existsSync(LOUPE);
const SKIP = HAVE_LOUPE || process.env.LOUPE_JS_BUILT ? false : `${LOUPE} not built`;
const SEP = "@@FIGURE@@";

const LUA = `
local function html(f) io.write(getmetatable(f).__display(f)["text/html"], "\\n${SEP}\\n") end
local big = {}
for i = 1, 200 do big[i] = {} for j = 1, 200 do big[i][j] = math.sin(i / 7) * math.cos(j / 11) end end
big[3][5] = 0 / 0
html(loupe.plot.heatmap{big, title = "quantised"})
local heads, titles = {}, {}
for h = 1, 3 do
  heads[h] = {}
  for i = 1, 10 do heads[h][i] = {} for j = 1, 12 do heads[h][i][j] = h * 1000 + i * 13 + j * 0.5 end end
  titles[h] = "head " .. h
end
html(loupe.plot.heatmap{heads, titles = titles, rows = "query", cols = "key"})
local huge = {}
for i = 1, 600 do huge[i] = {} for j = 1, 600 do huge[i][j] = i + j end end
html(loupe.plot.heatmap{huge, title = "downsampled"})
html(loupe.tokens({"The", " cat", "\\n"}, {0.25, -3, 0 / 0}, "strip"))
`;

/* The figures' HTML, rendered by the kernel binary. */
function render() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "loupe-contract-"));
  try {
    const script = path.join(dir, "figures.lua");
    fs.writeFileSync(script, LUA);
    const r = spawnSync(LOUPE, ["run", script], { encoding: "utf8", maxBuffer: 64 << 20 });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split("\n" + SEP + "\n").slice(0, -1);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/* Sets up one figure's HTML in the fake DOM and runs its script as a page would. */
function mount(html) {
  const id = /data-lp-id="([^"]+)"/.exec(html)[1];
  const json = /<script type="application\/json">([\s\S]*?)<\/script>/.exec(html)[1];
  const js = /<\/script><script>([\s\S]*?)<\/script>/.exec(html)[1];
  const doc = new FakeDocument();
  const data = el(doc, "script", { type: "application/json" }, json);
  const script = el(doc, "script", {});
  const img = el(doc, "img", {});
  const spans = [...html.matchAll(/<span data-i="(\d+)"/g)].map((m) => el(doc, "span", { "data-i": m[1] }));
  const root = el(doc, "div", { "data-lp-id": id }, el(doc, "div", {}, img, ...spans), data, script);
  doc.body.appendChild(root);
  doc.currentScript = script;
  const warnings = [];
  vm.runInNewContext(js, { document: doc, atob, console: { warn: (...a) => warnings.push(a.join(" ")) } });
  assert.deepEqual(warnings, []);
  assert.equal(root.getAttribute("data-lp-on"), "1");
  return { root, img, spans, d: JSON.parse(json) };
}

/* The heatmap tooltip for cell (row, col) of panel p (picture shown at its own size). */
function hover({ root, img, d }, p, row, col) {
  img.rect = { left: 0, top: 0, width: d.W, height: d.H };
  root.rect = { left: 0, top: 0, width: d.W, height: d.H };
  const [x, y, w, h, rows, cols] = d.p[p];
  img.dispatch("mousemove", { clientX: x + (col + 0.5) * w / cols, clientY: y + (row + 0.5) * h / rows });
  const tip = root.children[root.children.length - 1];
  assert.equal(tip.style.display, "block");
  return tip.textContent;
}

function value(text) {
  return Number(/= \u2248?(\S+)$/.exec(text)[1]);
}

test("figures rendered by display/ are read right by their scripts", { skip: SKIP }, () => {
  const [quantised, grid, downsampled, strip] = render();

  const q = mount(quantised);
  assert.ok(q.d.q && q.d.v === undefined, "more than 20000 cells: quantised values");
  const step = (q.d.hi - q.d.lo) / 254;
  for (const [i, j] of [[100, 150], [0, 0], [199, 199], [57, 3]]) {
    const t = hover(q, 0, i, j);
    assert.match(t, new RegExp(`^row ${i}\\ncol ${j}\\n= \u2248`));
    const want = Math.sin((i + 1) / 7) * Math.cos((j + 1) / 11);
    assert.ok(Math.abs(value(t) - want) <= step / 2 + 1e-3 * Math.abs(want) + 1e-12, `${t} vs ${want}`);
  }
  assert.equal(hover(q, 0, 2, 4), "row 2\ncol 4\n= missing (NaN/Inf)");
  assert.equal(q.img.style.cursor, "zoom-in", "cells under 4 px: click zooms");

  const g = mount(grid);
  assert.equal(g.d.p.length, 3);
  for (const [p, i, j] of [[0, 0, 0], [1, 9, 11], [2, 4, 7]]) {
    const want = (p + 1) * 1000 + (i + 1) * 13 + (j + 1) * 0.5;
    assert.equal(hover(g, p, i, j), `head ${p + 1}\nquery ${i}\nkey ${j}\n= ${+want.toPrecision(4)}`);
  }

  const s = mount(downsampled);
  assert.equal(s.d.f, 3, "600 rows: blocks of 3");
  const t = hover(s, 0, 10, 20);
  assert.match(t, /^row 30\u201332\ncol 60\u201362\n= \u2248/);
  const mean = 31 + 1 + 61 + 1; // (i + j) averaged over the block, 1-based
  assert.ok(Math.abs(value(t) - mean) <= (s.d.hi - s.d.lo) / 254, `${t} vs ${mean}`);

  const k = mount(strip);
  assert.equal(k.spans.length, 3);
  const out = k.root.children[k.root.children.length - 1];
  k.spans[1].dispatch("mouseenter");
  assert.equal(out.textContent, '#1 \u2423cat = -3');
  k.spans[2].dispatch("mouseenter");
  assert.equal(out.textContent, '#2 \\n = missing (NaN/Inf)');
});
