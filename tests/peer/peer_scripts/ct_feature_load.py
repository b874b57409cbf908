"""Loads feature JSON files with circuit-tracer's own model of them
(circuit_tracer.frontend.feature_models.Model, what its feature view reads): args "files";
result {"loaded": [{index, n_quantiles, act_max}], "errors": [...]}."""
from __future__ import annotations

import json

from common import finish, start

from circuit_tracer.frontend.feature_models import Model

args = start()
loaded, errors = [], []
for path in args["files"]:
    try:
        with open(path) as f:
            m = Model.model_validate(json.load(f))
        loaded.append({"index": m.index, "n_quantiles": len(m.examples_quantiles), "act_max": m.act_max,
                       "first_token": m.examples_quantiles[0].examples[0].tokens[
                           m.examples_quantiles[0].examples[0].train_token_ind]})
    except Exception as e:  # reported, the test fails on it
        errors.append(f"{path}: {e}")
finish({"loaded": loaded, "errors": errors})
