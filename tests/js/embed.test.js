/* display/embed_js.cmake, the build step that embeds display/js/*.js in the binary: the
 * embedded texts are what the C constants hold, fit inside an HTML <script>, and the
 * stripping keeps a program's meaning (checked on a program written to trip it up);
 * scripts outside the subset it handles fail the build. */
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const vm = require("node:vm");
const { spawnSync } = require("node:child_process");
const { ROOT, SOURCES, builtPath, scriptNames } = require("./load.js");

const EMBED = path.join(ROOT, "display", "embed_js.cmake");
const HAVE_CMAKE = spawnSync("cmake", ["--version"]).status === 0;

/* Runs embed_js.cmake on source text; returns {status, stderr, js, c}. */
function embed(source) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "loupe-embed-"));
  try {
    const src = path.join(dir, "t.js"), outJs = path.join(dir, "out.js"), outC = path.join(dir, "out.c");
    fs.writeFileSync(src, source);
    const r = spawnSync("cmake", [`-DSRC=${src}`, "-DNAME=lp_js_t", `-DOUT_C=${outC}`, `-DOUT_JS=${outJs}`,
                                  "-P", EMBED], { encoding: "utf8" });
    const read = (p) => (fs.existsSync(p) ? fs.readFileSync(p, "utf8") : null);
    return { status: r.status, stderr: r.stderr, js: read(outJs), c: read(outC) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/* The bytes of the char array a generated C source defines. */
function arrayBytes(c) {
  const body = c.slice(c.indexOf("{") + 1, c.lastIndexOf("}"));
  return Buffer.from(body.split(",").map((x) => x.trim()).filter((x) => x).map((x) => parseInt(x, 16)));
}

function run(code) {
  const module = { exports: null };
  vm.runInNewContext(code, { module });
  return module.exports;
}

for (const name of scriptNames()) {
  const built = builtPath(name);
  test(`display/js/${name}.js as embedded`, { skip: built ? false : "not built (build/display/js/ missing)" }, () => {
    const js = fs.readFileSync(built, "utf8");
    const source = fs.readFileSync(path.join(SOURCES, name + ".js"), "utf8");
    const c = fs.readFileSync(path.join(path.dirname(built), name + "_js.c"), "utf8");
    assert.match(c, new RegExp(`const char lp_js_${name}\\[\\] = \\{`));
    assert.deepEqual(arrayBytes(c), Buffer.concat([Buffer.from(js, "utf8"), Buffer.from([0])]),
                     "the C constant holds the embedded text, NUL-terminated");
    assert.equal(js.split("@ID@").length, 2, "one @ID@ for lp_fig_script to replace");
    assert.ok(!/<\/script|<!--/i.test(js), "nothing that ends or upsets an HTML <script>");
    assert.ok(js.startsWith('(function(){"use strict";'), "tests/unit/display and tests/browser know our scripts by this");
    assert.ok(js.length < 0.75 * source.length, `${js.length} bytes embedded of ${source.length}`);
    assert.ok(!/^\s*(\/\/|\/\*|\*)/m.test(js), "no comment lines left");
  });
}

const TRICKY = String.raw`/* A program that the stripping could break: strings holding comment markers and
 * spaces, automatic semicolon insertion, unary signs after binary ones. */
(function () {
  "use strict";
  // a comment with "quotes" and 'apostrophes'
  var out = [];
  var a = 1, b = 2;
  var i = 0
  i++
  out.push(i) // a comment after code
  out.push(a + +b, a - -b, a+ ++b, a - --b, a-- - -b, a++ + +b);
  out.push("// not a comment", '/* nor this */', "it's", 'say "x"', "back\\slash\"", 'a' + 'b');
  out.push("spaces   inside  strings", ' + - ', "a" + " " + 'b' , "x" in { x: 1 });
  out.push(10 / 2 / 5, 7 / (2 - 1), typeof a, typeof "s", void 0 === undefined, !a, ~a);
  var s = "x" +
    "y";
  out.push(s);
  function f() {
    return
    1;
  }
  out.push(f());
  var o = {
    p: 1,
    q: [1, 2,
      3],
  };
  out.push(o.q.length, o.p)
  ;[4, 5].forEach(function (x) { out.push(x) })
  out.push(a ? "y" : "n", a
    ? 1
    : 2, a
    && b, a ||
    b);
  var j = 10
  j
  ++
  b
  out.push(j, b, 1 - 1 - 1, 1 + - 1, -a, a < b, a <= b, a >= -1)
  if (a) out.push("then")
  else out.push("else")
  module.exports = out;
})();
`;

test("embed_js.cmake keeps a program's meaning", { skip: HAVE_CMAKE ? false : "cmake not found" }, () => {
  const r = embed(TRICKY);
  assert.equal(r.status, 0, r.stderr);
  const want = run(TRICKY), got = run(r.js);
  assert.ok(want.length > 40);
  assert.equal(JSON.stringify(got), JSON.stringify(want));
  assert.ok(!r.js.includes("comment with"), "comments go");
  assert.ok(r.js.includes('"spaces   inside  strings"') && r.js.includes("' + - '"), "strings stay as they are");
  assert.ok(r.js.includes("a- -b") && r.js.includes("a+ ++b") && r.js.includes("a+ +b"), "signs stay apart");
  assert.ok(r.js.length < TRICKY.length * 0.8, `${r.js.length} of ${TRICKY.length} bytes`);
  assert.deepEqual(arrayBytes(r.c), Buffer.concat([Buffer.from(r.js), Buffer.from([0])]));
});

test("embed_js.cmake refuses what it cannot strip safely", { skip: HAVE_CMAKE ? false : "cmake not found" }, () => {
  const bad = {
    "a template literal": "var s = `x`;\n",
    "a string not closed on its line": 'var s = "abc;\n',
    "a string continued with a backslash": 'var s = "abc\\\n  def";\n',
    "a block comment after code": "var a = 1; /* c */\n",
    "code after a block comment": "/* c */ var a;\n",
    "a block comment not closed": "/* c\nvar a;\n",
    "</script> in a string": 'var s = "</script>";\n',
    "<!-- in a string": "var s = '<!--';\n",
    "a regular expression literal": "var r = /a b/;\n",
    "a regular expression literal in a call": "f(a, /x/);\n",
    "a regular expression literal returned": "function f() {\n  return /x/;\n}\n",
  };
  for (const [what, source] of Object.entries(bad)) {
    const r = embed(source);
    assert.notEqual(r.status, 0, `${what}: accepted`);
    assert.match(r.stderr, /embed_js\.cmake|t\.js/, what);
  }
  assert.equal(embed('var s = "a/*b*/c // d";\n').status, 0, "comment markers inside strings are fine");
  assert.equal(embed("var r = a / b, s = (a) / 2, t = x[1] / y, u = \"/\" + '/';\n").status, 0, "division is fine");
});
