"""Statistics of timing samples: the median, its distribution-free confidence interval, noise.

Standard library only (the collector imports this). Every statistic is derived from the raw
samples in one place, :class:`TimeStats`, and the thresholds that judge noise are named constants.
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
]

# torch.utils.benchmark warns when IQR / median exceeds 10 %: a spread that large means the
# median moves between runs by more than most effects people try to measure.
NOISY_IQR_PCT = 10.0
# The interval we promise for the median, the level MLPerf and most papers use.
CONFIDENCE = 0.95
# Above this many samples the binomial tail is computed with the normal approximation, whose
# error in the rank is below one sample there.
_EXACT_RANKS_UP_TO = 200


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
    """Seconds per call of one timed loop, with every statistic derived from the raw samples."""

    samples_s: List[float]
    target_ci_pct: float  # the precision asked for (timing.target_ci_pct): judges the CI
    warmup_calls: int = 0
    first_call_s: Optional[float] = None  # the cold call: tracing, compilation, lazy init
    stop_reason: str = ""
    _sorted: List[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.samples_s:
            raise ValueError("a timing result needs at least one sample")
        self._sorted = sorted(self.samples_s)

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
    def ci95_s(self) -> Optional[Tuple[float, float]]:
        ranks = median_ci_ranks(len(self._sorted))
        if ranks is None:
            return None
        return self._sorted[ranks[0] - 1], self._sorted[ranks[1] - 1]

    @property
    def ci95_halfwidth_pct(self) -> Optional[float]:
        return ci_halfwidth_pct(self._sorted)

    @property
    def iqr_pct(self) -> float:
        return 100.0 * self.iqr_s / self.median_s if self.median_s > 0 else math.inf

    @property
    def noise_reasons(self) -> List[str]:
        """Why this result should not be trusted to the stated precision; empty when it can."""
        reasons = []
        if self.iqr_pct > NOISY_IQR_PCT:
            reasons.append(f"IQR/median = {self.iqr_pct:.1f} % > {NOISY_IQR_PCT:g} %")
        halfwidth = self.ci95_halfwidth_pct
        if halfwidth is None:
            reasons.append(
                f"only {self.timed_calls} timed calls: too few for a 95 % CI of the median "
                "(raise timing.min_calls or timing.max_calls)"
            )
        elif halfwidth > self.target_ci_pct:
            reasons.append(
                f"95 % CI of the median = +-{halfwidth:.1f} % > +-{self.target_ci_pct:g} % "
                f"after {self.timed_calls} calls ({self.stop_reason})"
            )
        return reasons

    @property
    def noisy(self) -> bool:
        return bool(self.noise_reasons)

    def to_dict(self) -> Dict[str, object]:
        interval = self.ci95_s
        return {
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
            "noise": {"verdict": "noisy" if self.noisy else "ok", "reasons": self.noise_reasons},
            "samples_s": list(self.samples_s),
        }
