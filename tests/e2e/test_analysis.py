"""End to end: the analysis methods (m:composition, r:dla, m:patch_sweep, kernel/lua/lua_analysis.c
and lua_patch.c) run headless with `loupe run` on small random GPT-2 and Llama (grouped-query)
models written by `transformers`, and checked against computations written here from the
definitions, on the checkpoint's own tensors and on transformers' forward pass:

- composition: TransformerLens' all_composition_scores formula, ||W_A W_B||_F / (||W_A||_F
  ||W_B||_F) with explicit d_model x d_model products in float64, from the safetensors weights in
  Hugging Face's layouts (GPT-2's Conv1D c_attn [D, 3D], Llama's q/k/v/o_proj [out, in], query
  head h reading kv head h // (n_heads / n_kv_heads)), raw and with TransformerLens' ln folding;
- dla: every part (embeddings, each layer's attention and MLP output, each head's z W_O) taken
  from transformers' modules with forward hooks, read through the final LayerNorm with its scale
  frozen, against loupe's numbers; tokens given as text go through a `tokenizers` tokenizer;
- patch_sweep: the same sweep done with forward pre-hooks on transformers' blocks.

Skips when torch or transformers are missing (the peer checks' set-up installs them)."""
from __future__ import annotations

import importlib.metadata as _md
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import kernelutil as ku

pytestmark = pytest.mark.lua

import torch  # noqa: E402  (python3-torch from Debian, installed by install/setup)


def _import_transformers():
    """transformers 4.49 pins older tokenizers / huggingface-hub at import: relaxed, as in
    tests/peer/test_models.py (neither is used through transformers here)."""
    real = _md.version
    relaxed = {"tokenizers": "0.21.0", "huggingface-hub": "0.30.0"}
    _md.version = lambda name: relaxed.get(name) or real(name)
    try:
        import transformers  # install/setup installs it: a missing one is a failure
    finally:
        _md.version = real
    return transformers


transformers = _import_transformers()
from safetensors.numpy import load_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

WORDS = ["The", "capital", "of", "France", "Italy", "Spain", "is", "Paris", "Rome", "Madrid", "and",
         "city", "a", "river", "big"]
EOT = "<|endoftext|>"
CLEAN, CORRUPT = "The capital of France is", "The capital of Italy is"


def tokenizer(folder: Path) -> Tokenizer:
    """A byte-level BPE (GPT-2's form) trained on sentences of WORDS: every word is one token."""
    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(WORDS, size=12)) for _ in range(400)] + [CLEAN + " Paris."] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, min_frequency=2, special_tokens=[EOT],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    tok.save(str(folder / "tokenizer.json"))
    return tok


