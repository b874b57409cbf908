/* display/js/heatmap.js: the hover readout's arithmetic and text, zoom, and the set-up that
 * leaves the static picture alone when the live view cannot be built. */
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { FakeDocument, el, captureWarnings, snapshot } = require("./fake_dom.js");
const { variants } = require("./load.js");

const ID = "lp-heatmap-0123456789abcdef";

/* A grid like heatmap.c writes: 2 x 2 panels of 3 x 4 cells, 40 x 30 units each, gaps of
 * 10, titled; values v[k] = k / 10 (drawn cell k), cell 46 missing. */
function gridData() {
  const p = [];
  for (let k = 0; k < 4; k++) p.push([8 + (k % 2) * 50, 20 + Math.floor(k / 2) * 54, 40, 30, 3, 4, "L0H" + k]);
  const v = Array.from({ length: 48 }, (_, k) => k / 10);
  v[46] = null;
  return { W: 160, H: 120, p, rl: null, cl: null, lo: 0, hi: 4.6, f: 1, z: 1, rn: "query", cn: "key", v };
}

/* One labelled 2 x 3 heatmap at (10, 6), 60 x 40 units; values exact. */
function singleData() {
  return { W: 100, H: 60, p: [[10, 6, 60, 40, 2, 3, null]], rl: ["<bos>", " cat"], cl: ["a", 'b"', "c\n"],
    lo: -1, hi: 1, f: 1, z: 1, rn: "query", cn: "key", v: [0.123456, -1, 1, 0, 1e-7, null] };
}

/* A figure as heatmap.c lays it out: root > div > img, data script, the script itself. */
function figure(doc, json) {
  const img = el(doc, "img", { src: "data:image/svg+xml;base64,AAAA" });
  const data = el(doc, "script", { type: "application/json" }, json);
  const script = el(doc, "script", {});
  const root = el(doc, "div", { class: "lp-fig lp-heatmap", "data-lp-id": ID }, el(doc, "div", {}, img), data, script);
  doc.body.appendChild(root);
  return { root, img, data, script };
}

