/* The prompt view (display/prompt_features.c) where scripts run: hovering a token shows its
 * top features (index, label, activation) in the readout line above the tokens; a click pins
 * that token (the readout stays on it until another click), a second click unpins.
 *
 * Without scripts each token span (span[data-t]) carries the same text in its title tooltip
 * ("token · #12 label = 3.2; #40 = 1.1"), which is what the readout shows. The C side puts
 * an empty div[data-lp-readout] above the tokens, a <script type="application/json"> (an
 * object, for later use) and this script, with "@ID@" replaced by the figure's data-lp-id.
 * Nothing changes until everything is found; if anything throws, the view stays as it is.
 */
(function () {
  "use strict";

  function build(root, doc) {
    var data = root.querySelector('script[type="application/json"]');
    if (!data) throw new Error("the prompt view has no data");
    var d = JSON.parse(data.textContent);
    if (!d || typeof d !== "object") throw new Error("the data must be an object");
    var out = root.querySelector("div[data-lp-readout]");
    var spans = Array.prototype.slice.call(root.querySelectorAll("span[data-t]"));
    if (!out) throw new Error("the prompt view has no readout line");
    var state = { pinned: null };

    function show(e) {
      out.textContent = e.getAttribute("title") || "";
    }

    return function mount() {
      out.textContent = "\u00a0";
      spans.forEach(function (e) {
        e.style.cursor = "pointer";
        e.addEventListener("mouseenter", function () {
          if (!state.pinned) show(e);
          e.style.outline = "1px solid currentColor";
        });
        e.addEventListener("mouseleave", function () {
          if (state.pinned !== e) e.style.outline = "";
        });
        e.addEventListener("click", function () {
          if (state.pinned) state.pinned.style.outline = "";
          state.pinned = state.pinned === e ? null : e;
          if (state.pinned) e.style.outline = "2px solid currentColor";
          show(e);
        });
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
      console.warn("loupe: prompt view " + id + " keeps its static view:", e);
    }
    return root;
  }

  if (typeof module !== "undefined" && module.exports) {
    module.exports = { build, start };
  }
  if (typeof document !== "undefined") start(document, document.currentScript, "@ID@");
})();
