"""End to end: loupe.attribute through a cross-layer transcoder (a seeded random JumpReLU CLT,
loupe.transcoders.random{clt = true}) on the default model, through `loupe run`.

In Lua: the graph's nodes (features in every layer, an error per layer and position, an
embedding per position, the logits), g:prune, save; bad input as clear errors naming what is
wrong (a CLT with the wrong layers, d_model or hooks) and g:qk's refusal of a CLT graph.
Here, in Python: the graph file against the C engine itself (tests/peer/attrib_tool --clt on the
CLT the script saved and the same token ids): the same feature nodes and ids, the same
adjacency (the file's links), and a CLT feature with edges into targets two layers up.
"""
from __future__ import annotations

import json
import subprocess

import numpy as np

import kernelutil as ku

MODEL = ku.ROOT / "examples" / "models" / "default"
TOOL = ku.ROOT / "build" / "tests" / "peer" / "attrib_tool"

_tools_built = ku.require_built(ku.LOUPE, TOOL)

LUA = r"""
local m = loupe.load(MODEL)
local clt = loupe.transcoders.random{clt = true, n_layers = 4, d_model = 192, d_transcoder = 32,
                                     activation = "jumprelu", seed = 2}
clt:save(WORK .. "/clt")
local g = loupe.attribute{model = m, transcoders = clt, prompt = "Ben lives in Oslo. Mara lives in",
                          max_n_logits = 5, batch = 16, prune = false, scan = "random-clt", slug = "clt"}
local kinds, layers = {}, {}
for _, n in ipairs(g.nodes) do
  kinds[n.kind] = (kinds[n.kind] or 0) + 1
  if n.kind == "feature" then layers[n.layer] = true end
end
local T = #g.tokens
assert(kinds.error == 4 * T and kinds.embedding == T and kinds.logit >= 1, "node counts")
for l = 0, 3 do assert(layers[l], "no features in layer " .. l) end
g:save(WORK .. "/full.json")
local p = g:prune{node_threshold = 0.99, edge_threshold = 0.999}
assert(p.n_nodes < g.n_nodes and p.n_nodes > T, "pruning")
local f = io.open(WORK .. "/tokens.txt", "w")
for _, t in ipairs(g.tokens) do f:write(t, " ") end
f:close()

local function fails(fn, want)
  local ok, e = pcall(fn)
  assert(not ok, "no error (wanted " .. want .. ")")
  assert(tostring(e):find(want, 1, true), "error '" .. tostring(e) .. "' does not say '" .. want .. "'")
end
local function attribute(c)
  return function() loupe.attribute{model = m, transcoders = c, prompt = "Mara lives in"} end
end
fails(attribute(loupe.transcoders.random{clt = true, n_layers = 3, d_model = 192, d_transcoder = 8}),
      "the cross-layer transcoder has 3 layers, the model 4")
fails(attribute(loupe.transcoders.random{clt = true, n_layers = 4, d_model = 96, d_transcoder = 8}),
      "the cross-layer transcoder's d_model is 96, the model's 192")
fails(attribute(loupe.transcoders.random{clt = true, n_layers = 4, d_model = 192, d_transcoder = 8,
                                         feature_input_hook = "hook_resid_mid"}),
      "reads 'hook_resid_mid'")
fails(function() g:qk{layer = 1, head = 0, query = 3, key = 2} end, "cross-layer transcoders are not supported")
print("ok")
"""


def test_attribute_through_a_clt(tmp_path):
    script = tmp_path / "clt.lua"
    script.write_text(f"MODEL = {str(MODEL)!r}; WORK = {str(tmp_path)!r}\n" + LUA)
    p = subprocess.run([str(ku.LOUPE), "run", str(script)], capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"loupe run failed ({p.returncode}):\n{out[-3000:]}"
    assert p.stdout.rstrip().endswith("ok"), out[-3000:]

    tokens = (tmp_path / "tokens.txt").read_text().split()
    adj = tmp_path / "engine.f32"
    e = subprocess.run([str(TOOL), "--clt", str(MODEL), str(tmp_path / "clt"), "5", "0.95", "16", "0.8", "0.98",
                        str(adj), *tokens], capture_output=True, text=True, timeout=120)
    assert e.returncode == 0, e.stderr
    info = json.loads(e.stdout)
    n = info["n_nodes"]
    ref = np.fromfile(adj, dtype="<f4").reshape(n, n)

    full = json.loads((tmp_path / "full.json").read_text())
    assert full["metadata"]["scan"] == "random-clt"
    nodes = full["nodes"]
    assert len(nodes) == n, (len(nodes), n)
    feats = [x for x in nodes if x["feature_type"] == "cross layer transcoder"]
    assert len(feats) == info["n_features"] > 50
    for f, (layer, pos, feat, act) in zip(feats, info["features"]):
        assert f["node_id"] == f"{layer}_{feat}_{pos}" and f["ctx_idx"] == pos and f["layer"] == str(layer)
        assert abs(f["activation"] - act) <= 1e-6 * abs(act)
    ix = {x["node_id"]: i for i, x in enumerate(nodes)}
    assert len(ix) == n, "duplicate node ids"
    A = np.zeros((n, n), dtype=np.float32)
    for link in full["links"]:
        A[ix[link["target"]], ix[link["source"]]] = link["weight"]
    assert np.count_nonzero(A) == np.count_nonzero(ref)
    assert np.allclose(A, ref, rtol=1e-6, atol=1e-7 * np.abs(ref).max()), float(np.abs(A - ref).max())
    lay = np.array([f[0] for f in info["features"]])
    nf = len(lay)
    far = (lay[:, None] >= lay[None, :] + 2) & (ref[:nf, :nf] != 0)
    assert far.any(), "no edges from a feature to a feature two layers up"
