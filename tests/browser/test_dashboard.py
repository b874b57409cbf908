"""The feature dashboard (sae:feature) in JupyterLab, headless Chromium (issue 16 item 2).

A notebook harvests a random SAE on the default model and shows the dashboard of its densest
feature, labelled with hostile text. Trusted (the server that ran it): the script ran once
(data-lp-on="1"), both histograms are decoded pictures, hovering a token shows the readout
line with its activation and the promoted tokens, the label shows as text and no dialog
opens. Untrusted (a fresh notebook-signature database): no script, no readout, the same
pictures, token tooltips and label as text. Screenshots: out/test-artifacts/dashboard-*.png.
"""
from __future__ import annotations

import nbformat
import pytest

import figures_util as fu
import kernelutil as ku

pytestmark = [pytest.mark.browser, pytest.mark.lua]

NB = "dashboard.ipynb"
MODEL = ku.ROOT / "examples" / "models" / "default"
LABEL = '<script>alert("x")</script><img src=x onerror=alert(1)>'
CELLS = [
    f"""m = loupe.load({str(MODEL)!r})
ds = loupe.data.load{{text = string.rep("Mara lives in Oslo and Ben lives in Paris. The cat sat on the mat. ", 40),
                     tokenizer = loupe.tokenizer({str(MODEL)!r})}}
sae = loupe.sae.random{{arch = "topk", k = 8, d_in = 192, d_sae = 256, hook = "blocks.1.hook_resid_post", seed = 3}}
sae:harvest{{model = m, data = ds, ctx = 32}}""",
    f"""local d, best = sae:harvest().density, 1
for i = 1, #d do if d[i] > d[best] then best = i end end
sae:label(best - 1, {LABEL!r})
sae:feature(best - 1)""",
]


def make_notebook(path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Lua (loupe)", "language": "lua", "name": ku.KERNEL_MESSAGE},
                   "language_info": {"file_extension": ".lua", "name": "lua"}}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(nb, path)


def dashboard(page):
    return page.locator(".jp-OutputArea-output .lp-dashboard").first


def check_static(page, root) -> None:
    """What needs no script: the pictures, the label as text, the token tooltips."""
    imgs = fu.wait_images(page, root, 2)
    assert len(imgs) >= 2 and all(i["w"] > 0 for i in imgs), imgs
    assert LABEL in root.inner_text(), "the hostile label shows as text"
    assert root.locator("img[src=x]").count() == 0
    # the sanitizer drops data-* attributes: the token spans are found by their tooltips
    titles = root.locator("span[title]").evaluate_all("es => es.map(e => e.title)")
    assert len(titles) > 20 and all(" = " in t for t in titles[:20]), titles[:5]


@pytest.mark.timeout(600)
def test_dashboard_trusted_and_untrusted(isolated_env, tmp_path):
    from playwright.sync_api import expect

    make_notebook(tmp_path / NB)
    with fu.lab_server(tmp_path, "dashboard") as lab, fu.chromium() as browser:
        page, watch = fu.new_page(browser)
        try:
            fu.open_notebook(page, lab, NB)
            fu.run_all(page)
            fu.wait_all_ran(page, len(CELLS))
            root = dashboard(page)
            root.wait_for(timeout=fu.LONG)
            check_static(page, root)
            assert root.get_attribute("data-lp-on") == "1", "the dashboard's script did not run"
            span = root.locator("span[data-a]").nth(5)
            span.hover()
            expect(root).to_contain_text("promotes")
            fu.shot(root, "dashboard-trusted-hover")
            fu.save(page)
            fu.wait_saved_with_outputs(tmp_path / NB, len(CELLS))
            assert watch.dialogs == [], f"a dialog opened: {watch.dialogs}"
            assert watch.errors == [], "console errors:\n" + "\n".join(watch.errors)
        except Exception:
            fu.shot(page, "dashboard-trusted-failure")
            raise
        finally:
            watch.save_log("dashboard-trusted")
    with fu.lab_server(tmp_path, "dashboard-untrusted", "--NotebookNotary.db_file=:memory:") as lab, \
            fu.chromium() as browser:
        page, watch = fu.new_page(browser)
        try:
            fu.open_notebook(page, lab, NB)
            root = dashboard(page)
            root.wait_for(timeout=fu.LONG)
            check_static(page, root)
            assert root.locator("script").count() == 0, "scripts are stripped when untrusted"
            assert root.get_attribute("data-lp-on") is None, "no script ran"
            fu.shot(root, "dashboard-untrusted")
            assert watch.dialogs == []
        except Exception:
            fu.shot(page, "dashboard-untrusted-failure")
            raise
        finally:
            watch.save_log("dashboard-untrusted")
