"""Rounds (issue 8.4): a cell is timed in timing.rounds fresh processes, one per pass of the
sweep, so its rounds are spread over the sweep; a resumed sweep adds the rounds it lacks."""

from __future__ import annotations

import os
import signal

import pytest

from tests.helpers import TINY_BERT, quick, records, run_sweeper, start_sweeper
from tests.test_failures import _wait_for


def test_rounds_are_spread_over_the_sweep(tmp_path, sweep_dir):
    proc = run_sweeper(
        [*TINY_BERT, *quick(rounds=2), "batch=1", "seq=8,16", f"hydra.sweep.dir={sweep_dir}", "-m"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = records(sweep_dir)
    for record in (first, second):
        assert record["rounds"] == 2
        result = record["results"]["inference"]
        assert [r["round"] for r in result["rounds"]] == [1, 2]
        timing = result["time"]
        assert timing["rounds"] == 2 and sum(timing["round_sizes"]) == timing["timed_calls"]
        assert len(timing["round_medians_s"]) == 2
        assert timing["ci95_low_s"] <= timing["pooled_ci95_low_s"]
    # Pass 2 started after pass 1 had measured every cell: seq=16's first round came between
    # seq=8's two.
    rounds_8 = first["results"]["inference"]["rounds"]
    rounds_16 = second["results"]["inference"]["rounds"]
    assert rounds_8[0]["finished_utc"] <= rounds_16[0]["started_utc"]
    assert rounds_16[0]["finished_utc"] <= rounds_8[1]["started_utc"]
    # Both rounds were forked from one built model (one builder, kept across the passes).
    assert [r["build_new"] for r in rounds_8 + rounds_16] == [True, False, False, False]


def test_a_single_run_measures_every_round_itself(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_sweeper(
        [*TINY_BERT, *quick(rounds=3), "batch=1", "seq=8", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = records(run_dir)
    assert record["rounds"] == 3
    assert len(record["results"]["inference"]["time"]["round_sizes"]) == 3


@pytest.mark.slow  # make test-slow (CI runs it too)
def test_a_resumed_sweep_adds_the_rounds_it_lacks(tmp_path, sweep_dir):
    args = [
        *TINY_BERT,
        *quick(rounds=2),
        "timing.min_time_s=1",
        "timing.max_time_s=2",
        "batch=1",
        "seq=8,16",
        f"hydra.sweep.dir={sweep_dir}",
        "-m",
    ]
    args = [a for a in args if a not in ("timing.min_time_s=0.05", "timing.max_time_s=1")]
    proc = start_sweeper(args, tmp_path)
    try:
        # Interrupt in pass 2, once the first cell has its second round.
        _wait_for(lambda: any(r.get("rounds") == 2 for r in _readable(sweep_dir)))
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = {r["cell"]["sequence_length"]: r for r in records(sweep_dir)}
    assert sorted(r.get("rounds") or 1 for r in before.values()) == [1, 2]
    resumed = run_sweeper(args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = {r["cell"]["sequence_length"]: r for r in records(sweep_dir)}
    for seq, record in after.items():
        assert record["rounds"] == 2
        old = before[seq]["results"]["inference"]["time"]["samples_s"]
        new = record["results"]["inference"]["time"]["samples_s"]
        assert new[: len(old)] == old  # the rounds measured before were kept, not re-measured
    assert not list(sweep_dir.rglob("record.replaced-*.json"))


def _readable(sweep_dir):
    try:
        return records(sweep_dir)
    except ValueError:  # a record being replaced this instant
        return []
