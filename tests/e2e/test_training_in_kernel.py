"""loupe.model and loupe.train through a real kernel: the live loss plot and the progress
bar are displays updated in place; an interrupt stops after the last finished step and
resume continues to the same total; a learning rate that blows up stops with the step named
and the weights of the step before; bad input is a clear error and the kernel keeps going."""
from __future__ import annotations

import re
import time

import pytest

import kernelutil as ku

pytestmark = pytest.mark.lua

SETUP = """
data = loupe.data.repeated{vocab = 40, seg = 8, count = 4000, first = 1, seed = 3}
m = loupe.model{arch = "gpt2", n_layers = 2, d_model = 32, n_heads = 2, n_ctx = 32, d_vocab = 40,
                attn_only = true, seed = 1}
probe = {{5, 6, 7, 8, 9, 10, 11, 12, 5, 6, 7, 8, 9, 10, 11, 12}}
function fingerprint(model)
  local l = model:run(probe).logits
  return string.format("%.9g", l:sum())
end
"""


def test_train_shows_live_plot_and_progress_and_learns(kernel, tmp_path):
    ckpt = tmp_path / "ckpt"
    kernel.ok(SETUP)
    reply, msgs = kernel.execute(
        "m, h = loupe.train{model = m, data = data, steps = 400, batch = 16, ctx = 16, lr = 1e-2, warmup = 10,\n"
        "                   save = CKPT}\n"
        "local a, b = 0, 0\n"
        "for i = 1, 20 do a = a + h.loss[i] / 20; b = b + h.loss[#h.loss - 20 + i] / 20 end\n"
        "print(#h.step, h.step[#h.step], a, b, h.tokens)".replace("CKPT", repr(str(ckpt))), timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]
    out = ku.stream_text(msgs).split()
    assert out[0] == "400" and out[1] == "400", out
    first, last = float(out[2]), float(out[3])
    assert abs(first - 3.69) < 0.3, first  # log(40): a random model's loss
    # the second copy of each 8-token segment becomes predictable: the mean loss of the last
    # 20 steps is well below the first 20's
    assert last < first - 0.3, (first, last)
    assert int(out[4]) == 400 * 16 * 16
    # the checkpoint written at the end is the trained model
    assert kernel.value(f"fingerprint(loupe.load({str(ckpt)!r})) == fingerprint(m)") == "true"
    shown = ku.of_type(msgs, "display_data")
    updates = ku.of_type(msgs, "update_display_data")
    ids = {m["content"]["transient"]["display_id"] for m in shown}
    assert len(ids) == 2, ids  # the loss plot and the progress bar, each one display
    assert {m["content"]["transient"]["display_id"] for m in updates} <= ids
    final = {}
    for m in shown + updates:
        final[m["content"]["transient"]["display_id"]] = m["content"]["data"]
    texts = [d["text/plain"] for d in final.values()]
    bar = [t for t in texts if "400/400" in t]
    assert bar and "loss" in bar[0] and "done" in bar[0], texts
    plot = [d for d in final.values() if d["text/plain"].startswith("training loss")]
    assert plot and "train: 400 points" in plot[0]["text/plain"], texts
    assert "<img" in plot[0]["text/html"] and "svg" in plot[0]["text/html"], plot[0]["text/html"][:200]


