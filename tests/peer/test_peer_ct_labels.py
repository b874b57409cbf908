"""Peer check in .venv-peer: a transcoder set saved with its harvests and labels
(loupe_harvest_layer_{l}.safetensors, loupe_labels_layer_{l}.json beside the layer files,
issues 16 and 17) still loads in circuit-tracer (load_transcoders_from_cache, through
peer_scripts/ct_files.py): the same kind, layers and hooks, and every layer's parameters equal
to its layer_{l}.safetensors bit for bit (the extra files are not taken for layers).

A missing or broken .venv-peer fails this test with why (`bash install/setup test` makes it).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kernelutil as ku  # noqa: E402
import peerenv  # noqa: E402
from test_peer_saelens import loupe_run  # noqa: E402

MODEL = ku.ROOT / "examples" / "models" / "default"
N_LAYERS, D_MODEL, D_TC = 4, 192, 48

_tools_built = ku.require_built(ku.LOUPE)


@pytest.mark.timeout(300)
def test_circuit_tracer_reads_a_labelled_set(tmp_path: Path) -> None:
    folder = tmp_path / "tc" / "labelled"
    lua = f"""
local m = loupe.load({str(MODEL)!r})
local ds = loupe.data.load{{text = string.rep("Mara lives in Oslo and Ben lives in Paris. ", 20),
                           tokenizer = loupe.tokenizer({str(MODEL)!r})}}
local t = loupe.transcoders.random{{n_layers = {N_LAYERS}, d_model = {D_MODEL}, d_transcoder = {D_TC},
                                    activation = 'jumprelu', seed = 4}}
t:harvest{{model = m, data = ds, ctx = 32, quiet = true}}
t:label(1, 3, '<b>mine</b>')
t:save({str(folder)!r})
print(loupe.transcoders.load({str(folder)!r}):label(1, 3))
"""
    assert loupe_run(lua, tmp_path).strip() == "<b>mine</b>"
    extras = sorted(f.name for f in folder.glob("loupe_*"))
    assert extras == sorted([f"loupe_harvest_layer_{i}.safetensors" for i in range(N_LAYERS)]
                            + [f"loupe_labels_layer_{i}.json" for i in range(N_LAYERS)]), extras
    x = np.random.default_rng(3).standard_normal((8, D_MODEL)).astype(np.float32)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    peer = peerenv.run("ct_files.py", {"sets": {"labelled": str(folder)}, "x": str(tmp_path / "x.safetensors")},
                       tmp_path / "peer")
    info = peer["info"]["labelled"]
    assert info["model_kind"] == "transcoder_set" and info["n_layers"] == N_LAYERS, info
    assert info["feature_input_hook"] == "mlp.hook_in" and info["feature_output_hook"] == "mlp.hook_out", info
    ct = load_file(str(tmp_path / "peer" / "ct_loaded.safetensors"))
    for layer in range(N_LAYERS):
        for k, v in load_file(str(folder / f"layer_{layer}.safetensors")).items():
            assert np.array_equal(ct[f"labelled.{layer}.{k}"], v), f"layer {layer}: circuit-tracer's {k} differs"
    assert not any(k.startswith(f"labelled.{N_LAYERS}.") for k in ct), "circuit-tracer found an extra layer"
