"""End to end: examples/04-superposition.ipynb (toy models of superposition) executed with
nbclient on the loupe kernel, with assertions on what it shows: the training display, the
dense instance keeping only the m = 2 most important features, the pentagon at high
sparsity, and dimensions per feature falling with sparsity for n = 20, m = 5."""
from __future__ import annotations

import json
import re
import time

import pytest

import kernelutil as ku

pytestmark = [pytest.mark.lua, pytest.mark.timeout(600)]  # the fixture runs the notebook: minutes on a busy machine

NOTEBOOK = ku.ROOT / "examples" / "04-superposition.ipynb"


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


def outputs_exact(nb, source: str) -> list:
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.strip() == source:
            return cell.outputs
    raise AssertionError(f"no cell {source!r}")


def toy_json(outputs: list) -> dict:
    for o in outputs:
        data = o.get("data", {})
        if "application/vnd.loupe.toy+json" in data:
            v = data["application/vnd.loupe.toy+json"]
            return json.loads(v) if isinstance(v, str) else v
    raise AssertionError(f"no toy model summary in {[o.output_type for o in outputs]}")


def test_saved_without_outputs():
    ku.assert_saved_without_outputs(NOTEBOOK)


def test_runs_quickly_without_errors(executed):
    nb, elapsed = executed
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.execution_count is not None, cell.source
            for o in cell.outputs:
                assert o.output_type != "error", f"{cell.source!r}: {o.get('ename')}: {o.get('evalue')}"
    assert elapsed < 120, f"the notebook took {elapsed:.1f} s"


def test_training_shows_progress_and_loss(executed):
    nb, _ = executed
    outs = outputs_of(nb, "r = loupe.toy.superposition{")
    shown = [o for o in outs if o.output_type in ("display_data", "execute_result")]
    bar = [o for o in shown if "100%" in o["data"].get("text/plain", "")]
    assert bar, [o["data"].get("text/plain", "")[:200] for o in shown]
    assert "data:image/svg+xml;base64," in bar[0]["data"]["text/html"]  # the loss plot


def test_dense_keeps_two_features_and_sparse_is_a_pentagon(executed):
    nb, _ = executed
    s = toy_json(outputs_exact(nb, "r"))
    assert s["n"] == 5 and s["m"] == 2
    dense, sparse = s["instances"][0], s["instances"][-1]
    assert dense["sparsity"] == 0
    assert sum(v > 0.5 for v in dense["norms"]) == 2, dense["norms"]
    assert dense["norms"][0] > 0.5 and dense["norms"][1] > 0.5, "the two most important"
    assert sparse["sparsity"] > 0.98
    assert all(v > 0.8 for v in sparse["norms"]), sparse["norms"]
    assert all(abs(d - 0.4) < 0.05 for d in sparse["dimensionality"]), sparse["dimensionality"]


def test_pentagon_printed_with_72_degree_neighbours(executed):
    nb, _ = executed
    text = "".join(o.text for o in outputs_of(nb, "-- the pentagon") if o.output_type == "stream")
    norms = re.search(r"pentagon norms: (.*)", text).group(1).split()
    gaps = re.search(r"pentagon neighbour angles: (.*)", text).group(1).split()
    assert len(norms) == 5 and all(float(v) > 0.8 for v in norms), norms
    assert len(gaps) == 5 and all(abs(float(g) - 72) < 8 for g in gaps), gaps


def test_geometry_is_a_picture(executed):
    nb, _ = executed
    outs = outputs_of(nb, "r:geometry(5)")
    res = [o for o in outs if o.output_type == "execute_result"]
    assert res and "data:image/svg+xml;base64," in res[0]["data"]["text/html"]
    assert res[0]["data"]["text/plain"].count("norm") >= 5


def test_dims_per_feature_fall_with_sparsity(executed):
    nb, _ = executed
    s = toy_json(outputs_exact(nb, "big"))
    assert s["n"] == 20 and s["m"] == 5
    dpf = [inst["dims_per_feature"] for inst in s["instances"]]
    assert abs(dpf[0] - 1) < 0.05, dpf
    assert dpf[-1] < 0.3, dpf
