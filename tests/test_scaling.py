"""Scaling fits against known power laws: the exponent, R², poor fits said to be poor, too few
points not fitted."""

from __future__ import annotations

import math

import pytest

from sweeper.report.frame import load
from sweeper.report.scaling import POOR_FIT_R2, fit_power, scaling
from tests.synthetic import make_record, write_sweep

SEQS = (8, 32, 128, 512)


def test_an_exact_power_law_gives_its_exponent_and_r2_one():
    fit = fit_power(SEQS, [3e-4 * s**1.5 for s in SEQS])
    assert fit.slope == pytest.approx(1.5) and fit.r2 == pytest.approx(1.0)
    assert math.exp(fit.intercept) == pytest.approx(3e-4)
    assert (fit.points, fit.x_min, fit.x_max) == (4, 8, 512) and not fit.poor


def test_a_hockey_stick_is_a_poor_fit():
    """Flat (overhead-bound) then steep: no single power law describes it."""
    fit = fit_power(SEQS, [1.0, 1.0, 1.0, 40.0])
    assert fit.r2 < POOR_FIT_R2 and fit.poor


def test_two_points_are_not_a_fit():
    assert fit_power((8, 32), (1.0, 4.0)) is None
    assert fit_power((8, 32, 32), (1.0, 4.0, 4.1)) is None  # distinct x values count


def test_the_frame_api_and_its_sentence(tmp_path):
    cells = [
        (
            f"s{seq}",
            make_record(
                seq=seq,
                samples=[2e-5 * seq**1.05] * 6,
                peak_mib=1000 + 0.4 * 8 * seq,
                sweep_index=i,
            ),
        )
        for i, seq in enumerate(SEQS)
    ]
    fits = scaling(load(write_sweep(tmp_path / "sweep", cells)))
    (row,) = fits.to_dict("records")
    assert row["time_exponent"] == pytest.approx(1.05)
    assert row["mib_per_token"] == pytest.approx(0.4)
    assert row["time_points"] == 4 and not row["poor_fit"]
    assert row["text"].startswith(
        "bert-base pt cpu b8 inference: time ∝ seq^1.05 (8→512, R² 1.00); "
    )
    assert "memory +0.4 MB per token (R² 1.00)" in row["text"]


def _with_increases(record: dict, resident: float, anon) -> dict:
    memory = record["results"]["inference"]["memory"]
    memory.update(peak_increase_mib=resident, peak_increase_anon_mib=anon)
    return record


def test_the_memory_exponent_is_fitted_on_the_anonymous_increase_where_every_cell_has_it(tmp_path):
    # Activations grow as seq^1 here; the calls also map 15 MiB of library code, which would
    # flatten the resident increase's exponent at short inputs.
    def sweep(name, anon_of):
        cells = [
            (
                f"s{seq}",
                _with_increases(
                    make_record(seq=seq, samples=[1e-4 * seq] * 6, sweep_index=i),
                    resident=15 + 0.1 * seq,
                    anon=anon_of(seq),
                ),
            )
            for i, seq in enumerate(SEQS)
        ]
        (row,) = scaling(load(write_sweep(tmp_path / name, cells))).to_dict("records")
        return row

    assert sweep("anon", lambda seq: 0.1 * seq)["memory_exponent"] == pytest.approx(1.0)
    # One cell without the figure (an older record): the whole line falls back to the resident
    # increase rather than mixing the two.
    fallback = sweep("mixed", lambda seq: None if seq == 8 else 0.1 * seq)
    resident = fit_power(SEQS, [15 + 0.1 * seq for seq in SEQS])
    assert fallback["memory_exponent"] == pytest.approx(resident.slope)
    assert resident.slope < 0.8


def test_a_gpu_lines_memory_exponent_is_fitted_on_the_gpu_increase(tmp_path):
    # The tables show GPU memory: the host's RSS (flat here) says nothing about it.
    def sweep(name, gpu_of):
        cells = []
        for i, seq in enumerate(SEQS):
            record = make_record(seq=seq, samples=[1e-4 * seq] * 6, sweep_index=i)
            _with_increases(record, resident=15.0, anon=2.0)
            memory = record["results"]["inference"]["memory"]
            memory.update(headline_source="nvml_process", gpu_peak_increase_mib=gpu_of(seq))
            cells.append((f"s{seq}", record))
        (row,) = scaling(load(write_sweep(tmp_path / name, cells))).to_dict("records")
        return row

    assert sweep("gpu", lambda seq: 0.5 * seq**2)["memory_exponent"] == pytest.approx(2.0)
    # Records without the GPU figure: no memory fit, rather than one of the host's memory.
    row = sweep("older", lambda seq: None)
    assert math.isnan(row["memory_exponent"]) and "memory increase" not in row["text"]


def test_failed_cells_are_left_out_of_the_fit(tmp_path):
    cells = [
        (f"s{seq}", make_record(seq=seq, samples=[1e-4 * seq] * 6, sweep_index=i))
        for i, seq in enumerate(SEQS[:3])
    ]
    cells.append(("s512", make_record(seq=512, status="oom", error="MemoryError", sweep_index=3)))
    (row,) = scaling(load(write_sweep(tmp_path / "sweep", cells))).to_dict("records")
    assert row["time_exponent"] == pytest.approx(1.0) and row["x_max"] == 128
