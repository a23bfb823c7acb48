"""Time one callable: a cold call, warm-up, then timed calls until the median is known.

Method (in the spirit of torch.utils.benchmark's ``adaptive_autorange`` and MLPerf's validity
rules):

1. The first call is timed on its own (``first_call_s``): it pays tracing, graph compilation,
   XLA and lazy initialisation, which users of torch.compile / tf.function want to see, and which
   must not pollute the steady state.
2. Warm-up: at least ``warmup_calls`` calls *and* ``warmup_min_s`` seconds, untimed, so caches,
   allocator pools and oneDNN primitive caches are filled.
3. Timed calls, each bracketed by a device synchronisation *before every clock read*, until at
   least ``min_calls`` calls and ``min_time_s`` seconds are done, and then until the median's
   distribution-free 95 % CI lies within +-``target_ci_pct`` % of it. ``max_time_s`` ends the
   loop once ``min_calls`` are done, ``max_calls`` ends it in any case; a result stopped by a
   cap before converging is flagged noisy. ``min_calls`` is a floor even for slow calls, so
   every result has a CI; ``timeout_s`` of the cell is the guard against a call that never ends.

Default choices (``conf/config.yaml``): ``warmup_calls = 1``: the cold call has already paid
the one-time costs, one more call settles allocator and primitive caches, and ``warmup_min_s``
keeps millisecond-scale calls warming for 0.2 s (on a 6 s call every extra warm-up costs 6 s,
which is why it is not more); ``min_calls = 6`` is the smallest sample for which a
95 % CI of the median exists at all (``stats.median_ci_ranks``); ``min_time_s = 0.5`` keeps
millisecond-scale calls from being judged on a handful of samples that all share one scheduler
tick; ``max_time_s = 10`` is torch.utils.benchmark's ``adaptive_autorange`` cap: where the
median has not settled by then, the noise is the machine's (a shared VM's speed can shift for
tens of seconds; README, "Measured") and more samples would not remove it, so the cell is flagged
instead of run on; ``target_ci_pct = 2`` is the precision this product promises.

The clock is ``time.perf_counter`` (monotonic, sub-microsecond). Nothing here spins: waiting is
the framework's own synchronisation.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import time
from typing import Callable

from ..config.schema import TimingConfig
from .stats import TimeStats, ci_halfwidth_pct

__all__ = ["round_share", "time_calls"]


def round_share(timing: TimingConfig) -> TimingConfig:
    """One round's part of ``timing`` when a cell is timed in ``timing.rounds`` rounds.

    The calls and seconds are shared, so that rounds cost about what one round would: a slow
    cell's six calls become three per round with two rounds, still six in all (the fewest with
    a 95 % CI of the median). Warm-up is not shared: every round is a fresh process.
    """
    k = timing.rounds
    if k <= 1:
        return timing
    return dataclasses.replace(
        timing,
        min_calls=math.ceil(timing.min_calls / k),
        min_time_s=timing.min_time_s / k,
        max_calls=max(1, timing.max_calls // k),
        max_time_s=timing.max_time_s / k,
    )


def time_calls(
    fn: Callable[[], object],
    sync: Callable[[], None],
    timing: TimingConfig,
    clock: Callable[[], float] = time.perf_counter,
    cold_call_done_s: float | None = None,
    before_timed: Callable[[], object] | None = None,
    on_sample: Callable[[list], object] | None = None,
) -> TimeStats:
    """Measure ``fn``; ``sync`` must block until all work ``fn`` queued on the device is done.

    ``cold_call_done_s``: the duration of a first call the caller already made (for example to
    measure its memory); when given, the cold call is not repeated. ``before_timed`` runs once
    between warm-up and the timed calls (the worker resets peak-memory marks there, so the
    memory figure is the peak of the same steady-state calls that were timed). ``on_sample``
    gets the samples so far after each timed call, outside the timed region.
    """
    if cold_call_done_s is None:
        sync()
        start = clock()
        fn()
        sync()
        first_call_s = clock() - start
    else:
        first_call_s = cold_call_done_s

    warmup_calls = 0
    warmup_start = clock()
    while warmup_calls < timing.warmup_calls or clock() - warmup_start < timing.warmup_min_s:
        fn()
        warmup_calls += 1
    sync()
    if before_timed is not None:
        before_timed()

    samples: list = []
    sorted_samples: list = []
    loop_start = clock()
    while True:
        sync()
        start = clock()
        fn()
        sync()
        end = clock()
        samples.append(end - start)
        bisect.insort(sorted_samples, end - start)
        if on_sample is not None:
            on_sample(samples)
        elapsed = end - loop_start
        n = len(samples)
        if n >= timing.max_calls:
            stop_reason = f"max_calls={timing.max_calls} reached"
            break
        if n < timing.min_calls:
            continue
        if elapsed >= timing.max_time_s:
            stop_reason = f"max_time_s={timing.max_time_s:g} reached"
            break
        if elapsed >= timing.min_time_s:
            halfwidth = ci_halfwidth_pct(sorted_samples)  # kept sorted by insort: O(n) a call
            if halfwidth is not None and halfwidth <= timing.target_ci_pct:
                stop_reason = "converged"
                break
    return TimeStats(
        samples_s=samples,
        warmup_calls=warmup_calls,
        first_call_s=first_call_s,
        stop_reason=stop_reason,
        target_ci_pct=timing.target_ci_pct,
    )
