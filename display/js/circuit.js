/* The circuit diagram (display/circuit.c) where scripts run: hovering a node's glyph shows
 * a tooltip with what it is (layer, feature, position and token), its label, activation
 * and influence; a logit shows its token and probability. A click selects a node: its
 * edges drawn strong on a canvas over the picture, its inputs and outputs (by sign,
 * strongest first) in a side panel; ctrl/cmd-click pins nodes into the pinned panel
 * (top layer first), "group pinned" makes them a named supernode, "copy as Lua" writes
 * the view as g:pin{...} / g:supernode(...) lines; a slider hides the features and errors
 * below an influence, check boxes switch edge signs, errors and dense features; Escape
 * clears the selection, then the pins. Pins and supernodes given from Lua come in the
 * data's "state".
 *
 * Without scripts the picture, its tables and the <img> tooltip are all there; this script
 * only adds to them. The output holds the picture (an <img>), the graph's data (a
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
    var e = d.edges;
    if (!e || !Array.isArray(e.src)) throw new Error("no edges in the data");
    ["dst", "w", "share"].forEach(function (f) {
      if (!Array.isArray(e[f]) || e[f].length !== e.src.length) throw new Error("edges." + f + " must have " + e.src.length + " entries");
    });
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

  /* The drawn node nearest to (x, y) within HIT picture units, or -1; vis (optional, from
   * visibleNodes): only the nodes shown. */
  function hitNode(d, x, y, vis) {
    var best = -1, bd = HIT * HIT;
    for (var i = 0; i < d.n_nodes; i++) {
      if (vis && !vis[i]) continue;
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

  /* ---- the interactive view (issue 18): edges of a node, pruning, pins and supernodes ---- */

  var EDGE_POS = "#1b9e77", EDGE_NEG = "#8e44ad"; // circuit.c's edge colours
  var FILL = ["#f2c14e", "#bdbdbd", "#7fb2e5", "#e8836b"]; // circuit.c's glyph fills by kind
  var DENSE = 0.01;   // a feature active on more than 1% of tokens is "dense"
  var WBUCKETS = 8;   // edge widths drawn on the canvas, in this many steps
  var PANEL_ROWS = 12; // inputs or outputs of one sign listed in the side panel
  var BLANK = new RegExp("^\\s*$");
  var PIN_LINE = new RegExp("^\\s*[A-Za-z_][\\w.]*:pin\\{([\\d,\\s]*)\\}\\s*$");
  var GROUP_LINE = new RegExp('^\\s*[A-Za-z_][\\w.]*:supernode\\("((?:[^"\\\\]|\\\\.)*)", \\{([\\d,\\s]*)\\}\\)\\s*$');

  /* The edges at each node: ins[i] and outs[i] are lists of edge indices into d.edges
   * (edges naming a node out of range are left out). One pass over the edge arrays. */
  function adjacency(d) {
    var n = d.n_nodes, E = d.edges, m = E.src.length, ins = new Array(n), outs = new Array(n);
    for (var i = 0; i < n; i++) {
      ins[i] = [];
      outs[i] = [];
    }
    for (var k = 0; k < m; k++) {
      var s = E.src[k], t = E.dst[k];
      if (s >= 0 && s < n && t >= 0 && t < n && s === Math.floor(s) && t === Math.floor(t)) {
        outs[s].push(k);
        ins[t].push(k);
      }
    }
    return { ins: ins, outs: outs, m: m };
  }

  /* Node i's inputs and outputs, each split by sign: {inputs: {pos, neg}, outputs: {pos,
   * neg}}, entries {node, w, share, edge}, positive ones largest first, negative ones most
   * negative first (ties by node). Edges with a non-finite weight (null) are left out. */
  function edgesOf(d, adj, i) {
    function side(list, other) {
      var pos = [], neg = [];
      for (var j = 0; j < list.length; j++) {
        var k = list[j], w = d.edges.w[k];
        if (typeof w !== "number") continue;
        var sh = d.edges.share[k];
        (w < 0 ? neg : pos).push({ node: d.edges[other][k], w: w, share: typeof sh === "number" ? sh : null, edge: k });
      }
      pos.sort(function (a, b) { return b.w - a.w || a.node - b.node; });
      neg.sort(function (a, b) { return a.w - b.w || a.node - b.node; });
      return { pos: pos, neg: neg };
    }
    return { inputs: side(adj.ins[i], "src"), outputs: side(adj.outs[i], "dst") };
  }

  /* How an edge is drawn, as circuit.c draws it: green when w >= 0, purple when negative,
   * width 0.6 + 3.4 * share (the share of the target's input, clamped to [0, 1]). */
  function edgeStyle(w, share) {
    var s = typeof share === "number" && share > 0 ? (share < 1 ? share : 1) : 0;
    return { color: w < 0 ? EDGE_NEG : EDGE_POS, width: 0.6 + 3.4 * s };
  }

  /* The slider's top: the largest finite influence of a feature or error (0 if none). */
  function sliderMax(d) {
    var mx = 0, N = d.nodes;
    for (var i = 0; i < d.n_nodes; i++)
      if ((N.kind[i] === 0 || N.kind[i] === 1) && typeof N.infl[i] === "number" && N.infl[i] > mx) mx = N.infl[i];
    return mx;
  }

  /* Which nodes are shown under filter f: {minInfl, hideDense, denseAbove, errors}. The
   * slider hides the features and errors whose influence is below minInfl (an unknown
   * influence counts as 0); embeddings and logits always stay. hideDense hides features
   * whose density (nodes.dens, when the data has it) is above denseAbove (default 1%);
   * errors === false hides the error nodes. A Uint8Array, 1 = shown. */
  function visibleNodes(d, f) {
    var n = d.n_nodes, N = d.nodes, v = new Uint8Array(n);
    var dens = Array.isArray(N.dens) && N.dens.length === n ? N.dens : null;
    var above = typeof f.denseAbove === "number" ? f.denseAbove : DENSE;
    for (var i = 0; i < n; i++) {
      var k = N.kind[i];
      if (k === 2 || k === 3) {
        v[i] = 1;
        continue;
      }
      var inf = typeof N.infl[i] === "number" ? N.infl[i] : 0;
      if (f.minInfl > 0 && inf < f.minInfl) continue;
      if (k === 1 && f.errors === false) continue;
      if (k === 0 && f.hideDense && dens && typeof dens[i] === "number" && dens[i] > above) continue;
      v[i] = 1;
    }
    return v;
  }

  /* Whether edge k is shown: both ends shown, a finite weight, its sign switched on
   * (f.pos, f.neg: false hides the positive or negative edges). */
  function edgeVisible(d, k, vis, f) {
    var s = d.edges.src[k], t = d.edges.dst[k], w = d.edges.w[k];
    if (typeof w !== "number" || !vis[s] || !vis[t]) return false;
    return w < 0 ? f.neg !== false : f.pos !== false;
  }

  /* ---- state: pinned nodes and supernodes (0-based node indices here; 1-based in Lua) ---- */

  function newState() {
    return { pinned: [], groups: [] };
  }

  function sortedIds(ids, n) {
    var seen = {}, out = [];
    for (var j = 0; j < ids.length; j++) {
      var i = ids[j];
      if (typeof i === "number" && i === Math.floor(i) && i >= 0 && (n === undefined || i < n) && !seen[i]) {
        seen[i] = 1;
        out.push(i);
      }
    }
    return out.sort(function (a, b) { return a - b; });
  }

  /* Pins node i, or unpins it when pinned. */
  function togglePin(st, i) {
    var j = st.pinned.indexOf(i);
    if (j >= 0) st.pinned.splice(j, 1);
    else st.pinned = sortedIds(st.pinned.concat([i]));
    return st;
  }

  /* Groups ids into a supernode named name (blank: "group N"); returns it, or null when
   * there is nothing to group. The members stay pinned. */
  function group(st, name, ids) {
    ids = sortedIds(ids);
    if (!ids.length) return null;
    name = String(name === null || name === undefined ? "" : name).trim() || "group " + (st.groups.length + 1);
    var g = { name: name.slice(0, 200), ids: ids };
    st.groups.push(g);
    return g;
  }

  /* The state the data brings from Lua (g:pin, g:supernode): d.state = {pinned: [i..],
   * supernodes: [[name, i, ..], ..]}, indices 0-based; what is malformed is left out. */
  function stateFromData(d) {
    var st = newState(), s = d.state, n = d.n_nodes;
    if (!s || typeof s !== "object") return st;
    if (Array.isArray(s.pinned)) st.pinned = sortedIds(s.pinned, n);
    if (Array.isArray(s.supernodes))
      s.supernodes.forEach(function (g) {
        if (Array.isArray(g) && typeof g[0] === "string") {
          var ids = sortedIds(g.slice(1), n);
          if (ids.length) st.groups.push({ name: g[0], ids: ids });
        }
      });
    return st;
  }

  /* A Lua string literal of s: quotes, backslashes and control characters escaped. */
  function luaString(s) {
    var out = '"';
    s = String(s);
    for (var k = 0; k < s.length; k++) {
      var c = s.charCodeAt(k), ch = s.charAt(k);
      if (ch === '"' || ch === "\\") out += "\\" + ch;
      else if (ch === "\n") out += "\\n";
      else if (c < 32 || c === 127) out += "\\" + ("00" + c).slice(-3);
      else out += ch;
    }
    return out + '"';
  }

  /* The Lua that gives graph v (default "g") this state: g:pin{...} (which replaces the
   * pins) and one g:supernode("name", {...}) per group, 1-based node indices. */
  function stateToLua(st, v) {
    v = v || "g";
    var lines = [];
    function ids(a) { return a.map(function (i) { return i + 1; }).join(", "); }
    lines.push(v + ":pin{" + ids(st.pinned) + "}");
    st.groups.forEach(function (g) {
      lines.push(v + ":supernode(" + luaString(g.name) + ", {" + ids(g.ids) + "})");
    });
    return lines.join("\n");
  }

  /* The state back from stateToLua's text (the inverse, for the tests and for pasting);
   * throws on a line it does not know. */
  function stateFromLua(text) {
    var st = newState();
    function ids(s) {
      return s.trim() === "" ? [] : s.split(",").map(function (x) { return Number(x.trim()) - 1; });
    }
    function unquote(s) {
      return s.replace(new RegExp('\\\\(\\d{3}|n|"|\\\\)', "g"), function (m, e) {
        return e === "n" ? "\n" : e === '"' || e === "\\" ? e : String.fromCharCode(parseInt(e, 10));
      });
    }
    String(text).split("\n").forEach(function (line) {
      var m;
      if (BLANK.test(line)) return;
      if ((m = PIN_LINE.exec(line))) st.pinned = sortedIds(ids(m[1]));
      else if ((m = GROUP_LINE.exec(line)))
        st.groups.push({ name: unquote(m[1]), ids: sortedIds(ids(m[2])) });
      else throw new Error("not a pin or supernode line: " + line);
    });
    return st;
  }

  /* A short name of node i: "L3 #123", "L3 error @6", "embedding ␣Mara", "logit ␣Oslo". */
  function nodeName(d, i) {
    var N = d.nodes, k = N.kind[i];
    if (k === 0) return "L" + N.layer[i] + " #" + N.feature[i] + " @" + N.pos[i];
    if (k === 1) return "L" + N.layer[i] + " error @" + N.pos[i];
    if (k === 2) return "embedding " + showToken(tokenAt(d, N.pos[i])) + " @" + N.pos[i];
    return "logit " + showToken(N.label[i]) + " @" + N.pos[i];
  }

  /* The side panel's rows for a list from edgesOf: [{node, text}], at most max of them
   * (text: weight, name, label cut to 60 characters). */
  function panelRows(d, list, max) {
    var out = [];
    for (var j = 0; j < list.length && j < max; j++) {
      var e = list[j], lab = d.nodes.kind[e.node] === 0 ? d.nodes.label[e.node] : null;
      out.push({ node: e.node, text: num(e.w) + "  " + nodeName(d, e.node) + (lab ? "  " + String(lab).slice(0, 60) : "") });
    }
    return out;
  }

  /* The shown edges among ks (edge indices; null: all) on g (in picture units), batched
   * by colour and width step: a few strokes for 100,000 edges. With a selection
   * (view.sel >= 0) its edges are strong and the others faint. */
  function drawEdges(g, d, view, ks) {
    var X = view.xy.X, Y = view.xy.Y, E = d.edges, sel = view.sel, m = ks ? ks.length : E.src.length;
    var buckets = {};
    for (var j0 = 0; j0 < m; j0++) {
      var k = ks ? ks[j0] : j0;
      if (!edgeVisible(d, k, view.vis, view.f)) continue;
      var s = E.src[k], t = E.dst[k];
      if (isNaN(X[s]) || isNaN(X[t])) continue;
      var hl = sel >= 0 && (s === sel || t === sel) ? 1 : 0;
      var sh = typeof E.share[k] === "number" ? E.share[k] : 0;
      var b = Math.min(WBUCKETS - 1, Math.max(0, Math.floor(sh * WBUCKETS)));
      var key = (E.w[k] < 0 ? 1 : 0) + 2 * b + 2 * WBUCKETS * hl;
      (buckets[key] || (buckets[key] = [])).push(s, t);
    }
    Object.keys(buckets).map(Number).sort(function (a, b) { return a - b; }).forEach(function (key) {
      var hl = key >= 2 * WBUCKETS, b = (key % (2 * WBUCKETS)) >> 1, st = edgeStyle(key & 1 ? -1 : 1, (b + 0.5) / WBUCKETS);
      var list = buckets[key];
      g.beginPath();
      for (var j = 0; j < list.length; j += 2) {
        g.moveTo(X[list[j]], Y[list[j]]);
        g.lineTo(X[list[j + 1]], Y[list[j + 1]]);
      }
      g.strokeStyle = st.color;
      g.lineWidth = hl ? st.width + 0.8 : st.width;
      g.globalAlpha = hl ? 0.95 : sel >= 0 ? 0.08 : 0.5;
      g.stroke();
    });
  }

  /* Draws the graph as view shows it on a 2D context g whose canvas is cw x ch pixels:
   * view = {xy: {X, Y, tokX} (Float64Arrays, NaN: not drawn), vis, f, sel, pinned (a set),
   * bg, ink, and optionally layer (a canvas of the shown edges, drawEdges with no
   * selection) with adj}: with a layer, a click redraws only the selected node's edges. */
  function draw(g, d, view, cw, ch) {
    var sel = view.sel, X = view.xy.X, Y = view.xy.Y;
    g.setTransform(cw / d.W, 0, 0, ch / d.H, 0, 0);
    g.globalAlpha = 1;
    g.fillStyle = view.bg;
    g.fillRect(0, 0, d.W, d.H);
    if (view.layer) { // the shown edges drawn once, dimmed under a selection
      g.globalAlpha = sel >= 0 ? 0.16 : 1;
      g.drawImage(view.layer, 0, 0, d.W, d.H);
      if (sel >= 0) drawEdges(g, d, view, view.adj.ins[sel].concat(view.adj.outs[sel]));
    } else drawEdges(g, d, view, null);
    g.globalAlpha = 1;
    g.lineWidth = 0.8;
    for (var i = 0; i < d.n_nodes; i++) {
      if (!view.vis[i] || isNaN(X[i])) continue;
      var kind = d.nodes.kind[i], pin = view.pinned[i], r = 4.5;
      g.fillStyle = FILL[kind] || FILL[0];
      g.strokeStyle = pin ? view.ink : "#555555";
      g.lineWidth = pin ? 2 : 0.8;
      g.beginPath();
      if (kind === 0) g.arc(X[i], Y[i], r, 0, 2 * Math.PI);
      else if (kind === 1) {
        g.moveTo(X[i], Y[i] - r);
        g.lineTo(X[i] + r, Y[i]);
        g.lineTo(X[i], Y[i] + r);
        g.lineTo(X[i] - r, Y[i]);
        g.closePath();
      } else g.rect(X[i] - r, Y[i] - r, 2 * r, 2 * r);
      g.fill();
      g.stroke();
    }
    if (sel >= 0 && !isNaN(X[sel])) {
      g.strokeStyle = view.ink;
      g.lineWidth = 1.5;
      g.beginPath();
      g.arc(X[sel], Y[sel], 8, 0, 2 * Math.PI);
      g.stroke();
    }
    g.font = "9px monospace";
    g.textAlign = "center";
    g.fillStyle = view.ink;
    var TX = view.xy.tokX;
    for (var p = 0; p < d.tpos.length; p++) {
      if (isNaN(TX[p])) continue;
      var room = 80; // as many characters as fit between the neighbouring tokens (9px monospace)
      if (p > 0 && !isNaN(TX[p - 1])) room = Math.min(room, TX[p] - TX[p - 1]);
      if (p + 1 < TX.length && !isNaN(TX[p + 1])) room = Math.min(room, TX[p + 1] - TX[p]);
      var fit = Math.max(1, Math.floor(room / 5.6) - 1), text = showToken(d.tokens[p]);
      g.fillText(text.length > fit ? text.slice(0, Math.max(1, fit - 1)) + "\u2026" : text, TX[p], d.rowy[0] + 24);
    }
  }

  var BAR_STYLE = "display:flex;flex-wrap:wrap;gap:8px;align-items:center;font:12px sans-serif;margin:4px 0";
  var PANEL_STYLE = "font:12px monospace;white-space:pre-wrap;margin:4px 0;max-height:360px;overflow:auto;" +
    "border-top:1px solid var(--jp-border-color2,#ddd)";

  /* Builds the interactive view of figure root without touching the page; returns the
   * function that puts it in place. Throws when the figure or its data are not as
   * expected. In place: the hover tooltip; a click selects a node (its edges drawn strong,
   * its inputs and outputs in the side panel), ctrl/cmd-click pins it (the pinned panel,
   * bottom to top), "group" makes the pinned nodes a supernode, the slider prunes by
   * influence, the check boxes switch edge signs, error nodes and dense features, "copy as
   * Lua" gives the pins and groups as Lua, Escape clears the selection (then the pins).
   * The static picture stays underneath; a canvas over it draws the view whenever it
   * differs from the picture. */
  function build(root, doc) {
    var data = root.querySelector("script[data-lp-circuit]");
    var img = root.querySelector("img");
    if (!data || !img) throw new Error("the figure has no data or no picture");
    var d = JSON.parse(data.textContent);
    checkData(d);
    var adj = adjacency(d), st = stateFromData(d);
    var f = { minInfl: 0, pos: true, neg: true, errors: true, hideDense: false }, sel = -1;
    var vis = visibleNodes(d, f), hasDens = Array.isArray(d.nodes.dens);
    var n = d.n_nodes, X = new Float64Array(n), Y = new Float64Array(n), tokX = new Float64Array(d.tpos.length);
    for (var i = 0; i < n; i++) {
      var p = nodeXY(d, i);
      X[i] = p ? p.x : NaN;
      Y[i] = p ? p.y : NaN;
    }
    for (var j = 0; j < d.tpos.length; j++) {
      tokX[j] = NaN;
      for (var i2 = 0; i2 < n; i2++)
        if (d.nodes.kind[i2] === 2 && d.nodes.pos[i2] === d.tpos[j] && !isNaN(X[i2])) {
          tokX[j] = X[i2];
          break;
        }
    }
    var xy = { X: X, Y: Y, tokX: tokX }, layer = null, layerKey = null;

    function mk(tag, attrs, text) {
      var e = doc.createElement(tag);
      for (var a in attrs) e.setAttribute(a, attrs[a]);
      if (text !== undefined) e.textContent = text;
      return e;
    }
    function clear(e) {
      if (e.replaceChildren) e.replaceChildren();
      else e.textContent = "";
    }
    var tip = mk("div", {});
    tip.style.cssText = TIP_STYLE;
    var canvas = mk("canvas", { "data-lp-canvas": "1" });
    canvas.style.cssText = "position:absolute;pointer-events:none;display:none";
    var bar = mk("div", { "data-lp-controls": "1" });
    bar.style.cssText = BAR_STYLE;
    var mx = sliderMax(d);
    var slider = mk("input", { type: "range", min: "0", max: String(mx), step: String(mx > 0 ? mx / 200 : 1), value: "0",
      "data-lp-slider": "1", "aria-label": "prune by influence" });
    var sval = mk("span", { "data-lp-slider-value": "1" }, "0");
    var lab = mk("label", {}, "influence \u2265 ");
    bar.appendChild(lab);
    bar.appendChild(slider);
    bar.appendChild(sval);
    function box(key, text, on, attr) {
      var l = mk("label", {}), c = mk("input", { type: "checkbox", "data-lp-toggle": attr });
      c.checked = on;
      l.appendChild(c);
      l.appendChild(mk("span", {}, " " + text));
      bar.appendChild(l);
      c.addEventListener("change", function () {
        f[key] = !!c.checked;
        refresh();
      });
      return c;
    }
    box("pos", "positive edges", true, "pos");
    box("neg", "negative edges", true, "neg");
    box("errors", "errors", true, "errors");
    if (hasDens) box("hideDense", "hide dense features", false, "dense");
    var gname = mk("input", { type: "text", placeholder: "supernode name", "data-lp-group-name": "1", size: "14" });
    var gbtn = mk("button", { type: "button", "data-lp-group": "1" }, "group pinned");
    var cbtn = mk("button", { type: "button", "data-lp-copy": "1" }, "copy as Lua");
    var xbtn = mk("button", { type: "button", "data-lp-clear": "1" }, "clear");
    [gname, gbtn, cbtn, xbtn].forEach(function (e) { bar.appendChild(e); });
    var lua = mk("textarea", { readonly: "readonly", rows: "3", "data-lp-lua": "1" });
    lua.style.cssText = "display:none;font:12px monospace;width:100%;box-sizing:border-box";
    var panel = mk("div", { "data-lp-panel": "1" });
    panel.style.cssText = PANEL_STYLE;
    var pins = mk("div", { "data-lp-pinned": "1" });
    pins.style.cssText = PANEL_STYLE;

    function section(parent, title, rows, attr) {
      parent.appendChild(mk("div", { style: "font-weight:bold;margin-top:4px" }, title));
      var ul = mk("div", { "data-lp-list": attr });
      rows.forEach(function (r) {
        var row = mk("div", { "data-node": String(r.node) }, r.text);
        row.style.cursor = "pointer";
        row.addEventListener("click", function () { // select it (also a node the picture has no room for)
          if (vis[r.node]) sel = r.node;
          refresh();
        });
        ul.appendChild(row);
      });
      parent.appendChild(ul);
    }
    function renderPanel() {
      clear(panel);
      if (sel >= 0) {
        var io = edgesOf(d, adj, sel);
        panel.appendChild(mk("div", { "data-lp-selected": String(sel) }, nodeText(d, sel)));
        section(panel, "inputs +", panelRows(d, io.inputs.pos, PANEL_ROWS), "in-pos");
        section(panel, "inputs \u2212", panelRows(d, io.inputs.neg, PANEL_ROWS), "in-neg");
        section(panel, "outputs +", panelRows(d, io.outputs.pos, PANEL_ROWS), "out-pos");
        section(panel, "outputs \u2212", panelRows(d, io.outputs.neg, PANEL_ROWS), "out-neg");
      }
      clear(pins);
      if (st.pinned.length || st.groups.length) {
        var order = st.pinned.slice().sort(function (a, b) { return rowOf(d, b) - rowOf(d, a) || d.nodes.pos[a] - d.nodes.pos[b] || a - b; });
        section(pins, "pinned (top layer first)", order.map(function (i) { return { node: i, text: nodeName(d, i) }; }), "pinned");
        st.groups.forEach(function (g, gi) {
          section(pins, "supernode " + g.name, g.ids.map(function (i) { return { node: i, text: nodeName(d, i) }; }), "group-" + gi);
        });
      }
    }
    function isDefault() {
      return sel < 0 && !st.pinned.length && f.minInfl <= 0 && f.pos && f.neg && f.errors && !f.hideDense;
    }
    function css(name, dflt) {
      var w = doc.defaultView;
      var v = w && w.getComputedStyle ? w.getComputedStyle(root).getPropertyValue(name) : "";
      return v && v.trim() ? v.trim() : dflt;
    }
    function redraw() {
      var g = canvas.getContext ? canvas.getContext("2d") : null;
      if (!g || isDefault()) {
        canvas.style.display = "none";
        return;
      }
      var r = img.getBoundingClientRect(), dpr = (doc.defaultView && doc.defaultView.devicePixelRatio) || 1;
      canvas.width = Math.max(1, Math.round(r.width * dpr));
      canvas.height = Math.max(1, Math.round(r.height * dpr));
      canvas.style.width = r.width + "px";
      canvas.style.height = r.height + "px";
      canvas.style.left = (img.offsetLeft || 0) + "px";
      canvas.style.top = (img.offsetTop || 0) + "px";
      canvas.style.display = "block";
      var pinned = new Uint8Array(n);
      st.pinned.forEach(function (i) { pinned[i] = 1; });
      var key = [f.minInfl, f.pos, f.neg, f.errors, f.hideDense, canvas.width, canvas.height].join(" ");
      if (layerKey !== key) { // the edges change only with the filters and the size
        layer = doc.createElement("canvas");
        layer.width = canvas.width;
        layer.height = canvas.height;
        var lg = layer.getContext("2d");
        lg.setTransform(canvas.width / d.W, 0, 0, canvas.height / d.H, 0, 0);
        drawEdges(lg, d, { xy: xy, vis: vis, f: f, sel: -1 }, null);
        layerKey = key;
      }
      draw(g, d, { xy: xy, vis: vis, f: f, sel: sel, pinned: pinned, bg: css("--jp-layout-color0", "#ffffff"),
        ink: css("--jp-ui-font-color1", "#000000"), layer: layer, adj: adj }, canvas.width, canvas.height);
    }
    function refresh() {
      vis = visibleNodes(d, f);
      if (sel >= 0 && !vis[sel]) sel = -1;
      root.setAttribute("data-lp-selected", String(sel));
      renderPanel();
      redraw();
    }
    function hit(e) {
      var pt = toPicture(d, img.getBoundingClientRect(), e.clientX, e.clientY);
      return hitNode(d, pt.x, pt.y, vis);
    }

    function move(e) {
      var i = hit(e);
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
    function click(e) {
      var i = hit(e);
      if (e.ctrlKey || e.metaKey) {
        if (i >= 0) togglePin(st, i);
      } else sel = i;
      refresh();
      if (root.focus) root.focus({ preventScroll: true });
    }
    function key(e) {
      if (e.key !== "Escape") return;
      if (sel >= 0) sel = -1;
      else st.pinned = [];
      refresh();
    }
    return function mount() {
      // the controls above the picture, the side panel on its right: [bar] [pic | side]
      var pic = img.parentNode, host = pic && pic.parentNode;
      var row = mk("div", { "data-lp-row": "1" }), side = mk("div", { "data-lp-side": "1" });
      row.style.cssText = "display:flex;align-items:flex-start;gap:8px";
      side.style.cssText = "flex:0 0 340px;max-width:45%;min-width:0";
      pic.style.position = "relative";
      pic.style.flex = "1 1 auto";
      pic.style.minWidth = "0";
      pic.appendChild(canvas);
      if (host && host.insertBefore) {
        host.insertBefore(bar, pic);
        host.insertBefore(row, pic);
      } else {
        root.appendChild(bar);
        root.appendChild(row);
      }
      row.appendChild(pic);
      row.appendChild(side);
      side.appendChild(lua);
      side.appendChild(panel);
      side.appendChild(pins);
      root.setAttribute("tabindex", "0");
      root.appendChild(tip);
      img.addEventListener("mousemove", move);
      img.addEventListener("mouseleave", leave);
      img.addEventListener("click", click);
      root.addEventListener("keydown", key);
      slider.addEventListener("input", function () {
        f.minInfl = Number(slider.value) || 0;
        sval.textContent = num(f.minInfl);
        refresh();
      });
      gbtn.addEventListener("click", function () {
        if (group(st, gname.value, st.pinned)) gname.value = "";
        refresh();
      });
      xbtn.addEventListener("click", function () {
        st = newState();
        sel = -1;
        refresh();
      });
      cbtn.addEventListener("click", function () {
        lua.value = stateToLua(st);
        lua.textContent = lua.value;
        lua.style.display = "block";
        var nav = doc.defaultView && doc.defaultView.navigator;
        if (nav && nav.clipboard && nav.clipboard.writeText)
          nav.clipboard.writeText(lua.value).catch(function () { return null; }); // the text stays in the box
      });
      refresh();
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
      toPicture, build, start, adjacency, edgesOf, edgeStyle, drawEdges, sliderMax, visibleNodes, edgeVisible,
      newState, togglePin, group, stateFromData, stateToLua, stateFromLua, luaString, draw, panelRows };
  }
  if (typeof document !== "undefined") start(document, document.currentScript, "@ID@");
})();
