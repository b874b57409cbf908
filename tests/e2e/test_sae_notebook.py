"""End to end: examples/07-sparse-autoencoders.ipynb (harvest the default model's
blocks.1.hook_resid_post, train a TopK and a JumpReLU SAE, compare them, splice one in, save
and reload) executed with nbclient on the loupe kernel, with assertions on what it shows:
the comparison table has both SAEs with the TopK one at L0 = k = 16 and explained variances
and CE scores in (0, 1]; the spliced run shows hook_sae_acts_post with k active features at
each position; the reloaded SAE encodes like the saved one (the printed largest difference
is below 1e-4). Bars are loose (measured: EV 0.95 / 0.97, CE score 0.998 / 0.999): the
notebook trains only 150 steps."""
from __future__ import annotations

import re

import pytest

import kernelutil as ku

pytestmark = [pytest.mark.lua, pytest.mark.timeout(900)]

NOTEBOOK = ku.ROOT / "examples" / "07-sparse-autoencoders.ipynb"


@pytest.fixture(scope="module")
def executed(isolated_env):
    return ku.run_notebook(NOTEBOOK, timeout=400, artifact="sae-" + NOTEBOOK.name)


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


def test_saved_without_outputs():
    ku.assert_saved_without_outputs(NOTEBOOK)


def test_compares_splices_and_reloads(executed):
    text = text_of(executed)
    rows = {m.group(1): [float(v) for v in m.groups()[1:]]
            for m in re.finditer(r"^(topk|jumprelu)\s+([\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+\d+\s*$", text, re.M)}
    assert set(rows) == {"topk", "jumprelu"}, text[-3000:]
    assert rows["topk"][0] == 16.0
    assert 0 < rows["jumprelu"][0] < 768
    for name, (l0, ev, ce) in rows.items():
        assert 0.5 < ev <= 1 and 0.5 < ce <= 1, (name, ev, ce)
    acts = re.findall(r"^\s+\d+\s+\S+\s+(\d+)\s+\d+ \(", text, re.M)
    assert acts and all(int(a) == 16 for a in acts), acts
    diff = re.search(r"largest difference of the features:\s+(\S+)", text)
    assert diff and float(diff.group(1)) < 1e-4, text[-1000:]
