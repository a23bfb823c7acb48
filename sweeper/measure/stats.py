"""Statistics of timing samples: the median, its confidence interval, noise.

Standard library only (the collector imports this). Every statistic is derived from the raw
samples in one place, :class:`TimeStats`, and the thresholds that judge noise are named constants.

A cell can be timed in several *rounds*, each in a fresh process at another time of the sweep
(``timing.rounds``). The samples of one round share that process's memory layout and that
moment's machine speed, so the distribution-free CI of their median describes one round only; a
rerun can land outside it. With rounds, the interval reported is the union of the pooled
samples' CI and a t-interval of the round medians: it widens when rounds disagree and stays
tight when they agree.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from functools import cache
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = [
    "CONFIDENCE",
    "NOISY_IQR_PCT",
    "TimeStats",
    "ci_halfwidth_pct",
    "median_ci_ranks",
    "quantile",
    "rounds_interval",
]

# torch.utils.benchmark warns when IQR / median exceeds 10 %: a spread that large means the
# median moves between runs by more than most effects people try to measure.
NOISY_IQR_PCT = 10.0
# The interval we promise for the median, the level MLPerf and most papers use.
CONFIDENCE = 0.95
# Above this many samples the binomial tail is computed with the normal approximation, whose
# error in the rank is below one sample there.
_EXACT_RANKS_UP_TO = 200
# Student's t, two-sided 95 % (the 0.975 quantile), by degrees of freedom: any t-table (e.g.
# NIST/SEMATECH e-Handbook, table 1.3.6.7.2). Beyond 30 the normal quantile is within 4 %.
_T975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
    10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042,
}  # fmt: skip
# A round's halves are compared when each half has a 95 % CI of its median (6 samples or more).
_DRIFT_MIN_SAMPLES = 12


def _t975(df: int) -> float:
    usable = [d for d in _T975 if d <= df]
    if df > max(_T975):
        return statistics.NormalDist().inv_cdf(0.975)
    return _T975[max(usable)]  # the next smaller tabulated df: a slightly wider interval


def rounds_interval(medians: Sequence[float]) -> Optional[Tuple[float, float]]:
    """95 % t-interval of the mean of the round medians; None for fewer than two rounds.

    Each round's median is one observation of "this cell, in a fresh process, at some time":
    their spread is the between-round variation that one round's CI cannot see.
    """
    k = len(medians)
    if k < 2:
        return None
    mean = statistics.fmean(medians)
    half = _t975(k - 1) * statistics.stdev(medians) / math.sqrt(k)
    return mean - half, mean + half


def _median_ci(sorted_samples: Sequence[float]) -> Optional[Tuple[float, float]]:
    ranks = median_ci_ranks(len(sorted_samples))
    if ranks is None:
        return None
    return sorted_samples[ranks[0] - 1], sorted_samples[ranks[1] - 1]


def quantile(sorted_samples: Sequence[float], q: float) -> float:
    """Quantile by linear interpolation between order statistics (numpy's default, type 7)."""
    if not sorted_samples:
        raise ValueError("quantile of no samples")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q={q} is outside [0, 1]")
    position = (len(sorted_samples) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_samples) - 1)
    return sorted_samples[low] + (sorted_samples[high] - sorted_samples[low]) * (position - low)


@cache
def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> Optional[Tuple[int, int]]:
    """1-based ranks (lo, hi) such that [x_(lo), x_(hi)] covers the median with >= confidence.

    Distribution-free: the number of samples below the true median is Binomial(n, 1/2), so the
    interval between the k-th smallest and the k-th largest sample misses the median with
    probability 2 * P(B <= k - 1). We take the largest k that keeps that below 1 - confidence.
    Returns None when n is too small for any such interval (n < 6 at 95 %).
    """
    alpha_half = (1.0 - confidence) / 2.0
    if n <= _EXACT_RANKS_UP_TO:
        k = 0
        tail = 0.0  # P(B <= k - 1)
        while True:
            next_tail = tail + math.comb(n, k) / 2.0**n  # P(B <= k)
            if next_tail > alpha_half:
                break
            tail = next_tail
            k += 1
    else:
        z = statistics.NormalDist().inv_cdf(1.0 - alpha_half)
        k = math.floor(n / 2.0 - z * math.sqrt(n) / 2.0)
    if k < 1:
        return None
    return k, n - k + 1


