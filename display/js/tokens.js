/* Token strips (display/tokens.c) where scripts run: a readout line under the strip shows
 * the hovered token and its value, and the token is outlined.
 *
 * Without scripts each token is already a span with its value in a title tooltip; this
 * script adds the readout. The output holds the spans (span[data-i]), the data (a
 * <script type="application/json"> beside them) and this script, in which the C side
 * replaces "@ID@" by the figure's data-lp-id. The data:
 *   t   the tokens (strings)
 *   v   their values (null: NaN/Inf)
 *
 * The readout is built and the data checked before anything in the page changes; if any of
 * it throws, the strip stays as it is. Node loads this file for the unit tests
 * (tests/js/tokens.test.js): the pure functions are exported there, and nothing runs
 * without a document.
 */
(function () {
  "use strict";

  var READOUT_STYLE = "font:12px monospace;min-height:16px;opacity:0.85;white-space:pre";

  /* A token as every loupe figure shows it (display/text.c, lp_token_show): each space as
   * U+2423, newline, tab and carriage return as \n \t \r, other control characters as \xHH,
   * a backslash as \\ where it would read as one of these escapes (before n t r x \). */
  function showToken(t) {
    var out = "";
    for (var k = 0; k < t.length; k++) {
      var c = t.charCodeAt(k), ch = t.charAt(k);
      if (ch === " ") out += "\u2423";
      else if (ch === "\n") out += "\\n";
      else if (ch === "\t") out += "\\t";
      else if (ch === "\r") out += "\\r";
      else if (ch === "\\" && "ntrx\\".indexOf(t.charAt(k + 1)) >= 0 && k + 1 < t.length) out += "\\\\";
      else if (c < 32 || c === 127) out += "\\x" + (c < 16 ? "0" : "") + c.toString(16);
      else out += ch;
    }
    return out;
  }

  /* The readout of token i: '#i token = value' (the token as shown everywhere, 4
   * significant digits). */
  function readout(d, i) {
    var v = d.v[i];
    return "#" + i + " " + showToken(d.t[i]) + " = " +
      (v === null ? "missing (NaN/Inf)" : +v.toPrecision(4));
  }

  /* The index of a token span (its data-i); throws when it names no token of d. */
  function spanIndex(d, span) {
    var s = span.getAttribute("data-i"), i = +s;
    if (String(i) !== s || !(i >= 0 && i < d.t.length && Math.floor(i) === i))
      throw new Error("span data-i=" + s + " names no token");
    return i;
  }

  /* Builds the readout of figure root without touching the page; returns the function that
   * puts it in place. Throws when the figure or its data are not as expected. */
  function build(root, doc) {
    var data = root.querySelector('script[type="application/json"]');
    if (!data) throw new Error("the figure has no data");
    var d = JSON.parse(data.textContent);
    if (d.t.length !== d.v.length) throw new Error("as many values as tokens expected");
    var spans = Array.prototype.slice.call(root.querySelectorAll("span[data-i]"));
    var index = spans.map(function (e) { return spanIndex(d, e); });
    var out = doc.createElement("div");
    out.style.cssText = READOUT_STYLE;
    out.textContent = "\u00a0";
    return function mount() {
      root.appendChild(out);
      spans.forEach(function (e, k) {
        e.addEventListener("mouseenter", function () {
          out.textContent = readout(d, index[k]);
          e.style.outline = "1px solid currentColor";
        });
        e.addEventListener("mouseleave", function () {
          e.style.outline = "";
        });
      });
    };
  }

  /* Finds the figure of this script (its closest [data-lp-id], else the first one with
   * this id not yet enhanced) and enhances it once: data-lp-on="1" when the readout is in
   * place, "failed" when it could not be built (a warning says why). Returns the root. */
  function start(doc, script, id) {
    var root = script && script.closest ? script.closest("[data-lp-id]") : null;
    if (!root) root = doc.querySelector('[data-lp-id="' + id + '"]:not([data-lp-on])');
    if (!root || root.getAttribute("data-lp-on")) return null;
    try {
      build(root, doc)();
      root.setAttribute("data-lp-on", "1");
    } catch (e) {
      root.setAttribute("data-lp-on", "failed");
      console.warn("loupe: token strip " + id + " keeps its static view:", e);
    }
    return root;
  }

  if (typeof module !== "undefined" && module.exports) {
    module.exports = { showToken, readout, spanIndex, build, start };
  }
  if (typeof document !== "undefined") start(document, document.currentScript, "@ID@");
})();
