"""Interventions on dictionary features (kernel/lua/lua_steer.c, backend/dict/intervene.c) on
the default model with random 1536-wide per-layer transcoders: the time of m:intervene (free,
and with every layer constrained), of a run with the transcoders spliced in and of steered
generation, each as a ratio to the plain forward (or plain generation) measured in the same
run. JSON lines; never fails on slowness."""
import json
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
LOUPE = ROOT / "build" / "kernel" / "loupe"
SCRIPT = r"""
local m = loupe.load(MODEL)
local tcs = loupe.transcoders.random{n_layers = m.n_layers, d_model = m.d_model, d_transcoder = 1536,
                                     activation = "jumprelu", seed = 1}
local p = "Mara lives in Oslo and Ben lives in the country where people speak Norwegian and its capital is"
local function t(f, n)
    f()
    local t0 = loupe.clock()
    for _ = 1, n do f() end
    return (loupe.clock() - t0) / n
end
local T = #m:to_tokens(p)
local run = t(function() m:run(p, {cache = false}) end, 30)
local spliced = t(function() m:run(p, {cache = false, transcoders = tcs, set = {{1, 5, 3, 2.0}}}) end, 30)
local free = t(function() m:intervene{transcoders = tcs, prompt = p, set = {{1, 5, 3, 2.0}}} end, 30)
local cons = t(function() m:intervene{transcoders = tcs, prompt = p, set = {{1, 5, 3, 2.0}},
                                      constrained_layers = true} end, 30)
local g0 = t(function() m:generate(p, {max_tokens = 20, stop = false}) end, 5)
local g1 = t(function() m:generate(p, {max_tokens = 20, stop = false, transcoders = tcs,
                                       set = {{1, 5, 3, 2.0}}}) end, 5)
local function line(name, s, ref, refname)
    print(string.format('{"bench": "%s", "tokens": %d, "seconds": %.6f, "%s_s": %.6f, "ratio": %.3f}',
                        name, T, s, refname, ref, s / ref))
end
line("intervene free (1536-wide transcoders)", free, run, "forward")
line("intervene all layers constrained", cons, run, "forward")
line("run with transcoders spliced and a feature set", spliced, run, "forward")
line("generate 20 tokens, transcoders spliced and a feature set", g1, g0, "generate")
"""

with tempfile.TemporaryDirectory() as d:
    script = pathlib.Path(d) / "bench.lua"
    script.write_text(f"MODEL = {str(ROOT / 'examples/models/default')!r}\n" + SCRIPT)
    p = subprocess.run([str(LOUPE), "run", str(script)], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        sys.exit(1)
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            print(json.dumps(json.loads(line)))
