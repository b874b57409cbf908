/* display/js/dashboard.js: the readout line of a feature dashboard, and the set-up that
 * leaves the dashboard alone when the readout cannot be built. */
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { FakeDocument, el, captureWarnings } = require("./fake_dom.js");
const { variants } = require("./load.js");

const ID = "lp-dashboard-0123456789abcdef";

/* A dashboard as dashboard.c lays it out: root > readout div, rows of span[data-a], data, script. */
function dash(doc, json) {
  const readout = el(doc, "div", { "data-lp-readout": "1" });
  const spans = [0, 1, 2].map((i) => el(doc, "span", { "data-a": i, title: "tok" + i + " = " + i }, "tok" + i));
  const data = el(doc, "script", { type: "application/json" }, json);
  const script = el(doc, "script", {});
  const root = el(doc, "div", { class: "lp-fig lp-dashboard", "data-lp-id": ID }, readout, el(doc, "div", {}, ...spans),
                  data, script);
  doc.body.appendChild(root);
  return { root, readout, spans, script };
}

for (const { label, mod: db } of variants("dashboard")) {
  test(`${label}: readout: the token's tooltip, then what the feature promotes, quoted`, () => {
    assert.equal(db.readout({ promotes: [" Oslo", "<b>"] }, "\u2423in = 2.5"),
                 '\u2423in = 2.5   \u2192 promotes " Oslo" "<b>"');
    assert.equal(db.readout({ promotes: [] }, "x = 1"), "x = 1");
  });

  test(`${label}: hovering a token fills the readout line`, () => {
    const doc = new FakeDocument();
    const { root, readout, spans, script } = dash(doc, JSON.stringify({ promotes: [" Paris"] }));
    db.start(doc, script, ID);
    assert.equal(root.getAttribute("data-lp-on"), "1");
    spans[1].dispatch("mouseenter");
    assert.equal(readout.textContent, 'tok1 = 1   \u2192 promotes " Paris"');
    assert.equal(spans[1].style.outline, "1px solid currentColor");
    spans[1].dispatch("mouseleave");
    assert.equal(spans[1].style.outline, "");
    assert.equal(db.start(doc, script, ID), null, "once per output");
  });

  test(`${label}: bad data leaves the dashboard as it is`, () => {
    for (const json of ["{", JSON.stringify({ promotes: "x" })]) {
      const doc = new FakeDocument();
      const { root, readout, spans, script } = dash(doc, json);
      const warnings = captureWarnings(() => db.start(doc, script, ID));
      assert.equal(root.getAttribute("data-lp-on"), "failed");
      assert.equal(warnings.length, 1);
      assert.equal(readout.textContent, "");
      assert.equal(spans[0].listenerCount(), 0);
    }
  });
}
