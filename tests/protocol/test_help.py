"""An API that explains itself, through jupyter_client: help(x) for the module, models, runs
and tensors (from the type registry, lp_lua_settype), completion after `obj:` and `obj.`,
inspection (Shift+Tab), the text form of tensors, and a CPU run without a stderr stream."""
from __future__ import annotations

import re

import pytest

import kernelutil as ku

pytestmark = pytest.mark.lua

MODEL = ku.ROOT / "examples" / "models" / "default"
RUN_METHODS = {"attention", "dla", "features", "logit_lens", "loss", "names", "top"}
MODEL_METHODS = {"run", "generate", "hooks", "to_tokens", "save", "composition", "patch_sweep", "head_scores"}


@pytest.fixture(scope="module")
def k(isolated_env):
    kern = ku.start_kernel(ku.KERNEL_MESSAGE)
    kern.ok(f'm = loupe.load("{MODEL}"); r = m:run("When Mary and John went to the store, John gave a drink to")')
    yield kern
    kern.stop()


def help_text(k: ku.Kernel, expr: str) -> str:
    reply, out = k.execute(f"help({expr})")
    assert reply["content"]["status"] == "ok", reply["content"]
    pages = [p["data"]["text/plain"] for p in reply["content"].get("payload", []) if p["source"] == "page"]
    assert len(pages) == 1, reply["content"]
    assert not ku.of_type(out, "stream", "error"), out
    return pages[0]


def listed(text: str, heading: str) -> set[str]:
    """The names under a heading of help's text ("Methods", "Fields", "Functions")."""
    part = text.split(f"\n{heading}", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"^  (?:\w+[:.])?(\w+)", part, re.M))


def test_help_of_a_run_lists_its_methods_and_fields(k):
    text = help_text(k, "r")
    assert text.startswith("Run: "), text
    assert RUN_METHODS <= listed(text, "Methods"), text
    assert {"logits", "tokens"} <= listed(text, "Fields"), text
    assert "r:top([k [, pos [, row]]]) -> table\n      The k (default 10)" in text
    assert "(no documentation)" not in text


def test_help_of_a_model_lists_its_methods_and_fields(k):
    text = help_text(k, "m")
    assert text.startswith("Model: "), text
    assert MODEL_METHODS <= listed(text, "Methods"), text
    assert {"n_layers", "n_heads", "d_model", "arch"} <= listed(text, "Fields"), text


def test_help_of_the_module_lists_load_and_the_object_types(k):
    text = help_text(k, "loupe")
    assert text.startswith("loupe: a microscope"), text  # no stray type name first
    assert {"load", "progress", "tensor", "train", "zeros"} <= listed(text, "Functions"), text
    objects = text.split("\nObjects", 1)[1]
    for name in ("Model", "Run", "Tensor"):
        assert f"\n  {name}: " in objects, text


def test_help_of_a_tensor_and_of_a_function(k):
    text = help_text(k, "r.logits")
    assert text.startswith("Tensor: "), text
    assert {"sum", "softmax", "topk", "heatmap"} <= listed(text, "Methods"), text
    assert help_text(k, "loupe.load").startswith("loupe.load(folder) -> Model\n")
    assert help_text(k, "{1, 2}").startswith("(no documentation) a table: {1, 2}")


def test_tokens_is_a_field_and_a_call(k):
    assert k.value("#r.tokens == #r:tokens() and r.tokens[1] == r:tokens()[1]") == "true"


def complete(k: ku.Kernel, code: str) -> tuple[list[str], str]:
    msg_id = k.kc.complete(code, len(code))
    c = k.shell_reply(msg_id)["content"]
    assert c["status"] == "ok", c
    return c["matches"], code[c["cursor_start"]:c["cursor_end"]]


def test_completion_after_colon_gives_methods_only(k):
    matches, replaced = complete(k, "r:")
    assert set(matches) == RUN_METHODS, matches
    assert replaced == ""
    matches, replaced = complete(k, "r:to")
    assert matches == ["top"] and replaced == "to"
    assert MODEL_METHODS <= set(complete(k, "m:")[0])
    assert "n_layers" not in complete(k, "m:")[0]
    assert {"sum", "softmax", "shape"} <= set(complete(k, "r.logits:")[0])


def test_completion_after_dot_gives_fields_and_functions(k):
    assert {"logits", "tokens"} <= set(complete(k, "r.")[0])
    assert complete(k, "m.n_")[0] == ["n_ctx", "n_heads", "n_kv_heads", "n_layers"]
    matches, _ = complete(k, "loupe.")
    assert {"load", "progress", "tensor", "plot", "train", "zeros"} <= set(matches), matches
    assert complete(k, "loupe.lo")[0] == ["load"]


def test_inspection_of_a_method_and_an_object(k):
    code = "m:run"
    msg_id = k.kc.inspect(code, len(code), 0)
    c = k.shell_reply(msg_id)["content"]
    assert c["status"] == "ok" and c["found"], c
    text = c["data"]["text/plain"]
    assert text.startswith("m:run: function\nm:run(input [, {cache = ..., hooks = {...}}]) -> Run\n"), text
    msg_id = k.kc.inspect("r", 1, 0)
    text = k.shell_reply(msg_id)["content"]["data"]["text/plain"]
    assert text.startswith("r: userdata\nRun: ") and "r:attention(layer" in text, text


def test_a_hook_tensor_prints_shape_first_summarised_and_aligned(k):
    text = k.value('r["blocks.0.attn.hook_pattern"]')
    lines = text.split("\n")
    assert re.fullmatch(r"Tensor \[1, 4, (\d+), \1\] f32", lines[0]), lines[0]
    assert int(re.match(r"Tensor \[1, 4, (\d+)", lines[0]).group(1)) > 6
    rows = [ln for ln in lines[1:] if ln.strip(" []")]
    assert len(rows) == 4 * 7, text  # per head: 3 rows, "...", 3 rows
    assert "e+00" not in text and "e-0" not in text, text
    for ln in rows:
        assert len(ln) <= 96, ln
        if ln.strip() != "...":
            assert ln.count("...") == 1, ln  # 3 columns, ..., 3 columns
    values = [ln for ln in rows if ln.strip() != "..."]
    assert len({ln.index("...") for ln in values}) == 1, text  # aligned columns
    assert lines[1].startswith("[[[[1.     0.     0.     ..."), text  # causal: the first query sees itself


def test_a_cpu_run_shows_no_stderr(isolated_env):
    """LOUPE_DEVICE=cuda where there is no GPU (or no CUDA in the build) falls back to the CPU
    with a note in the kernel's log: no stderr stream (a red box in a notebook)."""
    kern = ku.start_kernel(ku.KERNEL_MESSAGE, env={"LOUPE_DEVICE": "cuda"})
    try:
        out = kern.ok("t = loupe.randn(3, 3, {seed = 1}); print(loupe.device()); t:sum()")
        assert not [m for m in ku.of_type(out, "stream") if m["content"]["name"] == "stderr"], out
        assert ku.stream_text(out).strip() in ("cpu", "cuda")
    finally:
        kern.stop()


def test_completion_never_runs_user_code(k):
    """A user's table that looks like a registered type (its own __fields, an __index
    function) is not read through its __index: only metatables a binding registered are."""
    k.ok('calls = 0; fake = setmetatable({}, {__fields = {x = "a field"}, '
         '__index = function(t, key) calls = calls + 1; return {y = 1} end})')
    assert complete(k, "fake.x.")[0] == []
    assert "x" in complete(k, "fake.")[0]  # the names are still offered
    assert k.value("calls") == "0"
