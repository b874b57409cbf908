"""End to end: examples/08-features.ipynb (an SAE on the default model: harvest, labels,
dashboards, steering) and examples/09-circuit-tracing.ipynb (the two-hop prompt's attribution
graph on the shipped transcoders, its automatic supernodes, a QK explanation, and interventions
on its features), executed with nbclient on the loupe kernel. Assertions on what the notebooks'
prose says the reader sees: in 08, the "lives in" feature fires on the " in" after " lives" for
Mara and Ben, the Mara feature never fires in Ben's document, each dashboard opens, and steering
"Ben lives in" with the Mara feature turns the answer from " Leeds" to " Oslo"; in 09, the graph
explains " Oslo" with replacement and completeness scores near 1, its top path starts at the
" Mara" embedding, its supernodes sum their members' edges, the head found to attend to " Mara"
has its score there split into pairs that add up to it, removing the graph's features takes
" Oslo" off the top, and setting them as for Ben makes the answer " London"."""
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


def test_supernodes_coarsen_the_graph(tracing_nb):
    """09's automatic supernodes: the groups are features at the last token (position 9 in the
    ids), the coarsened graph has one node per group, the biggest group's edge to the logit is the
    sum of its members', and the biggest group is on the coarsened graph's strongest path, from
    the " Mara" embedding, ahead of the direct one."""
    out = stdout_of(outputs_of(tracing_nb, "sg, groups = g:supernodes")).splitlines()
    m = re.match(r"(\d+) nodes become (\d+), (\d+) edges become (\d+)", out[0])
    assert m, out[0]
    groups = [line.split() for line in out[1:]]
    assert groups and all(len(gr) >= 5 for gr in groups), groups  # id, name (3 words), members
    members = [gr[4:] for gr in groups]
    assert all(gr[0] == ids[0] for gr, ids in zip(groups, members)), "a group does not keep its first member's id"
    assert all(re.fullmatch(r"\d+_\d+_9", i) for ids in members for i in ids), members
    n, n_coarse = int(m.group(1)), int(m.group(2))
    assert n_coarse == n - sum(len(ids) - 1 for ids in members)
    big = max(members, key=len)
    assert len(big) == 22 and big[0].startswith("0_"), big  # "the biggest, 22 layer-0 features"
    edge = stdout_of(outputs_of(tracing_nb, "big = groups[1]")).splitlines()
    m = re.search(r"logit: (-?[\d.]+) in the coarsened graph, (-?[\d.]+) summed over its (\d+) members", edge[0])
    assert m and int(m.group(3)) == len(big), edge[0]
    assert abs(float(m.group(1)) - float(m.group(2))) <= 1e-4 * max(1.0, abs(float(m.group(2)))), edge[0]
    paths = [line.split("  ") for line in edge[1:]]
    assert paths[0][2:] == ["E_416_7", "->", big[0], "->", paths[0][-1]], paths[0]
    assert paths[1][2:] == ["E_416_7", "->", paths[0][-1]], paths[1]  # the direct edge, second
    cell = next(c for c in tracing_nb.cells if c.cell_type == "code" and c.source.strip() == "sg")
    diagram = [o for o in cell.outputs if o.output_type == "execute_result"]
    assert len(diagram) == 1 and '<img src="data:image/svg+xml;base64,' in diagram[0].data["text/html"]


def test_qk_explains_the_name_head(tracing_nb):
    """09's QK explanation: the head named attends most to " Mara" from the last token (0.93, no
    other head above a quarter), its score there is the highest over the keys, its pairs add up to
    the score, the " is" x " Mara" embedding pair is the largest positive one, and the key's token
    embedding adds more than 3 for " Mara", a few tenths at most for any other token."""
    out = stdout_of(outputs_of(tracing_nb, "r = m:run(g.tokens, {cache")).splitlines()
    att = {h: float(p) for h, p in re.findall(r"(L\d+H\d+) ([\d.]+)", "\n".join(out[1:-1]))}
    assert len(att) == 16, att
    named = out[-1].split()[-1]
    assert named == "L0H3" and max(att, key=att.get) == named, (named, att)
    assert att[named] > 0.9 and all(p < 0.25 for h, p in att.items() if h != named), att
    qk = stdout_of(outputs_of(tracing_nb, "q = g:qk{")).splitlines()
    m = re.match(r"score (-?[\d.]+); the (\d+) pairs add up to (-?[\d.]+)", qk[0])
    assert m and abs(float(m.group(1)) - float(m.group(3))) <= 2e-4, qk[0]
    pairs = [line.split() for line in qk[1:]]
    assert len(pairs) == int(m.group(2)) and all(p[1] == "x" for p in pairs), pairs
    assert pairs[0][0] == "E_278_9" and pairs[0][2] == "pos_embed" and float(pairs[0][3]) < 0, pairs[0]
    positive = max(pairs, key=lambda p: float(p[3]) if p[0] != "pos_embed" and p[2] != "pos_embed" else -1e9)
    assert positive[:3] == ["E_278_9", "x", "E_416_7"], positive
    rows = stdout_of(outputs_of(tracing_nb, "for k = 1, T do")).splitlines()
    scores, token_terms = {}, {}
    for line in rows:
        m = re.match(r'(".*?")\s+score\s+(-?[\d.]+)\s+key side: (.*)', line)
        assert m, line
        scores[m.group(1)] = float(m.group(2))
        terms = dict(t.rsplit(" ", 1) for t in m.group(3).split(", "))
        token_terms[m.group(1)] = [float(v) for i, v in terms.items() if i.startswith("E_")]
        assert float(terms["pos_embed"]) < 0, line
    assert len(scores) == 10 and max(scores, key=scores.get) == '" Mara"', scores
    assert token_terms['" Mara"'] and token_terms['" Mara"'][0] > 3, token_terms
    assert all(v < 0.5 for k, vs in token_terms.items() if k != '" Mara"' for v in vs), token_terms
