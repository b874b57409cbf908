/* Heatmaps and heatmap grids (display/heatmap.c) where scripts run: the value under the
 * mouse in a tooltip, and click-to-zoom when cells are drawn smaller than 4 px.
 *
 * The output holds the static picture (<img src="data:image/svg+xml;base64,...">), the data
 * this script reads (a <script type="application/json"> beside it) and this script, in
 * which the C side replaces "@ID@" by the figure's data-lp-id. The data (lengths in the
 * picture's SVG units):
 *   W, H    size of the picture
 *   p       panels [x, y, w, h, rows, cols, title or null], in drawing order
 *   v       values of the drawn cells (null: NaN/Inf), panel after panel, row-major, or
 *   q       base64 of their 8-bit scale indices (0: missing, 1..255: lo..hi; lp_scale_index)
 *   lo, hi  the colour scale's range
 *   f       downsampling factor (a drawn cell is the mean of an f x f block)
 *   z       zoom factor (> 1: a click shows the picture z times larger)
 *   rl, cl  row and column labels, or null; rn, cn: the axes' names
 *
 * The live view (tooltip, listeners) is built and the data checked before anything in the
 * page changes; if any of it throws, the figure keeps its static picture as it is.
 * Node loads this file for the unit tests (tests/js/heatmap.test.js): the pure functions
 * are exported there, and nothing runs without a document.
 */
