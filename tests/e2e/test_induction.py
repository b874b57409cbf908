"""End to end: examples/06-induction-heads.ipynb (a two-layer attention-only model trained in
the notebook until it forms an induction head) executed with nbclient on the loupe kernel,
with assertions on what it shows. The notebook prints one SUMMARY line with the numbers it
read from r:loss, m:head_scores and m:composition. The thresholds and why:

* second-copy loss on repeated random sequences: untrained it equals the first copy's (about
  log 32 = 3.47; measured 3.50 / 3.51); with induction it falls far below (measured 0.88 vs
  3.53). Asserted: at least 1.5 nats below the first copy at the end, within 0.2 at the start.
* layer-1 induction score > 0.4 and prefix-matching > 0.5: a head that spreads its attention
  over the ~2 * 11 keys of the probe sequences scores about 0.05 (measured 0.00-0.07 before
  the phase change); measured 0.67 / 0.82 after.
* layer-0 previous-token score > 0.4 (untrained about 0.1; measured 0.57).
* K-composition: the induction head's keys read more from the previous-token head than from
  the other layer-0 head (measured 0.190 vs 0.171).
"""
from __future__ import annotations

import re

import pytest

import kernelutil as ku

pytestmark = [pytest.mark.lua, pytest.mark.timeout(900)]  # the fixture trains the notebook's model: minutes on a busy machine

NOTEBOOK = ku.ROOT / "examples" / "06-induction-heads.ipynb"


@pytest.fixture(scope="module")
def executed(isolated_env):
    return ku.run_notebook(NOTEBOOK, timeout=400, artifact="induction-" + NOTEBOOK.name)


def text_of(nb) -> str:
    parts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for o in cell.outputs:
            if o.output_type == "stream":
                parts.append(o.text)
            elif "data" in o and "text/plain" in o.data:
                parts.append(o.data["text/plain"])
    return "\n".join(parts)


def summary(nb) -> dict:
    m = re.search(r"^SUMMARY (.*)$", text_of(nb), re.M)
    assert m, "the notebook printed no SUMMARY line"
    out = {}
    for k, v in re.findall(r"(\w+)=(\S+)", m.group(1)):
        out[k] = v if k.endswith("_head") else float(v)
    return out


def test_saved_without_outputs():
    ku.assert_saved_without_outputs(NOTEBOOK)


def test_shows_training_plots_and_heatmaps(executed):
    text = text_of(executed)
    assert "train · loss" in text and "done" in text          # the progress bar, finished
    assert "training loss: line plot" in text                # the live loss curve
    assert "loss on repeated random sequences: line plot, 2 series" in text
    assert "head scores over training: line plot, 6 series" in text
    # heads count from 0, as in the hook names and the figures
    assert all(f"L1H{h} induction" in text and f"L0H{h} previous-token" in text for h in (0, 1))
    assert "L1H2" not in text and "L0H2" not in text
    assert "previous-token score, strongest heads" in text
    assert "Attention pattern, layer 1, head" in text and "Attention pattern, layer 0, head" in text
    assert "K-composition, layer 0 heads (rows) into layer 1 heads (columns)" in text
    for cell in executed.cells:  # the figures carry a picture that renders without loupe
        if cell.cell_type == "code" and "loupe.plot.line" in cell.source:
            assert any("text/html" in o.get("data", {}) for o in cell.outputs), cell.source


def test_heads_named_from_the_numbers(executed):
    s = summary(executed)
    text = text_of(executed)
    assert re.fullmatch(r"L0H[01]", s["prev_head"]) and re.fullmatch(r"L1H[01]", s["ind_head"])
    # the attention figures drawn for those heads carry the same numbers in their titles
    assert f"Attention pattern, layer 1, head {s['ind_head'][-1]}" in text
    assert f"Attention pattern, layer 0, head {s['prev_head'][-1]}" in text
    assert f"previous-token head: {s['prev_head']}" in text
    assert f"induction head:      {s['ind_head']}" in text


def test_second_copy_becomes_predictable(executed):
    s = summary(executed)
    assert abs(s["second_start"] - s["first_start"]) < 0.2, s
    assert s["second_end"] < s["first_end"] - 1.5, s


def test_induction_head_in_layer_1(executed):
    s = summary(executed)
    assert s["induction"] > 0.4, s
    assert s["prefix"] > 0.5, s


def test_previous_token_head_in_layer_0(executed):
    s = summary(executed)
    assert s["prev"] > 0.4, s


def test_k_composition_between_them(executed):
    s = summary(executed)
    assert s["kcomp"] > s["kcomp_other_l0"], s
