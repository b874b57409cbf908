/* display/js/prompt.js: the prompt view's readout (hover shows a token's features, a click
 * pins it), and the set-up that leaves the view alone when it cannot be built. */
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { FakeDocument, el, captureWarnings, snapshot } = require("./fake_dom.js");
const { variants } = require("./load.js");

const ID = "lp-prompt-features-0123456789abcdef";

function view(doc, json) {
  const readout = el(doc, "div", { "data-lp-readout": "1" });
  const titles = ["Mara · no feature fires", "␣Oslo · #0 \" Oslo\" = 3.5; #7 = 1", "<b> · #2 <img onerror> = 1"];
  const spans = titles.map((t, i) => el(doc, "span", { "data-t": i, title: t }, "tok" + i));
  const data = el(doc, "script", { type: "application/json" }, json);
  const script = el(doc, "script", {});
  const root = el(doc, "div", { class: "lp-fig lp-prompt-features", "data-lp-id": ID }, readout,
                  el(doc, "div", {}, ...spans), data, script);
  doc.body.appendChild(root);
  return { root, readout, spans, titles };
}

for (const { label, mod: pv } of variants("prompt")) {
  test(`${label}: hovering a token shows its features; a click pins it`, () => {
    const doc = new FakeDocument();
    const { root, readout, spans, titles } = view(doc, "{}");
    pv.start(doc, { closest: () => root }, ID);
    assert.equal(root.getAttribute("data-lp-on"), "1");
    spans[1].dispatch("mouseenter");
    assert.equal(readout.textContent, titles[1]);
    spans[1].dispatch("click");
    assert.equal(spans[1].style.outline, "2px solid currentColor");
    spans[2].dispatch("mouseenter");
    assert.equal(readout.textContent, titles[1], "pinned: hovering another token does not move the readout");
    spans[2].dispatch("mouseleave");
    spans[2].dispatch("click");
    assert.equal(readout.textContent, titles[2], "a click on another token pins that one, as text");
    assert.equal(spans[1].style.outline, "");
    spans[2].dispatch("click");
    spans[0].dispatch("mouseenter");
    assert.equal(readout.textContent, titles[0], "unpinned");
    assert.equal(pv.start(doc, { closest: () => root }, ID), null, "once per output");
  });

  test(`${label}: bad data leaves the view as it is`, () => {
    for (const json of ["{", "null"]) {
      const doc = new FakeDocument();
      const { root } = view(doc, json);
      const before = snapshot(root);
      const warnings = captureWarnings(() => pv.start(doc, { closest: () => root }, ID));
      assert.equal(root.getAttribute("data-lp-on"), "failed");
      assert.equal(warnings.length, 1);
      root.attrs.delete("data-lp-on");
      assert.deepEqual(snapshot(root), before);
    }
  });
}
