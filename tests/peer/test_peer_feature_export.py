"""Peer check in .venv-peer: circuit-tracer loads the feature files sae:export writes
(issue 16 item 7). The planted SAE of tests/e2e/test_feature_export.py is harvested and
exported by loupe; circuit-tracer's own model of a feature file
(circuit_tracer.frontend.feature_models.Model, pydantic) validates each, and its top example
fires on " Oslo". The schema check from DICTIONARY.md is tests/e2e/test_feature_export.py.

A missing or broken .venv-peer fails this test with why (`bash install/setup test` makes it).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import peerenv  # noqa: E402
from test_feature_export import export  # noqa: E402


def test_circuit_tracer_loads_exported_features(tmp_path):
    (tmp_path / "loupe").mkdir()
    out, _, mx, _ = export(tmp_path / "loupe")
    files = sorted(str(p) for p in (out / "ct" / "features" / "scan").glob("*.json"))
    assert files, "no circuit-tracer feature file written"
    res = peerenv.run("ct_feature_load.py", {"files": files}, tmp_path / "peer")
    assert res["errors"] == []
    assert [f["index"] for f in res["loaded"]] == [0]
    f0 = res["loaded"][0]
    assert f0["first_token"] == " Oslo" and f0["n_quantiles"] >= 1
    assert f0["act_max"] == pytest.approx(mx, rel=1e-6)
