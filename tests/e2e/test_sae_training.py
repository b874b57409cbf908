"""loupe.sae.train through a real kernel, on the default model's layer-0 residual stream and
a corpus made as the model's was (tools/make_corpus.py, smaller): a topk SAE learns
(explained variance rises above a measured bar, L0 stays at k) with live figures and a
progress bar updated in place; an interrupt keeps a usable SAE of the last finished step,
equal to an uninterrupted training of as many steps, and resume continues to the asked
total; a sweep of two k returns two SAEs; bad input is a clear error; sae:encode, decode and
forward agree with a hand computation from sae.W_enc and the others; help lists them."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import time

import pytest

import kernelutil as ku

pytestmark = pytest.mark.lua

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "examples" / "models" / "default"

# Measured (loupe run, Dec 2026): 150 steps of 256 tokens, width 384, k 16, lr 2e-3 reach
# explained variance 0.927 from -0.26 at step 1; the bar leaves room for other machines.
EV_BAR = 0.8
TRAIN = ('loupe.sae.train{model = m, hook = "blocks.0.hook_resid_post", data = ds, width = 384, k = 16, '
         'batch = 256, lr = 2e-3, ctx = 64, seed = 3')


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("sae-corpus") / "corpus.txt"
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_corpus.py"), "--seed", "1234", "--size", "300000",
                    str(path)], check=True, capture_output=True)
    return path


def setup(kernel: ku.Kernel, corpus: pathlib.Path) -> None:
    kernel.ok(f'm = loupe.load("{MODEL}")\n'
              f'ds = loupe.data.load{{files = {{"{corpus}"}}, tokenizer = loupe.tokenizer("{MODEL}")}}',
              timeout=60)


def final_displays(msgs: list[dict]) -> dict[str, dict]:
    final = {}
    for m in ku.of_type(msgs, "display_data", "update_display_data"):
        final[m["content"]["transient"]["display_id"]] = m["content"]["data"]
    return final


def test_topk_sae_learns_with_live_figures_and_progress_bar(kernel, corpus):
    setup(kernel, corpus)
    reply, msgs = kernel.execute(
        f"s = {TRAIN}, steps = 150}}\n"
        "h = s.history\n"
        "local l0 = 0\nfor i = 141, 150 do l0 = l0 + h.l0[i] / 10 end\n"
        "print(#h.step, h.step[150], h.tokens[150], h.explained_variance[1], h.explained_variance[150], l0,"
        " h.dead[150], s.scale, s.d_sae, s.k, s.hook_in)", timeout=400)
    assert reply["content"]["status"] == "ok", reply["content"]
    out = ku.stream_text(msgs).split()
    assert out[:3] == ["150", "150", str(150 * 256)], out
    first, last, l0 = float(out[3]), float(out[4]), float(out[5])
    assert first < 0.3, first  # a random SAE explains little
    assert last > EV_BAR, (first, last)
    assert 15.0 <= l0 <= 16.0, l0  # topk: k per token (fewer only where ReLU zeroes one)
    assert 0 <= int(out[6]) <= 384
    assert out[7:] == ["1.0", "384", "16", "blocks.0.hook_resid_post"], out
    shown = ku.of_type(msgs, "display_data")
    ids = {m["content"]["transient"]["display_id"] for m in shown}
    assert len(ids) == 5, ids  # four live figures and the progress bar, each one display
    assert {m["content"]["transient"]["display_id"] for m in ku.of_type(msgs, "update_display_data")} <= ids
    texts = [d["text/plain"] for d in final_displays(msgs).values()]
    bar = [t for t in texts if "150/150" in t]
    assert bar and "loss" in bar[0] and "done" in bar[0], texts
    for title in ("SAE loss", "L0", "explained variance", "dead features"):
        plot = [t for t in texts if t.startswith(title)]
        assert plot and "150 points" in plot[0], (title, texts)
    # help lists the methods
    reply, _ = kernel.execute("help(s)")
    pages = [p["data"]["text/plain"] for p in reply["content"].get("payload", []) if p["source"] == "page"]
    assert pages and pages[0].startswith("SAE: "), reply["content"]
    methods = pages[0].split("\nMethods", 1)[1].split("\n\n", 1)[0]
    for name in ("encode", "decode", "forward", "save"):
        assert re.search(rf"^  (?:\w+[:.])?{name}\b", methods, re.M), pages[0]
    assert "history" in pages[0].split("\nFields", 1)[1]


def test_interrupt_keeps_a_usable_sae_and_resume_continues(kernel, corpus):
    setup(kernel, corpus)
    msg_id = kernel.kc.execute(f"s = {TRAIN}, steps = 100000}}")
    deadline = time.monotonic() + 120
    started = False
    while not started:  # the loss figure appears with the first finished step
        assert time.monotonic() < deadline, "training never made a step"
        msg = kernel.kc.get_iopub_msg(timeout=120)
        started = (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "display_data"
                   and msg["content"]["data"]["text/plain"].startswith("SAE loss"))
    time.sleep(1.0)
    kernel.km.interrupt_kernel()
    reply = kernel.shell_reply(msg_id, timeout=60)
    msgs = kernel.iopub_until_idle(msg_id)
    assert reply["content"]["ename"] == "KeyboardInterrupt", reply["content"]
    text = ku.stream_text(msgs)
    found = re.search(r"SAE training interrupted at step (\d+) of 100000: the SAE keeps the weights of step \1", text)
    assert found, text
    done = int(found.group(1))
    assert done >= 1
    # the SAE of the last finished step, usable as it is
    reply, msgs = kernel.execute(
        f"s = loupe.sae.train{{resume = true, steps = {done}, live = false}}\n"
        "xh, f = s:forward(loupe.randn(4, 192))\n"
        "fp = string.format('%.9g %.9g', s.W_enc:sum(), s.W_dec:sum())\n"
        "print(#s.history.step, xh:shape()[1], xh:shape()[2], xh:norm() < math.huge)", timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert ku.stream_text(msgs).split() == [str(done), "4", "192", "true"]
    # equal to an uninterrupted training of as many steps
    reply, msgs = kernel.execute(
        f"u = {TRAIN}, steps = {done}, live = false}}\n"
        "print(string.format('%.9g %.9g', u.W_enc:sum(), u.W_dec:sum()) == fp)", timeout=400)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert ku.stream_text(msgs).split() == ["true"]
    # resume the interrupted one by its SAE to a later total: the history is continuous
    reply, msgs = kernel.execute(
        f"s = loupe.sae.train{{sae = s, resume = true, steps = {done + 10}, live = false}}\n"
        "local ok = true\nfor i, st in ipairs(s.history.step) do ok = ok and st == i end\n"
        "print(#s.history.step, ok, s.history.tokens[#s.history.step])", timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert ku.stream_text(msgs).split() == [str(done + 10), "true", str((done + 10) * 256)]


def test_a_transcoder_of_a_layer_predicts_its_mlp(kernel, corpus):
    setup(kernel, corpus)
    reply, msgs = kernel.execute(
        "tc = loupe.sae.train{model = m, transcoder = true, layer = 0, data = ds, width = 384, k = 16, batch = 256,"
        " lr = 2e-3, ctx = 64, steps = 100, live = false}\n"
        "print(tc.hook_in, tc.hook_out, tc.arch, tc.history.explained_variance[1], tc.history.explained_variance[100])",
        timeout=400)
    assert reply["content"]["status"] == "ok", reply["content"]
    out = ku.stream_text(msgs).split()
    assert out[:3] == ["blocks.0.mlp.hook_in", "blocks.0.mlp.hook_out", "topk_transcoder"], out
    # measured 0.868 at step 100 (loupe run, Dec 2026)
    assert float(out[3]) < 0.3 and float(out[4]) > 0.7, out


def test_a_sweep_of_two_k_returns_two_saes(kernel, corpus):
    setup(kernel, corpus)
    reply, msgs = kernel.execute(
        f"l = {TRAIN}, sweep = {{k = {{8, 16}}}}, steps = 40, live = false}}\n"
        "print(#l, l[1].k, l[2].k, l[1].history.l0[40], l[2].history.l0[40], #l[1].history.step,"
        " l[1].W_enc:sum() ~= l[2].W_enc:sum())", timeout=400)
    assert reply["content"]["status"] == "ok", reply["content"]
    out = ku.stream_text(msgs).split()
    assert out[:3] == ["2", "8", "16"], out
    assert 7.0 <= float(out[3]) <= 8.0 and 15.0 <= float(out[4]) <= 16.0, out
    assert out[5:] == ["40", "true"], out


@pytest.mark.parametrize("code, needle", [
    (TRAIN.replace("hook_resid_post", "hook_resid_pots") + ", steps = 2}",
     "no hook point 'blocks.0.hook_resid_pots' (nearest: blocks.0.hook_resid_post"),
    (TRAIN.replace("width = 384", "width = 200000000") + ", steps = 2}", "cannot allocate"),
    (TRAIN + ', arch = "gated", steps = 2}', "unknown arch 'gated'"),
    ('loupe.sae.train{model = m, transcoder = true, data = ds}', "hook_in and hook_out, or layer"),
    (TRAIN + ", sweep = {k = {4}, l1 = {1}}, steps = 2}", "not both"),
    (TRAIN + ", k = 0, steps = 2}", "k = 0 is out of range"),
    ("loupe.sae.train{resume = true}", "no SAE training to resume"),
    (TRAIN.replace("lr = 2e-3", "lr = 1e38") + ", steps = 20, live = false}", "(NaN or Inf); the weights are kept as of step"),
    ("loupe.sae.random{arch = 'topk', d_in = 4, d_sae = 8, k = 2}:encode(loupe.randn(3, 5))", "(N, 4)"),
])
def test_bad_input_is_a_clear_error(kernel, corpus, code, needle):
    setup(kernel, corpus)
    reply, _ = kernel.execute(code, timeout=120)
    assert reply["content"]["status"] == "error", code
    assert needle in reply["content"]["evalue"], (code, reply["content"]["evalue"])
    kernel.ok("x = 1")  # the kernel keeps going


HAND = """
function hand(s, x, k)
  local We, be, Wd, bd = s.W_enc:totable(), s.b_enc:totable(), s.W_dec:totable(), s.b_dec:totable()
  local X = x:totable()
  local F, XH = {}, {}
  for n = 1, #X do
    local z = {}
    for j = 1, #be do
      local a = be[j]
      for i = 1, #bd do a = a + (X[n][i] - bd[i]) * We[i][j] end
      z[j] = a
    end
    local keep = {}
    if k then
      local order = {}
      for j = 1, #z do order[j] = j end
      table.sort(order, function(a, b) if z[a] ~= z[b] then return z[a] > z[b] end return a < b end)
      for r = 1, k do keep[order[r]] = true end
    end
    F[n] = {}
    for j = 1, #z do F[n][j] = ((not k or keep[j]) and z[j] > 0) and z[j] or 0 end
    XH[n] = {}
    for i = 1, #bd do
      local a = bd[i]
      for j = 1, #z do a = a + F[n][j] * Wd[j][i] end
      XH[n][i] = a
    end
  end
  return F, XH
