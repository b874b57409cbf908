/* Feature dashboards (display/dashboard.c) where scripts run: a readout line at the top of
 * the examples shows the hovered token, its activation and the tokens the feature promotes
 * most (its direct effect on the logits), and the token is outlined.
 *
 * Without scripts every token span already carries "token = activation" in its title
 * tooltip; this adds the readout, in the empty div[data-lp-readout] the C side puts at the
 * top (sticky, so it stays in view). The output holds the spans (span[data-a]), the data (a
 * <script type="application/json"> beside them) and this script, in which the C side
 * replaces "@ID@" by the figure's data-lp-id. The data:
 *   promotes   the texts of the tokens the feature promotes most (up to 5)
 * Nothing in the page changes until the readout is built; if anything throws, the
 * dashboard stays as it is.
 */
(function () {
  "use strict";

  /* The readout of a span: its title ("token = activation") and what the feature promotes. */
  function readout(d, title) {
    var p = d.promotes.map(function (t) { return JSON.stringify(t); }).join(" ");
    return title + (p ? "   \u2192 promotes " + p : "");
  }

  function build(root, doc) {
    var data = root.querySelector('script[type="application/json"]');
    if (!data) throw new Error("the dashboard has no data");
    var d = JSON.parse(data.textContent);
    if (!Array.isArray(d.promotes)) throw new Error("promotes must be a list");
    var spans = Array.prototype.slice.call(root.querySelectorAll("span[data-a]"));
    var out = root.querySelector("div[data-lp-readout]");
    if (!out) throw new Error("the dashboard has no readout line");
    return function mount() {
      out.style.cssText = "font:12px monospace;min-height:16px;opacity:0.85;white-space:pre;" +
        "position:sticky;top:0;z-index:1;background:var(--jp-layout-color0, inherit)";
      out.textContent = "\u00a0";
      spans.forEach(function (e) {
        e.addEventListener("mouseenter", function () {
          out.textContent = readout(d, e.getAttribute("title") || "");
          e.style.outline = "1px solid currentColor";
        });
        e.addEventListener("mouseleave", function () { e.style.outline = ""; });
      });
    };
  }

  function start(doc, script, id) {
    var root = script && script.closest ? script.closest("[data-lp-id]") : null;
    if (!root) root = doc.querySelector('[data-lp-id="' + id + '"]:not([data-lp-on])');
    if (!root || root.getAttribute("data-lp-on")) return null;
    try {
      build(root, doc)();
      root.setAttribute("data-lp-on", "1");
    } catch (e) {
      root.setAttribute("data-lp-on", "failed");
      console.warn("loupe: dashboard " + id + " keeps its static view:", e);
    }
    return root;
  }

  if (typeof module !== "undefined" && module.exports) {
    module.exports = { readout, build, start };
  }
  if (typeof document !== "undefined") start(document, document.currentScript, "@ID@");
})();