for (const { label, mod: hm } of variants("heatmap")) {
  test(`${label}: axis labels: index, label as JSON, block ranges when downsampled`, () => {
    assert.equal(hm.axisLabel(null, 3, 1), "3");
    assert.equal(hm.axisLabel(["a", "\u2423sat", 'q"'], 1, 1), "1 \u2423sat", "the label as the picture draws it");
    assert.equal(hm.axisLabel(["a", "\u2423sat", 'q"'], 2, 1), '2 q"');
    assert.equal(hm.axisLabel(["a"], 5, 1), "5", "no label for index 5");
    assert.equal(hm.axisLabel(null, 2, 4), "8\u201311");
    assert.equal(hm.axisLabel(["a", "b", "c"], 0, 2), "0\u20131", "labels are not shown for blocks");
  });

  test(`${label}: values: 4 significant digits, approximate mark, missing`, () => {
    assert.equal(hm.formatValue(0.123456, false), "0.1235");
    assert.equal(hm.formatValue(0.123456, true), "\u22480.1235");
    assert.equal(hm.formatValue(12345.6, false), "12350");
    assert.equal(hm.formatValue(1e-7, false), "1e-7");
    assert.equal(hm.formatValue(-2, false), "-2");
    assert.equal(hm.formatValue(null, false), "missing (NaN/Inf)");
    assert.equal(hm.formatValue(null, true), "missing (NaN/Inf)");
  });

  test(`${label}: quantised values read back as display/color.c's lp_scale_value`, () => {
    const d = { lo: -2, hi: 2 };
    const q = hm.decodeIndices(Buffer.from([0, 1, 128, 255, 64]).toString("base64"));
    assert.deepEqual([...q], [0, 1, 128, 255, 64]);
    assert.equal(hm.cellValue(d, q, 0), null, "index 0 is missing");
    assert.equal(hm.cellValue(d, q, 1), -2);
    assert.equal(hm.cellValue(d, q, 2), 0);
    assert.equal(hm.cellValue(d, q, 3), 2);
    assert.ok(Math.abs(hm.cellValue(d, q, 4) - (-2 + 4 * 63 / 254)) < 1e-12);
    assert.equal(hm.cellValue({ v: [5, null] }, null, 0), 5, "exact values when there is no q");
    assert.equal(hm.cellValue({ v: [5, null] }, null, 1), null);
  });

  test(`${label}: layout check counts the drawn cells and rejects broken layouts`, () => {
    assert.equal(hm.checkLayout(gridData()), 48);
    assert.equal(hm.checkLayout(singleData()), 6);
    const broken = [
      (d) => { d.p = 7; },
      (d) => { d.p = []; },
      (d) => { d.p[1] = [0, 0, 40, 30, 3, 4]; },
      (d) => { d.p[2][2] = 0; },
      (d) => { d.p[3][5] = 0; },
      (d) => { delete d.W; },
      (d) => { d.H = -1; },
      (d) => { d.f = 0; },
    ];
    for (const breakIt of broken) {
      const d = gridData();
      breakIt(d);
      assert.throws(() => hm.checkLayout(d), undefined, breakIt.toString());
    }
  });

  test(`${label}: the cell under a point, counted across panels; gaps are outside`, () => {
    const d = gridData();
    // panel 3 (bottom right) starts at (58, 74); cell (2, 3) spans x 88..98, y 94..104
    assert.deepEqual(hm.cellAt(d, 93, 99), { panel: 3, row: 2, col: 3, index: 36 + 11 });
    assert.deepEqual(hm.cellAt(d, 8, 20), { panel: 0, row: 0, col: 0, index: 0 });
    assert.deepEqual(hm.cellAt(d, 58 + 10.5, 20 + 10.5), { panel: 1, row: 1, col: 1, index: 12 + 5 });
    assert.equal(hm.cellAt(d, 50, 30), null, "the gap between panels 0 and 1");
    assert.equal(hm.cellAt(d, 48, 30), null, "right edges are exclusive");
    assert.equal(hm.cellAt(d, 20, 50), null, "bottom edges are exclusive");
    assert.equal(hm.cellAt(d, 7.9, 30), null);
    // the last point inside a panel whose row would round to one past the last
    const one = { p: [[0, 2.8924462750034463, 1, 8.123074116725888, 106, 1, null]] };
    assert.equal(Math.floor((11.015520391729334 - one.p[0][1]) / one.p[0][3] * 106), 106);
    assert.deepEqual(hm.cellAt(one, 0.5, 11.015520391729334), { panel: 0, row: 105, col: 0, index: 105 });
  });

  test(`${label}: tooltip text: panel title, row, column, value`, () => {
    const d = gridData();
    assert.equal(hm.tipText(d, null, hm.cellAt(d, 93, 99)), "L0H3\nquery 2\nkey 3\n= 4.7");
    assert.equal(hm.tipText(d, null, { panel: 3, row: 2, col: 2, index: 46 }), "L0H3\nquery 2\nkey 2\n= missing (NaN/Inf)");
    assert.equal(hm.tipText(d, null, hm.cellAt(d, 8 + 15, 20 + 15)), "L0H0\nquery 1\nkey 1\n= 0.5");
    const s = singleData();
    assert.equal(hm.tipText(s, null, hm.cellAt(s, 10 + 30, 6 + 30)), 'query 1  cat\nkey 1 b"\n= 1e-7');
    assert.equal(hm.tipText(s, null, { panel: 0, row: 1, col: 2, index: 5 }), 'query 1  cat\nkey 2 c\\n\n= missing (NaN/Inf)');
    const q = hm.decodeIndices(Buffer.from([128, 1, 255, 0, 0, 0]).toString("base64"));
    assert.equal(hm.tipText(s, q, { panel: 0, row: 0, col: 0, index: 0 }), 'query 0 <bos>\nkey 0 a\n= \u22480');
    s.f = 2;
    assert.equal(hm.tipText(s, null, { panel: 0, row: 1, col: 0, index: 3 }), "query 2\u20133\nkey 0\u20131\n= 0");
  });

  test(`${label}: mouse positions scale from the shown size to the picture's units`, () => {
    const d = { W: 200, H: 100 };
    assert.deepEqual(hm.toPicture(d, { left: 10, top: 20, width: 400, height: 200 }, 110, 70), { x: 50, y: 25 });
    assert.deepEqual(hm.toPicture(d, { left: 0, top: 0, width: 100, height: 50 }, 100, 50), { x: 200, y: 100 });
  });

  test(`${label}: zoom style: z times the picture's width, and back`, () => {
    assert.deepEqual(hm.zoomStyle({ W: 150, z: 3 }, true), { maxWidth: "none", width: "450px", cursor: "zoom-out" });
    assert.deepEqual(hm.zoomStyle({ W: 150, z: 3 }, false), { maxWidth: "100%", width: "", cursor: "zoom-in" });
  });

  test(`${label}: set-up: a tooltip follows the mouse over the picture`, () => {
    const doc = new FakeDocument();
    const { root, img, script } = figure(doc, JSON.stringify(gridData()));
    img.rect = { left: 100, top: 50, width: 320, height: 240 }; // shown at twice the size
    root.rect = { left: 90, top: 10, width: 400, height: 300 };
    assert.equal(hm.start(doc, script, ID), root);
    assert.equal(root.getAttribute("data-lp-on"), "1");
    const tip = root.children[root.children.length - 1];
    assert.equal(tip.tagName, "div");
    assert.match(tip.style.cssText, /pointer-events:none/);
    // cell (2, 3) of panel 3, centre (93, 99) in picture units
    assert.equal(img.dispatch("mousemove", { clientX: 100 + 93 * 2, clientY: 50 + 99 * 2 }), 1);
    assert.equal(tip.textContent, "L0H3\nquery 2\nkey 3\n= 4.7");
    assert.equal(tip.style.display, "block");
    assert.equal(tip.style.left, 100 + 186 - 90 + 14 + "px");
    assert.equal(tip.style.top, 50 + 198 - 10 + 14 + "px");
    img.dispatch("mousemove", { clientX: 100 + 50 * 2, clientY: 50 + 30 * 2 }); // a gap
    assert.equal(tip.style.display, "none");
    img.dispatch("mousemove", { clientX: 100 + 93 * 2, clientY: 50 + 99 * 2 });
    img.dispatch("mouseleave", {});
    assert.equal(tip.style.display, "none");
    assert.equal(img.dispatch("click", {}), 0, "no zoom when cells are large enough");
    assert.equal(img.style.cursor, undefined);
    assert.equal(hm.start(doc, script, ID), null, "once per output");
    assert.equal(root.children.length, 4);
  });

  test(`${label}: set-up: quantised hover values and click-to-zoom`, () => {
    const doc = new FakeDocument();
    const d = singleData();
    delete d.v;
    d.q = Buffer.from([1, 128, 255, 0, 2, 3]).toString("base64");
    d.z = 3;
    const { root, img, script } = figure(doc, JSON.stringify(d));
    img.rect = { left: 0, top: 0, width: 100, height: 60 };
    hm.start(doc, script, ID);
    assert.equal(root.getAttribute("data-lp-on"), "1");
    const tip = root.children[root.children.length - 1];
    img.dispatch("mousemove", { clientX: 10 + 50, clientY: 6 + 10 }); // row 0, col 2
    assert.equal(tip.textContent, 'query 0 <bos>\nkey 2 c\\n\n= \u22481');
    assert.equal(img.style.cursor, "zoom-in");
    img.dispatch("click", {});
    assert.deepEqual([img.style.width, img.style.maxWidth, img.style.cursor, img.getAttribute("data-z")],
                     ["300px", "none", "zoom-out", "1"]);
    img.dispatch("click", {});
    assert.deepEqual([img.style.width, img.style.maxWidth, img.style.cursor, img.getAttribute("data-z")],
                     ["", "100%", "zoom-in", "0"]);
  });

  test(`${label}: set-up finds its figure by id when the script cannot say where it is`, () => {
    const doc = new FakeDocument();
    const other = figure(doc, JSON.stringify(gridData()));
    other.root.setAttribute("data-lp-on", "1");
    const { root } = figure(doc, JSON.stringify(gridData()));
    assert.equal(hm.start(doc, null, ID), root, "the first one with this id not yet enhanced");
    assert.equal(root.getAttribute("data-lp-on"), "1");
    assert.equal(hm.start(doc, null, "lp-heatmap-none"), null);
  });

  test(`${label}: a figure whose live view cannot be built keeps its static picture untouched`, () => {
    const good = JSON.stringify(gridData());
    const cases = {
      "data that is not JSON": good.slice(0, -9),
      "panels that are not a layout": JSON.stringify({ ...gridData(), p: 7 }),
      "a panel without its sizes": good.replace('[58,20,40,30,3,4,"L0H1"]', '[58,20,40,30,"L0H1"]'),
      "fewer values than cells": JSON.stringify({ ...gridData(), v: [1, 2, 3] }),
      "quantised values of the wrong length": JSON.stringify({ ...gridData(), v: undefined, q: "AAEC" }),
      "quantised values that are not base64": JSON.stringify({ ...gridData(), v: undefined, q: "%%%%" }),
    };
    for (const [what, json] of Object.entries(cases)) {
      const doc = new FakeDocument();
      const { root, img, data, script } = figure(doc, json);
      const before = snapshot(root);
      const warned = captureWarnings(() => assert.equal(hm.start(doc, script, ID), root, what));
      assert.equal(root.getAttribute("data-lp-on"), "failed", what);
      root.attrs.delete("data-lp-on");
      assert.deepEqual(snapshot(root), before, `${what}: the figure changed`);
      root.setAttribute("data-lp-on", "failed");
      assert.equal(img.listenerCount(), 0, what);
      assert.equal(warned.length, 1, what);
      assert.match(String(warned[0][0]), new RegExp(`heatmap ${ID} keeps its static picture`), what);
      assert.ok(warned[0][1] instanceof Error, what);
      assert.equal(hm.start(doc, script, ID), null, `${what}: tried once only`);
      assert.equal(data.textContent, json);
    }
  });

  test(`${label}: nothing runs on load without a document`, () => {
    assert.equal(typeof hm.start, "function");
    assert.equal(typeof globalThis.document, "undefined");
  });
}
