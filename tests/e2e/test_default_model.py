"""End to end: the default model (examples/models/default) and its tour,
examples/05-default-model.ipynb, executed with nbclient on the loupe kernel.

Assertions on what the notebook shows: the model's top-1 next token is the corpus's answer
for the facts of its world (tools/make_corpus.py, seed 1234: Mara lives in Oslo, ...), greedy
generation continues with such a fact, the activation-patching sweep of "Mara lives in" into
"Ben lives in" gives 1 at the name's position in layer 0 and moves the fact to the last
position from layer 1 on, direct logit attribution adds up, and the head scores are shown.

Peer check: Hugging Face transformers' AutoModelForCausalLM loads the shipped folder (no
missing or unexpected tensors), AutoTokenizer tokenizes like loupe, and the logits match
loupe's (`loupe run` on a Lua script) within 1e-4. transformers must import (the set-up
installs it): its absence fails this check, it does not skip it.
"""
from __future__ import annotations

import importlib.metadata as _md
import json
import re
import subprocess
import time

import numpy as np
import pytest

import kernelutil as ku

NOTEBOOK = ku.ROOT / "examples" / "05-default-model.ipynb"
MODEL = ku.ROOT / "examples" / "models" / "default"

# Kinds of fact whose every prompt in the notebook the shipped model gets right (top-1 next
# token = the corpus's answer, measured with p > 0.7). Agreement is right too, but only with
# p ~ 0.5, so it counts only towards the total.
MUST_KNOW = {"city", "country", "capital", "two-hop", "counting", "IOI"}


@pytest.fixture(scope="module")
def executed(isolated_env):
    t0 = time.monotonic()
    nb = ku.run_notebook(NOTEBOOK)
    return nb, time.monotonic() - t0


def outputs_of(nb, source_start: str) -> list:
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith(source_start):
            return cell.outputs
    raise AssertionError(f"no cell starting with {source_start!r}")


def stdout_of(outputs: list) -> str:
    return "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")


def results_of(outputs: list) -> list[dict]:
    return [o.data for o in outputs if o.output_type in ("execute_result", "display_data")]


def facts(nb) -> list[dict]:
    rows = []
    for line in stdout_of(outputs_of(nb, "facts = {")).splitlines():
        if line.startswith("FACT\t"):
            _, kind, prompt, answer, top, prob, verdict = line.split("\t")
            rows.append(dict(kind=kind.strip(), prompt=prompt, answer=answer, top=top, prob=float(prob),
                             ok=verdict == "ok"))
    return rows


@pytest.mark.lua
def test_saved_without_outputs():
    ku.assert_saved_without_outputs(NOTEBOOK)


def test_model_is_shipped_and_small():
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt", "README.md"):
        assert (MODEL / name).is_file(), f"{MODEL / name} is missing: sh tools/make_default_model.sh makes it"
    total = sum(p.stat().st_size for p in MODEL.iterdir() if p.is_file())
    assert total <= 20 * 1024 * 1024, f"the default model is {total} bytes, more than 20 MB"
    # git must not ignore it (the notebooks use it without downloads)
    p = subprocess.run(["git", "check-ignore", "-q", str(MODEL / "model.safetensors")], cwd=ku.ROOT)
    assert p.returncode == 1, "examples/models/default/model.safetensors is git-ignored"


@pytest.mark.lua
def test_runs_quickly_without_errors(executed):
    nb, elapsed = executed
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.execution_count is not None, cell.source
            for o in cell.outputs:
                assert o.output_type != "error", f"{cell.source!r}: {o.get('ename')}: {o.get('evalue')}"
    assert elapsed < 60, f"the notebook took {elapsed:.1f} s"


@pytest.mark.lua
def test_top_prediction_of_mara(executed):
    nb, _ = executed
    (data,) = results_of(outputs_of(nb, 'r = m:run("Mara lives in")'))
    first = data["text/plain"].splitlines()[2]  # title, header, then rank 1
    assert re.match(r"\s*1\s+\u2423Oslo\s", first), data["text/plain"]  # " Oslo" as every table shows it


@pytest.mark.lua
def test_knows_the_facts_of_its_world(executed):
    nb, _ = executed
    rows = facts(nb)
    assert len(rows) >= 15
    must = [r for r in rows if r["kind"] in MUST_KNOW]
    assert len(must) >= 12
    wrong = [r for r in must if not r["ok"]]
    assert not wrong, f"wrong top-1: {wrong}"
    # the verdicts are honest: the answer printed is the top-1 token exactly when ok
    for r in rows:
        assert r["ok"] == (r["answer"] == r["top"]), r
    assert sum(r["ok"] for r in rows) >= 14, rows


@pytest.mark.lua
def test_generation_states_a_fact(executed):
    nb, _ = executed
    (data,) = results_of(outputs_of(nb, '(m:generate("Mara lives in"'))
    assert data["text/plain"].startswith('" Oslo'), data["text/plain"]


