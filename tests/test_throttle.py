"""The token bucket that paces the launcher's cloud calls, and the backoff on a throttling error: an injected clock
whose sleep advances it, so nothing here waits."""

from __future__ import annotations

import pytest

from runner import throttle
from runner.errors import RunnerError


class Clock:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now, self.slept = 100.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(round(s, 6))
        self.now += s


@pytest.fixture(autouse=True)
def no_buckets_left():
    """Each test starts and leaves the process without buckets (one made on a test's clock would stay frozen)."""
    throttle.reset()
    yield
    throttle.reset()


def test_a_full_bucket_lets_a_burst_through_then_paces_at_its_rate():
    c = Clock()
    b = throttle.TokenBucket(5, 2, c, c.sleep)
    assert [b.take() for _ in range(5)] == [0.0] * 5 and c.slept == []  # the burst: no wait
    assert b.wait_for(1) == pytest.approx(0.5)
    assert b.take() == pytest.approx(0.5) and b.take() == pytest.approx(0.5)  # then one token every 1/rate s
    assert c.now == pytest.approx(101.0)


def test_tokens_come_back_with_time_up_to_the_capacity_only():
    c = Clock()
    b = throttle.TokenBucket(10, 1, c, c.sleep)
    b.take(10)
    c.now += 4
    assert b.wait_for(4) == 0 and b.wait_for(5) == pytest.approx(1.0)
    c.now += 1000  # idle long: the bucket is full, not fuller
    b.take(10)
    assert b.wait_for(1) == pytest.approx(1.0) and c.slept == []


def test_taking_many_at_once_waits_for_all_of_them_and_more_than_the_capacity_empties_it():
    c = Clock()
    b = throttle.TokenBucket(1000, 2, c, c.sleep)  # EC2's RunInstances resource bucket
    assert b.take(600) == 0 and b.take(600) == pytest.approx(100.0)  # 200 short at 2 a second
    c.now += 500  # full again
    assert b.take(5000) == 0 and b.wait_for(1) == pytest.approx(0.5)


def test_a_bucket_needs_a_positive_capacity_and_rate():
    for capacity, rate in ((0, 1), (1, 0), (-1, 1)):
        with pytest.raises(ValueError, match="positive capacity and rate"):
            throttle.TokenBucket(capacity, rate)


def test_the_process_keeps_one_bucket_per_key(monkeypatch):
    c = Clock()
    monkeypatch.setattr(throttle, "clock", c)
    monkeypatch.setattr(throttle, "sleep", c.sleep)
    throttle.reset()
    rate = throttle.Rate(2, 1, "a doc")
    a = throttle.bucket(("aws", "us-east-1", "CreateTags"), rate)
    assert throttle.bucket(("aws", "us-east-1", "CreateTags"), rate) is a
    assert throttle.bucket(("aws", "eu-west-1", "CreateTags"), rate) is not a
    a.take(2)
    a.take(1)
    assert c.slept == [1.0]  # the module's sleep, replaced
    throttle.reset()
    assert throttle.bucket(("aws", "us-east-1", "CreateTags"), rate).wait_for(2) == 0


def _error(code: str) -> RunnerError:
    e = RunnerError(f"EC2 RunInstances: {code}: slow down")
    e.code = code
    return e


def test_a_throttled_call_is_made_again_after_each_backoff_then_its_error_stands(monkeypatch):
    c = Clock()
    monkeypatch.setattr(throttle, "sleep", c.sleep)
    calls, notes = [], []

    def fn():
        calls.append(len(calls))
        if len(calls) < 3:
            raise _error("RequestLimitExceeded")
        return "started"

    def is_throttled(e):
        return e.code == "RequestLimitExceeded"

    assert throttle.retrying(fn, is_throttled, "EC2 RunInstances", delays=(1, 2, 4), note=notes.append) == "started"
    assert calls == [0, 1, 2] and c.slept == [1, 2]
    assert notes[0] == "runner: EC2 RunInstances was throttled (RequestLimitExceeded); trying again in 1 s"
    calls.clear()
    c.slept.clear()

    def always():
        calls.append(1)
        raise _error("RequestLimitExceeded")

    with pytest.raises(RunnerError, match="RequestLimitExceeded"):
        throttle.retrying(always, is_throttled, "x", delays=(1, 2))
    assert len(calls) == 3 and c.slept == [1, 2]  # the first try and one after each delay


def test_any_other_error_is_not_retried(monkeypatch):
    c = Clock()
    monkeypatch.setattr(throttle, "sleep", c.sleep)
    calls = []

    def fn():
        calls.append(1)
        raise _error("InsufficientInstanceCapacity")

    with pytest.raises(RunnerError, match="InsufficientInstanceCapacity"):
        throttle.retrying(fn, lambda e: e.code == "RequestLimitExceeded", "x")
    assert calls == [1] and c.slept == []
