"""End to end: examples/08-features.ipynb (an SAE on the default model: harvest, labels,
dashboards, steering) and examples/09-circuit-tracing.ipynb (the two-hop prompt's attribution
graph on the shipped transcoders, and interventions on its features), executed with nbclient
on the loupe kernel. Assertions on what the notebooks' prose says the reader sees: in 08, the
"lives in" feature fires on the " in" after " lives" for Mara and Ben, the Mara feature never
fires in Ben's document, each dashboard opens, and steering "Ben lives in" with the Mara
feature turns the answer from " Leeds" to " Oslo"; in 09, the graph explains " Oslo" with
replacement and completeness scores near 1, its top path starts at the " Mara" embedding,
removing the graph's features takes " Oslo" off the top, and setting them as for Ben makes the
answer " London"."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

import kernelutil as ku

pytestmark = pytest.mark.lua

EXAMPLES = ku.ROOT / "examples"
FEATURES = EXAMPLES / "08-features.ipynb"
TRACING = EXAMPLES / "09-circuit-tracing.ipynb"


def outputs_of(nb, source_start: str) -> list:
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith(source_start):
            return cell.outputs
    raise AssertionError(f"no cell starting with {source_start!r}")


def stdout_of(outputs: list) -> str:
    return "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")


def plain_of(outputs: list) -> str:
    return "\n".join(o.data.get("text/plain", "") for o in outputs if o.output_type in ("execute_result", "display_data"))


def top_rows(text: str) -> list[list[str]]:
    """The rows of a 'Top next tokens' table (rank, then token / prob pairs), as printed."""
    rows = []
    for line in text.split("Top next tokens", 1)[1].splitlines():
        parts = line.split()
        if parts and parts[0].isdigit():
            rows.append(parts[1:])
        elif rows:
            break
    return rows


def test_saved_without_outputs():
    ku.assert_saved_without_outputs(FEATURES)
    ku.assert_saved_without_outputs(TRACING)


@pytest.fixture(scope="module")
def lab_dir():
    """The lab's copy of the examples (ignored by git), made as install/setup lab does: the
    notebooks run there, as a user of the lab runs them, so that 09's saved graph lands in an
    ignored place."""
    lab = ku.ROOT / "notebooks"
    p = subprocess.run([sys.executable, str(ku.ROOT / "install" / "lab_notebooks.py"), str(EXAMPLES), str(lab)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return lab


@pytest.fixture(scope="module")
def features_nb(isolated_env, lab_dir):
    return ku.run_notebook(FEATURES, timeout=600, artifact="08-features.ipynb", cwd=lab_dir)


@pytest.fixture(scope="module")
def tracing_nb(isolated_env, lab_dir):
    return ku.run_notebook(TRACING, timeout=600, artifact="09-circuit-tracing.ipynb", cwd=lab_dir)


def test_features_found_by_what_they_do(features_nb):
    found = dict(re.findall(r"^(lives in|city|Mara)\s+feature (\d+):", stdout_of(outputs_of(features_nb, "function features_of")), re.M))
    assert set(found) == {"lives in", "city", "Mara"}, found
    table = plain_of(outputs_of(features_nb, "tok = loupe.tokenizer"))
    rows = [line.split() for line in table.splitlines() if line.startswith('"')]
    assert len(rows) == 20, table  # 10 tokens each: "Mara lives in Oslo. Oslo is in Norway." and Ben's
    mara_doc, ben_doc = rows[:10], rows[10:]
    assert mara_doc[0][0] == '"Mara"' and ben_doc[0][0] == '"Ben"'
    for doc in (mara_doc, ben_doc):  # the " in" after " lives": the lives-in feature fires
        assert doc[1][0] == '"' and doc[2][1] == 'in"', doc[:3]
        assert float(doc[2][-3]) > 0, doc[2]
    assert all(float(r[-1]) == 0 for r in ben_doc), "the Mara feature fires in Ben's document"
    assert float(mara_doc[0][-1]) > 0, "the Mara feature does not fire on Mara"


def test_dashboards_open(features_nb):
    for src in ("sae:feature(lives_in)", "sae:feature(city)", "sae:feature(mara)"):
        outs = [o for o in outputs_of(features_nb, src) if o.output_type == "execute_result"]
        assert len(outs) == 1, src
        assert "text/html" in outs[0].data and outs[0].data["text/plain"].startswith("feature "), src


def test_steering_moves_leeds_to_oslo(features_nb):
    text = plain_of(outputs_of(features_nb, 'prompt = "Ben lives in"'))
    assert re.search(r"^clean:\s+Leeds\.", text, re.M), text
    assert re.search(r"^Mara feature \+60:\s+Oslo", text, re.M), text
    rows = top_rows(plain_of(outputs_of(features_nb, "r_clean = m:run(prompt)")))
    assert rows[0][0] == "␣Leeds" and rows[0][2] == "␣Oslo", rows[:2]
    rows = top_rows(plain_of(outputs_of(features_nb, "r_li = m:run(prompt")))
    assert rows[0][0] == "␣Leeds" and rows[0][2] == "␣Leeds", rows[:2]


def test_graph_explains_oslo(tracing_nb):
    summary = stdout_of(outputs_of(tracing_nb, 'prompt = "The capital'))
    assert 'logits: " Oslo"' in summary, summary
    m = re.search(r"replacement ([\d.]+), completeness ([\d.]+)", stdout_of(outputs_of(tracing_nb, "print(string.format(\"replacement")))
    assert m and float(m.group(1)) > 0.9 and float(m.group(2)) > 0.9, m
    paths = stdout_of(outputs_of(tracing_nb, "function describe")).splitlines()
    assert paths[0].split("  ")[2].startswith('" Mara" embedding'), paths[0]
    assert all(p.endswith('logit " Oslo"') for p in paths), paths
    cell = next(c for c in tracing_nb.cells if c.cell_type == "code" and c.source.strip() == "g")
    diagram = [o for o in cell.outputs if o.output_type == "execute_result"]
    assert len(diagram) == 1 and '<img src="data:image/svg+xml;base64,' in diagram[0].data["text/html"]
    assert "read back: the same nodes and edges" in stdout_of(outputs_of(tracing_nb, "g:save("))


def test_interventions_follow_the_graph(tracing_nb):
    direct = top_rows(plain_of(outputs_of(tracing_nb, "set = {}\nfor _, n in ipairs(direct)")))
    assert direct[0][0] == "␣Oslo" and direct[0][2] == "␣Oslo", direct[:1]
    assert float(direct[0][3]) < float(direct[0][1]), "ablating the direct features did not lower Oslo"
    removed = top_rows(plain_of(outputs_of(tracing_nb, "graph_features = {}")))
    assert removed[0][0] == "␣Oslo" and removed[0][2] != "␣Oslo", removed[:1]
    as_ben = top_rows(plain_of(outputs_of(tracing_nb, "gb = loupe.attribute")))
    assert as_ben[0][0] == "␣Oslo" and as_ben[0][2] == "␣London", as_ben[:1]
