/* The feature browser (display/browser.c) where scripts run: a search box over the rows,
 * headers that sort them, and a click on a row that opens that feature's dashboard in a row
 * below it (a second click, or a click on another row, closes it).
 *
 * Without scripts the output is the static table. The C side writes, in the figure: an
 * empty div[data-lp-search] for the search box; the table, whose th[data-k] name the key
 * they sort by and whose body rows carry data-i (the feature), data-index, data-density,
 * data-max (numbers), data-s (the lowercase search text: index, label, top tokens) and
 * data-dash when a dashboard is embedded; the data (a <script type="application/json">):
 *   dash   {"<feature>": the dashboard's HTML (loupe's own, every text in it escaped)}
 * and this script, with "@ID@" replaced by the figure's data-lp-id. Nothing changes until
 * everything is found; if anything throws, the table stays as it is.
 */
(function () {
  "use strict";

  /* Whether a row's search text holds every word of the query (case-insensitive). */
  function matches(text, query) {
    var words = String(query).toLowerCase().split(" ").filter(function (w) { return w.length > 0; });
    return words.every(function (w) { return text.indexOf(w) >= 0; });
  }

  /* The order of rows for key k (numbers in data-<k>): descending unless asc. */
  function order(rows, k, asc) {
    var keyed = rows.map(function (r, n) { return { r: r, n: n, v: parseFloat(r.getAttribute("data-" + k)) }; });
    keyed.sort(function (a, b) {
      var d = (isNaN(a.v) ? -Infinity : a.v) - (isNaN(b.v) ? -Infinity : b.v);
      if (d === 0 || isNaN(d)) return a.n - b.n;
      return asc ? d : -d;
    });
    return keyed.map(function (x) { return x.r; });
  }

  function build(root, doc) {
    var data = root.querySelector('script[type="application/json"]');
    if (!data) throw new Error("the browser has no data");
    var d = JSON.parse(data.textContent);
    if (!d || typeof d.dash !== "object" || d.dash === null) throw new Error("dash must be an object");
    var box = root.querySelector("div[data-lp-search]");
    var body = root.querySelector("tbody");
    if (!box || !body) throw new Error("the browser has no search place or table body");
    var rows = Array.prototype.slice.call(body.querySelectorAll("tr[data-i]"));
    var heads = Array.prototype.slice.call(root.querySelectorAll("th[data-k]"));
    var state = { k: null, asc: false, open: null, detail: null };

    function close() {
      if (state.detail && state.detail.parentNode) state.detail.parentNode.removeChild(state.detail);
      state.detail = null;
      state.open = null;
    }

    function open(tr) {
      var i = tr.getAttribute("data-i");
      var was = state.open;
      close();
      if (was === tr) return;
      var detail = doc.createElement("tr");
      detail.setAttribute("data-lp-detail", i);
      var td = doc.createElement("td");
      td.colSpan = 5;
      if (Object.prototype.hasOwnProperty.call(d.dash, i) && typeof d.dash[i] === "string") {
        td.innerHTML = d.dash[i];
      } else {
        td.textContent = "no dashboard embedded for feature " + i +
          " (only the first rows' are): run sae:feature(" + i + ")";
      }
      detail.appendChild(td);
      var kids = Array.prototype.slice.call(body.children);
      var at = kids.indexOf(tr);
      body.insertBefore(detail, kids[at + 1] || null);
      state.open = tr;
      state.detail = detail;
    }

    function filter(q) {
      close();
      var shown = 0;
      rows.forEach(function (r) {
        var ok = matches(r.getAttribute("data-s") || "", q);
        r.style.display = ok ? "" : "none";
        if (ok) shown++;
      });
      return shown;
    }

    function sortBy(k) {
      close();
      state.asc = state.k === k ? !state.asc : k === "index";
      state.k = k;
      order(rows, k, state.asc).forEach(function (r) { body.appendChild(r); });
      heads.forEach(function (h) {
        var mark = h.getAttribute("data-k") === k ? (state.asc ? " \u25b2" : " \u25bc") : "";
        h.setAttribute("data-lp-sorted", mark ? (state.asc ? "asc" : "desc") : "");
        h.style.textDecoration = mark ? "underline" : "";
      });
    }

    return function mount() {
      var input = doc.createElement("input");
      input.setAttribute("type", "search");
      input.setAttribute("placeholder", "search labels and tokens");
      input.style.cssText = "font-size:12px;margin:0 0 4px 0;width:240px";
      input.addEventListener("input", function () { filter(input.value); });
      box.appendChild(input);
      heads.forEach(function (h) {
        h.style.cursor = "pointer";
        h.addEventListener("click", function () { sortBy(h.getAttribute("data-k")); });
      });
      rows.forEach(function (r) {
        r.style.cursor = "pointer";
        r.addEventListener("click", function () { open(r); });
      });
      root.lpBrowser = { filter: filter, sortBy: sortBy, open: open, input: input };
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
      console.warn("loupe: feature browser " + id + " keeps its static table:", e);
    }
    return root;
  }

  if (typeof module !== "undefined" && module.exports) {
    module.exports = { matches, order, build, start };
  }
  if (typeof document !== "undefined") start(document, document.currentScript, "@ID@");
})();
