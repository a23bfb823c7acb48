"""Statistics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from sweeper.measure.stats import (
    NOISY_IQR_PCT,
    TimeStats,
    median_ci_ranks,
    quantile,
    rounds_interval,
)


def test_quantile_interpolates_like_numpy_type_7():
    xs = [1.0, 2.0, 3.0, 4.0]
    # position (n-1)q: 0.75 -> 1.75 ; 2.25 -> 3.25 ; 2.7 -> 3.7
    assert quantile(xs, 0.25) == pytest.approx(1.75)
    assert quantile(xs, 0.75) == pytest.approx(3.25)
    assert quantile(xs, 0.9) == pytest.approx(3.7)
    assert quantile(xs, 0.0) == 1.0 and quantile(xs, 1.0) == 4.0
    with pytest.raises(ValueError):
        quantile([], 0.5)


@pytest.mark.parametrize(
    "n, ranks",
    [
        # Binomial(n, 1/2): the largest k with P(B <= k-1) <= 2.5 %.
        (5, None),  # P(B <= 0) = 1/32 = 3.1 % > 2.5 %: no 95 % interval exists
        (6, (1, 6)),  # P(B <= 0) = 1/64 = 1.6 %
        (8, (1, 8)),  # P(B <= 1) = 9/256 = 3.5 % > 2.5 %
        (9, (2, 8)),  # P(B <= 1) = 10/512 = 2.0 %
        (10, (2, 9)),  # P(B <= 2) = 56/1024 = 5.5 % > 2.5 %
        (20, (6, 15)),  # P(B <= 5) = 2.07 %, P(B <= 6) = 5.77 %
        (100, (40, 61)),  # the textbook ranks for n = 100
    ],
)
def test_median_ci_ranks_exact(n, ranks):
    assert median_ci_ranks(n) == ranks


def test_median_ci_ranks_normal_approximation_for_large_n():
    # k = floor(n/2 - 1.959964 * sqrt(n) / 2) = floor(150 - 16.974) = 133
    assert median_ci_ranks(300) == (133, 168)


def test_time_stats_hand_computed():
    samples = [0.5, 0.1, 0.4, 0.2, 0.3, 0.6, 0.9, 0.8, 0.7, 1.0]  # 0.1 .. 1.0 shuffled
    stats = TimeStats(
        target_ci_pct=2.0,
        samples_s=samples,
        warmup_calls=2,
        first_call_s=3.0,
        stop_reason="converged",
    )
    assert stats.median_s == pytest.approx(0.55)
    assert stats.min_s == pytest.approx(0.1)
    assert stats.mean_s == pytest.approx(0.55)
    assert stats.stdev_s == pytest.approx(math.sqrt(sum((x - 0.55) ** 2 for x in samples) / 9))
    # q1 at position 2.25 -> 0.325, q3 at 6.75 -> 0.775
    assert stats.iqr_s == pytest.approx(0.45)
    assert stats.p90_s == pytest.approx(0.91)  # position 8.1
    assert stats.p99_s == pytest.approx(0.991)  # position 8.91
    assert stats.ci95_s == pytest.approx((0.2, 0.9))  # ranks 2 and 9
    assert stats.ci95_halfwidth_pct == pytest.approx(100 * 0.35 / 0.55)
    assert stats.noisy
    out = stats.to_dict()
    assert out["samples_s"] == samples and out["timed_calls"] == 10 and out["warmup_calls"] == 2


def test_quiet_samples_are_not_noisy():
    samples = [1.0 + 0.001 * (i % 5) for i in range(20)]
    stats = TimeStats(target_ci_pct=2.0, samples_s=samples, stop_reason="converged")
    assert stats.iqr_pct < NOISY_IQR_PCT
    assert stats.ci95_halfwidth_pct < 2.0
    assert stats.noise_reasons == []
    assert stats.to_dict()["noise"] == {"verdict": "ok", "reasons": [], "checks": []}


def test_noise_reasons_name_the_figures():
    wide = TimeStats(
        target_ci_pct=2.0,
        samples_s=[1.0, 1.0, 1.5, 2.0, 2.0, 2.0],
        stop_reason="max_time_s=30 reached",
    )
    reasons = " | ".join(wide.noise_reasons)
    assert "IQR/median" in reasons and "> 10 %" in reasons
    assert "95 % CI of the median" in reasons and "max_time_s=30 reached" in reasons
    few = TimeStats(
        target_ci_pct=2.0, samples_s=[1.0, 1.0, 1.0], stop_reason="max_time_s=30 reached"
    )
    assert any("too few for a 95 % CI" in r for r in few.noise_reasons)


def test_rounds_interval_is_students_t_of_the_round_medians():
    # mean 1.0, stdev of (0.98, 1.02) = 0.028284; t(1) = 12.706: half = 12.706 * 0.028284 / sqrt 2
    low, high = rounds_interval([0.98, 1.02])
    assert (low, high) == pytest.approx((1.0 - 0.25412, 1.0 + 0.25412), abs=1e-5)
    # three rounds: mean 1.0, stdev 0.01, t(2) = 4.303 -> half = 4.303 * 0.01 / sqrt 3
    low, high = rounds_interval([0.99, 1.0, 1.01])
    assert high - 1.0 == pytest.approx(4.303 * 0.01 / math.sqrt(3), rel=1e-6)
    assert rounds_interval([1.0]) is None


def quiet(center: float, n: int = 20) -> list:
    return [center * (1 + 0.001 * (i % 5)) for i in range(n)]


def test_rounds_that_agree_keep_a_tight_interval():
    stats = TimeStats(samples_s=quiet(1.0) + quiet(1.0005), target_ci_pct=2.0, round_sizes=[20, 20])
    assert stats.noise_checks == {}
    assert stats.ci95_halfwidth_pct < 2.0
    out = stats.to_dict()
    assert out["rounds"] == 2 and out["round_sizes"] == [20, 20]
    assert out["round_medians_s"] == pytest.approx([1.002, 1.0025], rel=1e-3)


def test_rounds_that_disagree_widen_the_interval_and_say_so():
    stats = TimeStats(samples_s=quiet(1.0) + quiet(1.2), target_ci_pct=2.0, round_sizes=[20, 20])
    pooled_low, pooled_high = stats.pooled_ci95_s
    low, high = stats.ci95_s
    assert low < pooled_low and high > pooled_high  # the between-round t-interval is wider
    assert set(stats.noise_checks) == {"rounds"}  # each round alone is quiet
    assert "rounds disagree: medians 1002, 1202 ms" in stats.noise_checks["rounds"]
    assert stats.to_dict()["noise"]["checks"] == ["rounds"]


def test_a_round_that_slows_down_half_way_is_flagged_as_drift():
    samples = quiet(1.0, 10) + quiet(1.1, 10)  # the second half 10 % slower
    checks = TimeStats(samples_s=samples, target_ci_pct=2.0).noise_checks
    assert checks["drift"] == "drift: the second half ran 10.0 % slower than its first"
    steady = TimeStats(samples_s=quiet(1.0, 20), target_ci_pct=2.0)
    assert "drift" not in steady.noise_checks


def test_round_sizes_must_add_up():
    with pytest.raises(ValueError, match="do not add up"):
        TimeStats(samples_s=[1.0, 2.0], target_ci_pct=2.0, round_sizes=[1, 2])
