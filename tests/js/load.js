/* The figure scripts as the tests load them: each test runs on display/js/NAME.js and on
 * the text embedded in the binary (build/display/js/NAME.js, written by
 * display/embed_js.cmake), so that stripping it cannot change what it does unnoticed.
 * LOUPE_JS_BUILT names the folder of the embedded texts; when it is set (install/setup's
 * test run sets it) they must be there; when it is not and build/ has none, only the
 * sources are tested and a skipped test says so. */
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const ROOT = path.resolve(__dirname, "..", "..");
const SOURCES = path.join(ROOT, "display", "js");
const BUILT = process.env.LOUPE_JS_BUILT ? path.resolve(process.env.LOUPE_JS_BUILT)
                                         : path.join(ROOT, "build", "display", "js");

function builtPath(name) {
  const p = path.join(BUILT, name + ".js");
  if (fs.existsSync(p)) return p;
  if (process.env.LOUPE_JS_BUILT) throw new Error(`${p} is missing (LOUPE_JS_BUILT is set): build loupe_display`);
  return null;
}

/* [{label, mod}] for script NAME: the source, and the embedded text when built. */
function variants(name) {
  const list = [{ label: `display/js/${name}.js`, mod: require(path.join(SOURCES, name + ".js")) }];
  const built = builtPath(name);
  if (built) list.push({ label: `embedded ${path.relative(ROOT, built)}`, mod: require(built) });
  return list;
}

/* The names of the figure scripts (display/js/*.js). */
function scriptNames() {
  return fs.readdirSync(SOURCES).filter((f) => f.endsWith(".js")).map((f) => f.slice(0, -3)).sort();
}

module.exports = { ROOT, SOURCES, BUILT, builtPath, variants, scriptNames };
