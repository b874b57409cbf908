/* A small stand-in for the browser's DOM, enough for the figure scripts' set-up code
 * (display/js/*.js) to run under Node: elements with attributes, children, style,
 * listeners and a settable bounding box; querySelector(All)/closest/matches for the
 * selectors the scripts use (tag, [attr], [attr="value"], :not([attr])). Not a DOM: an
 * unsupported selector throws, so a script that starts using one fails its tests loudly. */
"use strict";

function parseSelector(sel) {
  const m = /^([a-z]*)((?:\[[^\]]+\])*)((?::not\(\[[\w-]+\]\))?)$/.exec(sel);
  if (!m || sel === "") throw new Error("fake DOM: selector not supported: " + sel);
  const attrs = [...m[2].matchAll(/\[([\w-]+)(?:="([^"]*)")?\]/g)].map((a) => [a[1], a[2]]);
  const not = m[3] ? /\[([\w-]+)\]/.exec(m[3])[1] : null;
  return (e) =>
    (!m[1] || e.tagName === m[1]) &&
    attrs.every(([n, v]) => (v === undefined ? e.getAttribute(n) !== null : e.getAttribute(n) === v)) &&
    !(not && e.getAttribute(not) !== null);
}

class FakeElement {
  constructor(doc, tag, attrs = {}) {
    this.ownerDocument = doc;
    this.tagName = tag;
    this.attrs = new Map(Object.entries(attrs).map(([k, v]) => [k, String(v)]));
    this.children = [];
    this.parentNode = null;
    this.style = {};
    this.listeners = new Map();
    this.textContent = "";
    this.rect = { left: 0, top: 0, width: 0, height: 0 };
  }
  getAttribute(n) {
    return this.attrs.has(n) ? this.attrs.get(n) : null;
  }
  setAttribute(n, v) {
    this.attrs.set(n, String(v));
  }
  replaceChildren(...cs) {
    for (const c of this.children) c.parentNode = null;
    this.children = [];
    for (const c of cs) this.appendChild(c);
  }
  appendChild(c) {
    if (c.parentNode) c.parentNode.removeChild(c);
    c.parentNode = this;
    this.children.push(c);
    return c;
  }
  removeChild(c) {
    const at = this.children.indexOf(c);
    if (at < 0) throw new Error("fake DOM: removeChild of a node that is not a child");
    this.children.splice(at, 1);
    c.parentNode = null;
    return c;
  }
  insertBefore(c, ref) {
    if (ref === null || ref === undefined) return this.appendChild(c);
    if (c.parentNode) c.parentNode.removeChild(c);
    const at = this.children.indexOf(ref);
    if (at < 0) throw new Error("fake DOM: insertBefore a node that is not a child");
    c.parentNode = this;
    this.children.splice(at, 0, c);
    return c;
  }
  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(fn);
  }
  /* Calls the listeners of type with event ev; returns how many there were. */
  dispatch(type, ev = {}) {
    const fns = this.listeners.get(type) || [];
    for (const fn of fns) fn(ev);
    return fns.length;
  }
  listenerCount() {
    let n = 0;
    for (const fns of this.listeners.values()) n += fns.length;
    return n;
  }
  getBoundingClientRect() {
    return this.rect;
  }
  matches(sel) {
    return parseSelector(sel)(this);
  }
  closest(sel) {
    const match = parseSelector(sel);
    for (let e = this; e; e = e.parentNode) if (match(e)) return e;
    return null;
  }
  *descendants() {
    for (const c of this.children) {
      yield c;
      yield* c.descendants();
    }
  }
  querySelectorAll(sel) {
    const match = parseSelector(sel);
    return [...this.descendants()].filter(match);
  }
  querySelector(sel) {
    return this.querySelectorAll(sel)[0] || null;
  }
}

class FakeDocument {
  constructor() {
    this.body = new FakeElement(this, "body");
  }
  createElement(tag) {
    return new FakeElement(this, tag);
  }
  querySelector(sel) {
    return this.body.querySelector(sel);
  }
}

/* el(doc, tag, attrs, ...children): an element with children (elements or one string,
 * its text). */
function el(doc, tag, attrs, ...children) {
  const e = new FakeElement(doc, tag, attrs || {});
  for (const c of children) {
    if (typeof c === "string") e.textContent = c;
    else e.appendChild(c);
  }
  return e;
}

/* Replaces console.warn while fn runs; returns what was warned (arrays of arguments). */
function captureWarnings(fn) {
  const saved = console.warn, got = [];
  console.warn = (...args) => got.push(args);
  try {
    fn();
  } finally {
    console.warn = saved;
  }
  return got;
}

/* A snapshot of an element tree (tags, attributes, text, style, listener counts), to check
 * that a failed enhancement changed nothing. */
function snapshot(e) {
  return {
    tag: e.tagName,
    attrs: Object.fromEntries(e.attrs),
    text: e.textContent,
    style: { ...e.style },
    listeners: e.listenerCount(),
    children: e.children.map(snapshot),
  };
}

module.exports = { FakeDocument, FakeElement, el, captureWarnings, snapshot };