(function () {
  "use strict";

  var TIP_STYLE = "position:absolute;pointer-events:none;display:none;padding:2px 6px;" +
    "border-radius:3px;font:12px monospace;white-space:pre;z-index:10;" +
    "background:var(--jp-layout-color0,#fff);color:var(--jp-ui-font-color1,#000);" +
    "border:1px solid var(--jp-border-color1,#999)";

  /* Throws unless the layout in d is one this script can read; returns the number of drawn
   * cells. (A missing field throws too: undefined compares false.) */
  function checkLayout(d) {
    if (!(d.W > 0 && d.H > 0 && d.f >= 1 && d.p.length >= 1)) throw new Error("bad picture size or panels");
    var cells = 0;
    d.p.forEach(function (p, k) {
      if (!(p.length === 7 && p[2] > 0 && p[3] > 0 && p[4] >= 1 && p[5] >= 1)) throw new Error("bad panel " + k);
      cells += p[4] * p[5];
    });
    return cells;
  }

  /* base64 -> bytes (atob: browsers, Node >= 16). */
  function decodeIndices(b64) {
    var bin = atob(b64), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  /* The value of drawn cell k: exact (d.v), or from its scale index q[k] (C's
   * lp_scale_value); null when missing. */
  function cellValue(d, q, k) {
    if (q) return q[k] ? d.lo + (d.hi - d.lo) * (q[k] - 1) / 254 : null;
    return d.v[k];
  }

  /* 4 significant digits, "≈" when read back from a scale index. */
  function formatValue(v, approx) {
    if (v === null) return "missing (NaN/Inf)";
    return (approx ? "\u2248" : "") + (+v.toPrecision(4));
  }

  /* Row or column k of the drawn grid: its index (a range of original indices when
   * downsampled by f > 1), then its label as a JSON string when there are labels. */
  /* A label with its control characters made visible as display/text.c does (\n \t \r
   * \xHH); spaces stay as they are drawn. */
  function showControls(t) {
    var out = "";
    for (var k = 0; k < t.length; k++) {
      var c = t.charCodeAt(k);
      if (c === 10) out += "\\n";
      else if (c === 9) out += "\\t";
      else if (c === 13) out += "\\r";
      else if (c < 32 || c === 127) out += "\\x" + (c < 16 ? "0" : "") + c.toString(16);
      else out += t.charAt(k);
    }
    return out;
  }

  function axisLabel(labels, k, f) {
    var t = f > 1 ? k * f + "\u2013" + (k * f + f - 1) : "" + k;
    /* as drawn in the picture: tokens arrive in loupe's notation ("\u2423sat", display/text.c) */
    return labels && f <= 1 && labels[k] !== undefined ? t + " " + showControls(String(labels[k])) : t;
  }

  /* The cell under point (x, y) of the picture (SVG units): {panel, row, col, index}, index
   * counting drawn cells panel after panel; null outside every panel. */
  function cellAt(d, x, y) {
    var off = 0;
    for (var k = 0; k < d.p.length; k++) {
      var p = d.p[k];
      if (x >= p[0] && x < p[0] + p[2] && y >= p[1] && y < p[1] + p[3]) {
        var row = Math.min(p[4] - 1, Math.floor((y - p[1]) / p[3] * p[4]));
        var col = Math.min(p[5] - 1, Math.floor((x - p[0]) / p[2] * p[5]));
        return { panel: k, row: row, col: col, index: off + row * p[5] + col };
      }
      off += p[4] * p[5];
    }
    return null;
  }

  /* The tooltip: the panel's title (grids), the row, the column, the value. */
  function tipText(d, q, hit) {
    var title = d.p[hit.panel][6];
    return (title !== null ? title + "\n" : "") +
      d.rn + " " + axisLabel(d.rl, hit.row, d.f) + "\n" +
      d.cn + " " + axisLabel(d.cl, hit.col, d.f) + "\n" +
      "= " + formatValue(cellValue(d, q, hit.index), q !== null);
  }

  /* A mouse position (client pixels) in the picture's SVG units; rect: the <img>'s box. */
  function toPicture(d, rect, clientX, clientY) {
    return { x: (clientX - rect.left) * d.W / rect.width, y: (clientY - rect.top) * d.H / rect.height };
  }

  /* The <img>'s style when zoomed in or out. */
  function zoomStyle(d, zoomed) {
    return zoomed ? { maxWidth: "none", width: d.W * d.z + "px", cursor: "zoom-out" }
                  : { maxWidth: "100%", width: "", cursor: "zoom-in" };
  }

  /* Builds the live view of figure root without touching the page; returns the function
   * that puts it in place. Throws when the figure or its data are not as expected. */
  function build(root, doc) {
    var data = root.querySelector('script[type="application/json"]');
    var img = root.querySelector("img");
    if (!data || !img) throw new Error("the figure has no data or no picture");
    var d = JSON.parse(data.textContent);
    var cells = checkLayout(d);
    var q = d.q !== undefined ? decodeIndices(d.q) : null;
    var n = q ? q.length : d.v.length;
    if (n !== cells) throw new Error("expected " + cells + " values, found " + n);
    var tip = doc.createElement("div");
    tip.style.cssText = TIP_STYLE;

    function move(e) {
      var pt = toPicture(d, img.getBoundingClientRect(), e.clientX, e.clientY);
      var hit = cellAt(d, pt.x, pt.y);
      if (!hit) {
        tip.style.display = "none";
        return;
      }
      var box = root.getBoundingClientRect();
      tip.textContent = tipText(d, q, hit);
      tip.style.left = (e.clientX - box.left + 14) + "px";
      tip.style.top = (e.clientY - box.top + 14) + "px";
      tip.style.display = "block";
    }
    function leave() {
      tip.style.display = "none";
    }
    function zoom() {
      var zoomed = img.getAttribute("data-z") !== "1", s = zoomStyle(d, zoomed);
      img.setAttribute("data-z", zoomed ? "1" : "0");
      img.style.maxWidth = s.maxWidth;
      img.style.width = s.width;
      img.style.cursor = s.cursor;
    }
    return function mount() {
      root.appendChild(tip);
      img.addEventListener("mousemove", move);
      img.addEventListener("mouseleave", leave);
      if (d.z > 1) {
        img.style.cursor = "zoom-in";
        img.addEventListener("click", zoom);
      }
    };
  }

  /* Finds the figure of this script (its closest [data-lp-id], else the first one with
   * this id not yet enhanced) and enhances it once: data-lp-on="1" when the live view is
   * in place, "failed" when it could not be built (a warning says why). Returns the root. */
  function start(doc, script, id) {
    var root = script && script.closest ? script.closest("[data-lp-id]") : null;
    if (!root) root = doc.querySelector('[data-lp-id="' + id + '"]:not([data-lp-on])');
    if (!root || root.getAttribute("data-lp-on")) return null;
    try {
      build(root, doc)();
      root.setAttribute("data-lp-on", "1");
    } catch (e) {
      root.setAttribute("data-lp-on", "failed");
      console.warn("loupe: heatmap " + id + " keeps its static picture:", e);
    }
    return root;
  }

  if (typeof module !== "undefined" && module.exports) {
    module.exports = { checkLayout, decodeIndices, cellValue, formatValue, axisLabel, cellAt,
      tipText, toPicture, zoomStyle, build, start };
  }
  if (typeof document !== "undefined") start(document, document.currentScript, "@ID@");
})();