def ci_halfwidth_pct(sorted_samples: Sequence[float]) -> Optional[float]:
    """The larger distance from the median to an end of its 95 % CI, in % of the median;
    None when there are too few samples for a CI (or the median is not positive)."""
    ranks = median_ci_ranks(len(sorted_samples))
    median = statistics.median(sorted_samples) if sorted_samples else 0.0
    if ranks is None or median <= 0:
        return None
    low, high = sorted_samples[ranks[0] - 1], sorted_samples[ranks[1] - 1]
    return 100.0 * max(median - low, high - median) / median


@dataclass
class TimeStats:
    """Seconds per call of one cell and mode, every statistic derived from the raw samples.

    ``samples_s`` holds every timed call in the order measured; with rounds, round after round,
    ``round_sizes`` saying how many belong to each.
    """

    samples_s: List[float]
    target_ci_pct: float  # the precision asked for (timing.target_ci_pct): judges the CI
    warmup_calls: int = 0
    first_call_s: Optional[float] = None  # the cold call: tracing, compilation, lazy init
    stop_reason: str = ""
    round_sizes: Optional[List[int]] = None  # None: one round
    _sorted: List[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.samples_s:
            raise ValueError("a timing result needs at least one sample")
        if self.round_sizes is not None and sum(self.round_sizes) != len(self.samples_s):
            raise ValueError(
                f"round sizes {self.round_sizes} do not add up to {len(self.samples_s)} samples"
            )
        self._sorted = sorted(self.samples_s)

    @property
    def rounds(self) -> List[List[float]]:
        """The samples of each round, in the order measured."""
        out, start = [], 0
        for size in self.round_sizes or [len(self.samples_s)]:
            out.append(self.samples_s[start : start + size])
            start += size
        return out

    @property
    def round_medians_s(self) -> List[float]:
        return [statistics.median(r) for r in self.rounds if r]

    @property
    def timed_calls(self) -> int:
        return len(self.samples_s)

    @property
    def median_s(self) -> float:
        return statistics.median(self._sorted)

    @property
    def min_s(self) -> float:
        return self._sorted[0]

    @property
    def mean_s(self) -> float:
        return statistics.fmean(self._sorted)

    @property
    def stdev_s(self) -> float:
        return statistics.stdev(self._sorted) if len(self._sorted) > 1 else 0.0

    @property
    def iqr_s(self) -> float:
        return quantile(self._sorted, 0.75) - quantile(self._sorted, 0.25)

    @property
    def p90_s(self) -> float:
        return quantile(self._sorted, 0.90)

    @property
    def p99_s(self) -> float:
        return quantile(self._sorted, 0.99)

    @property
    def pooled_ci95_s(self) -> Optional[Tuple[float, float]]:
        """The distribution-free 95 % CI of the median of all samples, as if one round."""
        return _median_ci(self._sorted)

    @property
    def rounds_ci95_s(self) -> Optional[Tuple[float, float]]:
        """The 95 % t-interval of the round medians' mean; None with one round."""
        return rounds_interval(self.round_medians_s)

    @property
    def ci95_s(self) -> Optional[Tuple[float, float]]:
        """The interval reported: the pooled CI, widened to cover the between-round interval."""
        pooled, between = self.pooled_ci95_s, self.rounds_ci95_s
        if pooled is None or between is None:
            return pooled
        # A time is positive: a t-interval from few, far-apart rounds can reach below zero.
        return max(0.0, min(pooled[0], between[0])), max(pooled[1], between[1])

    @property
    def ci95_halfwidth_pct(self) -> Optional[float]:
        interval, median = self.ci95_s, self.median_s
        if interval is None or median <= 0:
            return None
        return 100.0 * max(median - interval[0], interval[1] - median) / median

    @property
    def iqr_pct(self) -> float:
        return 100.0 * self.iqr_s / self.median_s if self.median_s > 0 else math.inf

    def _drift(self) -> Optional[str]:
        """A round whose second half differs from its first by more than both the halves' CIs
        and the precision asked for: the machine's speed changed while it was measured."""
        for number, samples in enumerate(self.rounds, 1):
            if len(samples) < _DRIFT_MIN_SAMPLES:
                continue
            half = len(samples) // 2
            first, second = sorted(samples[:half]), sorted(samples[half:])
            ci_first, ci_second = _median_ci(first), _median_ci(second)
            m_first, m_second = statistics.median(first), statistics.median(second)
            shift_pct = 100.0 * (m_second - m_first) / m_first
            apart = ci_first[1] < ci_second[0] or ci_second[1] < ci_first[0]
            if apart and abs(shift_pct) > self.target_ci_pct:
                where = f"round {number}'s" if len(self.rounds) > 1 else "the"
                return (
                    f"drift: {where} second half ran {abs(shift_pct):.1f} % "
                    f"{'slower' if shift_pct > 0 else 'faster'} than its first"
                )
        return None

    def _round_pct(self, samples: Sequence[float]) -> Tuple[float, Optional[float]]:
        """(IQR % of the median, CI half-width % of the median) of one round's samples."""
        ordered = sorted(samples)
        median = statistics.median(ordered)
        iqr = quantile(ordered, 0.75) - quantile(ordered, 0.25)
        return (100.0 * iqr / median if median > 0 else math.inf), ci_halfwidth_pct(ordered)

    @property
    def noise_checks(self) -> Dict[str, str]:
        """The checks this result failed, by name, with why.

        ``iqr``: a round's IQR/median above NOISY_IQR_PCT; ``calls``: too few calls for a CI;
        ``ci``: a round's own CI wider than the target; ``rounds``: each round is precise but
        they disagree, so the interval across rounds is wider than the target; ``drift``: a
        round's speed changed half way. With one round, the round is the whole sample.
        """
        checks: Dict[str, str] = {}
        per_round = [self._round_pct(r) for r in self.rounds if r]
        iqr_pct = max(p[0] for p in per_round)
        if iqr_pct > NOISY_IQR_PCT:
            where = " (in the noisiest round)" if len(per_round) > 1 else ""
            checks["iqr"] = f"IQR/median = {iqr_pct:.1f} % > {NOISY_IQR_PCT:g} %{where}"
        halfwidth = self.ci95_halfwidth_pct
        round_widths = [p[1] for p in per_round]
        if halfwidth is None:
            checks["calls"] = (
                f"only {self.timed_calls} timed calls: too few for a 95 % CI of the median "
                "(raise timing.min_calls or timing.max_calls)"
            )
        elif halfwidth > self.target_ci_pct:
            if len(per_round) > 1 and all(
                w is not None and w <= self.target_ci_pct for w in round_widths
            ):
                medians = ", ".join(f"{m * 1000:.4g}" for m in self.round_medians_s)
                checks["rounds"] = (
                    f"rounds disagree: medians {medians} ms give a 95 % CI of "
                    f"+-{halfwidth:.1f} % > +-{self.target_ci_pct:g} %"
                )
            else:
                checks["ci"] = (
                    f"95 % CI of the median = +-{halfwidth:.1f} % > +-{self.target_ci_pct:g} % "
                    f"after {self.timed_calls} calls ({self.stop_reason})"
                )
        drift = self._drift()
        if drift:
            checks["drift"] = drift
        return checks

    @property
    def noise_reasons(self) -> List[str]:
        """Why this result should not be trusted to the stated precision; empty when it can."""
        return list(self.noise_checks.values())

    @property
    def noisy(self) -> bool:
        return bool(self.noise_checks)

    def to_dict(self) -> Dict[str, object]:
        interval, pooled, checks = self.ci95_s, self.pooled_ci95_s, self.noise_checks
        out = {
            "median_s": self.median_s,
            "min_s": self.min_s,
            "mean_s": self.mean_s,
            "stdev_s": self.stdev_s,
            "iqr_s": self.iqr_s,
            "p90_s": self.p90_s,
            "p99_s": self.p99_s,
            "ci95_low_s": interval[0] if interval else None,
            "ci95_high_s": interval[1] if interval else None,
            "ci95_halfwidth_pct": self.ci95_halfwidth_pct,
            "iqr_pct": self.iqr_pct,
            "first_call_s": self.first_call_s,
            "warmup_calls": self.warmup_calls,
            "timed_calls": self.timed_calls,
            "stop_reason": self.stop_reason,
            "target_ci_pct": self.target_ci_pct,
            "noise": {
                "verdict": "noisy" if checks else "ok",
                "reasons": list(checks.values()),
                "checks": sorted(checks),
            },
            "samples_s": list(self.samples_s),
        }
        if self.round_sizes is not None and len(self.round_sizes) > 1:
            out.update(
                rounds=len(self.round_sizes),
                round_sizes=list(self.round_sizes),
                round_medians_s=self.round_medians_s,
                pooled_ci95_low_s=pooled[0] if pooled else None,
                pooled_ci95_high_s=pooled[1] if pooled else None,
            )
        return out
