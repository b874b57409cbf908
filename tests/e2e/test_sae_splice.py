"""End to end: an SAE spliced into a run of the default model (m:run(prompt, {saes = ...}))
and evaluated (sae:evaluate).

tests/e2e/lua/sae_splice.lua checks, under `loupe run`: with the error term the logits are
unchanged (1e-5 relative); without it they change, and the cached hook_sae_input,
_acts_pre, _acts_post, _recons and _error equal the SAE's encode and decode computed by
hand from its weights; zeroing one feature at hook_sae_acts_post moves the output by
-f_j W_dec,j and gives the logits of a patch of that hand-computed output, and so does zeroing
its pre-activation at hook_sae_acts_pre (f recomputed from z: ReLU, and for a TopK SAE the
top k again, the same features as encode when z is unchanged); an ablation of
every feature leaves b_dec as the reconstruction; a hook_sae name of a hook no SAE is
spliced at is an error naming it; a transcoder (blocks.1.mlp.hook_in -> mlp.hook_out) with
its error term leaves the logits unchanged, reads mlp.hook_in, and without it mlp.hook_out
is its prediction; sae:evaluate's ce_loss_score and kl_div_score (BOS kept,
no error term) equal those computed in Lua from the logits of the clean, spliced and
zero-ablated runs of the same three windows (1e-4), for an SAE and for a transcoder.
"""
from __future__ import annotations

import subprocess

import kernelutil as ku

SCRIPT = ku.ROOT / "tests" / "e2e" / "lua" / "sae_splice.lua"
MODEL = ku.ROOT / "examples" / "models" / "default"


def test_splice_checks(tmp_path):
    script = tmp_path / "splice.lua"
    script.write_text(f"MODEL = {str(MODEL)!r}\n" + SCRIPT.read_text())
    p = subprocess.run([str(ku.LOUPE), "run", str(script)], capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"loupe run failed ({p.returncode}):\n{out[-3000:]}"
    assert p.stdout.rstrip().endswith("ok"), out[-3000:]  # stderr may carry notes (BLAS core, no GPU)
    assert "error_term logits rel diff" in out