def test_interrupt_keeps_last_step_and_resume_finishes(kernel):
    kernel.ok(SETUP)
    kernel.ok("seen = {}")
    # the callback records the fingerprint of the weights after every finished step
    msg_id = kernel.kc.execute(
        "m, h = loupe.train{model = m, data = data, steps = 100000, batch = 16, ctx = 16, lr = 1e-3, live = false,\n"
        "  callback = function(step, loss, model) seen[step] = fingerprint(model)\n"
        "    if step == 3 then print('started') end end, callback_every = 1}")
    deadline = time.monotonic() + 30
    started = False
    while not started:
        assert time.monotonic() < deadline, "training never made a step"
        msg = kernel.kc.get_iopub_msg(timeout=30)
        started = (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream"
                   and "started" in msg["content"]["text"])
    time.sleep(0.3)
    kernel.km.interrupt_kernel()
    reply = kernel.shell_reply(msg_id, timeout=20)
    msgs = kernel.iopub_until_idle(msg_id)
    assert reply["content"]["ename"] == "KeyboardInterrupt", reply["content"]
    text = ku.stream_text(msgs)
    m = re.search(r"training interrupted at step (\d+) of 100000: the model keeps the weights of step \1", text)
    assert m, text
    done = int(m.group(1))
    # the callback of step `done` may itself have been interrupted
    assert kernel.value("#seen") in (str(done), str(done - 1))
    # the model is exactly as after its last finished step: the same training run again,
    # uninterrupted, for `done` steps gives the same weights
    reply, _ = kernel.execute(
        SETUP.replace("data =", "data2 =").replace("m =", "m2 =")
        + "ok, err = pcall(loupe.train, {model = m2, data = data2, steps = 100000, batch = 16, ctx = 16, lr = 1e-3,"
        f" live = false, callback = function(step) if step == {done} then error('stop here') end end,"
        " callback_every = 1})\nprint(err)", timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert kernel.value("fingerprint(m2) == fingerprint(m)") == "true"
    # resume with a smaller total: finishes where asked, the history is continuous
    reply, msgs = kernel.execute(
        f"m, h = loupe.train{{model = m, resume = true, steps = {done + 5}, live = false}}\n"
        "local ok = true\nfor i = 1, #h.step do ok = ok and h.step[i] == i end\n"
        "print(#h.step, ok, seen[#seen] == fingerprint(m))", timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert ku.stream_text(msgs).split() == [str(done + 5), "true", "true"]


def test_a_new_training_replaces_the_earlier_one(kernel):
    """A second loupe.train of a model ends the first (its trainer is freed at once: on a
    GPU its memory would otherwise wait for Lua's collector), resume continues the second;
    a training started from the callback of a running one (same model) leaves the running
    one intact; a new training that cannot start keeps the earlier one resumable."""
    kernel.ok(SETUP)
    run = ("loupe.train{{model = m, data = data, steps = {s}, batch = 4, ctx = 16, lr = 1e-2, live = false{x}}}")
    kernel.ok(run.format(s=6, x=""), timeout=60)
    kernel.ok("_, h = " + run.format(s=3, x=", warmup = 1"), timeout=60)
    assert kernel.value("#h.step") == "3"
    kernel.ok("_, h = loupe.train{model = m, resume = true, steps = 5, live = false}", timeout=60)
    assert kernel.value("#h.step .. ' ' .. h.step[5]") == '"5 5"'
    # from a callback: the inner training replaces the registry entry, the outer run goes on
    reply, msgs = kernel.execute(
        "_, h = " + run.format(s=6, x=", callback_every = 2, callback = function(step, loss, model)\n"
                                   "  if step == 2 then local _, hi = " + run.format(s=2, x="") + "\n"
                                   "    print('inner', #hi.step) end end"), timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert ku.stream_text(msgs).split() == ["inner", "2"]
    assert kernel.value("#h.step .. ' ' .. h.step[6]") == '"6 6"'
    # a new training that fails to start leaves the earlier one to resume
    kernel.ok(run.format(s=4, x=""), timeout=60)
    has_gpu = kernel.value("pcall(loupe.set_device, 'cuda')") == "true"
    kernel.ok("loupe.set_device('cpu')")
    if not has_gpu:
        reply, _ = kernel.execute(run.format(s=4, x=", device = 'cuda'"), timeout=60)
        assert "CUDA is not available" in reply["content"]["evalue"], reply["content"]
    reply, _ = kernel.execute(run.format(s=4, x=", ctx = 1000"), timeout=60)
    assert reply["content"]["status"] == "error", reply["content"]
    kernel.ok("_, h = loupe.train{model = m, resume = true, steps = 7, live = false}", timeout=60)
    assert kernel.value("#h.step .. ' ' .. h.step[7]") == '"7 7"'


def test_nan_learning_rate_names_the_step_and_keeps_weights(kernel):
    kernel.ok(SETUP)
    kernel.ok("seen = {}")
    reply, msgs = kernel.execute(
        "loupe.train{model = m, data = data, steps = 50, batch = 4, ctx = 16, lr = 1e30, clip = 0, live = false,\n"
        "  weight_decay = 0, callback = function(step, loss, model) seen[step] = fingerprint(model) end,\n"
        "  callback_every = 1}", timeout=60)
    assert reply["content"]["status"] == "error"
    evalue = reply["content"]["evalue"]
    m = re.search(r"step (\d+): (loss|gradient norm) is (NaN|infinite|inf)", evalue, re.I)
    assert m, evalue
    step = int(m.group(1))
    assert f"keeps the weights of step {step - 1}" in evalue, evalue
    if step > 1:
        assert kernel.value("fingerprint(m) == seen[#seen]") == "true"
    assert kernel.value("#seen") == str(step - 1)


def test_training_device(kernel):
    """loupe.train runs on loupe.device() unless told otherwise; device = "cuda" trains on the
    GPU where there is one (the same losses as the CPU within 1e-3, the model given its
    weights back) and is a clear error, the model unchanged, where there is none."""
    kernel.ok(SETUP)
    default = kernel.value("loupe.device()").strip('"')
    kernel.ok("mc = loupe.model{arch = 'gpt2', n_layers = 2, d_model = 32, n_heads = 2, n_ctx = 32, d_vocab = 40,\n"
              "                 attn_only = true, seed = 1}")
    # each training reads its own copy of the data (same seed, same batches)
    run = ("_, {h} = loupe.train{{model = {m}, steps = 20, batch = 4, ctx = 16, lr = 1e-2, live = false,\n"
           "  data = loupe.data.repeated{{vocab = 40, seg = 8, count = 4000, first = 1, seed = 3}}, device = '{d}'}}")
    kernel.ok(run.format(h="hc", m="m", d="cpu"), timeout=60)
    assert kernel.value("hc.device") == '"cpu"'
    has_gpu = kernel.value("pcall(loupe.set_device, 'cuda')") == "true"
    kernel.ok(f"loupe.set_device({default!r})")
    before = kernel.value("fingerprint(mc)")
    reply, _ = kernel.execute(run.format(h="hg", m="mc", d="cuda"), timeout=120)
    if not has_gpu:
        assert reply["content"]["status"] == "error"
        assert "CUDA is not available" in reply["content"]["evalue"], reply["content"]["evalue"]
        assert kernel.value("fingerprint(mc)") == before
        return
    assert reply["content"]["status"] == "ok", reply["content"]
    assert kernel.value("hg.device") == '"cuda"'
    worst = float(kernel.value("local w = 0\nfor i = 1, 20 do w = math.max(w, math.abs(hc.loss[i] - hg.loss[i])) end\n"
                               "w"))
    assert worst < 1e-3, worst
    # the trained weights came back into the model: its logits are the CPU-trained model's
    diff = float(kernel.value("local d = mc:run(probe).logits - m:run(probe).logits\nmath.max(d:max(), -d:min())"))
    assert diff < 1e-2, diff


# The mean cross-entropy of m:run on `batches` batches of B x ctx drawn from `ds` after
# ds:seed(seed): what the validation of the last step saw when it was the only one.
MEASURE_VAL = """
function measured_val(model, ds, seed, batches, B, ctx)
  ds:seed(seed)
  local sum, n = 0, 0
  for k = 1, batches do
    local x, y = ds:batch(B, ctx)
    local l, yt = model:run(x).logits:totable(), y:totable()
    for b = 1, B do
      for t = 1, ctx do
        local row, mx, s = l[b][t], -math.huge, 0
        for j = 1, #row do mx = math.max(mx, row[j]) end
        for j = 1, #row do s = s + math.exp(row[j] - mx) end
        sum, n = sum + math.log(s) + mx - row[math.tointeger(yt[b][t]) + 1], n + 1
      end
    end
  end
  return sum / n
end
"""


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_validation_loss_is_the_trained_models(kernel, device):
    """With val, the validation loss loupe.train reports is the trained model's loss on the
    validation batches, measured afterwards with m:run on the same batches (one validation,
    at the last step, so reseeding the validation data draws them again). On a GPU this is the
    weights the GPU trained, not the ones the run started from."""
    kernel.ok(SETUP + MEASURE_VAL)
    if device == "cuda":
        has_gpu = kernel.value("pcall(loupe.set_device, 'cuda')") == "true"
        kernel.ok("loupe.set_device('cpu')")
        if not has_gpu:
            pytest.skip("no GPU")
    kernel.ok("val = loupe.data.repeated{vocab = 40, seg = 8, count = 500, first = 1, seed = 5}\n"
              "start = measured_val(m, val, 77, 3, 8, 16)")
    reply, msgs = kernel.execute(
        "val:seed(77)\n"
        "_, h = loupe.train{model = m, data = data, val = val, steps = 60, batch = 8, ctx = 16, lr = 1e-2,\n"
        f"                  eval_every = 60, eval_batches = 3, live = false, device = '{device}'}}\n"
        "print(#h.val_loss, h.val_step[1], h.val_loss[1], measured_val(m, val, 77, 3, 8, 16), start)",
        timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]
    out = ku.stream_text(msgs).split()
    assert out[:2] == ["1", "60"], out
    reported, measured, start = float(out[2]), float(out[3]), float(out[4])
    assert abs(start - 3.69) < 0.3, start  # log(40): the untrained model
    # it trained (a little: induction takes longer), so the untrained weights' loss, which
    # a report from the weights the run started from would give, is far from the report
    assert measured < start - 0.02, (start, measured)
    assert abs(reported - measured) <= 1e-4 * measured + (2e-3 if device == "cuda" else 0), (reported, measured)


@pytest.mark.parametrize("code, needle", [
    ("loupe.train{model = m, steps = 5}", "data = ... is required"),
    ("loupe.train{data = data, steps = 5}", "model = m"),
    ("loupe.train{model = m, data = data}", "steps = ... is required"),
    ("loupe.train{model = m, data = data, steps = 5, ctx = 64}", "context"),
    ("loupe.train{model = m, data = loupe.data.repeated{vocab = 100, seg = 4, count = 10}, steps = 5}",
     "vocabulary has 40"),
    ("loupe.train{model = m, data = data, steps = 5, lr = 0/0}", "learning rate"),
    ("loupe.train{model = m, data = data, steps = 5, schedule = 'linear'}", "linear"),
    ("loupe.train{model = m, data = data, steps = 5, device = 'tpu'}", "unknown device"),
    ("loupe.train{model = loupe.model{arch = 'gpt2', n_layers = 1, d_model = 8, n_heads = 2, n_ctx = 8, d_vocab = 9}, "
     "data = data, resume = true}", "no training to resume"),
    ("loupe.model{arch = 'mamba', n_layers = 1, d_model = 8, n_heads = 2, n_ctx = 8, d_vocab = 10}", "gpt2"),
    ("loupe.model{arch = 'gpt2', n_layers = 1, d_model = 10, n_heads = 3, n_ctx = 8, d_vocab = 10}", "multiple"),
    ("loupe.model{arch = 'llama', n_layers = 1, d_model = 8, n_heads = 2, n_ctx = 8, d_vocab = 10, "
     "attn_only = true}", "attn_only"),
    ("loupe.model{arch = 'gpt2', n_layers = 1, d_model = 8, n_heads = 2, n_ctx = 8}", "d_vocab"),
])
def test_bad_input_is_a_clear_error(kernel, code, needle):
    kernel.ok(SETUP)
    before = kernel.value("fingerprint(m)")
    reply, _ = kernel.execute(code, timeout=60)
    assert reply["content"]["status"] == "error", code
    assert needle in reply["content"]["evalue"], (code, reply["content"]["evalue"])
    assert kernel.value("fingerprint(m)") == before
