"""sweeper.load: the tidy frame of a sweep folder (one row per cell and mode), its varying
options, raw samples on request, and what was left out."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import sweeper
from tests.synthetic import GOLDEN, make_record, write_manifest, write_record, write_sweep


@pytest.fixture
def golden(tmp_path):
    shutil.copytree(GOLDEN, tmp_path / "sweep")
    return tmp_path / "sweep"


def test_one_row_per_cell_and_mode(golden):
    frame = sweeper.load(golden)
    assert len(frame) == 10  # 5 cells x (inference, training)
    first = frame.iloc[0]
    assert (first["model"], first["batch_size"], first["sequence_length"], first["mode"]) == (
        "bert-base",
        8,
        8,
        "inference",
    )
    assert first["median_s"] == 0.0061 and first["peak_mib"] == 1227.4
    assert first["status"] == "ok" and not first["noisy"]
    assert first["record"] == str(golden / "seq=8" / "record.json")
    oom = frame[(frame["sequence_length"] == 128) & (frame["mode"] == "training")].iloc[0]
    assert oom["status"] == "oom" and oom["error"].startswith("RuntimeError")
    assert frame["timed_calls"].dtype.name == "Int64"
    assert "samples_s" not in frame.columns


def test_raw_samples_on_request(golden):
    frame = sweeper.load(golden, samples=True)
    assert frame.iloc[0]["samples_s"] == (0.0061, 0.006, 0.0062, 0.0061, 0.0063, 0.0061)


def test_varying_options_are_columns(tmp_path):
    sweep = write_sweep(
        tmp_path / "sweep",
        [(f"seed={s}", make_record(config={"seed": s}, sweep_index=s)) for s in (0, 1)],
    )
    frame = sweeper.load(sweep)
    assert list(frame["seed"]) == [0, 1]
    assert list(frame["label"]) == ["bert-base seed=0", "bert-base seed=1"]
    assert list(frame.columns[:6]) == [
        "model",
        "framework",
        "device",
        "batch_size",
        "sequence_length",
        "seed",
    ]


def test_attrs_say_what_was_left_out_and_what_is_missing(tmp_path):
    kept = make_record(seq=8)
    sweep = write_sweep(tmp_path / "sweep", [("seq=8", kept)])
    write_record(sweep, "old", make_record(seq=8, config={"seed": 3}))
    write_manifest(sweep, [("seq=8", kept)], command="python -m sweeper X -m", total=4)
    frame = sweeper.load(sweep)
    assert len(frame) == 1
    assert frame.attrs["missing_cells"] == 3 and frame.attrs["total_cells"] == 4
    assert frame.attrs["resume_command"] == "python -m sweeper X -m"
    assert [path for path, _ in frame.attrs["left_out"]] == [str(sweep / "old" / "record.json")]
    assert len(sweeper.load(sweep, all_records=True)) == 2


def test_importing_sweeper_stays_light():
    """pandas, scipy, matplotlib and Hydra load with the functions that need them."""
    code = (
        "import sys, sweeper\n"
        "names = ('pandas', 'scipy', 'matplotlib', 'hydra', 'torch')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(heavy)\n"
        "print(callable(sweeper.run), sweeper.run.__module__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.splitlines() == ["[]", "True sweeper"], proc.stderr
