"""Peer check in .venv-peer: loupe's sae:evaluate and SAELens' run_evals (sae_lens.evals)
give the same l0, explained_variance and ce_loss_score (within 1e-3) on the default model
(TransformerLens' build of examples/models/default, offline), the same SAE and the same
tokens (issue 15, evaluation).

The SAE: a TopK SAE (k 16, width 384) on blocks.1.hook_resid_post trained briefly by loupe
(tests/peer/sae_tool, so that it is not degenerate: explained variance well above 0) and
saved in SAELens' layout; both tools read that folder. The tokens: a corpus of
tools/make_corpus.py (seed 99) tokenized by loupe, cut into windows of 64 (BOS first, then 63
corpus tokens) exactly as evaluate cuts them; SAELens gets those windows through a stand-in
activation store (peer_scripts/sl_evals.py), 8 per batch, as evaluate runs them.

How the two compare like with like: SAELens leaves out the positions of its tokenizer's
special tokens (here BOS/EOS, <|endoftext|>) from every metric and keeps their clean
activation in the reconstruction run; loupe leaves out the model's BOS and EOS the same
way (the test checks the two sets agree). SAELens' explained_variance is the pooled one of
DICTIONARY.md (1 - E||x - x_hat||^2 / (E||x||^2 - ||E x||^2), f64 sums): the same definition.
Its explained_variance_legacy (the mean over batches of per-batch ratios) is the known wrong
variant and is not compared. CE: both average -log p(next token) over positions 0..62 of
each window whose token is not special, pooled over all windows, and take
(CE_zero - CE_sae) / (CE_zero - CE_clean) of the pooled means.

A missing or broken .venv-peer fails this test with why (`bash install/setup test` makes it).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kernelutil as ku  # noqa: E402
import peerenv  # noqa: E402

MODEL = ku.ROOT / "examples" / "models" / "default"
TOOL = ku.ROOT / "build" / "tests" / "peer" / "sae_tool"
HOOK = "blocks.1.hook_resid_post"
CTX, WINDOWS, BATCH = 64, 16, 8
TOL = 1e-3

_tools_built = ku.require_built(TOOL, ku.LOUPE)

LUA = """
local m = loupe.load(%(model)r)
local sae = loupe.sae.load(%(sae)r)
local ids = {}
for line in io.lines(%(ids)r) do ids[#ids + 1] = tonumber(line) end
local r = sae:evaluate{model = m, data = ids, tokens = %(tokens)d, ctx = %(ctx)d, batch = %(batch)d,
                       prepend_bos = true, quiet = true}
for _, k in ipairs({"l0", "l1", "mse", "cossim", "l2_ratio", "relative_reconstruction_bias",
                    "explained_variance", "ce_loss_score", "kl_div_score", "ce_clean", "ce_sae", "ce_zero",
                    "kl_sae", "kl_zero", "n_tokens", "positions", "dead"}) do
    print(string.format("metric %%s %%.17g", k, r[k]))
end
"""


@pytest.mark.timeout(900)
def test_loupe_evaluate_equals_saelens_run_evals(tmp_path: Path) -> None:
    corpus, sae_dir, ids_path = tmp_path / "corpus.txt", tmp_path / "sae", tmp_path / "ids.txt"
    subprocess.run([sys.executable, str(ku.ROOT / "tools" / "make_corpus.py"), "--seed", "99", "--size", "30000",
                    str(corpus)], check=True)
    p = subprocess.run([str(TOOL), str(MODEL), str(corpus), HOOK, "384", "16", "60", str(sae_dir), str(ids_path)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    ids = [int(s) for s in ids_path.read_text().split()]
    bos = json.loads((MODEL / "config.json").read_text())["bos_token_id"]
    per = CTX - 1
    assert len(ids) >= WINDOWS * per, len(ids)
    windows = [[bos] + ids[w * per:(w + 1) * per] for w in range(WINDOWS)]

    script = tmp_path / "eval.lua"
    script.write_text(LUA % {"model": str(MODEL), "sae": str(sae_dir), "ids": str(ids_path),
                             "tokens": WINDOWS * CTX, "ctx": CTX, "batch": BATCH})
    q = subprocess.run([str(ku.LOUPE), "run", str(script)], capture_output=True, text=True, timeout=600)
    assert q.returncode == 0, (q.stdout + q.stderr)[-3000:]
    ours = {}
    for line in q.stdout.splitlines():
        if line.startswith("metric "):
            _, k, v = line.split()
            ours[k] = float(v)
    assert ours["positions"] == WINDOWS * CTX, ours

    peer = peerenv.run("sl_evals.py", {"model": str(MODEL), "sae": str(sae_dir), "windows": windows,
                                        "batch": BATCH}, tmp_path / "peer", timeout=600)
    mt = peer["metrics"]
    theirs = {
        "l0": mt["sparsity"]["l0"],
        "explained_variance": mt["reconstruction_quality"]["explained_variance"],
        "ce_loss_score": mt["model_performance_preservation"]["ce_loss_score"],
        "ce_clean": mt["model_performance_preservation"]["ce_loss_without_sae"],
        "ce_sae": mt["model_performance_preservation"]["ce_loss_with_sae"],
        "ce_zero": mt["model_performance_preservation"]["ce_loss_with_ablation"],
        "kl_div_score": mt["model_behavior_preservation"]["kl_div_score"],
        "mse": mt["reconstruction_quality"]["mse"],
        "cossim": mt["reconstruction_quality"]["cossim"],
    }
    cfg = json.loads((MODEL / "config.json").read_text())
    assert set(peer["ignore_tokens"]) <= {cfg["bos_token_id"], cfg["eos_token_id"]}, peer["ignore_tokens"]
    report = {k: (ours[k], theirs[k]) for k in theirs}
    print(json.dumps(report, indent=1))
    # not degenerate: the comparison means something (a briefly trained SAE can even lower the CE
    # a little on these windows: a score just above 1 is no fault)
    assert 0.5 < ours["explained_variance"] < 0.999 and 0.2 < ours["ce_loss_score"] < 1.5, report
    assert ours["ce_zero"] - ours["ce_clean"] > 1 and 1 < ours["l0"] <= 16, report
    for k in ("l0", "explained_variance", "ce_loss_score"):
        assert abs(ours[k] - theirs[k]) < TOL, f"{k}: loupe {ours[k]}, SAELens {theirs[k]}\n{report}"
