"""The timer against ground truth (a busy-wait of known length) and its stopping rules."""

from __future__ import annotations

import itertools
import time

import pytest

from sweeper.measure.timing import time_calls
from tests.helpers import default_timing


def busy_wait(seconds: float):
    def fn() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    return fn


@pytest.mark.parametrize("duration_s", [0.005, 0.02])
def test_known_duration_is_measured_within_2_percent(duration_s):
    stats = time_calls(busy_wait(duration_s), lambda: None, default_timing(max_time_s=5.0))
    assert stats.median_s == pytest.approx(duration_s, rel=0.02)
    assert stats.timed_calls >= 6 and stats.warmup_calls >= 2
    assert stats.first_call_s == pytest.approx(duration_s, rel=0.5)


class FakeClock:
    """A clock that advances by the next scripted duration inside each call of ``fn``."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = iter(durations)
        self.syncs = 0

    def clock(self) -> float:
        return self.now

    def fn(self) -> None:
        self.now += next(self.durations)

    def sync(self) -> None:
        self.syncs += 1


def test_stops_when_the_median_is_known_to_2_percent():
    fake = FakeClock(itertools.repeat(0.1))
    timing = default_timing(warmup_calls=2, warmup_min_s=0.0, min_calls=6, min_time_s=0.0)
    stats = time_calls(fake.fn, fake.sync, timing, clock=fake.clock)
    assert stats.timed_calls == 6 and stats.stop_reason == "converged"
    assert stats.warmup_calls == 2 and stats.first_call_s == pytest.approx(0.1)
    # A sync before and after each timed call, around the cold call, and after warm-up.
    assert fake.syncs == 2 * 6 + 2 + 1


def test_min_time_keeps_fast_calls_going():
    fake = FakeClock(itertools.repeat(0.01))
    timing = default_timing(warmup_calls=0, warmup_min_s=0.0, min_calls=6, min_time_s=0.5)
    stats = time_calls(fake.fn, fake.sync, timing, clock=fake.clock)
    assert stats.timed_calls == 50  # 0.5 s of 10 ms calls


def test_noisy_calls_run_to_the_cap_and_say_so():
    fake = FakeClock(itertools.cycle([0.1, 0.2]))
    timing = default_timing(warmup_calls=0, warmup_min_s=0.0, max_time_s=3.0)
    stats = time_calls(fake.fn, fake.sync, timing, clock=fake.clock)
    assert stats.stop_reason == "max_time_s=3 reached"
    assert stats.noisy


def test_slow_calls_still_get_min_calls():
    fake = FakeClock(itertools.cycle([5.0, 5.5]))
    timing = default_timing(warmup_calls=0, warmup_min_s=0.0, min_calls=6, max_time_s=10.0)
    stats = time_calls(fake.fn, fake.sync, timing, clock=fake.clock)
    assert stats.timed_calls == 6 and stats.ci95_s is not None


def test_max_calls_caps_the_loop():
    fake = FakeClock(itertools.cycle([0.1, 0.2]))
    timing = default_timing(warmup_calls=0, warmup_min_s=0.0, max_calls=7, max_time_s=100.0)
    stats = time_calls(fake.fn, fake.sync, timing, clock=fake.clock)
    assert stats.timed_calls == 7 and stats.stop_reason == "max_calls=7 reached"


def test_cold_call_is_not_repeated_when_already_done():
    fake = FakeClock(itertools.repeat(0.1))
    timing = default_timing(warmup_calls=1, warmup_min_s=0.0, min_time_s=0.0)
    marks = []
    stats = time_calls(
        fake.fn,
        fake.sync,
        timing,
        clock=fake.clock,
        cold_call_done_s=7.0,
        before_timed=lambda: marks.append(fake.now),
    )
    assert stats.first_call_s == 7.0
    assert marks == [pytest.approx(0.1)]  # after the one warm-up call, before any timed call
