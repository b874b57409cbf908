"""End to end: interventions on dictionary features on the default model (m:run's features,
m:intervene, steering in m:generate, loupe.compare), with random SAEs and transcoders made in
the test.

tests/e2e/lua/interventions.lua checks, under `loupe run`: setting a feature to its own value
changes nothing (m:run with an SAE, m:intervene free, attention frozen, all layers
constrained, a range constrained: 1e-6 on the logits) and another value does change them;
steering a feature by s equals a plain loupe.steer hook adding s * W_dec,i at the hook (one
position and every position, 1e-5 relative), ablation equals adding -f W_dec,i; m:run's
features on a transcoder set equal m:intervene without constraints; generation steered by 0
equals clean generation, steered by a large scale differs, the same with and without the kv
cache, and its first and last tokens are the steered runs' argmax; loupe.compare's tables
match the logits and escape hostile text; bad input (feature out of range, unknown layer,
position beyond the prompt, an SAE not spliced, a transcoder set that does not fit) gives
errors naming it.

test_constrained_intervention_equals_the_graph_edges: with every layer constrained and the
attention frozen, setting a feature to (1 + C) times its activation changes each logit
direction by C times the attribution edge from that feature to the logit node (the change is
linear: C = 1 is doubling; C = 50 lifts it above the forwards' float rounding), the edge
computed by the C engine (tests/peer attrib_tool, lp_attrib_edges) on the same model, transcoders and tokens (1e-4 relative).
"""
from __future__ import annotations

import json
import subprocess

import numpy as np

import kernelutil as ku

SCRIPT = ku.ROOT / "tests" / "e2e" / "lua" / "interventions.lua"
MODEL = ku.ROOT / "examples" / "models" / "default"
ATTRIB_TOOL = ku.ROOT / "build" / "tests" / "peer" / "attrib_tool"
PROMPT = "Mara lives in Oslo and Ben lives in"