end
function maxdiff(a, t)
  local m = 0
  for n = 1, #a do for j = 1, #a[n] do m = math.max(m, math.abs(a[n][j] - t[n][j])) end end
  return m
end
"""


@pytest.mark.parametrize("arch, k", [("topk", 3), ("standard", None)])
def test_encode_decode_forward_agree_with_a_hand_computation(kernel, arch, k):
    kernel.ok(HAND)
    karg = f", k = {k}" if k else ""
    reply, msgs = kernel.execute(
        f"s = loupe.sae.random{{arch = '{arch}', d_in = 6, d_sae = 10{karg}, seed = 4}}\n"
        "x = loupe.randn(5, 6)\n"
        f"F, XH = hand(s, x, {k or 'nil'})\n"
        "f = s:encode(x)\nxh = s:decode(f)\nxh2, f2 = s:forward(x)\n"
        "nz = 0\nfor _, r in ipairs(F) do for _, v in ipairs(r) do if v ~= 0 then nz = nz + 1 end end end\n"
        "v = s:encode(x:slice(1, 3, 3):reshape(6))\n"
        "print(maxdiff(F, f:totable()), maxdiff(XH, xh:totable()), maxdiff(XH, xh2:totable()),"
        " maxdiff(F, f2:totable()), nz, v:dim(), maxdiff({F[3]}, {v:totable()}))")
    assert reply["content"]["status"] == "ok", reply["content"]
    out = ku.stream_text(msgs).split()
    for d in out[:4]:
        assert float(d) < 1e-4, out
    assert int(out[4]) > 0, out  # some features fire: the comparison is not of zeros
    if k:
        assert int(out[4]) <= 5 * k, out
    assert out[5] == "1" and float(out[6]) < 1e-4, out
