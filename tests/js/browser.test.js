/* display/js/browser.js: the feature browser's search, sorting and dashboards opened in
 * place, and the set-up that leaves the static table alone when it cannot be built. */
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { FakeDocument, el, captureWarnings, snapshot } = require("./fake_dom.js");
const { variants } = require("./load.js");

const ID = "lp-browser-0123456789abcdef";
const ROWS = [
  { i: 3, density: 0.02, max: 5, s: "3 \" oslo\" -> \" norway\" ␣oslo" },
  { i: 7, density: 0.5, max: 1, s: "7 after \" in\" ␣paris  ␣oslo" },
  { i: 9, density: 0.1, max: 9, s: "9 \"<script>\" ␣<img" },
];

/* A browser as browser.c lays it out. */
function browser(doc, json) {
  const box = el(doc, "div", { "data-lp-search": "1" });
  const heads = ["index", "density", "max"].map((k) => el(doc, "th", { "data-k": k }, k));
  const rows = ROWS.map((r) => el(doc, "tr", { "data-i": r.i, "data-index": r.i, "data-density": r.density,
                                                "data-max": r.max, "data-s": r.s }, el(doc, "td", {}, String(r.i))));
  const body = el(doc, "tbody", {}, ...rows);
  const data = el(doc, "script", { type: "application/json" }, json);
  const script = el(doc, "script", {});
  const root = el(doc, "div", { class: "lp-fig lp-browser", "data-lp-id": ID }, box,
                  el(doc, "table", {}, el(doc, "thead", {}, el(doc, "tr", {}, ...heads)), body), data, script);
  doc.body.appendChild(root);
  return { root, box, heads, rows, body, script };
}

const order = (body) => body.children.map((r) => r.getAttribute("data-i") || "detail:" + r.getAttribute("data-lp-detail"));

for (const { label, mod: br } of variants("browser")) {
  test(`${label}: matches: every word, case-insensitive`, () => {
    assert.equal(br.matches("3 \" oslo\" ␣oslo", "OSLO"), true);
    assert.equal(br.matches("3 \" oslo\" ␣oslo", "oslo paris"), false);
    assert.equal(br.matches("anything", "  "), true);
  });

  test(`${label}: search hides the rows that do not match`, () => {
    const doc = new FakeDocument();
    const { root, box, rows } = browser(doc, JSON.stringify({ dash: {} }));
    br.start(doc, { closest: () => root }, ID);
    assert.equal(root.getAttribute("data-lp-on"), "1");
    const input = box.children[0];
    assert.equal(input.tagName, "input");
    input.value = "Oslo";
    input.dispatch("input");
    assert.deepEqual(rows.map((r) => r.style.display), ["", "", "none"]);
    input.value = "<script>";
    input.dispatch("input");
    assert.deepEqual(rows.map((r) => r.style.display), ["none", "none", ""]);
    input.value = "";
    input.dispatch("input");
    assert.deepEqual(rows.map((r) => r.style.display), ["", "", ""]);
  });

  test(`${label}: headers sort the rows, a second click reverses`, () => {
    const doc = new FakeDocument();
    const { root, heads, body } = browser(doc, JSON.stringify({ dash: {} }));
    br.start(doc, { closest: () => root }, ID);
    heads[2].dispatch("click"); // max, descending
    assert.deepEqual(order(body), ["9", "3", "7"]);
    heads[2].dispatch("click");
    assert.deepEqual(order(body), ["7", "3", "9"]);
    heads[1].dispatch("click"); // density
    assert.deepEqual(order(body), ["7", "9", "3"]);
    heads[0].dispatch("click"); // index, ascending first
    assert.deepEqual(order(body), ["3", "7", "9"]);
    assert.equal(heads[0].getAttribute("data-lp-sorted"), "asc");
  });

  test(`${label}: a click opens the row's dashboard below it; again closes; others say none is embedded`, () => {
    const doc = new FakeDocument();
    const { root, rows, body } = browser(doc, JSON.stringify({ dash: { 7: "<div>dashboard 7</div>" } }));
    br.start(doc, { closest: () => root }, ID);
    rows[1].dispatch("click");
    assert.deepEqual(order(body), ["3", "7", "detail:7", "9"]);
    assert.equal(body.children[2].children[0].innerHTML, "<div>dashboard 7</div>");
    rows[1].dispatch("click");
    assert.deepEqual(order(body), ["3", "7", "9"]);
    rows[2].dispatch("click");
    assert.deepEqual(order(body), ["3", "7", "9", "detail:9"]);
    const td = body.children[3].children[0];
    assert.equal(td.innerHTML, undefined, "no markup for a row without a dashboard");
    assert.match(td.textContent, /no dashboard embedded for feature 9.*sae:feature\(9\)/);
    rows[0].dispatch("click"); // one open at a time
    assert.deepEqual(order(body), ["3", "detail:3", "7", "9"]);
  });

  test(`${label}: bad data leaves the table as it is`, () => {
    for (const json of ["{", JSON.stringify({ dash: null }), JSON.stringify([])]) {
      const doc = new FakeDocument();
      const { root } = browser(doc, json);
      const before = snapshot(root);
      const warnings = captureWarnings(() => br.start(doc, { closest: () => root }, ID));
      assert.equal(root.getAttribute("data-lp-on"), "failed");
      assert.equal(warnings.length, 1);
      root.attrs.delete("data-lp-on");
      assert.deepEqual(snapshot(root), before);
    }
  });
}
