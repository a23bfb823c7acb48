"""The progress line of a finished cell: index of total, the cell, its result, wall time and ETA;
plain text unless the output is a terminal."""

from __future__ import annotations

import io

from sweeper.manifest import ManifestJob
from sweeper.record import Cell, Record
from sweeper.report.progress import Progress, cell_text, duration_text, varying_overrides
from tests.synthetic import make_record


def record(**kwargs) -> Record:
    return Record.from_dict(make_record(**kwargs))


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_line_per_cell_with_median_ci_peak_wall_time_and_eta():
    progress = Progress(total=16, stream=io.StringIO())
    cell = record(seq=128, samples=[0.885] * 5 + [0.9], peak_mib=781.4)
    first = progress.line(cell, wall_s=12.3, kept=False, cell=cell_text(cell))
    assert first == (
        "[1/16] bert-base pt cpu b8 s128: ok 0.885 s ±1.7 %, 781 MB (12.3 s; ETA 3 min)"
    )
    second = progress.line(cell, wall_s=7.7, kept=False, cell="c")
    assert second.endswith("(7.7 s; ETA 2 min)")  # the mean so far, 10 s, x 14 cells left


def test_kept_cells_cost_nothing_and_do_not_skew_the_eta():
    progress = Progress(total=3)
    cell = record()
    assert progress.line(cell, 0.01, kept=True, cell="c").endswith("(kept from an earlier run)")
    assert progress.line(cell, 30.0, kept=False, cell="c").endswith("(30.0 s; ETA 30 s)")
    assert progress.line(cell, 30.0, kept=False, cell="c").startswith("[3/3] c: ok ")


def test_a_failed_cell_says_its_status_and_the_first_line_of_its_error():
    progress = Progress(total=2)
    failed = record(status="oom", error="training: RuntimeError: out of memory\ntraceback...")
    line = progress.line(failed, 3.0, kept=False, cell="c")
    assert line == "[1/2] c: oom: training: RuntimeError: out of memory (3.0 s; ETA 3 s)"


def test_plain_text_for_logs_colour_on_a_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    plain, terminal = io.StringIO(), Terminal()
    Progress(total=1, stream=plain).emit(record(), 1.0, False, "c")
    Progress(total=1, stream=terminal).emit(record(), 1.0, False, "c")
    assert "\033[" not in plain.getvalue() and plain.getvalue().count("\n") == 1
    assert terminal.getvalue().startswith("[1/1] c: \033[32mok\033[0m ")
    monkeypatch.setenv("NO_COLOR", "1")
    quiet = Terminal()
    Progress(total=1, stream=quiet).emit(record(), 1.0, False, "c")
    assert "\033[" not in quiet.getvalue()


def test_options_that_vary_across_the_sweep_name_the_cell():
    def job(*overrides):
        return ManifestJob("f", list(overrides), "id", Cell("m", "tf", "cpu", 8, 8))

    jobs = [
        job("seq=8", "framework=tf", "framework.use_xla=true"),
        job("seq=8", "framework=tf", "framework.use_xla=false"),
        job("seq=32", "framework=tf", "framework.use_xla=true"),
    ]
    keys = varying_overrides(jobs)
    assert keys == ["framework.use_xla"]
    cell = record(framework="tf")
    assert (
        cell_text(cell, jobs[1].overrides, keys) == "bert-base tf cpu b8 s8 framework.use_xla=false"
    )


def test_durations_read_like_an_eta():
    assert [duration_text(s) for s in (5, 89, 150, 3600, 5000)] == [
        "5 s",
        "89 s",
        "2 min",
        "1 h 0 min",
        "1 h 23 min",
    ]
