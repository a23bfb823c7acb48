"""Isolation (issue 3): a cell's figures do not depend on the cells that ran before it."""

from __future__ import annotations

import pytest

from tests.helpers import QUICK, TINY_BERT, records, run_sweeper


def peak_of_small_cell(tmp_path, name, hidden_sizes):
    sweep_dir = tmp_path / name
    proc = run_sweeper(
        [
            *TINY_BERT,
            *QUICK,
            "batch=4",
            "seq=128",
            "model.name=cell",
            f"model.hidden_size={hidden_sizes}",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = {r["config"]["model"]["hidden_size"]: r for r in records(sweep_dir)}
    return found


def test_small_cell_alone_and_after_a_much_larger_cell(tmp_path):
    alone = peak_of_small_cell(tmp_path, "alone", "32")
    after = peak_of_small_cell(tmp_path, "after", "2048,32")  # Hydra runs 2048 first
    large, small = after[2048], after[32]
    assert large["sweep_index"] < small["sweep_index"]
    large_peak = large["results"]["inference"]["memory"]["peak_rss_mib"]
    small_peak = small["results"]["inference"]["memory"]["peak_rss_mib"]
    alone_peak = alone[32]["results"]["inference"]["memory"]["peak_rss_mib"]
    assert large_peak > small_peak + 50  # the larger cell really is larger
    assert small_peak == pytest.approx(alone_peak, rel=0.02)
    small_increase = small["results"]["inference"]["memory"]["peak_increase_mib"]
    alone_increase = alone[32]["results"]["inference"]["memory"]["peak_increase_mib"]
    assert small_increase == pytest.approx(alone_increase, rel=0.1, abs=2.0)
