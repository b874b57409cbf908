"""End to end: g:qk (QK attribution) on the default model with seeded random transcoders,
through `loupe run` (tests/e2e/lua/qk.lua checks the decomposition against the model's own
attention scores, the top lists, positions and bad input). Here: the saved file's
qk_tracing_results (Neuronpedia's field names) and that a loaded graph saves the same bytes."""
from __future__ import annotations

import json
import subprocess

import kernelutil as ku

SCRIPT = ku.ROOT / "tests" / "e2e" / "lua" / "qk.lua"
MODEL = ku.ROOT / "examples" / "models" / "default"

_built = ku.require_built(ku.LOUPE)


def test_qk_end_to_end(tmp_path):
    script = tmp_path / "qk.lua"
    script.write_text(f"MODEL = {str(MODEL)!r}; WORK = {str(tmp_path)!r}\n" + SCRIPT.read_text())
    p = subprocess.run([str(ku.LOUPE), "run", str(script)], capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"loupe run failed ({p.returncode}):\n{out[-3000:]}"
    assert p.stdout.rstrip().endswith("ok"), out[-3000:]
    assert (tmp_path / "qk.json").read_bytes() == (tmp_path / "qk2.json").read_bytes()
    g = json.loads((tmp_path / "qk.json").read_text())
    qk = g["qk_tracing_results"]
    assert len(qk) == 4  # three explanations and the last one; none repeated
    assert len({(e["layer"], e["head"], e["query_ctx_idx"], e["key_ctx_idx"]) for e in qk}) == 4
    ids = {n["node_id"] for n in g["nodes"]}
    T = len(g["metadata"]["prompt_tokens"])
    for e in qk:
        assert 0 <= e["key_ctx_idx"] <= e["query_ctx_idx"] < T
        assert abs(e["total"] - e["score"]) <= 1e-4 * abs(e["score"]) + 1e-5
        pairs = e["pair_wise_contributors"]
        assert pairs and all(len(x) == 3 and isinstance(x[2], float) for x in pairs)
        for side in ("top_q_marginal_contributors", "top_k_marginal_contributors"):
            assert e[side] and all(len(x) == 2 and isinstance(x[0], str) for x in e[side])
        # embeddings are in every graph: the ones named must be this graph's
        for q, k, _ in pairs:
            for i in (q, k):
                if i.startswith("E_"):
                    assert i in ids, i
