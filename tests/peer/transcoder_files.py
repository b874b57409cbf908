"""Per-layer transcoders in circuit-tracer's on-disk layout, and their forward pass in NumPy.

The layout (circuit-tracer 0.5.0, circuit_tracer/utils/caching.py and
transcoder/single_layer_transcoder.py; the design notes' DICTIONARY.md, "Files"): a folder with
`config.yaml` {model_kind: transcoder_set, feature_input_hook, feature_output_hook,
transcoders: [files in layer order], activation} and one `layer_{i}.safetensors` per layer
holding W_enc [d_tc, d_model] (one row per feature: transposed against SAELens), W_dec
[d_tc, d_model], b_enc [d_tc], b_dec [d_model], and for JumpReLU
`activation_function.threshold` [d_tc]. circuit-tracer loads such a folder offline with
`circuit_tracer.utils.caching.load_transcoders_from_cache(NAME, cache_dir=PARENT)`.

f = act(x W_enc^T + b_enc), y = f W_dec + b_dec, act = ReLU or JumpReLU (z * [z > theta]).

write_transcoder_set() writes random weights from a seeded generator (tests; later loupe
writes this layout itself); read_transcoder_set() and encode()/decode() are the NumPy
reference the peer tests hold circuit-tracer to.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


def write_transcoder_set(folder: Path, *, n_layers: int, d_model: int, d_transcoder: int, seed: int,
                         input_hook: str = "mlp.hook_in", output_hook: str = "mlp.hook_out",
                         jumprelu: bool = False, enc_bias: float = -0.5) -> Path:
    """Writes FOLDER/config.yaml and FOLDER/layer_{i}.safetensors (f32) for N_LAYERS random
    transcoders: encoder rows ~ N(0, 1/d_model) (pre-activations of order 1 on inputs of
    norm ~sqrt(d_model)), encoder biases around ENC_BIAS (a fraction of the features fire),
    decoder rows of norm ~0.1, small decoder biases; JumpReLU thresholds in [0, 0.2)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for layer in range(n_layers):
        t = {
            "W_enc": rng.standard_normal((d_transcoder, d_model)) / np.sqrt(d_model),
            "W_dec": 0.1 * rng.standard_normal((d_transcoder, d_model)) / np.sqrt(d_model),
            "b_enc": enc_bias + 0.1 * rng.standard_normal(d_transcoder),
            "b_dec": 0.01 * rng.standard_normal(d_model),
        }
        if jumprelu:
            t["activation_function.threshold"] = 0.2 * rng.random(d_transcoder)
        name = f"layer_{layer}.safetensors"
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in t.items()}, str(folder / name))
        files.append(name)
    # YAML by hand: JSON strings are valid YAML scalars.
    lines = ["model_kind: transcoder_set",
             f"feature_input_hook: {json.dumps(input_hook)}",
             f"feature_output_hook: {json.dumps(output_hook)}",
             f"activation: {'jumprelu' if jumprelu else 'relu'}",
             "transcoders:"] + [f"  - {json.dumps(f)}" for f in files]
    (folder / "config.yaml").write_text("\n".join(lines) + "\n")
    return folder


def read_transcoder_set(folder: Path) -> list[dict[str, np.ndarray]]:
    """The layers of a transcoder set in circuit-tracer's layout, in layer order (f64)."""
    folder = Path(folder)
    layers, i = [], 0
    while (folder / f"layer_{i}.safetensors").is_file():
        layers.append({k: v.astype(np.float64) for k, v in load_file(str(folder / f"layer_{i}.safetensors")).items()})
        i += 1
    if not layers:
        raise FileNotFoundError(f"no layer_0.safetensors in {folder}")
    return layers


def pre_activations(t: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """x [..., d_model] -> x W_enc^T + b_enc [..., d_tc]."""
    return x @ t["W_enc"].T + t["b_enc"]


def encode(t: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    z = pre_activations(t, x)
    theta = t.get("activation_function.threshold")
    return np.where(z > theta, z, 0.0) if theta is not None else np.maximum(z, 0.0)


def decode(t: dict[str, np.ndarray], f: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
    y = f @ t["W_dec"] + t["b_dec"]
    if "W_skip" in t:
        y = y + x @ t["W_skip"].T
    return y
