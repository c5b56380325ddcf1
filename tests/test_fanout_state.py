"""A fan-out job's state from its shards, items and reduce: a table, no backend."""

from __future__ import annotations

import pytest

from runner import jobs
from runner.fanout.state import counts, derive, item_marks

S = jobs.Status
T0, T1, T2 = "2026-12-01T10:00:00Z", "2026-12-01T10:05:00Z", "2026-12-01T10:09:00Z"


def ok(end=T1):
    return S(jobs.SUCCEEDED, 0, started_at=T0, ended_at=end)


def failed():
    return S(jobs.FAILED, 1, "the job exited with code 1", started_at=T0, ended_at=T1)


CASES = {
    "nothing started": ([S(jobs.PROVISIONING), S(jobs.PENDING)], (7, 0, 0), None, False, (), jobs.PROVISIONING, None),
    "one running": ([S(jobs.RUNNING, started_at=T0), S(jobs.PROVISIONING)], (7, 2, 0), None, False, (), jobs.RUNNING, None),
    "one ended, one running": ([ok(), S(jobs.RUNNING, started_at=T0)], (7, 3, 0), None, False, (), jobs.RUNNING, None),
    "all done": ([ok(), ok(T2)], (7, 7, 0), None, False, (), jobs.SUCCEEDED, 0),
    "all done, reduce ok": ([ok(), ok()], (7, 7, 0), S(jobs.SUCCEEDED, 0), True, (), jobs.SUCCEEDED, 0),
    "reduce failed": ([ok(), ok()], (7, 7, 0), S(jobs.FAILED, 4), True, (), jobs.FAILED, 4),
    "reduce never ran": ([ok(), ok()], (7, 7, 0), None, True, (), jobs.FAILED, 72),
    "reduce left running by a lost shard": ([ok(), S(jobs.LOST, ended_at=T1)], (7, 7, 0), S(jobs.RUNNING), True, (), jobs.FAILED, 72),
    "an item failed": ([ok(), failed()], (7, 6, 1), None, True, (), jobs.FAILED, 72),
    "items missing after a lost shard": ([ok(), S(jobs.LOST, ended_at=T1)], (7, 4, 0), None, False, (), jobs.FAILED, 72),
    "every shard cancelled": ([S(jobs.CANCELLED, ended_at=T1)] * 2, (7, 1, 0), None, False, (), jobs.CANCELLED, 130),
    "cancelled after one succeeded": ([ok(), S(jobs.CANCELLED, ended_at=T1)], (7, 3, 0), None, False, (), jobs.CANCELLED, 130),
    "preempted with retries left": ([ok(), S(jobs.PREEMPTED, ended_at=T1)], (7, 3, 0), None, False, (0, 1), jobs.RUNNING, None),
    "preempted past retries": ([ok(), S(jobs.PREEMPTED, ended_at=T1)], (7, 3, 0), None, False, (0, 0), jobs.PREEMPTED, 75),
    "preempted and an item failed": ([failed(), S(jobs.PREEMPTED, ended_at=T1)], (7, 2, 1), None, False, (), jobs.FAILED, 72),
    "a retry shard finished what a failed one left": ([failed(), ok(T2)], (7, 7, 0), None, False, (), jobs.SUCCEEDED, 0),
    "unreadable shard status": ([ok(), S(jobs.UNKNOWN, reason="garbage")], (7, 3, 0), None, False, (), jobs.RUNNING, None),
    "no shards at all": ([], (7, 0, 0), None, False, (), jobs.PROVISIONING, None),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_derive(case):
    shards, (total, done, bad), reduce, has_reduce, left, state, code = CASES[case]
    st = derive(shards, counts(total, done, bad), reduce, has_reduce, left, job_id="p-20261201T100000Z-abcdef")
    assert (st.state, st.exit_code) == (state, code)
    if state in (jobs.FAILED, jobs.CANCELLED, jobs.PREEMPTED) and code == 72 or state in (jobs.CANCELLED, jobs.PREEMPTED):
        assert "runner retry p-20261201T100000Z-abcdef" in st.reason


def test_failed_reason_counts_items():
    st = derive([ok(), failed()], counts(7, 4, 1), job_id="p-20261201T100000Z-abcdef")
    assert st.reason == "1 of 7 items failed, 2 missing: runner retry p-20261201T100000Z-abcdef"
    assert (st.started_at, st.ended_at) == (T0, T1)


def test_times_span_the_shards():
    st = derive([ok(T1), S(jobs.SUCCEEDED, 0, started_at="2026-12-01T09:59:00Z", ended_at=T2)], counts(2, 2, 0))
    assert (st.started_at, st.ended_at) == ("2026-12-01T09:59:00Z", T2)


def test_counts_are_clamped_to_the_manifest():
    c = counts(3, 9, 4)
    assert (c.done, c.failed, c.missing) == (3, 0, 0)
    assert counts(5, 2, 9).to_json() == {"total": 5, "done": 2, "failed": 3, "missing": 0}


def test_item_marks_from_keys():
    p = "jobs/x/items/"
    keys = [p + "a/done", p + "a/exit_code", p + "b/exit_code", p + "b/log", p + "c/result/out.csv",
            p + "zz/done", p + "d/done/extra", "jobs/x/items-other/e/done", p + "e/done"]
    done, bad = item_marks(keys, p, {"a", "b", "c", "d", "e"})
    assert (done, bad) == ({"a", "e"}, {"b"})
