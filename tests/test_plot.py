"""Figures from records: one file per mode and measurement that opens, one line per batch size
(framework, options), a gap where a cell failed, the x axis chosen by what the sweep varies."""

from __future__ import annotations

import math

import matplotlib.image
import pytest
from matplotlib.container import ErrorbarContainer

from sweeper.report.frame import load, records_frame
from sweeper.report.plot import figures, main, plottable, write_plots
from sweeper.report.select import select
from tests.synthetic import make_record, write_sweep


def lines(figure) -> list:
    """(panel title, x data, y data) of every drawn line."""
    out = []
    for ax in figure.axes:
        for container in ax.containers:
            if isinstance(container, ErrorbarContainer):
                line = container.lines[0]
                out.append((ax.get_title(), list(line.get_xdata()), list(line.get_ydata())))
    return out


@pytest.fixture
def sweep(tmp_path):
    """Two models; bert-base at batch 1 and 8 over four lengths, its b8 s128 cell out of memory."""
    cells = []
    index = 0
    for model in ("bert-base", "gpt2"):
        for batch in (1, 8):
            for seq in (8, 32, 128, 512):
                failed = model == "bert-base" and batch == 8 and seq == 128
                record = make_record(
                    model=model,
                    batch=batch,
                    seq=seq,
                    samples=[1e-5 * batch * seq * (1 + 0.01 * i) for i in range(6)],
                    peak_mib=500 + batch * seq,
                    status="oom" if failed else "ok",
                    error="MemoryError" if failed else None,
                    config={"model": {"name": model}},
                    sweep_index=index,
                )
                cells.append((f"{model}-b{batch}-s{seq}", record))
                index += 1
    return write_sweep(tmp_path / "sweep", cells)


def test_one_line_per_batch_size_per_model_with_a_gap_for_the_failed_cell(sweep):
    drawn = figures(load(sweep))
    assert sorted(drawn) == ["inference_memory", "inference_time"]
    time = lines(drawn["inference_time"])
    assert [(title, len(x)) for title, x, _ in time] == [
        ("bert-base", 4),
        ("bert-base", 4),
        ("gpt2", 4),
        ("gpt2", 4),
    ]
    title, x, y = time[1]  # bert-base, batch 8
    assert x == [8, 32, 128, 512]
    assert math.isnan(y[2]) and not any(math.isnan(v) for v in y[:2] + y[3:])  # a gap, no zero
    assert y[0] == pytest.approx(1e-5 * 8 * 8 * 1.025 * 1000)  # the median of the samples, ms
    assert drawn["inference_time"].axes[0].get_ylabel() == "time per call (ms)"
    legend = [t.get_text() for t in drawn["inference_time"].axes[0].get_legend().get_texts()]
    assert legend == ["b1", "b8"]
    memory = lines(drawn["inference_memory"])
    assert memory[0][2] == [508, 532, 628, 1012]


def test_the_x_axis_is_batch_when_batch_varies_more(tmp_path):
    cells = [
        (f"b{b}", make_record(batch=b, seq=128, samples=[0.001 * b] * 6, sweep_index=i))
        for i, b in enumerate((1, 2, 4, 8))
    ]
    drawn = figures(load(write_sweep(tmp_path / "sweep", cells)))
    ax = drawn["inference_time"].axes[0]
    assert ax.get_xlabel() == "batch size"
    assert lines(drawn["inference_time"])[0][1] == [1, 2, 4, 8]


def test_files_are_written_and_open(sweep):
    written = write_plots(sweep)
    names = sorted(p.name for p in written)
    assert names == [
        "inference_memory.pdf",
        "inference_memory.png",
        "inference_time.pdf",
        "inference_time.png",
    ]
    for path in written:
        if path.suffix == ".png":
            pixels = matplotlib.image.imread(path)
            assert pixels.shape[0] > 200 and pixels.shape[1] > 400
        else:
            assert path.read_bytes().startswith(b"%PDF")
    again = write_plots(sweep)  # the same records draw the same files
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]


def test_lines_of_two_points_draw_nothing_at_the_end_of_a_run(tmp_path):
    sweep = write_sweep(
        tmp_path / "sweep", [("a", make_record(seq=8)), ("b", make_record(seq=16, sweep_index=1))]
    )
    assert not plottable(records_frame(select(sweep).records))
    assert write_plots(sweep) == []
    assert not (sweep / "plots").exists()
    assert len(write_plots(sweep, force=True)) == 4  # python -m sweeper.plot draws them


def test_the_command_line(sweep, tmp_path, capsys):
    assert main([str(sweep), "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "inference_time.png").exists()
    assert str(tmp_path / "figs" / "inference_time.pdf") in capsys.readouterr().out
    assert main([str(tmp_path / "missing")]) == 2
