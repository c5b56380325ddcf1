"""Pacing the launcher's own cloud calls: token buckets at the APIs' published rates, and backoff on a throttling error.

A bucket holds at most `capacity` tokens and gains `rate` a second; a call takes its tokens first, waiting for them
when the bucket is short. The clock and the sleep are injected, so the arithmetic is tested without waiting.
Buckets are per process, keyed by (cloud, region or project, action): one launcher never exceeds the rate itself;
other clients of the same account share the cloud's bucket, which is why a throttling error is also backed off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from runner.errors import RunnerError

BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0)  # seconds before each retry of a throttled call (then its error stands)


class TokenBucket:
    """`capacity` tokens at most, `rate` more each second; take(n) waits until n are there and removes them."""

    def __init__(self, capacity: float, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError(f"a token bucket needs a positive capacity and rate (got {capacity}, {rate})")
        self.capacity, self.rate = float(capacity), float(rate)
        self.clock, self.sleep = clock, sleep
        self.tokens, self.at = float(capacity), clock()
        self.lock = threading.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now

    def wait_for(self, n: float = 1) -> float:
        """Seconds until n tokens are there (0 when they are now); n above the capacity is taken as the capacity."""
        with self.lock:
            self._refill()
            return max(0.0, min(n, self.capacity) - self.tokens) / self.rate

    def take(self, n: float = 1) -> float:
        """Wait until n tokens are there, remove them; the seconds waited. n above the capacity empties a full bucket."""
        waited = 0.0
        n = min(float(n), self.capacity)
        while True:
            with self.lock:
                self._refill()
                if self.tokens >= n:
                    self.tokens -= n
                    return waited
                short = (n - self.tokens) / self.rate
            self.sleep(short)
            waited += short


@dataclass(frozen=True)
class Rate:
    """A published rate: a bucket of `capacity` refilled by `per_second`, and where it is written down."""

    capacity: float
    per_second: float
    source: str


_buckets: dict[tuple, TokenBucket] = {}
_lock = threading.Lock()
clock: Callable[[], float] = time.monotonic  # the defaults of every bucket made here (tests replace them)
sleep: Callable[[float], None] = time.sleep


def bucket(key: tuple, rate: Rate) -> TokenBucket:
    """The process's bucket for `key` (made full at first use)."""
    with _lock:
        if key not in _buckets:
            _buckets[key] = TokenBucket(rate.capacity, rate.per_second, clock, lambda s: sleep(s))
        return _buckets[key]


def reset() -> None:
    """Forget every bucket (the next call finds them full)."""
    with _lock:
        _buckets.clear()


def retrying(fn: Callable[[], object], throttled: Callable[[Exception], bool], what: str,
             delays: tuple[float, ...] = BACKOFF, note: Callable[[str], None] | None = None):
    """fn(), again after each delay while it fails with a throttling error; the same call each time (same token)."""
    for delay in delays:
        try:
            return fn()
        except RunnerError as e:
            if not throttled(e):
                raise
            if note:
                note(f"runner: {what} was throttled ({getattr(e, 'code', '') or e}); trying again in {delay:g} s")
            sleep(delay)
    return fn()
