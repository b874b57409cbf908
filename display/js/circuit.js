/* The circuit diagram (display/circuit.c) where scripts run: hovering a node's glyph shows
 * a tooltip with what it is (layer, feature, position and token), its label, activation
 * and influence; a logit shows its token and probability.
 *
 * Without scripts the picture, its tables and the <img> tooltip are all there; this script
 * only adds the hover. The output holds the picture (an <img>), the graph's data (a
 * <script type="application/json" data-lp-circuit="1">, format in display/circuit.h:
 * column arrays nodes.kind/layer/pos/feature/act/infl/prob/label/x, rowy, tokens at tpos)
 * and this script, in which the C side replaces "@ID@" by the figure's data-lp-id.
 *
 * Everything is read and checked before the page changes; if any of it throws, the
 * diagram stays as it is. Node loads this file for the unit tests (tests/js/circuit.test.js):
 * the pure functions are exported there, and nothing runs without a document.
 */
(function () {
  "use strict";

  var TIP_STYLE = "position:absolute;pointer-events:none;display:none;padding:2px 6px;" +
    "border-radius:3px;font:12px monospace;white-space:pre-wrap;max-width:420px;z-index:10;" +
    "background:var(--jp-layout-color0,#fff);color:var(--jp-ui-font-color1,#000);" +
    "border:1px solid var(--jp-border-color1,#999)";
  var HIT = 7; // picture units from the centre of a glyph that still hover it
  var KINDS = ["feature", "error", "embedding", "logit"];
  var FIELDS = ["kind", "layer", "pos", "feature", "act", "infl", "prob", "label", "x"];

  /* Throws unless d is graph data this script can read; returns the number of nodes. */
  function checkData(d) {
    var nodes = d.nodes, n = d.n_nodes;
    if (!nodes || !(n >= 0)) throw new Error("no nodes in the data");
    FIELDS.forEach(function (f) {
      if (!Array.isArray(nodes[f]) || nodes[f].length !== n)
        throw new Error("nodes." + f + " must have " + n + " entries");
    });
    if (!Array.isArray(d.rowy) || d.rowy.length !== d.L + 2) throw new Error("rowy must have L + 2 entries");
    if (!Array.isArray(d.tokens) || !Array.isArray(d.tpos) || d.tokens.length !== d.tpos.length)
      throw new Error("as many tokens as token positions expected");
    if (!(d.W > 0 && d.H > 0)) throw new Error("the picture has no size");
    return n;
  }

  /* A token as every loupe figure shows it (display/text.c, lp_token_show); the same
   * function as tokens.js's showToken. */
  function showToken(t) {
    var out = "";
    t = t === null || t === undefined ? "" : String(t);
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

  /* A number to 4 significant digits; null (NaN or infinite in the graph) as "NaN/Inf". */
  function num(v) {
    return v === null || v === undefined ? "NaN/Inf" : String(+Number(v).toPrecision(4));
  }

  /* The row of node i: 0 embeddings, 1 + layer, L + 1 logits. */
  function rowOf(d, i) {
    var k = d.nodes.kind[i];
    return k === 2 ? 0 : k === 3 ? d.L + 1 : d.nodes.layer[i] + 1;
  }

  /* The centre of node i's glyph in picture units, or null when it is not drawn. */
  function nodeXY(d, i) {
    var x = d.nodes.x[i], y = d.rowy[rowOf(d, i)];
    return x === null || typeof x !== "number" || typeof y !== "number" ? null : { x: x, y: y };
  }

  /* The drawn node nearest to (x, y) within HIT picture units, or -1. */
  function hitNode(d, x, y) {
    var best = -1, bd = HIT * HIT;
    for (var i = 0; i < d.n_nodes; i++) {
      var p = nodeXY(d, i);
      if (!p) continue;
      var dd = (p.x - x) * (p.x - x) + (p.y - y) * (p.y - y);
      if (dd <= bd) {
        best = i;
        bd = dd;
      }
    }
    return best;
  }

  /* The token at position pos, or "" when the data has none for it. */
  function tokenAt(d, pos) {
    var j = d.tpos.indexOf(pos);
    return j < 0 ? "" : d.tokens[j];
  }

  /* The tooltip of node i: what and where it is, its label, its numbers. */
  function nodeText(d, i) {
    var n = d.nodes, k = n.kind[i], pos = n.pos[i], label = n.label[i];
    var where = "@" + pos + " " + showToken(tokenAt(d, pos));
    var head;
    if (k === 3) return "logit " + showToken(label) + " " + where + "\np = " + num(n.prob[i]) +
      "\ninfluence " + num(n.infl[i]);
    if (k === 0) head = "L" + n.layer[i] + " feature " + n.feature[i] + " " + where;
    else if (k === 1) head = "L" + n.layer[i] + " error " + where;
    else head = "embedding " + where;
    return head + (label ? "\n" + label : "") +
      (k === 0 ? "\nactivation " + num(n.act[i]) : "") + "\ninfluence " + num(n.infl[i]);
  }

  /* A mouse position (client pixels) in the picture's units; rect: the <img>'s box. */
  function toPicture(d, rect, clientX, clientY) {
    return { x: (clientX - rect.left) * d.W / rect.width, y: (clientY - rect.top) * d.H / rect.height };
  }

  /* Builds the hover of figure root without touching the page; returns the function that
   * puts it in place. Throws when the figure or its data are not as expected. */
  function build(root, doc) {
    var data = root.querySelector("script[data-lp-circuit]");
    var img = root.querySelector("img");
    if (!data || !img) throw new Error("the figure has no data or no picture");
    var d = JSON.parse(data.textContent);
    checkData(d);
    var tip = doc.createElement("div");
    tip.style.cssText = TIP_STYLE;

    function move(e) {
      var pt = toPicture(d, img.getBoundingClientRect(), e.clientX, e.clientY);
      var i = hitNode(d, pt.x, pt.y);
      if (i < 0) {
        tip.style.display = "none";
        img.style.cursor = "";
        return;
      }
      var box = root.getBoundingClientRect();
      tip.textContent = nodeText(d, i);
      tip.setAttribute("data-node", String(i));
      tip.style.left = (e.clientX - box.left + 14) + "px";
      tip.style.top = (e.clientY - box.top + 14) + "px";
      tip.style.display = "block";
      img.style.cursor = "pointer";
    }
    function leave() {
      tip.style.display = "none";
    }
    return function mount() {
      root.appendChild(tip);
      img.addEventListener("mousemove", move);
      img.addEventListener("mouseleave", leave);
    };
  }

  /* Finds the figure of this script (its closest [data-lp-id], else the first one with
   * this id not yet enhanced) and enhances it once: data-lp-on="1" when the hover is in
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
      console.warn("loupe: circuit diagram " + id + " keeps its static picture:", e);
    }
    return root;
  }

  if (typeof module !== "undefined" && module.exports) {
    module.exports = { KINDS, checkData, showToken, num, rowOf, nodeXY, hitNode, tokenAt, nodeText,
      toPicture, build, start };
  }
  if (typeof document !== "undefined") start(document, document.currentScript, "@ID@");
})();