def randomize(model, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    tok = tokenizer(folder)
    conf = transformers.GPT2Config(n_layer=3, n_embd=48, n_head=4, vocab_size=tok.get_vocab_size(),
                                   n_positions=32, bos_token_id=0, eos_token_id=0, attn_implementation="eager")
    torch.manual_seed(1)
    m = transformers.GPT2LMHeadModel(conf).eval()
    randomize(m, 1)
    m.save_pretrained(str(folder), safe_serialization=True)
    return m, folder, tok


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    conf = transformers.LlamaConfig(num_hidden_layers=3, hidden_size=64, num_attention_heads=8, num_key_value_heads=2,
                                    intermediate_size=96, vocab_size=101, max_position_embeddings=32,
                                    attn_implementation="eager")
    torch.manual_seed(2)
    m = transformers.LlamaForCausalLM(conf).eval()
    randomize(m, 2)
    m.save_pretrained(str(folder), safe_serialization=True)
    return m, folder


def loupe_run(script: str, tmp: Path) -> dict[str, list[float]]:
    """Runs a Lua script headless; lines "@KEY v1 v2 ..." come back as {KEY: [v...]}."""
    path = tmp / "script.lua"
    path.write_text(script)
    p = subprocess.run([str(ku.LOUPE), "run", str(path)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"loupe run failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    out = {}
    for line in p.stdout.splitlines():
        if line.startswith("@"):
            key, *vals = line[1:].split()
            out[key] = [float(v) for v in vals]
    out["_stdout"] = p.stdout  # type: ignore[assignment]
    return out


LUA_HELPERS = """
function emit(key, vals) local t = {} for i, v in ipairs(vals) do t[i] = string.format('%.9g', v) end
  print('@' .. key .. ' ' .. table.concat(t, ' ')) end
function flat4(s) local v = {} local sh = s:shape()
  for a = 1, sh[1] do for b = 1, sh[2] do for c = 1, sh[3] do for d = 1, sh[4] do v[#v + 1] = s[a][b][c][d] end end end end
  return v end
function flat2(s) local v = {} local sh = s:shape()
  for a = 1, sh[1] do for b = 1, sh[2] do v[#v + 1] = s[a][b] end end return v end
"""


# ---- composition ----


def head_weights(sd: dict, arch: str, layer: int, D: int, H: int, K: int, fold: bool):
    """W_Q, W_K, W_V (H, D, S) and W_O (H, S, D) per query head, x @ W convention, from HF tensors."""
    S = D // H
    if arch == "gpt2":
        pre = f"transformer.h.{layer}."
        c_attn, c_proj = sd[pre + "attn.c_attn.weight"], sd[pre + "attn.c_proj.weight"]  # (D, 3D), (D, D)
        q = np.stack([c_attn[:, h * S:(h + 1) * S] for h in range(H)])
        k = np.stack([c_attn[:, D + h * S:D + (h + 1) * S] for h in range(H)])
        v = np.stack([c_attn[:, 2 * D + h * S:2 * D + (h + 1) * S] for h in range(H)])
        o = np.stack([c_proj[h * S:(h + 1) * S, :] for h in range(H)])
        ln_w = sd[pre + "ln_1.weight"]
    else:
        pre = f"model.layers.{layer}."
        qp, kp, vp, op = (sd[pre + f"self_attn.{n}_proj.weight"] for n in "qkvo")  # (out, in)
        rep = H // K
        q = np.stack([qp[h * S:(h + 1) * S, :].T for h in range(H)])
        k = np.stack([kp[(h // rep) * S:(h // rep + 1) * S, :].T for h in range(H)])
        v = np.stack([vp[(h // rep) * S:(h // rep + 1) * S, :].T for h in range(H)])
        o = np.stack([op[:, h * S:(h + 1) * S].T for h in range(H)])
        ln_w = sd[pre + "input_layernorm.weight"]
    q, k, v, o = (x.astype(np.float64) for x in (q, k, v, o))
    if fold:  # TransformerLens' fold_ln (the weight) and, for LayerNorm, center_writing_weights
        q, k, v = (ln_w[None, :, None] * x for x in (q, k, v))
        if arch == "gpt2":
            o = o - o.mean(axis=-1, keepdims=True)
    return q, k, v, o


def composition_numpy(sd: dict, arch: str, L: int, D: int, H: int, K: int, kind: str, fold: bool) -> np.ndarray:
    W = [head_weights(sd, arch, layer, D, H, K, fold) for layer in range(L)]
    ov = [np.einsum("hds,hse->hde", w[2], w[3]) for w in W]  # W_V W_O, (H, D, D)
    qk = [np.einsum("hds,hes->hde", w[0], w[1]) for w in W]  # W_Q W_K^T
    right = {"q": qk, "k": [np.transpose(x, (0, 2, 1)) for x in qk], "v": ov}[kind]
    out = np.zeros((L, H, L, H))
    for l1 in range(L):
        for l2 in range(l1 + 1, L):
            for h1 in range(H):
                for h2 in range(H):
                    a, b = ov[l1][h1], right[l2][h2]
                    out[l1, h1, l2, h2] = np.linalg.norm(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return out


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_composition_matches_numpy(which, gpt2, llama, tmp_path):
    folder = gpt2[1] if which == "gpt2" else llama[1]
    script = LUA_HELPERS + f"m = loupe.load('{folder}')\n" + "".join(
        f"emit('{kind}{int(fold)}', flat4(m:composition{{kind = '{kind}', fold_ln = {str(fold).lower()}}}.scores))\n"
        for kind in "qkv" for fold in (False, True))
    script += "emit('pair', flat2(m:composition{kind = 'k', layers = {1, 2}}.scores))\n"
    got = loupe_run(script, tmp_path)
    sd = load_file(str(folder / "model.safetensors"))
    L, D, H, K = (3, 48, 4, 4) if which == "gpt2" else (3, 64, 8, 2)
    for kind in "qkv":
        for fold in (False, True):
            want = composition_numpy(sd, which, L, D, H, K, kind, fold)
            mine = np.array(got[f"{kind}{int(fold)}"]).reshape(want.shape)
            diff = np.abs(mine - want).max()
            print(f"[analysis] {which} {kind}-composition fold_ln={fold}: max diff {diff:.2e}, "
                  f"mean later-layer score {want[want > 0].mean():.3f}")
            assert diff < 1e-4, f"{which} {kind} fold {fold}: differs from NumPy by {diff:.3g}"
    pair = np.array(got["pair"]).reshape(H, H)
    assert np.abs(pair - composition_numpy(sd, which, L, D, H, K, "k", False)[1, :, 2, :]).max() < 1e-4


# ---- direct logit attribution ----


def hf_parts(model, ids: list[int]):
    """Embeddings, each attention and MLP output, the merged per-head z, from transformers."""
    parts, zs, hooks = {}, {}, []
    tr = model.transformer
    for i, blk in enumerate(tr.h):
        hooks.append(blk.attn.register_forward_hook(lambda mod, a, out, i=i: parts.__setitem__(f"attn{i}", out[0])))
        hooks.append(blk.mlp.register_forward_hook(lambda mod, a, out, i=i: parts.__setitem__(f"mlp{i}", out)))
        hooks.append(blk.attn.c_proj.register_forward_pre_hook(lambda mod, a, i=i: zs.__setitem__(i, a[0])))
    x = torch.tensor([ids])
    with torch.no_grad():
        out = model(x)
        parts["embed"] = tr.wte(x)
        parts["pos_embed"] = tr.wpe(torch.arange(len(ids))[None])
    for h in hooks:
        h.remove()
    return {k: v[0].double().numpy() for k, v in parts.items()}, {k: v[0].double().numpy() for k, v in zs.items()}, \
        out.logits[0].double().numpy()


def test_dla_matches_transformers(gpt2, tmp_path):
    model, folder, tok = gpt2
    ids = tok.encode(CLEAN).ids
    paris, rome = tok.encode(" Paris").ids, tok.encode(" Rome").ids
    assert len(paris) == 1 and len(rome) == 1, "the tokenizer has one token for each"
    script = LUA_HELPERS + f"""m = loupe.load('{folder}')
r = m:run('{CLEAN}')
emit('ids', r.tokens)
for _, spec in ipairs{{{{' Paris', ' Rome'}}, {{'Paris'}}}} do
  local d = r:dla{{token = spec[1], baseline_token = spec[2], pos = 3}}
  local key = spec[2] and 'diff' or 'one'
  emit(key, {{d.token, d.baseline or -1, d.logit, d.total, d.bias, d.scale, d.embed, d.pos_embed}})
  emit(key .. '_attn', d.attn); emit(key .. '_mlp', d.mlp); emit(key .. '_heads', flat2(d.heads))
end
print(r:dla{{token = ' Paris', baseline_token = ' Rome'}})
"""
    got = loupe_run(script, tmp_path)
    assert [int(v) for v in got["ids"]] == ids, "loupe's tokenizer agrees with `tokenizers`"
    parts, zs, logits = hf_parts(model, ids)
    sd = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    D, H, S, pos = 48, 4, 12, 2
    for key, tok_id, base_id in [("diff", paris[0], rome[0]), ("one", tok.encode("Paris").ids[0], -1)]:
        t_id, b_id, logit, total, bias, scale, embed, pos_embed = got[key]
        assert (int(t_id), int(b_id)) == (tok_id, base_id)
        u = sd["lm_head.weight"][tok_id] - (sd["lm_head.weight"][base_id] if base_id >= 0 else 0)
        resid = sum(parts[k][pos] for k in parts)  # the final residual stream
        want_scale = np.sqrt(resid.var() + model.config.layer_norm_epsilon)
        direction = sd["transformer.ln_f.weight"] * u

        def through_ln(c):  # TransformerLens' apply_ln_to_stack: centre, divide by the frozen scale
            return float((c - c.mean()) / want_scale @ direction)

        want_logit = logits[pos, tok_id] - (logits[pos, base_id] if base_id >= 0 else 0)
        assert abs(logit - want_logit) < 1e-4 and abs(total - want_logit) < 1e-3
        assert abs(scale - want_scale) < 1e-4 * want_scale
        assert abs(bias - float(sd["transformer.ln_f.bias"] @ u)) < 1e-4
        assert abs(embed - through_ln(parts["embed"][pos])) < 1e-4
        assert abs(pos_embed - through_ln(parts["pos_embed"][pos])) < 1e-4
        for layer in range(3):
            assert abs(got[key + "_attn"][layer] - through_ln(parts[f"attn{layer}"][pos])) < 1e-4
            assert abs(got[key + "_mlp"][layer] - through_ln(parts[f"mlp{layer}"][pos])) < 1e-4
            w_o = sd[f"transformer.h.{layer}.attn.c_proj.weight"]  # Conv1D (in = H*S, out = D)
            for h in range(H):
                head_out = zs[layer][pos, h * S:(h + 1) * S] @ w_o[h * S:(h + 1) * S]
                assert abs(got[key + "_heads"][layer * H + h] - through_ln(head_out)) < 1e-4, (key, layer, h)
    text = got["_stdout"]
    assert "Direct logit attribution of logit(\u2423Paris) - logit(\u2423Rome)" in text, text[-2000:]


# ---- patching ----


def hf_patch_sweep(model, clean: list[int], corrupt: list[int], t: int, b: int) -> np.ndarray:
    """resid_pre of each layer at each position, from the clean run into the corrupt one."""
    x_clean, x_corrupt = torch.tensor([clean]), torch.tensor([corrupt])
    with torch.no_grad():
        hs = model(x_clean, output_hidden_states=True).hidden_states  # hs[l] = resid_pre of block l

        def metric(x):
            lg = model(x).logits[0, -1]
            return float(lg[t] - lg[b])

        m_clean, m_corrupt = metric(x_clean), metric(x_corrupt)
        out = np.zeros((len(model.transformer.h), len(clean)))
        for layer, blk in enumerate(model.transformer.h):
            for p in range(len(clean)):
                def pre(mod, args, layer=layer, p=p):
                    h = args[0].clone()
                    h[0, p] = hs[layer][0, p]
                    return (h, *args[1:])
                handle = blk.register_forward_pre_hook(pre)
                out[layer, p] = (metric(x_corrupt) - m_corrupt) / (m_clean - m_corrupt)
                handle.remove()
    return out


def test_patch_sweep_matches_transformers(gpt2, tmp_path):
    model, folder, tok = gpt2
    clean, corrupt = tok.encode(CLEAN).ids, tok.encode(CORRUPT).ids
    assert len(clean) == len(corrupt) and sum(a != b for a, b in zip(clean, corrupt)) == 1
    script = LUA_HELPERS + f"""m = loupe.load('{folder}')
local f = m:patch_sweep{{clean = '{CLEAN}', corrupt = '{CORRUPT}', hook = 'resid_pre',
                         metric = {{token = ' Paris', baseline = ' Rome'}}}}
emit('values', flat2(f.values)); emit('ends', {{f.clean, f.corrupt}})
print(f)
local ok, err = pcall(m.patch_sweep, m, {{clean = '{CLEAN}', corrupt = 'The capital of the big city and a river is',
                                          metric = {{token = ' Paris'}}}})
print('ERR ' .. tostring(err))
"""
    got = loupe_run(script, tmp_path)
    want = hf_patch_sweep(model, clean, corrupt, tok.encode(" Paris").ids[0], tok.encode(" Rome").ids[0])
    mine = np.array(got["values"]).reshape(want.shape)
    diff = np.abs(mine - want).max()
    print(f"[analysis] patch sweep vs transformers: max diff {diff:.2e}")
    assert diff < 1e-3, f"{mine}\n{want}"
    assert np.allclose(mine[0, [i for i in range(len(clean)) if clean[i] == corrupt[i]]], 0, atol=1e-5)
    text = got["_stdout"]
    assert "Activation patching of hook_resid_pre" in text
    assert re.search(r"ERR .*same number of tokens \(clean \d+, corrupt \d+\)", text), text[-1500:]


# ---- r:loss ----


def test_loss_matches_transformers(gpt2, tmp_path):
    """r:loss() equals transformers' labels= loss; r:loss{per_token = true} the per-token
    cross-entropy; bad calls are errors the user can read."""
    model, folder, tok = gpt2
    rows = [tok.encode(CLEAN).ids, tok.encode("Rome is a city in Italy").ids]
    n = min(len(r) for r in rows)
    rows = [r[:n] for r in rows]
    lua_rows = "{" + ", ".join("{" + ", ".join(str(i) for i in r) + "}" for r in rows) + "}"
    script = LUA_HELPERS + f"""m = loupe.load('{folder}')
r = m:run({lua_rows})
emit('mean', {{r:loss()}})
emit('per', flat2(r:loss{{per_token = true}}))
print('ERR1', select(2, pcall(function() return m:run({{{rows[0][0]}}}):loss() end)))
print('ERR2', select(2, pcall(function() return r:loss(3) end)))
"""
    got = loupe_run(script, tmp_path)
    ids = torch.tensor(rows)
    with torch.no_grad():
        out = model(ids, labels=ids)
        logp = out.logits.double().log_softmax(-1)
    per = -logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    assert abs(got["mean"][0] - float(out.loss)) < 1e-4
    assert np.allclose(np.array(got["per"]).reshape(per.shape), per.numpy(), atol=1e-4)
    text = got["_stdout"]
    assert "ERR1" in text and "the loss needs at least 2" in text
    assert "ERR2" in text and "options table" in text
