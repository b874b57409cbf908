"""Which transcoder features carry a prompt's top next token: a developer's look at the default
model's transcoder set (examples/models/default/transcoders) through loupe's attribution
engine, for the findings in examples/models/default/README.md ("What it shows on the two-hop
prompt").

    .venv/bin/python tools/probe_transcoders.py "The capital of the country where Mara lives is" "Mara lives in"

For each prompt (with <|endoftext|> in front, as circuit-tracer's graphs have a first position
to leave out) it runs build/tests/peer/attrib_tool (the test driver of backend/attrib: build
it with `cmake --build build --target attrib_tool`) for the top logit, and prints the
replacement and completeness scores, the influence of the embeddings and error nodes, the
features of largest influence with their direct effect on the top logit and the tokens their
decoder row unembeds to (through ln_f's weight and the tied embedding, a rough guide), and the
features at the positions of the names given by --names. Environment: LOUPE_TC (another set).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "models" / "default"
TOOL = ROOT / "build" / "tests" / "peer" / "attrib_tool"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prompts", nargs="+")
    ap.add_argument("--names", default=" Mara, Ben", help="tokens whose positions' features to list (comma-separated)")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    tc = Path(os.environ.get("LOUPE_TC", MODEL / "transcoders"))
    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    name = lambda i: tok.id_to_token(int(i)).replace("\u0120", " ")  # noqa: E731 (byte-level BPE's space)
    w = load_file(str(MODEL / "model.safetensors"))
    wte = w[next(k for k in w if k.endswith("wte.weight"))].astype(np.float64)
    lnf = w[next(k for k in w if k.endswith("ln_f.weight"))].astype(np.float64)
    n_layers = len(list(tc.glob("layer_*.safetensors")))
    dec = [load_file(str(tc / f"layer_{l}.safetensors"))["W_dec"].astype(np.float64) for l in range(n_layers)]

    def unembeds(l: int, i: int, n: int = 4) -> str:
        v = (dec[l][i] - dec[l][i].mean()) * lnf
        return ", ".join(repr(name(t)) for t in np.argsort(-(wte @ v))[:n])

    wanted = [s for s in args.names.split(",") if s]
    with tempfile.TemporaryDirectory() as work:
        adj = Path(work) / "adj.f32"
        for prompt in args.prompts:
            ids = tok.encode("<|endoftext|>" + prompt, add_special_tokens=False).ids
            p = subprocess.run([str(TOOL), str(MODEL), str(tc), "1", "0.95", "32", "0.8", "0.98", str(adj),
                                *map(str, ids)], capture_output=True, text=True, check=False)
            if p.returncode != 0:
                raise SystemExit(f"attrib_tool failed: {p.stderr.strip()}")
            info = json.loads(p.stdout)
            n, nf, T = info["n_nodes"], info["n_features"], len(ids)
            A = np.fromfile(adj, dtype="<f4").reshape(n, n)
            infl = np.array(info["influence"])
            logit = info["logit_tokens"][0]
            row = n - len(info["logit_tokens"])  # the top logit's node
            print(f"\n== {prompt!r} -> {name(logit)!r} (p {info['logit_probs'][0]:.3f}): {nf} active features; "
                  f"replacement {info['replacement']:.3f}, completeness {info['completeness']:.3f}")
            ne = n_layers * T
            print("  influence: errors %.3f; embeddings %s" % (
                infl[nf:nf + ne].sum(), ", ".join(f"{name(ids[t])!r} {infl[nf + ne + t]:.3f}" for t in range(T))))

            def show(i: int) -> str:
                l, pos, f, act = info["features"][i]
                return (f"L{l} f{f:<5} at {pos} {name(ids[pos])!r:10} act {act:5.2f} influence {infl[i]:.4f} "
                        f"direct {A[row, i]:+.3f}  unembeds to {unembeds(l, f)}")

            for i in np.argsort(-infl[:nf])[:args.top]:
                print("  " + show(i))
            for want in wanted:
                for pos in (t for t in range(T) if name(ids[t]) == want):
                    sel = sorted((i for i in range(nf) if info["features"][i][1] == pos), key=lambda i: -infl[i])
                    print(f"  at {want!r} (position {pos}): {len(sel)} features, the most influential:")
                    for i in sel[:5]:
                        print("    " + show(i))


if __name__ == "__main__":
    main()
