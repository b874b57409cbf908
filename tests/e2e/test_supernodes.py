"""End to end: g:supernodes on the default model with seeded random transcoders, through
`loupe run` (tests/e2e/lua/supernodes.lua checks the grouping rules and that the coarsened
edges are the sums of the members' edges). Here: the saved coarsened graph records the groups
as qParams supernodes ([[name, member ids...]]) and loads back."""
from __future__ import annotations

import json
import subprocess

import kernelutil as ku

SCRIPT = ku.ROOT / "tests" / "e2e" / "lua" / "supernodes.lua"
MODEL = ku.ROOT / "examples" / "models" / "default"

_built = ku.require_built(ku.LOUPE)


def test_supernodes_end_to_end(tmp_path):
    script = tmp_path / "supernodes.lua"
    script.write_text(f"MODEL = {str(MODEL)!r}; WORK = {str(tmp_path)!r}\n" + SCRIPT.read_text())
    p = subprocess.run([str(ku.LOUPE), "run", str(script)], capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"loupe run failed ({p.returncode}):\n{out[-3000:]}"
    assert p.stdout.rstrip().endswith("ok"), out[-3000:]
    g = json.loads((tmp_path / "coarse.json").read_text())
    groups = [line.split("\t") for line in (tmp_path / "groups.txt").read_text().splitlines()]
    assert groups
    assert g["qParams"]["supernodes"] == [[name, *ids.split()] for name, ids in groups]
    ids = {n["node_id"] for n in g["nodes"]}
    for _, members in groups:
        assert members.split()[0] in ids  # a group is its first member's node
