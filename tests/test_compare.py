"""Comparing two sweeps on synthetic records with known differences: the verdicts, the CI of the
ratio, the gates' exit status and the formats."""

from __future__ import annotations

import numpy as np
import pytest

from sweeper.report.compare import Mark, compare_dirs, main, parse_percent
from tests.synthetic import make_record, write_sweep

RNG_SEED = 1234


def spread(center: float, relative: float, n: int = 40, seed: int = RNG_SEED) -> list:
    """``n`` samples uniformly within ±``relative`` of ``center`` (a fixed seed)."""
    rng = np.random.default_rng(seed)
    return list(center * (1 + rng.uniform(-relative, relative, n)))


def two_sweeps(tmp_path, base_samples, new_samples, new_peak=1000.0, new_status="ok", env=None):
    base = write_sweep(tmp_path / "base", [("s8", make_record(samples=base_samples))])
    new_record = make_record(
        samples=new_samples,
        peak_mib=new_peak,
        status=new_status,
        error=None if new_status == "ok" else "RuntimeError: out of memory",
        environment=env,
    )
    new = write_sweep(tmp_path / "new", [("s8", new_record)])
    return base, new


def only(comparison):
    (change,) = comparison.changes
    return change


def test_no_change_is_not_significant(tmp_path):
    base, new = two_sweeps(tmp_path, spread(0.010, 0.01), spread(0.010, 0.01, seed=99))
    change = only(compare_dirs(base, new))
    assert change.mark is Mark.same
    assert change.ratio == pytest.approx(1.0, abs=0.01)
    assert change.ratio_low < 1 < change.ratio_high
    assert change.p_value > 0.05
    assert main([str(base), str(new), "--fail-above", "5%"]) == 0


def test_ten_percent_slower_with_tight_samples_is_worse_and_fails_the_gate(tmp_path, capsys):
    base, new = two_sweeps(tmp_path, spread(0.010, 0.01), spread(0.011, 0.01, seed=99))
    change = only(compare_dirs(base, new))
    assert change.mark is Mark.worse
    assert change.ratio == pytest.approx(1.10, abs=0.01)
    assert 1.05 < change.ratio_low <= change.ratio <= change.ratio_high < 1.15
    assert change.p_value < 1e-6
    assert main([str(base), str(new), "--fail-above", "5%"]) == 1
    out = capsys.readouterr().out
    assert "FAIL (time +5.0%): 1 regression(s)" in out
    assert "- bert-base pt cpu b8 s8 inference: +10." in out
    assert main([str(base), str(new), "--fail-above", "20%"]) == 0  # past the change: passes
    assert main([str(base), str(new)]) == 0  # no gate, no failure: a report


def test_ten_percent_slower_inside_the_noise_is_not_significant(tmp_path):
    base, new = two_sweeps(tmp_path, spread(0.010, 0.5, n=8), spread(0.011, 0.5, n=8, seed=99))
    change = only(compare_dirs(base, new))
    assert change.mark is Mark.same
    assert change.p_value > 0.05 and change.ratio_low < 1 < change.ratio_high
    assert main([str(base), str(new), "--fail-above", "5%"]) == 0


def test_faster_is_better(tmp_path):
    base, new = two_sweeps(tmp_path, spread(0.010, 0.01), spread(0.008, 0.01, seed=99))
    change = only(compare_dirs(base, new))
    assert change.mark is Mark.better and change.ratio == pytest.approx(0.8, abs=0.01)
    assert main([str(base), str(new), "--fail-above", "5%"]) == 0


def test_memory_growth_fails_its_own_gate(tmp_path):
    base, new = two_sweeps(tmp_path, spread(0.01, 0.01), spread(0.01, 0.01, seed=9), new_peak=1100)
    change = only(compare_dirs(base, new))
    assert change.memory_change == pytest.approx(0.10)
    assert main([str(base), str(new), "--fail-memory-above", "5%"]) == 1
    assert main([str(base), str(new), "--fail-memory-above", "15%"]) == 0
    assert main([str(base), str(new), "--fail-above", "5%"]) == 0  # time gate only


def test_newly_failing_and_fixed(tmp_path):
    base, new = two_sweeps(tmp_path, spread(0.01, 0.01), [], new_status="oom")
    change = only(compare_dirs(base, new))
    assert change.mark is Mark.newly_failing and "oom" in change.detail
    assert main([str(base), str(new), "--fail-above", "5%"]) == 1
    assert only(compare_dirs(new, base)).mark is Mark.fixed


def test_other_hardware_or_libraries_are_not_comparable_and_say_which(tmp_path, capsys):
    env = {"cpu_model": "Other CPU", "transformers_version": "4.58.0"}
    base, new = two_sweeps(tmp_path, spread(0.01, 0.01), spread(0.02, 0.01, seed=9), env=env)
    change = only(compare_dirs(base, new))
    assert change.mark is Mark.not_comparable
    assert change.detail == (
        "cpu_model Example CPU → Other CPU; transformers_version 4.57.6 → 4.58.0"
    )
    assert main([str(base), str(new), "--fail-above", "5%"]) == 0  # not judged, not failed
    allowed = compare_dirs(base, new, allowed=["cpu_model", "transformers_version"])
    assert only(allowed).mark is Mark.worse


def test_markdown_for_a_pull_request(tmp_path, capsys):
    base, new = two_sweeps(tmp_path, spread(0.010, 0.01), spread(0.011, 0.01, seed=99))
    assert main([str(base), str(new), "--format", "md"]) == 0
    out = capsys.readouterr().out.splitlines()
    header = out.index("| cell | base | new | new/base (95 % CI) | p | verdict | peak memory |")
    assert out[header + 1] == "| :--- | ---: | ---: | ---: | ---: | :--- | :--- |"
    row = out[header + 2].split(" | ")
    assert row[0] == "| bert-base pt cpu b8 s8 inference"
    assert row[1:3] == ["10 ms", "11 ms"] and row[5] == "worse"


def test_cells_only_in_one_sweep_and_config_differences_are_listed(tmp_path, capsys):
    base = write_sweep(
        tmp_path / "base",
        [("s8", make_record(seq=8)), ("s32", make_record(seq=32, sweep_index=1))],
    )
    new = write_sweep(
        tmp_path / "new",
        [("s8", make_record(seq=8, config={"timing": {"max_time_s": 20.0}}))],
    )
    comparison = compare_dirs(base, new)
    assert [c.mark for c in comparison.changes] == [Mark.same, Mark.only_base]
    assert comparison.config_differences == ["timing.max_time_s: n/a → 20.0"]


@pytest.mark.parametrize("text, value", [("5%", 0.05), ("5", 0.05), ("0.5 %", 0.005)])
def test_thresholds_parse(text, value):
    assert parse_percent(text) == pytest.approx(value)


def test_bad_input_exits_2_with_the_fix(tmp_path, capsys):
    base, new = two_sweeps(tmp_path, spread(0.01, 0.01), spread(0.01, 0.01, seed=2))
    assert main([str(base), str(new), "--fail-above", "five"]) == 2
    assert (
        "bad threshold: 'five' is not a percentage; give e.g. 5% (or 5)" in capsys.readouterr().err
    )
    assert main([str(base), str(tmp_path / "nothing")]) == 2
    assert f"no records under {tmp_path / 'nothing'}" in capsys.readouterr().err
    assert main([str(base), str(new), "--allow", "hostname"]) == 2
    assert "--allow hostname: not a key that decides comparability" in capsys.readouterr().err