def run_lua(tmp_path, name: str, source: str) -> str:
    script = tmp_path / name
    script.write_text(source)
    p = subprocess.run([str(ku.LOUPE), "run", str(script)], capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"loupe run failed ({p.returncode}):\n{out[-3000:]}"
    return p.stdout


def test_intervention_checks(tmp_path):
    out = run_lua(tmp_path, "interventions.lua", f"MODEL = {str(MODEL)!r}\n" + SCRIPT.read_text())
    assert out.rstrip().endswith("ok"), out[-3000:]
    assert "steer by 7.5 at every position" in out
    assert out.count("error as expected") == 14


def test_constrained_intervention_equals_the_graph_edges(tmp_path):
    assert ATTRIB_TOOL.exists(), f"{ATTRIB_TOOL} is not built (cmake --build build --target attrib_tool)"
    tc_dir = tmp_path / "tcs"
    out = run_lua(
        tmp_path,
        "make.lua",
        f"""
local m = loupe.load({str(MODEL)!r})
local tcs = loupe.transcoders.random{{n_layers = m.n_layers, d_model = m.d_model, d_transcoder = 128,
                                     activation = "jumprelu", seed = 11}}
tcs:save({str(tc_dir)!r})
local ids = m:to_tokens({PROMPT!r})
print("TOKENS " .. table.concat(ids, " "))
""",
    )
    ids = [int(x) for x in next(l for l in out.splitlines() if l.startswith("TOKENS ")).split()[1:]]
    T = len(ids)
    adj = tmp_path / "adj.f32"
    p = subprocess.run(
        [str(ATTRIB_TOOL), str(MODEL), str(tc_dir), "5", "0.95", "32", "0.8", "0.98", str(adj), *map(str, ids)],
        capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    g = json.loads(p.stdout)
    n, nf = g["n_nodes"], g["n_features"]
    A = np.fromfile(adj, dtype="<f4").reshape(n, n)
    n_logits = len(g["logit_tokens"])
    n_layers = 4
    C = 50  # the feature set to (1 + C) times its activation: the change is C times the edge
    logit_rows = [nf + (n_layers + 1) * T + k for k in range(n_logits)]
    assert logit_rows[-1] == n - 1
    # the features with the strongest edges into the top logit, plus a few weak ones
    strength = np.abs(A[logit_rows[0], :nf])
    order = np.argsort(-strength)
    picks = [int(s) for s in order[:6]] + [int(s) for s in order[nf // 2 : nf // 2 + 2]]
    feats = g["features"]
    lua_picks = ", ".join(
        f"{{{int(feats[s][0])}, {int(feats[s][1]) + 1}, {int(feats[s][2])}, {float(feats[s][3])!r}}}" for s in picks
    )
    out = run_lua(
        tmp_path,
        "edges.lua",
        f"""
local m = loupe.load({str(MODEL)!r})
local tcs = loupe.transcoders.load({str(tc_dir)!r})
local c = {C}
local ids = {{{", ".join(map(str, ids))}}}
local toks = {{{", ".join(str(t + 1) for t in g["logit_tokens"])}}}
for i, f in ipairs({{{lua_picks}}}) do
    local iv = m:intervene{{transcoders = tcs, prompt = ids, set = {{{{f[1], f[2], f[3], (1 + c) * f[4]}}}},
                           freeze_attention = true, constrained_layers = true}}
    local a = iv.logits:totable()[1][#ids]
    local b = iv.clean_logits:totable()[1][#ids]
    local mean, big = 0, 0
    for v = 1, #b do big = math.max(big, math.abs(b[v])) end
    for v = 1, #a do mean = mean + (a[v] - b[v]) end
    mean = mean / #a
    local row = {{}}
    for k, t in ipairs(toks) do row[k] = string.format("%.9g", ((a[t] - b[t]) - mean) / c) end
    print("CHANGE " .. i .. " " .. big .. " " .. table.concat(row, " "))
end
""",
    )
    changes = {
        int(l.split()[1]) - 1: [float(x) for x in l.split()[3:]] for l in out.splitlines() if l.startswith("CHANGE ")
    }
    big = max(float(l.split()[2]) for l in out.splitlines() if l.startswith("CHANGE "))
    assert len(changes) == len(picks)
    amax = float(np.abs(A[np.ix_(logit_rows, picks)]).max())
    assert amax > 0
    # the floor: float rounding of two forwards' logits (|logit| <= big), divided by C
    worst, strong = 0.0, 0
    for i, s in enumerate(picks):
        for k in range(n_logits):
            edge, got = float(A[logit_rows[k], s]), changes[i][k]
            tol = 1e-4 * abs(edge) + 1e-6 * big / C
            assert abs(edge - got) <= tol, f"feature node {s} -> logit {k}: edge {edge:.8g}, intervention {got:.8g}"
            if abs(edge) > 0.1 * amax:  # well above the floor: the relative bound is what holds
                worst = max(worst, abs(edge - got) / abs(edge))
                strong += 1
    assert strong >= 5, f"only {strong} edges are strong: the check would be vacuous"
    assert worst <= 1e-4
    print(f"{len(picks)} features x {n_logits} logits, {strong} strong edges: worst relative difference {worst:.3g}")


def test_intervention_and_comparison_display_in_the_kernel(kernel):
    """A cell whose value is an intervention or a comparison shows its table (text/html and
    text/plain, no script); hostile generated text is escaped."""
    kernel.ok(
        f"m = loupe.load({str(MODEL)!r})\n"
        "tcs = loupe.transcoders.random{n_layers = m.n_layers, d_model = m.d_model, d_transcoder = 64, seed = 5}",
        timeout=60,
    )
    for cell, want in (
        (f"m:intervene{{transcoders = tcs, prompt = {PROMPT!r}, set = {{{{1, 3, 7, 5.0}}}}}}", "before"),
        ('loupe.compare("<script>alert(1)</script>", "<img src=x onerror=alert(1)>")', "&lt;img"),
    ):
        msgs = kernel.ok(cell, timeout=60)
        shown = [m["content"]["data"] for m in ku.of_type(msgs, "execute_result", "display_data")]
        assert shown, msgs
        html = shown[-1]["text/html"]
        assert want in html, html[:2000]
        assert "<script" not in html and "<img" not in html, html[:2000]
        assert shown[-1]["text/plain"].strip(), shown[-1]
