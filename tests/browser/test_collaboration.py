"""Shared notebooks (issue 5): one JupyterLab server with real-time collaboration
(jupyter-collaboration, install/requirements.txt), the same notebook open in two browser
contexts (two people: separate cookies and storage). Cells run in one appear in the other,
figures included, in both directions. Screenshots: out/test-artifacts/collab-*.png.
"""
from __future__ import annotations

import shutil

import pytest

import figures_util as fu

pytestmark = [pytest.mark.browser, pytest.mark.lua]

NB = fu.FIGURES_NB
FROM_B = 'loupe.plot.bar{{3, -1, 2}, {"alpha", "beta", "gamma"}, title = "bars run by B"}'


@pytest.mark.timeout(300)
def test_two_people_share_a_notebook(isolated_env, tmp_path):
    from playwright.sync_api import expect

    shutil.copy(fu.EXAMPLES / NB, tmp_path / NB)
    n_code = fu.code_cell_count(tmp_path / NB)
    with fu.lab_server(tmp_path, "collab", rtc=True) as lab, fu.chromium() as browser:
        ctx_a = browser.new_context(viewport={"width": 1400, "height": 1000})
        ctx_b = browser.new_context(viewport={"width": 1400, "height": 1000})
        a, watch_a = fu.new_page(ctx_a)
        b, watch_b = fu.new_page(ctx_b)
        rooms: list[str] = []
        b.on("websocket", lambda ws: rooms.append(ws.url))
        try:
            fu.open_notebook(a, lab, NB)
            fu.open_notebook(b, lab, NB)
            # the document really is shared: B joined the notebook's collaboration room
            assert any("/api/collaboration/room/" in u and "globalAwareness" not in u for u in rooms), rooms
            # one kernel session for the notebook, used by both
            sessions = [s for s in lab.api("sessions") if s["path"].endswith(NB)]
            assert len(sessions) == 1, sessions

            # A runs everything; B sees every output, pictures decoded, without running anything
            fu.run_all(a)
            fu.wait_all_ran(a, n_code)
            fu.wait_all_ran(b, n_code)
            fu.check_pictures(b, "collab-b")
            fu.shot(b, "collab-b-after-a-ran")

            # B adds a cell at the end and runs it; A sees the cell and its figure
            last = fu.code_cells(b).nth(n_code - 1)
            last.locator(".jp-InputArea-prompt").click()
            b.keyboard.press("Escape")
            b.keyboard.press("b")  # insert a cell below (command mode)
            expect(fu.code_cells(b)).to_have_count(n_code + 1)
            fu.code_cells(b).nth(n_code).locator(".cm-content").click()
            b.keyboard.insert_text(FROM_B)
            b.keyboard.press("Shift+Enter")
            new_a = fu.code_cells(a).nth(n_code)
            expect(new_a.locator(".cm-content")).to_have_text(FROM_B, timeout=fu.LONG)
            fig = new_a.locator(".jp-OutputArea-output .lp-bar").first
            fig.wait_for(timeout=fu.LONG)
            fu.wait_images(a, fig, 1)
            expect(fig).to_contain_text("bars run by B")
            fu.shot(fig, "collab-a-figure-from-b")
            fu.shot(a, "collab-a-after-b-ran")
            assert watch_a.dialogs == [] and watch_b.dialogs == []
            errors = watch_a.errors + watch_b.errors
            assert errors == [], "console errors:\n" + "\n".join(errors)
        except Exception:
            fu.shot(a, "collab-a-failure")
            fu.shot(b, "collab-b-failure")
            raise
        finally:
            watch_a.save_log("collab-a")
            watch_b.save_log("collab-b")