@pytest.mark.lua
def test_dla_adds_up(executed):
    nb, _ = executed
    m = re.search(r"DLA total (\S+) \(logit difference in the run (\S+)\)",
                  stdout_of(outputs_of(nb, 'r3 = m:run("The capital of France is")')))
    assert m, "no DLA line"
    total, logit = float(m.group(1)), float(m.group(2))
    assert total == pytest.approx(logit, abs=2e-3)
    assert logit > 0, "the model prefers Paris to Berlin after 'The capital of France is'"


@pytest.mark.lua
def test_patch_sweep_moves_the_name_to_the_last_position(executed):
    nb, _ = executed
    text = stdout_of(outputs_of(nb, "sweep = m:patch_sweep{"))
    clean, corrupt = map(float, re.search(r"PATCH clean (\S+) corrupt (\S+)", text).groups())
    assert clean > 0 > corrupt, "clean prefers Oslo, corrupt prefers Leeds"
    rows = [list(map(float, line.split("\t")[1:])) for line in text.splitlines() if line.startswith("PATCH layer")]
    assert len(rows) == 4 and all(len(r) == 3 for r in rows), rows  # 4 layers x "Mara|Ben", " lives", " in"
    # layer 0, the name's position: patching it makes the corrupt run the clean one
    assert rows[0][0] == pytest.approx(1, abs=1e-3)
    assert abs(rows[0][2]) < 1e-3
    # layers 1..3: the fact has moved to the last position (layer 0's attention copies it)
    for r in rows[1:]:
        assert r[2] > 0.8 and abs(r[0]) < 0.2, rows


@pytest.mark.lua
def test_head_scores(executed):
    nb, _ = executed
    outs = outputs_of(nb, "hs = m:head_scores{}")
    m = re.search(r"INDUCTION best L(\d+)H(\d+) (\S+)", stdout_of(outs))
    assert m and 0 <= int(m.group(1)) < 4 and 1 <= int(m.group(2)) <= 4
    # measured: this model learned no general induction head (scores near chance, ~0.015);
    # the notebook says so. A jump here means the model changed: update the prose with it.
    assert 0 <= float(m.group(3)) < 0.2, m.group(0)
    assert any("text/html" in d for d in results_of(outs))


# ---- peer check: transformers reads the shipped folder ----

def _import_transformers():
    """transformers 4.49 pins tokenizers<0.22 and huggingface-hub<1.0 at import time; this venv
    has newer ones (see tests/peer/test_models.py): those two checks are relaxed while importing."""
    real = _md.version
    relaxed = {"tokenizers": "0.21.0", "huggingface-hub": "0.30.0"}
    _md.version = lambda name: relaxed.get(name) or real(name)
    try:
        import transformers
    finally:
        _md.version = real
    return transformers


PROMPTS = ["The capital of the country where Mara lives is",
           "When John and Mary went to the store, John gave a drink to"]

DUMP = """
m = loupe.load(@MODEL@)
f = io.open(@OUT@, "w")
for _, p in ipairs(@PROMPTS@) do
  local ids = m:to_tokens(p)
  local lg = m:run(p).logits:totable()[1]
  f:write(table.concat(ids, " "), "\\n")
  for t = 1, #lg do
    local row = {}
    for v = 1, #lg[t] do row[v] = string.format("%.9g", lg[t][v]) end
    f:write(table.concat(row, " "), "\\n")
  end
end
f:close()
"""


@pytest.mark.lua
def test_transformers_matches_loupe(tmp_path):
    transformers = _import_transformers()  # must not skip: a missing transformers fails here
    import torch

    out = tmp_path / "logits.txt"
    script = tmp_path / "dump.lua"
    lua_list = "{" + ", ".join(json.dumps(p) for p in PROMPTS) + "}"
    script.write_text(DUMP.replace("@MODEL@", json.dumps(str(MODEL)), 1).replace("@OUT@", json.dumps(str(out)), 1)
                      .replace("@PROMPTS@", lua_list, 1))
    p = subprocess.run([str(ku.LOUPE), "run", str(script)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"loupe run failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    lines = out.read_text().splitlines()

    model, info = transformers.AutoModelForCausalLM.from_pretrained(str(MODEL), output_loading_info=True,
                                                                     torch_dtype=torch.float32)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    model.eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(MODEL))
    i = 0
    for prompt in PROMPTS:
        ids = [int(x) for x in lines[i].split()]
        ours = np.array([[float(x) for x in lines[i + 1 + t].split()] for t in range(len(ids))], dtype=np.float64)
        i += 1 + len(ids)
        assert tok(prompt)["input_ids"] == ids, prompt
        with torch.no_grad():
            theirs = model(torch.tensor([ids])).logits[0].double().numpy()
        assert ours.shape == theirs.shape
        diff = float(np.abs(ours - theirs).max())
        assert diff < 1e-4, f"{prompt!r}: max |loupe - transformers| = {diff}"
        # and both predict the same next token
        assert int(ours[-1].argmax()) == int(theirs[-1].argmax())
