/* display/js/tokens.js: the readout line's text, and the set-up that leaves the token strip
 * alone when the readout cannot be built. */
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { FakeDocument, el, captureWarnings, snapshot } = require("./fake_dom.js");
const { variants } = require("./load.js");

const ID = "lp-tokens-0123456789abcdef";
const DATA = { t: ["The", " Paris", "\n", 'say "hi"', "<script>"], v: [0.02, 1.8500000000000001, null, -0.4, 123456] };

/* A strip as tokens.c lays it out: root > div > span[data-i]..., data script, script. */
function strip(doc, json, n = DATA.t.length) {
  const spans = Array.from({ length: n }, (_, i) => el(doc, "span", { "data-i": i, title: "#" + i }, "tok" + i));
  const data = el(doc, "script", { type: "application/json" }, json);
  const script = el(doc, "script", {});
  const root = el(doc, "div", { class: "lp-fig lp-tokens", "data-lp-id": ID }, el(doc, "div", {}, ...spans), data, script);
  doc.body.appendChild(root);
  return { root, spans, data, script };
}

for (const { label, mod: tk } of variants("tokens")) {
  test(`${label}: showToken: the notation of display/text.c's lp_token_show`, () => {
    assert.equal(tk.showToken(" in"), "\u2423in");
    assert.equal(tk.showToken("  "), "\u2423\u2423");
    assert.equal(tk.showToken("\n"), "\\n");
    assert.equal(tk.showToken("\t\r"), "\\t\\r");
    assert.equal(tk.showToken("\x1b[0m"), "\\x1b[0m");
    assert.equal(tk.showToken("\x7f\x00"), "\\x7f\\x00");
    assert.equal(tk.showToken("a\\nb"), "a\\\\nb");
    assert.equal(tk.showToken("a\\0b\\"), "a\\0b\\");
    assert.equal(tk.showToken("caf\u00e9 \u6f22"), "caf\u00e9\u2423\u6f22");
    assert.equal(tk.showToken(""), "");
  });

  test(`${label}: readout: index, token as every figure shows it, value to 4 significant digits`, () => {
    assert.equal(tk.readout(DATA, 1), "#1 \u2423Paris = 1.85");
    assert.equal(tk.readout(DATA, 0), "#0 The = 0.02");
    assert.equal(tk.readout(DATA, 2), "#2 \\n = missing (NaN/Inf)");
    assert.equal(tk.readout(DATA, 3), '#3 say\u2423"hi" = -0.4');
    assert.equal(tk.readout(DATA, 4), "#4 <script> = 123500");
  });

  test(`${label}: a span's index must name a token`, () => {
    const doc = new FakeDocument();
    const span = (i) => el(doc, "span", i === undefined ? {} : { "data-i": i });
    assert.equal(tk.spanIndex(DATA, span(0)), 0);
    assert.equal(tk.spanIndex(DATA, span(4)), 4);
    for (const bad of [5, -1, 1.5, "x", "", undefined])
      assert.throws(() => tk.spanIndex(DATA, span(bad)), /names no token/, String(bad));
  });

  test(`${label}: set-up: hovering a token fills the readout and outlines the token`, () => {
    const doc = new FakeDocument();
    const { root, spans, script } = strip(doc, JSON.stringify(DATA));
    assert.equal(tk.start(doc, script, ID), root);
    assert.equal(root.getAttribute("data-lp-on"), "1");
    const out = root.children[root.children.length - 1];
    assert.equal(out.tagName, "div");
    assert.equal(out.textContent, "\u00a0", "an empty line keeps its height");
    assert.match(out.style.cssText, /font:12px monospace/);
    assert.equal(spans[1].dispatch("mouseenter"), 1);
    assert.equal(out.textContent, '#1 \u2423Paris = 1.85');
    assert.equal(spans[1].style.outline, "1px solid currentColor");
    spans[1].dispatch("mouseleave");
    assert.equal(spans[1].style.outline, "");
    spans[2].dispatch("mouseenter");
    assert.equal(out.textContent, '#2 \\n = missing (NaN/Inf)');
    assert.equal(tk.start(doc, script, ID), null, "once per output");
    assert.equal(root.children.length, 4);
  });

  test(`${label}: a strip whose readout cannot be built stays as it is`, () => {
    const good = JSON.stringify(DATA);
    const cases = {
      "data that is not JSON": [good.slice(0, -2)],
      "no values": [JSON.stringify({ t: DATA.t })],
      "fewer values than tokens": [JSON.stringify({ t: DATA.t, v: [1, 2] })],
      // the last span names no token: no span may get a listener, not even the first ones
      "a span beyond the tokens": [good, DATA.t.length + 1],
    };
    for (const [what, [json, n]] of Object.entries(cases)) {
      const doc = new FakeDocument();
      const { root, spans, script } = strip(doc, json, n);
      const before = snapshot(root);
      const warned = captureWarnings(() => tk.start(doc, script, ID));
      assert.equal(root.getAttribute("data-lp-on"), "failed", what);
      root.attrs.delete("data-lp-on");
      assert.deepEqual(snapshot(root), before, `${what}: the strip changed`);
      assert.equal(spans.reduce((n, s) => n + s.listenerCount(), 0), 0, what);
      assert.equal(warned.length, 1, what);
      assert.match(String(warned[0][0]), new RegExp(`token strip ${ID} keeps its static view`), what);
    }
  });
}
