"""History in SQLite through the protocol: kernels of one user recording at once, and a start
that reads nothing of a large history (its memory does not grow with it). Tail, range and
search of one kernel: test_lifecycle.py."""
from __future__ import annotations

import time

import pytest

import kernelutil as ku


def history(k: ku.Kernel, **kw) -> list:
    reply = k.shell_reply(k.kc.history(**kw))
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply["content"]["history"]


@pytest.mark.lua
def test_two_kernels_record_every_cell_at_once(make_kernel, tmp_path):
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    k1, k2 = make_kernel(env=env), make_kernel(env=env)
    n = 60
    cells = {k: [f"at_once_{name}_{i} = {i}" for i in range(n)] for k, name in ((k1, "a"), (k2, "b"))}
    # every request is sent before any reply is read: both kernels run their queues together
    sent = {k: [] for k in cells}
    for i in range(n):
        for k in cells:
            sent[k].append(k.kc.execute(cells[k][i]))
    for k, ids in sent.items():
        for msg_id in ids:
            assert k.shell_reply(msg_id)["content"]["status"] == "ok"
    # each kernel's own session (tail is the newest of every kernel's, so range of session 0)
    sessions = {k: history(k, hist_access_type="range", session=0, start=1, stop=2)[0][0] for k in cells}
    assert sessions[k1] != sessions[k2]

    k3 = make_kernel(env=env)
    for k in cells:
        got = history(k3, hist_access_type="range", session=sessions[k], start=1, stop=n + 1,
                      output=False, raw=True)
        assert [h[2] for h in got] == cells[k]
        assert [h[1] for h in got] == list(range(1, n + 1))
    everything = {h[2] for h in history(k3, hist_access_type="tail", n=10 * n)}
    assert set(cells[k1]) | set(cells[k2]) <= everything
    found = history(k3, hist_access_type="search", pattern="at_once_b_*", n=0, unique=True)
    assert sorted(h[2] for h in found) == sorted(cells[k2])
    # the third kernel is a session of its own, after both
    k3.ok("third = 1")
    mine = history(k3, hist_access_type="range", session=0, start=1, stop=0)
    assert [h[2] for h in mine] == ["third = 1"]
    assert mine[0][0] > max(sessions.values())
    assert (tmp_path / "data" / "loupe" / "history.sqlite").is_file()


@pytest.mark.lua
def test_memory_does_not_grow_with_history(make_kernel, tmp_path):
    """100,000 small entries and three of 20 MB (limits raised so that they are stored whole):
    a kernel started on that history stays within a few MB of one started on none."""
    full, empty = tmp_path / "full", tmp_path / "empty"
    ku.write_history_jsonl(full / "loupe" / "history.jsonl", 100_000, n_big=3)
    limits = {"LOUPE_HISTORY_MAX_ENTRY": "64M", "LOUPE_HISTORY_MAX_BYTES": "1G"}
    first = make_kernel(env={"XDG_DATA_HOME": str(full), **limits})  # imports the file
    first.alive_and_answering()
    first.stop()
    db = full / "loupe" / "history.sqlite"
    assert not (full / "loupe" / "history.jsonl").exists()
    assert db.stat().st_size > 60 << 20, "the 20 MB entries are in the database"

    kf = make_kernel(env={"XDG_DATA_HOME": str(full), **limits})
    ke = make_kernel(env={"XDG_DATA_HOME": str(empty), **limits})
    for k in (kf, ke):
        k.alive_and_answering()
    time.sleep(0.5)
    rss_full, rss_empty = ku.rss_mb(kf.pid), ku.rss_mb(ke.pid)
    print(f"idle RSS: {rss_full:.2f} MB with the history, {rss_empty:.2f} MB without")
    assert rss_full - rss_empty < 4, f"idle RSS {rss_full:.1f} MB with the history, {rss_empty:.1f} MB without"

    # and the history is all there, queried when asked for
    assert history(kf, hist_access_type="search", pattern="small_99999 *") == [[1000, 100, "small_99999 = 99999"]]
    big = history(kf, hist_access_type="search", pattern="big_2 *", n=1)
    assert len(big) == 1 and len(big[0][2]) == 20 << 20
    assert history(kf, hist_access_type="tail", n=1)[0][2].startswith("big_2 = 'xxx")
